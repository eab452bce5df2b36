"""Compiled kernels of the L3 book (``engine.book.Book`` is the Python face): layout, apply, growth.

State lives in a few preallocated int64 tables (the :class:`BookState` named tuple), one row per
object so that an order is one 64-byte cache line::

    orders   [O, 8]  id, book, side, price, qty, prev, next (FIFO links), level
    levels   [L, 5]  price, qty, order count, head, tail (FIFO of order rows)
    sides    [2B, 3] per (book, side): start, length, capacity of its segment of the arena
    books    [B, 3]  instrument id, resting orders, crossed flag
    arena    [A, 2]  (key, level id); each side's segment sorted by key (price for bids, -price
                     for asks), so the best level sits at the END and touch activity is an append
    o_hash   [H]     open addressing, linear probing: order row, keyed by the row's order id
    i_hash   [I]     book row, keyed by the book's instrument id

The hashes hold row numbers only (4 bytes a slot, so the order hash stays in L2) and compare keys
in the rows they point at, which the operation reads next anyway.

``apply_nb`` unpacks the tuple once into borrowed views (``engine.borrow``) and hands single
tables to inlined helpers, so that no reference counting happens per event. It never allocates:
before each event it checks that one more order, level, book and a segment relocation fit, and
otherwise returns the event's index so that ``Book`` can double the exhausted tables (off the
hot path) and resume. An order's queue position is a walk along its level's FIFO.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.borrow import borrow
from engine.events import (
    ALL_INSTRUMENTS,
    KIND_ADD,
    KIND_CANCEL,
    KIND_CLEAR,
    KIND_CLEAR_SIDE,
    KIND_DELETE,
    KIND_EXECUTE,
    KIND_EXECUTE_PRICE,
    KIND_LEVEL,
    KIND_REPLACE,
    SIDE_ASK,
    SIDE_BID,
)

EMPTY = -1
BID = 0  # side index inside the book (events use SIDE_BID / SIDE_ASK)
ASK = 1
MIX_MULT = np.uint64(0xFF51AFD7ED558CCD)  # murmur3 fmix64 multiplier: sequential ids spread evenly
MAX_LOAD_NUM, MAX_LOAD_DEN = 1, 2  # hash tables are kept at most half full
INITIAL_SEGMENT = 8  # levels per side before the first relocation

# columns of the tables
OR_ID, OR_BOOK, OR_SIDE, OR_PRICE, OR_QTY, OR_PREV, OR_NEXT, OR_LEVEL = range(8)
LV_PRICE, LV_QTY, LV_COUNT, LV_HEAD, LV_TAIL = range(5)
SD_START, SD_LEN, SD_CAP = range(3)
BK_INSTR, BK_ORDERS, BK_CROSSED = range(3)
AR_KEY, AR_LEVEL = range(2)
LINEAR_SCAN = 16  # levels searched one by one from the touch before a binary search

# --- meta: scalar state -------------------------------------------------------------------------
M_ORDER_FREE = 0  # head of the free order-row list (linked through OR_NEXT)
M_ORDERS = 1  # live orders
M_LEVEL_FREE = 2  # head of the free level list (linked through LV_HEAD)
M_LEVELS = 3  # live levels
M_ARENA_TOP = 4  # first unused arena position
M_MAX_SEG_CAP = 5  # largest segment capacity (bounds what one relocation needs)
M_BOOKS = 6  # books in use
N_META = 7

# --- counters: read by reports and metrics -------------------------------------------------------
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
    """Every table of the book; numba receives the whole tuple in one argument."""

    orders: np.ndarray  # i8[O, 8]
    levels: np.ndarray  # i8[L, 5]
    sides: np.ndarray  # i8[2B, 3]
    books: np.ndarray  # i8[B, 3]
    arena: np.ndarray  # i8[A, 2]
    o_hash: np.ndarray  # i4[H], EMPTY when free
    i_hash: np.ndarray  # i4[I], EMPTY when free
    meta: np.ndarray  # i8[N_META]
    counters: np.ndarray  # i8[N_COUNTERS]


def _pow2(n: int) -> int:
    return 1 << max(4, (int(n) - 1).bit_length())


def _empty_hash(n: int) -> np.ndarray:
    return np.full(n, EMPTY, np.int32)


def _pool(rows: int, cols: int, link: int, start: int = 0) -> np.ndarray:
    """A table whose rows start -> start+1 -> ... -> EMPTY are chained through column ``link``."""
    table = np.zeros((rows, cols), np.int64)
    table[:, link] = np.arange(start + 1, start + rows + 1)
    table[-1, link] = EMPTY
    return table


def new_state(orders: int = 1 << 16, levels: int = 1 << 12, books: int = 16) -> BookState:
    """A fresh, empty book store sized for the given numbers of orders, levels and instruments."""
    meta = np.zeros(N_META, np.int64)
    meta[M_MAX_SEG_CAP] = INITIAL_SEGMENT
    return BookState(
        orders=_pool(orders, 8, OR_NEXT),
        levels=_pool(levels, 5, LV_HEAD),
        sides=np.zeros((2 * books, 3), np.int64),
        books=np.zeros((books, 3), np.int64),
        arena=np.zeros((max(levels, 4 * INITIAL_SEGMENT * books), 2), np.int64),
        o_hash=_empty_hash(_pow2(orders * MAX_LOAD_DEN // MAX_LOAD_NUM)),
        i_hash=_empty_hash(_pow2(books * MAX_LOAD_DEN // MAX_LOAD_NUM)),
        meta=meta,
        counters=np.zeros(N_COUNTERS, np.int64),
    )


# --- hashing ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _slot_of(key, mask):
    h = np.uint64(key)
    h ^= h >> np.uint64(33)
    h *= MIX_MULT
    h ^= h >> np.uint64(33)
    return np.int64(h & np.uint64(mask))


@njit(cache=True, nogil=True, inline="always")
def hash_slot_nb(table, rows, col, key):
    """The slot holding the row whose ``rows[row, col]`` is ``key``, or the free slot ending its chain."""
    mask = table.shape[0] - 1
    i = _slot_of(key, mask)
    while table[i] != EMPTY and rows[table[i], col] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True, inline="always")
def hash_find_nb(table, rows, col, key):
    """The row keyed ``key``, or EMPTY."""
    return table[hash_slot_nb(table, rows, col, key)]


@njit(cache=True, nogil=True, inline="always")
def _hash_free_nb(table, rows, col, i):
    """Empty slot ``i`` by backward-shift deletion (no tombstones, probe chains stay short)."""
    mask = table.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if table[j] == EMPTY:
            break
        home = _slot_of(rows[table[j], col], mask)
        # move j back into the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
            table[i] = table[j]
            i = j
    table[i] = EMPTY


@njit(cache=True, nogil=True, inline="always")
def hash_take_nb(table, rows, col, key):
    """Remove the row keyed ``key`` and return it (EMPTY when absent): find and delete in one probe."""
    i = hash_slot_nb(table, rows, col, key)
    row = table[i]
    if row != EMPTY:
        _hash_free_nb(table, rows, col, i)
    return row


# --- levels inside a side segment ---------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _key(side, price):
    return price if side == BID else -price


@njit(cache=True, nogil=True, inline="always")
def _find_pos_nb(sides, arena, s, key):
    """Position of the first level in segment ``s`` whose key is >= ``key``.

    Activity is near the touch, at the end of the segment: scan from there, then bisect.
    """
    start = sides[s, SD_START]
    hi = sides[s, SD_LEN]
    stop = max(0, hi - LINEAR_SCAN)
    while hi > stop:
        if arena[start + hi - 1, AR_KEY] < key:
            return hi
        hi -= 1
    lo = 0
    while lo < hi:
        mid = (lo + hi) >> 1
        if arena[start + mid, AR_KEY] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _relocate_nb(sides, arena, meta, s):
    """Move segment ``s`` to the arena top with twice its capacity (space checked beforehand)."""
    top = meta[M_ARENA_TOP]
    n = sides[s, SD_LEN]
    old = sides[s, SD_START]
    cap = max(2 * sides[s, SD_CAP], INITIAL_SEGMENT)
    for j in range(n):
        arena[top + j, AR_KEY] = arena[old + j, AR_KEY]
        arena[top + j, AR_LEVEL] = arena[old + j, AR_LEVEL]
    sides[s, SD_START] = top
    sides[s, SD_CAP] = cap
    meta[M_ARENA_TOP] = top + cap
    if cap > meta[M_MAX_SEG_CAP]:
        meta[M_MAX_SEG_CAP] = cap


@njit(cache=True, nogil=True, inline="always")
def _level_for_nb(levels, sides, arena, meta, b, side, price, create):
    """Level id of ``price`` on (book, side); a new empty level is inserted when ``create``."""
    s = 2 * b + side
    key = _key(side, price)
    pos = _find_pos_nb(sides, arena, s, key)
    n = sides[s, SD_LEN]
    if pos < n and arena[sides[s, SD_START] + pos, AR_KEY] == key:
        return arena[sides[s, SD_START] + pos, AR_LEVEL]
    if not create:
        return EMPTY
    if n == sides[s, SD_CAP]:
        _relocate_nb(sides, arena, meta, s)
    start = sides[s, SD_START]
    for j in range(start + n, start + pos, -1):  # open a hole at pos (memmove up)
        arena[j, AR_KEY] = arena[j - 1, AR_KEY]
        arena[j, AR_LEVEL] = arena[j - 1, AR_LEVEL]
    lvl = meta[M_LEVEL_FREE]
    meta[M_LEVEL_FREE] = levels[lvl, LV_HEAD]
    meta[M_LEVELS] += 1
    levels[lvl, LV_PRICE] = price
    levels[lvl, LV_QTY] = 0
    levels[lvl, LV_COUNT] = 0
    levels[lvl, LV_HEAD] = EMPTY
    levels[lvl, LV_TAIL] = EMPTY
    arena[start + pos, AR_KEY] = key
    arena[start + pos, AR_LEVEL] = lvl
    sides[s, SD_LEN] = n + 1
    return lvl


@njit(cache=True, nogil=True, inline="always")
def _remove_level_nb(levels, sides, arena, meta, b, side, lvl):
    """Take an empty level out of its segment and back to the free list."""
    s = 2 * b + side
    pos = _find_pos_nb(sides, arena, s, _key(side, levels[lvl, LV_PRICE]))
    start = sides[s, SD_START]
    n = sides[s, SD_LEN]
    for j in range(start + pos, start + n - 1):  # close the hole at pos (memmove down)
        arena[j, AR_KEY] = arena[j + 1, AR_KEY]
        arena[j, AR_LEVEL] = arena[j + 1, AR_LEVEL]
    sides[s, SD_LEN] = n - 1
    levels[lvl, LV_HEAD] = meta[M_LEVEL_FREE]
    meta[M_LEVEL_FREE] = lvl
    meta[M_LEVELS] -= 1


@njit(cache=True, nogil=True, inline="always")
def _check_crossed_nb(sides, arena, books, counters, b):
    nb_ = sides[2 * b, SD_LEN]
    na = sides[2 * b + 1, SD_LEN]
    crossed = 0
    if nb_ > 0 and na > 0:
        bid = arena[sides[2 * b, SD_START] + nb_ - 1, AR_KEY]
        ask = -arena[sides[2 * b + 1, SD_START] + na - 1, AR_KEY]
        crossed = 1 if bid >= ask else 0
    if crossed and not books[b, BK_CROSSED]:
        counters[C_CROSSED] += 1
    books[b, BK_CROSSED] = crossed


# --- books --------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _book_of_nb(books, sides, i_hash, meta, instrument):
    """Book index of an instrument, created on first sight (capacity checked beforehand)."""
    b = hash_find_nb(i_hash, books, BK_INSTR, instrument)
    if b != EMPTY:
        return b
    b = meta[M_BOOKS]
    meta[M_BOOKS] = b + 1
    books[b, BK_INSTR] = instrument
    books[b, BK_ORDERS] = 0
    books[b, BK_CROSSED] = 0
    for s in (2 * b, 2 * b + 1):
        sides[s, SD_LEN] = 0
        sides[s, SD_CAP] = 0
    i_hash[hash_slot_nb(i_hash, books, BK_INSTR, instrument)] = b
    return b


# --- orders -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, order_id, price, qty, slot):
    """Rest a new order at the back of its level; ``slot`` is its free slot in the order hash."""
    lvl = _level_for_nb(levels, sides, arena, meta, b, side, price, True)
    o = meta[M_ORDER_FREE]
    meta[M_ORDER_FREE] = orders[o, OR_NEXT]
    meta[M_ORDERS] += 1
    tail = levels[lvl, LV_TAIL]
    orders[o, OR_ID] = order_id
    orders[o, OR_BOOK] = b
    orders[o, OR_SIDE] = side
    orders[o, OR_PRICE] = price
    orders[o, OR_QTY] = qty
    orders[o, OR_PREV] = tail
    orders[o, OR_NEXT] = EMPTY
    orders[o, OR_LEVEL] = lvl
    if tail == EMPTY:
        levels[lvl, LV_HEAD] = o
    else:
        orders[tail, OR_NEXT] = o
    levels[lvl, LV_TAIL] = o
    levels[lvl, LV_QTY] += qty
    levels[lvl, LV_COUNT] += 1
    books[b, BK_ORDERS] += 1
    o_hash[slot] = o


@njit(cache=True, nogil=True, inline="always")
def _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o):
    """Take order row ``o`` out of the order hash and the book."""
    hash_take_nb(o_hash, orders, OR_ID, orders[o, OR_ID])
    _unlink_order_nb(orders, levels, sides, arena, books, meta, o)


@njit(cache=True, nogil=True, inline="always")
def _unlink_order_nb(orders, levels, sides, arena, books, meta, o):
    """Unlink order row ``o`` from its level and its book and free the row (the hash is the caller's)."""
    lvl = orders[o, OR_LEVEL]
    prev = orders[o, OR_PREV]
    nxt = orders[o, OR_NEXT]
    if prev == EMPTY:
        levels[lvl, LV_HEAD] = nxt
    else:
        orders[prev, OR_NEXT] = nxt
    if nxt == EMPTY:
        levels[lvl, LV_TAIL] = prev
    else:
        orders[nxt, OR_PREV] = prev
    levels[lvl, LV_QTY] -= orders[o, OR_QTY]
    levels[lvl, LV_COUNT] -= 1
    b = orders[o, OR_BOOK]
    books[b, BK_ORDERS] -= 1
    if levels[lvl, LV_COUNT] == 0:
        _remove_level_nb(levels, sides, arena, meta, b, orders[o, OR_SIDE], lvl)
    orders[o, OR_LEVEL] = EMPTY
    orders[o, OR_NEXT] = meta[M_ORDER_FREE]
    meta[M_ORDER_FREE] = o
    meta[M_ORDERS] -= 1


@njit(cache=True, nogil=True, inline="always")
def _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, qty):
    """Take ``qty`` off order ``o``; it leaves the book at zero (more than it has is counted)."""
    left = orders[o, OR_QTY]
    if qty >= left:
        if qty > left:
            counters[C_OVER_EXECUTION] += 1
        _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o)
    else:
        orders[o, OR_QTY] = left - qty
        levels[orders[o, OR_LEVEL], LV_QTY] -= qty


