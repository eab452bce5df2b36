"""Compiled kernels of the simulated exchange's matching engine (``engine.matching`` is the Python face).

Price-time priority over the L3 tables of ``engine.book_nb`` (one book per instrument, created at
start-up in the order the instruments are listed, so book row == instrument index), plus:

    refs      [O, 2]  owner, client reference of each order row (parallel to the book's orders)
    inst      [B, 3]  tick (price units), lot (shares), halted flag of each instrument
    symbols   [B, 8]  ITCH stock symbol bytes, space padded
    mpid_own  [K]     owners whose adds carry an MPID (ITCH F instead of A) ...
    mpid_code [K, 4]  ... and that MPID
    meta      [4]     next exchange order reference, last match number, post-only mode, self-trade mode

``submit_nb`` handles a batch of ``REQUEST_DTYPE`` rows; each state change becomes report rows and
``[u16 len][msg]`` ITCH 5.0 records. It never allocates: before a request it checks that the book
tables, the reports and the ITCH buffer hold the worst case of that request (every resting order of
the instrument filled) and otherwise returns a ``NEED_*`` status with the request's index, so that
the caller grows what ran out (off the hot path) and resumes.

Self-trade prevention: an incoming order (new, or a replace that becomes marketable) never trades
with a resting order of the same owner. ``SELF_TRADE_CANCEL_RESTING`` cancels each such resting
order as the incoming one reaches it (D on the feed) and matching goes on; ``SELF_TRADE_CANCEL_INCOMING``
stops the incoming order there and cancels what is left of it (it never rests). Both cancels are
reported ``RPT_CANCELED`` with reason ``REJ_SELF_TRADE``. ``SELF_TRADE_ALLOW`` matches as usual.
Owners below 0 (the background flow: many anonymous participants under one id) are exempt.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.book_nb import (
    AR_LEVEL,
    ASK,
    BID,
    BK_INSTR,
    BK_ORDERS,
    EMPTY,
    LV_HEAD,
    LV_PRICE,
    M_ORDER_FREE,
    OR_BOOK,
    OR_ID,
    OR_PRICE,
    OR_QTY,
    OR_SIDE,
    SD_LEN,
    SD_START,
    _add_order_nb,
    _book_of_nb,
    _has_room_nb,
    _reduce_order_nb,
    _remove_order_nb,
    hash_find_nb,
    hash_slot_nb,
)
from engine.borrow import borrow
from engine.events import SIDE_ASK, SIDE_BID
from feeds.itch import (
    MESSAGE_LENGTHS,
    encode_add_nb,
    encode_cancel_nb,
    encode_delete_nb,
    encode_executed_nb,
    encode_replace_nb,
)

# --- requests ------------------------------------------------------------------------------------
REQUEST_DTYPE = np.dtype(
    [
        ("owner", "<i8"),  # session id
        ("order_ref", "<u8"),  # cancel / replace: the exchange reference of the order
        ("price", "<i8"),  # new / replace: 1e-4 units (ITCH Price(4))
        ("qty", "<i8"),  # new / replace: size; cancel: the size left after it (0 cancels all)
        ("client_ref", "<u4"),
        ("instrument", "<u4"),  # new: stock locate
        ("kind", "u1"),  # REQ_*
        ("side", "i1"),  # new: SIDE_BID / SIDE_ASK
        ("tif", "u1"),  # new: TIF_*
        ("post_only", "u1"),  # new / replace: 1 never takes liquidity
    ]
)
REQ_NEW, REQ_CANCEL, REQ_REPLACE = 1, 2, 3
TIF_DAY, TIF_IOC = 0, 1

# --- reports -------------------------------------------------------------------------------------
REPORT_DTYPE = np.dtype(
    [
        ("owner", "<i8"),
        ("order_ref", "<u8"),  # the order's exchange reference (replaced: the new one; rejects: the request's)
        ("orig_ref", "<u8"),  # replaced: the reference it replaced
        ("match_number", "<u8"),  # executed
        ("price", "<i8"),  # accepted / replaced: resting price; executed: fill price
        ("qty", "<i8"),  # accepted / replaced: size; executed: filled; canceled: canceled amount
        ("leaves", "<i8"),  # open size after this report
        ("client_ref", "<u4"),
        ("instrument", "<u4"),
        ("kind", "u1"),  # RPT_*
        ("side", "i1"),
        ("reason", "u1"),  # rejected: REJ_*
        ("liquidity", "u1"),  # executed: LIQ_ADDED (resting side) or LIQ_REMOVED (aggressor)
    ]
)
RPT_ACCEPTED, RPT_REJECTED, RPT_CANCELED, RPT_REPLACED, RPT_EXECUTED = 1, 2, 3, 4, 5
LIQ_ADDED, LIQ_REMOVED = 1, 2

# --- reject reasons ------------------------------------------------------------------------------
REJ_NONE = 0
REJ_BAD_TICK = 1  # price not a multiple of the instrument's tick
REJ_BAD_LOT = 2  # size not a multiple of the instrument's lot
REJ_BAD_PRICE = 3  # price <= 0 or beyond ITCH Price(4)
REJ_BAD_QTY = 4  # size <= 0 (cancel: < 0) or beyond u32
REJ_UNKNOWN_ORDER = 5  # no live order with that reference for that owner
REJ_POST_ONLY_CROSS = 6  # post-only would take liquidity (or could not be repriced)
REJ_HALTED = 7  # instrument not trading
REJ_UNKNOWN_INSTRUMENT = 8
REJ_BAD_REQUEST = 9  # unknown request kind, side or time in force
REJ_SELF_TRADE = 10  # not a reject: the reason of a cancel by self-trade prevention
REJECT_NAMES = {
    REJ_BAD_TICK: "bad_tick",
    REJ_BAD_LOT: "bad_lot",
    REJ_BAD_PRICE: "bad_price",
    REJ_BAD_QTY: "bad_qty",
    REJ_UNKNOWN_ORDER: "unknown_order",
    REJ_POST_ONLY_CROSS: "post_only_would_cross",
    REJ_HALTED: "instrument_halted",
    REJ_UNKNOWN_INSTRUMENT: "unknown_instrument",
    REJ_BAD_REQUEST: "bad_request",
    REJ_SELF_TRADE: "self_trade",
}

POST_ONLY_REJECT, POST_ONLY_REPRICE = 0, 1
SELF_TRADE_ALLOW, SELF_TRADE_CANCEL_RESTING, SELF_TRADE_CANCEL_INCOMING = 0, 1, 2
PRICE_MAX = 0xFFFFFFFF  # ITCH Price(4)
QTY_MAX = 0xFFFFFFFF  # ITCH shares u32

# --- submit_nb statuses --------------------------------------------------------------------------
DONE, NEED_STATE, NEED_REPORTS, NEED_ITCH = 0, 1, 2, 3

# --- matcher tables ------------------------------------------------------------------------------
RF_OWNER, RF_CLIENT = range(2)
IN_TICK, IN_LOT, IN_HALTED = range(3)
MM_NEXT_REF, MM_MATCH, MM_POST_ONLY, MM_SELF_TRADE = range(4)


class MatchState(NamedTuple):
    """The matcher's tables beside the book's; numba receives the whole tuple in one argument."""

    refs: np.ndarray  # i8[O, 2]
    inst: np.ndarray  # i8[B, 3]
    symbols: np.ndarray  # u1[B, 8]
    mpid_own: np.ndarray  # i8[K]
    mpid_code: np.ndarray  # u1[K, 4]
    meta: np.ndarray  # i8[4]


# --- ITCH room ----------------------------------------------------------------------------------
RECORD_MAX = 2 + max(int(MESSAGE_LENGTHS[ord(t)]) for t in "AFXDU")  # the longest record besides executions
RECORD_E = 2 + int(MESSAGE_LENGTHS[ord("E")])  # the record of one execution


@njit(cache=True, nogil=True, inline="always")
def _mpid_index_nb(mpid_own, owner):
    """The row of ``owner``'s MPID in ``mpid_code``, or -1 (its adds are A, not F)."""
    for j in range(mpid_own.shape[0]):
        if mpid_own[j] == owner:
            return j
    return -1


