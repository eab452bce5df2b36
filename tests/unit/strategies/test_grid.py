"""The inventory-skewed grid: level spacing, the shift against the position, the position limit, the clamps."""

from __future__ import annotations

import numpy as np

from strategies.api import MAX_LEVELS, Q_ASK, Q_ASK_QTY, Q_BID, Q_BID_QTY
from strategies.grid import GRID
from tests.unit.strategies.helpers import TICK, call, make_view, unchecked_params


def grid(position: float = 0.0, bid: float = 90.0, ask: float = 110.0, **params: float) -> np.ndarray:
    rows, _ = call(GRID, make_view(bid, ask, position=position), GRID.param_array(params))
    return rows


def test_levels_are_spaced_grid_ticks_apart_from_half_spread() -> None:
    rows = grid(levels=4, grid_ticks=3, half_spread_ticks=2)
    distances = (2 + 3 * np.arange(4)) * TICK
    np.testing.assert_allclose(rows[:, Q_BID], 100.0 - distances)
    np.testing.assert_allclose(rows[:, Q_ASK], 100.0 + distances)
    assert (rows[:, [Q_BID_QTY, Q_ASK_QTY]] == 1.0).all()


def test_the_grid_shifts_against_the_position() -> None:
    flat = grid(0.0, skew_ticks_per_unit=0.5)
    long = grid(4.0, skew_ticks_per_unit=0.5)
    short = grid(-4.0, skew_ticks_per_unit=0.5)
    np.testing.assert_allclose(long[:, [Q_BID, Q_ASK]], flat[:, [Q_BID, Q_ASK]] - 2 * TICK)
    np.testing.assert_allclose(short[:, [Q_BID, Q_ASK]], flat[:, [Q_BID, Q_ASK]] + 2 * TICK)


def test_levels_beyond_max_position_are_not_quoted() -> None:
    rows = grid(3.0, levels=4, order_qty=2.0, max_position=8.0)  # lot 1: limit 8.5; room 5.5 to buy, 11.5 to sell
    np.testing.assert_array_equal(rows[:, Q_BID_QTY], [2.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(rows[:, Q_ASK_QTY], [2.0, 2.0, 2.0, 2.0])
    assert len(grid(9.0, levels=4, order_qty=2.0, max_position=8.0)) == 4  # asks only
    assert len(grid(30.0, levels=4, order_qty=20.0, max_position=8.0)) == 1  # one ask of 20 fits (30 - 20 >= -8.5)


def test_level_count_is_capped_and_zero_levels_quote_nothing() -> None:
    assert len(grid(levels=50, max_position=100.0)) == MAX_LEVELS
    assert len(call(GRID, make_view(90.0, 110.0), unchecked_params(GRID, levels=0))[0]) == 0
    assert len(grid(levels=2.9)) == 2


def test_spacing_below_a_tick_is_raised_to_one_tick() -> None:
    rows = grid(levels=3, grid_ticks=0.2)
    np.testing.assert_allclose(np.diff(rows[:, Q_BID]), -TICK)


def test_a_shift_past_the_touch_keeps_the_ladder_outside_the_book() -> None:
    rows = grid(10.0, bid=100.00, ask=100.01, levels=3, skew_ticks_per_unit=2.0, max_position=20.0)
    np.testing.assert_allclose(rows[:, Q_ASK], [100.01, 100.02, 100.03])  # from best bid + 1 tick, one tick apart
    assert (rows[:, Q_BID] < 100.01).all()
    np.testing.assert_allclose(np.diff(rows[:, Q_BID]), -TICK)
