"""Order management: the state machine over OUCH responses, positions and PnL, unknown and duplicate responses."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core import events as E
from engine.trading import layout as TL
from engine.trading.oms import (
    apply_response_nb,
    cancel_order_nb,
    exposure_nb,
    new_counters,
    new_order_nb,
    new_orders,
    pnl_nb,
    replace_order_nb,
    working_count_nb,
)
from feeds import ouch

LOT = 10
PRICE = 1_000_000  # $100 in 1e-4 units


def response(kind: str, order_id: int, qty: int = 0, price: int = 0, match: int = 0, orig: int = 0,
             liquidity: str = "A") -> np.ndarray:  # fmt: skip
    """One OUCH response row as the order-entry client decodes it (exchange order reference 7; executions
    carry the liquidity flag)."""
    rsp = ouch.empty_responses(1)
    rsp["kind"] = ord(kind)
    rsp["liquidity_flag"] = ord(liquidity) if kind == "E" else 0
    rsp["user_ref_num"] = order_id
    rsp["orig_user_ref_num"] = orig
    rsp["qty"] = qty
    rsp["price"] = price
    rsp["match_number"] = match
    rsp["order_reference_number"] = 7
    return rsp


class Desk:
    """Order tables of two instruments, driven by OUCH response rows as the node receives them."""

    def __init__(self, rows: int = 4) -> None:
        self.own = new_orders(2, rows)
        self.oc = new_counters(100)
        self.inst = np.zeros((2, TL.N_IN), np.int64)
        self.inst[:, TL.IN_LOT] = LOT
        self.money = np.zeros((2, TL.N_MN))
        self.money[:, TL.MN_UNIT] = 1e-4
        self.money[:, TL.MN_LOT] = LOT
        self.match = 0

    def new(self, side: int = E.SIDE_BID, lots: int = 3, price: int = PRICE, i: int = 0) -> int:
        row = new_order_nb(self.own, self.oc, i, side, price, lots, 0)
        assert row >= 0
        return row

    def respond(self, kind: str, order_id: int, qty: int = 0, price: int = PRICE, match: int | None = None,
                orig: int = 0, liquidity: str = "A") -> int:  # fmt: skip
        if kind == "E":
            self.match += 1
        rsp = response(kind, order_id, qty, price, self.match if match is None else match, orig, liquidity)
        return apply_response_nb(self.own, self.oc, self.inst, self.money, rsp[0])

    def state(self, row: int, i: int = 0) -> tuple[int, int]:
        return int(self.own[i, row, TL.OW_STATE]), int(self.own[i, row, TL.OW_ORDER_STATE])

    def id(self, row: int, i: int = 0) -> int:
        return int(self.own[i, row, TL.OW_ID])


def test_new_order_takes_the_next_client_id_and_is_pending_until_accepted() -> None:
    desk = Desk()
    row = desk.new()
    assert desk.id(row) == 100 and desk.state(row) == (TL.LS_PENDING_NEW, TL.OS_PENDING_NEW)
    assert desk.respond("A", 100, 3 * LOT) == 0
    assert desk.state(row) == (TL.LS_LIVE, TL.OS_LIVE) and desk.own[0, row, TL.OW_EXCH_REF] == 7
    assert desk.inst[0, TL.IN_ACCEPTED] == 1 and working_count_nb(desk.own) == 1


def test_partial_then_full_fill_moves_position_cash_and_finishes_the_order() -> None:
    desk = Desk()
    row = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    desk.respond("E", 100, LOT, PRICE)
    assert desk.state(row) == (TL.LS_LIVE, TL.OS_PARTIAL) and desk.own[0, row, TL.OW_OPEN] == 2
    desk.respond("E", 100, 2 * LOT, PRICE - 100)
    assert desk.state(row) == (TL.LS_DONE, TL.OS_FILLED) and desk.own[0, row, TL.OW_OPEN] == 0
    assert desk.inst[0, TL.IN_POSITION] == 3 and desk.inst[0, TL.IN_FILLS] == 2
    assert desk.money[0, TL.MN_CASH] == pytest.approx(-(10 * 100.0 + 20 * 99.99))
    assert desk.money[0, TL.MN_AVG_PRICE] == pytest.approx((100.0 + 2 * 99.99) / 3)
    assert working_count_nb(desk.own) == 0


def test_realized_and_unrealized_pnl_on_an_average_cost_basis() -> None:
    desk = Desk()
    desk.new(E.SIDE_BID, 2)
    desk.respond("A", 100)
    desk.respond("E", 100, 2 * LOT, PRICE)  # long 20 units at 100
    desk.new(E.SIDE_ASK, 3, PRICE + 500)
    desk.respond("A", 101)
    desk.respond("E", 101, 3 * LOT, PRICE + 500)  # sell 30 at 100.05: realize 20 x 0.05, short 10 at 100.05
    assert desk.inst[0, TL.IN_POSITION] == -1
    assert desk.money[0, TL.MN_REALIZED] == pytest.approx(1.0)
    assert desk.money[0, TL.MN_AVG_PRICE] == pytest.approx(100.05)
    desk.money[0, TL.MN_MID] = 100.0
    assert pnl_nb(desk.inst, desk.money) == pytest.approx(1.0 + 10 * 0.05)
    assert desk.money[0, TL.MN_CASH] + (-10) * 100.0 == pytest.approx(pnl_nb(desk.inst, desk.money))


def test_cancel_goes_pending_then_canceled_and_frees_nothing_twice() -> None:
    desk = Desk()
    row = desk.new()
    desk.respond("A", 100, 3 * LOT)
    assert cancel_order_nb(desk.own, 0, row)
    assert desk.state(row) == (TL.LS_PENDING_CANCEL, TL.OS_PENDING_CANCEL)
    assert not cancel_order_nb(desk.own, 0, row)  # already on its way
    desk.respond("C", 100, 3 * LOT)
    assert desk.state(row) == (TL.LS_DONE, TL.OS_CANCELED) and desk.inst[0, TL.IN_CANCELED] == 1
    assert not cancel_order_nb(desk.own, 0, row)


def test_cancel_before_the_accept_keeps_pending_cancel_and_counts_the_accept() -> None:
    desk = Desk()
    row = desk.new()
    assert cancel_order_nb(desk.own, 0, row)
    desk.respond("A", 100, 3 * LOT)
    assert desk.state(row) == (TL.LS_PENDING_CANCEL, TL.OS_PENDING_CANCEL) and desk.oc[TL.OC_DUPLICATE] == 0
    desk.respond("C", 100, 3 * LOT)
    assert desk.state(row) == (TL.LS_DONE, TL.OS_CANCELED)


def test_reject_of_a_new_order_and_of_a_cancel() -> None:
    desk = Desk()
    row = desk.new()
    desk.respond("J", 100)
    assert desk.state(row) == (TL.LS_DONE, TL.OS_REJECTED) and desk.inst[0, TL.IN_REJECTS] == 1
    other = desk.new()
    desk.respond("A", 101)
    cancel_order_nb(desk.own, 0, other)
    desk.respond("J", 101)  # the cancel was refused: the order is live again
    assert desk.state(other) == (TL.LS_LIVE, TL.OS_LIVE)
    for _ in range(2):  # refused twice more: the exchange has no such order; written off, no cancel storm
        assert cancel_order_nb(desk.own, 0, other)
        desk.respond("J", 101)
    assert desk.state(other) == (TL.LS_DONE, TL.OS_CANCELED) and desk.oc[TL.OC_WRITTEN_OFF] == 1


def test_replace_moves_the_order_to_its_new_row() -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 2, 0)
    assert new >= 0 and desk.state(old) == (TL.LS_PENDING_CANCEL, TL.OS_PENDING_REPLACE)
    assert not cancel_order_nb(desk.own, 0, old)  # a replace is already on its way
    desk.respond("U", 101, 2 * LOT, PRICE - 100, orig=100)
    assert desk.state(old) == (TL.LS_DONE, TL.OS_REPLACED) and desk.state(new) == (TL.LS_LIVE, TL.OS_LIVE)
    again = replace_order_nb(desk.own, desk.oc, 0, new, PRICE - 200, 2, 0)
    desk.respond("J", desk.id(again))  # refused: the order it was to replace stays live
    assert desk.state(new) == (TL.LS_LIVE, TL.OS_LIVE) and desk.state(again) == (TL.LS_DONE, TL.OS_REJECTED)


def test_a_new_order_reuses_the_row_that_finished_longest_ago() -> None:
    """A Replace crossing the fill of its order is refused after the fill; the next order must not have
    taken the replacement's row meanwhile, or the refusal reads as an unknown response."""
    desk = Desk(rows=3)
    gone, filled, other = desk.new(), desk.new(), desk.new()
    for row in (gone, filled, other):
        desk.respond("A", desk.id(row), 3 * LOT)
    desk.respond("C", desk.id(gone), 3 * LOT)  # finished first
    replacement = replace_order_nb(desk.own, desk.oc, 0, filled, PRICE - 100, 3, 0)
    assert replacement == gone  # the only row left
    desk.respond("C", desk.id(other), 3 * LOT)
    desk.respond("E", desk.id(filled), 3 * LOT)  # filled before the exchange saw the replace
    assert desk.state(replacement) == (TL.LS_DONE, TL.OS_CANCELED)
    assert desk.new() == other  # finished before the replacement did
    assert desk.respond("J", desk.id(replacement)) == 0  # the replace refused (its order was gone): expected
    assert desk.oc[TL.OC_UNKNOWN] == 0 and desk.state(replacement) == (TL.LS_DONE, TL.OS_CANCELED)