@njit(cache=True, nogil=True, inline="always")
def _report_nb(reports, n, kind, owner, client_ref, instrument, side, ref, orig_ref, price, qty, leaves):
    """Fill reports[n] (match number, reason and liquidity zero); returns n + 1."""
    r = reports[n]
    r.kind = kind
    r.owner = owner
    r.client_ref = client_ref
    r.instrument = instrument
    r.side = side
    r.order_ref = ref
    r.orig_ref = orig_ref
    r.match_number = 0
    r.price = price
    r.qty = qty
    r.leaves = leaves
    r.reason = REJ_NONE
    r.liquidity = 0
    return n + 1


# --- book reads ----------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _best_level_nb(sides, arena, b, side):
    """Level id of the best price on (book, side index), or EMPTY."""
    s = 2 * b + side
    n = sides[s, SD_LEN]
    if n == 0:
        return EMPTY
    return arena[sides[s, SD_START] + n - 1, AR_LEVEL]


@njit(cache=True, nogil=True, inline="always")
def _marketable_nb(levels, sides, arena, b, side, price):
    """Whether an order of ``side`` at ``price`` meets the contra side's best level."""
    lvl = _best_level_nb(sides, arena, b, 1 - side)
    if lvl == EMPTY:
        return False
    best = levels[lvl, LV_PRICE]
    return best <= price if side == BID else best >= price


