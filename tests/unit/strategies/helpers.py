"""Small builders shared by the strategy tests: a view from a few numbers, one call of a strategy."""

from __future__ import annotations

import numpy as np

from strategies.api import (
    V_ASK,
    V_BID,
    V_BUY_HIGH,
    V_ELAPSED_NS,
    V_LOT,
    V_POSITION,
    V_SELL_LOW,
    V_TICK,
    V_TRADES,
    Strategy,
    new_quotes,
    new_view,
)

TICK = 0.01


def make_view(
    bid: float = 100.0,
    ask: float = 100.01,
    *,
    tick: float = TICK,
    lot: float = 1.0,
    position: float = 0.0,
    elapsed_ns: float = 0.0,
    trades: float = 0.0,
    buy_high: float = np.nan,
    sell_low: float = np.nan,
) -> np.ndarray:
    """A view with the touch, the instrument's increments, the position and the trade summary filled in."""
    view = new_view()
    view[V_BID], view[V_ASK], view[V_TICK], view[V_LOT] = bid, ask, tick, lot
    view[V_POSITION], view[V_ELAPSED_NS], view[V_TRADES] = position, elapsed_ns, trades
    view[V_BUY_HIGH], view[V_SELL_LOW] = buy_high, sell_low
    return view


def call(
    strategy: Strategy, view: np.ndarray, params: np.ndarray, state: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One call of ``strategy``: the rows it wrote (a copy) and its state (``state`` itself when given)."""
    if state is None:
        state = np.zeros(strategy.state_size)
    quotes = new_quotes()
    rows = strategy.quote(0, view, params, state, quotes)
    assert 0 <= rows <= quotes.shape[0]
    return quotes[:rows].copy(), state


def unchecked_params(strategy: Strategy, **values: float) -> np.ndarray:
    """The default parameters with ``values`` written in unchecked: how a kernel meets values a config refuses."""
    params = strategy.param_array()
    for name, value in values.items():
        params[strategy.names.index(name)] = value
    return params


def fixed_params(strategy: Strategy, **overrides: float) -> np.ndarray:
    """Parameters with the online estimators switched off, so sigma, A and k are the given values."""
    values = {"estimate_sigma": 0.0, "estimate_intensity": 0.0} if "estimate_sigma" in strategy.names else {}
    return strategy.param_array(values | overrides)