def test_unknown_and_duplicate_responses_are_counted_never_fatal() -> None:
    desk = Desk()
    row = desk.new()
    assert desk.respond("A", 999) == -1 and desk.oc[TL.OC_UNKNOWN] == 1
    desk.respond("A", 100, 3 * LOT)
    desk.respond("A", 100, 3 * LOT)  # a second accept
    desk.respond("E", 100, LOT, match=42)
    desk.respond("E", 100, LOT, match=42)  # the same execution again
    assert desk.oc[TL.OC_DUPLICATE] == 2 and desk.inst[0, TL.IN_POSITION] == 1
    desk.respond("C", 100, 2 * LOT)
    desk.respond("C", 100, 2 * LOT)  # cancel of a finished order
    desk.respond("J", 100)  # a cancel refused after the order finished: not an error either
    assert desk.oc[TL.OC_DUPLICATE] == 3 and desk.state(row) == (TL.LS_DONE, TL.OS_CANCELED)
    assert desk.respond("S", 0) == -1 and desk.oc[TL.OC_UNKNOWN] == 1  # system events concern no order


def test_a_full_table_reuses_finished_rows_and_counts_when_every_row_works() -> None:
    desk = Desk(rows=2)
    first = desk.new()
    desk.new()
    assert new_order_nb(desk.own, desk.oc, 0, E.SIDE_BID, PRICE, 1, 0) == -1 and desk.oc[TL.OC_FULL_TABLE] == 1
    desk.respond("J", desk.id(first))
    assert desk.new() == first  # the finished row is reused; its old id is unknown from now on
    assert desk.respond("J", 100) == -1 and desk.oc[TL.OC_UNKNOWN] == 1