@njit(cache=True, nogil=True, inline="always")
def _check_price_qty_nb(inst, b, price, qty):
    """Reject reason of a price and size for book ``b`` (REJ_NONE when valid)."""
    if price <= 0 or price > PRICE_MAX:
        return REJ_BAD_PRICE
    if qty <= 0 or qty > QTY_MAX:
        return REJ_BAD_QTY
    if price % inst[b, IN_TICK] != 0:
        return REJ_BAD_TICK
    if qty % inst[b, IN_LOT] != 0:
        return REJ_BAD_LOT
    return REJ_NONE


@njit(cache=True, nogil=True, inline="always")
def _post_only_price_nb(levels, sides, arena, inst, b, side, price, mode):
    """The price a post-only order rests at: as given, repriced a tick off the contra best, or -1 (reject)."""
    if not _marketable_nb(levels, sides, arena, b, side, price):
        return price
    if mode == POST_ONLY_REJECT:
        return -1
    best = levels[_best_level_nb(sides, arena, b, 1 - side), LV_PRICE]
    repriced = best - inst[b, IN_TICK] if side == BID else best + inst[b, IN_TICK]
    return repriced if 0 < repriced <= PRICE_MAX else -1


# --- matching ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def init_books_nb(st, locates):
    """Create one book per instrument, book row i for locates[i] (capacity sized by the caller)."""
    books, sides, i_hash, meta = st.books, st.sides, st.i_hash, st.meta
    for i in range(locates.shape[0]):
        _book_of_nb(books, sides, i_hash, meta, locates[i])


