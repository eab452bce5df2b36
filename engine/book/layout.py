"""The L3 book's tables, their columns and its counters (``engine.book.book_nb`` holds the kernels).

State lives in a few preallocated int64 tables (the :class:`BookState` named tuple), one row per
object so that an order is one 64-byte cache line::

    orders   [O, 8]  id, book, side, price, qty, prev, next (FIFO links), level
    levels   [L, 6]  price, qty, order count, head, tail (FIFO of order rows), side segment (2 book + side)
    sides    [2B, 3] per (book, side): start, length, capacity of its segment of the arena
    books    [B, 3]  instrument id, resting orders, crossed flag
    arena    [A, 2]  (key, level id); each side's segment sorted by key (price for bids, -price
                     for asks), so the best level sits at the END and touch activity is an append
    o_hash   [H]     open addressing, linear probing: order row, keyed by the row's order id
    l_hash   [G]     the same for level rows, keyed by the row's (segment, price): a price finds its level
                     in one probe however deep the book (the arena is searched only to add or drop a level)
    i_hash   [I]     book row, keyed by the book's instrument id
    meta     [N_META]      scalar state (M_*)
    counters [N_COUNTERS]  what was applied and what was odd (C_*, named in COUNTER_NAMES)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EMPTY = -1
BID = 0  # side index inside the book (events use SIDE_BID / SIDE_ASK)
ASK = 1
MAX_LOAD_NUM, MAX_LOAD_DEN = 1, 2  # hash tables are kept at most half full
INITIAL_SEGMENT = 8  # levels per side before the first relocation
ARENA_PER_LEVEL = 4  # a side's segment is at most twice its levels, and relocations leave as much behind

# --- columns of the tables --------------------------------------------------------------------
OR_ID, OR_BOOK, OR_SIDE, OR_PRICE, OR_QTY, OR_PREV, OR_NEXT, OR_LEVEL = range(8)
LV_PRICE, LV_QTY, LV_COUNT, LV_HEAD, LV_TAIL, LV_SEG = range(6)
LEVEL_COLUMNS = LV_SEG + 1
SD_START, SD_LEN, SD_CAP = range(3)
BK_INSTR, BK_ORDERS, BK_CROSSED = range(3)
AR_KEY, AR_LEVEL = range(2)

# --- meta: scalar state -----------------------------------------------------------------------
M_ORDER_FREE = 0  # head of the free order-row list (linked through OR_NEXT)
M_ORDERS = 1  # live orders
M_LEVEL_FREE = 2  # head of the free level list (linked through LV_HEAD)
M_LEVELS = 3  # live levels
M_ARENA_TOP = 4  # first unused arena position
M_MAX_SEG_CAP = 5  # largest segment capacity (bounds what one relocation needs)
M_BOOKS = 6  # books in use
N_META = 7

# --- counters: read by reports and metrics ----------------------------------------------------
C_EVENTS = 0  # events applied
C_ADDS = 1
C_EXECUTES = 2
C_CANCELS = 3
C_DELETES = 4
C_REPLACES = 5
C_LEVEL_SETS = 6
C_CLEARS = 7
C_UNKNOWN_ORDER = 8  # execute / cancel / delete / replace of an order the book never saw
C_DUPLICATE_ORDER = 9  # add (or replace) with an order id that is already live
C_OVER_EXECUTION = 10  # execute or cancel of more than the order has left (the order is removed)
C_CROSSED = 11  # times a book became crossed (best bid >= best ask)
C_BAD_EVENT = 12  # non-positive size, unknown side
C_IGNORED = 13  # events with no book effect (trades, status, snapshot markers)
N_COUNTERS = 14
COUNTER_NAMES = (
    "events",
    "adds",
    "executes",
    "cancels",
    "deletes",
    "replaces",
    "level_sets",
    "clears",
    "unknown_order_refs",
    "duplicate_order_ids",
    "over_executions",
    "crossed_books",
    "bad_events",
    "ignored_events",
)


class BookState(NamedTuple):
    """Every table of the book; kernels receive the whole tuple in one argument (``book_nb.tables_nb``
    borrows its arrays for the hot loops)."""

    orders: np.ndarray  # i8[O, 8]
    levels: np.ndarray  # i8[L, 6]
    sides: np.ndarray  # i8[2B, 3]
    books: np.ndarray  # i8[B, 3]
    arena: np.ndarray  # i8[A, 2]
    o_hash: np.ndarray  # i4[H], EMPTY when free
    l_hash: np.ndarray  # i4[G], EMPTY when free; at least twice the level rows, so never over half full
    i_hash: np.ndarray  # i4[I], EMPTY when free
    meta: np.ndarray  # i8[N_META]
    counters: np.ndarray  # i8[N_COUNTERS]


def pow2_at_least(n: int) -> int:
    """The smallest power of two >= ``n`` (and >= 16): hash table sizes."""
    return 1 << max(4, (int(n) - 1).bit_length())


def empty_hash(n: int) -> np.ndarray:
    """A hash table of ``n`` free slots."""
    return np.full(n, EMPTY, np.int32)


def free_list(rows: int, cols: int, link: int, start: int = 0) -> np.ndarray:
    """A table whose rows start -> start+1 -> ... -> EMPTY are chained through column ``link``."""
    table = np.zeros((rows, cols), np.int64)
    table[:, link] = np.arange(start + 1, start + rows + 1)
    table[-1, link] = EMPTY
    return table


def order_rows(rows: int, start: int = 0) -> np.ndarray:
    """``rows`` free order rows numbered from ``start``: chained through OR_NEXT, at no level (a row is live
    exactly when its OR_LEVEL is not EMPTY, which lets a rehash read the table in order)."""
    table = free_list(rows, 8, OR_NEXT, start)
    table[:, OR_LEVEL] = EMPTY
    return table


def new_state(orders: int = 1 << 16, levels: int = 1 << 12, books: int = 16) -> BookState:
    """A fresh, empty book store sized for the given numbers of orders, levels and instruments."""
    meta = np.zeros(N_META, np.int64)
    meta[M_MAX_SEG_CAP] = INITIAL_SEGMENT
    return BookState(
        orders=order_rows(orders),
        levels=free_list(levels, LEVEL_COLUMNS, LV_HEAD),
        sides=np.zeros((2 * books, 3), np.int64),
        books=np.zeros((books, 3), np.int64),
        arena=np.zeros((max(ARENA_PER_LEVEL * levels, 4 * INITIAL_SEGMENT * books), 2), np.int64),
        o_hash=empty_hash(pow2_at_least(orders * MAX_LOAD_DEN // MAX_LOAD_NUM)),
        l_hash=empty_hash(pow2_at_least(levels * MAX_LOAD_DEN // MAX_LOAD_NUM)),
        i_hash=empty_hash(pow2_at_least(books * MAX_LOAD_DEN // MAX_LOAD_NUM)),
        meta=meta,
        counters=np.zeros(N_COUNTERS, np.int64),
    )
