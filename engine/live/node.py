"""A trading node: one single-threaded busy-polling loop, pinned to a CPU, in its own (Ray actor) process.

The hot path is ONE compiled loop (``engine.live.loop_nb.run_nb``, see its doc): the market-data
socket, MoldUDP64 sequencing and ITCH decode, the order-entry subscription, journal, book, strategy,
plan, risk, OUCH encode and the Aeron offer, without a return to Python per tick. One duty cycle of
:class:`TradingNode` (an agent; an :class:`~engine.runtime.agent.AgentRunner` thread owns the loop)
enters that loop and handles why it returned::

    run_nb                   until something is rare or slow by nature (an RC_* code)
    MoldReceiver.maintain    a datagram out of order: buffering, re-requests, give-up; rows it delivers
    OrderEntryClient.do_work login answers, logout, reconnect after silence
    node_nb.step_nb          for rows the receiver delivered, a halt change, stop or kill
    housekeeping             every PUBLISH_INTERVAL_NS: feed counters, capture flush, state

A node that records a capture (``engine.live.capture``) runs the same pieces from Python each cycle
instead (every datagram and step is recorded with its inputs), as it does while Aeron pushes back.

A feed gap (or messages given up as lost) halts the node: it cancels its orders and quotes nothing
until retransmission has closed the gap (after a loss, until it stops, since the book can no longer
be trusted). Until the order-entry session is logged in the node is halted too.

Control (:class:`ControlBlock`, ``/dev/shm/<name>``, int64 slots) is written by the daemon and read
each cycle: ``CT_STOP`` (cancel everything, wait for the acknowledgements up to ``stop_wait_s``,
then finish), ``CT_KILL`` (the kill switch: cancel everything, quote no more, keep running). The
node writes its ``CT_STATE``, its process id (``CT_PID``) and its next client order id (``CT_NEXT_ID``,
so a restarted node continues above it: OUCH UserRefNums must rise within a session).

:class:`NodeProcess` is the Ray actor: ``run()`` starts the runner, waits for the node to finish and
returns its report (a dict, the one pickle of the session).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque

import numpy as np

from engine.book.book_nb import grow_state
from engine.book.layout import new_state
from engine.core.events import empty_events
from engine.core.units import NS_PER_S
from engine.gateway.aeron_c import INBOX_HANDLER
from engine.gateway.client import LOGGED_IN, ClientConfig, OrderEntryClient
from engine.live import layout as L
from engine.live.builder import (
    NodeBlocks,
    NodeSpec,
    QuoteAddress,
    build_state,
    completed_probes,
    load_kernel,
    load_loop,
    loop_state,
    run_step,
)
from engine.live.capture import FL_KILLED, FL_STOPPING, CaptureWriter, spec_json
from engine.live.node_nb import publish_nb
from engine.live.report import bucket_percentile_ns, symbol_reports
from engine.runtime import control as CB
from engine.runtime import metrics as M
from engine.runtime.affinity import MCL_CURRENT, freeze_gc, lock_memory, normal_priority, pin_process, plan_placement
from engine.runtime.agent import AgentRunner
from engine.trading import layout as TL
from engine.trading.oms import working_count_nb
from feeds.udp import MoldReceiver
from strategies import get_strategy

log = logging.getLogger("hftmm.node")

PUBLISH_INTERVAL_NS = 100_000_000  # refresh of the feed and loop counters in the metrics block (a scrape's grain)
IDLE_LIMIT = 64  # cycles without work after which the loop lets the runner's idle strategy (not spin) act


class TradingNode:
    """The agent: receiver, order-entry client and compiled step of one node (see the module doc)."""

    role_name = "trading-node"

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.finished = threading.Event()
        self.placement_note = ""
        self._rows: np.ndarray | None = None
        self._backlog: deque[bytes] = deque()  # packets Aeron refused; offered first next cycle
        self._back_pressure = 0
        self._slow_datagrams = 0  # datagrams the compiled loop handed to the Python receiver
        self._cycles = 0
        self._max_cycle_ns = 0
        self._risk_logged = 0
        self._stop_started_ns = 0
        self._killed_seen = False
        self._halted = -1
        self._risk_counts = np.zeros((len(spec.instruments), len(TL.RISK_REASONS)), np.int64)
        self._hist = np.zeros((1 + len(L.STAGES), M.HIST_WIDTH), np.int64)
        self._journal_full = 0
        self._next_publish_ns = 0

    # --- agent --------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Pin this (the runner's) thread, attach the blocks, open the feed and the session, load the kernel."""
        spec = self.spec
        placement = plan_placement(spec.cpu)
        pin_process(placement)
        self.placement_note = f"{placement.note}; {normal_priority()}"
        self.blocks = NodeBlocks.attach(spec)
        self.blocks.control.slots[CB.CT_PID] = os.getpid()
        self.client = OrderEntryClient(spec.aeron_dir, ClientConfig(spec.port))
        recovered = spec.recovered
        # log in from the first response the journal lacks; a node without a journal from the next message
        self.client.next_sequence = recovered.next_sequence if recovered is not None else 0
        self.client.connect()
        self.receiver = MoldReceiver(
            self._on_rows,
            spec.md_bind,
            multicast_group=spec.multicast_group or None,
            retransmit=spec.retransmit,
            receive_clock_ns=time.monotonic_ns,
        )
        self.book = new_state()
        self.journal = self.blocks.journal
        self.ns = build_state(spec, self.blocks)
        self.capture: CaptureWriter | None = None
        if spec.capture:
            ns = self.ns
            tables = {"own": ns.own, "oc": ns.oc, "inst": ns.inst, "money": ns.money}
            self.capture = CaptureWriter(spec.capture, spec_json(spec), tables, ns.inst[:, TL.IN_LOCATE].copy())
            self.receiver.tap = self.capture.packet
        self.quote = QuoteAddress(get_strategy(spec.strategy).quote)
        self._no_events = empty_events(0)
        self._step_nb = load_kernel(self.ns, self.book)
        self.lp: L.LoopState | None = None
        if self.capture is None:
            self.lp = self._loop_state()
            self._run_nb = load_loop(self.ns, self.lp, self.book)
        freeze_gc()
        log.info("node %s: %s", spec.name, placement.note)
        if spec.lock_memory:  # pages present now stay in RAM; Ray's later object-store maps are left alone
            locked = lock_memory(MCL_CURRENT)
            log.info("node %s: memory %s", spec.name, "locked" if locked.locked else f"not locked ({locked.reason})")

    def _on_rows(self, rows: np.ndarray) -> None:
        self._rows = rows

    def _loop_state(self) -> L.LoopState:
        """The arrays the compiled loop shares with the receiver and the client (rebuilt when one is replaced)."""
        spec, client = self.spec, self.client
        lp = loop_state(self.receiver, client, self.lp)
        ls = lp.ls
        ls[L.LS_FD] = self.receiver.sock.fileno()
        ls[L.LS_HANDLER] = INBOX_HANDLER.address
        ls[L.LS_FRAGMENT_LIMIT] = client.config.fragment_limit
        ls[L.LS_HEARTBEAT_NS] = client.config.heartbeat_interval_ns
        ls[L.LS_TIMEOUT_NS] = client.config.timeout_ns
        ls[L.LS_IDLE_LIMIT] = 0 if spec.idle == "spin" else IDLE_LIMIT
        ls[L.LS_JOURNAL] = int(bool(spec.journal))
        return lp

    def do_work(self) -> int:
        """One duty cycle; returns the work count."""
        begin = time.monotonic_ns()
        work = self._flush_backlog() if self._backlog else 0
        if self.lp is not None and not self._backlog:
            work += self._run_loop()
            work += self.receiver.maintain()
        else:
            work += self.receiver.do_work()
        fed = time.monotonic_ns()
        work += self.client.do_work()
        ns = self.ns
        mi = ns.mi
        control = ns.control
        halted = int(self.receiver.gap_open or self.receiver.stats.lost_messages > 0 or self.client.state != LOGGED_IN)
        if halted != self._halted:
            mi[L.NI_HALT] = self._halted = halted
            work += 1
        if control[CB.CT_KILL] and not self._killed_seen:
            self._killed_seen = True
            ns.rstate[TL.RS_KILLED] = 1.0
            work += 1
        if control[CB.CT_STOP] and not mi[L.NI_STOP]:
            mi[L.NI_STOP] = 1
            control[CB.CT_STATE] = CB.ST_STOPPING
            self._stop_started_ns = begin
            work += 1
        rows = self._rows
        if rows is not None or self.client.n_responses or begin >= mi[L.NI_NEXT_WAKE] or work:
            mi[L.NI_DECODED_NS] = fed if rows is not None else 0
            work += self._step(rows if rows is not None else self._no_events)
        if mi[L.NI_STOP]:
            self._check_finished(begin)
        elif control[CB.CT_STATE] == CB.ST_STARTING and self.client.state == LOGGED_IN and self.receiver.stats.messages:
            control[CB.CT_STATE] = CB.ST_RUNNING
        self._cycles += 1
        elapsed = time.monotonic_ns() - begin
        self._max_cycle_ns = max(self._max_cycle_ns, elapsed)
        if begin >= self._next_publish_ns:
            self._publish_feed()
            self._next_publish_ns = begin + PUBLISH_INTERVAL_NS
            if self.capture is not None and self.capture.due(begin):
                self.capture.flush()
        return work

    def _run_loop(self) -> int:
        """Enter the compiled loop and hand what made it return to the Python side; returns 1."""
        lp = self.lp
        if lp.responses is not self.client.responses:  # the client grew its response rows
            lp = self.lp = self._loop_state()
        ls = lp.ls
        ls[L.LS_DUE_NS] = self._next_publish_ns
        ls[L.LS_KILL_SEEN] = int(self._killed_seen)
        ls[L.LS_RISK_LOGGED] = self._risk_logged
        rc = self._run_nb(self.ns, lp, self.book, self.quote)
        while rc == L.RC_GROW:
            self.book = grow_state(self.book)
            rc = self._run_nb(self.ns, lp, self.book, self.quote)
        if rc in (L.RC_DATAGRAM, L.RC_FEED_ERROR):  # sequenced (and for an error, reported) as Python does
            self._slow_datagrams += 1
            self.receiver.on_packet(memoryview(lp.slot)[: ls[L.LS_LENGTH]], int(ls[L.LS_TS_NS]))
        elif rc == L.RC_BACKLOG:
            out, offsets = memoryview(self.ns.out), self.ns.out_off
            for j in range(int(ls[L.LS_BACKLOG]), int(ls[L.LS_COUNT])):
                self._backlog.append(bytes(out[offsets[j] : offsets[j + 1]]))
        elif rc == L.RC_LOG:
            self._log_rejections()
        return 1

    def _step(self, rows: np.ndarray) -> int:
        """Run the compiled step (growing the book when it asks) and offer what it wrote."""
        ns = self.ns
        self._rows = None
        t0 = time.monotonic_ns()
        client = self.client
        n = client.n_responses
        if n:
            self.journal.append_responses(client.responses[:n], client.next_sequence - n, t0)
        count, self.book = run_step(self._step_nb, ns, self.book, rows, client.responses, n, t0, self.quote)
        client.n_responses = 0
        if not self.spec.journal:
            self.journal.discard()
        if self.capture is not None:
            flags = int(ns.mi[L.NI_HALT] != 0) | FL_STOPPING * int(ns.mi[L.NI_STOP] != 0)
            flags |= FL_KILLED * self._killed_seen
            self.capture.step(t0, flags, len(rows), self.receiver.stats.lost_messages, client.responses[:n],
                              client.next_sequence - n, self.book, ns.out, ns.out_off, count)  # fmt: skip
        if count:
            out = memoryview(ns.out)
            offsets = ns.out_off
            for j in range(count):
                packet = out[offsets[j] : offsets[j + 1]]
                if j == 0:  # tick-to-trade ends as the first order is handed to Aeron (visible to the reader at once)
                    ns.mi[L.NI_OFFER_NS] = time.monotonic_ns()
                if self._backlog or not client.offer_packet(packet):
                    self._back_pressure += 1
                    self._backlog.append(bytes(packet))
        if ns.rstate[TL.RS_LOGGED] > self._risk_logged:
            self._log_rejections()
        return count + 1

    def _flush_backlog(self) -> int:
        sent = 0
        while self._backlog and self.client.offer_packet(memoryview(self._backlog[0])):
            self._backlog.popleft()
            sent += 1
        return sent

    def _check_finished(self, now_ns: int) -> None:
        """While stopping: finished once nothing is working (every cancel acknowledged) or the wait is over."""
        if self.finished.is_set():
            return
        waited = now_ns - self._stop_started_ns >= self.spec.stop_wait_s * NS_PER_S
        if waited or (not self._backlog and working_count_nb(self.ns.own) == 0):
            self._publish_feed()
            self.ns.control[CB.CT_STATE] = CB.ST_DONE
            self.finished.set()

    def _publish_feed(self) -> None:
        """Counters, gauges, feed and loop figures into the metrics block (off the per-message path)."""
        publish_nb(self.ns)
        node = self.ns.node
        stats = self.receiver.stats
        node[M.N_MD_MESSAGES] = stats.messages
        node[M.N_MD_PACKETS] = stats.packets
        node[M.N_MD_GAPS] = stats.gaps
        node[M.N_MD_MISSING] = max(0, stats.missing_messages - stats.recovered_messages - stats.lost_messages)
        node[M.N_AERON_BACK_PRESSURE] = self._back_pressure + self._loop_figure(L.LS_BACK_PRESSURE)
        node[M.N_DUTY_CYCLES] = self._duty_cycles()
        node[M.N_MAX_DUTY_CYCLE_NS] = self._max_duty_cycle_ns()

    def _loop_figure(self, slot: int) -> int:
        return int(self.lp.ls[slot]) if self.lp is not None else 0

    def _duty_cycles(self) -> int:
        """Cycles of the compiled loop and of the Python duty cycle."""
        return self._cycles + self._loop_figure(L.LS_CYCLES)

    def _max_duty_cycle_ns(self) -> int:
        """The longest cycle of the compiled loop, or of the Python one where that ran alone."""
        return self._loop_figure(L.LS_MAX_CYCLE_NS) if self.lp is not None else self._max_cycle_ns

    def _log_rejections(self) -> None:
        """Log the risk rejections the step recorded since the last look (the ring keeps the latest)."""
        rlog = self.ns.rlog
        total = int(self.ns.rstate[TL.RS_LOGGED])
        for n in range(max(self._risk_logged, total - len(rlog)), total):
            row = rlog[n % len(rlog)]
            log.warning(
                "node %s: risk rejected %s %s %d lots at %d: %s",
                self.spec.name,
                "buy" if row[TL.LG_SIDE] > 0 else "sell",
                self.spec.instruments[int(row[TL.LG_INSTRUMENT])].symbol,
                int(row[TL.LG_LOTS]),
                int(row[TL.LG_PRICE]),
                TL.RISK_REASONS[int(row[TL.LG_REASON])],
            )
        self._risk_logged = total

    def on_close(self) -> None:
        """Log out, close the feed and the Aeron client, detach the blocks."""
        self.client.on_close()
        self.receiver.on_close()
        if self.capture is not None:
            self.capture.close()
        self._journal_full = self.journal.full_stops
        self._risk_counts = self.ns.risk_counts.copy()
        self._hist = self.ns.hist.copy()
        self.ns = self.ns._replace(node=None, counters=None, gauges=None, risk_counts=None, hist=None,
                                   control=None, control_next_id=None, jmeta=None, jdata=None, jctl=None)  # fmt: skip
        self.blocks.close()

    # --- the report ---------------------------------------------------------------------------------
    def report(self) -> dict:
        """What the node did: per symbol orders, replaces, fills, fees, position, PnL (net of fees), rejections;
        latency samples; feed."""
        ns = self.ns
        symbols = symbol_reports(self.spec, ns.inst, ns.money, self._risk_counts)
        stats = self.receiver.stats
        probes = completed_probes(ns)
        return {
            "node": self.spec.name,
            "symbols": symbols,
            "t2t_ns": probes[:, L.PR_OFFERED_NS] - probes[:, L.PR_RECV_NS],
            "probes": probes,
            "unknown_responses": int(ns.oc[TL.OC_UNKNOWN]),
            "duplicate_responses": int(ns.oc[TL.OC_DUPLICATE]),
            "session": {
                "state": self.client.state,
                "logout_reason": self.client.logout_reason,
                "login_reject_reason": self.client.login_reject_reason,
            },
            "responses": int(ns.oc[TL.OC_RESPONSES]),
            "order_table_full": int(ns.oc[TL.OC_FULL_TABLE]),
            "journal_full_stops": self._journal_full,
            "orders_written_off": int(ns.oc[TL.OC_WRITTEN_OFF]),
            "working_orders_left": int(working_count_nb(ns.own)),
            "killed": bool(ns.rstate[TL.RS_KILLED]),
            "strategy_calls": int(ns.oc[TL.OC_CALLS]),
            "md_messages": stats.messages,
            "md_packets": stats.packets,
            "md_gaps": stats.gaps,
            "md_recovered_messages": stats.recovered_messages,
            "md_lost_messages": stats.lost_messages,
            "md_slow_datagrams": self._slow_datagrams,
            "duty_cycles": self._duty_cycles(),
            "max_duty_cycle_ns": self._max_duty_cycle_ns(),
            "placement": self.placement_note,
            "stage_ns": {
                stage: {f"p{q}": bucket_percentile_ns(self._hist[1 + j], q) for q in (50, 99)}
                for j, stage in enumerate(L.STAGES)
            },
        }


class NodeProcess:
    """The Ray actor hosting one node: ``run()`` returns the report once the node finished."""

    def __init__(self, spec: NodeSpec) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        with contextlib.suppress(ValueError):  # Ctrl-C reaches the whole process group: the daemon handles it
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.spec = spec

    def run(self) -> dict:
        """Run the node on its own pinned runner thread until the daemon stops it; its report."""
        node = TradingNode(self.spec)
        runner = AgentRunner(node, idle=self.spec.idle, name=f"node-{self.spec.name}")
        runner.start()
        while not node.finished.wait(0.2) and runner.error is None:
            pass
        runner.close()
        return node.report()