@njit(cache=True, nogil=True)
def submit_nb(st, ms, requests, start, now_ns, reports, n_rep, itch, n_itch):
    """Handle ``requests[start:]``; returns ``(index reached, reports used, itch bytes used, status)``.

    Status DONE, or NEED_STATE / NEED_REPORTS / NEED_ITCH when request ``index`` was not touched
    because that store lacks room for its worst case.
    """
    orders, levels, sides = borrow(st.orders), borrow(st.levels), borrow(st.sides)
    books, arena, o_hash, i_hash = borrow(st.books), borrow(st.arena), borrow(st.o_hash), borrow(st.i_hash)
    meta, counters = borrow(st.meta), borrow(st.counters)
    refs, inst, symbols = borrow(ms.refs), borrow(ms.inst), borrow(ms.symbols)
    mpid_own, mpid_code, mm = borrow(ms.mpid_own), borrow(ms.mpid_code), borrow(ms.meta)
    requests, reports, itch = borrow(requests), borrow(reports), borrow(itch)
    hash_cap, books_cap, instr_cap, arena_cap = o_hash.shape[0], books.shape[0], i_hash.shape[0], arena.shape[0]
    mode = mm[MM_POST_ONLY]
    for i in range(start, requests.shape[0]):
        if not _has_room_nb(meta, hash_cap, books_cap, instr_cap, arena_cap):
            return i, n_rep, n_itch, NEED_STATE
        rq = requests[i]
        kind = rq.kind
        owner = rq.owner
        client_ref = rq.client_ref
        if kind == REQ_NEW:
            b = hash_find_nb(i_hash, books, BK_INSTR, np.int64(rq.instrument))
            o = EMPTY
        else:
            o = hash_find_nb(o_hash, orders, OR_ID, np.int64(rq.order_ref))
            if o != EMPTY and refs[o, RF_OWNER] != owner:
                o = EMPTY  # another session's order is unknown to this one
            b = orders[o, OR_BOOK] if o != EMPTY else EMPTY
        depth = books[b, BK_ORDERS] if b != EMPTY else 0
        if n_rep + 3 + 2 * depth > reports.shape[0]:
            return i, n_rep, n_itch, NEED_REPORTS
        if n_itch + 2 * RECORD_MAX + RECORD_E * depth > itch.shape[0]:
            return i, n_rep, n_itch, NEED_ITCH
        if kind == REQ_NEW:
            side = BID if rq.side == SIDE_BID else ASK
            reason = REJ_NONE
            if b == EMPTY:
                reason = REJ_UNKNOWN_INSTRUMENT
            elif inst[b, IN_HALTED]:
                reason = REJ_HALTED
            elif (rq.side != SIDE_BID and rq.side != SIDE_ASK) or rq.tif > TIF_IOC:
                reason = REJ_BAD_REQUEST
            else:
                reason = _check_price_qty_nb(inst, b, rq.price, rq.qty)
            price = rq.price
            if reason == REJ_NONE and rq.post_only:
                price = _post_only_price_nb(levels, sides, arena, inst, b, side, price, mode)
                if price < 0:
                    reason = REJ_POST_ONLY_CROSS
            if reason != REJ_NONE:
                n_rep = _reject_nb(reports, n_rep, owner, client_ref, rq.instrument, rq.side, rq.order_ref, reason)
                continue
            ref = mm[MM_NEXT_REF]
            mm[MM_NEXT_REF] = ref + 1
            n_rep = _report_nb(
                reports, n_rep, RPT_ACCEPTED, owner, client_ref, rq.instrument, rq.side, ref, 0, price, rq.qty, rq.qty
            )
            n_rep, n_itch = _execute_nb(
                orders, levels, sides, arena, books, o_hash, meta, counters, refs, symbols, mpid_own, mpid_code,
                mm, reports, n_rep, itch, n_itch, now_ns, b, side, ref, owner, client_ref, price, rq.qty,
                rq.tif == TIF_IOC,
            )  # fmt: skip
        elif kind != REQ_CANCEL and kind != REQ_REPLACE:
            n_rep = _reject_nb(reports, n_rep, owner, client_ref, 0, 0, rq.order_ref, REJ_BAD_REQUEST)
        elif o == EMPTY:
            n_rep = _reject_nb(reports, n_rep, owner, client_ref, 0, 0, rq.order_ref, REJ_UNKNOWN_ORDER)
        elif kind == REQ_CANCEL:
            n_rep, n_itch = _cancel_nb(
                orders, levels, sides, arena, books, o_hash, meta, counters, refs, inst, reports, n_rep, itch,
                n_itch, now_ns, o, rq.qty,
            )  # fmt: skip
        else:
            n_rep, n_itch = _replace_nb(
                orders, levels, sides, arena, books, o_hash, meta, counters, refs, inst, symbols, mpid_own,
                mpid_code, mm, reports, n_rep, itch, n_itch, now_ns, o, client_ref, rq.price, rq.qty,
                rq.post_only, mode,
            )  # fmt: skip
    return requests.shape[0], n_rep, n_itch, DONE


