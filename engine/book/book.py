"""The L3 order book of many instruments: one jitted call per batch of events, reads for reports.

The compiled state and kernels live in ``engine.book.book_nb``; this is the face the replay, the
backtester and the trading node use.
"""

from __future__ import annotations

import numpy as np

from engine.book import layout as L
from engine.book.book_nb import apply_nb, depth_nb, grow_state, hash_find_nb, queue_ahead_nb
from engine.book.layout import new_state
from engine.core import events as E
from engine.core.events import empty_events

ORDERS_PER_LEVEL = 4  # real deep books hold 5 (the deep synthetic day) to 9 (ESM4 MBO) orders a level: margin


class Book:
    """Order books of many instruments, updated in batches of events.

    >>> book = Book()
    >>> book.apply(events)            # one jitted call per batch
    >>> book.depth(instrument, 5)     # best five bid and ask levels
    """

    def __init__(self, orders: int = 1 << 12, levels: int = 1 << 10, instruments: int = 16) -> None:
        self.state = new_state(orders, levels, instruments)
        apply_nb(self.state, empty_events(0), 0)  # load (or compile) the kernel now, not on the first tick

    @classmethod
    def sized(cls, orders: int) -> Book:
        """A Book that holds ``orders`` live orders (and a level for every ORDERS_PER_LEVEL of them) without
        growing: sized at start for the day's peak, as a production feed handler allocates its tables once,
        so that no message pays for a doubling (copying the tables, faulting in fresh pages)."""
        return cls(orders=orders, levels=max(1 << 10, orders // ORDERS_PER_LEVEL))

    def apply(self, events: np.ndarray) -> None:
        """Apply a batch of ``EVENT_DTYPE`` rows in order, growing capacity as needed."""
        i = apply_nb(self.state, events, 0)
        while i < len(events):
            self.state = grow_state(self.state)
            i = apply_nb(self.state, events, i)

    def instruments(self) -> list[int]:
        """Instrument ids with a book, in order of first appearance."""
        return [int(x) for x in self.state.books[: self.state.meta[L.M_BOOKS], L.BK_INSTR]]

    def _book(self, instrument: int) -> int:
        return int(hash_find_nb(self.state.i_hash, self.state.books, L.BK_INSTR, np.int64(instrument)))

    def depth(self, instrument: int, levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Best ``levels`` bids and asks as int64 arrays of rows (price, qty, orders), best first."""
        st = self.state
        bids = np.zeros((levels, 3), np.int64)
        asks = np.zeros((levels, 3), np.int64)
        b = self._book(instrument)
        if b == L.EMPTY:
            return bids[:0], asks[:0]
        nb_ = depth_nb(st, b, L.BID, bids)
        na = depth_nb(st, b, L.ASK, asks)
        return bids[:nb_], asks[:na]

    def level_count(self, instrument: int, side: int) -> int:
        """Number of price levels on ``side`` (SIDE_BID or SIDE_ASK) of an instrument."""
        b = self._book(instrument)
        return 0 if b == L.EMPTY else int(self.state.sides[2 * b + (L.BID if side == E.SIDE_BID else L.ASK), L.SD_LEN])

    def order_count(self, instrument: int) -> int:
        """Resting orders of an instrument."""
        b = self._book(instrument)
        return 0 if b == L.EMPTY else int(self.state.books[b, L.BK_ORDERS])

    def order(self, order_id: int) -> dict | None:
        """A resting order with its queue position, or None when it is not in the book."""
        st = self.state
        o = int(hash_find_nb(st.o_hash, st.orders, L.OR_ID, np.uint64(order_id).astype(np.int64)))
        if o == L.EMPTY:
            return None
        ahead_orders, ahead_qty = queue_ahead_nb(st, o)
        row = st.orders[o]
        return {
            "instrument": int(st.books[row[L.OR_BOOK], L.BK_INSTR]),
            "side": E.SIDE_BID if row[L.OR_SIDE] == L.BID else E.SIDE_ASK,
            "price": int(row[L.OR_PRICE]),
            "qty": int(row[L.OR_QTY]),
            "orders_ahead": int(ahead_orders),
            "qty_ahead": int(ahead_qty),
        }

    @property
    def counters(self) -> dict[str, int]:
        """Event and anomaly counters (unknown order refs, crossed books, ...)."""
        return {name: int(v) for name, v in zip(L.COUNTER_NAMES, self.state.counters, strict=True)}

    @property
    def total_orders(self) -> int:
        """Resting orders over every instrument."""
        return int(self.state.meta[L.M_ORDERS])
