"""Every strategy over random sequences of views: finite prices, sizes >= 0, bid < ask, post-only, within limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import STRATEGIES
from strategies.api import MAX_LEVELS, Q_ASK, Q_ASK_QTY, Q_BID, Q_BID_QTY, V_ASK, V_BID, V_LOT, V_POSITION
from tests.unit.strategies.helpers import call, make_view, unchecked_params

NAN = float("nan")
MODELS = ("avellaneda-stoikov", "glft", "grid")  # touch has its own tests below
PARAM_VALUES = {  # what each parameter may take, across all strategies (degenerate values included)
    "order_qty": st.sampled_from([0.001, 0.5, 1.0, 100.0]) | st.floats(-1.0, 1e4),
    "max_position": st.floats(-1.0, 1e5),
    "gamma": st.floats(0.0, 10.0) | st.just(-1.0),
    "horizon_s": st.floats(0.0, 1e3),
    "xi": st.floats(-1.0, 10.0),
    "sigma_ticks": st.floats(0.0, 1e3),
    "A_per_s": st.floats(0.0, 1e4),
    "k_per_tick": st.floats(0.0, 1e3),
    "estimate_sigma": st.sampled_from([0.0, 1.0]),
    "estimate_intensity": st.sampled_from([0.0, 1.0]),
    "window_s": st.floats(0.0, 1e5),
    "depth_step_ticks": st.floats(0.0, 20.0),
    "min_arrivals": st.floats(0.0, 100.0),
    "levels": st.integers(0, 12).map(float),
    "grid_ticks": st.floats(0.0, 50.0),
    "half_spread_ticks": st.floats(0.0, 50.0),
    "skew_ticks_per_unit": st.floats(-100.0, 100.0),
}


@st.composite
def views(draw: st.DrawFn) -> np.ndarray:
    """A view with a random (possibly one-sided, locked or crossed) touch and a random trade summary."""
    tick = draw(st.sampled_from([0.0001, 0.01, 0.25, 1.0, 50.0]))
    bid_ticks = draw(st.integers(-(10**6), 10**8))
    ask_ticks = bid_ticks + draw(st.integers(-3, 200))
    bid, ask = bid_ticks * tick, ask_ticks * tick
    if draw(st.integers(0, 9)) == 0:
        bid, ask = draw(st.sampled_from([(NAN, ask), (bid, NAN), (NAN, NAN)]))
    reach = st.none() | st.floats(-10.0, 500.0)
    up, down = draw(reach), draw(reach)
    return make_view(
        bid,
        ask,
        tick=tick,
        lot=draw(st.sampled_from([0.001, 1.0, 100.0])),
        position=draw(st.floats(-1e7, 1e7) | st.sampled_from([0.0, 10.0, -10.0])),
        elapsed_ns=draw(st.floats(-1e9, 1e14) | st.sampled_from([0.0, 1e8])),
        trades=draw(st.integers(0, 10**6)),
        buy_high=NAN if up is None else ask + up * tick,
        sell_low=NAN if down is None else bid - down * tick,
    )


def check_quotes(rows: np.ndarray, view: np.ndarray, max_position: float) -> None:
    """The promises every strategy keeps, whatever the view and the parameters."""
    assert len(rows) <= MAX_LEVELS
    if len(rows) == 0:
        return
    assert not (math.isnan(view[V_BID]) or math.isnan(view[V_ASK])), "quotes without a two-sided book"
    assert np.isfinite(rows).all()
    assert (rows[:, [Q_BID_QTY, Q_ASK_QTY]] >= 0.0).all()
    assert (rows[:, Q_BID] < rows[:, Q_ASK]).all()
    assert (rows[:, Q_BID] < view[V_ASK]).all() and (rows[:, Q_ASK] > view[V_BID]).all(), "a quote would cross"
    limit = max_position + 0.5 * view[V_LOT]
    slack = 1e-9 * max(1.0, abs(limit))
    position = view[V_POSITION]
    assert rows[:, Q_BID_QTY].sum() <= max(0.0, limit - position) + slack
    assert rows[:, Q_ASK_QTY].sum() <= max(0.0, limit + position) + slack


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=100, deadline=None)
@given(data=st.data(), sequence=st.lists(views(), min_size=1, max_size=6))
def test_random_views_give_sane_quotes_and_finite_state(name: str, data: st.DataObject, sequence: list) -> None:
    strategy = STRATEGIES[name]
    overrides = {n: data.draw(PARAM_VALUES[n], label=n) for n in strategy.names if n in PARAM_VALUES}
    params = unchecked_params(strategy, **overrides)  # whatever the parameters: even values a config refuses
    state = np.zeros(strategy.state_size)
    for view in sequence:
        rows, state = call(strategy, view, params, state)
        check_quotes(rows, view, overrides.get("max_position", 10.0))
        assert np.isfinite(state).all()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_default_params_quote_both_sides_of_a_normal_book(name: str) -> None:
    strategy = STRATEGIES[name]
    rows, _ = call(strategy, make_view(100.00, 100.02), strategy.param_array())
    assert len(rows) >= 1
    assert rows[0, Q_BID_QTY] > 0 and rows[0, Q_ASK_QTY] > 0
    assert rows[0, Q_BID] <= 100.00 + 1e-9 and rows[0, Q_ASK] >= 100.02 - 1e-9


@pytest.mark.parametrize("name", MODELS)
def test_no_room_for_quotes_or_a_state_too_short_gives_nothing(name: str) -> None:
    strategy = STRATEGIES[name]
    view, params = make_view(), strategy.param_array()
    assert strategy.quote(0, view, params, np.zeros(strategy.state_size), np.zeros((0, 4))) == 0
    if name != "grid":  # the grid keeps no state
        assert strategy.quote(0, view, params, np.zeros(4), np.zeros((1, 4))) == 0


@pytest.mark.parametrize(
    ("view", "overrides"),
    [
        pytest.param(make_view(100.0, 100.0), {}, id="locked-book"),
        pytest.param(make_view(100.02, 100.0), {}, id="crossed-book"),
        pytest.param(make_view(), {"order_qty": -1.0}, id="negative-size"),
    ],
)
def test_touch_keeps_the_promises_on_degenerate_inputs(view: np.ndarray, overrides: dict) -> None:
    touch = STRATEGIES["touch"]
    rows, _ = call(touch, view, unchecked_params(touch, **overrides))
    check_quotes(rows, view, 10.0)
    assert touch.quote(0, view, touch.param_array(), np.zeros(4), np.zeros((0, 4))) == 0
