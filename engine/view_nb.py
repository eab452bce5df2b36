"""What a strategy sees (``strategies.api`` view), filled from an L3 book: one kernel for live and backtest.

The market flow since the strategy's previous call (trades, aggressive volumes, our fills) is kept
in a small float64 ``flow`` array (``FS_*``) that :func:`trade_stats_nb` and :func:`own_fill_nb`
add to and :func:`reset_flow_nb` clears after each call; :func:`fill_view_nb` writes the view from
the book, that array and the caller's position, working orders and equity.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book_nb import (
    ASK,
    BID,
    BK_INSTR,
    EMPTY,
    LV_PRICE,
    OR_ID,
    OR_PRICE,
    OR_SIDE,
    best_level_nb,
    depth_nb,
    hash_find_nb,
)
from engine.events import KIND_EXECUTE, KIND_EXECUTE_PRICE, KIND_TRADE, SIDE_ASK, SIDE_BID
from strategies.api import (
    DEPTH,
    V_ASK,
    V_ASK_QTY,
    V_BID,
    V_BID_QTY,
    V_BUY_HIGH,
    V_BUY_VOLUME,
    V_DEPTH,
    V_ELAPSED_NS,
    V_EQUITY,
    V_FILLED_BUY,
    V_FILLED_SELL,
    V_FILLS,
    V_LAST_TRADE,
    V_LOT,
    V_OPEN_ASK,
    V_OPEN_BID,
    V_POSITION,
    V_SELL_LOW,
    V_SELL_VOLUME,
    V_TICK,
    V_TRADES,
)

# --- flow since the previous call: float64[N_FS] ------------------------------------------------
FS_TRADES, FS_BUY_VOL, FS_SELL_VOL, FS_BUY_HIGH, FS_SELL_LOW, FS_LAST_TRADE = range(6)
FS_FILLS, FS_FILLED_BUY, FS_FILLED_SELL = 6, 7, 8
N_FS = 9


def new_flow(instruments: int = 1) -> np.ndarray:
    """Flow arrays (one row per instrument) with nothing seen yet."""
    flow = np.zeros((instruments, N_FS), np.float64)
    flow[:, FS_BUY_HIGH] = flow[:, FS_SELL_LOW] = flow[:, FS_LAST_TRADE] = np.nan
    return flow


@njit(cache=True, nogil=True)
def book_of_nb(tables, instrument):
    """The book row of ``instrument`` in ``tables`` (``book_nb.tables_nb``), or EMPTY."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = tables
    return hash_find_nb(i_hash, books, BK_INSTR, np.int64(instrument))


@njit(cache=True, nogil=True)
def mid_nb(tables, b, unit):
    """Mid price in currency (NaN when a side is empty or there is no book)."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = tables
    if b == EMPTY:
        return np.nan
    bl = best_level_nb(levels, sides, arena, b, BID)
    al = best_level_nb(levels, sides, arena, b, ASK)
    if bl == EMPTY or al == EMPTY:
        return np.nan
    return 0.5 * (levels[bl, LV_PRICE] + levels[al, LV_PRICE]) * unit


@njit(cache=True, nogil=True)
def trade_stats_nb(flow, tables, ev, unit, lot):
    """Add a trade (a print, or an execution of a resting order, before the book applies it) to ``flow``."""
    kind = ev.kind
    aggressor = 0
    price = ev.price
    if kind == KIND_TRADE:
        aggressor = ev.side
    elif kind in (KIND_EXECUTE, KIND_EXECUTE_PRICE):
        orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = tables
        o = hash_find_nb(o_hash, orders, OR_ID, np.int64(ev.order_id))
        if o != EMPTY:
            aggressor = SIDE_ASK if orders[o, OR_SIDE] == BID else SIDE_BID
            if kind == KIND_EXECUTE:
                price = orders[o, OR_PRICE]
    if aggressor == 0 or ev.qty <= 0:
        return
    px = price * unit
    units = ev.qty * lot
    flow[FS_TRADES] += 1
    flow[FS_LAST_TRADE] = px
    if aggressor == SIDE_BID:
        flow[FS_BUY_VOL] += units
        flow[FS_BUY_HIGH] = px if np.isnan(flow[FS_BUY_HIGH]) else max(flow[FS_BUY_HIGH], px)
    else:
        flow[FS_SELL_VOL] += units
        flow[FS_SELL_LOW] = px if np.isnan(flow[FS_SELL_LOW]) else min(flow[FS_SELL_LOW], px)


@njit(cache=True, nogil=True)
def own_fill_nb(flow, side, units):
    """One fill of ours (``units`` on ``side``) into ``flow``."""
    flow[FS_FILLS] += 1
    if side == SIDE_BID:
        flow[FS_FILLED_BUY] += units
    else:
        flow[FS_FILLED_SELL] += units


@njit(cache=True, nogil=True)
def reset_flow_nb(flow):
    """Clear the since-the-previous-call figures (the last trade price stays)."""
    flow[FS_TRADES] = 0.0
    flow[FS_BUY_VOL] = 0.0
    flow[FS_SELL_VOL] = 0.0
    flow[FS_BUY_HIGH] = np.nan
    flow[FS_SELL_LOW] = np.nan
    flow[FS_FILLS] = 0.0
    flow[FS_FILLED_BUY] = 0.0
    flow[FS_FILLED_SELL] = 0.0


@njit(cache=True, nogil=True)
def fill_view_nb(view, tables, b, depth, tick, unit, lot, position, open_bid, open_ask, elapsed_ns, flow, equity):
    """Write the strategy's view: the book ``b`` of ``tables`` (prices x ``unit``, sizes x ``lot``), then
    position and working units, ``elapsed_ns`` since the previous call, ``flow`` and ``equity``.

    ``tick`` is the price increment in currency; ``depth`` an int64[DEPTH, 3] scratch table.
    """
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = tables
    view[V_TICK] = tick
    view[V_LOT] = lot
    for j in range(V_DEPTH, V_DEPTH + 4 * DEPTH):
        view[j] = np.nan
    view[V_BID] = np.nan
    view[V_ASK] = np.nan
    view[V_BID_QTY] = 0.0
    view[V_ASK_QTY] = 0.0
    if b != EMPTY:
        for side_index in range(2):
            k = depth_nb(levels, sides, arena, b, side_index, depth)
            base = V_DEPTH + 2 * DEPTH * side_index
            for j in range(k):
                view[base + 2 * j] = depth[j, 0] * unit
                view[base + 2 * j + 1] = depth[j, 1] * lot
            if k > 0:
                view[V_BID + 2 * side_index] = depth[0, 0] * unit
                view[V_BID_QTY + 2 * side_index] = depth[0, 1] * lot
    view[V_POSITION] = position
    view[V_OPEN_BID] = open_bid
    view[V_OPEN_ASK] = open_ask
    view[V_ELAPSED_NS] = elapsed_ns
    view[V_TRADES] = flow[FS_TRADES]
    view[V_BUY_VOLUME] = flow[FS_BUY_VOL]
    view[V_SELL_VOLUME] = flow[FS_SELL_VOL]
    view[V_BUY_HIGH] = flow[FS_BUY_HIGH]
    view[V_SELL_LOW] = flow[FS_SELL_LOW]
    view[V_LAST_TRADE] = flow[FS_LAST_TRADE]
    view[V_FILLS] = flow[FS_FILLS]
    view[V_FILLED_BUY] = flow[FS_FILLED_BUY]
    view[V_FILLED_SELL] = flow[FS_FILLED_SELL]
    view[V_EQUITY] = equity
