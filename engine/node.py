"""A trading node: one single-threaded busy-polling loop, pinned to a CPU, in its own (Ray actor) process.

One duty cycle of :class:`TradingNode` (an agent; an :class:`~engine.agent.AgentRunner` thread owns
the loop)::

    MoldReceiver.do_work     UDP datagrams -> decode_packet_nb, one call per packet -> event rows
    OrderEntryClient.do_work OUCH responses from Aeron -> decode_outbound_nb rows
    node_nb.step_nb          ONE call: responses -> book -> strategy -> plan -> risk -> OUCH bytes
    offer_packet per message Aeron publication (the exchange's order entry)

No Ray call, pickle or Python object is made per market-data message: the receiver hands over one
view of its row buffer per cycle. The step only runs when a batch, a response, a due strategy timer
or a control change asks for it. A feed gap (or messages given up as lost) halts the node: it
cancels its orders and quotes nothing until retransmission has closed the gap (after a loss, until
it stops, since the book can no longer be trusted). Until the order-entry session is logged in the
node is halted too.

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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import typeof, types
from numba.core.dispatcher import Dispatcher

from engine import node_nb as k
from engine.aeron import connect
from engine.affinity import MCL_CURRENT, freeze_gc, lock_memory, normal_priority, pin_process, plan_placement
from engine.agent import AgentRunner
from engine.book_nb import grow_state, new_state
from engine.capture import FL_KILLED, FL_STOPPING, CaptureWriter, spec_json
from engine.events import empty_events
from engine.journal import JournalRing, Recovered
from engine.metrics import (
    BUCKET_BOUNDS_NS,
    HIST_WIDTH,
    N_AERON_BACK_PRESSURE,
    N_BUCKETS,
    N_DUTY_CYCLES,
    N_MAX_DUTY_CYCLE_NS,
    N_MD_GAPS,
    N_MD_MESSAGES,
    N_MD_MISSING,
    N_MD_PACKETS,
    MetricsBlock,
)
from engine.node_nb import STAGES
from engine.oms import (
    IN_ACCEPTED,
    IN_CANCELED,
    IN_CANCELS,
    IN_FILLS,
    IN_LOCATE,
    IN_LOT,
    IN_ORDERS,
    IN_POSITION,
    IN_REJECTS,
    IN_REPLACES,
    IN_TICK,
    MN_AVG_PRICE,
    MN_CASH,
    MN_FEES,
    MN_MAKER_FEE,
    MN_MID,
    MN_REALIZED,
    MN_TAKER_FEE,
    MN_UNIT,
    N_IN,
    N_MN,
    OC_DUPLICATE,
    OC_FULL_TABLE,
    OC_RESPONSES,
    OC_UNKNOWN,
    OC_WRITTEN_OFF,
    new_counters,
    new_orders,
    working_count_nb,
)
from engine.orderentry import LOGGED_IN, ClientConfig, OrderEntryClient, Port
from engine.quoting_nb import new_actions
from engine.risk import (
    LG_INSTRUMENT,
    LG_LOTS,
    LG_PRICE,
    LG_REASON,
    LG_SIDE,
    RISK_REASONS,
    RS_KILLED,
    RS_LOGGED,
    RiskConfig,
    new_risk_log,
    new_risk_state,
)
from engine.view_nb import new_flow
from feeds import ouch
from feeds.udp import MoldReceiver
from strategies import get_strategy
from strategies.api import DEPTH, QUOTE_FN, QUOTE_SIG, new_quotes, new_view

log = logging.getLogger("hftmm.node")

SHM_DIR = "/dev/shm"
CT_STOP, CT_KILL, CT_STATE, CT_NEXT_ID, CT_PID = range(5)
CT_SLOTS = 8
ST_STARTING, ST_RUNNING, ST_STOPPING, ST_DONE = range(4)
STATE_NAMES = ("starting", "running", "stopping", "done")
PROBES = 1 << 16  # tick-to-trade probe rows a node keeps (the latest)
MAX_MESSAGES = 64  # OUCH messages one step may write
PUBLISH_INTERVAL_NS = 100_000_000  # refresh of the feed and loop counters in the metrics block (a scrape's grain)
NS_PER_S = 1_000_000_000
PRICE_UNIT = 1e-4  # OUCH and ITCH prices: 1e-4 currency units


class ControlBlock:
    """A few int64 slots in ``/dev/shm/<name>`` the daemon and one node share (see the module doc)."""

    def __init__(self, name: str, create: bool) -> None:
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        self.owner = create
        self.slots = np.memmap(self.path, np.int64, "w+" if create else "r+", shape=(CT_SLOTS,))
        if create:
            self.slots[:] = 0

    def close(self) -> None:
        """Drop the mapping (unmapped with its last view); the creator also removes the file."""
        self.slots = np.zeros(CT_SLOTS, np.int64)
        if self.owner and os.path.exists(self.path):
            os.unlink(self.path)
        self.owner = False


@dataclass(frozen=True)
class NodeInstrument:
    """One instrument a node trades: OUCH symbol, ITCH locate, tick (price units) and lot (shares)."""

    symbol: str
    locate: int
    tick: int
    lot: int


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node process needs (built by ``engine.live`` from the config; pickled once to Ray)."""

    name: str
    strategy: str
    params: dict[str, float]
    instruments: tuple[NodeInstrument, ...]
    md_bind: tuple[str, int]  # where the MoldUDP64 datagrams arrive
    multicast_group: str  # "" = unicast
    retransmit: tuple[str, int]
    aeron_dir: str
    port: Port  # the OUCH session
    risk: RiskConfig
    metrics_block: str
    control_block: str
    cpu: int = -1
    idle: str = "spin"
    post_only: bool = True
    lock_memory: bool = False
    order_rows: int = 32  # order rows per instrument
    first_order_id: int = 1
    stop_wait_s: float = 5.0
    journal: str = ""  # the journal ring in /dev/shm ("": no journal; the node empties its own ring)
    capture: str = ""  # the session capture file the node records to ("": none; engine.capture)
    recovered: Recovered | None = None  # a restarted node's tables, rebuilt from the journal
    maker_fee: float = 0.0  # fraction of the traded value of an execution that added liquidity (< 0: rebate)
    taker_fee: float = 0.0  # the same for every other execution
    replace: bool = True  # requotes as OUCH Replace Orders (False: cancel + enter)