@njit(cache=True, nogil=True)
def _clear_book_nb(orders, levels, sides, arena, books, o_hash, meta, b):
    for side in range(2):
        s = 2 * b + side
        start = sides[s, SD_START]
        for p in range(sides[s, SD_LEN]):
            lvl = arena[start + p, AR_LEVEL]
            o = levels[lvl, LV_HEAD]
            while o != EMPTY:
                nxt = orders[o, OR_NEXT]
                hash_take_nb(o_hash, orders, OR_ID, orders[o, OR_ID])
                orders[o, OR_LEVEL] = EMPTY
                orders[o, OR_NEXT] = meta[M_ORDER_FREE]
                meta[M_ORDER_FREE] = o
                meta[M_ORDERS] -= 1
                o = nxt
            levels[lvl, LV_HEAD] = meta[M_LEVEL_FREE]
            meta[M_LEVEL_FREE] = lvl
            meta[M_LEVELS] -= 1
        sides[s, SD_LEN] = 0
    books[b, BK_ORDERS] = 0
    books[b, BK_CROSSED] = 0


@njit(cache=True, nogil=True)
def _clear_side_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, price):
    """Remove the levels of one side from the touch through ``price`` (bids >= price, asks <= price)."""
    s = 2 * b + side
    key = _key(side, price)
    while sides[s, SD_LEN] > 0:
        lvl = arena[sides[s, SD_START] + sides[s, SD_LEN] - 1, AR_LEVEL]
        if _key(side, levels[lvl, LV_PRICE]) < key:
            return
        if levels[lvl, LV_HEAD] == EMPTY:  # an L2 level
            _remove_level_nb(levels, sides, arena, meta, b, side, lvl)
        else:
            while levels[lvl, LV_HEAD] != EMPTY and levels[lvl, LV_COUNT] > 0:
                _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, levels[lvl, LV_HEAD])


