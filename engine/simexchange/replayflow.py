"""Replay mode of the simulated exchange's background flow: a recorded day's orders, our orders matched among them.

The market-by-order events of ITCH 5.0 or Databento MBO files (anything ``feeds.open_feed`` reads) become
the resting orders of one "replay" participant in our :class:`MatchingEngine`, so the exchange's ITCH out
carries them and any ITCH consumer rebuilds the recorded book; our own (OUCH) orders trade with them by
price-time priority. How each recorded event is translated, and what is clamped, dropped or ignored, is
described in ``engine.simexchange.replayflow_nb``; everything is counted (:meth:`ReplayFlow.stats`), nothing is
dropped silently.

Pacing: events are due by their recorded timestamps, ``speed`` times real time (1.0 real time, 10.0 ten
times faster, 0 as fast as possible, a bounded batch per duty cycle so order entry keeps being served).
The timestamp is the event's local one (``ts_local_ns``): the exchange time for ITCH files, the capture
time for pcaps, ``ts_recv`` for DBN, where ``ts_event`` of the opening snapshot is the orders' original
time, not the order they arrive in.
The events before ``start_s`` seconds after the first one are applied at once when the session opens
(like the synthetic flow's warm-up), stamped with their recorded times; the exchange clock then starts
at that point, so the ITCH out of paced events is stamped on the exchange clock. At the end of the data
the replay stops (the book stays) or, with ``at_end = "loop"``, deletes every recorded order still
resting and starts again at ``start_s``.

The files are read and checked when the flow is built: a bad file is a one-line ``ValueError`` naming
the file and the byte offset. Recorded symbols map to listed instruments by name (or ``symbols``);
prices convert from the file's fixed-point scale to the engine's 1e-4 units.

>>> flow = ReplayFlow(load_events(["day.itch"], {"AAPL": 1}), engine, clock, speed=0.0)
>>> flow.open()            # the events before start_s, at once
>>> runner = AgentRunner(flow)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from engine.book import layout as BL
from engine.core import events as E
from engine.core.units import NS_PER_DAY, NS_PER_S
from engine.simexchange import layout as L
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.replayflow_nb import N_RC, RC_NAMES, clear_owner_nb, replay_nb
from feeds import FeedError
from feeds.itch import TIMESTAMP_MAX
from feeds.read import FeedPass, read_feeds

REPLAY_OWNER = -2  # owner id of the recorded orders (the synthetic flow is -1, sessions are >= 0)
PRICE_SCALE = 10_000  # the engine's prices: ITCH Price(4), 1e-4 units
BATCH_EVENTS = 1 << 12  # events applied per duty cycle at most
INITIAL_REPORTS = 1 << 12
INITIAL_ITCH = 1 << 16
AT_END_MODES = ("stop", "loop")
PRICED_KINDS = (E.KIND_ADD, E.KIND_REPLACE, E.KIND_TRADE)


def load_events(files: list[str], locates: Mapping[str, int]) -> np.ndarray:
    """The events of ``files`` for the recorded symbols in ``locates``, instruments renumbered to those
    locates and prices converted to 1e-4 units (an inexact price becomes 0, which the replay drops and
    counts). Raises ``ValueError`` in one line (file, offset) for a missing or bad file or a symbol the
    files do not have."""
    feed = FeedPass(list(files))
    try:
        batches = list(read_feeds(list(files), symbols=set(locates), progress=False, feed_pass=feed))
    except FeedError as exc:
        raise ValueError(f"replay file {exc}") from exc
    except OSError as exc:
        raise ValueError(f"replay file {exc.filename}: {exc.strerror or exc}") from exc
    if feed.missing_symbols:
        raise ValueError(f"replay files {', '.join(files)} have no symbol {', '.join(feed.missing_symbols)}")
    events = np.concatenate(batches) if batches else np.zeros(0, E.EVENT_DTYPE)
    ids = events["instrument"].copy()
    priced = np.isin(events["kind"], PRICED_KINDS)
    for instrument_id in np.unique(ids).tolist():
        info = feed.instrument(instrument_id)
        rows = ids == instrument_id
        events["instrument"][rows] = locates[info.symbol]
        events["price"][rows & priced] = _to_engine_price(events["price"][rows & priced], info.price_scale)
    return events


def _to_engine_price(prices: np.ndarray, scale: int) -> np.ndarray:
    """Fixed-point ``prices`` of ``scale`` units per currency unit in 1e-4 units; 0 where not exact."""
    if scale >= PRICE_SCALE:
        div = scale // PRICE_SCALE
        exact = (scale % PRICE_SCALE == 0) & (prices % div == 0)
        return np.where(exact, prices // div, 0)
    mul = PRICE_SCALE // scale
    return prices * mul if PRICE_SCALE % scale == 0 else np.zeros_like(prices)


class ReplayFlow:
    """Recorded events fed to ``engine`` on the exchange ``clock`` (ns since midnight); an agent.

    ``on_submit(reports, itch)`` receives every batch's engine reports (of the sessions' orders only)
    and ITCH records, as the synthetic flow's. ``events`` come from :func:`load_events`.
    """

    role_name = "replay-flow"

    def __init__(
        self,
        events: np.ndarray,
        engine: MatchingEngine,
        clock: Callable[[], int] | None = None,
        on_submit: Callable[[np.ndarray, np.ndarray], None] | None = None,
        *,
        speed: float = 1.0,
        start_s: float = 0.0,
        at_end: str = "stop",
        owner: int = REPLAY_OWNER,
    ) -> None:
        if speed < 0 or start_s < 0:
            raise ValueError("replay speed and start_s must be >= 0")
        if at_end not in AT_END_MODES:
            raise ValueError(f"replay at_end must be one of {AT_END_MODES}, not {at_end!r}")
        self.events = events
        self.engine = engine
        self.clock = clock
        self.on_submit = on_submit
        self.speed = speed
        self.at_end = at_end
        self.owner = owner
        self.counters = np.zeros(N_RC, np.int64)
        self.loops = 0
        self.finished = False
        first = int(events["ts_local_ns"][0]) if len(events) else 0
        self._day_ns = first // NS_PER_DAY * NS_PER_DAY  # DBN: ns since the epoch; ITCH: since midnight
        self._start_ts = first + int(start_s * NS_PER_S)  # recorded time where paced replay begins
        self._pos = 0
        self._rec_anchor = self._start_ts  # recorded time at ...
        self._clock_anchor = self.now_ns  # ... this exchange time
        self._reports = np.zeros(INITIAL_REPORTS, L.REPORT_DTYPE)
        self._itch = np.zeros(INITIAL_ITCH, np.uint8)

    # --- driving ---------------------------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        """The exchange time (ns since midnight) where paced replay begins: the start of the clock."""
        return self._since_midnight(self._start_ts)

    @property
    def first_ns(self) -> int:
        """The exchange time (ns since midnight) of the first recorded event: the session opens there."""
        return self._since_midnight(int(self.events["ts_local_ns"][0]) if len(self.events) else self._start_ts)

    def _since_midnight(self, recorded_ns: int) -> int:
        return min(max(recorded_ns - self._day_ns, 0), TIMESTAMP_MAX)

    def open(self) -> int:
        """Apply the events before ``start_s`` at once, stamped with their recorded times; returns the count."""
        return self.run_until(self._start_ts - 1, -1)

    def run_until(self, recorded_ns: int, stamp_ns: int) -> int:
        """Apply the events recorded up to ``recorded_ns`` in bounded batches, ITCH stamped ``stamp_ns``
        (negative: each event's recorded time); returns the count."""
        total = 0
        while applied := self._apply(recorded_ns, stamp_ns, BATCH_EVENTS):
            total += applied
        return total

    def _apply(self, until_ns: int, stamp_ns: int, limit: int) -> int:
        """Events due by ``until_ns`` (recorded ``ts_local_ns``) from the current position, at most
        ``limit``; hands each kernel batch to ``on_submit``."""
        first = self._pos
        end = min(len(self.events), first + limit)
        engine, n_rep, n_itch = self.engine, 0, 0
        while True:
            self._pos, n_rep, n_itch, status = replay_nb(
                engine.state,
                engine.match,
                self.events,
                self._pos,
                end,
                np.int64(until_ns),
                np.int64(stamp_ns),
                np.int64(self._day_ns),
                np.int64(self.owner),
                self._reports,
                n_rep,
                self._itch,
                n_itch,
                self.counters,
            )
            if status == L.DONE:
                break
            self._deliver(n_rep, n_itch)
            n_rep, n_itch = 0, 0
            if status == L.NEED_REPORTS:
                self._reports = np.zeros(2 * len(self._reports), L.REPORT_DTYPE)
            elif status == L.NEED_ITCH:
                self._itch = np.zeros(2 * len(self._itch), np.uint8)
            else:
                engine.grow_state()
        self._deliver(n_rep, n_itch)
        return self._pos - first

    def _deliver(self, n_rep: int, n_itch: int) -> None:
        """Pass a batch's ITCH on, with its reports about the sessions' orders and its executions (the
        replay participant's cancels and rejects stay here: nobody is told about them)."""
        if self.on_submit is not None and (n_rep or n_itch):
            reports = self._reports[:n_rep]
            keep = (reports["owner"] >= 0) | (reports["kind"] == L.RPT_EXECUTED)
            self.on_submit(reports[keep], self._itch[:n_itch])

    def clear(self, stamp_ns: int) -> None:
        """Delete every recorded order still resting (D each); our orders stay."""
        engine = self.engine
        need = int(engine.state.meta[BL.M_ORDERS]) + 1  # at most one report and one D per resting order
        if len(self._reports) < need:
            self._reports = np.zeros(need, L.REPORT_DTYPE)
        if len(self._itch) < L.RECORD_MAX * need:
            self._itch = np.zeros(L.RECORD_MAX * need, np.uint8)
        n_rep, n_itch = 0, 0
        for b in range(len(engine.symbols)):
            n_rep, n_itch = clear_owner_nb(
                engine.state, engine.match, b, self.owner, np.int64(stamp_ns), self._reports, n_rep, self._itch, n_itch
            )
        self._deliver(n_rep, n_itch)

    # --- agent ---------------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Anchor the recorded time to the exchange clock."""
        if self.clock is None:
            raise RuntimeError("a ReplayFlow agent needs a clock")
        self._clock_anchor = self.clock()

    def do_work(self) -> int:
        """Apply the events due by the exchange clock (a bounded batch); at the end stop or loop."""
        if self.finished:
            return 0
        assert self.clock is not None
        now = self.clock()
        if self.speed == 0:
            until = np.iinfo(np.int64).max
        else:
            until = self._rec_anchor + int((now - self._clock_anchor) * self.speed)
        done = self._apply(until, now, BATCH_EVENTS)
        if self._pos == len(self.events):
            if self.at_end == "loop" and len(self.events):
                self.clear(now)
                self._pos = 0
                self.loops += 1
                self._rec_anchor, self._clock_anchor = self._start_ts, now
            else:
                self.finished = True
        return done

    def on_reports(self, reports: np.ndarray) -> None:
        """Reports of the sessions' own requests: the recording does not react to them."""

    def on_close(self) -> None:
        """Nothing to release."""

    # --- reads -------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """The replay counters (see ``engine.simexchange.replayflow_nb``), loops and the events left."""
        out = {name: int(value) for name, value in zip(RC_NAMES, self.counters, strict=True)}
        out["loops"] = self.loops
        out["events_left"] = len(self.events) - self._pos
        return out
