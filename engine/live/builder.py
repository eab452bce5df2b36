"""The one node builder: a trading node's spec, its shared blocks, its arrays and its compiled step.

The live daemon, the latency harness (``bench/t2t.py``), the capture replay (``engine.live.parity``)
and the tests build a node the same way: a :class:`NodeSpec` (``LiveConfig.node_spec`` maps a config
entry to one), the :class:`NodeBlocks` that whoever supervises the node owns (metrics and control
blocks, journal ring), then, in the node's own process, :func:`build_state` and :func:`load_kernel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numba import typeof, types
from numba.core.dispatcher import Dispatcher

from engine.book.book_nb import grow_state
from engine.core.clock import start_stamp_clock
from engine.core.events import empty_events
from engine.gateway.aeron_c import make_inbox
from engine.gateway.client import N_CS, OrderEntryClient
from engine.gateway.session import Port
from engine.live import layout as L
from engine.live import loop_nb
from engine.live import node_nb as k
from engine.live.journal import JOURNAL_PREFIX, JournalRing, Recovered
from engine.runtime import control as CB
from engine.runtime import metrics as M
from engine.runtime.control import ControlBlock
from engine.runtime.metrics import MetricsBlock
from engine.trading import layout as TL
from engine.trading.core import core_tables
from engine.trading.oms import new_counters, new_orders
from engine.trading.risk import RiskConfig
from feeds import ouch
from feeds.itch import new_stock_directory
from feeds.moldudp64 import new_tracker
from feeds.udp import DEFAULT_OUT_ROWS, MAX_DATAGRAM_BYTES, N_RX, TYPE_COUNTS, MoldStream
from strategies import get_strategy
from strategies.api import QUOTE_FN, QUOTE_SIG

PROBES = 1 << 18  # tick-to-trade probe rows a node keeps (the latest): a 12 s `bench t2t` at 10k ticks/s
MAX_MESSAGES = 64  # OUCH messages one step may write
PRICE_UNIT = 1e-4  # OUCH and ITCH prices: 1e-4 currency units


@dataclass(frozen=True)
class NodeInstrument:
    """One instrument a node trades: OUCH symbol, ITCH locate, tick (price units) and lot (shares)."""

    symbol: str
    locate: int
    tick: int
    lot: int


@dataclass(frozen=True)
class NodeSpec:
    """Everything a node process needs (built by ``engine.live.daemon`` from the config; pickled once to Ray)."""

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
    capture: str = ""  # the session capture file the node records to ("": none; engine.live.capture)
    recovered: Recovered | None = None  # a restarted node's tables, rebuilt from the journal
    maker_fee: float = 0.0  # fraction of the traded value of an execution that added liquidity (< 0: rebate)
    taker_fee: float = 0.0  # the same for every other execution
    replace: bool = True  # requotes as OUCH Replace Orders (False: cancel + enter)


def fresh_tables(spec: NodeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A node's order-management tables before its first order: own, oc, inst, money (with the fee rates)."""
    n = len(spec.instruments)
    inst = np.zeros((n, TL.N_IN), np.int64)
    money = np.zeros((n, TL.N_MN), np.float64)
    for i, instrument in enumerate(spec.instruments):
        inst[i, TL.IN_LOCATE], inst[i, TL.IN_TICK], inst[i, TL.IN_LOT] = (
            instrument.locate,
            instrument.tick,
            instrument.lot,
        )
        money[i, TL.MN_UNIT] = PRICE_UNIT
        money[i, TL.MN_LOT] = instrument.lot  # a lot is `lot` shares, and a share is the instrument's unit
        money[i, TL.MN_MID] = np.nan
        money[i, TL.MN_MAKER_FEE], money[i, TL.MN_TAKER_FEE] = spec.maker_fee, spec.taker_fee
    return new_orders(n, spec.order_rows), new_counters(spec.first_order_id), inst, money


@dataclass
class NodeBlocks:
    """The shared-memory blocks of one node, owned by whoever supervises it: metrics, control, journal ring."""

    metrics: MetricsBlock
    control: ControlBlock
    journal: JournalRing

    @classmethod
    def create(
        cls, name: str, symbols: Sequence[str], tag: str, *, journal: bool = True, journal_capacity: int = 0
    ) -> NodeBlocks:
        """Fresh blocks named after ``tag`` (``/dev/shm/<prefix><tag>``); without ``journal`` the ring is private
        (the node empties it itself). ``journal_capacity`` 0: the ring's default."""
        metrics = MetricsBlock.create(name, symbols, L.STAGES, TL.RISK_REASONS, name=M.BLOCK_PREFIX + tag, replace=True)
        control = ControlBlock(CB.CONTROL_PREFIX + tag, create=True)
        sized = {"capacity": journal_capacity} if journal_capacity else {}
        ring = JournalRing.create(JOURNAL_PREFIX + tag, **sized) if journal else JournalRing.private(**sized)
        return cls(metrics, control, ring)

    @classmethod
    def attach(cls, spec: NodeSpec) -> NodeBlocks:
        """The blocks of ``spec``, from the node's own process (a spec without a journal gets a private ring)."""
        metrics = MetricsBlock.attach(spec.metrics_block)
        control = ControlBlock(spec.control_block, create=False)
        return cls(metrics, control, JournalRing.attach(spec.journal) if spec.journal else JournalRing.private())

    def close(self) -> None:
        """Unmap every block (their creator also removes the files)."""
        self.metrics.close()
        self.control.close()
        self.journal.close()