@njit(cache=True, nogil=True, inline="always")
def _side_index(side):
    if side == SIDE_BID:
        return BID
    if side == SIDE_ASK:
        return ASK
    return EMPTY


@njit(cache=True, nogil=True, inline="always")
def _has_room_nb(meta, hash_cap, books_cap, instr_cap, arena_cap):
    """Whether one more order, level, book and a segment relocation fit without growing."""
    return (
        meta[M_ORDER_FREE] != EMPTY
        and meta[M_LEVEL_FREE] != EMPTY
        and meta[M_ORDERS] * MAX_LOAD_DEN < hash_cap * MAX_LOAD_NUM
        and meta[M_BOOKS] < books_cap
        and (meta[M_BOOKS] + 1) * MAX_LOAD_DEN <= instr_cap * MAX_LOAD_NUM
        and meta[M_ARENA_TOP] + 2 * meta[M_MAX_SEG_CAP] <= arena_cap
    )


@njit(cache=True, nogil=True, inline="always")
def tables_nb(st):
    """Borrowed views of every table of a :class:`BookState`, so that hot loops do no reference counting."""
    return (
        borrow(st.orders),
        borrow(st.levels),
        borrow(st.sides),
        borrow(st.books),
        borrow(st.arena),
        borrow(st.o_hash),
        borrow(st.i_hash),
        borrow(st.meta),
        borrow(st.counters),
    )


