"""The matching engine against a deliberately simple pure-Python matcher, and its ITCH against the L3 book."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.book.book import Book
from engine.core import events as E
from engine.core.events import empty_events
from engine.simexchange import layout as L
from engine.simexchange.matching import SELF_TRADE_MODES, MatchingEngine
from feeds.itch import STATUS_DONE, decode_flat_nb, decode_message, new_stock_directory

INSTRUMENTS = ((1, "AAA", 100, 1), (2, "BBB", 50, 10))
UNKNOWN_LOCATE = 3
NOW_NS = 34_200_000_000_000  # 09:30


class ReferenceMatcher:
    """Orders in a dict, levels as {price: [refs in FIFO order]}: slow and obviously right."""

    def __init__(self, post_only: str, self_trade: str = "allow") -> None:
        self.reprice = post_only == "reprice"
        self.self_trade = self_trade
        self.inst = {locate: [tick, lot, False] for locate, _, tick, lot in INSTRUMENTS}
        self.books = {locate: {E.SIDE_BID: {}, E.SIDE_ASK: {}} for locate in self.inst}
        self.orders: dict[int, list[int]] = {}  # ref -> [owner, client_ref, locate, side, price, qty]
        self.next_ref = 1
        self.match = 0

    def _best(self, locate: int, side: int) -> int | None:
        levels = self.books[locate][side]
        if not levels:
            return None
        return max(levels) if side == E.SIDE_BID else min(levels)

    def _marketable(self, locate: int, side: int, price: int) -> bool:
        best = self._best(locate, -side)
        return best is not None and (best <= price if side == E.SIDE_BID else best >= price)

    def _check(self, locate: int, price: int, qty: int) -> int:
        tick, lot, _ = self.inst[locate]
        if not 0 < price <= 0xFFFFFFFF:
            return L.REJ_BAD_PRICE
        if not 0 < qty <= 0xFFFFFFFF:
            return L.REJ_BAD_QTY
        if price % tick:
            return L.REJ_BAD_TICK
        if qty % lot:
            return L.REJ_BAD_LOT
        return L.REJ_NONE

    def _post_only(self, locate: int, side: int, price: int) -> int | None:
        if not self._marketable(locate, side, price):
            return price
        if not self.reprice:
            return None
        repriced = self._best(locate, -side) - side * self.inst[locate][0]
        return repriced if repriced > 0 else None

    def _rest(self, ref: int, owner: int, client: int, locate: int, side: int, price: int, qty: int) -> None:
        self.orders[ref] = [owner, client, locate, side, price, qty]
        self.books[locate][side].setdefault(price, []).append(ref)

    def _remove(self, ref: int) -> None:
        _, _, locate, side, price, _ = self.orders.pop(ref)
        queue = self.books[locate][side][price]
        queue.remove(ref)
        if not queue:
            del self.books[locate][side][price]

    def _execute(self, out, owner, client, locate, side, ref, price, qty, ioc) -> None:
        stopped = False
        while qty > 0 and self._marketable(locate, side, price):
            fill_price = self._best(locate, -side)
            rest_ref = self.books[locate][-side][fill_price][0]
            rest = self.orders[rest_ref]
            if owner >= 0 and rest[0] == owner and self.self_trade != "allow":  # self-trade prevention
                if self.self_trade == "cancel-incoming":
                    stopped = True
                    break
                out.append((L.RPT_CANCELED, owner, rest[1], locate, -side, rest_ref, 0, 0, fill_price, rest[5], 0,
                            L.REJ_SELF_TRADE, 0))  # fmt: skip
                self._remove(rest_ref)
                continue
            fill = min(qty, rest[5])
            self.match += 1
            rest[5] -= fill
            qty -= fill
            rest_fill = (L.RPT_EXECUTED, rest[0], rest[1], locate, -side, rest_ref, 0, self.match, fill_price, fill)
            out.append((*rest_fill, rest[5], 0, L.LIQ_ADDED))
            if rest[5] == 0:
                self._remove(rest_ref)
            out.append(
                (
                    L.RPT_EXECUTED,
                    owner,
                    client,
                    locate,
                    side,
                    ref,
                    0,
                    self.match,
                    fill_price,
                    fill,
                    qty,
                    0,
                    L.LIQ_REMOVED,
                )
            )
        if qty > 0:
            if ioc or stopped:
                reason = L.REJ_SELF_TRADE if stopped else L.REJ_NONE
                out.append((L.RPT_CANCELED, owner, client, locate, side, ref, 0, 0, price, qty, 0, reason, 0))
            else:
                self._rest(ref, owner, client, locate, side, price, qty)

    def submit(self, rq: np.void) -> list[tuple]:
        kind, owner, client, ref = int(rq["kind"]), int(rq["owner"]), int(rq["client_ref"]), int(rq["order_ref"])
        locate, side, price, qty = int(rq["instrument"]), int(rq["side"]), int(rq["price"]), int(rq["qty"])
        out: list[tuple] = []
        if kind == L.REQ_NEW:
            if locate not in self.inst:
                reason = L.REJ_UNKNOWN_INSTRUMENT
            elif self.inst[locate][2]:
                reason = L.REJ_HALTED
            elif side not in (E.SIDE_BID, E.SIDE_ASK) or int(rq["tif"]) not in (L.TIF_DAY, L.TIF_IOC):
                reason = L.REJ_BAD_REQUEST
            else:
                reason = self._check(locate, price, qty)
            if reason == L.REJ_NONE and rq["post_only"]:
                price = self._post_only(locate, side, price)
                reason = L.REJ_POST_ONLY_CROSS if price is None else L.REJ_NONE
            if reason != L.REJ_NONE:
                return [(L.RPT_REJECTED, owner, client, locate, side, ref, 0, 0, 0, 0, 0, reason, 0)]
            ref = self.next_ref
            self.next_ref += 1
            out.append((L.RPT_ACCEPTED, owner, client, locate, side, ref, 0, 0, price, qty, qty, 0, 0))
            self._execute(out, owner, client, locate, side, ref, price, qty, int(rq["tif"]) == L.TIF_IOC)
            return out
        if kind not in (L.REQ_CANCEL, L.REQ_REPLACE):
            return [(L.RPT_REJECTED, owner, client, 0, 0, ref, 0, 0, 0, 0, 0, L.REJ_BAD_REQUEST, 0)]
        if ref not in self.orders or self.orders[ref][0] != owner:
            return [(L.RPT_REJECTED, owner, client, 0, 0, ref, 0, 0, 0, 0, 0, L.REJ_UNKNOWN_ORDER, 0)]
        order = self.orders[ref]
        _, old_client, locate, side, old_price, leaves = order
        if kind == L.REQ_CANCEL:
            reason = L.REJ_BAD_QTY if qty < 0 else L.REJ_BAD_LOT if qty % self.inst[locate][1] else L.REJ_NONE
            if reason != L.REJ_NONE:
                return [(L.RPT_REJECTED, owner, old_client, locate, side, ref, 0, 0, 0, 0, 0, reason, 0)]
            cut = leaves - qty if qty < leaves else 0
            if qty == 0:
                self._remove(ref)
            else:
                order[5] -= cut
            return [(L.RPT_CANCELED, owner, old_client, locate, side, ref, 0, 0, old_price, cut, leaves - cut, 0, 0)]
        reason = L.REJ_HALTED if self.inst[locate][2] else self._check(locate, price, qty)
        if reason == L.REJ_NONE and rq["post_only"]:
            price = self._post_only(locate, side, price)
            reason = L.REJ_POST_ONLY_CROSS if price is None else L.REJ_NONE
        if reason != L.REJ_NONE:
            return [(L.RPT_REJECTED, owner, client, locate, side, ref, 0, 0, 0, 0, 0, reason, 0)]
        if price == old_price and qty <= leaves:
            order[5] = qty
            order[1] = client
            return [(L.RPT_REPLACED, owner, client, locate, side, ref, ref, 0, price, qty, qty, 0, 0)]
        new_ref = self.next_ref
        self.next_ref += 1
        self._remove(ref)
        out.append((L.RPT_REPLACED, owner, client, locate, side, new_ref, ref, 0, price, qty, qty, 0, 0))
        self._execute(out, owner, client, locate, side, new_ref, price, qty, False)
        return out

    def snapshot(self, locate: int) -> dict:
        out = {}
        for name, side in (("bids", E.SIDE_BID), ("asks", E.SIDE_ASK)):
            prices = sorted(self.books[locate][side], reverse=side == E.SIDE_BID)
            out[name] = [
                (p, [(r, self.orders[r][5], self.orders[r][0], self.orders[r][1]) for r in self.books[locate][side][p]])
                for p in prices
            ]
        return out


REPORT_FIELDS = ("kind", "owner", "client_ref", "instrument", "side", "order_ref", "orig_ref", "match_number")
REPORT_FIELDS += ("price", "qty", "leaves", "reason", "liquidity")


def report_tuples(reports: np.ndarray) -> list[tuple]:
    return [tuple(int(r[f]) for f in REPORT_FIELDS) for r in reports]


def request(kind: int = L.REQ_NEW, **fields: int) -> np.ndarray:
    row = np.zeros(1, L.REQUEST_DTYPE)
    row["kind"] = kind
    row["owner"] = 1
    row["instrument"] = 1
    row["side"] = E.SIDE_BID
    row["qty"] = 1
    for name, value in fields.items():
        row[name] = value
    return row


class FeedBook:
    """``engine.book.book.Book`` fed by the engine's ITCH records through ``feeds.itch.decode_flat_nb``."""

    def __init__(self) -> None:
        self.book = Book(orders=2, levels=2, instruments=1)
        self.counts = np.zeros(256, np.int64)
        self.directory = new_stock_directory()

    def feed(self, itch: np.ndarray) -> np.ndarray:
        buf = np.ascontiguousarray(itch, np.uint8)
        out = empty_events(max(1, len(buf) // 13))
        pos, n, status, bad = decode_flat_nb(buf, 0, len(buf), out, self.counts, self.directory, 0, False)
        assert (pos, status, bad) == (len(buf), STATUS_DONE, 0)
        self.book.apply(out[:n])
        return out[:n]

    def assert_rebuilds(self, engine: MatchingEngine) -> None:
        total = 0
        for locate, *_ in INSTRUMENTS:
            snap = engine.book_snapshot(locate)
            bids, asks = self.book.depth(locate, 1000)
            for rows, levels in ((bids, snap["bids"]), (asks, snap["asks"])):
                assert [tuple(r) for r in rows] == [(p, sum(o[1] for o in q), len(q)) for p, q in levels]
                for price, queue in levels:
                    for ahead, (ref, qty, _, _) in enumerate(queue):
                        got = self.book.order(ref)
                        assert got is not None and got["instrument"] == locate
                        assert (got["price"], got["qty"], got["orders_ahead"]) == (price, qty, ahead)
                    total += len(queue)
        assert self.book.total_orders == total


# --- hypothesis flows ----------------------------------------------------------------------------
NEW_, CANCEL_, REPLACE_ = (L.REQ_NEW,) * 12, (L.REQ_CANCEL,) * 4, (L.REQ_REPLACE,) * 6
request_tuple = st.tuples(
    st.sampled_from((*NEW_, *CANCEL_, *REPLACE_, 9)),  # 9: not a request kind
    st.sampled_from((1, 1, 1, 2, -1)),  # owner (-1: the background flow, exempt from self-trade prevention)
    st.integers(0, 20),  # client ref
    st.integers(0, 15),  # which live order a cancel or replace targets (15: an unknown one)
    st.sampled_from((1,) * 4 + (2,) * 4 + (UNKNOWN_LOCATE,)),
    st.sampled_from((E.SIDE_BID, E.SIDE_ASK) * 8 + (0,)),
    st.integers(98, 102),  # price in 100ths of a dollar
    st.sampled_from((0,) * 8 + (25, -10_000)),  # price offset: off-tick, non-positive
    st.integers(0, 6).map(lambda lots: max(lots, 1) if lots % 6 else lots),  # qty in lots, sometimes 0
    st.sampled_from((0,) * 8 + (3,)),  # qty offset: off-lot
    st.sampled_from((L.TIF_DAY,) * 8 + (L.TIF_IOC, L.TIF_IOC, 2)),
    st.sampled_from((0, 0, 0, 1)),  # post-only
)
step = st.one_of(st.lists(request_tuple, min_size=1, max_size=4), st.sampled_from((1, 2)))  # a batch, or a halt toggle


def to_requests(rows: list[tuple], live: dict[int, list[int]]) -> np.ndarray:
    """Requests from tuples; cancels and replaces pick one of the ``live`` orders (ref -> [owner, ...]),
    in the name of its owner unless the client ref is a multiple of 7."""
    out = np.zeros(len(rows), L.REQUEST_DTYPE)
    refs = sorted(live)
    for i, (kind, owner, client, pick, locate, side, cents, off, lots, qoff, tif, post) in enumerate(rows):
        ref = refs[pick % len(refs)] if refs and pick < 15 else 1000 + pick
        if kind in (L.REQ_CANCEL, L.REQ_REPLACE) and ref in live:
            owner = live[ref][0] if client % 7 else 3 - live[ref][0]
            locate = live[ref][2]
        lot = INSTRUMENTS[1][3] if locate == 2 else 1
        qty = lots * lot + qoff if kind != L.REQ_CANCEL else max(lots - 2, 0) * lot + qoff
        out[i] = (owner, ref, cents * 100 + off, qty, client, locate, kind, side, tif, post)
    return out


def check_against_reference(post_only: str, self_trade: str, steps: list) -> None:
    """Run ``steps`` (request batches, or an instrument whose trading to toggle) through the engine and
    the reference: same reports and books after every step, and the engine's ITCH rebuilds its books."""
    engine = MatchingEngine(
        INSTRUMENTS, post_only=post_only, self_trade=self_trade, orders=2, levels=2, reports=2, itch_bytes=8
    )
    ref = ReferenceMatcher(post_only, self_trade)
    feed = FeedBook()
    feed.feed(np.frombuffer(engine.session_start_itch(NOW_NS), np.uint8))
    for k, item in enumerate(steps):
        if isinstance(item, int):  # toggle trading of one instrument
            halted = not ref.inst[item][2]
            ref.inst[item][2] = halted
            feed.feed(np.frombuffer(engine.set_trading_state(item, "H" if halted else "T", NOW_NS + k), np.uint8))
            continue
        requests = to_requests(item, ref.orders)
        reports, itch = engine.submit(requests, NOW_NS + k)
        assert report_tuples(reports) == [t for rq in requests for t in ref.submit(rq)]
        for locate, *_ in INSTRUMENTS:
            assert engine.book_snapshot(locate) == ref.snapshot(locate)
        feed.feed(itch)
        feed.assert_rebuilds(engine)
    assert engine.next_order_ref == ref.next_ref


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(("reject", "reprice")),
    st.sampled_from(sorted(SELF_TRADE_MODES)),
    st.lists(step, min_size=1, max_size=40),
)
def test_random_flow_matches_reference_and_its_itch_rebuilds_the_book(post_only, self_trade, steps):
    check_against_reference(post_only, self_trade, steps)


# Valid orders of three owners (-1: the background flow) around one price: they cross all the time.
crossing_tuple = st.tuples(
    st.sampled_from((L.REQ_NEW,) * 6 + (L.REQ_CANCEL, L.REQ_REPLACE, L.REQ_REPLACE)),
    st.sampled_from((1, 1, 2, -1)),  # owner
    st.integers(1, 6),  # client ref (never a multiple of 7: cancels and replaces come from the order's owner)
    st.integers(0, 14),  # which live order a cancel or replace targets
    st.just(1),
    st.sampled_from((E.SIDE_BID, E.SIDE_ASK)),
    st.integers(99, 101),
    st.just(0),
    st.integers(1, 4),  # lots
    st.just(0),
    st.sampled_from((L.TIF_DAY, L.TIF_DAY, L.TIF_IOC)),
    st.just(0),
)


@pytest.mark.parametrize("self_trade", sorted(SELF_TRADE_MODES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(crossing_tuple, min_size=1, max_size=4), min_size=1, max_size=30))
def test_self_trade_prevention_on_crossing_flows_matches_reference(self_trade, batches):
    check_against_reference("reject", self_trade, batches)


@settings(max_examples=20, deadline=None)
@given(st.lists(request_tuple, min_size=1, max_size=300))
def test_one_batch_equals_request_by_request(rows):
    requests = to_requests(rows, {ref: [1, 0, 1 + ref % 2] for ref in range(1, len(rows))})
    whole, stepped = MatchingEngine(INSTRUMENTS), MatchingEngine(INSTRUMENTS, orders=2, levels=2, reports=2)
    reports, itch = whole.submit(requests, NOW_NS)
    got_reports, got_itch = [], b""
    for i in range(len(requests)):
        r, x = stepped.submit(requests[i : i + 1], NOW_NS)
        got_reports += report_tuples(r)
        got_itch += bytes(x)
    assert report_tuples(reports) == got_reports
    assert bytes(itch) == got_itch


# --- priority rules ------------------------------------------------------------------------------
def rest_two_bids(engine: MatchingEngine) -> None:
    engine.submit(request(price=10000, qty=10, client_ref=1), NOW_NS)  # ref 1
    engine.submit(request(price=10000, qty=10, client_ref=2), NOW_NS)  # ref 2


def queue_refs(engine: MatchingEngine, side: str = "bids") -> list[list[int]]:
    return [[o[0] for o in q] for _, q in engine.book_snapshot(1)[side]]


def messages(itch: np.ndarray) -> list[dict]:
    raw, out, p = bytes(itch), [], 0
    while p < len(raw):
        n = int.from_bytes(raw[p : p + 2], "big")
        out.append(decode_message(raw[p + 2 : p + 2 + n]))
        p += 2 + n
    return out


def test_replace_down_at_same_price_keeps_priority_and_reference():
    engine = MatchingEngine(INSTRUMENTS)
    rest_two_bids(engine)
    reports, itch = engine.submit(request(L.REQ_REPLACE, order_ref=1, price=10000, qty=4, client_ref=9), NOW_NS)
    assert report_tuples(reports) == [(L.RPT_REPLACED, 1, 9, 1, E.SIDE_BID, 1, 1, 0, 10000, 4, 4, 0, 0)]
    assert queue_refs(engine) == [[1, 2]]
    assert [(m["message_type"], m["order_reference_number"], m["cancelled_shares"]) for m in messages(itch)] == [
        ("X", 1, 6)
    ]


@pytest.mark.parametrize("price, qty", [(10000, 11), (9900, 10), (9900, 4)])
def test_replace_up_or_to_another_price_loses_priority_with_a_new_reference(price, qty):
    engine = MatchingEngine(INSTRUMENTS)
    rest_two_bids(engine)
    reports, itch = engine.submit(request(L.REQ_REPLACE, order_ref=1, price=price, qty=qty), NOW_NS)
    assert report_tuples(reports) == [(L.RPT_REPLACED, 1, 0, 1, E.SIDE_BID, 3, 1, 0, price, qty, qty, 0, 0)]
    assert queue_refs(engine) == ([[2, 3]] if price == 10000 else [[2], [3]])
    (msg,) = messages(itch)
    assert (msg["message_type"], msg["original_order_reference_number"], msg["new_order_reference_number"]) == (
        "U",
        1,
        3,
    )
    assert (msg["shares"], msg["price"]) == (qty, price)


def test_replace_to_a_marketable_price_deletes_then_trades_as_a_new_order():
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(side=E.SIDE_ASK, price=10100, qty=3, owner=2), NOW_NS)  # ref 1
    engine.submit(request(price=10000, qty=5), NOW_NS)  # ref 2
    reports, itch = engine.submit(request(L.REQ_REPLACE, order_ref=2, price=10100, qty=5), NOW_NS)
    kinds = [(r[0], r[5], r[9], r[10]) for r in report_tuples(reports)]
    assert kinds == [(L.RPT_REPLACED, 3, 5, 5), (L.RPT_EXECUTED, 1, 3, 0), (L.RPT_EXECUTED, 3, 3, 2)]
    assert [m["message_type"] for m in messages(itch)] == ["D", "E", "A"]
    assert engine.book_snapshot(1) == {"bids": [(10100, [(3, 2, 1, 0)])], "asks": []}


