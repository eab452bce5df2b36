"""The registry: each strategy by name, with documented parameters, callable through the engine's function type."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, types

from strategies import STRATEGIES, get_strategy
from strategies.api import QUOTE_FN, new_quotes
from tests.unit.strategies.helpers import make_view

NAMES = ("avellaneda-stoikov", "glft", "grid", "touch")


_F64 = types.float64[::1]


@njit(types.int64(QUOTE_FN, _F64, _F64, _F64, types.float64[:, ::1]), cache=True)
def _call_through_function_type(fn, view, params, state, quotes):
    """How the engine's kernels call a strategy: through the one first-class function type."""
    return fn(0, view, params, state, quotes)


def test_registry_lists_the_four_strategies() -> None:
    assert sorted(STRATEGIES) == sorted(NAMES)
    for name in NAMES:
        assert get_strategy(name).name == name


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="glft"):
        get_strategy("no-such-strategy")


@pytest.mark.parametrize("name", NAMES)
def test_params_start_with_interval_and_are_documented(name: str) -> None:
    strategy = get_strategy(name)
    assert strategy.names[0] == "interval_ns"
    assert len(set(strategy.names)) == len(strategy.names)
    assert all(p.doc for p in strategy.params)
    assert all(name in strategy.describe() for name in strategy.names)


@pytest.mark.parametrize("name", NAMES)
def test_param_array_overrides_defaults_and_rejects_unknown_names(name: str) -> None:
    strategy = get_strategy(name)
    array = strategy.param_array({"order_qty": 3.0})
    assert array.dtype == np.float64 and len(array) == len(strategy.params)
    assert array[strategy.names.index("order_qty")] == 3.0
    with pytest.raises(ValueError, match="no parameter bogus"):
        strategy.param_array({"bogus": 1.0})


@pytest.mark.parametrize("name", NAMES)
def test_quote_runs_as_a_first_class_function_of_the_engine_type(name: str) -> None:
    strategy = get_strategy(name)
    view = make_view(position=2.0)
    params = strategy.param_array()
    direct, through = new_quotes(), new_quotes()
    rows = strategy.quote(0, view, params, np.zeros(strategy.state_size), direct)
    assert rows >= 1
    assert _call_through_function_type(strategy.quote, view, params, np.zeros(strategy.state_size), through) == rows
    np.testing.assert_array_equal(direct, through)


@pytest.mark.parametrize(
    ("name", "values", "reason"),
    [
        ("touch", {"order_qty": -100}, "strategy touch: order_qty = -100 must be > 0"),
        ("grid", {"levels": 0}, "strategy grid: levels = 0 must be >= 1"),
        ("glft", {"window_s": 0}, "strategy glft: window_s = 0 must be > 0"),
        ("glft", {"xi": float("inf")}, "strategy glft: xi = inf must be finite"),
        ("avellaneda-stoikov", {"gamma": float("nan")}, "strategy avellaneda-stoikov: gamma = nan must be >= 0"),
    ],
)
def test_parameters_out_of_range_are_refused(name: str, values: dict, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        STRATEGIES[name].param_array(values)
    assert str(raised.value) == reason