@njit(cache=True, nogil=True, inline="always")
def has_room_nb(t):
    """Whether one more event (or one more order of our own) fits in the tables ``t`` without growing."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = t
    return _has_room_nb(meta, o_hash.shape[0], books.shape[0], i_hash.shape[0], arena.shape[0])


@njit(cache=True, nogil=True)
def apply_nb(st, events, start):
    """Apply ``events[start:]`` to the books; returns the index reached (len(events) when done).

    Stops early, before touching the event, only when the state needs to grow.
    """
    t = tables_nb(st)
    events = borrow(events)
    n = len(events)
    for i in range(start, n):
        if not has_room_nb(t):
            return i
        apply_event_nb(t, events[i])
    return n


@njit(cache=True, nogil=True, inline="always")
def apply_event_nb(t, ev):
    """Apply one event to the tables ``t`` (from :func:`tables_nb`; room checked by the caller)."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = t
    kind = ev.kind
    counters[C_EVENTS] += 1
    if kind == KIND_ADD:
        side = _side_index(ev.side)
        order_id = np.int64(ev.order_id)
        if side == EMPTY or ev.qty <= 0:
            counters[C_BAD_EVENT] += 1
            return
        slot = hash_slot_nb(o_hash, orders, OR_ID, order_id)
        if o_hash[slot] != EMPTY:
            counters[C_DUPLICATE_ORDER] += 1
            return
        b = _book_of_nb(books, sides, i_hash, meta, np.int64(ev.instrument))
        _add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, order_id, ev.price, ev.qty, slot)
        counters[C_ADDS] += 1
        _check_crossed_nb(sides, arena, books, counters, b)
    elif kind == KIND_DELETE:
        o = hash_take_nb(o_hash, orders, OR_ID, np.int64(ev.order_id))
        if o == EMPTY:
            counters[C_UNKNOWN_ORDER] += 1
            return
        b = orders[o, OR_BOOK]
        _unlink_order_nb(orders, levels, sides, arena, books, meta, o)
        counters[C_DELETES] += 1
        if books[b, BK_CROSSED]:  # taking liquidity away can only uncross a book
            _check_crossed_nb(sides, arena, books, counters, b)
    elif kind in (KIND_EXECUTE, KIND_EXECUTE_PRICE, KIND_CANCEL):
        o = hash_find_nb(o_hash, orders, OR_ID, np.int64(ev.order_id))
        if o == EMPTY:
            counters[C_UNKNOWN_ORDER] += 1
            return
        b = orders[o, OR_BOOK]
        if ev.qty <= 0:
            counters[C_BAD_EVENT] += 1
            return
        _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, ev.qty)
        counters[C_CANCELS if kind == KIND_CANCEL else C_EXECUTES] += 1
        if books[b, BK_CROSSED]:  # taking liquidity away can only uncross a book
            _check_crossed_nb(sides, arena, books, counters, b)
    elif kind == KIND_REPLACE:
        _replace_nb(orders, levels, sides, arena, books, o_hash, meta, counters, ev)
    elif kind == KIND_LEVEL:
        _set_level_nb(levels, sides, arena, books, i_hash, meta, counters, ev)
    elif kind == KIND_CLEAR:
        counters[C_CLEARS] += 1
        if ev.instrument == ALL_INSTRUMENTS:
            for b in range(meta[M_BOOKS]):
                _clear_book_nb(orders, levels, sides, arena, books, o_hash, meta, b)
        else:
            b = hash_find_nb(i_hash, books, BK_INSTR, np.int64(ev.instrument))
            if b != EMPTY:
                _clear_book_nb(orders, levels, sides, arena, books, o_hash, meta, b)
    elif kind == KIND_CLEAR_SIDE:
        b = hash_find_nb(i_hash, books, BK_INSTR, np.int64(ev.instrument))
        side = _side_index(ev.side)
        counters[C_CLEARS] += 1
        if side == EMPTY:
            counters[C_BAD_EVENT] += 1
        elif b != EMPTY:
            _clear_side_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, ev.price)
    else:
        counters[C_IGNORED] += 1