def test_ioc_never_rests_and_reports_its_unfilled_rest_canceled():
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=2), NOW_NS)
    reports, itch = engine.submit(request(price=10100, qty=5, tif=L.TIF_IOC), NOW_NS)
    assert report_tuples(reports)[-1] == (L.RPT_CANCELED, 1, 0, 1, E.SIDE_BID, 2, 0, 0, 10100, 2, 0, 0, 0)
    assert [m["message_type"] for m in messages(itch)] == ["E"]
    assert engine.book_snapshot(1) == {"bids": [], "asks": []}
    reports, itch = engine.submit(request(price=9900, qty=5, tif=L.TIF_IOC), NOW_NS)
    assert [r[0] for r in report_tuples(reports)] == [L.RPT_ACCEPTED, L.RPT_CANCELED] and len(itch) == 0


def test_execution_messages_are_for_the_resting_side_at_its_price_in_time_priority():
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=2), NOW_NS)  # ref 1
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=3), NOW_NS)  # ref 2
    engine.submit(request(side=E.SIDE_ASK, price=9900, qty=2, owner=2), NOW_NS)  # ref 3, the best
    reports, itch = engine.submit(request(price=10000, qty=6), NOW_NS)  # ref 4
    fills = [(m["order_reference_number"], m["executed_shares"], m["match_number"]) for m in messages(itch)]
    assert fills == [(3, 2, 1), (1, 3, 2), (2, 1, 3)]
    aggressor = [r for r in report_tuples(reports) if r[0] == L.RPT_EXECUTED and r[12] == L.LIQ_REMOVED]
    assert [(r[8], r[9], r[10]) for r in aggressor] == [(9900, 2, 4), (10000, 3, 1), (10000, 1, 0)]
    assert queue_refs(engine, "asks") == [[2]]


