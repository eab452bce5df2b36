"""``avellaneda-stoikov``: quotes around a reservation price that leans against the inventory.

Avellaneda & Stoikov, "High-frequency trading in a limit order book", Quantitative Finance 8(3), 2008:
the reservation price of their finite-horizon agent and the approximate optimal spread (first order
in ``q``) for the exponential intensity ``lambda(delta) = A exp(-k delta)``::

    r      = s - q * gamma * sigma^2 * tau                                  (reservation price)
    spread = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / k)        (bid to ask)
    bid    = r - spread / 2,   ask = r + spread / 2

``s`` is the mid, ``q`` the position counted in orders of ``order_qty`` (so ``gamma`` is the risk
aversion per tick for one order's worth of inventory), ``sigma`` the volatility in ticks per
sqrt-second and ``k`` the decay of the trade intensity per tick, both estimated online
(:mod:`strategies.estimators`; A is estimated too but does not enter these quotes).

Horizon: the paper's ``T - t`` counts down to a terminal time, which would make quotes drift through
the session (wide and inventory-blind at the start, inventory-obsessed at the close). A market maker
that runs continuously has no such time, so ``tau = horizon_s`` is held constant: the same formulas,
time-homogeneous, where ``horizon_s`` reads as how long an inventory is expected to be carried (the
inventory penalty is ``gamma`` times the price variance over that time). The paper's infinite-horizon
variant needs a discount rate and a bound on ``q`` to stay defined; the bounded-inventory stationary
solution is what :mod:`strategies.glft` implements.

``q`` is clipped to ``+-max_position / order_qty``, and a side whose order would take the position
beyond ``max_position`` is not quoted. ``gamma -> 0`` gives the limit ``spread = 2 / k``.
"""

from __future__ import annotations

from numba import njit

from strategies.api import QUOTE_SIG, Param, Strategy
from strategies.estimators import EST_STATE_LEN, ESTIMATOR_PARAMS, model_inputs
from strategies.quoting import MODEL_PARAMS, at_least, log_spread_term, quote_one_level

P_HORIZON_S = 4
P_ESTIMATOR = 5  # first of the estimator's parameters


@njit(QUOTE_SIG, cache=True, nogil=True)
def avellaneda_stoikov_quote(now_ns, view, params, state, quotes):
    """One bid/ask pair around the reservation price, the optimal spread apart."""
    ok, tick, mid, q, gamma, sigma, _, k = model_inputs(view, params, state, quotes, P_ESTIMATOR)
    if not ok:
        return 0
    inventory_risk = gamma * sigma * sigma * at_least(params[P_HORIZON_S], 0.0)
    reservation = mid - q * inventory_risk
    half_spread = 0.5 * inventory_risk + log_spread_term(gamma, k)
    return quote_one_level(view, params, quotes, tick, reservation - half_spread, reservation + half_spread)


AVELLANEDA_STOIKOV = Strategy(
    name="avellaneda-stoikov",
    quote=avellaneda_stoikov_quote,
    params=(
        *MODEL_PARAMS,
        Param("horizon_s", 10.0, "the constant T - t of the formulas: how long inventory is carried, seconds", 0),
        *ESTIMATOR_PARAMS,
    ),
    doc="Avellaneda-Stoikov reservation price and optimal spread; sigma, A, k estimated online",
    state_size=max(64, EST_STATE_LEN),
)
