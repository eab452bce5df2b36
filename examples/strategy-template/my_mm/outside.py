"""``outside``: quote one tick outside the touch on both sides, a fixed size within a maximum position.

A template: copy the package, rename it, change the quote function. It imports only ``strategies.api``
(the view it reads, the quotes it writes), so nothing in the engine changes.
"""

from __future__ import annotations

from numba import njit

from strategies.api import QUOTE_SIG, V_ASK, V_BID, V_LOT, V_POSITION, V_TICK, Param, Strategy

P_ORDER_QTY = 1
P_MAX_POSITION = 2


@njit(QUOTE_SIG, cache=True, nogil=True)
def outside_quote(now_ns, view, params, state, quotes):
    """Bid a tick under the best bid, ask a tick over the best ask; returns the levels written (0 or 1)."""
    bid, ask, qty = view[V_BID], view[V_ASK], params[P_ORDER_QTY]
    if not (bid < ask) or not (qty > 0):  # an empty or crossed side: no quote
        return 0
    limit = params[P_MAX_POSITION] + 0.5 * view[V_LOT]
    position = view[V_POSITION]
    quotes[0, 0] = bid - view[V_TICK]
    quotes[0, 1] = qty if position + qty <= limit else 0.0
    quotes[0, 2] = ask + view[V_TICK]
    quotes[0, 3] = qty if position - qty >= -limit else 0.0
    return 1


OUTSIDE = Strategy(
    name="outside",
    quote=outside_quote,
    params=(
        Param("interval_ns", 100_000_000, "how often quotes are re-evaluated, ns (0: on every book change)"),
        Param("order_qty", 1.0, "size of each quote, instrument units"),
        Param("max_position", 10.0, "no quote that could take |position| beyond this, instrument units"),
    ),
    doc="one tick outside the touch on both sides, a fixed size within a maximum position",
)