@njit(cache=True, nogil=True, inline="always")
def _replace_nb(orders, levels, sides, arena, books, o_hash, meta, counters, ev):
    """ITCH U (new id, priority lost) and DBN M (same id; a same-price size cut keeps priority)."""
    old_id = np.int64(ev.order_id)
    new_id = np.int64(ev.new_order_id)
    o = hash_find_nb(o_hash, orders, OR_ID, old_id)
    if o == EMPTY:
        counters[C_UNKNOWN_ORDER] += 1
        return
    if ev.qty < 0:
        counters[C_BAD_EVENT] += 1
        return
    if new_id != old_id and hash_find_nb(o_hash, orders, OR_ID, new_id) != EMPTY:
        counters[C_DUPLICATE_ORDER] += 1
        return
    counters[C_REPLACES] += 1
    b = orders[o, OR_BOOK]
    side = orders[o, OR_SIDE]
    left = orders[o, OR_QTY]
    if new_id == old_id and ev.price == orders[o, OR_PRICE] and 0 < ev.qty <= left:
        if ev.qty < left:
            _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, left - ev.qty)
    else:
        _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o)
        if ev.qty > 0:
            slot = hash_slot_nb(o_hash, orders, OR_ID, new_id)
            _add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, new_id, ev.price, ev.qty, slot)
    _check_crossed_nb(sides, arena, books, counters, b)


