"""Seeded background order flow that keeps a realistic book on each simulated instrument.

A zero-intelligence flow in the spirit of Cont, Stoikov and Talreja (2010), around a drifting fair
value so that the book moves. Per instrument, independent Poisson processes (rates in messages/s):

- limit orders at ``limit_rate``: a side by a fair coin, a distance ``d`` in 1..``depth_ticks`` drawn
  with weights ``profile`` (default the power law ``d ** -alpha``), priced ``d`` ticks from the
  opposite side's reference: a bid at ``floor(fv) + 1 - d``, an ask at ``ceil(fv) - 1 + d``, so
  ``d = 1`` joins the inside (a one-tick spread when both insides are filled);
- market orders at ``market_rate``: IOC limit orders ``depth_ticks - 1`` ticks through the fair value;
- cancels at ``cancel_rate`` per resting background order (so proportional to the orders resting at
  each distance), each hitting a uniformly drawn one of the instrument's acknowledged live orders;
- the fair value ``fv`` (ticks) is a Brownian motion with ``volatility_ticks`` per sqrt(second). When it
  moves a tick, new limit orders cross stale background quotes and trade: that is how the book follows.

Sizes are geometric in lots with mean ``mean_size_lots``. All draws come from one
``numpy.random.Generator(PCG64(seed))``: the same seed and the same calls give the same requests.

No request of the flow is rejected when the engine lists the instruments with the flow's ticks and
lots: prices are whole ticks in ``1..PRICE_MAX``, sizes whole lots, and a cancel only targets an
order whose acceptance the flow has seen and whose trades it has heard of. For the latter, every
report the engine produces that may touch a background order (whoever submitted) must reach
:meth:`BackgroundFlow.on_reports` before the next :meth:`BackgroundFlow.next_batch`; a batch ends
early (``next_batch`` returns, more is due) before a cancel that follows a request able to trade.

>>> flow = BackgroundFlow(FlowConfig(instruments=(InstrumentFlow(locate=1),), seed=7), engine, clock)
>>> flow.warm_up(engine, 60.0)             # 60 simulated seconds of book building
>>> runner = AgentRunner(flow)              # then due requests go to the engine at clock() time
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.core.config import FrozenConfig
from engine.simexchange import layout as L
from engine.simexchange.flow_nb import (
    BD_ASK,
    BD_BID,
    FP_CANCEL,
    FP_LIMIT,
    FP_MARKET,
    FP_VOL,
    IP_DEPTH,
    IP_LOCATE,
    IP_LOT,
    IP_MAX_TICKS,
    IP_TICK,
    MT_CANCEL_BOOK,
    MT_FREE,
    MT_NOW,
    NEED_SLOTS,
    NO_ASK,
    NO_BID,
    NS_PER_S,
    OUT_FULL,
    SL_POS,
    apply_reports_nb,
    generate_nb,
)
from engine.simexchange.matching import MatchingEngine

BACKGROUND_OWNER = -1  # reserved owner id of the background flow's requests (sessions are >= 0)
SESSION_START_NS = 34_200_000_000_000  # 09:30 in ns since midnight: the default start of the clock
WARM_UP_STEP_NS = 10_000_000  # warm-up submits every 10 simulated ms
INITIAL_SLOTS = 1 << 10
INITIAL_BATCH = 1 << 8


class InstrumentFlow(FrozenConfig, kw_only=True):
    """The background flow of one instrument; prices in 1e-4 units, rates in messages/s."""

    locate: int = 0  # ITCH stock locate (= the engine's instrument id; 0: its position in the list + 1)
    tick: int = 100  # minimum price increment, 1e-4 units (as listed in the engine)
    lot: int = 1  # shares per lot (as listed in the engine)
    initial_price: int = 1_000_000  # starting fair value, 1e-4 units (100.00)
    limit_rate: float = 40.0  # limit orders per second, both sides together
    market_rate: float = 4.0  # market (IOC) orders per second, both sides together
    cancel_rate: float = 0.1  # cancels per second per resting background order
    volatility_ticks: float = 0.5  # fair-value standard deviation over one second, in ticks
    depth_ticks: int = 10  # farthest distance a limit order rests from the opposite reference
    alpha: float = 0.8  # power-law decay of the limit rate with distance, used without a profile
    profile: tuple[float, ...] = ()  # relative limit rate at distances 1..depth_ticks (overrides alpha)
    mean_size_lots: float = 2.0  # mean order size in lots (geometric, >= 1)

    def __post_init__(self) -> None:
        if not 0 <= self.locate <= 0xFFFF:
            raise ValueError(f"locate {self.locate} not in 1..65535 (or 0: the position in the list + 1)")
        if self.tick <= 0 or self.lot <= 0 or self.depth_ticks <= 0:
            raise ValueError("tick, lot and depth_ticks must be positive")
        if not 0 < self.initial_price <= L.PRICE_MAX:
            raise ValueError(f"initial_price {self.initial_price} not in 1..{L.PRICE_MAX}")
        if min(self.limit_rate, self.market_rate, self.cancel_rate, self.volatility_ticks) < 0:
            raise ValueError("rates and volatility must be >= 0")
        if self.mean_size_lots < 1:
            raise ValueError("mean_size_lots must be >= 1")
        if self.profile and (len(self.profile) != self.depth_ticks or min(self.profile) < 0 or sum(self.profile) <= 0):
            raise ValueError("profile needs depth_ticks non-negative weights with a positive sum")

    def distance_weights(self) -> np.ndarray:
        """Probabilities of distances 1..depth_ticks for a limit order."""
        d = np.arange(1, self.depth_ticks + 1, dtype=np.float64)
        w = np.array(self.profile, np.float64) if self.profile else d**-self.alpha
        return w / w.sum()


class FlowConfig(FrozenConfig):
    """The background flow of a simulated exchange: its instruments, seed and owner id."""

    instruments: tuple[InstrumentFlow, ...]
    seed: int = 0
    owner: int = BACKGROUND_OWNER

    def __post_init__(self) -> None:
        locates = [i.locate for i in self.instruments]
        if not locates or len(set(locates)) != len(locates) or 0 in locates:
            raise ValueError("a flow needs instruments with distinct locates")


class BackgroundFlow:
    """The flow's state and clock; ``next_batch`` / ``on_reports`` drive it, or it runs as an agent.

    As an agent (``engine`` and ``clock`` given: ``clock()`` returns ns since midnight), each
    ``do_work`` sends everything due by ``clock()`` to the engine, and hands each ``(reports, itch)``
    pair to ``on_submit`` (the exchange's publisher) when given.
    """

    role_name = "background-flow"

    def __init__(
        self,
        config: FlowConfig,
        engine: MatchingEngine | None = None,
        clock: Callable[[], int] | None = None,
        start_ns: int = SESSION_START_NS,
        on_submit: Callable[[np.ndarray, np.ndarray], None] | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.on_submit = on_submit
        self.rejected = 0
        self._index = {inst.locate: b for b, inst in enumerate(config.instruments)}
        insts = config.instruments
        n_books = len(insts)
        self._rng = np.random.Generator(np.random.PCG64(config.seed))
        self._fp = np.zeros((n_books, 4), np.float64)
        self._ip = np.zeros((n_books, 5), np.int64)
        self._cdf = np.ones((n_books, max(i.depth_ticks for i in insts)), np.float64)
        for b, inst in enumerate(insts):
            self._fp[b, [FP_LIMIT, FP_MARKET, FP_CANCEL, FP_VOL]] = (
                inst.limit_rate,
                inst.market_rate,
                inst.cancel_rate,
                inst.volatility_ticks,
            )
            self._ip[b, [IP_LOCATE, IP_TICK, IP_LOT, IP_DEPTH, IP_MAX_TICKS]] = (
                inst.locate,
                inst.tick,
                inst.lot,
                inst.depth_ticks,
                L.PRICE_MAX // inst.tick,
            )
            self._cdf[b, : inst.depth_ticks] = np.cumsum(inst.distance_weights())
            self._cdf[b, inst.depth_ticks - 1 :] = 1.0
        self._sizep = np.array([1.0 / i.mean_size_lots for i in insts], np.float64)
        self._fv = np.array([i.initial_price / i.tick for i in insts], np.float64)
        self._fv_ns = np.full(n_books, start_ns, np.int64)
        self._slots = np.zeros((INITIAL_SLOTS, SL_POS + 1), np.int64)
        self._free = np.arange(INITIAL_SLOTS - 1, -1, -1, dtype=np.int64)
        self._live = np.zeros((n_books, INITIAL_SLOTS), np.int64)
        self._n_live = np.zeros(n_books, np.int64)
        self._bounds = np.empty((n_books, 2), np.int64)
        self._bounds[:, BD_BID] = NO_BID
        self._bounds[:, BD_ASK] = NO_ASK
        self._meta = np.zeros(4, np.int64)
        self._meta[MT_NOW] = start_ns
        self._meta[MT_FREE] = INITIAL_SLOTS
        self._meta[MT_CANCEL_BOOK] = -1
        self._out = np.zeros(INITIAL_BATCH, L.REQUEST_DTYPE)
        self._awaiting_reports = False

    # --- driving ---------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """The flow's clock: the time of the last generated event, or the last ``until_ns`` reached."""
        return int(self._meta[MT_NOW])

    def next_batch(self, until_ns: int) -> np.ndarray:
        """The requests due by ``until_ns`` (a view, valid until the next call). A batch may end early;
        after its reports went to :meth:`on_reports`, call again until it comes back empty."""
        if self._awaiting_reports:
            raise RuntimeError("apply the previous batch's reports with on_reports() before the next batch")
        parts: list[np.ndarray] = []
        while True:
            n, status = generate_nb(
                self._rng, self._fp, self._ip, self._cdf, self._sizep, self._fv, self._fv_ns, self._slots,
                self._free, self._live, self._n_live, self._bounds, self._meta, np.int64(self.config.owner),
                np.int64(until_ns), self._out,
            )  # fmt: skip
            if status != OUT_FULL and status != NEED_SLOTS:
                batch = np.concatenate([*parts, self._out[:n]]) if parts else self._out[:n]
                self._awaiting_reports = len(batch) > 0
                return batch
            parts.append(self._out[:n].copy())
            if status == OUT_FULL:
                self._out = np.zeros(2 * len(self._out), L.REQUEST_DTYPE)
            else:
                self._grow_slots()

    def on_reports(self, reports: np.ndarray) -> None:
        """Learn acceptances, fills and cancels of background orders from engine reports (any owner's)."""
        rejected = apply_reports_nb(
            reports, np.int64(self.config.owner), self._slots, self._free, self._live, self._n_live,
            self._bounds, self._meta,
        )  # fmt: skip
        self.rejected += int(rejected)
        self._awaiting_reports = False

    def _grow_slots(self) -> None:
        """Double the slot tables (off the hot path); the new rows go on the free stack."""
        old = len(self._slots)
        self._slots = np.concatenate([self._slots, np.zeros_like(self._slots)])
        live = np.zeros((len(self._live), 2 * old), np.int64)
        live[:, :old] = self._live
        self._live = live
        free = np.zeros(2 * old, np.int64)
        n_free = int(self._meta[MT_FREE])
        free[:n_free] = self._free[:n_free]
        free[n_free : n_free + old] = np.arange(2 * old - 1, old - 1, -1)
        self._free = free
        self._meta[MT_FREE] = n_free + old

    def run_until(self, engine: MatchingEngine, until_ns: int) -> int:
        """Send every request due by ``until_ns`` to ``engine``, batch by batch; returns the count."""
        sent = 0
        while len(batch := self.next_batch(until_ns)):
            reports, itch = engine.submit(batch, self.now_ns)
            self.on_reports(reports)
            if self.on_submit is not None:
                self.on_submit(reports, itch)
            sent += len(batch)
        return sent

    def warm_up(self, engine: MatchingEngine, seconds: float, step_ns: int = WARM_UP_STEP_NS) -> int:
        """Build the books with ``seconds`` of simulated flow, submitted every ``step_ns``; returns the count."""
        end_ns = self.now_ns + int(seconds * NS_PER_S)
        sent = 0
        while self.now_ns < end_ns:
            sent += self.run_until(engine, min(self.now_ns + step_ns, end_ns))
        return sent

    # --- agent -----------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Check that the flow has an engine and a clock to run against."""
        if self.engine is None or self.clock is None:
            raise RuntimeError("a BackgroundFlow agent needs an engine and a clock")

    def do_work(self) -> int:
        """Send the requests due by ``clock()``; returns how many."""
        assert self.engine is not None and self.clock is not None
        return self.run_until(self.engine, self.clock())

    def on_close(self) -> None:
        """Nothing to release."""

    # --- reads -----------------------------------------------------------------------------------
    def fair_value(self, locate: int) -> float:
        """The instrument's fair value in price units (1e-4), as of its last event."""
        b = self._index[locate]
        return float(self._fv[b] * self._ip[b, IP_TICK])

    def live_orders(self, locate: int) -> int:
        """Background orders of the instrument known to rest (acknowledged, no cancel sent)."""
        return int(self._n_live[self._index[locate]])
