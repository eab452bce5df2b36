"""Numba L3 order book for many instruments, fed with rows of ``engine.events.EVENT_DTYPE``.

Layout (all preallocated numpy arrays, grouped in the :class:`BookState` named tuple)::

    order hash  h_key/h_val      open addressing, linear probing, order_id -> order slot
    orders      o_*              slot pool: id, book, side, price, qty, FIFO links prev/next, level
    levels      l_*              level pool: price, qty, order count, FIFO head/tail order slots
    sides       s_start/len/cap  per (book, side) a segment of the arena, level ids sorted by key
    arena       arena            level ids; key = price for bids, -price for asks, best at the END
    books       b_*              per book: instrument id, order count, crossed flag
    instrument hash  i_key/i_val instrument id -> book index

Keeping the best level at the end of its segment makes the common case (activity near the touch)
an append or a short ``memmove``. An order's queue position is a walk along its level's FIFO.

``apply_nb`` never allocates: before each event it checks that one more order, level, book and a
segment relocation fit, and otherwise returns the event's index so that :class:`Book` can double
the exhausted arrays (off the hot path) and resume.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.events import (
    ALL_INSTRUMENTS,
    KIND_ADD,
    KIND_CANCEL,
    KIND_CLEAR,
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
HASH_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
MAX_LOAD_NUM, MAX_LOAD_DEN = 1, 2  # hash tables are kept at most half full

# --- meta: scalar state -------------------------------------------------------------------------
M_ORDER_FREE = 0  # head of the free order-slot list
M_ORDERS = 1  # live orders
M_LEVEL_FREE = 2  # head of the free level list
M_LEVELS = 3  # live levels
M_ARENA_TOP = 4  # first unused arena position
M_MAX_SEG_CAP = 5  # largest segment capacity (bounds what one relocation needs)
M_BOOKS = 6  # books in use
M_INSTR_KEYS = 7  # entries in the instrument hash
N_META = 8

# --- counters: read by reports and metrics, never branch on them in the hot path ----------------
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
    """Every array of the book; numba receives the whole tuple in one argument."""

    h_key: np.ndarray  # u8[H]
    h_val: np.ndarray  # i4[H], EMPTY when free
    o_id: np.ndarray  # u8[O]
    o_book: np.ndarray  # i4[O]
    o_side: np.ndarray  # i1[O] BID/ASK
    o_price: np.ndarray  # i8[O]
    o_qty: np.ndarray  # i8[O]
    o_prev: np.ndarray  # i4[O]
    o_next: np.ndarray  # i4[O]; free-list link while free
    o_level: np.ndarray  # i4[O]
    l_price: np.ndarray  # i8[L]
    l_qty: np.ndarray  # i8[L]
    l_count: np.ndarray  # i8[L]
    l_head: np.ndarray  # i4[L]; free-list link while free
    l_tail: np.ndarray  # i4[L]
    s_start: np.ndarray  # i8[2B]
    s_len: np.ndarray  # i8[2B]
    s_cap: np.ndarray  # i8[2B]
    arena: np.ndarray  # i4[A]
    b_instr: np.ndarray  # u8[B]
    b_orders: np.ndarray  # i8[B]
    b_crossed: np.ndarray  # u1[B]
    i_key: np.ndarray  # u8[IH]
    i_val: np.ndarray  # i4[IH]
    meta: np.ndarray  # i8[N_META]
    counters: np.ndarray  # i8[N_COUNTERS]


INITIAL_SEGMENT = 8  # levels per side before the first relocation


def _free_list(n: int, start: int = 0) -> np.ndarray:
    """Links start -> start+1 -> ... -> EMPTY for a fresh pool."""
    links = np.arange(start + 1, start + n + 1, dtype=np.int32)
    links[-1] = EMPTY
    return links


def _empty_hash(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, np.uint64), np.full(n, EMPTY, np.int32)


def new_state(orders: int = 1 << 16, levels: int = 1 << 12, books: int = 16) -> BookState:
    """A fresh, empty book store sized for the given numbers of orders, levels and instruments."""
    h_key, h_val = _empty_hash(_pow2(orders * MAX_LOAD_DEN // MAX_LOAD_NUM))
    i_key, i_val = _empty_hash(_pow2(books * MAX_LOAD_DEN // MAX_LOAD_NUM))
    meta = np.zeros(N_META, np.int64)
    meta[M_LEVEL_FREE] = 0
    meta[M_MAX_SEG_CAP] = INITIAL_SEGMENT
    return BookState(
        h_key=h_key,
        h_val=h_val,
        o_id=np.zeros(orders, np.uint64),
        o_book=np.zeros(orders, np.int32),
        o_side=np.zeros(orders, np.int8),
        o_price=np.zeros(orders, np.int64),
        o_qty=np.zeros(orders, np.int64),
        o_prev=np.full(orders, EMPTY, np.int32),
        o_next=_free_list(orders),
        o_level=np.full(orders, EMPTY, np.int32),
        l_price=np.zeros(levels, np.int64),
        l_qty=np.zeros(levels, np.int64),
        l_count=np.zeros(levels, np.int64),
        l_head=_free_list(levels),
        l_tail=np.full(levels, EMPTY, np.int32),
        s_start=np.zeros(2 * books, np.int64),
        s_len=np.zeros(2 * books, np.int64),
        s_cap=np.zeros(2 * books, np.int64),
        arena=np.full(max(levels, 4 * INITIAL_SEGMENT * books), EMPTY, np.int32),
        b_instr=np.zeros(books, np.uint64),
        b_orders=np.zeros(books, np.int64),
        b_crossed=np.zeros(books, np.uint8),
        i_key=i_key,
        i_val=i_val,
        meta=meta,
        counters=np.zeros(N_COUNTERS, np.int64),
    )


def _pow2(n: int) -> int:
    return 1 << max(4, (int(n) - 1).bit_length())


# --- hashing ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _slot_of(key, mask):
    return np.int64((np.uint64(key) * HASH_MULT) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def hash_find_nb(keys, vals, key):
    """Value stored for ``key``, or EMPTY."""
    mask = len(keys) - 1
    i = _slot_of(key, mask)
    while vals[i] != EMPTY:
        if keys[i] == key:
            return vals[i]
        i = (i + 1) & mask
    return EMPTY


@njit(cache=True, nogil=True)
def hash_insert_nb(keys, vals, key, val):
    """Insert or overwrite ``key``; the caller keeps the table at most half full."""
    mask = len(keys) - 1
    i = _slot_of(key, mask)
    while vals[i] != EMPTY:
        if keys[i] == key:
            vals[i] = val
            return
        i = (i + 1) & mask
    keys[i] = key
    vals[i] = val


@njit(cache=True, nogil=True)
def hash_delete_nb(keys, vals, key):
    """Remove ``key`` with backward-shift deletion (no tombstones, probe chains stay short)."""
    mask = len(keys) - 1
    i = _slot_of(key, mask)
    while keys[i] != key or vals[i] == EMPTY:
        if vals[i] == EMPTY:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if vals[j] == EMPTY:
            break
        home = _slot_of(keys[j], mask)
        # move j back into the hole at i unless its home lies cyclically in (i, j]
        if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    vals[i] = EMPTY


# --- levels inside a side segment ---------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _key(side, price):
    return price if side == BID else -price


@njit(cache=True, nogil=True)
def _find_pos_nb(st, s, key):
    """Position of the first level in segment ``s`` whose key is >= ``key`` (binary search)."""
    start = st.s_start[s]
    side = s & 1
    lo = 0
    hi = st.s_len[s]
    # fast path: activity is near the touch, at the end of the segment
    if hi > 0 and _key(side, st.l_price[st.arena[start + hi - 1]]) < key:
        return hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if _key(side, st.l_price[st.arena[start + mid]]) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _relocate_nb(st, s):
    """Move segment ``s`` to the arena top with twice its capacity (space checked beforehand)."""
    top = st.meta[M_ARENA_TOP]
    n = st.s_len[s]
    cap = max(2 * st.s_cap[s], INITIAL_SEGMENT)
    st.arena[top : top + n] = st.arena[st.s_start[s] : st.s_start[s] + n]
    st.s_start[s] = top
    st.s_cap[s] = cap
    st.meta[M_ARENA_TOP] = top + cap
    if cap > st.meta[M_MAX_SEG_CAP]:
        st.meta[M_MAX_SEG_CAP] = cap


@njit(cache=True, nogil=True)
def _level_for_nb(st, b, side, price, create):
    """Level id of ``price`` on (book, side); a new empty level is inserted when ``create``."""
    s = 2 * b + side
    key = _key(side, price)
    pos = _find_pos_nb(st, s, key)
    start = st.s_start[s]
    n = st.s_len[s]
    if pos < n:
        lvl = st.arena[start + pos]
        if st.l_price[lvl] == price:
            return lvl
    if not create:
        return EMPTY
    if n == st.s_cap[s]:
        _relocate_nb(st, s)
        start = st.s_start[s]
    for j in range(start + n, start + pos, -1):  # open a hole at pos (memmove up)
        st.arena[j] = st.arena[j - 1]
    lvl = st.meta[M_LEVEL_FREE]
    st.meta[M_LEVEL_FREE] = st.l_head[lvl]
    st.meta[M_LEVELS] += 1
    st.l_price[lvl] = price
    st.l_qty[lvl] = 0
    st.l_count[lvl] = 0
    st.l_head[lvl] = EMPTY
    st.l_tail[lvl] = EMPTY
    st.arena[start + pos] = lvl
    st.s_len[s] = n + 1
    return lvl


@njit(cache=True, nogil=True)
def _remove_level_nb(st, b, side, lvl):
    """Take an empty level out of its segment and back to the free list."""
    s = 2 * b + side
    pos = _find_pos_nb(st, s, _key(side, st.l_price[lvl]))
    start = st.s_start[s]
    n = st.s_len[s]
    for j in range(start + pos, start + n - 1):  # close the hole at pos (memmove down)
        st.arena[j] = st.arena[j + 1]
    st.s_len[s] = n - 1
    st.l_head[lvl] = st.meta[M_LEVEL_FREE]
    st.meta[M_LEVEL_FREE] = lvl
    st.meta[M_LEVELS] -= 1


@njit(cache=True, nogil=True)
def _check_crossed_nb(st, b):
    nb_ = st.s_len[2 * b]
    na = st.s_len[2 * b + 1]
    crossed = 0
    if nb_ > 0 and na > 0:
        bid = st.l_price[st.arena[st.s_start[2 * b] + nb_ - 1]]
        ask = st.l_price[st.arena[st.s_start[2 * b + 1] + na - 1]]
        crossed = 1 if bid >= ask else 0
    if crossed and not st.b_crossed[b]:
        st.counters[C_CROSSED] += 1
    st.b_crossed[b] = crossed


# --- books --------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _book_of_nb(st, instrument):
    """Book index of an instrument, created on first sight (capacity checked beforehand)."""
    b = hash_find_nb(st.i_key, st.i_val, instrument)
    if b != EMPTY:
        return b
    b = st.meta[M_BOOKS]
    st.meta[M_BOOKS] = b + 1
    st.b_instr[b] = instrument
    st.b_orders[b] = 0
    st.b_crossed[b] = 0
    st.s_len[2 * b] = 0
    st.s_len[2 * b + 1] = 0
    st.s_cap[2 * b] = 0
    st.s_cap[2 * b + 1] = 0
    hash_insert_nb(st.i_key, st.i_val, instrument, b)
    st.meta[M_INSTR_KEYS] += 1
    return b


# --- orders -------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _add_order_nb(st, b, side, order_id, price, qty):
    lvl = _level_for_nb(st, b, side, price, True)
    o = st.meta[M_ORDER_FREE]
    st.meta[M_ORDER_FREE] = st.o_next[o]
    st.meta[M_ORDERS] += 1
    st.o_id[o] = order_id
    st.o_book[o] = b
    st.o_side[o] = side
    st.o_price[o] = price
    st.o_qty[o] = qty
    st.o_level[o] = lvl
    st.o_next[o] = EMPTY
    tail = st.l_tail[lvl]
    st.o_prev[o] = tail
    if tail == EMPTY:
        st.l_head[lvl] = o
    else:
        st.o_next[tail] = o
    st.l_tail[lvl] = o
    st.l_qty[lvl] += qty
    st.l_count[lvl] += 1
    st.b_orders[b] += 1
    hash_insert_nb(st.h_key, st.h_val, order_id, o)


@njit(cache=True, nogil=True)
def _remove_order_nb(st, o):
    """Unlink order slot ``o`` from its level, the hash and its book; free the slot."""
    lvl = st.o_level[o]
    prev = st.o_prev[o]
    nxt = st.o_next[o]
    if prev == EMPTY:
        st.l_head[lvl] = nxt
    else:
        st.o_next[prev] = nxt
    if nxt == EMPTY:
        st.l_tail[lvl] = prev
    else:
        st.o_prev[nxt] = prev
    st.l_qty[lvl] -= st.o_qty[o]
    st.l_count[lvl] -= 1
    b = st.o_book[o]
    st.b_orders[b] -= 1
    if st.l_count[lvl] == 0:
        _remove_level_nb(st, b, st.o_side[o], lvl)
    hash_delete_nb(st.h_key, st.h_val, st.o_id[o])
    st.o_level[o] = EMPTY
    st.o_next[o] = st.meta[M_ORDER_FREE]
    st.meta[M_ORDER_FREE] = o
    st.meta[M_ORDERS] -= 1


@njit(cache=True, nogil=True)
def _reduce_order_nb(st, o, qty):
    """Take ``qty`` off order ``o``; it leaves the book at zero (more than it has is counted)."""
    left = st.o_qty[o]
    if qty >= left:
        if qty > left:
            st.counters[C_OVER_EXECUTION] += 1
        _remove_order_nb(st, o)
    else:
        st.o_qty[o] = left - qty
        st.l_qty[st.o_level[o]] -= qty


@njit(cache=True, nogil=True)
def _clear_book_nb(st, b):
    for side in range(2):
        s = 2 * b + side
        start = st.s_start[s]
        for p in range(st.s_len[s]):
            lvl = st.arena[start + p]
            o = st.l_head[lvl]
            while o != EMPTY:
                nxt = st.o_next[o]
                hash_delete_nb(st.h_key, st.h_val, st.o_id[o])
                st.o_level[o] = EMPTY
                st.o_next[o] = st.meta[M_ORDER_FREE]
                st.meta[M_ORDER_FREE] = o
                st.meta[M_ORDERS] -= 1
                o = nxt
            st.l_head[lvl] = st.meta[M_LEVEL_FREE]
            st.meta[M_LEVEL_FREE] = lvl
            st.meta[M_LEVELS] -= 1
        st.s_len[s] = 0
    st.b_orders[b] = 0
    st.b_crossed[b] = 0


@njit(cache=True, nogil=True, inline="always")
def _side_index(side):
    if side == SIDE_BID:
        return BID
    if side == SIDE_ASK:
        return ASK
    return EMPTY


@njit(cache=True, nogil=True)
def _has_room_nb(st):
    """Whether one more order, level, book and a segment relocation fit without growing."""
    return (
        st.meta[M_ORDER_FREE] != EMPTY
        and st.meta[M_LEVEL_FREE] != EMPTY
        and st.meta[M_ORDERS] * MAX_LOAD_DEN < len(st.h_key) * MAX_LOAD_NUM
        and st.meta[M_BOOKS] < len(st.b_instr)
        and (st.meta[M_INSTR_KEYS] + 1) * MAX_LOAD_DEN <= len(st.i_key) * MAX_LOAD_NUM
        and st.meta[M_ARENA_TOP] + 2 * st.meta[M_MAX_SEG_CAP] <= len(st.arena)
    )


@njit(cache=True, nogil=True)
def apply_nb(st, events, start):
    """Apply ``events[start:]`` to the books; returns the index reached (len(events) when done).

    Stops early, before touching the event, only when the state needs to grow.
    """
    counters = st.counters
    n = len(events)
    for i in range(start, n):
        if not _has_room_nb(st):
            return i
        ev = events[i]
        kind = ev.kind
        counters[C_EVENTS] += 1
        if kind == KIND_ADD:
            side = _side_index(ev.side)
            if side == EMPTY or ev.qty <= 0:
                counters[C_BAD_EVENT] += 1
                continue
            if hash_find_nb(st.h_key, st.h_val, ev.order_id) != EMPTY:
                counters[C_DUPLICATE_ORDER] += 1
                continue
            b = _book_of_nb(st, ev.instrument)
            _add_order_nb(st, b, side, ev.order_id, ev.price, ev.qty)
            counters[C_ADDS] += 1
            _check_crossed_nb(st, b)
        elif kind in (KIND_EXECUTE, KIND_EXECUTE_PRICE, KIND_CANCEL):
            o = hash_find_nb(st.h_key, st.h_val, ev.order_id)
            if o == EMPTY:
                counters[C_UNKNOWN_ORDER] += 1
                continue
            if ev.qty <= 0:
                counters[C_BAD_EVENT] += 1
                continue
            b = st.o_book[o]
            _reduce_order_nb(st, o, ev.qty)
            counters[C_CANCELS if kind == KIND_CANCEL else C_EXECUTES] += 1
            _check_crossed_nb(st, b)
        elif kind == KIND_DELETE:
            o = hash_find_nb(st.h_key, st.h_val, ev.order_id)
            if o == EMPTY:
                counters[C_UNKNOWN_ORDER] += 1
                continue
            b = st.o_book[o]
            _remove_order_nb(st, o)
            counters[C_DELETES] += 1
            _check_crossed_nb(st, b)
        elif kind == KIND_REPLACE:
            _replace_nb(st, ev)
        elif kind == KIND_LEVEL:
            _set_level_nb(st, ev)
        elif kind == KIND_CLEAR:
            counters[C_CLEARS] += 1
            if ev.instrument == ALL_INSTRUMENTS:
                for b in range(st.meta[M_BOOKS]):
                    _clear_book_nb(st, b)
            else:
                b = hash_find_nb(st.i_key, st.i_val, ev.instrument)
                if b != EMPTY:
                    _clear_book_nb(st, b)
        else:
            counters[C_IGNORED] += 1
    return n


@njit(cache=True, nogil=True)
def _replace_nb(st, ev):
    """ITCH U (new id, priority lost) and DBN M (same id; a same-price size cut keeps priority)."""
    counters = st.counters
    o = hash_find_nb(st.h_key, st.h_val, ev.order_id)
    if o == EMPTY:
        counters[C_UNKNOWN_ORDER] += 1
        return
    if ev.qty < 0:
        counters[C_BAD_EVENT] += 1
        return
    same_id = ev.new_order_id == ev.order_id
    if not same_id and hash_find_nb(st.h_key, st.h_val, ev.new_order_id) != EMPTY:
        counters[C_DUPLICATE_ORDER] += 1
        return
    counters[C_REPLACES] += 1
    b = st.o_book[o]
    side = st.o_side[o]
    if same_id and ev.price == st.o_price[o] and 0 < ev.qty <= st.o_qty[o]:
        if ev.qty < st.o_qty[o]:
            _reduce_order_nb(st, o, st.o_qty[o] - ev.qty)
    else:
        _remove_order_nb(st, o)
        if ev.qty > 0:
            _add_order_nb(st, b, side, ev.new_order_id, ev.price, ev.qty)
    _check_crossed_nb(st, b)


@njit(cache=True, nogil=True)
def _set_level_nb(st, ev):
    """L2 market-by-price update: the level at (side, price) now holds ``qty`` (0 removes it)."""
    side = _side_index(ev.side)
    if side == EMPTY or ev.qty < 0:
        st.counters[C_BAD_EVENT] += 1
        return
    st.counters[C_LEVEL_SETS] += 1
    b = _book_of_nb(st, ev.instrument)
    lvl = _level_for_nb(st, b, side, ev.price, ev.qty > 0)
    if lvl == EMPTY:
        return
    if ev.qty == 0:
        if st.l_head[lvl] == EMPTY:  # an L2 level owns no orders
            _remove_level_nb(st, b, side, lvl)
        return
    st.l_qty[lvl] = ev.qty
    st.l_count[lvl] = ev.order_id
    _check_crossed_nb(st, b)


# --- reads --------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def depth_nb(st, b, side, out):
    """Fill ``out[k] = (price, qty, orders)`` for the best ``len(out)`` levels; returns levels filled."""
    s = 2 * b + side
    start = st.s_start[s]
    n = st.s_len[s]
    k = min(n, out.shape[0])
    for j in range(k):
        lvl = st.arena[start + n - 1 - j]
        out[j, 0] = st.l_price[lvl]
        out[j, 1] = st.l_qty[lvl]
        out[j, 2] = st.l_count[lvl]
    return k


@njit(cache=True, nogil=True)
def queue_ahead_nb(st, o):
    """(orders, qty) resting ahead of order slot ``o`` in its level's FIFO."""
    orders = 0
    qty = 0
    p = st.o_prev[o]
    while p != EMPTY:
        orders += 1
        qty += st.o_qty[p]
        p = st.o_prev[p]
    return orders, qty


