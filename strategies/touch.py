"""``touch``: join the best bid and the best ask with a fixed size while the position allows it.

The reference strategy for cross-checks (the backtester against hftbacktest, live against replay):
no model, so any difference between two runs is the engine's, not the strategy's.
"""

from __future__ import annotations

from numba import njit

from strategies.api import QUOTE_SIG, V_ASK, V_BID, V_LOT, V_POSITION, Param, Strategy

P_ORDER_QTY = 1
P_MAX_POSITION = 2


@njit(QUOTE_SIG, cache=True, nogil=True)
def touch_quote(now_ns, view, params, state, quotes):
    """Bid at the best bid and ask at the best ask, ``order_qty`` each, inside +-``max_position``."""
    bid = view[V_BID]
    ask = view[V_ASK]
    qty = params[P_ORDER_QTY]
    if not (bid < ask) or not (qty > 0) or quotes.shape[0] < 1:  # NaN sides and locked/crossed books included
        return 0
    limit = params[P_MAX_POSITION] + 0.5 * view[V_LOT]  # half a lot absorbs float rounding of the position
    position = view[V_POSITION]
    quotes[0, 0] = bid
    quotes[0, 1] = qty if position + qty <= limit else 0.0
    quotes[0, 2] = ask
    quotes[0, 3] = qty if position - qty >= -limit else 0.0
    return 1


TOUCH = Strategy(
    name="touch",
    quote=touch_quote,
    params=(
        Param("interval_ns", 100_000_000, "how often quotes are re-evaluated, ns (0: on every book change)", 0),
        Param("order_qty", 1.0, "size of each quote, instrument units", 0, exclusive=True),
        Param("max_position", 10.0, "no quote that could take |position| beyond this, instrument units", 0),
    ),
    doc="join the best bid and ask with a fixed size within a maximum position",
)