@njit(cache=True, nogil=True, inline="always")
def _set_level_nb(levels, sides, arena, books, i_hash, meta, counters, ev):
    """L2 market-by-price update: the level at (side, price) now holds ``qty`` (0 removes it)."""
    side = _side_index(ev.side)
    if side == EMPTY or ev.qty < 0:
        counters[C_BAD_EVENT] += 1
        return
    counters[C_LEVEL_SETS] += 1
    b = _book_of_nb(books, sides, i_hash, meta, np.int64(ev.instrument))
    lvl = _level_for_nb(levels, sides, arena, meta, b, side, ev.price, ev.qty > 0)
    if lvl == EMPTY:
        return
    if ev.qty == 0:
        if levels[lvl, LV_HEAD] == EMPTY:  # an L2 level owns no orders
            _remove_level_nb(levels, sides, arena, meta, b, side, lvl)
        return
    levels[lvl, LV_QTY] = ev.qty
    levels[lvl, LV_COUNT] = ev.order_id
    _check_crossed_nb(sides, arena, books, counters, b)


# --- reads --------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def depth_nb(levels, sides, arena, b, side, out):
    """Fill ``out[k] = (price, qty, orders)`` for the best ``len(out)`` levels; returns levels filled."""
    s = 2 * b + side
    start = sides[s, SD_START]
    n = sides[s, SD_LEN]
    k = min(n, out.shape[0])
    for j in range(k):
        lvl = arena[start + n - 1 - j, AR_LEVEL]
        out[j, 0] = levels[lvl, LV_PRICE]
        out[j, 1] = levels[lvl, LV_QTY]
        out[j, 2] = levels[lvl, LV_COUNT]
    return k