def fresh_tables(spec: NodeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A node's order-management tables before its first order: own, oc, inst, money (with the fee rates)."""
    n = len(spec.instruments)
    inst = np.zeros((n, N_IN), np.int64)
    money = np.zeros((n, N_MN), np.float64)
    for i, instrument in enumerate(spec.instruments):
        inst[i, IN_LOCATE], inst[i, IN_TICK], inst[i, IN_LOT] = instrument.locate, instrument.tick, instrument.lot
        money[i, MN_UNIT] = PRICE_UNIT
        money[i, MN_MID] = np.nan
        money[i, MN_MAKER_FEE], money[i, MN_TAKER_FEE] = spec.maker_fee, spec.taker_fee
    return new_orders(n, spec.order_rows), new_counters(spec.first_order_id), inst, money


def build_state(spec: NodeSpec, block: MetricsBlock, control: ControlBlock, journal: JournalRing) -> k.NodeState:
    """The node's arrays: order tables (fresh, or recovered), OMS, risk, strategy scratch, buffers, shared views."""
    strategy = get_strategy(spec.strategy)
    n = len(spec.instruments)
    if spec.recovered is None:
        own, oc, inst, money = fresh_tables(spec)
    else:
        got = spec.recovered
        own, oc, inst, money = got.own.copy(), got.oc.copy(), got.inst.copy(), got.money.copy()
    symbols = np.zeros((n, 8), np.uint8)
    for i, instrument in enumerate(spec.instruments):
        symbols[i] = ouch.alpha(instrument.symbol, 8)
    limits = spec.risk.limits()
    mi = np.zeros(k.N_NI, np.int64)
    mi[k.NI_POST_ONLY] = int(spec.post_only)
    mi[k.NI_REPLACE] = int(spec.replace)
    return k.NodeState(
        own=own,
        oc=oc,
        inst=inst,
        money=money,
        flow=new_flow(n),
        symbols=symbols,
        cl_ord_id=ouch.alpha("", 14),
        limits=limits,
        rstate=new_risk_state(limits),
        rlog=new_risk_log(),
        mi=mi,
        next_call=np.zeros(n, np.int64),
        last_call=np.full(n, -1, np.int64),
        dirty=np.zeros(n, np.int64),
        scratch=np.zeros((3, n), np.float64),
        sview=new_view(),
        params=strategy.param_array(spec.params),
        sstate=np.zeros((n, strategy.state_size), np.float64),
        quotes=new_quotes(),
        depth=np.zeros((DEPTH, 3), np.int64),
        actions=new_actions(spec.order_rows),
        out=np.zeros(MAX_MESSAGES * k.MESSAGE_BYTES, np.uint8),
        out_off=np.zeros(MAX_MESSAGES + 1, np.int64),
        probes=np.zeros((PROBES, k.N_PR), np.int64),
        jmeta=journal.meta,
        jdata=journal.data,
        jctl=journal.ctl,
        node=block.node,
        counters=block.instrument_counters,
        gauges=block.instrument_gauges,
        risk_counts=block.risk_rejections,
        hist=block.histograms,
        control=control.slots.view(np.ndarray),
        control_next_id=control.slots.view(np.ndarray)[CT_NEXT_ID : CT_NEXT_ID + 1],
    )


def load_kernel(ns: k.NodeState, book) -> Callable:
    """Compile (or load from Numba's cache) the one step kernel every strategy shares; its entry point.

    The entry point is called with the compiled signature's arguments only: it skips the dispatcher's
    type resolution, which costs far more than the step itself on a quiet book (pass the strategy
    as a :class:`QuoteAddress`)."""
    signature = (typeof(ns), typeof(book), typeof(empty_events(1)), typeof(ouch.empty_responses(1)), typeof(0),
                 typeof(0), QUOTE_FN)  # fmt: skip
    if not k.step_nb.overloads:
        k.step_nb.compile(signature)
    k.step_nb.disable_compile()
    return k.step_nb.overloads[signature].entry_point


class QuoteAddress(types.WrapperAddressProtocol):
    """A strategy's compiled quote function as its bare address, found once (Numba's own lookup, done
    at every call for a dispatcher argument, costs tens of microseconds)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        result = dispatcher.get_compile_result(QUOTE_SIG)
        self.dispatcher = dispatcher  # keeps the code alive
        self.address = result.library.get_pointer_to_function(result.fndesc.llvm_cfunc_wrapper_name)

    def __wrapper_address__(self) -> int:
        """The address of the compiled function."""
        return self.address

    def signature(self) -> object:
        """``strategies.api.QUOTE_SIG``."""
        return QUOTE_SIG


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
        self._cycles = 0
        self._max_cycle_ns = 0
        self._risk_logged = 0
        self._stop_started_ns = 0
        self._killed_seen = False
        self._halted = -1
        self._risk_counts = np.zeros((len(spec.instruments), len(RISK_REASONS)), np.int64)
        self._hist = np.zeros((1 + len(STAGES), HIST_WIDTH), np.int64)
        self._journal_full = 0
        self._next_publish_ns = 0

    # --- agent --------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Pin this (the runner's) thread, attach the blocks, open the feed and the session, load the kernel."""
        spec = self.spec
        placement = plan_placement(spec.cpu)
        pin_process(placement)
        self.placement_note = f"{placement.note}; {normal_priority()}"
        self.block = MetricsBlock.attach(spec.metrics_block)
        self.control = ControlBlock(spec.control_block, create=False)
        self.control.slots[CT_PID] = os.getpid()
        self.aeron = connect(spec.aeron_dir)
        self.client = OrderEntryClient(self.aeron, ClientConfig(spec.port))
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
        self.journal = JournalRing.attach(spec.journal) if spec.journal else JournalRing.private()
        self.ns = build_state(spec, self.block, self.control, self.journal)
        self.capture: CaptureWriter | None = None
        if spec.capture:
            ns = self.ns
            tables = {"own": ns.own, "oc": ns.oc, "inst": ns.inst, "money": ns.money}
            self.capture = CaptureWriter(spec.capture, spec_json(spec), tables, ns.inst[:, IN_LOCATE].copy())
            self.receiver.tap = self.capture.packet
        self.quote = QuoteAddress(get_strategy(spec.strategy).quote)
        self._no_events = empty_events(0)
        self._step_nb = load_kernel(self.ns, self.book)
        freeze_gc()
        log.info("node %s: %s", spec.name, placement.note)
        if spec.lock_memory:  # pages present now stay in RAM; Ray's later object-store maps are left alone
            locked = lock_memory(MCL_CURRENT)
            log.info("node %s: memory %s", spec.name, "locked" if locked.locked else f"not locked ({locked.reason})")

    def _on_rows(self, rows: np.ndarray) -> None:
        self._rows = rows

    def do_work(self) -> int:
        """One duty cycle; returns the work count."""
        begin = time.monotonic_ns()
        work = self._flush_backlog() if self._backlog else 0
        work += self.receiver.do_work()
        fed = time.monotonic_ns()
        work += self.client.do_work()
        ns = self.ns
        mi = ns.mi
        control = ns.control
        halted = int(self.receiver.gap_open or self.receiver.stats.lost_messages > 0 or self.client.state != LOGGED_IN)
        if halted != self._halted:
            mi[k.NI_HALT] = self._halted = halted
            work += 1
        if control[CT_KILL] and not self._killed_seen:
            self._killed_seen = True
            ns.rstate[RS_KILLED] = 1.0
            work += 1
        if control[CT_STOP] and not mi[k.NI_STOP]:
            mi[k.NI_STOP] = 1
            control[CT_STATE] = ST_STOPPING
            self._stop_started_ns = begin
            work += 1
        rows = self._rows
        if rows is not None or self.client.n_responses or begin >= mi[k.NI_NEXT_WAKE] or work:
            mi[k.NI_DECODED_NS] = fed if rows is not None else 0
            work += self._step(rows if rows is not None else self._no_events)
        if mi[k.NI_STOP]:
            self._check_finished(begin)
        elif control[CT_STATE] == ST_STARTING and self.client.state == LOGGED_IN and self.receiver.stats.messages:
            control[CT_STATE] = ST_RUNNING
        self._cycles += 1
        elapsed = time.monotonic_ns() - begin
        self._max_cycle_ns = max(self._max_cycle_ns, elapsed)
        if begin >= self._next_publish_ns:
            self._publish_feed()
            self._next_publish_ns = begin + PUBLISH_INTERVAL_NS
            if self.capture is not None and self.capture.due(begin):
                self.capture.flush()
        return work

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
            flags = int(ns.mi[k.NI_HALT] != 0) | FL_STOPPING * int(ns.mi[k.NI_STOP] != 0)
            flags |= FL_KILLED * self._killed_seen
            self.capture.step(t0, flags, len(rows), self.receiver.stats.lost_messages, client.responses[:n],
                              client.next_sequence - n, self.book, ns.out, ns.out_off, count)  # fmt: skip
        if count:
            out = memoryview(ns.out)
            offsets = ns.out_off
            for j in range(count):
                packet = out[offsets[j] : offsets[j + 1]]
                if j == 0:  # tick-to-trade ends as the first order is handed to Aeron (visible to the reader at once)
                    ns.mi[k.NI_OFFER_NS] = time.monotonic_ns()
                if self._backlog or not client.offer_packet(packet):
                    self._back_pressure += 1
                    self._backlog.append(bytes(packet))
        if ns.rstate[RS_LOGGED] > self._risk_logged:
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
            self.ns.control[CT_STATE] = ST_DONE
            self.finished.set()

    def _publish_feed(self) -> None:
        """Feed and loop counters into the metrics block (off the per-message path)."""
        node = self.ns.node
        stats = self.receiver.stats
        node[N_MD_MESSAGES] = stats.messages
        node[N_MD_PACKETS] = stats.packets
        node[N_MD_GAPS] = stats.gaps
        node[N_MD_MISSING] = max(0, stats.missing_messages - stats.recovered_messages - stats.lost_messages)
        node[N_AERON_BACK_PRESSURE] = self._back_pressure
        node[N_DUTY_CYCLES] = self._cycles
        node[N_MAX_DUTY_CYCLE_NS] = self._max_cycle_ns

    def _log_rejections(self) -> None:
        """Log the risk rejections the step recorded since the last look (the ring keeps the latest)."""
        rlog = self.ns.rlog
        total = int(self.ns.rstate[RS_LOGGED])
        for n in range(max(self._risk_logged, total - len(rlog)), total):
            row = rlog[n % len(rlog)]
            log.warning(
                "node %s: risk rejected %s %s %d lots at %d: %s",
                self.spec.name,
                "buy" if row[LG_SIDE] > 0 else "sell",
                self.spec.instruments[int(row[LG_INSTRUMENT])].symbol,
                int(row[LG_LOTS]),
                int(row[LG_PRICE]),
                RISK_REASONS[int(row[LG_REASON])],
            )
        self._risk_logged = total

    def on_close(self) -> None:
        """Log out, close the feed and the Aeron client, detach the blocks."""
        self.client.on_close()
        self.receiver.on_close()
        self.aeron.close()
        if self.capture is not None:
            self.capture.close()
        self._journal_full = self.journal.full_stops
        self._risk_counts = self.ns.risk_counts.copy()
        self._hist = self.ns.hist.copy()
        self.ns = self.ns._replace(node=None, counters=None, gauges=None, risk_counts=None, hist=None,
                                   control=None, control_next_id=None, jmeta=None, jdata=None, jctl=None)  # fmt: skip
        self.block.close()
        self.control.close()
        self.journal.close()

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
            "t2t_ns": probes[:, k.PR_OFFERED_NS] - probes[:, k.PR_RECV_NS],
            "probes": probes,
            "unknown_responses": int(ns.oc[OC_UNKNOWN]),
            "duplicate_responses": int(ns.oc[OC_DUPLICATE]),
            "session": {
                "state": self.client.state,
                "logout_reason": self.client.logout_reason,
                "login_reject_reason": self.client.login_reject_reason,
            },
            "responses": int(ns.oc[OC_RESPONSES]),
            "order_table_full": int(ns.oc[OC_FULL_TABLE]),
            "journal_full_stops": self._journal_full,
            "orders_written_off": int(ns.oc[OC_WRITTEN_OFF]),
            "working_orders_left": int(working_count_nb(ns.own)),
            "killed": bool(ns.rstate[RS_KILLED]),
            "strategy_calls": int(ns.mi[k.NI_CALLS]),
            "md_messages": stats.messages,
            "md_packets": stats.packets,
            "md_gaps": stats.gaps,
            "md_recovered_messages": stats.recovered_messages,
            "md_lost_messages": stats.lost_messages,
            "duty_cycles": self._cycles,
            "max_duty_cycle_ns": self._max_cycle_ns,
            "placement": self.placement_note,
            "stage_ns": {
                stage: {f"p{q}": bucket_percentile_ns(self._hist[1 + j], q) for q in (50, 99)}
                for j, stage in enumerate(STAGES)
            },
        }


