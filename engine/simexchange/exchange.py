"""The simulated exchange as one process: matching, background flow, ITCH market data, OUCH order entry.

:class:`SimExchange` wires a :class:`MatchingEngine` to its producers and consumers and runs them as
agents on ONE :class:`AgentRunner` thread, so the engine has a single writer::

    BackgroundFlow ──► engine ◄── OrderEntryServer ◄── OUCH over Aeron (EmbeddedDriver, IPC or UDP)
                          │  every report batch ──► flow.on_reports + counters
                          ▼  every ITCH batch
                   MoldPublisher ──► MoldUDP64 over UDP (unicast or multicast)
                          │      └─► the same packets on Aeron (optional, e.g. IPC; same driver)
                          ▲  history
                   RetransmissionServer ◄── re-requests (UDP)

At start the session messages (S, R per instrument, S, H per instrument, S) are published first,
then ``warm_up_s`` simulated seconds of background flow build the books; after that the flow runs
on the exchange clock: ns since midnight, continuing from the warm-up at wall-clock pace. With
``[flow] mode = "replay"`` the background flow is a recorded day instead (``engine.simexchange.replayflow``): its
orders rest in the engine as one participant's, the events before ``start_s`` build the books at
open, then the rest follows the exchange clock times ``speed``. Counters
(requests, executions, rejects) are kept in a small int64 array; :meth:`SimExchange.stats` and the
Prometheus collector (``metrics_port``) sample them and the agents' stats from outside the hot path.

>>> with SimExchange(load_toml("examples/sim-exchange.toml", SimExchangeConfig)) as exchange:
...     print(exchange.describe())          # where it listens
...     time.sleep(10)
>>> exchange.stats()
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

import numpy as np
from numba import njit
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.core.units import LOOPBACK, NS_PER_MS, SHM_DIR
from engine.runtime.aeron import AttachedDriver, EmbeddedDriver, open_driver
from engine.runtime.agent import AgentRunner
from engine.simexchange import layout as L
from engine.simexchange.config import SimExchangeConfig
from engine.simexchange.flow import SESSION_START_NS, BackgroundFlow, FlowConfig
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.mdpub import MoldPublisher, RetransmissionServer
from engine.simexchange.orderentry import OrderEntryServer
from engine.simexchange.replayflow import ReplayFlow, load_events

PAUSE_WAIT_S = 5.0  # how long pause_flow() waits for the runner to finish its current duty cycles

# --- counter ids: written on the runner thread, sampled by stats() and the exporter (see _METRICS) --
C_FLOW_REQUESTS = 0
C_ORDER_ENTRY_REQUESTS = 1
C_EXECUTIONS = 2
C_REJECTS = 3
N_COUNTERS = 4


@njit(cache=True, nogil=True)
def tally_reports_nb(reports, counters):
    """Add a report batch's executions (aggressor side, one per match) and rejects to ``counters``."""
    for i in range(reports.shape[0]):
        kind = reports[i]["kind"]
        if kind == L.RPT_EXECUTED and reports[i]["liquidity"] == L.LIQ_REMOVED:
            counters[C_EXECUTIONS] += 1
        elif kind == L.RPT_REJECTED:
            counters[C_REJECTS] += 1


# --- agents ---------------------------------------------------------------------------------------
class _FlowGate:
    """Agent: runs the control commands queued by other threads, then (unless paused) the flow."""

    role_name = "background-flow"

    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange
        self.paused = False

    def on_start(self) -> None:
        """Pin the runner thread, start the exchange clock, check the flow."""
        ex = self.exchange
        if ex.config.cpu_affinity:
            os.sched_setaffinity(0, set(ex.config.cpu_affinity))
        ex.anchor_clock()
        ex.flow.on_start()

    def do_work(self) -> int:
        """Commands first, then the flow requests due by the exchange clock."""
        ex = self.exchange
        work = 0
        while ex.commands:
            ex.commands.popleft()()
            work += 1
        if not self.paused:
            sent = ex.flow.do_work()
            ex.counters[C_FLOW_REQUESTS] += sent
            work += sent
        return work

    def on_close(self) -> None:
        """Close the session's ITCH (the publisher, closed after this agent, sends it, then End of Session)."""
        ex = self.exchange
        ex.publisher.publish_flat(ex.engine.session_end_itch(ex.clock_ns()))