# --- growth (off the hot path) ------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _rehash_nb(keys, vals, new_keys, new_vals):
    for i in range(len(keys)):
        if vals[i] != EMPTY:
            hash_insert_nb(new_keys, new_vals, keys[i], vals[i])


@njit(cache=True, nogil=True)
def _compact_arena_nb(st, arena):
    """Copy every live segment, keeping its capacity, to the front of ``arena``; returns the top."""
    top = 0
    for s in range(2 * st.meta[M_BOOKS]):
        n = st.s_len[s]
        arena[top : top + n] = st.arena[st.s_start[s] : st.s_start[s] + n]
        st.s_start[s] = top
        top += st.s_cap[s]
    return top


def _grown(a: np.ndarray, n: int, fill: int = 0) -> np.ndarray:
    out = np.full(n, fill, a.dtype)
    out[: len(a)] = a
    return out


def grow_state(st: BookState) -> BookState:
    """Double whatever ``apply_nb`` ran out of; the result holds the same books."""
    f = st._asdict()
    meta = st.meta
    if meta[M_ORDER_FREE] == EMPTY:
        old, new = len(st.o_id), 2 * len(st.o_id)
        for name in ("o_id", "o_book", "o_side", "o_price", "o_qty"):
            f[name] = _grown(f[name], new)
        for name in ("o_prev", "o_level"):
            f[name] = _grown(f[name], new, EMPTY)
        f["o_next"] = _grown(st.o_next, new)
        f["o_next"][old:] = _free_list(new - old, old)
        meta[M_ORDER_FREE] = old
    if meta[M_LEVEL_FREE] == EMPTY:
        old, new = len(st.l_price), 2 * len(st.l_price)
        for name in ("l_price", "l_qty", "l_count"):
            f[name] = _grown(f[name], new)
        f["l_tail"] = _grown(st.l_tail, new, EMPTY)
        f["l_head"] = _grown(st.l_head, new)
        f["l_head"][old:] = _free_list(new - old, old)
        meta[M_LEVEL_FREE] = old
    if meta[M_ORDERS] * MAX_LOAD_DEN >= len(st.h_key) * MAX_LOAD_NUM:
        f["h_key"], f["h_val"] = _empty_hash(2 * len(st.h_key))
        _rehash_nb(st.h_key, st.h_val, f["h_key"], f["h_val"])
    if meta[M_BOOKS] >= len(st.b_instr):
        new = 2 * len(st.b_instr)
        for name in ("b_instr", "b_orders", "b_crossed"):
            f[name] = _grown(f[name], new)
        for name in ("s_start", "s_len", "s_cap"):
            f[name] = _grown(f[name], 2 * new)
    if (meta[M_INSTR_KEYS] + 1) * MAX_LOAD_DEN > len(st.i_key) * MAX_LOAD_NUM:
        f["i_key"], f["i_val"] = _empty_hash(2 * len(st.i_key))
        _rehash_nb(st.i_key, st.i_val, f["i_key"], f["i_val"])
    grown = BookState(**f)
    if meta[M_ARENA_TOP] + 2 * meta[M_MAX_SEG_CAP] > len(st.arena):
        used = int(grown.s_cap[: 2 * meta[M_BOOKS]].sum())
        size = len(st.arena)
        while used + 2 * meta[M_MAX_SEG_CAP] > size // 2:
            size *= 2
        arena = np.full(size, EMPTY, np.int32)
        meta[M_ARENA_TOP] = _compact_arena_nb(grown, arena)
        grown = grown._replace(arena=arena)
    return grown