def symbol_reports(spec: NodeSpec, inst: np.ndarray, money: np.ndarray, risk_counts: np.ndarray) -> dict[str, dict]:
    """Per symbol: orders, replaces, fills, fees, position (shares), cash and PnL (net of fees) at the last mid,
    risk rejections."""
    symbols = {}
    for i, instrument in enumerate(spec.instruments):
        lot = int(inst[i, IN_LOT])
        mid = float(money[i, MN_MID])
        position = int(inst[i, IN_POSITION]) * lot
        unrealized = position * (mid - money[i, MN_AVG_PRICE]) if np.isfinite(mid) and position else 0.0
        symbols[instrument.symbol] = {
            "orders": int(inst[i, IN_ORDERS]),
            "accepted": int(inst[i, IN_ACCEPTED]),
            "fills": int(inst[i, IN_FILLS]),
            "cancels_sent": int(inst[i, IN_CANCELS]),
            "canceled": int(inst[i, IN_CANCELED]),
            "exchange_rejects": int(inst[i, IN_REJECTS]),
            "position": position,
            "cash": float(money[i, MN_CASH]),
            "fees": float(money[i, MN_FEES]),
            "replaces": int(inst[i, IN_REPLACES]),
            "realized_pnl": float(money[i, MN_REALIZED]),
            "unrealized_pnl": float(unrealized),
            "pnl": float(money[i, MN_REALIZED] + unrealized),
            "mid": mid if np.isfinite(mid) else None,
            "risk_rejections": {r: int(risk_counts[i, j]) for j, r in enumerate(RISK_REASONS)},
        }
    return symbols