def build_state(spec: NodeSpec, blocks: NodeBlocks) -> L.NodeState:
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
    mi = np.zeros(L.N_NI, np.int64)
    start_stamp_clock(mi, L.NI_CLOCK)
    mi[L.NI_POST_ONLY] = int(spec.post_only)
    mi[L.NI_REPLACE] = int(spec.replace)
    return L.NodeState(
        own=own,
        oc=oc,
        inst=inst,
        money=money,
        symbols=symbols,
        cl_ord_id=ouch.alpha("", 14),
        mi=mi,
        next_call=np.zeros(n, np.int64),
        dirty=np.zeros(n, np.int64),
        out=np.zeros(MAX_MESSAGES * L.MESSAGE_BYTES, np.uint8),
        out_off=np.zeros(MAX_MESSAGES + 1, np.int64),
        probes=np.zeros((PROBES, L.N_PR), np.int64),
        jmeta=blocks.journal.meta,
        jdata=blocks.journal.data,
        jctl=blocks.journal.ctl,
        node=blocks.metrics.node,
        counters=blocks.metrics.instrument_counters,
        gauges=blocks.metrics.instrument_gauges,
        risk_counts=blocks.metrics.risk_rejections,
        hist=blocks.metrics.histograms,
        control=blocks.control.slots.view(np.ndarray),
        control_next_id=blocks.control.slots.view(np.ndarray)[CB.CT_NEXT_ID : CB.CT_NEXT_ID + 1],
        **core_tables(n, spec.order_rows, strategy, spec.params, spec.risk),
    )


def load_kernel(ns: L.NodeState, book) -> Callable:
    """Compile (or load from Numba's cache) the one step kernel every strategy shares; its entry point.

    The entry point is called with the compiled signature's arguments only: it skips the dispatcher's
    type resolution, which costs far more than the step itself on a quiet book (pass the strategy
    as a :class:`QuoteAddress`)."""
    signature = (typeof(ns), typeof(book), typeof(empty_events(1)), typeof(ouch.empty_responses(1)), typeof(0),
                 typeof(0), QUOTE_FN)  # fmt: skip
    return entry_point(k.step_nb, signature)


def load_loop(ns: L.NodeState, lp: L.LoopState, book) -> Callable:
    """The compiled duty cycle (``engine.live.loop_nb.run_nb``), compiled or loaded once; its entry point."""
    return entry_point(loop_nb.run_nb, (typeof(ns), typeof(lp), typeof(book), QUOTE_FN))


def loop_state(receiver: MoldStream, client: OrderEntryClient, previous: L.LoopState | None = None) -> L.LoopState:
    """The arrays the compiled loop shares with ``receiver`` and ``client`` (its own from ``previous``)."""
    return _loop_state(receiver.rx, receiver.counts, receiver.stocks.table, receiver.tracker.state, client.cs,
                       client.inbox, client.responses, client.heartbeat, previous)  # fmt: skip


def blank_loop_state() -> L.LoopState:
    """Fresh arrays of the types a node's loop state has: compiles the loop before any node runs."""
    return _loop_state(np.zeros(N_RX, np.int64), np.zeros(TYPE_COUNTS, np.int64), new_stock_directory(),
                       new_tracker(), np.zeros(N_CS, np.int64), make_inbox(1, 64), ouch.empty_responses(1),
                       np.zeros(1, np.uint8), None)  # fmt: skip


def _loop_state(rx, counts, directory, tracker, cs, inbox, responses, heartbeat, previous) -> L.LoopState:
    return L.LoopState(
        ls=previous.ls if previous is not None else np.zeros(L.N_LS, np.int64),
        slot=previous.slot if previous is not None else np.zeros(MAX_DATAGRAM_BYTES, np.uint8),
        rx=rx,
        events=previous.events if previous is not None else empty_events(DEFAULT_OUT_ROWS),
        counts=counts,
        directory=directory,
        tracker=tracker,
        cs=cs,
        inbox=inbox,
        responses=responses,
        responses_raw=responses.view(np.uint8).reshape(len(responses), responses.dtype.itemsize),
        heartbeat=heartbeat,
    )


def entry_point(dispatcher: Dispatcher, signature: tuple) -> Callable:
    """The compiled function of ``dispatcher`` for ``signature`` (compiled or loaded from the cache now)."""
    if signature not in dispatcher.overloads:
        dispatcher.compile(signature)
    return dispatcher.overloads[signature].entry_point


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


def run_step(step_nb: Callable, ns: L.NodeState, book, rows: np.ndarray, responses: np.ndarray, n_responses: int,
             now_ns: int, quote: QuoteAddress) -> tuple[int, object]:  # fmt: skip
    """One step of the compiled kernel, growing the book (and resuming) whenever it asks, then the metrics
    block updated; (messages, book)."""
    count = step_nb(ns, book, rows, responses, n_responses, now_ns, quote)
    while count < 0:
        book = grow_state(book)
        count = step_nb(ns, book, rows, responses, 0, now_ns, quote)
    k.publish_nb(ns)
    return count, book


def completed_probes(ns: L.NodeState) -> np.ndarray:
    """The tick-to-trade probe rows the ring still holds, oldest first (``node_nb.PR_*`` columns)."""
    taken = int(ns.mi[L.NI_PROBES])
    ring = ns.probes
    if taken <= len(ring):
        return ring[:taken].copy()
    start = taken % len(ring)
    return np.concatenate((ring[start:], ring[:start]))