@njit(cache=True, nogil=True, inline="always")
def _reject_nb(reports, n, owner, client_ref, instrument, side, ref, reason):
    n = _report_nb(reports, n, RPT_REJECTED, owner, client_ref, instrument, side, ref, 0, 0, 0, 0)
    reports[n - 1].reason = reason
    return n


@njit(cache=True, nogil=True, inline="always")
def _execute_nb(
    orders, levels, sides, arena, books, o_hash, meta, counters, refs, symbols, mpid_own, mpid_code,
    mm, reports, n_rep, itch, n_itch, now_ns, b, side, ref, owner, client_ref, price, qty, ioc,
):  # fmt: skip
    """Match an accepted order against the contra side, then rest it (A/F) or cancel the rest (IOC, or
    stopped by self-trade prevention)."""
    locate = books[b, BK_INSTR]
    ev_side = SIDE_BID if side == BID else SIDE_ASK
    stp = mm[MM_SELF_TRADE] if owner >= 0 else SELF_TRADE_ALLOW
    stopped = False
    while qty > 0 and _marketable_nb(levels, sides, arena, b, side, price):
        lvl = _best_level_nb(sides, arena, b, 1 - side)
        fill_price = levels[lvl, LV_PRICE]
        o = levels[lvl, LV_HEAD]
        rest_ref = orders[o, OR_ID]
        if stp != SELF_TRADE_ALLOW and refs[o, RF_OWNER] == owner:
            if stp == SELF_TRADE_CANCEL_INCOMING:
                stopped = True
                break
            n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, rest_ref)
            n_rep = _report_nb(
                reports, n_rep, RPT_CANCELED, owner, refs[o, RF_CLIENT], locate, -ev_side, rest_ref, 0, fill_price,
                orders[o, OR_QTY], 0,
            )  # fmt: skip
            reports[n_rep - 1].reason = REJ_SELF_TRADE
            _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o)
            continue
        fill = min(qty, orders[o, OR_QTY])
        match = mm[MM_MATCH] + 1
        mm[MM_MATCH] = match
        rest_leaves = orders[o, OR_QTY] - fill
        n_itch = encode_executed_nb(itch, n_itch, now_ns, locate, rest_ref, fill, match, 0, 0)
        n_rep = _report_nb(
            reports, n_rep, RPT_EXECUTED, refs[o, RF_OWNER], refs[o, RF_CLIENT], locate, -ev_side, rest_ref, 0,
            fill_price, fill, rest_leaves,
        )  # fmt: skip
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = LIQ_ADDED
        _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, fill)
        qty -= fill
        n_rep = _report_nb(
            reports, n_rep, RPT_EXECUTED, owner, client_ref, locate, ev_side, ref, 0, fill_price, fill, qty
        )
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = LIQ_REMOVED
    if qty > 0:
        if ioc or stopped:
            n_rep = _report_nb(reports, n_rep, RPT_CANCELED, owner, client_ref, locate, ev_side, ref, 0, price, qty, 0)
            if stopped:
                reports[n_rep - 1].reason = REJ_SELF_TRADE
        else:
            slot = hash_slot_nb(o_hash, orders, OR_ID, ref)
            o = meta[M_ORDER_FREE]  # the row _add_order_nb takes
            _add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, ref, price, qty, slot)
            refs[o, RF_OWNER] = owner
            refs[o, RF_CLIENT] = client_ref
            n_itch = encode_add_nb(
                itch, n_itch, now_ns, locate, ref, ev_side, qty, symbols[b], price, mpid_code,
                _mpid_index_nb(mpid_own, owner),
            )  # fmt: skip
    return n_rep, n_itch