class _OrderEntryEngine:
    """The engine as the order-entry server sees it: each batch's reports also reach the flow and counters."""

    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange
        self.symbols = exchange.engine.symbols
        self.touch = exchange.engine.touch

    def submit(self, requests: np.ndarray, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Submit to the real engine; pass the reports on before returning them."""
        ex = self.exchange
        reports, itch = ex.engine.submit(requests, now_ns)
        ex.counters[C_ORDER_ENTRY_REQUESTS] += len(requests)
        tally_reports_nb(reports, ex.counters)
        ex.flow.on_reports(reports)
        return reports, itch


# --- the exchange -----------------------------------------------------------------------------------
class SimExchange:
    """The simulated exchange: build from a config, then :meth:`start` (own thread) or :meth:`step`.

    A context manager (``start`` on enter, ``stop`` on exit). ``driver`` is the embedded Aeron driver
    (clients of the order entry may ``driver.connect()`` in the same process).
    """

    def __init__(self, config: SimExchangeConfig) -> None:
        self.config = config
        self.counters = np.zeros(N_COUNTERS, np.int64)
        self.commands: deque[Callable[[], None]] = deque()  # run on the runner thread, in order
        self._clock_base_ns = SESSION_START_NS
        self._clock_t0_ns = time.monotonic_ns()
        self._shm_root = ""
        self._metrics_server: tuple[WSGIServer, threading.Thread] | None = None
        self._stopped = False
        self._threaded = False
        md = config.market_data
        self.engine = MatchingEngine(
            [(i.locate, i.symbol, i.tick, i.lot) for i in config.listed()],
            post_only=config.post_only,
            self_trade=config.self_trade,
        )
        self.flow: BackgroundFlow | ReplayFlow
        src = config.flow
        if src.mode == "replay":  # reads and checks the files now: a bad one is a one-line ValueError
            self.flow = ReplayFlow(
                load_events(list(src.files), src.locates(config.listed())),
                self.engine,
                self.clock_ns,
                self._on_flow_submit,
                speed=src.speed,
                start_s=src.start_s,
                at_end=src.at_end,
            )
        else:
            self.flow = BackgroundFlow(
                FlowConfig(instruments=config.listed(), seed=config.seed),
                self.engine,
                self.clock_ns,
                on_submit=self._on_flow_submit,
            )
        multicast = bool(md.multicast_group)
        self.publisher = MoldPublisher(
            (md.multicast_group if multicast else md.host, md.port),
            md.session,
            max_packet_bytes=md.max_packet_bytes,
            heartbeat_interval_ns=md.heartbeat_interval_ms * NS_PER_MS,
            history_messages=md.history_messages,
            multicast_interface=md.host,
            multicast_ttl=md.multicast_ttl,
        )
        self.retransmitter: RetransmissionServer | None = None
        self.driver: EmbeddedDriver | AttachedDriver | None = None
        try:
            self.retransmitter = RetransmissionServer(self.publisher, (LOOPBACK, md.retransmission_port))
            self.driver = open_driver(config.aeron, self._aeron_dir())
            if md.aeron_channel:  # the same packets on Aeron too
                client = self.driver.connect()
                self.publisher.aeron = client.add_exclusive_publication(md.aeron_channel, md.aeron_stream_id)
            self.order_entry = OrderEntryServer(
                self.driver.connect(),
                _OrderEntryEngine(self),  # type: ignore[arg-type]  # duck-typed: symbols, touch, submit
                config.order_entry.server_config(self._reference_prices()),
                on_itch=self.publisher.publish_flat,
                timestamp_ns=self.clock_ns,
            )
            self._gate = _FlowGate(self)
            self.runner = AgentRunner(
                [self._gate, self.order_entry, self.publisher, self.retransmitter],
                idle=config.idle,
                name="sim-exchange",
            )
            self._open_session()
            if config.metrics_port:
                registry = CollectorRegistry(auto_describe=True)
                registry.register(SimExchangeCollector(self))
                self._metrics_server = start_http_server(config.metrics_port, addr=LOOPBACK, registry=registry)
        except BaseException:
            self._release()
            raise

    def _reference_prices(self) -> dict[str, int]:
        """What the price band centres on while a book lacks a side: the synthetic flow's initial prices
        (a replay has none: its recorded prices are the market)."""
        if self.config.flow.mode == "replay":
            return {}
        return {i.symbol: i.initial_price for i in self.config.listed()}

    def _aeron_dir(self) -> str:
        """The directory of an embedded driver: the configured one, else a fresh one under /dev/shm."""
        if self.config.aeron.dir:
            return self.config.aeron.dir
        self._shm_root = tempfile.mkdtemp(prefix="hftmm-sim-", dir=SHM_DIR if os.path.isdir(SHM_DIR) else None)
        return os.path.join(self._shm_root, "aeron")

    def _open_session(self) -> None:
        """Publish the session start (S, R, S, H, S), then warm the books up with the flow (a replay: its
        events before ``start_s``, the session opening at its first event)."""
        if isinstance(self.flow, ReplayFlow):
            self.publisher.publish_flat(self.engine.session_start_itch(self.flow.first_ns))
            self.counters[C_FLOW_REQUESTS] += self.flow.open()
        else:
            self.publisher.publish_flat(self.engine.session_start_itch(self.flow.now_ns))
            if self.config.warm_up_s > 0:
                self.counters[C_FLOW_REQUESTS] += self.flow.warm_up(self.engine, self.config.warm_up_s)
        self._clock_base_ns = self.flow.now_ns

    # --- clock --------------------------------------------------------------------------------------
    def anchor_clock(self) -> None:
        """Start the exchange clock now (called as the runner starts)."""
        self._clock_t0_ns = time.monotonic_ns()

    def clock_ns(self) -> int:
        """The exchange time: ns since midnight, from the end of the warm-up at wall-clock pace."""
        return self._clock_base_ns + time.monotonic_ns() - self._clock_t0_ns

    # --- hot-path hooks (runner thread) -------------------------------------------------------------
    def _on_flow_submit(self, reports: np.ndarray, itch: np.ndarray) -> None:
        tally_reports_nb(reports, self.counters)
        self.order_entry.on_reports(reports)  # the flow's orders may have executed a session's resting order
        if len(itch):
            self.publisher.publish_flat(itch)

    # --- running --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the agents on the exchange's thread until :meth:`stop`."""
        self._threaded = True
        self.runner.start()

    def step(self) -> int:
        """One duty cycle on the caller's thread (the agents start at the first); returns the work count."""
        return self.runner.run_once()

    def stop(self) -> None:
        """Stop the runner (end-of-session goes out), the driver and the exporter (idempotent).

        Re-raises an agent's failure after everything is released."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.runner.close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._metrics_server is not None:
            server, thread = self._metrics_server
            server.shutdown()
            server.server_close()
            thread.join()
            self._metrics_server = None
        if self.driver is not None:
            self.driver.close()
        if self.retransmitter is not None and self.retransmitter.sock.fileno() != -1:
            self.retransmitter.sock.close()
        if self.publisher.sock.fileno() != -1:
            self.publisher.sock.close()
        if self._shm_root:
            shutil.rmtree(self._shm_root, ignore_errors=True)
            self._shm_root = ""

    @property
    def failed(self) -> bool:
        """True when an agent raised (the runner thread has stopped; :meth:`stop` re-raises it)."""
        return self.runner.error is not None

    def __enter__(self) -> SimExchange:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control (any thread) ------------------------------------------------------------------------
    def pause_flow(self) -> None:
        """Stop the background flow; when threaded, return once the runner has finished its cycle.

        Order entry keeps working; on :meth:`resume_flow` the flow sends what fell due meanwhile."""
        self._gate.paused = True
        if self._threaded:
            self._wait_cycles(2)

    def resume_flow(self) -> None:
        """Let the background flow run again."""
        self._gate.paused = False

    def drop_next_packets(self, count: int = 1) -> None:
        """Test hook: the publisher numbers and keeps the next ``count`` data packets but does not send them."""
        self.commands.append(lambda: self.publisher.drop_next_packets(count))

    def _wait_cycles(self, cycles: int) -> None:
        target = self.runner.duty_cycles + cycles
        deadline = time.monotonic() + PAUSE_WAIT_S
        while self.runner.duty_cycles < target and not self.failed and time.monotonic() < deadline:
            time.sleep(0.001)

    # --- reads -------------------------------------------------------------------------------------------
    @property
    def market_data_address(self) -> tuple[str, int]:
        """Where market data packets go (host or multicast group, port)."""
        return self.publisher.destination

    @property
    def retransmission_address(self) -> tuple[str, int]:
        """The bound address of the retransmission server."""
        assert self.retransmitter is not None
        return self.retransmitter.address

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint, or "" when the exporter is off."""
        port = self.config.metrics_port
        return f"http://{LOOPBACK}:{port}/metrics" if port else ""

    def book_snapshot(self, locate: int) -> dict[str, list[tuple[int, list[tuple[int, int, int, int]]]]]:
        """The engine's book of ``locate`` (see MatchingEngine.book_snapshot); read it when quiescent."""
        return self.engine.book_snapshot(locate)

    def describe(self) -> str:
        """Where the exchange listens, one item a line."""
        cfg = self.config
        md = cfg.market_data
        host, port = self.market_data_address
        kind = f"multicast via {md.host}" if md.multicast_group else "unicast"
        rhost, rport = self.retransmission_address
        lines = [
            f"market data    udp {host}:{port} ({kind}; MoldUDP64 session {md.session}, "
            f"packets <= {md.max_packet_bytes} bytes)",
            f"retransmission udp {rhost}:{rport}",
            f"market data    aeron {md.aeron_channel} stream {md.aeron_stream_id} (the same packets)"
            if md.aeron_channel
            else "market data    aeron off",
            f"aeron dir      {self.driver.dir if self.driver else '-'}",
        ]
        lines += [
            f"order entry    user {u.username}: in {u.inbound_channel} stream {u.inbound_stream_id}, "
            f"out {u.outbound_channel} stream {u.outbound_stream_id} (OUCH session {cfg.order_entry.session})"
            for u in cfg.order_entry.users
        ]
        lines.append(f"metrics        {self.metrics_url or 'off'}")
        src = cfg.flow
        if isinstance(self.flow, ReplayFlow):
            lines.append(
                f"flow           replay {', '.join(src.files)} ({len(self.flow.events):,} events, speed {src.speed:g}, "
                f"start_s {src.start_s:g}, at end {src.at_end})"
            )
        else:
            lines.append(f"flow           synthetic (seed {cfg.seed}, warm-up {cfg.warm_up_s:g} s)")
        symbols = ", ".join(f"{i.locate}={i.symbol}" for i in cfg.listed())
        lines.append(f"instruments    {symbols}")
        return "\n".join(lines)

    def stats(self) -> dict[str, int]:
        """The exchange counters, sampled now (safe from any thread)."""
        pub, rtx = self.publisher.stats, self.retransmitter.stats if self.retransmitter else None
        c = self.counters
        return {
            "flow_requests": int(c[C_FLOW_REQUESTS]),
            "order_entry_requests": int(c[C_ORDER_ENTRY_REQUESTS]),
            "executions": int(c[C_EXECUTIONS]),
            "rejects": int(c[C_REJECTS]),
            "md_packets": pub.packets,
            "md_messages": pub.messages,
            "md_heartbeats": pub.heartbeats,
            "md_bytes": pub.bytes,
            "md_aeron_packets": pub.aeron_packets,
            "md_aeron_dropped": pub.aeron_dropped,
            "retransmission_requests": rtx.requests if rtx else 0,
            "retransmissions_served": rtx.served_requests if rtx else 0,
            "retransmitted_messages": rtx.messages if rtx else 0,
            "order_entry_sessions": sum(s.logged_in for s in self.order_entry.sessions),
            "order_entry_malformed": self.order_entry.malformed_messages,
            "order_entry_foreign_packets": self.order_entry.foreign_packets,
            "order_entry_refused_logins": self.order_entry.refused_logins,
            "order_entry_images_lost": self.order_entry.images_lost,
            "order_entry_protocol_violations": self.order_entry.protocol_violations,
            "order_entry_handler_errors": self.order_entry.handler_errors,
            "duty_cycles": self.runner.duty_cycles,
            "max_duty_cycle_ns": self.runner.max_duty_cycle_ns,
        } | self._replay_stats()

    def _replay_stats(self) -> dict[str, int]:
        """The replay flow's counters as ``replay_*`` stats (none for the synthetic flow)."""
        if not isinstance(self.flow, ReplayFlow):
            return {}
        return {f"replay_{name}": value for name, value in self.flow.stats().items()}

    def positions(self, usernames: list[str] | None = None) -> dict[str, dict[str, int]]:
        """The exchange's record of each OUCH user's executions: net shares per symbol (bought minus sold),
        by username (every user, or those given). Read it once the exchange has stopped."""
        from feeds import ouch

        out: dict[str, dict[str, int]] = {}
        for session in self.order_entry.sessions:
            if usernames is not None and session.port.username not in usernames:
                continue
            net = out.setdefault(session.port.username, {})
            orders: dict[int, tuple[str, int]] = {}
            for packet in session.sent:
                kind = chr(packet[1])
                if kind not in "AUE":
                    continue
                message = ouch.decode(ouch.OUTBOUND, packet[1:])
                if kind in "AU":
                    sign = 1 if message["side"] == ouch.SIDE_BUY else -1
                    orders[int(message["user_ref_num"])] = (str(message["symbol"]), sign)
                else:
                    symbol, sign = orders[int(message["user_ref_num"])]
                    net[symbol] = net.get(symbol, 0) + sign * int(message["quantity"])
        return out

    def report(self) -> dict:
        """What ``hftmm sim-exchange --report`` writes at exit: :meth:`stats`, :meth:`positions`, and per
        user the orders accepted and rejected (by OUCH reject reason)."""
        from feeds import ouch

        orders = {}
        for session in self.order_entry.sessions:
            rejected: dict[str, int] = {}
            accepted = 0
            for packet in session.sent:
                if packet[1] == ord("A"):
                    accepted += 1
                elif packet[1] == ord("J"):
                    reason = str(int(ouch.decode(ouch.OUTBOUND, packet[1:])["reason"]))
                    rejected[reason] = rejected.get(reason, 0) + 1
            orders[session.port.username] = {"accepted": accepted, "rejected": rejected}
        return {"stats": self.stats(), "positions": self.positions(), "orders": orders}


# --- metrics -------------------------------------------------------------------------------------------
_METRICS = (  # stats key, metric name, type, help
    ("flow_requests", "hftmm_sim_flow_requests", "counter", "requests of the background flow"),
    ("order_entry_requests", "hftmm_sim_order_entry_requests", "counter", "requests from OUCH sessions"),
    ("executions", "hftmm_sim_executions", "counter", "matches"),
    ("rejects", "hftmm_sim_rejects", "counter", "rejected requests"),
    ("md_packets", "hftmm_sim_md_packets", "counter", "MoldUDP64 data packets sent"),
    ("md_messages", "hftmm_sim_md_messages", "counter", "ITCH messages sent"),
    ("md_heartbeats", "hftmm_sim_md_heartbeats", "counter", "MoldUDP64 heartbeats sent"),
    ("md_bytes", "hftmm_sim_md_bytes", "counter", "market data bytes sent"),
    ("md_aeron_packets", "hftmm_sim_md_aeron_packets", "counter", "MoldUDP64 packets offered on Aeron"),
    ("md_aeron_dropped", "hftmm_sim_md_aeron_dropped", "counter", "MoldUDP64 packets not put on Aeron"),
    ("retransmission_requests", "hftmm_sim_retransmission_requests", "counter", "re-requests received"),
    ("retransmissions_served", "hftmm_sim_retransmissions_served", "counter", "re-requests answered"),
    ("retransmitted_messages", "hftmm_sim_retransmitted_messages", "counter", "messages sent again"),
    ("order_entry_sessions", "hftmm_sim_order_entry_sessions", "gauge", "logged-in OUCH sessions"),
    ("order_entry_malformed", "hftmm_sim_order_entry_malformed", "counter", "OUCH messages rejected as malformed"),
    (
        "order_entry_foreign_packets",
        "hftmm_sim_order_entry_foreign_packets",
        "counter",
        "packets on a logged-in user's stream from another image, dropped",
    ),
    (
        "order_entry_refused_logins",
        "hftmm_sim_order_entry_refused_logins",
        "counter",
        "logins refused because the user's session was live",
    ),
    (
        "order_entry_images_lost",
        "hftmm_sim_order_entry_images_lost",
        "counter",
        "sessions ended because their client's Aeron image went away",
    ),
    (
        "order_entry_protocol_violations",
        "hftmm_sim_order_entry_protocol_violations",
        "counter",
        "sessions logged out for a protocol violation",
    ),
    (
        "order_entry_handler_errors",
        "hftmm_sim_order_entry_handler_errors",
        "counter",
        "sessions ended because handling their packet failed",
    ),
    ("duty_cycles", "hftmm_sim_duty_cycles", "counter", "runner duty cycles"),
    ("max_duty_cycle_ns", "hftmm_sim_max_duty_cycle_ns", "gauge", "longest runner duty cycle, ns"),
)


class SimExchangeCollector(Collector):
    """Prometheus collector: samples :meth:`SimExchange.stats` when scraped (off the hot path)."""

    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange

    def collect(self) -> Iterator[Metric]:
        """One metric family per exchange counter."""
        stats = self.exchange.stats()
        for key, name, kind, help_text in _METRICS:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=stats[key])
        for key, value in stats.items():  # the replay flow's counters (engine.simexchange.replayflow_nb), when it runs
            if key.startswith("replay_"):
                family = GaugeMetricFamily if key == "replay_events_left" else CounterMetricFamily
                yield family(f"hftmm_sim_{key}", f"replay flow: {key[7:].replace('_', ' ')}", value=value)