@njit(cache=True, nogil=True, inline="always")
def best_level_nb(levels, sides, arena, b, side):
    """Level row of the best price on (book ``b``, side index), or EMPTY when that side is empty."""
    s = 2 * b + side
    n = sides[s, SD_LEN]
    return EMPTY if n == 0 else arena[sides[s, SD_START] + n - 1, AR_LEVEL]


@njit(cache=True, nogil=True)
def queue_ahead_nb(orders, o):
    """(orders, qty) resting ahead of order row ``o`` in its level's FIFO."""
    count = 0
    qty = 0
    p = orders[o, OR_PREV]
    while p != EMPTY:
        count += 1
        qty += orders[p, OR_QTY]
        p = orders[p, OR_PREV]
    return count, qty


# --- growth (off the hot path) ------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rehash_nb(table, rows, col, new_table):
    for i in range(table.shape[0]):
        if table[i] != EMPTY:
            new_table[hash_slot_nb(new_table, rows, col, rows[table[i], col])] = table[i]


@njit(cache=True, nogil=True)
def _compact_arena_nb(sides, arena, new_arena, books_used):
    """Copy every live segment, keeping its capacity, to the front of ``new_arena``; returns the top."""
    top = 0
    for s in range(2 * books_used):
        n = sides[s, SD_LEN]
        start = sides[s, SD_START]
        new_arena[top : top + n] = arena[start : start + n]
        sides[s, SD_START] = top
        top += sides[s, SD_CAP]
    return top


def _grown_rows(table: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *table.shape[1:]), table.dtype)
    out[: len(table)] = table
    return out


def _rehashed(table: np.ndarray, rows: np.ndarray, col: int) -> np.ndarray:
    new = _empty_hash(2 * len(table))
    _rehash_nb(table, rows, col, new)
    return new


def grow_state(st: BookState) -> BookState:
    """Double whatever ``apply_nb`` ran out of; the result holds the same books."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = st
    if meta[M_ORDER_FREE] == EMPTY:
        old = len(orders)
        orders = np.concatenate([orders, _pool(old, 8, OR_NEXT, old)])
        meta[M_ORDER_FREE] = old
    if meta[M_LEVEL_FREE] == EMPTY:
        old = len(levels)
        levels = np.concatenate([levels, _pool(old, 5, LV_HEAD, old)])
        meta[M_LEVEL_FREE] = old
    if meta[M_ORDERS] * MAX_LOAD_DEN >= len(o_hash) * MAX_LOAD_NUM:
        o_hash = _rehashed(o_hash, orders, OR_ID)
    if meta[M_BOOKS] >= len(books):
        books = _grown_rows(books, 2 * len(books))
        sides = _grown_rows(sides, 2 * len(sides))
    if (meta[M_BOOKS] + 1) * MAX_LOAD_DEN > len(i_hash) * MAX_LOAD_NUM:
        i_hash = _rehashed(i_hash, books, BK_INSTR)
    if meta[M_ARENA_TOP] + 2 * meta[M_MAX_SEG_CAP] > len(arena):
        used = int(sides[: 2 * meta[M_BOOKS], SD_CAP].sum())
        size = len(arena)
        while used + 2 * meta[M_MAX_SEG_CAP] > size // 2:
            size *= 2
        new_arena = np.zeros((size, 2), np.int64)
        meta[M_ARENA_TOP] = _compact_arena_nb(sides, arena, new_arena, meta[M_BOOKS])
        arena = new_arena
    return BookState(orders, levels, sides, books, arena, o_hash, i_hash, meta, counters)
