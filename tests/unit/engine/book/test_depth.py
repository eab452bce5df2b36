"""The backtester's dense L2 depth (engine.book.depth) against the sorted-array book (engine.book.book)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from engine.book import layout as BL
from engine.book.book import Book
from engine.book.depth import depth_apply_nb, depth_best_nb, depth_qty_nb, depth_rank_nb, depth_top_nb, new_depth
from engine.core import events as E

INSTR = 3
# the prices the data names: uneven gaps, as in a feed whose far levels lie thousands of ticks away
PRICES = np.cumsum(np.array([50_000] + [10, 10, 30, 10, 5000, 10, 20, 10, 10, 990] * 4, np.int64))
TOP = 64  # more rows than the depth can hold levels


@njit(cache=True)
def _apply_all(levels, meta, prices, events):
    for i in range(len(events)):
        depth_apply_nb(levels, meta, prices, events[i], depth_rank_nb(prices, events[i].price))


def _events(rows: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    out = np.zeros(len(rows), E.EVENT_DTYPE)
    cols = np.array(rows, np.int64).reshape(-1, 5)
    for j, name in enumerate(("kind", "side", "price", "qty", "order_id")):
        out[name] = cols[:, j]
    out["instrument"] = INSTR
    return out


def _same(book: Book, levels: np.ndarray, meta: np.ndarray) -> None:
    """Every level, the best of each side and the top-of-book reads agree."""
    bids, asks = book.depth(INSTR, TOP)
    for side, rows in ((BL.BID, bids), (BL.ASK, asks)):
        out = np.zeros((TOP, 3), np.int64)
        k = depth_top_nb(levels, meta, PRICES, side, out)
        assert out[:k].tolist() == rows.tolist()
        best = depth_best_nb(meta, side)
        assert (best == BL.EMPTY) == (len(rows) == 0)
        if len(rows):
            assert PRICES[best] == rows[0, 0]
        held = {int(p): int(q) for p, q, _ in rows}
        for price in PRICES:
            assert depth_qty_nb(levels, PRICES, side, price) == held.get(int(price), 0)


level = st.tuples(
    st.just(E.KIND_LEVEL),
    st.sampled_from([E.SIDE_BID, E.SIDE_ASK, E.SIDE_BID, E.SIDE_ASK, E.SIDE_NONE]),
    st.sampled_from(PRICES.tolist()),
    st.sampled_from([0, 0, 1, 7, 100, 2500, -1]),  # removals are frequent; -1 is a bad event
    st.integers(0, 9),
)
clear_side = st.tuples(
    st.just(E.KIND_CLEAR_SIDE),
    st.sampled_from([E.SIDE_BID, E.SIDE_ASK, E.SIDE_NONE]),
    st.integers(int(PRICES[0]) - 30, int(PRICES[-1]) + 30),  # between the prices and outside them too
    st.just(0),
    st.just(0),
)
other = st.tuples(
    st.sampled_from([E.KIND_CLEAR, E.KIND_TRADE]), st.just(E.SIDE_BID), st.just(int(PRICES[0])), st.just(5), st.just(0)
)
event_row = st.one_of(level, level, level, level, level, level, clear_side, other)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(event_row, min_size=1, max_size=60), min_size=1, max_size=6))
def test_depth_matches_the_sorted_book_on_random_l2_streams(batches: list) -> None:
    book = Book(instruments=4)
    levels, meta = new_depth(PRICES)
    for batch in batches:
        events = _events(batch)
        book.apply(events)
        _apply_all(levels, meta, PRICES, events)
        _same(book, levels, meta)


def test_prices_the_data_never_names_hold_nothing() -> None:
    levels, meta = new_depth(PRICES)
    _apply_all(levels, meta, PRICES, _events([(E.KIND_LEVEL, E.SIDE_BID, int(PRICES[3]), 50, 2)]))
    assert depth_qty_nb(levels, PRICES, BL.BID, PRICES[3]) == 50
    for price in (PRICES[3] + 1, PRICES[0] - 10, PRICES[-1] + 10):
        assert depth_rank_nb(PRICES, price) == BL.EMPTY
        assert depth_qty_nb(levels, PRICES, BL.BID, price) == 0


def test_new_depth_refuses_prices_out_of_order() -> None:
    with pytest.raises(ValueError, match="sorted and distinct"):
        new_depth(PRICES[::-1].copy())
    with pytest.raises(ValueError, match="at least one price"):
        new_depth(PRICES[:0])