@pytest.mark.parametrize("mode, expected", [("reject", None), ("reprice", 9900)])
def test_post_only_that_would_cross_is_rejected_or_repriced_one_tick_off_the_contra_best(mode, expected):
    engine = MatchingEngine(INSTRUMENTS, post_only=mode)
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=2), NOW_NS)
    reports, itch = engine.submit(request(price=10200, qty=5, post_only=1), NOW_NS)
    (report,) = report_tuples(reports)
    if expected is None:
        assert (report[0], report[11]) == (L.RPT_REJECTED, L.REJ_POST_ONLY_CROSS) and len(itch) == 0
    else:
        assert (report[0], report[8]) == (L.RPT_ACCEPTED, expected)
        assert [(m["message_type"], m["price"]) for m in messages(itch)] == [("A", expected)]
    reports, _ = engine.submit(request(price=9800, qty=5, post_only=1), NOW_NS)  # passive: rests as asked
    assert report_tuples(reports)[0][:1] + report_tuples(reports)[0][8:9] == (L.RPT_ACCEPTED, 9800)


# --- self-trade prevention -----------------------------------------------------------------------
def own_ask_between_two_others(mode: str) -> MatchingEngine:
    """Asks: ref 1 (owner 2) 2 @ 99.00, then at 100.00 ref 2 (owner 1, client 7) 3 and ref 3 (owner 2) 3."""
    engine = MatchingEngine(INSTRUMENTS, self_trade=mode)
    engine.submit(request(side=E.SIDE_ASK, price=9900, qty=2, owner=2), NOW_NS)
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, client_ref=7), NOW_NS)
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=2), NOW_NS)
    return engine


