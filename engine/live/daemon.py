"""The live trading daemon (``hftmm live``): exchange link, Aeron, Ray-placed trading nodes, metrics, report.

What runs where::

    daemon process (this module)                         one Ray actor process per [[nodes]] entry
      [embedded] SimExchange runner thread (backoff)       engine.live.node.TradingNode on a pinned thread:
      its Aeron media driver (sleeping idle)                 UDP MoldUDP64 -> book -> strategy -> risk
      MetricsExporter thread (HTTP, 127.0.0.1:port)          -> OUCH over Aeron IPC (the driver's dir)
      main thread: signals, supervision, status line,      metrics block  /dev/shm/hftmm-metrics-<pid>-<node>
        journal rings -> <runtime_dir>/journal/*.arrow     control block  /dev/shm/hftmm-control-<pid>-<node>
      Ray (local: raylet, GCS; started here or attached)   journal ring   /dev/shm/hftmm-journal-<pid>-<node>

With ``[exchange] embedded = false`` the daemon starts (or with ``[aeron] attach`` attaches to) the
media driver of ``[aeron] dir`` and the nodes speak OUCH on each node's configured channels.

Lifecycle: start -> run until Ctrl-C, SIGTERM or ``--duration`` -> every node cancels its open
orders and waits (bounded) for the acknowledgements -> the session report. A node whose actor dies
is restarted (``[ray] max_restarts``): the daemon rebuilds its orders and positions from its journal
(``engine.live.journal``), and the successor continues the client order ids and logs in from the first
response the journal lacks, so the exchange replays what the dead node never read.

A daemon killed outright (``kill -9``) leaves ``<runtime_dir>/live.pid`` naming a dead process (a clean
exit removes it, and the next run starts flat as ever). Its local Ray (GCS, raylet) dies with it and
takes the node processes along; the next start with the same ``runtime_dir`` kills any node process
of it still alive (its pid is in its control block), then, against an external exchange, rebuilds each
node from the dead run's journals: the files its session file (``live.session.json``) lists, which
include those of any run it had recovered from in turn, its own files, and what its journal ring in
/dev/shm still held. Each node logs in from the first response those lack (the exchange replays the
rest, fills included), cancels what its strategy no longer wants and numbers its orders above every
id sent. The dead run's blocks, rings and driver directory are removed. ``SIGUSR1``
(what ``hftmm kill`` sends to the pid in ``<runtime_dir>/live.pid``) engages the kill switch: every
node cancels everything and quotes no more while the daemon keeps running; the report says ``killed``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.core.units import LOOPBACK, SHM_DIR
from engine.live.builder import NodeBlocks, NodeSpec, fresh_tables
from engine.live.capture import capture_path
from engine.live.config import LiveConfig, NodeConfig
from engine.live.journal import (
    JOURNAL_PREFIX,
    JournalRing,
    JournalWriter,
    Recovered,
    journal_file_name,
    new_records,
    read_journals,
    rebuild,
    run_files,
)
from engine.live.node import NodeProcess
from engine.live.recovery import process_alive, process_cmdline, process_gone, recovery_summary, remove_stale_blocks
from engine.live.report import percentile_ns, symbol_tables
from engine.runtime import control as CB
from engine.runtime import metrics as M
from engine.runtime.aeron import AttachedDriver, EmbeddedDriver, open_driver
from engine.runtime.control import CONTROL_PREFIX
from engine.runtime.localray import start_local_ray
from engine.runtime.metrics import DaemonMetrics, MetricsExporter
from engine.trading import layout as TL
from engine.trading.oms import working_count_nb

log = logging.getLogger("hftmm.live")

PID_FILE = "live.pid"
SESSION_FILE = "live.session.json"  # this run's pid and, per node, the journal files its tables derive from
RESTART_ID_GAP = 1000  # a restarted node starts its client order ids this far above the last one seen
SECONDS_PER_DAY = 86_400
IDS_PER_SECOND = 10_000  # client order ids start at seconds-since-midnight x this (they must rise all day)
RAY_OBJECT_STORE_BYTES = 100 << 20
POLL_S = 0.1
FENCE_WAIT_S = 10.0  # how long a dead daemon's node process may take to end after SIGKILL


# --- the session ----------------------------------------------------------------------------------
@dataclass
class NodeHandle:
    """The daemon's side of one node: spec, blocks, actor and its pending run, restarts, report."""

    config: NodeConfig
    spec: NodeSpec
    blocks: NodeBlocks
    writer: JournalWriter
    actor: object = None
    run_ref: object = None
    restarts: int = 0
    report: dict = field(default_factory=dict)
    failure: str = ""
    down: bool = False  # failed and not restarted again
    journals: list[Path] = field(default_factory=list)  # the files its tables derive from, oldest first


