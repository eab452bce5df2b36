"""The online estimators, fed through the view over many calls: they recover known sigma, A and k."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.api import V_ASK, V_BID, V_BUY_HIGH, V_ELAPSED_NS, V_SELL_LOW, V_TRADES, new_quotes
from strategies.avellaneda_stoikov import AVELLANEDA_STOIKOV as AS
from strategies.estimators import S_A, S_FITTED, S_K, S_SIGMA
from tests.unit.strategies.helpers import TICK, make_view

SEED = 20260101


def run_calls(
    params: np.ndarray,
    dt_s: float,
    mids: np.ndarray,
    buy_depths: np.ndarray | None = None,
    sell_depths: np.ndarray | None = None,
) -> np.ndarray:
    """Call AS once per mid (ticks), ``dt_s`` apart, with the farthest buy/sell depth (ticks, NaN: no trade)."""
    n = len(mids)
    buys = np.full(n, np.nan) if buy_depths is None else buy_depths
    sells = np.full(n, np.nan) if sell_depths is None else sell_depths
    view, state, quotes = make_view(), np.zeros(AS.state_size), new_quotes()
    for i in range(n):
        mid = mids[i] * TICK
        view[V_BID], view[V_ASK] = mid - TICK / 2, mid + TICK / 2
        view[V_ELAPSED_NS] = 0.0 if i == 0 else dt_s * 1e9
        view[V_TRADES] = float(not (np.isnan(buys[i]) and np.isnan(sells[i])))
        # the trades happened around the previous mid, where the quotes were resting
        prev = mids[i - 1] if i else mids[0]
        view[V_BUY_HIGH] = (prev + buys[i]) * TICK
        view[V_SELL_LOW] = (prev - sells[i]) * TICK
        AS.quote(0, view, params, state, quotes)
    return state


def farthest_depths(rng: np.random.Generator, n: int, a: float, k: float, dt_s: float) -> np.ndarray:
    """Per interval, the farthest depth (ticks) reached by Poisson(a * dt) orders of Exp(k) depth; NaN when none."""
    counts = rng.poisson(a * dt_s, n)
    # the max of c exponentials has the CDF (1 - exp(-k x))^c: invert it
    u = rng.random(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        depths = -np.log1p(-(u ** (1.0 / counts))) / k
    return np.where(counts > 0, depths, np.nan)


@pytest.mark.parametrize(
    ("a", "k", "dt_s"),
    [
        (1.5, 0.4, 0.02),  # rare trades: about one call in 30 sees one
        (0.8, 1.2, 0.02),  # steep decay: few depths carry counts
        (10.0, 0.5, 0.1),  # busy: a trade a side in most calls, several in many (needs the Poisson correction)
    ],
)
def test_a_and_k_are_recovered_from_exponential_arrivals(a: float, k: float, dt_s: float) -> None:
    rng = np.random.default_rng(SEED)
    n = int(1200 / dt_s)  # 20 minutes of calls: from about 1000 to 12 000 trades a side
    params = AS.param_array({"window_s": 1e6, "A_per_s": 9.0, "k_per_tick": 9.0})
    buys, sells = farthest_depths(rng, n, a, k, dt_s), farthest_depths(rng, n, a, k, dt_s)
    state = run_calls(params, dt_s, np.full(n, 10_000.5), buys, sells)
    assert state[S_FITTED] == 1.0
    # 10 %: about five standard errors (the estimates scatter by 1-2 % across seeds at these sample sizes)
    assert state[S_A] == pytest.approx(a, rel=0.10)
    assert state[S_K] == pytest.approx(k, rel=0.10)


def test_too_few_trades_fall_back_to_the_priors() -> None:
    rng = np.random.default_rng(SEED)
    params = AS.param_array({"A_per_s": 3.0, "k_per_tick": 0.7, "min_arrivals": 50.0})
    depths = farthest_depths(rng, 200, 1.0, 0.5, 0.1)  # about 20 trades a side
    state = run_calls(params, 0.1, np.full(200, 10_000.5), depths, depths)
    assert (state[S_FITTED], state[S_A], state[S_K]) == (0.0, 3.0, 0.7)


def test_switching_the_fit_off_keeps_the_fixed_values() -> None:
    rng = np.random.default_rng(SEED)
    n = 20_000
    depths = farthest_depths(rng, n, 1.5, 0.4, 0.02)
    params = AS.param_array({"estimate_intensity": 0.0, "A_per_s": 3.0, "k_per_tick": 0.7})
    state = run_calls(params, 0.02, np.full(n, 10_000.5), depths, depths[::-1])
    assert (state[S_FITTED], state[S_A], state[S_K]) == (0.0, 3.0, 0.7)


def random_walk(rng: np.random.Generator, n: int, sigma: float, dt_s: float) -> np.ndarray:
    return 10_000.0 + np.cumsum(rng.normal(0.0, sigma * np.sqrt(dt_s), n))


def test_sigma_is_recovered_from_a_random_walk_mid() -> None:
    rng = np.random.default_rng(SEED)
    state = run_calls(AS.param_array({"window_s": 1e6}), 0.1, random_walk(rng, 10_000, 2.5, 0.1))
    assert state[S_SIGMA] == pytest.approx(2.5, rel=0.05)  # 10 000 squared moves: about 1 % sampling error


def test_sigma_forgets_the_old_regime_within_a_few_windows() -> None:
    rng = np.random.default_rng(SEED)
    calm, wild = random_walk(rng, 3_000, 1.0, 0.1), random_walk(rng, 3_000, 4.0, 0.1)
    mids = np.concatenate([calm, wild - wild[0] + calm[-1]])
    state = run_calls(AS.param_array({"window_s": 30.0}), 0.1, mids)  # 300 s of the new regime: 10 windows
    assert state[S_SIGMA] == pytest.approx(4.0, rel=0.15)


def test_sigma_is_the_prior_until_warm_and_when_fixed() -> None:
    rng = np.random.default_rng(SEED)
    mids = random_walk(rng, 50, 5.0, 0.1)  # 49 intervals, under the 100 needed
    assert run_calls(AS.param_array({"sigma_ticks": 1.5}), 0.1, mids)[S_SIGMA] == 1.5
    longer = random_walk(rng, 2_000, 5.0, 0.1)
    fixed = AS.param_array({"sigma_ticks": 1.5, "estimate_sigma": 0.0})
    assert run_calls(fixed, 0.1, longer)[S_SIGMA] == 1.5
    assert run_calls(AS.param_array({"sigma_ticks": 1.5}), 0.1, longer)[S_SIGMA] == pytest.approx(5.0, rel=0.1)


def test_calls_with_no_elapsed_time_and_no_news_change_nothing() -> None:
    params = AS.param_array()
    view, state = make_view(), np.zeros(AS.state_size)
    view[V_ELAPSED_NS] = 1e8
    AS.quote(0, view, params, state, new_quotes())
    before = state.copy()
    view[V_ELAPSED_NS] = 0.0
    for _ in range(5):
        AS.quote(0, view, params, state, new_quotes())
    np.testing.assert_array_equal(state, before)