# --- Python facade ------------------------------------------------------------------------------
class Book:
    """Order books of many instruments, updated in batches of events.

    >>> book = Book()
    >>> book.apply(events)            # one jitted call per batch
    >>> book.depth(instrument, 5)     # best five bid and ask levels
    """

    def __init__(self, orders: int = 1 << 16, levels: int = 1 << 12, instruments: int = 16) -> None:
        self.state = new_state(orders, levels, instruments)

    def apply(self, events: np.ndarray) -> None:
        """Apply a batch of ``EVENT_DTYPE`` rows in order, growing capacity as needed."""
        i = apply_nb(self.state, events, 0)
        while i < len(events):
            self.state = grow_state(self.state)
            i = apply_nb(self.state, events, i)

    def instruments(self) -> list[int]:
        """Instrument ids with a book, in order of first appearance."""
        return [int(x) for x in self.state.b_instr[: self.state.meta[M_BOOKS]]]

    def _book(self, instrument: int) -> int:
        return int(hash_find_nb(self.state.i_key, self.state.i_val, np.uint64(instrument)))

    def depth(self, instrument: int, levels: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Best ``levels`` bids and asks as int64 arrays of rows (price, qty, orders), best first."""
        bids = np.zeros((levels, 3), np.int64)
        asks = np.zeros((levels, 3), np.int64)
        b = self._book(instrument)
        if b == EMPTY:
            return bids[:0], asks[:0]
        nb_ = depth_nb(self.state, b, BID, bids)
        na = depth_nb(self.state, b, ASK, asks)
        return bids[:nb_], asks[:na]

    def level_count(self, instrument: int, side: int) -> int:
        """Number of price levels on ``side`` (SIDE_BID or SIDE_ASK) of an instrument."""
        b = self._book(instrument)
        return 0 if b == EMPTY else int(self.state.s_len[2 * b + (BID if side == SIDE_BID else ASK)])

    def order_count(self, instrument: int) -> int:
        """Resting orders of an instrument."""
        b = self._book(instrument)
        return 0 if b == EMPTY else int(self.state.b_orders[b])

    def order(self, order_id: int) -> dict | None:
        """A resting order with its queue position, or None when it is not in the book."""
        st = self.state
        o = int(hash_find_nb(st.h_key, st.h_val, np.uint64(order_id)))
        if o == EMPTY:
            return None
        ahead_orders, ahead_qty = queue_ahead_nb(st, o)
        return {
            "instrument": int(st.b_instr[st.o_book[o]]),
            "side": SIDE_BID if st.o_side[o] == BID else SIDE_ASK,
            "price": int(st.o_price[o]),
            "qty": int(st.o_qty[o]),
            "orders_ahead": int(ahead_orders),
            "qty_ahead": int(ahead_qty),
        }

    @property
    def counters(self) -> dict[str, int]:
        """Event and anomaly counters (unknown order refs, crossed books, ...)."""
        return {name: int(v) for name, v in zip(COUNTER_NAMES, self.state.counters, strict=True)}

    @property
    def total_orders(self) -> int:
        """Resting orders over every instrument."""
        return int(self.state.meta[M_ORDERS])