ACCEPTED_4 = (L.RPT_ACCEPTED, 1, 4, 6, 6, L.REJ_NONE)  # (kind, owner, order ref, qty, leaves, reason)
FILLS_REF_1 = [(L.RPT_EXECUTED, 2, 1, 2, 0, L.REJ_NONE), (L.RPT_EXECUTED, 1, 4, 2, 4, L.REJ_NONE)]


@pytest.mark.parametrize(
    "mode, rows, itch_types, asks",
    [
        (
            "allow",
            [ACCEPTED_4, *FILLS_REF_1, (L.RPT_EXECUTED, 1, 2, 3, 0, 0), (L.RPT_EXECUTED, 1, 4, 3, 1, 0),
             (L.RPT_EXECUTED, 2, 3, 1, 2, 0), (L.RPT_EXECUTED, 1, 4, 1, 0, 0)],
            "EEE",
            [(10000, [(3, 2, 2, 0)])],
        ),
        (
            "cancel-resting",
            [ACCEPTED_4, *FILLS_REF_1, (L.RPT_CANCELED, 1, 2, 3, 0, L.REJ_SELF_TRADE), (L.RPT_EXECUTED, 2, 3, 3, 0, 0),
             (L.RPT_EXECUTED, 1, 4, 3, 1, 0)],
            "EDEA",
            [],
        ),
        (
            "cancel-incoming",
            [ACCEPTED_4, *FILLS_REF_1, (L.RPT_CANCELED, 1, 4, 4, 0, L.REJ_SELF_TRADE)],
            "E",
            [(10000, [(2, 3, 1, 7), (3, 3, 2, 0)])],
        ),
    ],
)  # fmt: skip
def test_an_order_never_trades_with_a_resting_order_of_its_own_owner(mode, rows, itch_types, asks):
    engine = own_ask_between_two_others(mode)
    reports, itch = engine.submit(request(price=10000, qty=6, client_ref=8), NOW_NS)  # ref 4, owner 1
    assert [(r[0], r[1], r[5], r[9], r[10], r[11]) for r in report_tuples(reports)] == rows
    assert "".join(m["message_type"] for m in messages(itch)) == itch_types
    assert engine.book_snapshot(1)["asks"] == asks
    resting_bid = [(10000, [(4, 1, 1, 8)])] if mode == "cancel-resting" else []
    assert engine.book_snapshot(1)["bids"] == resting_bid


