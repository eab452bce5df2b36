"""The trading node's compiled step without a network: book -> strategy -> risk -> OUCH bytes, gaps, kill."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from engine.book.layout import new_state
from engine.core import events as E
from engine.core.events import empty_events
from engine.gateway import session as SP
from engine.gateway.session import Port
from engine.live import layout as NL
from engine.live.builder import (
    NodeBlocks,
    NodeInstrument,
    NodeSpec,
    QuoteAddress,
    build_state,
    completed_probes,
    load_kernel,
    run_step,
)
from engine.live.journal import J_FULL, J_WRITE, KIND_SENT, M_KIND, M_LEN
from engine.runtime import control as CB
from engine.runtime import metrics as M
from engine.trading import layout as TL
from engine.trading.oms import find_order_nb
from engine.trading.risk import RiskConfig
from feeds import ouch
from strategies import get_strategy
from tests.unit.engine.trading.test_oms import response

BID, ASK = 999_900, 1_000_100  # $99.99 / $100.01
QTY = 100
_NAMES = itertools.count()


class Harness:
    """One node's state with its blocks, a book, and helpers to step it."""

    def __init__(self, risk: RiskConfig, interval_ns: int = 0, journal_capacity: int = 1024,
                 replace: bool = True) -> None:  # fmt: skip
        tag = f"test-{os.getpid()}-{next(_NAMES)}"
        self.blocks = NodeBlocks.create(tag, ["AAA"], tag, journal=False, journal_capacity=journal_capacity)
        self.spec = NodeSpec(
            name=tag, strategy="touch", params={"order_qty": QTY, "max_position": 1000, "interval_ns": interval_ns},
            instruments=(NodeInstrument("AAA", 1, 100, 1),), md_bind=("127.0.0.1", 0), multicast_group="",
            retransmit=("127.0.0.1", 9), aeron_dir="", port=Port("T", "p", "aeron:ipc", 1, "aeron:ipc", 2),
            risk=risk, metrics_block=self.blocks.metrics.name, control_block=self.blocks.control.name,
            first_order_id=50, replace=replace,
        )  # fmt: skip
        self.block, self.control, self.journal = self.blocks.metrics, self.blocks.control, self.blocks.journal
        self.ns = build_state(self.spec, self.blocks)
        self.book = new_state()
        self.quote = QuoteAddress(get_strategy("touch").quote)
        self.step_nb = load_kernel(self.ns, self.book)  # the entry point the node calls
        self.now = 1_000_000

    def step(self, events: np.ndarray | None = None, responses: np.ndarray | None = None) -> list[dict]:
        """One step; the OUCH messages it wrote, decoded."""
        self.now += 1_000_000
        events = empty_events(0) if events is None else events
        rsp = ouch.empty_responses(1) if responses is None else responses
        n_rsp = 0 if responses is None else len(rsp)
        n, self.book = run_step(self.step_nb, self.ns, self.book, events, rsp, n_rsp, self.now, self.quote)
        out, off = self.ns.out, self.ns.out_off
        messages = []
        for j in range(n):
            assert out[off[j]] == SP.PKT_UNSEQUENCED
            messages.append(ouch.decode(ouch.INBOUND, out[off[j] + 1 : off[j + 1]].tobytes()))
        return messages

    def close(self) -> None:
        self.ns = None
        self.blocks.close()


def touch_events(first_id: int = 1) -> np.ndarray:
    """A bid at BID and an ask at ASK joining the book of locate 1."""
    events = empty_events(2)
    for row, (oid, side, price) in enumerate(((first_id, E.SIDE_BID, BID), (first_id + 1, E.SIDE_ASK, ASK))):
        events[row]["kind"] = E.KIND_ADD
        events[row]["order_id"] = oid
        events[row]["side"] = side
        events[row]["price"] = price
        events[row]["qty"] = 300
        events[row]["instrument"] = 1
        events[row]["ts_local_ns"] = 5
    return events


@pytest.fixture
def node() -> Iterator[Harness]:
    harness = Harness(RiskConfig())
    yield harness
    harness.close()


