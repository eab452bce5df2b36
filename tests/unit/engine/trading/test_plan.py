"""engine.trading.plan.plan_nb: wanted quotes -> cancels and new orders, the same live and in backtests."""

from __future__ import annotations

import numpy as np

from engine.core import events as E
from engine.trading import layout as TL
from engine.trading.plan import new_actions, plan_nb
from strategies.api import new_quotes

TICK = 100  # price units per tick (ITCH: $0.01)
UNIT = 1e-4  # currency per price unit
LOT = 1.0


def orders(*rows: tuple[int, int, int, int]) -> np.ndarray:
    """An order table from (side, price units, lots, state) rows, plus free rows."""
    own = np.zeros((8, TL.N_OWN_COMMON), np.int64)
    for i, (side, price, qty, state) in enumerate(rows):
        own[i, [TL.OW_SIDE, TL.OW_PRICE, TL.OW_QTY, TL.OW_OPEN, TL.OW_STATE]] = side, price, qty, qty, state
    return own


def plan(own: np.ndarray, *levels: tuple[float, float, float, float]) -> list[tuple]:
    quotes = new_quotes()
    for j, row in enumerate(levels):
        quotes[j] = row
    actions = new_actions(len(own))
    n = plan_nb(own, quotes, len(levels), TICK, UNIT, LOT, actions)
    return [tuple(int(x) for x in a[[TL.AC_KIND, TL.AC_SIDE, TL.AC_PRICE, TL.AC_QTY, TL.AC_ROW]]) for a in actions[:n]]


def test_first_quotes_become_two_new_orders_rounded_away_from_the_market() -> None:
    assert plan(orders(), (10.005, 100, 10.015, 50)) == [
        (TL.ACT_NEW, E.SIDE_BID, 100_000, 100, -1),  # 10.005 bid rounds down to 10.00
        (TL.ACT_NEW, E.SIDE_ASK, 100_200, 50, -1),  # 10.015 ask rounds up to 10.02
    ]


def test_an_order_at_a_wanted_price_stays_and_only_the_moved_side_is_replaced() -> None:
    own = orders((E.SIDE_BID, 100_000, 100, TL.LS_LIVE), (E.SIDE_ASK, 100_100, 100, TL.LS_LIVE))
    assert plan(own, (10.00, 100, 10.02, 100)) == [
        (TL.ACT_CANCEL, E.SIDE_ASK, 100_100, 100, 1),
        (TL.ACT_NEW, E.SIDE_ASK, 100_200, 100, -1),
    ]


def test_pending_orders_are_not_sent_twice_and_done_ones_do_not_count() -> None:
    own = orders((E.SIDE_BID, 100_000, 100, TL.LS_PENDING_NEW), (E.SIDE_ASK, 100_100, 100, TL.LS_DONE))
    assert plan(own, (10.00, 100, 10.01, 100)) == [(TL.ACT_NEW, E.SIDE_ASK, 100_100, 100, -1)]


def test_no_quotes_cancel_every_working_order_but_not_those_already_canceling() -> None:
    own = orders((E.SIDE_BID, 100_000, 100, TL.LS_LIVE), (E.SIDE_ASK, 100_100, 100, TL.LS_PENDING_CANCEL))
    assert plan(own) == [(TL.ACT_CANCEL, E.SIDE_BID, 100_000, 100, 0)]


def test_zero_size_nan_price_and_two_levels_on_one_tick() -> None:
    assert plan(orders(), (10.00, 0, np.nan, 100)) == []
    assert plan(orders(), (10.004, 100, 10.02, 0.4), (10.001, 100, 10.03, 100)) == [
        (TL.ACT_NEW, E.SIDE_BID, 100_000, 100, -1),  # the second bid level rounds onto the first: one order
        (TL.ACT_NEW, E.SIDE_ASK, 100_300, 100, -1),  # 0.4 of a lot rounds to nothing
    ]
