"""Avellaneda-Stoikov: the quotes against a direct numpy evaluation of the paper's formulas, and their direction."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.api import Q_ASK, Q_ASK_QTY, Q_BID, Q_BID_QTY
from strategies.avellaneda_stoikov import AVELLANEDA_STOIKOV as AS
from tests.unit.strategies.helpers import TICK, call, fixed_params, make_view

WIDE = {"bid": 90.0, "ask": 110.0}  # a book so wide that no post-only clamp binds: the model's prices show through
MID_TICKS = 100.0 / TICK


def formula(q: float, gamma: float, sigma: float, tau: float, k: float) -> tuple[float, float]:
    """Bid and ask, in price, straight from r = s - q gamma sigma^2 tau and the optimal spread."""
    r = MID_TICKS - q * gamma * sigma**2 * tau
    spread = gamma * sigma**2 * tau + 2.0 / gamma * np.log(1.0 + gamma / k)
    return (r - spread / 2) * TICK, (r + spread / 2) * TICK


def as_quote(position: float = 0.0, order_qty: float = 1.0, **params: float) -> np.ndarray:
    view = make_view(WIDE["bid"], WIDE["ask"], position=position)
    rows, _ = call(AS, view, fixed_params(AS, order_qty=order_qty, **params))
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("position", [0.0, 3.0, -7.0, 10.0])
@pytest.mark.parametrize(
    ("gamma", "sigma", "tau", "k"), [(0.1, 1.0, 10.0, 0.5), (0.5, 2.5, 3.0, 0.2), (0.01, 0.3, 60.0, 2.0)]
)
def test_quotes_match_the_formulas(position: float, gamma: float, sigma: float, tau: float, k: float) -> None:
    row = as_quote(position, order_qty=2.0, gamma=gamma, sigma_ticks=sigma, horizon_s=tau, k_per_tick=k)
    bid, ask = formula(position / 2.0, gamma, sigma, tau, k)
    assert row[Q_BID] == pytest.approx(bid, rel=1e-12)
    assert row[Q_ASK] == pytest.approx(ask, rel=1e-12)


def test_reservation_price_moves_against_the_inventory_and_the_spread_does_not() -> None:
    rows = np.array([as_quote(p, sigma_ticks=2.0) for p in range(-8, 9)])
    centres = (rows[:, Q_BID] + rows[:, Q_ASK]) / 2
    assert (np.diff(centres) < 0).all()
    np.testing.assert_allclose(rows[:, Q_ASK] - rows[:, Q_BID], rows[0, Q_ASK] - rows[0, Q_BID], rtol=1e-9)
    assert centres[8] == pytest.approx(100.0)  # flat: quotes centred on the mid


def spread(**params: float) -> float:
    row = as_quote(**params)
    return row[Q_ASK] - row[Q_BID]


def test_spread_widens_with_sigma() -> None:
    spreads = [spread(sigma_ticks=s) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert (np.diff(spreads) > 0).all()


def test_spread_against_gamma_follows_the_formula_both_ways() -> None:
    gammas = (0.01, 0.1, 0.5, 2.0)
    # with no volatility only (2/gamma) ln(1 + gamma/k) is left, which falls as gamma grows ...
    calm = [spread(gamma=g, sigma_ticks=0.0) for g in gammas]
    assert (np.diff(calm) < 0).all()
    # ... with volatility the inventory term gamma sigma^2 tau dominates and the spread widens
    wild = [spread(gamma=g, sigma_ticks=3.0) for g in gammas]
    assert (np.diff(wild) > 0).all()
    expected = [np.subtract(*formula(0.0, g, 3.0, 10.0, 0.5)[::-1]) for g in gammas]
    np.testing.assert_allclose(wild, expected, rtol=1e-12)


def test_zero_gamma_gives_the_limit_two_over_k() -> None:
    assert spread(gamma=0.0, k_per_tick=0.25) == pytest.approx(2.0 / 0.25 * TICK, rel=1e-12)


def test_the_side_that_would_breach_max_position_is_not_quoted() -> None:
    inside = as_quote(9.0, max_position=10.0)
    assert inside[Q_BID_QTY] == 1.0 and inside[Q_ASK_QTY] == 1.0
    long_at_limit = as_quote(10.0, max_position=10.0)
    assert long_at_limit[Q_BID_QTY] == 0.0 and long_at_limit[Q_ASK_QTY] == 1.0
    short_at_limit = as_quote(-10.0, max_position=10.0)
    assert short_at_limit[Q_BID_QTY] == 1.0 and short_at_limit[Q_ASK_QTY] == 0.0


def test_inventory_beyond_the_limit_is_clipped_in_the_skew() -> None:
    at_limit = as_quote(10.0, max_position=10.0, sigma_ticks=2.0)
    beyond = as_quote(40.0, max_position=10.0, sigma_ticks=2.0)
    np.testing.assert_array_equal(at_limit, beyond)


def test_a_skew_past_the_touch_is_clamped_to_stay_post_only() -> None:
    view = make_view(100.00, 100.01, position=10.0)
    rows, _ = call(AS, view, fixed_params(AS, sigma_ticks=5.0, max_position=10.0))
    assert rows[0, Q_ASK] == pytest.approx(100.01)  # the model ask is far below the bid: it joins the best bid + 1 tick
    assert rows[0, Q_BID] < 100.00


@pytest.mark.parametrize("bid,ask", [(np.nan, 100.0), (100.0, np.nan), (np.nan, np.nan)])
def test_a_one_sided_or_empty_book_gives_no_quotes(bid: float, ask: float) -> None:
    rows, _ = call(AS, make_view(bid, ask), AS.param_array())
    assert len(rows) == 0
