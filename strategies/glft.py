"""``glft``: the Gueant-Lehalle-Fernandez-Tapia closed-form quotes for a market maker with bounded inventory.

Gueant, Lehalle & Fernandez-Tapia, "Dealing with the inventory risk: a solution to the market making
problem", Mathematics and Financial Economics 7, 2013 (the asymptotic approximation of the optimal quotes
far from the horizon), in the form of Gueant, "Optimal market making", Applied Mathematical Finance
24(2), 2017, with order size ``Delta`` and ``xi`` (``xi = gamma``: the original model)::

    c1 = 1 / (xi Delta) * ln(1 + xi Delta / k)
    c2 = sqrt( gamma / (2 A Delta k) * (1 + xi Delta / k) ** (k / (xi Delta) + 1) )
    bid depth = c1 + (Delta / 2) sigma c2 + q sigma c2
    ask depth = c1 + (Delta / 2) sigma c2 - q sigma c2

so ``half_spread = c1 + Delta/2 * sigma * c2`` and ``skew = sigma * c2`` per unit of inventory, the bid
at ``mid - (half_spread + skew q)`` and the ask at ``mid + (half_spread - skew q)``. Inventory and
``Delta`` are counted in orders of ``order_qty`` (``Delta = 1``, ``q = position / order_qty``), the same
convention as :mod:`strategies.avellaneda_stoikov`, so ``gamma`` means the same in both; depths and
``sigma`` are in ticks, ``A`` per second, ``k`` per tick, estimated online (:mod:`strategies.estimators`)
unless fixed. The bounds of the model are ``+-max_position``: ``q`` is clipped to them and a side
whose order would go beyond is not quoted. ``xi -> 0`` gives ``c1 = 1/k`` and the power ``e``.
"""

from __future__ import annotations

import math

from numba import njit

from strategies.api import QUOTE_SIG, Param, Strategy
from strategies.estimators import EST_STATE_LEN, ESTIMATOR_PARAMS, model_inputs
from strategies.quoting import MODEL_PARAMS, SMALL_RATIO, log_spread_term, quote_one_level

P_XI = 4
P_ESTIMATOR = 5  # first of the estimator's parameters
ORDER_DELTA = 1.0  # Delta: one order of order_qty, the unit of inventory


@njit(cache=True, nogil=True)
def glft_half_spread_and_skew(gamma, xi, sigma, a, k):
    """``(half_spread, skew)`` in ticks for ``Delta = 1``: each depth's constant part, and its change per order held."""
    risk = xi * ORDER_DELTA
    x = risk / k
    power = math.e if x < SMALL_RATIO else math.exp((1.0 / x + 1.0) * math.log1p(x))
    c1 = log_spread_term(risk, k)
    c2 = math.sqrt(gamma / (2.0 * a * ORDER_DELTA * k) * power)
    return c1 + 0.5 * ORDER_DELTA * sigma * c2, sigma * c2


@njit(QUOTE_SIG, cache=True, nogil=True)
def glft_quote(now_ns, view, params, state, quotes):
    """One bid/ask pair at the GLFT depths for the current inventory."""
    ok, tick, mid, q, gamma, sigma, a, k = model_inputs(view, params, state, quotes, P_ESTIMATOR)
    if not ok:
        return 0
    xi = params[P_XI] if params[P_XI] >= 0.0 else gamma
    half_spread, skew = glft_half_spread_and_skew(gamma, xi, sigma, a, k)
    bid_ticks = mid - (half_spread + skew * q)
    ask_ticks = mid + (half_spread - skew * q)
    return quote_one_level(view, params, quotes, tick, bid_ticks, ask_ticks)


GLFT = Strategy(
    name="glft",
    quote=glft_quote,
    params=(
        *MODEL_PARAMS,
        Param("xi", -1.0, "the xi of Gueant (2017), per tick; negative: equal to gamma (the 2013 model)"),
        *ESTIMATOR_PARAMS,
    ),
    doc="Gueant-Lehalle-Fernandez-Tapia closed-form quotes with inventory bounds; sigma, A, k estimated online",
    state_size=max(64, EST_STATE_LEN),
)