class LiveError(RuntimeError):
    """The daemon cannot start (one line saying why)."""


def first_order_id() -> int:
    """Client order ids start from the time of day, so that they rise across daemon restarts."""
    return int(time.time()) % SECONDS_PER_DAY * IDS_PER_SECOND + 1


class LiveDaemon:
    """One live session: :meth:`start`, :meth:`run` until stopped, :meth:`shutdown`, then :meth:`report`."""

    def __init__(
        self, config: LiveConfig, out: Callable[[str], None] = print, status: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.out = out
        self.status = status or out
        self.instruments = config.resolved_instruments()
        self.stop_requested = threading.Event()
        self.kill_requested = threading.Event()
        self.killed = False
        self.exchange = None
        self.driver: EmbeddedDriver | AttachedDriver | None = None
        self.exporter: MetricsExporter | None = None
        self.daemon_metrics = DaemonMetrics()
        self.nodes: list[NodeHandle] = []
        self.started_ray = False
        self.started_at = time.monotonic()
        self.exchange_record: dict[str, int] | None = None
        self.recovery: dict | None = None  # what was recovered from a daemon that died (see _recover_run)
        self._pid_file = Path(config.runtime_dir) / PID_FILE
        self._session_file = Path(config.runtime_dir) / SESSION_FILE
        self._journal_dir = Path(config.journal.dir or Path(config.runtime_dir) / "journal")
        self._keep_pid_file = False

    # --- start ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Pid file, exchange or driver, metrics, Ray and the node actors (released again on failure)."""
        crashed = 0
        try:
            crashed = self._claim_pid_file()
            previous = self._previous_run(crashed) if crashed else None
            if previous is not None:
                self._fence(previous[0])
            self._check_ports()
            aeron_dir = self._start_exchange() if self.config.exchange.embedded else self._start_driver()
            self.exporter = MetricsExporter.from_config(self.config.metrics, self.daemon_metrics)
            self.exporter.start()
            for k, node in enumerate(self.config.nodes):
                self.nodes.append(self._handle(node, k, aeron_dir))
            if previous is not None and self.config.exchange.embedded:
                self.out(f"hftmm: the live daemon that died (pid {previous[0]}) took its embedded exchange with "
                         "it: nothing to reconcile with, every node starts flat")  # fmt: skip
            elif previous is not None:
                self._recover_run(*previous)
            if previous is not None:
                remove_stale_blocks({crashed, previous[0]})
            self._write_session_file()
            self._start_ray()
            for handle in self.nodes:
                self._launch(handle)
        except BaseException:
            self._keep_pid_file = bool(crashed)  # the dead run still waits to be recovered by the next start
            self.shutdown()
            raise
        self.started_at = time.monotonic()

    def _claim_pid_file(self) -> int:
        """Write our pid; the pid of a daemon that died without a clean shutdown (its file stayed), or 0."""
        path = self._pid_file
        path.parent.mkdir(parents=True, exist_ok=True)
        crashed = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            other = int(path.read_text().strip())
            if other != os.getpid() and process_alive(other):
                raise LiveError(f"a live daemon already runs with runtime_dir {path.parent} (pid {other})")
            crashed = other if other != os.getpid() else 0
        path.write_text(f"{os.getpid()}\n")
        return crashed

    # --- recovery from a daemon that died -------------------------------------------------------
    def _previous_run(self, crashed: int) -> tuple[int, dict[str, list[Path]]]:
        """The run to recover (its pid) and per node the journal files its tables derive from.

        That is the crashed daemon's session file, if it wrote one (it also lists the files of the run
        it recovered from in turn), plus its own files; a daemon that died before writing its session
        file had launched no node, so the run before it is the one recovered."""
        listed: dict[str, list[str]] = {}
        pid = crashed
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            session = json.loads(self._session_file.read_text())
            pid, listed = int(session["pid"]), dict(session["journals"])
        files = {}
        for node in self.config.nodes:
            chain = [Path(f) for f in listed.get(node.name, ()) if Path(f).exists()]
            files[node.name] = chain + [f for f in run_files(self._journal_dir, node.name, pid) if f not in chain]
        return pid, files

    def _fence(self, pid: int) -> None:
        """Make sure no node process of the dead daemon ``pid`` still runs (it would quote beside ours).

        Its local Ray (raylet, GCS) shares the fate of the daemon and takes the workers with it; a node
        process still alive (its pid is in its control block) is killed here, and one still exiting (its first
        thread a zombie, the others closing its sockets) awaited."""
        for node in self.config.nodes:
            path = os.path.join(SHM_DIR, f"{CONTROL_PREFIX}{pid}-{node.name}")
            if not os.path.exists(path):
                continue
            node_pid = int(np.fromfile(path, np.int64, CB.CT_SLOTS)[CB.CT_PID])
            if not node_pid or process_gone(node_pid):
                continue
            running = process_alive(node_pid)  # else dying already: a zombie whose other threads still hold sockets
            if running and b"NodeProcess" not in process_cmdline(node_pid):
                continue  # the pid was reused
            if running:
                os.kill(node_pid, signal.SIGKILL)
            deadline = time.monotonic() + FENCE_WAIT_S
            while not process_gone(node_pid) and time.monotonic() < deadline:  # its sockets closed too
                time.sleep(POLL_S)
            if not process_gone(node_pid):
                raise LiveError(f"node {node.name} of the dead daemon (pid {pid}) still runs as pid {node_pid}")
            what = "was still running: killed" if running else "was still exiting: waited for it"
            self.out(f"hftmm: node {node.name} of the dead daemon (pid {pid}) {what}")

    def _recover_run(self, pid: int, files: dict[str, list[Path]]) -> None:
        """Each node starts from the dead run's journals: its files, then what its ring still held (put in
        a file of the dead run's first, so that a crash now loses nothing), rebuilt into the tables; ids
        continue above every id it sent."""
        nodes = {}
        started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for handle in self.nodes:
            name = handle.config.name
            chain = files[name]
            records = read_journals(chain)
            from_ring = 0
            ring_path = os.path.join(SHM_DIR, f"{JOURNAL_PREFIX}{pid}-{name}")
            if os.path.exists(ring_path):  # a file of the dead run first, then freed in its ring
                ring = JournalRing.attach(os.path.basename(ring_path))
                batch, upto = ring.unread()
                batch = new_records(batch, records)
                if batch.num_rows:
                    left = JournalWriter(self._journal_dir / journal_file_name(name, started, pid, ring=True),
                                         self.config.journal.fsync)  # fmt: skip
                    left.write(batch)
                    left.close()
                    chain = [*chain, left.path]
                    records = pa.concat_tables([records, pa.Table.from_batches([batch])])
                ring.release(upto)
                ring.close()
                from_ring = batch.num_rows
            handle.journals = [*chain, handle.writer.path]
            if not records.num_rows:
                continue
            control = os.path.join(SHM_DIR, f"{CONTROL_PREFIX}{pid}-{name}")
            next_id = int(np.fromfile(control, np.int64, CB.CT_SLOTS)[CB.CT_NEXT_ID]) if os.path.exists(control) else 0
            spec = replace(handle.spec, first_order_id=max(handle.spec.first_order_id, next_id + RESTART_ID_GAP))
            recovered = self._rebuild(handle, spec, records)
            nodes[name] = recovery_summary(recovered, spec, [str(f) for f in chain], records.num_rows, from_ring)
        self.recovery = {"pid": pid, "nodes": nodes}
        self.out(f"hftmm: recovered {len(nodes)} node(s) from the journals of the live daemon that died (pid {pid})")

    def _write_session_file(self) -> None:
        """This run's pid and, per node, its journal files (with those its tables were recovered from)."""
        journals = {h.config.name: [str(f) for f in h.journals] for h in self.nodes}
        temporary = self._session_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pid": os.getpid(), "journals": journals}))
        temporary.replace(self._session_file)

    def _start_exchange(self) -> str:
        from engine.simexchange.exchange import SimExchange

        self.exchange = SimExchange(self.config.embedded_exchange())
        self.exchange.start()
        assert self.exchange.driver is not None
        return self.exchange.driver.dir

    def _start_driver(self) -> str:
        self.driver = open_driver(self.config.aeron, os.path.join(SHM_DIR, f"hftmm-live-{os.getpid()}", "aeron"))
        return self.driver.dir

    def _handle(self, node: NodeConfig, k: int, aeron_dir: str) -> NodeHandle:
        blocks = NodeBlocks.create(node.name, node.symbols, f"{os.getpid()}-{node.name}")
        self.exporter.add(blocks.metrics)
        started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        writer = JournalWriter(self._journal_dir / journal_file_name(node.name, started, os.getpid()),
                               self.config.journal.fsync)  # fmt: skip
        spec = self.config.node_spec(k, aeron_dir, blocks, first_order_id(), self._capture_path(node.name, started, 0))
        return NodeHandle(node, spec, blocks, writer, journals=[writer.path])

    def _check_ports(self) -> None:
        """Fail the start before anything runs, naming the config key and the port, when a port the daemon or its
        nodes will listen on cannot be bound: the metrics endpoint's, the unicast market-data port the nodes
        share (a multicast group's is shared by design), the embedded exchange's re-request port."""
        ex, metrics = self.config.exchange, self.config.metrics
        wanted = [("metrics.port", socket.SOCK_STREAM, metrics.host, metrics.port)]
        if not ex.multicast_group:
            wanted.append(("exchange.md_port", socket.SOCK_DGRAM, ex.md_host, ex.md_port))
        if ex.embedded:
            wanted.append(("exchange.retransmission_port", socket.SOCK_DGRAM, LOOPBACK, ex.retransmission_port))
        for key, kind, host, port in wanted:
            problem = port and _bind_problem(kind, host, port)  # port 0: any free port
            if problem:
                proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
                raise LiveError(f"{key} {port} ({proto} {host}:{port}) {problem}")

    def _capture_path(self, node: str, started: str, restart: int) -> str:
        """Where a node process records its session ("" without ``[capture] enabled``)."""
        cfg = self.config.capture
        if not cfg.enabled:
            return ""
        name = f"{node}-r{restart}" if restart else node  # a restarted node records to a file of its own
        return str(capture_path(cfg.dir or Path(self.config.runtime_dir) / "capture", name, started))

    def _start_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        if self.config.ray.address:
            ray.init(address=self.config.ray.address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            needed = math.ceil(self.config.ray.node_cpus * len(self.nodes))
            start_local_ray(max(os.cpu_count() or 1, needed), RAY_OBJECT_STORE_BYTES)
        self.started_ray = True

    def _launch(self, handle: NodeHandle) -> None:
        import ray

        actor_class = ray.remote(NodeProcess).options(num_cpus=self.config.ray.node_cpus, max_restarts=0)
        handle.actor = actor_class.remote(handle.spec)
        handle.run_ref = handle.actor.run.remote()
        self.daemon_metrics.set_node_up(handle.config.name, True)

    # --- run ------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None) -> None:
        """Supervise until a stop request or the duration; print the status line every interval."""
        interval = self.config.status_interval_s
        next_status = time.monotonic() + interval
        while not self.stop_requested.wait(POLL_S):
            self._drain_journals()
            now = time.monotonic()
            if duration_s is not None and now - self.started_at >= duration_s:
                break
            if self.kill_requested.is_set() and not self.killed:
                self.engage_kill_switch()
            if self.exchange is not None and self.exchange.failed:
                self.out("hftmm: the embedded exchange failed; stopping")
                break
            self._supervise()
            if all(handle.down for handle in self.nodes):
                self.out("hftmm: no node is running; stopping")
                break
            if interval and now >= next_status:
                self.status(self.status_line())
                next_status = now + interval

    def failed_nodes(self) -> list[str]:
        """``node NAME: its error`` of every node that failed and was not restarted again."""
        return [f"node {handle.config.name}: {handle.failure}" for handle in self.nodes if handle.down]

    def engage_kill_switch(self) -> None:
        """Every node cancels everything and quotes no more; the daemon keeps running."""
        self.killed = True
        for handle in self.nodes:
            handle.blocks.control.slots[CB.CT_KILL] = 1
        self.daemon_metrics.set_kill_switch(True)
        self.out("hftmm: kill switch engaged: every node cancels its orders and stops quoting")

    def _supervise(self) -> None:
        """Restart a node whose actor ended before the daemon asked it to."""
        import ray

        for handle in self.nodes:
            if handle.run_ref is None:
                continue
            ready, _ = ray.wait([handle.run_ref], timeout=0)
            if not ready:
                continue
            try:
                handle.report = ray.get(handle.run_ref)
                handle.failure = "ended on its own"
            except Exception as exc:  # the actor died or run() raised: its reason (run()'s own error), in one line
                handle.failure = " ".join(str(getattr(exc, "cause", None) or exc).split())[:300]
            handle.run_ref = None
            self.daemon_metrics.set_node_up(handle.config.name, False)
            if handle.restarts >= self.config.ray.max_restarts:
                handle.down = True
                self.out(f"hftmm: node {handle.config.name} failed and is not restarted again: {handle.failure}")
                continue
            handle.restarts += 1
            self.daemon_metrics.node_restarted(handle.config.name)
            next_id = int(handle.blocks.control.slots[CB.CT_NEXT_ID]) + RESTART_ID_GAP
            spec = replace(handle.spec, first_order_id=max(next_id, handle.spec.first_order_id + RESTART_ID_GAP))
            self._recover(handle, spec)
            if handle.spec.capture:
                started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                handle.spec = replace(handle.spec, capture=self._capture_path(handle.config.name, started,
                                                                              handle.restarts))  # fmt: skip
            handle.blocks.control.slots[:] = 0
            handle.blocks.control.slots[CB.CT_KILL] = int(self.killed)
            self.out(f"hftmm: node {handle.config.name} failed ({handle.failure}); restart {handle.restarts}")
            self._launch(handle)

    def _drain_journals(self) -> None:
        """Move what the nodes journaled from their rings to the journal files."""
        for handle in self.nodes:
            handle.writer.drain(handle.blocks.journal)

    def _recover(self, handle: NodeHandle, spec: NodeSpec) -> Recovered:
        """The dead node's orders and positions, rebuilt from its journal files, for its successor."""
        handle.writer.drain(handle.blocks.journal)  # what it wrote up to its last instant
        handle.writer.flush()
        records = read_journals(handle.journals)
        recovered = self._rebuild(handle, spec, records)
        self.out(f"hftmm: node {handle.config.name}: recovered {int(working_count_nb(recovered.own))} working "
                 f"orders and positions from {records.num_rows} journal records; the session resumes "
                 f"at response {recovered.next_sequence}")  # fmt: skip
        return recovered

    def _rebuild(self, handle: NodeHandle, spec: NodeSpec, records: pa.Table) -> Recovered:
        """Journal records replayed into fresh tables of ``spec``, which the node's spec then carries."""
        recovered = rebuild(records, *fresh_tables(spec), [i.symbol for i in spec.instruments])
        handle.spec = replace(spec, recovered=recovered)
        return recovered

    def status_line(self) -> str:
        """One line: run time, then per node its state, orders, fills, positions and PnL."""
        parts = [f"{time.monotonic() - self.started_at:6.1f}s"]
        for handle in self.nodes:
            block = handle.blocks.metrics
            state = CB.STATE_NAMES[min(int(handle.blocks.control.slots[CB.CT_STATE]), len(CB.STATE_NAMES) - 1)]
            counters = block.instrument_counters
            gauges = block.instrument_gauges
            positions = " ".join(f"{s} {gauges[i, M.G_POSITION]:+.0f}" for i, s in enumerate(block.instruments))
            parts.append(
                f"{handle.config.name} {state}: orders {int(counters[:, M.I_ORDERS_SENT].sum())} "
                f"fills {int(counters[:, M.I_ORDERS_FILLED].sum())} pos {positions} "
                f"pnl {gauges[:, M.G_PNL].sum():+.2f} risk-rejects {int(block.risk_rejections.sum())}"
            )
        if self.killed:
            parts.append("KILLED")
        return " | ".join(parts)

    # --- stop -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every node (cancel all, wait for the acknowledgements), collect reports, release everything."""
        duration = time.monotonic() - self.started_at
        try:
            self._stop_nodes()
        finally:
            self._release()
        self.duration_s = duration

    def _stop_nodes(self) -> None:
        if not self.nodes:
            return
        import ray

        for handle in self.nodes:
            handle.blocks.control.slots[CB.CT_STOP] = 1
        deadline = time.monotonic() + self.config.stop_wait_s + 30.0
        for handle in self.nodes:
            if handle.run_ref is None:
                continue
            try:
                handle.report = ray.get(handle.run_ref, timeout=max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # a node that cannot report: say so in the report, go on
                handle.failure = " ".join(str(exc).split())[:300]
                with contextlib.suppress(Exception):
                    ray.kill(handle.actor)
            handle.run_ref = None
            self.daemon_metrics.set_node_up(handle.config.name, False)

    def _release(self) -> None:
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False
        if self.exchange is not None:
            with contextlib.suppress(RuntimeError):
                self.exchange.stop()
            self.exchange_record = {}
            for record in self.exchange.positions([h.spec.port.username for h in self.nodes]).values():
                for symbol, shares in record.items():
                    self.exchange_record[symbol] = self.exchange_record.get(symbol, 0) + shares
            self.exchange = None
        if self.exporter is not None:
            self.exporter.stop()
        for handle in self.nodes:
            if self.exporter is not None:
                with contextlib.suppress(ValueError):
                    self.exporter.remove(handle.blocks.metrics)
            handle.writer.drain(handle.blocks.journal)  # the nodes have stopped: the last records
            handle.writer.close()
            handle.blocks.close()
        self.exporter = None
        if self.driver is not None:
            self.driver.close()
            if isinstance(self.driver, EmbeddedDriver) and not self.config.aeron.dir:  # our hftmm-live-<pid> folder
                shutil.rmtree(os.path.dirname(self.driver.dir), ignore_errors=True)
            self.driver = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            if not self._keep_pid_file and int(self._pid_file.read_text().strip()) == os.getpid():  # clean exit
                with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                    if json.loads(self._session_file.read_text())["pid"] == os.getpid():
                        self._session_file.unlink()
                self._pid_file.unlink()

    # --- report ---------------------------------------------------------------------------------
    def report(self) -> dict:
        """The session report (see ``hftmm live --report``)."""
        node_symbols: list[dict[str, dict]] = []
        by_symbol: dict[str, dict[str, int]] = {}
        samples = [np.zeros(0, np.int64)]
        nodes = {}
        totals = {"unknown_responses": 0, "duplicate_responses": 0}
        for handle in self.nodes:
            rep = handle.report
            nodes[handle.config.name] = {
                "restarts": handle.restarts,
                "failure": handle.failure,
                "journal": {"file": str(handle.writer.path), "records": handle.writer.records},
                "capture": handle.spec.capture or None,  # the last life's; a restarted node's are -r<N> files
                **{key: value for key, value in rep.items() if key not in ("symbols", "t2t_ns", "probes", "node")},
            }
            node_symbols.append(rep.get("symbols", {}))
            for symbol, s in node_symbols[-1].items():
                by_symbol[symbol] = s["risk_rejections"]
            if "t2t_ns" in rep:
                samples.append(np.asarray(rep["t2t_ns"], np.int64))
            for key in totals:
                totals[key] += rep.get(key, 0)
        t2t = np.concatenate(samples)
        reasons = {r: sum(s.get(r, 0) for s in by_symbol.values()) for r in TL.RISK_REASONS}
        return {
            "duration_s": round(getattr(self, "duration_s", 0.0), 3),
            "killed": self.killed,
            **symbol_tables(node_symbols),  # orders, replaces, fills, position, pnl, fees: {symbol: value}
            "risk_rejections": {"total": sum(reasons.values()), "by_reason": reasons, "by_symbol": by_symbol},
            "t2t_p50_ns": percentile_ns(t2t, 50),
            "t2t_p99_ns": percentile_ns(t2t, 99),
            "t2t_samples": len(t2t),
            **totals,
            "exchange_position": self.exchange_record,
            "recovery": self.recovery,
            "nodes": nodes,
        }


def _bind_problem(kind: int, host: str, port: int) -> str:
    """Why a socket of ``kind`` could not bind ``host:port`` now ("" when it could). A TCP probe binds as an
    HTTP server does (SO_REUSEADDR), so a port left in TIME_WAIT counts as free."""
    with socket.socket(socket.AF_INET, kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc.strerror}"
    return ""


def kill_daemon(runtime_dir: str) -> int:
    """Send the kill switch (SIGUSR1) to the daemon whose pid file is in ``runtime_dir``; its pid."""
    path = Path(runtime_dir) / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise LiveError(f"no live daemon found: {path} is missing or unreadable") from None
    if not process_alive(pid):
        raise LiveError(f"no live daemon runs: {path} names pid {pid}, which has ended")
    os.kill(pid, signal.SIGUSR1)
    return pid


def install_signals(daemon: LiveDaemon) -> dict[int, object]:
    """SIGINT / SIGTERM stop the session, SIGUSR1 trips the kill switch; returns the previous handlers."""
    handlers = {
        signal.SIGINT: lambda *_: daemon.stop_requested.set(),
        signal.SIGTERM: lambda *_: daemon.stop_requested.set(),
        signal.SIGUSR1: lambda *_: daemon.kill_requested.set(),
    }
    return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}


def stderr_line(text: str) -> None:
    """Status and notices go to stderr, the report to stdout."""
    print(text, file=sys.stderr, flush=True)


def terminal_status(text: str) -> None:
    """The status line on a terminal: rewritten in place (a notice after it starts on a new line)."""
    print(f"\r{text}\033[K", end="", file=sys.stderr, flush=True)