def test_the_background_flow_owner_is_exempt_from_self_trade_prevention():
    engine = MatchingEngine(INSTRUMENTS, self_trade="cancel-resting")
    engine.submit(request(side=E.SIDE_ASK, price=10000, qty=3, owner=-1), NOW_NS)
    reports, itch = engine.submit(request(price=10000, qty=3, owner=-1), NOW_NS)
    assert [r[0] for r in report_tuples(reports)] == [L.RPT_ACCEPTED, L.RPT_EXECUTED, L.RPT_EXECUTED]
    assert [m["message_type"] for m in messages(itch)] == ["E"]


# --- rejects -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"price": 10050}, L.REJ_BAD_TICK),
        ({"instrument": 2, "price": 10050, "qty": 15}, L.REJ_BAD_LOT),
        ({"price": 0}, L.REJ_BAD_PRICE),
        ({"price": 1 << 32}, L.REJ_BAD_PRICE),
        ({"price": 10000, "qty": 0}, L.REJ_BAD_QTY),
        ({"price": 10000, "qty": -5}, L.REJ_BAD_QTY),
        ({"kind": L.REQ_CANCEL, "order_ref": 77}, L.REJ_UNKNOWN_ORDER),
        ({"kind": L.REQ_REPLACE, "order_ref": 1, "owner": 2, "price": 10000}, L.REJ_UNKNOWN_ORDER),
        ({"price": 10100, "post_only": 1}, L.REJ_POST_ONLY_CROSS),
        ({"instrument": 2, "price": 10000}, L.REJ_HALTED),
        ({"instrument": UNKNOWN_LOCATE, "price": 10000}, L.REJ_UNKNOWN_INSTRUMENT),
        ({"price": 10000, "side": 0}, L.REJ_BAD_REQUEST),
        ({"price": 10000, "tif": 7}, L.REJ_BAD_REQUEST),
        ({"kind": 9}, L.REJ_BAD_REQUEST),
    ],
)
def test_every_reject_reason(fields, reason):
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(side=E.SIDE_ASK, price=10100, qty=3), NOW_NS)  # ref 1, owner 1
    if reason == L.REJ_HALTED:
        engine.set_trading_state(2, "H", NOW_NS)
    kind = fields.pop("kind", L.REQ_NEW)
    reports, itch = engine.submit(request(kind, client_ref=42, **fields), NOW_NS)
    (report,) = report_tuples(reports)
    assert (report[0], report[2], report[11]) == (L.RPT_REJECTED, 42, reason)
    assert len(itch) == 0 and engine.next_order_ref == 2


