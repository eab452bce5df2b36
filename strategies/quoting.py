"""Pieces the quoting functions share: reading the touch, inventory room, and a post-only-safe bid/ask pair.

All jitted and allocation-free, called from inside the strategies' ``quote`` functions. Model
quantities are in ticks (depths, volatility) so that priors and defaults carry across instruments;
:func:`touch_in_ticks` does the one conversion in and the strategies multiply by the tick on the way out.
"""

from __future__ import annotations

import math

from numba import njit

from strategies.api import Q_ASK, Q_ASK_QTY, Q_BID, Q_BID_QTY, V_ASK, V_BID, V_LOT, V_POSITION, V_TICK, Param

# --- the parameters every quoting strategy here starts with ---------------------------------------
P_ORDER_QTY = 1
P_MAX_POSITION = 2
BASE_PARAMS = (
    Param("interval_ns", 100_000_000, "how often quotes are re-evaluated, ns (0: on every book change)", 0),
    Param("order_qty", 1.0, "size of each quote, instrument units", 0, exclusive=True),
    Param("max_position", 10.0, "no quote that could take |position| beyond this, instrument units", 0),
)
P_GAMMA = 3  # the model strategies (Avellaneda-Stoikov, GLFT) go on with their risk aversion
MODEL_PARAMS = (*BASE_PARAMS, Param("gamma", 0.1, "risk aversion, per tick, for an inventory of one order_qty", 0))

SMALL_RATIO = 1e-9  # below this, x -> log1p(x)/x and (1+x)**(1/x) are replaced by their limits 1 and e


@njit(cache=True, nogil=True)
def touch_in_ticks(view):
    """``(tick, mid_ticks)`` of the view, or ``(0.0, 0.0)`` when the tick or either side is unusable."""
    tick = view[V_TICK]
    bid = view[V_BID]
    ask = view[V_ASK]
    if not (tick > 0.0 and math.isfinite(tick) and math.isfinite(bid) and math.isfinite(ask)):
        return 0.0, 0.0
    mid_ticks = 0.5 * (bid + ask) / tick
    if not math.isfinite(mid_ticks):
        return 0.0, 0.0
    return tick, mid_ticks


@njit(cache=True, nogil=True)
def position_limit(view, max_position):
    """``max_position`` plus half a lot, so that float rounding of the position never blocks a quote."""
    lot = view[V_LOT]
    return max_position + (0.5 * lot if lot > 0.0 and math.isfinite(lot) else 0.0)


@njit(cache=True, nogil=True)
def orders_that_fit(room, qty, most):
    """How many orders of ``qty`` (at most ``most``) fit in ``room`` units of inventory; 0 for NaN or qty <= 0."""
    if not qty > 0.0:
        return 0
    n = 0
    while n < most and (n + 1) * qty <= room:
        n += 1
    return n


@njit(cache=True, nogil=True)
def log_spread_term(risk, k):
    """``ln(1 + risk/k) / risk``, the adverse-selection part of a half spread (``1/k`` as ``risk`` -> 0)."""
    x = risk / k
    if x < SMALL_RATIO:
        return 1.0 / k
    return math.log1p(x) / risk


@njit(cache=True, nogil=True)
def post_only_pair(view, bid, ask, tick):
    """``(bid, ask, ok)``: prices at least a tick apart, the bid below the best ask and the ask above the best bid.

    The two prices are first pulled apart symmetrically to a one-tick gap (tiny model spreads), then
    the bid is lowered to ``best ask - tick`` and the ask raised to ``best bid + tick`` where needed,
    so an order never crosses the book and is never rejected by a post-only venue; both moves only
    widen, so ``bid < ask`` holds even on a locked or crossed view. ``ok`` is False when the prices
    are not finite or float rounding (prices far larger than the tick) left them touching.
    """
    if not ask - bid >= tick:
        centre = 0.5 * (bid + ask)
        bid = centre - 0.5 * tick
        ask = centre + 0.5 * tick
    best_bid = view[V_BID]
    best_ask = view[V_ASK]
    bid = min(bid, best_ask - tick)
    ask = max(ask, best_bid + tick)
    ok = math.isfinite(bid) and math.isfinite(ask) and bid < ask and bid < best_ask and ask > best_bid
    return bid, ask, ok


@njit(cache=True, nogil=True)
def write_level(quotes, row, bid, bid_qty, ask, ask_qty):
    """Fill one row of ``quotes`` (a size of 0 leaves that side unquoted)."""
    quotes[row, Q_BID] = bid
    quotes[row, Q_BID_QTY] = bid_qty
    quotes[row, Q_ASK] = ask
    quotes[row, Q_ASK_QTY] = ask_qty


@njit(cache=True, nogil=True)
def at_least(x, floor):
    """``x``, or ``floor`` when ``x`` is smaller or NaN."""
    return x if x > floor else floor


@njit(cache=True, nogil=True)
def inventory(view, params):
    """``(ok, qty, limit, position, q)`` from the view and the base parameters.

    ``limit`` is :func:`position_limit`, ``q`` the position counted in orders of ``qty`` and clipped
    to the models' bounds ``+-max_position / qty``; ``ok`` is False for a non-positive size, a negative
    ``max_position`` or a NaN position.
    """
    qty = params[P_ORDER_QTY]
    max_position = params[P_MAX_POSITION]
    position = view[V_POSITION]
    if not (qty > 0.0 and math.isfinite(qty) and math.isfinite(position) and max_position >= 0.0):
        return False, 0.0, 0.0, 0.0, 0.0
    bound = max_position / qty
    return True, qty, position_limit(view, max_position), position, max(-bound, min(bound, position / qty))


@njit(cache=True, nogil=True)
def quote_one_level(view, params, quotes, tick, bid_ticks, ask_ticks):
    """Write a single bid/ask pair given in ticks: post-only safe, each side only while it fits the limit.

    Returns the number of rows written (1, or 0 when the prices or the inventory are unusable).
    """
    bid, ask, ok = post_only_pair(view, bid_ticks * tick, ask_ticks * tick, tick)
    fits, qty, limit, position, _ = inventory(view, params)
    if not (ok and fits):
        return 0
    bid_qty = qty * orders_that_fit(limit - position, qty, 1)
    ask_qty = qty * orders_that_fit(limit + position, qty, 1)
    write_level(quotes, 0, bid, bid_qty, ask, ask_qty)
    return 1
