"""From the quotes a strategy wants to the orders to send and cancel: shared by backtest and live.

Both keep their own orders in an int64 table whose first columns are the ones below (what we know
of each order on our side); each adds columns of its own after ``N_OWN_COMMON``. ``plan_nb`` compares
the strategy's quotes with that table and writes actions: cancel the orders whose price is no longer
wanted, send the wanted prices that have no order. An order resting at a wanted price stays (its
queue position is worth more than a size adjustment), and nothing is sent twice while a request is
on its way. Prices are rounded to the tick away from the market (bids down, asks up), sizes to the lot.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.core import events as E
from engine.trading import layout as L

# --- actions: int64 rows (kind, side, price units, lots, order row) ------------------------------


@njit(cache=True, nogil=True, inline="always")
def tick_price_nb(px, side, tick, unit):
    """A currency price on the tick grid, in price units: bids round down, asks up (never more aggressive)."""
    ticks = px / (unit * tick)
    k = np.floor(ticks + 1e-9) if side == E.SIDE_BID else np.ceil(ticks - 1e-9)
    return np.int64(k) * tick


@njit(cache=True, nogil=True, inline="always")
def _working(state):
    return state in (L.LS_PENDING_NEW, L.LS_LIVE)


@njit(cache=True, nogil=True, inline="always")
def plan_nb(own, quotes, levels, tick, unit, lot, actions):
    """Write the cancels and new orders that turn ``own`` into the wanted ``quotes``; returns how many.
    Inlined at its one call site per kernel (a call costs more than the plan: reference counts of its arrays).

    ``quotes`` rows are (bid price, bid size, ask price, ask size) in currency and units, the first
    ``levels`` of them used; ``actions`` needs room for one cancel per order row plus one order per
    quote side and level.
    """
    n = min(levels, quotes.shape[0])
    count = 0
    for side in (E.SIDE_BID, E.SIDE_ASK):
        col = 0 if side == E.SIDE_BID else 2
        for s in range(own.shape[0]):  # cancel what is no longer wanted
            if own[s, L.OW_SIDE] != side or not _working(own[s, L.OW_STATE]):
                continue
            keep = False
            for j in range(n):
                if quotes[j, col + 1] > 0 and tick_price_nb(quotes[j, col], side, tick, unit) == own[s, L.OW_PRICE]:
                    keep = True
            if not keep:
                actions[count, L.AC_KIND] = L.ACT_CANCEL
                actions[count, L.AC_SIDE] = side
                actions[count, L.AC_PRICE] = own[s, L.OW_PRICE]
                actions[count, L.AC_QTY] = own[s, L.OW_OPEN]
                actions[count, L.AC_ROW] = s
                count += 1
        for j in range(n):  # send what is wanted and missing
            size = quotes[j, col + 1] / lot
            if not (size >= 0.5) or not np.isfinite(quotes[j, col]):
                continue
            qty = np.int64(np.floor(size + 0.5))
            price = tick_price_nb(quotes[j, col], side, tick, unit)
            if price <= 0:
                continue
            have = False
            for s in range(own.shape[0]):
                if own[s, L.OW_SIDE] == side and own[s, L.OW_PRICE] == price and _working(own[s, L.OW_STATE]):
                    have = True
            for a in range(count):  # two levels rounding to one price: one order
                if (
                    actions[a, L.AC_KIND] == L.ACT_NEW
                    and actions[a, L.AC_SIDE] == side
                    and actions[a, L.AC_PRICE] == price
                ):
                    have = True
            if have:
                continue
            actions[count, L.AC_KIND] = L.ACT_NEW
            actions[count, L.AC_SIDE] = side
            actions[count, L.AC_PRICE] = price
            actions[count, L.AC_QTY] = qty
            actions[count, L.AC_ROW] = -1
            count += 1
    return count


def new_actions(order_rows: int) -> np.ndarray:
    """An actions table big enough for any plan over ``order_rows`` orders."""
    from strategies.api import MAX_LEVELS

    return np.zeros((order_rows + 2 * MAX_LEVELS, L.N_AC), np.int64)