def test_cancel_partial_full_and_of_nothing_left():
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(instrument=2, price=10000, qty=50, client_ref=5), NOW_NS)  # ref 1
    reports, itch = engine.submit(request(L.REQ_CANCEL, order_ref=1, qty=20), NOW_NS)
    assert report_tuples(reports) == [(L.RPT_CANCELED, 1, 5, 2, E.SIDE_BID, 1, 0, 0, 10000, 30, 20, 0, 0)]
    assert [(m["message_type"], m["cancelled_shares"]) for m in messages(itch)] == [("X", 30)]
    reports, itch = engine.submit(request(L.REQ_CANCEL, order_ref=1, qty=40), NOW_NS)
    assert report_tuples(reports)[0][9:11] == (0, 20) and len(itch) == 0
    reports, itch = engine.submit(request(L.REQ_CANCEL, order_ref=1, qty=0), NOW_NS)
    assert report_tuples(reports)[0][9:11] == (20, 0)
    assert [m["message_type"] for m in messages(itch)] == ["D"]
    assert engine.book_snapshot(2) == {"bids": [], "asks": []}


def test_halted_instrument_still_accepts_cancels():
    engine = MatchingEngine(INSTRUMENTS)
    engine.submit(request(price=10000, qty=5), NOW_NS)
    engine.set_trading_state(1, "H", NOW_NS)
    reports, _ = engine.submit(request(L.REQ_REPLACE, order_ref=1, price=10000, qty=4), NOW_NS)
    assert report_tuples(reports)[0][11] == L.REJ_HALTED
    reports, _ = engine.submit(request(L.REQ_CANCEL, order_ref=1), NOW_NS)
    assert report_tuples(reports)[0][0] == L.RPT_CANCELED