def test_a_batch_of_market_data_gives_risk_checked_post_only_orders_at_the_touch(node: Harness) -> None:
    messages = node.step(touch_events())
    assert [(m["message_type"], m["side"], m["price"], m["quantity"]) for m in messages] == [
        ("O", ouch.SIDE_BUY, BID, QTY),
        ("O", ouch.SIDE_SELL, ASK, QTY),
    ]
    assert [m["user_ref_num"] for m in messages] == [50, 51] and messages[0]["symbol"] == "AAA"
    assert (ouch.TAG_POST_ONLY, b"P") in messages[0]["appendage"]
    counters = node.block.instrument_counters
    assert counters[0, M.I_ORDERS_SENT] == 2 and counters[0, M.I_BOOK_UPDATES] == 2
    assert node.control.slots[CB.CT_NEXT_ID] == 52
    assert node.step(touch_events()[:0]) == []  # nothing new: the orders stay


def test_a_batch_that_makes_orders_leaves_a_probe_whose_stages_add_up_to_tick_to_trade(node: Harness) -> None:
    events = touch_events()
    events["seq"] = [7, 8]
    events["ts_local_ns"] = time.monotonic_ns()
    node.ns.mi[NL.NI_DECODED_NS] = time.monotonic_ns()
    assert len(node.step(events)) == 2
    assert len(completed_probes(node.ns)) == 0  # open until Python says when the orders went out
    node.ns.mi[NL.NI_OFFER_NS] = offered = time.monotonic_ns()
    node.ns.mi[NL.NI_DECODED_NS] = 0
    node.step()
    [probe] = completed_probes(node.ns)
    assert probe[NL.PR_SEQ] == 8 and probe[NL.PR_FIRST_MESSAGE] == 0 and probe[NL.PR_MESSAGES] == 2
    stamps = probe[
        [NL.PR_RECV_NS, NL.PR_DECODED_NS, NL.PR_STEP_NS, NL.PR_BOOKED_NS, NL.PR_STEPPED_NS, NL.PR_OFFERED_NS]
    ]
    assert (np.diff(stamps) >= 0).all() and stamps[-1] == offered
    assert 0 < probe[NL.PR_RISK_NS] + probe[NL.PR_ENCODE_NS] <= probe[NL.PR_STEPPED_NS] - probe[NL.PR_BOOKED_NS]
    hist = node.block.histograms
    assert hist[0, -1] == offered - probe[NL.PR_RECV_NS]  # the tick-to-trade row's sum
    assert hist[1:, -1].sum() == hist[0, -1]  # the stages account for all of it
    assert hist[1 : 1 + len(NL.STAGES), :-1].sum() == len(NL.STAGES)


def test_every_message_is_journaled_before_python_sees_it_and_a_full_journal_stops_orders() -> None:
    node = Harness(RiskConfig(), journal_capacity=3)
    try:
        messages = node.step(touch_events())
        ring = node.journal
        assert len(messages) == 2 and ring.ctl[J_WRITE] == 2
        assert (ring.meta[:2, M_KIND] == KIND_SENT).all()
        first = ring.data[0, : ring.meta[0, M_LEN]].tobytes()
        assert first == node.ns.out[: node.ns.out_off[1]].tobytes()  # the session packet, byte for byte
        node.ns.mi[NL.NI_HALT] = 1
        cancels = node.step(touch_events()[:0])  # room for one of the two cancels
        assert len(cancels) == 1 and ring.ctl[J_WRITE] == 3 and ring.ctl[J_FULL] == 1
    finally:
        node.close()


def test_fills_reach_position_metrics_and_the_next_quotes(node: Harness) -> None:
    node.step(touch_events())
    node.step(responses=np.concatenate([response("A", 50, QTY, BID), response("E", 50, QTY, BID, match=9)]))
    assert node.block.instrument_counters[0, M.I_ORDERS_FILLED] == 1
    assert node.block.instrument_gauges[0, M.G_POSITION] == QTY


def test_nothing_that_fails_a_risk_check_is_encoded() -> None:
    node = Harness(RiskConfig(max_order_qty=QTY - 1))
    try:
        assert node.step(touch_events()) == []
        assert (
            node.block.risk_rejections[0, TL.R_ORDER_QTY] == 2
            and node.block.instrument_counters[0, M.I_ORDERS_SENT] == 0
        )
    finally:
        node.close()


def test_a_feed_gap_cancels_every_order_once_and_stops_quoting_until_it_closes(node: Harness) -> None:
    node.step(touch_events())
    node.ns.mi[NL.NI_HALT] = 1
    cancels = node.step(touch_events()[:0])
    assert sorted((m["message_type"], m["user_ref_num"]) for m in cancels) == [("X", 50), ("X", 51)]
    assert node.step(touch_events()[:0]) == []  # already on their way: not twice
    node.step(responses=np.concatenate([response("C", 50, QTY), response("C", 51, QTY)]))
    node.ns.mi[NL.NI_HALT] = 0
    again = node.step(touch_events(3))
    assert [m["message_type"] for m in again] == ["O", "O"]


