"""``grid``: a ladder of quotes on each side of the mid, shifted against the inventory.

Level ``j`` (``0 <= j < levels``, at most ``MAX_LEVELS``) bids at ``centre - (half_spread_ticks + j * grid_ticks)``
ticks and asks at ``centre + (half_spread_ticks + j * grid_ticks)`` ticks, where
``centre = mid - skew_ticks_per_unit * position`` moves the whole grid down when long (selling is
easier, buying harder) and up when short. Bid level ``j`` is quoted only while ``position + (j + 1) * order_qty``
stays within ``max_position`` (the same for asks below ``-max_position``), so all bids filling at once
cannot breach the limit. The innermost level is kept post-only safe (bid below the best ask, ask
above the best bid) and the rest of the ladder moves with it, so levels never merge.
"""

from __future__ import annotations

import math

from numba import njit

from strategies.api import MAX_LEVELS, QUOTE_SIG, Param, Strategy
from strategies.quoting import (
    BASE_PARAMS,
    at_least,
    inventory,
    orders_that_fit,
    post_only_pair,
    touch_in_ticks,
    write_level,
)

P_LEVELS = 3
P_GRID_TICKS = 4
P_HALF_SPREAD_TICKS = 5
P_SKEW_TICKS_PER_UNIT = 6
MIN_GRID_TICKS = 1.0  # closer levels would round onto the same tick
MIN_HALF_SPREAD_TICKS = 0.5


@njit(QUOTE_SIG, cache=True, nogil=True)
def grid_quote(now_ns, view, params, state, quotes):
    """Up to ``levels`` rows of bid/ask pairs around the inventory-shifted mid."""
    tick, mid = touch_in_ticks(view)
    ok, qty, limit, position, _ = inventory(view, params)
    levels = params[P_LEVELS]
    if tick == 0.0 or not ok or not levels >= 1.0:
        return 0
    most = int(min(levels, MAX_LEVELS, quotes.shape[0]))
    spacing = at_least(params[P_GRID_TICKS], MIN_GRID_TICKS) * tick
    half_spread = at_least(params[P_HALF_SPREAD_TICKS], MIN_HALF_SPREAD_TICKS)
    centre = mid - params[P_SKEW_TICKS_PER_UNIT] * position
    bid, ask, ok = post_only_pair(view, (centre - half_spread) * tick, (centre + half_spread) * tick, tick)
    if not (ok and math.isfinite(spacing)):
        return 0
    n_bids = orders_that_fit(limit - position, qty, most)
    n_asks = orders_that_fit(limit + position, qty, most)
    rows = max(n_bids, n_asks)
    for j in range(rows):
        write_level(
            quotes, j, bid - j * spacing, qty if j < n_bids else 0.0, ask + j * spacing, qty if j < n_asks else 0.0
        )
    return rows


GRID = Strategy(
    name="grid",
    quote=grid_quote,
    params=(
        *BASE_PARAMS,
        Param("levels", 3.0, f"quotes per side, 1 to {MAX_LEVELS}", 1),
        Param("grid_ticks", 1.0, "distance between neighbouring levels of a side, ticks (at least 1)"),
        Param("half_spread_ticks", 1.0, "distance of the innermost levels from the centre, ticks (at least 0.5)"),
        Param("skew_ticks_per_unit", 0.5, "shift of the whole grid against the position, ticks per instrument unit"),
    ),
    doc="an inventory-skewed grid of quotes, levels spaced grid_ticks apart, within a maximum position",
)