# --- ITCH details --------------------------------------------------------------------------------
def test_owner_with_an_mpid_adds_with_f_and_the_feed_book_still_rebuilds():
    engine = MatchingEngine(INSTRUMENTS, mpids={7: "HFTM"})
    feed = FeedBook()
    _, itch = engine.submit(np.concatenate([request(owner=7, price=10000, qty=5), request(price=9900)]), NOW_NS + 5)
    msgs = messages(itch)
    assert [(m["message_type"], m.get("attribution")) for m in msgs] == [("F", "HFTM"), ("A", None)]
    assert {m["timestamp"] for m in msgs} == {NOW_NS + 5} and {m["stock_locate"] for m in msgs} == {1}
    assert msgs[0]["stock"] == "AAA" and msgs[0]["buy_sell_indicator"] == "B"
    feed.feed(itch)
    feed.assert_rebuilds(engine)


def test_session_start_announces_every_instrument_and_trading():
    engine = MatchingEngine(INSTRUMENTS)
    feed = FeedBook()
    feed.feed(np.frombuffer(engine.session_start_itch(NOW_NS), np.uint8))
    assert [chr(t) for t in np.flatnonzero(feed.counts)] == ["H", "R", "S"]
    assert (feed.counts[ord("S")], feed.counts[ord("R")], feed.counts[ord("H")]) == (3, 2, 2)
    assert feed.directory["symbol"][2] == b"BBB" and feed.directory["round_lot"][2] == 10
    assert feed.directory["trading_state"][1] == b"T"


def test_constructor_rejects_bad_configuration():
    with pytest.raises(ValueError):
        MatchingEngine(INSTRUMENTS, post_only="maybe")
    with pytest.raises(ValueError):
        MatchingEngine(INSTRUMENTS, self_trade="maybe")
    with pytest.raises(ValueError):
        MatchingEngine([(1, "AAA", 100, 1), (1, "BBB", 100, 1)])
    with pytest.raises(ValueError):
        MatchingEngine([(1, "AAA", 0, 1)])
