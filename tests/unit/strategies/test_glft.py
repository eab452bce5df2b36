"""GLFT: half spread and skew against a direct numpy evaluation of Gueant's closed-form approximation."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.api import Q_ASK, Q_ASK_QTY, Q_BID, Q_BID_QTY
from strategies.glft import GLFT, glft_half_spread_and_skew
from tests.unit.strategies.helpers import TICK, call, fixed_params, make_view

CASES = [  # gamma, xi, sigma, A, k
    (0.1, 0.1, 1.0, 1.0, 0.5),
    (0.05, 0.3, 2.0, 5.0, 0.2),
    (1.0, 1.0, 0.5, 0.2, 3.0),
    (0.2, 0.0001, 4.0, 10.0, 1.0),
]


def formula(gamma: float, xi: float, sigma: float, a: float, k: float) -> tuple[float, float]:
    """(half spread, skew) in ticks for an order size Delta = 1, written out from the paper."""
    delta = 1.0
    c1 = 1.0 / (xi * delta) * np.log(1.0 + xi * delta / k)
    c2 = np.sqrt(gamma / (2.0 * a * delta * k) * (1.0 + xi * delta / k) ** (k / (xi * delta) + 1.0))
    return c1 + delta / 2.0 * sigma * c2, sigma * c2


def glft_quote(position: float = 0.0, **params: float) -> np.ndarray:
    rows, _ = call(GLFT, make_view(90.0, 110.0, position=position), fixed_params(GLFT, **params))
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize(("gamma", "xi", "sigma", "a", "k"), CASES)
def test_half_spread_and_skew_match_the_formula(gamma: float, xi: float, sigma: float, a: float, k: float) -> None:
    assert glft_half_spread_and_skew(gamma, xi, sigma, a, k) == pytest.approx(formula(gamma, xi, sigma, a, k), rel=1e-9)


@pytest.mark.parametrize(("gamma", "xi", "sigma", "a", "k"), CASES)
@pytest.mark.parametrize("position", [0.0, 4.0, -6.0])
def test_quotes_sit_at_the_glft_depths(
    position: float, gamma: float, xi: float, sigma: float, a: float, k: float
) -> None:
    row = glft_quote(position, order_qty=2.0, gamma=gamma, xi=xi, sigma_ticks=sigma, A_per_s=a, k_per_tick=k)
    half, skew = formula(gamma, xi, sigma, a, k)
    q = position / 2.0
    assert row[Q_BID] == pytest.approx(100.0 - (half + skew * q) * TICK, rel=1e-12)
    assert row[Q_ASK] == pytest.approx(100.0 + (half - skew * q) * TICK, rel=1e-12)


def test_negative_xi_means_xi_equals_gamma() -> None:
    np.testing.assert_array_equal(glft_quote(3.0, gamma=0.3, xi=-1.0), glft_quote(3.0, gamma=0.3, xi=0.3))


def test_xi_zero_is_the_continuous_limit() -> None:
    half, skew = glft_half_spread_and_skew(0.1, 0.0, 2.0, 1.0, 0.5)
    half_near, skew_near = formula(0.1, 1e-7, 2.0, 1.0, 0.5)
    assert half == pytest.approx(half_near, rel=1e-6) and skew == pytest.approx(skew_near, rel=1e-6)


def test_zero_gamma_removes_the_skew() -> None:
    long, short = glft_quote(5.0, gamma=0.0, xi=0.1), glft_quote(-5.0, gamma=0.0, xi=0.1)
    assert long[Q_BID] == pytest.approx(short[Q_BID]) and long[Q_ASK] == pytest.approx(short[Q_ASK])


def test_skew_leans_against_the_inventory() -> None:
    centres = [(r[Q_BID] + r[Q_ASK]) / 2 for r in (glft_quote(p) for p in (-5.0, 0.0, 5.0))]
    assert centres[0] > 100.0 > centres[2] and centres[1] == pytest.approx(100.0)


def test_no_quote_beyond_the_inventory_bounds() -> None:
    long = glft_quote(10.0, max_position=10.0)
    short = glft_quote(-10.0, max_position=10.0)
    assert (long[Q_BID_QTY], long[Q_ASK_QTY]) == (0.0, 1.0)
    assert (short[Q_BID_QTY], short[Q_ASK_QTY]) == (1.0, 0.0)