def test_the_kill_switch_cancels_everything_and_nothing_more_is_quoted(node: Harness) -> None:
    node.step(touch_events())
    node.ns.rstate[TL.RS_KILLED] = 1.0
    assert {m["message_type"] for m in node.step(touch_events()[:0])} == {"X"}
    node.step(responses=np.concatenate([response("C", 50, QTY), response("C", 51, QTY)]))
    assert node.step(touch_events()[:0]) == []
    assert node.block.risk_rejections[0, TL.R_KILL_SWITCH] == 0  # halted: nothing is even planned


def test_unknown_responses_are_counted_not_fatal(node: Harness) -> None:
    node.step(responses=response("E", 12345, QTY, BID, match=1))
    assert node.ns.oc[TL.OC_UNKNOWN] == 1


def test_with_an_interval_the_strategy_runs_once_per_interval_and_on_the_timer() -> None:
    node = Harness(RiskConfig(), interval_ns=10_000_000)  # the harness clock steps 1 ms a call
    try:
        node.step(touch_events())
        for j in range(19):
            node.step(touch_events(10 + 2 * j) if j % 2 else None)
        assert node.ns.oc[TL.OC_CALLS] == 2
        assert node.ns.mi[NL.NI_NEXT_WAKE] == node.ns.next_call[0] > node.now
    finally:
        node.close()


def better_bid(order_id: int = 10) -> np.ndarray:
    """A bid one cent above BID joining the book: the touch strategy requotes its bid there."""
    events = touch_events(order_id)[:1].copy()
    events["price"] = BID + 100
    return events


def accepted(node: Harness) -> None:
    node.step(touch_events())
    node.step(responses=np.concatenate([response("A", 50, QTY, BID), response("A", 51, QTY, ASK)]))


def test_a_requote_of_an_accepted_order_is_one_replace_order(node: Harness) -> None:
    accepted(node)
    [message] = node.step(better_bid())
    assert message["message_type"] == "U" and (message["orig_user_ref_num"], message["user_ref_num"]) == (50, 52)
    assert (message["price"], message["quantity"]) == (BID + 100, QTY)
    assert (ouch.TAG_POST_ONLY, b"P") in message["appendage"]
    assert node.ns.inst[0, TL.IN_REPLACES] == 1 and node.ns.inst[0, TL.IN_ORDERS] == 2
    node.step(responses=response("U", 52, QTY, BID + 100, orig=50))
    own = node.ns.own
    assert own[find_order_nb(own, np.int64(50))][TL.OW_ORDER_STATE] == TL.OS_REPLACED
    assert own[find_order_nb(own, np.int64(52))][TL.OW_ORDER_STATE] == TL.OS_LIVE


def test_a_requote_before_the_accept_or_without_replace_is_cancel_then_enter() -> None:
    for replace, accept in ((True, False), (False, True)):
        node = Harness(RiskConfig(), replace=replace)
        try:
            if accept:
                accepted(node)
            else:
                node.step(touch_events())
            messages = node.step(better_bid())
            assert [(m["message_type"], m["user_ref_num"]) for m in messages] == [("X", 50), ("O", 52)]
            assert node.ns.inst[0, TL.IN_REPLACES] == 0
        finally:
            node.close()


def test_the_replaced_orders_quantity_leaves_the_worst_case_position() -> None:
    for replace, sent in ((True, ["U"]), (False, ["X"])):
        node = Harness(RiskConfig(max_position=1.5 * QTY), replace=replace)
        try:
            accepted(node)
            assert [m["message_type"] for m in node.step(better_bid())] == sent
            # cancel + enter: the old bid still counts while its cancel is on its way, so the new one would exceed
            assert node.block.risk_rejections[0, TL.R_POSITION] == (0 if replace else 1)
        finally:
            node.close()


def test_a_replace_risk_refuses_still_cancels_the_old_order() -> None:
    node = Harness(RiskConfig(max_orders_per_s=2))  # the first two orders take the whole bucket
    try:
        accepted(node)
        assert [(m["message_type"], m["user_ref_num"]) for m in node.step(better_bid())] == [("X", 50)]
        assert node.block.risk_rejections[0, TL.R_ORDER_RATE] == 1 and node.ns.inst[0, TL.IN_REPLACES] == 0
    finally:
        node.close()