@njit(cache=True, nogil=True, inline="always")
def _cancel_nb(
    orders, levels, sides, arena, books, o_hash, meta, counters, refs, inst, reports, n_rep, itch, n_itch, now_ns,
    o, new_qty,
):  # fmt: skip
    """Cancel order row ``o`` down to ``new_qty`` shares (0: entirely); X or D on the feed."""
    b = orders[o, OR_BOOK]
    locate = books[b, BK_INSTR]
    ref = orders[o, OR_ID]
    owner, client_ref = refs[o, RF_OWNER], refs[o, RF_CLIENT]
    ev_side = SIDE_BID if orders[o, OR_SIDE] == BID else SIDE_ASK
    price = orders[o, OR_PRICE]
    leaves = orders[o, OR_QTY]
    if new_qty < 0:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, ref, REJ_BAD_QTY), n_itch
    if new_qty % inst[b, IN_LOT] != 0:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, ref, REJ_BAD_LOT), n_itch
    cut = leaves - new_qty if new_qty < leaves else 0
    if new_qty == 0:
        n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, ref)
        _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o)
    elif cut > 0:
        n_itch = encode_cancel_nb(itch, n_itch, now_ns, locate, ref, cut)
        _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, cut)
    n_rep = _report_nb(
        reports, n_rep, RPT_CANCELED, owner, client_ref, locate, ev_side, ref, 0, price, cut, leaves - cut
    )
    return n_rep, n_itch


@njit(cache=True, nogil=True, inline="always")
def _replace_nb(
    orders, levels, sides, arena, books, o_hash, meta, counters, refs, inst, symbols, mpid_own, mpid_code,
    mm, reports, n_rep, itch, n_itch, now_ns, o, client_ref, price, qty, post_only, mode,
):  # fmt: skip
    """Cancel-replace order row ``o``: a same-price size cut keeps its reference and priority (X on
    the feed); otherwise a new reference at the back of the queue (U), or, when the new price is
    marketable, D then matching as a new order."""
    b = orders[o, OR_BOOK]
    locate = books[b, BK_INSTR]
    old_ref = orders[o, OR_ID]
    owner = refs[o, RF_OWNER]
    side = orders[o, OR_SIDE]
    ev_side = SIDE_BID if side == BID else SIDE_ASK
    leaves = orders[o, OR_QTY]
    reason = REJ_HALTED if inst[b, IN_HALTED] else _check_price_qty_nb(inst, b, price, qty)
    if reason == REJ_NONE and post_only:
        price = _post_only_price_nb(levels, sides, arena, inst, b, side, price, mode)
        if price < 0:
            reason = REJ_POST_ONLY_CROSS
    if reason != REJ_NONE:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, old_ref, reason), n_itch
    if price == orders[o, OR_PRICE] and qty <= leaves:
        if qty < leaves:
            n_itch = encode_cancel_nb(itch, n_itch, now_ns, locate, old_ref, leaves - qty)
            _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, o, leaves - qty)
        refs[o, RF_CLIENT] = client_ref
        n_rep = _report_nb(
            reports, n_rep, RPT_REPLACED, owner, client_ref, locate, ev_side, old_ref, old_ref, price, qty, qty
        )
        return n_rep, n_itch
    new_ref = mm[MM_NEXT_REF]
    mm[MM_NEXT_REF] = new_ref + 1
    _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, o)
    n_rep = _report_nb(
        reports, n_rep, RPT_REPLACED, owner, client_ref, locate, ev_side, new_ref, old_ref, price, qty, qty
    )
    if _marketable_nb(levels, sides, arena, b, side, price):
        n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, old_ref)
        return _execute_nb(
            orders, levels, sides, arena, books, o_hash, meta, counters, refs, symbols, mpid_own, mpid_code,
            mm, reports, n_rep, itch, n_itch, now_ns, b, side, new_ref, owner, client_ref, price, qty, False,
        )  # fmt: skip
    slot = hash_slot_nb(o_hash, orders, OR_ID, new_ref)
    o = meta[M_ORDER_FREE]
    _add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, side, new_ref, price, qty, slot)
    refs[o, RF_OWNER] = owner
    refs[o, RF_CLIENT] = client_ref
    n_itch = encode_replace_nb(itch, n_itch, now_ns, locate, old_ref, new_ref, qty, price)
    return n_rep, n_itch
