"""Market-by-price depth of one instrument indexed by price rank, for the backtester's L2 books.

``engine.book.book_nb`` keeps each side's levels in a sorted array, which suits L3 data (activity at the
touch) but not L2 depth feeds whose updates land hundreds of ticks away from the touch: every level
that appears or disappears there shifts all the levels between it and the touch. Here a level is a
row of a dense table, so a level update is one store. The rows are the distinct prices the data's
level updates name, sorted (``prices``, known before the replay: ``engine.backtest.backtest`` reads them
first), so the table is as long as the number of prices actually used however far apart they lie,
and the replay passes each event's row (its *rank*, found once per file by ``np.searchsorted``).
The best row of each side is tracked, and searched for (row by row, towards worse prices) only when
the best level itself empties. State, per book::

    levels [2, N, 2]  per side index (BID, ASK) and price rank: qty (0: no level), order count
    meta   [N_DM]     N, best rank of each side (EMPTY when the side is empty), levels of each side

The semantics are those of ``book_nb`` for the L2 kinds (``KIND_LEVEL``, ``KIND_CLEAR_SIDE``,
``KIND_CLEAR``); ``tests/unit/engine/book/test_depth.py`` pins the two against each other.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import layout as L
from engine.core import events as E

DM_N, DM_BEST_BID, DM_BEST_ASK, DM_LEVELS_BID, DM_LEVELS_ASK = range(5)
N_DM = 5
DL_QTY, DL_COUNT = 0, 1


def new_depth(prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empty (levels, meta) for the sorted distinct ``prices``."""
    if len(prices) == 0 or (len(prices) > 1 and not (np.diff(prices) > 0).all()):
        raise ValueError("depth needs at least one price, sorted and distinct")
    meta = np.zeros(N_DM, np.int64)
    meta[DM_N] = len(prices)
    meta[DM_BEST_BID] = L.EMPTY
    meta[DM_BEST_ASK] = L.EMPTY
    return np.zeros((2, len(prices), 2), np.int64), meta


@njit(cache=True, nogil=True, inline="always")
def depth_rank_nb(prices, price):
    """Rank of ``price`` in ``prices``, or EMPTY when the data never names it."""
    r = np.searchsorted(prices, price)
    return r if r < len(prices) and prices[r] == price else L.EMPTY


@njit(cache=True, nogil=True, inline="always")
def depth_best_nb(meta, side):
    """Rank of the best level of ``side`` (BID or ASK index), or EMPTY."""
    return meta[DM_BEST_BID + side]


@njit(cache=True, nogil=True, inline="always")
def depth_qty_nb(levels, prices, side, price):
    """Quantity at ``price`` on ``side`` (BID or ASK index); 0 when there is no level."""
    r = depth_rank_nb(prices, price)
    return 0 if r == L.EMPTY else levels[side, r, DL_QTY]


@njit(cache=True, nogil=True, inline="always")
def _next_best_nb(levels, meta, side, r):
    """The best level of ``side`` at or worse than rank ``r`` (EMPTY when the side has none)."""
    if meta[DM_LEVELS_BID + side] == 0:
        return L.EMPTY
    if side == L.BID:
        while levels[L.BID, r, DL_QTY] == 0:
            r -= 1
    else:
        while levels[L.ASK, r, DL_QTY] == 0:
            r += 1
    return r


@njit(cache=True, nogil=True, inline="always")
def _set_nb(levels, meta, side, r, qty, count):
    """Level ``r`` of ``side`` now holds ``qty`` (0 removes it), keeping the best rank."""
    old = levels[side, r, DL_QTY]
    levels[side, r, DL_QTY] = qty
    levels[side, r, DL_COUNT] = count if qty > 0 else 0
    best = meta[DM_BEST_BID + side]
    if qty > 0:
        if old == 0:
            meta[DM_LEVELS_BID + side] += 1
            if best == L.EMPTY or (r > best if side == L.BID else r < best):
                meta[DM_BEST_BID + side] = r
    elif old > 0:
        meta[DM_LEVELS_BID + side] -= 1
        if r == best:
            meta[DM_BEST_BID + side] = _next_best_nb(levels, meta, side, r)


@njit(cache=True, nogil=True)
def _clear_from_nb(levels, meta, side, stop):
    """Remove the levels of ``side`` from the touch through rank ``stop`` (bids >= stop, asks <= stop)."""
    r = meta[DM_BEST_BID + side]
    while r != L.EMPTY and (r >= stop if side == L.BID else r <= stop):
        _set_nb(levels, meta, side, r, 0, 0)
        r = meta[DM_BEST_BID + side]


@njit(cache=True, nogil=True, inline="always")
def depth_apply_nb(levels, meta, prices, ev, rank):
    """Apply an event of this book's instrument (the L2 kinds; the others leave the depth as it is).

    ``rank`` is ``depth_rank_nb(prices, ev.price)``, which the caller may have looked up in advance.
    """
    kind = ev.kind
    if kind == E.KIND_LEVEL:
        if (ev.side != E.SIDE_BID and ev.side != E.SIDE_ASK) or ev.qty < 0 or rank == L.EMPTY:
            return
        _set_nb(levels, meta, L.BID if ev.side == E.SIDE_BID else L.ASK, rank, ev.qty, np.int64(ev.order_id))
    elif kind == E.KIND_CLEAR_SIDE:
        if ev.side == E.SIDE_BID:  # bids >= price: from the first rank at or above it
            _clear_from_nb(levels, meta, L.BID, np.searchsorted(prices, ev.price, side="left"))
        elif ev.side == E.SIDE_ASK:  # asks <= price: through the last rank at or below it
            _clear_from_nb(levels, meta, L.ASK, np.searchsorted(prices, ev.price, side="right") - 1)
    elif kind == E.KIND_CLEAR:
        _clear_from_nb(levels, meta, L.BID, 0)
        _clear_from_nb(levels, meta, L.ASK, meta[DM_N] - 1)


@njit(cache=True, nogil=True)
def depth_top_nb(levels, meta, prices, side, out):
    """Fill ``out[k] = (price, qty, orders)`` for the best ``len(out)`` levels of ``side``; returns levels filled
    (``book_nb.depth_nb`` over this depth)."""
    r = meta[DM_BEST_BID + side]
    k = 0
    step = -1 if side == L.BID else 1
    while r != L.EMPTY and 0 <= r < meta[DM_N] and k < out.shape[0]:
        if levels[side, r, DL_QTY] > 0:
            out[k, 0] = prices[r]
            out[k, 1] = levels[side, r, DL_QTY]
            out[k, 2] = levels[side, r, DL_COUNT]
            k += 1
        r += step
    return k