def exposure(desk: Desk) -> tuple[np.ndarray, int]:
    """(position, working buys, working sells) per instrument in units, and the working orders."""
    out = np.zeros((3, desk.own.shape[0]))
    working = exposure_nb(desk.own, desk.inst, desk.money, out)
    return out, int(working)


def test_exposure_counts_the_position_and_working_orders_of_each_side() -> None:
    desk = Desk()
    desk.new(E.SIDE_BID, 2)
    desk.new(E.SIDE_BID, 3, i=1)
    desk.new(E.SIDE_ASK, 4)
    desk.inst[1, TL.IN_POSITION] = -5
    out, working = exposure(desk)
    assert out.tolist() == [[0.0, -50.0], [20.0, 30.0], [40.0, 0.0]] and working == 3
    assert working == working_count_nb(desk.own)


def test_fees_at_the_maker_rate_when_the_execution_added_liquidity_else_the_taker_rate() -> None:
    desk = Desk()
    desk.money[0, TL.MN_MAKER_FEE] = -0.0002  # a rebate
    desk.money[0, TL.MN_TAKER_FEE] = 0.0003
    desk.new(E.SIDE_BID, 2)
    desk.respond("A", 100)
    desk.respond("E", 100, 2 * LOT, PRICE, liquidity="A")  # bought 20 units at $100 adding liquidity: 0.4 rebate
    assert desk.money[0, TL.MN_FEES] == pytest.approx(-0.4)
    assert desk.money[0, TL.MN_CASH] == pytest.approx(-2000.0 + 0.4) and desk.money[0, TL.MN_REALIZED] == pytest.approx(
        0.4
    )
    desk.new(E.SIDE_ASK, 1, PRICE + 500)
    desk.respond("A", 101)
    desk.respond("E", 101, LOT, PRICE + 500, liquidity="R")  # sold 10 at $100.05 taking: 1000.5 x 0.0003
    desk.new(E.SIDE_ASK, 1, PRICE + 500)
    desk.respond("A", 102)
    desk.respond("E", 102, LOT, PRICE + 500, liquidity="J")  # non-displayed, added: the maker rate again
    fees = -0.4 + 1000.5 * 0.0003 - 1000.5 * 0.0002
    assert desk.money[0, TL.MN_FEES] == pytest.approx(fees)
    assert desk.inst[0, TL.IN_POSITION] == 0
    assert desk.money[0, TL.MN_REALIZED] == pytest.approx(20 * 0.05 - fees)  # net of fees
    assert desk.money[0, TL.MN_CASH] == pytest.approx(desk.money[0, TL.MN_REALIZED])  # flat: cash is the PnL
    assert pnl_nb(desk.inst, desk.money) == pytest.approx(1.0 - fees)