def run_step(step_nb: Callable, ns: k.NodeState, book, rows: np.ndarray, responses: np.ndarray, n_responses: int,
             now_ns: int, quote: QuoteAddress) -> tuple[int, object]:  # fmt: skip
    """One step of the compiled kernel, growing the book (and resuming) whenever it asks; (messages, book)."""
    count = step_nb(ns, book, rows, responses, n_responses, now_ns, quote)
    while count < 0:
        book = grow_state(book)
        count = step_nb(ns, book, rows, responses, 0, now_ns, quote)
    return count, book


def completed_probes(ns: k.NodeState) -> np.ndarray:
    """The tick-to-trade probe rows the ring still holds, oldest first (``node_nb.PR_*`` columns)."""
    taken = int(ns.mi[k.NI_PROBES])
    ring = ns.probes
    if taken <= len(ring):
        return ring[:taken].copy()
    start = taken % len(ring)
    return np.concatenate((ring[start:], ring[:start]))


def bucket_percentile_ns(row: np.ndarray, q: float) -> int | None:
    """The upper bound of the histogram bucket holding the ``q``-th percentile (None when empty or in +Inf)."""
    counts = row[:N_BUCKETS]
    total = int(counts.sum())
    if not total:
        return None
    k = int(np.searchsorted(np.cumsum(counts), q / 100 * total))
    return int(BUCKET_BOUNDS_NS[k]) if k < len(BUCKET_BOUNDS_NS) else None


def percentile_ns(samples: np.ndarray, q: float) -> int | None:
    """The ``q``-th percentile of latency samples, ns (None without samples)."""
    return int(np.percentile(samples, q)) if len(samples) else None


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
