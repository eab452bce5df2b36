"""The simulated exchange's matching engine: price-time priority over many instruments, ITCH 5.0 out.

One jitted call per batch of ``REQUEST_DTYPE`` rows (new limit day / IOC / post-only orders, cancels,
cancel-replaces) returns the ``REPORT_DTYPE`` rows the OUCH layer answers with and the ITCH 5.0
records (``[u16 len][msg]``, as ``feeds.itch.frame``) of every book change. Kernels and the
record layouts live in ``engine.simexchange.matching_nb`` and ``engine.simexchange.layout``.

>>> engine = MatchingEngine([(1, "AAPL", 100, 1)], post_only="reprice", self_trade="cancel-resting")
>>> feed = engine.session_start_itch(now_ns)
>>> reports, itch = engine.submit(requests, now_ns)   # views, valid until the next submit
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from engine.book import layout as BL
from engine.book.book_nb import grow_state
from engine.book.layout import new_state
from engine.simexchange import layout as L
from engine.simexchange.layout import MatchState
from engine.simexchange.matching_nb import init_books_nb, submit_nb
from feeds.itch import TIMESTAMP_MAX, encode, encode_stock_directory, frame

POST_ONLY_MODES = {"reject": L.POST_ONLY_REJECT, "reprice": L.POST_ONLY_REPRICE}
SELF_TRADE_MODES = {
    "allow": L.SELF_TRADE_ALLOW,
    "cancel-resting": L.SELF_TRADE_CANCEL_RESTING,
    "cancel-incoming": L.SELF_TRADE_CANCEL_INCOMING,
}
TRADING = "T"  # ITCH H trading states: T trading, H halted, P paused, Q quotation only


class MatchingEngine:
    """Order books of many instruments matched by price-time priority.

    ``instruments`` are ``(locate, symbol, tick, lot)``: the ITCH stock locate (< 65536, also the
    instrument id of requests), the symbol (<= 8 characters), the minimum price increment in
    1e-4 units and the lot in shares. ``post_only`` says what a post-only order that would take
    liquidity gets: ``"reject"``, or ``"reprice"`` one tick away from the contra best. Owners in
    ``mpids`` get ITCH F (with that MPID) instead of A for their resting orders.
    """

    def __init__(
        self,
        instruments: Iterable[tuple[int, str, int, int]],
        post_only: str = "reject",
        self_trade: str = "cancel-resting",
        orders: int = 1 << 12,
        levels: int = 1 << 10,
        reports: int = 1 << 12,
        itch_bytes: int = 1 << 16,
        mpids: dict[int, str] | None = None,
    ) -> None:
        table = list(instruments)
        if post_only not in POST_ONLY_MODES:
            raise ValueError(f"post_only must be one of {sorted(POST_ONLY_MODES)}, not {post_only!r}")
        if self_trade not in SELF_TRADE_MODES:
            raise ValueError(f"self_trade must be one of {sorted(SELF_TRADE_MODES)}, not {self_trade!r}")
        locates = np.array([int(t[0]) for t in table], np.int64)
        if len(set(locates.tolist())) != len(table) or not all(0 < x <= 0xFFFF for x in locates.tolist()):
            raise ValueError("instrument locates must be distinct and in 1..65535")
        if any(int(t[2]) <= 0 or int(t[3]) <= 0 for t in table):
            raise ValueError("tick and lot must be positive")
        self.symbols = {int(t[0]): str(t[1]) for t in table}
        self._index = {int(t[0]): i for i, t in enumerate(table)}
        self.state = new_state(orders, levels, len(table) + 1)
        init_books_nb(self.state, locates)
        mpids = mpids or {}
        inst = np.zeros((len(table), 3), np.int64)
        inst[:, L.IN_TICK] = [int(t[2]) for t in table]
        inst[:, L.IN_LOT] = [int(t[3]) for t in table]
        meta = np.zeros(4, np.int64)
        meta[L.MM_NEXT_REF] = 1
        meta[L.MM_POST_ONLY] = POST_ONLY_MODES[post_only]
        meta[L.MM_SELF_TRADE] = SELF_TRADE_MODES[self_trade]
        self.match = MatchState(
            refs=np.zeros((len(self.state.orders), 2), np.int64),
            inst=inst,
            symbols=np.array([_alpha(str(t[1]), 8) for t in table], np.uint8).reshape(len(table), 8),
            mpid_own=np.array(list(mpids), np.int64),
            mpid_code=np.array([_alpha(m, 4) for m in mpids.values()], np.uint8).reshape(len(mpids), 4),
            meta=meta,
        )
        self._reports = np.zeros(reports, L.REPORT_DTYPE)
        self._itch = np.zeros(itch_bytes, np.uint8)

    def submit(self, requests: np.ndarray, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Handle a batch of requests in order; returns (reports, ITCH record bytes), views valid until
        the next call. ``now_ns`` (ns since midnight) stamps every ITCH message."""
        if not 0 <= now_ns <= TIMESTAMP_MAX:
            raise ValueError(f"now_ns {now_ns} does not fit ITCH's 48-bit timestamp")
        i, n_rep, n_itch = 0, 0, 0
        while True:
            i, n_rep, n_itch, status = submit_nb(
                self.state, self.match, requests, i, np.int64(now_ns), self._reports, n_rep, self._itch, n_itch
            )
            if status == L.DONE:
                return self._reports[:n_rep], self._itch[:n_itch]
            if status == L.NEED_REPORTS:
                self._reports = _doubled(self._reports)
            elif status == L.NEED_ITCH:
                self._itch = _doubled(self._itch)
            else:
                self._grow_state()

    def grow_state(self) -> None:
        """Double the book tables, for other kernels over this engine's state that ran out (NEED_STATE)."""
        self._grow_state()

    def _grow_state(self) -> None:
        self.state = grow_state(self.state)
        refs = self.match.refs
        if len(refs) < len(self.state.orders):
            grown = np.zeros((len(self.state.orders), 2), np.int64)
            grown[: len(refs)] = refs
            self.match = self.match._replace(refs=grown)

    # --- session messages (off the hot path) -----------------------------------------------------
    def system_event(self, code: str, now_ns: int) -> bytes:
        """ITCH S record (O start of messages, S start of system hours, Q start of market hours, ...)."""
        return frame([encode("S", timestamp=now_ns, event_code=code)])

    def stock_directory(self, now_ns: int) -> bytes:
        """ITCH R records, one per instrument, with its lot as the round lot size."""
        inst = self.match.inst
        return frame(
            encode_stock_directory(locate, now_ns, symbol, int(inst[self._index[locate], L.IN_LOT]))
            for locate, symbol in self.symbols.items()
        )

    def set_trading_state(self, locate: int, state: str, now_ns: int) -> bytes:
        """Set an instrument's trading state (only ``"T"`` accepts orders) and return its ITCH H record."""
        self.match.inst[self._index[locate], L.IN_HALTED] = state != TRADING
        return frame(
            [encode("H", timestamp=now_ns, stock_locate=locate, stock=self.symbols[locate], trading_state=state)]
        )

    def session_start_itch(self, now_ns: int) -> bytes:
        """The opening of a session: S start of messages, R per instrument, S start of system hours,
        H trading per instrument, S start of market hours."""
        parts = [self.system_event("O", now_ns), self.stock_directory(now_ns), self.system_event("S", now_ns)]
        parts += [self.set_trading_state(locate, TRADING, now_ns) for locate in self.symbols]
        parts.append(self.system_event("Q", now_ns))
        return b"".join(parts)

    def session_end_itch(self, now_ns: int) -> bytes:
        """The close of a session: S end of market hours, S end of system hours, S end of messages
        (always ITCH's last message; MoldUDP64's End of Session follows it)."""
        return b"".join(self.system_event(code, now_ns) for code in "MEC")

    # --- reads -----------------------------------------------------------------------------------
    def _level_slots(self, locate: int, side: int) -> range:
        """The arena slots of one side's price levels, best first."""
        st = self.state
        s = 2 * self._index[locate] + side
        start, n = int(st.sides[s, BL.SD_START]), int(st.sides[s, BL.SD_LEN])
        return range(start + n - 1, start - 1, -1)

    def touch(self, locate: int) -> tuple[int, int]:
        """The best bid and best ask prices of an instrument (0 for an empty side)."""
        st = self.state
        bid, ask = (self._level_slots(locate, side) for side in (BL.BID, BL.ASK))
        return (
            int(st.levels[st.arena[bid[0], BL.AR_LEVEL], BL.LV_PRICE]) if bid else 0,
            int(st.levels[st.arena[ask[0], BL.AR_LEVEL], BL.LV_PRICE]) if ask else 0,
        )

    def book_snapshot(self, locate: int) -> dict[str, list[tuple[int, list[tuple[int, int, int, int]]]]]:
        """``{"bids": [...], "asks": [...]}``, best level first: ``(price, [(order_ref, qty, owner,
        client_ref), ...])`` with each level's orders in queue order."""
        st, refs = self.state, self.match.refs
        out: dict[str, list[tuple[int, list[tuple[int, int, int, int]]]]] = {}
        for name, side in (("bids", BL.BID), ("asks", BL.ASK)):
            levels = []
            for p in self._level_slots(locate, side):
                lvl = st.arena[p, BL.AR_LEVEL]
                queue = []
                o = int(st.levels[lvl, BL.LV_HEAD])
                while o != BL.EMPTY:
                    row = st.orders[o]
                    queue.append(
                        (int(row[BL.OR_ID]), int(row[BL.OR_QTY]), int(refs[o, L.RF_OWNER]), int(refs[o, L.RF_CLIENT]))
                    )
                    o = int(row[BL.OR_NEXT])
                levels.append((int(st.levels[lvl, BL.LV_PRICE]), queue))
            out[name] = levels
        return out

    @property
    def next_order_ref(self) -> int:
        """The exchange reference the next accepted order (or priority-losing replace) gets."""
        return int(self.match.meta[L.MM_NEXT_REF])


def _alpha(text: str, width: int) -> list[int]:
    """An ITCH alpha field: ASCII, left-justified, space padded to ``width``."""
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{text!r} is longer than {width} characters")
    return list(raw.ljust(width, b" "))


def _doubled(buffer: np.ndarray) -> np.ndarray:
    grown = np.zeros(2 * len(buffer), buffer.dtype)
    grown[: len(buffer)] = buffer
    return grown