def test_a_cross_execution_pays_the_taker_rate() -> None:
    desk = Desk()
    desk.money[0, TL.MN_MAKER_FEE] = -0.0002
    desk.money[0, TL.MN_TAKER_FEE] = 0.0003
    desk.new(E.SIDE_BID, 1)
    desk.respond("A", 100)
    desk.respond("E", 100, LOT, PRICE, liquidity="C")  # the closing cross
    assert desk.money[0, TL.MN_FEES] == pytest.approx(1000.0 * 0.0003)


def test_replaced_takes_the_open_size_the_exchange_states_and_counts_open_units_once() -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 2, 0)
    assert desk.id(new) == 101 and desk.own[0, new, TL.OW_REPLACES] == old
    assert exposure(desk)[0][1, 0] == 50.0  # until the exchange answers: either may fill
    desk.respond("U", 101, 2 * LOT, PRICE - 100, orig=100)
    assert desk.state(old) == (TL.LS_DONE, TL.OS_REPLACED) and desk.state(new) == (TL.LS_LIVE, TL.OS_LIVE)
    assert desk.own[0, new, TL.OW_OPEN] == 2 and desk.own[0, new, TL.OW_REPLACES] == -1
    assert exposure(desk)[0][1, 0] == 20.0 and working_count_nb(desk.own) == 1
    desk.respond("U", 101, 2 * LOT, PRICE - 100, orig=100)  # the same Replaced again
    assert desk.oc[TL.OC_DUPLICATE] == 1
    assert desk.state(old) == (TL.LS_DONE, TL.OS_REPLACED) and desk.state(new) == (TL.LS_LIVE, TL.OS_LIVE)


def test_a_rejected_replace_leaves_the_partly_filled_order_as_it_was() -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    desk.respond("E", 100, LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 3, 0)
    desk.respond("J", 101)
    assert desk.state(old) == (TL.LS_LIVE, TL.OS_PARTIAL) and desk.own[0, old, TL.OW_OPEN] == 2
    assert desk.state(new) == (TL.LS_DONE, TL.OS_REJECTED) and desk.inst[0, TL.IN_REJECTS] == 1
    assert working_count_nb(desk.own) == 1


def test_executions_of_the_old_order_before_the_replaced_still_count() -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 3, 0)
    desk.respond("E", 100, LOT)  # crossed the replace on the way
    assert desk.state(old) == (TL.LS_PENDING_CANCEL, TL.OS_PENDING_REPLACE) and desk.inst[0, TL.IN_POSITION] == 1
    desk.respond("U", 101, 3 * LOT, PRICE - 100, orig=100)
    assert desk.state(old) == (TL.LS_DONE, TL.OS_REPLACED) and desk.state(new) == (TL.LS_LIVE, TL.OS_LIVE)
    desk.respond("E", 101, 3 * LOT, PRICE - 100)
    assert desk.inst[0, TL.IN_POSITION] == 4 and desk.inst[0, TL.IN_FILLS] == 2 and working_count_nb(desk.own) == 0


@pytest.mark.parametrize("finish", ["E", "C"])
def test_an_old_order_that_finishes_before_its_replace_takes_the_replacement_with_it(finish: str) -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 3, 0)
    desk.respond(finish, 100, 3 * LOT)  # filled, or canceled by the exchange, before the replace reached it
    assert desk.state(old) == (TL.LS_DONE, TL.OS_FILLED if finish == "E" else TL.OS_CANCELED)
    assert desk.state(new) == (TL.LS_DONE, TL.OS_CANCELED) and working_count_nb(desk.own) == 0  # nothing waits
    desk.respond("J", 101)  # an exchange that answers the replace of a finished order: nothing more happens
    assert desk.inst[0, TL.IN_REJECTS] == 0 and desk.oc[TL.OC_DUPLICATE] == 0
    assert desk.state(new) == (TL.LS_DONE, TL.OS_CANCELED) and desk.inst[0, TL.IN_POSITION] == (
        3 if finish == "E" else 0
    )


def test_a_replacement_canceled_before_its_answer_then_rejected_restores_the_old_order() -> None:
    desk = Desk()
    old = desk.new(lots=3)
    desk.respond("A", 100, 3 * LOT)
    new = replace_order_nb(desk.own, desk.oc, 0, old, PRICE - 100, 3, 0)
    assert cancel_order_nb(desk.own, 0, new)  # a halt cancels what is working, the replacement included
    desk.respond("J", 101)  # the replace was refused: the answer to the replace, not to the cancel
    assert desk.state(new) == (TL.LS_DONE, TL.OS_REJECTED) and desk.state(old) == (TL.LS_LIVE, TL.OS_LIVE)
    desk.respond("J", 101)  # and then the cancel of an order the exchange never had
    assert desk.oc[TL.OC_DUPLICATE] == 1 and desk.inst[0, TL.IN_REJECTS] == 1
