"""The Numba L3 book against a deliberately simple pure-Python reference book."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.book.book import Book
from engine.core import events as E
from engine.core.events import empty_events


class ReferenceBook:
    """Orders in a dict, levels as {price: [order ids in FIFO order]}: slow and obviously right."""

    def __init__(self) -> None:
        self.orders: dict[int, list] = {}  # id -> [instrument, side, price, qty]
        self.fifo: dict[tuple[int, int], dict[int, list[int]]] = {}
        self.l2: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
        self.unknown = self.duplicates = self.over = self.crossed = 0
        self.is_crossed: dict[int, bool] = {}

    def _levels(self, instrument: int, side: int) -> dict[int, list[int]]:
        return self.fifo.setdefault((instrument, side), {})

    def _add(self, oid: int, instrument: int, side: int, price: int, qty: int) -> None:
        self.orders[oid] = [instrument, side, price, qty]
        self._levels(instrument, side).setdefault(price, []).append(oid)

    def _remove(self, oid: int) -> None:
        instrument, side, price, _ = self.orders.pop(oid)
        queue = self._levels(instrument, side)[price]
        queue.remove(oid)
        if not queue:
            del self._levels(instrument, side)[price]

    def _reduce(self, oid: int, qty: int) -> None:
        left = self.orders[oid][3]
        if qty >= left:
            self.over += qty > left
            self._remove(oid)
        else:
            self.orders[oid][3] = left - qty

    def depth(self, instrument: int, side: int) -> list[tuple[int, int, int]]:
        rows = [(p, sum(self.orders[o][3] for o in q), len(q)) for p, q in self._levels(instrument, side).items()]
        rows += [(p, q, c) for p, (q, c) in self.l2.get((instrument, side), {}).items()]
        return sorted(rows, key=lambda r: -r[0] if side == E.SIDE_BID else r[0])

    def _check_crossed(self, instrument: int) -> None:
        bids, asks = self.depth(instrument, E.SIDE_BID), self.depth(instrument, E.SIDE_ASK)
        crossed = bool(bids and asks and bids[0][0] >= asks[0][0])
        if crossed and not self.is_crossed.get(instrument, False):
            self.crossed += 1
        self.is_crossed[instrument] = crossed

    def apply(self, e: np.void) -> None:
        kind, oid, qty = int(e["kind"]), int(e["order_id"]), int(e["qty"])
        instrument, side, price = int(e["instrument"]), int(e["side"]), int(e["price"])
        if kind == E.KIND_ADD:
            if oid in self.orders:
                self.duplicates += 1
                return
            self._add(oid, instrument, side, price, qty)
            self._check_crossed(instrument)
        elif kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE, E.KIND_CANCEL, E.KIND_DELETE, E.KIND_REPLACE):
            if oid not in self.orders:
                self.unknown += 1
                return
            instrument = self.orders[oid][0]
            if kind == E.KIND_DELETE:
                self._remove(oid)
            elif kind == E.KIND_REPLACE:
                self._replace(oid, int(e["new_order_id"]), price, qty)
            else:
                self._reduce(oid, qty)
            self._check_crossed(instrument)
        elif kind == E.KIND_LEVEL:
            levels = self.l2.setdefault((instrument, side), {})
            if qty == 0:
                levels.pop(price, None)
            else:
                levels[price] = (qty, oid)
                self._check_crossed(instrument)
        elif kind == E.KIND_CLEAR:
            for o in [o for o, v in self.orders.items() if instrument in (v[0], E.ALL_INSTRUMENTS)]:
                self._remove(o)
            for key in [k for k in self.l2 if instrument in (k[0], E.ALL_INSTRUMENTS)]:
                del self.l2[key]
            for key in self.is_crossed:
                if instrument in (key, E.ALL_INSTRUMENTS):
                    self.is_crossed[key] = False

    def _replace(self, oid: int, new: int, price: int, qty: int) -> None:
        if new != oid and new in self.orders:
            self.duplicates += 1
            return
        instrument, side, old_price, old_qty = self.orders[oid]
        if new == oid and price == old_price and 0 < qty <= old_qty:
            self.orders[oid][3] = qty
            return
        self._remove(oid)
        if qty > 0:
            self._add(new, instrument, side, price, qty)

    def queue_position(self, oid: int) -> tuple[int, int]:
        instrument, side, price, _ = self.orders[oid]
        queue = self._levels(instrument, side)[price]
        ahead = queue[: queue.index(oid)]
        return len(ahead), sum(self.orders[o][3] for o in ahead)


INSTRUMENTS = (1, 2, 70000)


def assert_same(book: Book, ref: ReferenceBook) -> None:
    for instrument in INSTRUMENTS:
        bids, asks = book.depth(instrument, 1000)
        assert [tuple(r) for r in bids] == ref.depth(instrument, E.SIDE_BID)
        assert [tuple(r) for r in asks] == ref.depth(instrument, E.SIDE_ASK)
        assert book.order_count(instrument) == sum(1 for v in ref.orders.values() if v[0] == instrument)
    assert book.total_orders == len(ref.orders)
    for oid, (instrument, side, price, qty) in ref.orders.items():
        got = book.order(oid)
        assert got is not None
        assert (got["instrument"], got["side"], got["price"], got["qty"]) == (instrument, side, price, qty)
        assert (got["orders_ahead"], got["qty_ahead"]) == ref.queue_position(oid)
    c = book.counters
    got_counts = (c["unknown_order_refs"], c["duplicate_order_ids"], c["over_executions"], c["crossed_books"])
    assert got_counts == (ref.unknown, ref.duplicates, ref.over, ref.crossed)


L3_KINDS = (E.KIND_ADD, E.KIND_ADD, E.KIND_ADD, E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE, E.KIND_CANCEL, E.KIND_DELETE)
ALL_KINDS = (*L3_KINDS, E.KIND_REPLACE, E.KIND_REPLACE, E.KIND_TRADE, E.KIND_CLEAR)

event_tuple = st.tuples(
    st.sampled_from(ALL_KINDS),
    st.integers(1, 12),  # order id (a small space, so that references hit live orders)
    st.integers(1, 12),  # new order id
    st.sampled_from((*INSTRUMENTS, E.ALL_INSTRUMENTS)),
    st.sampled_from((E.SIDE_BID, E.SIDE_ASK)),
    st.integers(90, 110),  # price
    st.integers(1, 60),  # qty
)


def to_events(rows: list[tuple]) -> np.ndarray:
    ev = empty_events(len(rows))
    for i, (kind, oid, new, instrument, side, price, qty) in enumerate(rows):
        if kind == E.KIND_REPLACE and new % 3 == 0:
            new = oid  # a DBN-style in-place modify
        if kind == E.KIND_ADD and instrument == E.ALL_INSTRUMENTS:
            instrument = INSTRUMENTS[0]
        ev[i] = (0, 0, i, oid, new, price, qty, instrument, kind, side, 0, 0)
    return ev


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_tuple, min_size=1, max_size=120))
def test_random_l3_flow_matches_reference_after_every_event(rows):
    events = to_events(rows)
    book, ref = Book(orders=2, levels=2, instruments=1), ReferenceBook()  # tiny: growth is exercised
    for i in range(len(events)):
        book.apply(events[i : i + 1])
        ref.apply(events[i])
        assert_same(book, ref)


@settings(max_examples=40, deadline=None)
@given(st.lists(event_tuple, min_size=1, max_size=400))
def test_one_batch_equals_event_by_event(rows):
    events = to_events(rows)
    whole, stepped = Book(), Book(orders=2, levels=2, instruments=1)
    whole.apply(events)
    for i in range(len(events)):
        stepped.apply(events[i : i + 1])
    for instrument in INSTRUMENTS:
        for a, b in zip(whole.depth(instrument, 1000), stepped.depth(instrument, 1000), strict=True):
            np.testing.assert_array_equal(a, b)
    assert whole.counters == stepped.counters


level_tuple = st.tuples(
    st.sampled_from(INSTRUMENTS), st.sampled_from((E.SIDE_BID, E.SIDE_ASK)), st.integers(90, 110), st.integers(0, 9)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(level_tuple, min_size=1, max_size=150))
def test_l2_level_updates_match_reference(rows):
    ev = empty_events(len(rows))
    for i, (instrument, side, price, qty) in enumerate(rows):
        ev[i] = (0, 0, i, qty + 1, 0, price, qty, instrument, E.KIND_LEVEL, side, 0, 0)
    book, ref = Book(orders=2, levels=2, instruments=1), ReferenceBook()
    for i in range(len(ev)):
        book.apply(ev[i : i + 1])
        ref.apply(ev[i])
        assert_same(book, ref)


def make(*rows: tuple) -> np.ndarray:
    """Events from (kind, order_id, new_order_id, side, price, qty) on instrument 1."""
    ev = empty_events(len(rows))
    for i, (kind, oid, new, side, price, qty) in enumerate(rows):
        ev[i] = (0, 0, i, oid, new, price, qty, 1, kind, side, 0, 0)
    return ev


def test_modify_with_smaller_size_at_same_price_keeps_queue_priority():
    book = Book()
    book.apply(make((E.KIND_ADD, 1, 0, E.SIDE_BID, 100, 10), (E.KIND_ADD, 2, 0, E.SIDE_BID, 100, 10)))
    book.apply(make((E.KIND_REPLACE, 1, 1, 0, 100, 4)))
    assert book.order(1)["orders_ahead"] == 0
    assert book.order(2)["qty_ahead"] == 4


def test_modify_with_larger_size_loses_queue_priority():
    book = Book()
    book.apply(make((E.KIND_ADD, 1, 0, E.SIDE_BID, 100, 10), (E.KIND_ADD, 2, 0, E.SIDE_BID, 100, 10)))
    book.apply(make((E.KIND_REPLACE, 1, 1, 0, 100, 12)))
    assert book.order(1)["orders_ahead"] == 1
    assert book.order(2)["orders_ahead"] == 0


def test_reference_to_unknown_order_is_counted_not_fatal():
    book = Book()
    book.apply(make((E.KIND_DELETE, 5, 0, 0, 0, 0), (E.KIND_EXECUTE, 6, 0, 0, 0, 3), (E.KIND_REPLACE, 7, 8, 0, 1, 1)))
    assert book.counters["unknown_order_refs"] == 3
    assert book.total_orders == 0


def test_crossing_add_is_counted_once_per_crossing():
    book = Book()
    book.apply(make((E.KIND_ADD, 1, 0, E.SIDE_ASK, 100, 5), (E.KIND_ADD, 2, 0, E.SIDE_BID, 101, 5)))
    book.apply(make((E.KIND_ADD, 3, 0, E.SIDE_BID, 102, 5)))
    assert book.counters["crossed_books"] == 1
    book.apply(
        make((E.KIND_DELETE, 2, 0, 0, 0, 0), (E.KIND_DELETE, 3, 0, 0, 0, 0), (E.KIND_ADD, 4, 0, E.SIDE_BID, 100, 1))
    )
    assert book.counters["crossed_books"] == 2


def test_many_orders_grow_every_table_and_stay_findable():
    rng = np.random.default_rng(7)
    n = 50_000
    ids = rng.permutation(n).astype(np.uint64) * 7919 + 1
    ev = empty_events(n)
    ev["kind"] = E.KIND_ADD
    ev["order_id"] = ids
    ev["instrument"] = rng.integers(1, 300, n)
    ev["side"] = np.where(rng.random(n) < 0.5, E.SIDE_BID, E.SIDE_ASK)
    ev["price"] = np.where(ev["side"] == E.SIDE_BID, rng.integers(1, 2000, n), rng.integers(3000, 5000, n))
    ev["qty"] = rng.integers(1, 100, n)
    book = Book(orders=4, levels=4, instruments=1)
    book.apply(ev)
    assert book.total_orders == n
    half = empty_events(n // 2)
    half["kind"] = E.KIND_DELETE
    half["order_id"] = ids[: n // 2]
    book.apply(half)
    assert book.total_orders == n - n // 2
    assert all(book.order(int(i)) is None for i in ids[: n // 2 : 97])
    assert all(book.order(int(i))["qty"] > 0 for i in ids[n // 2 :: 97])
    assert book.counters["unknown_order_refs"] == 0
