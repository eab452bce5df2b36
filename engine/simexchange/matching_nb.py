"""Compiled kernels of the simulated exchange's matching engine (``engine.simexchange.matching`` is the face).

Price-time priority over the L3 tables of ``engine.book`` (one book per instrument, created at start-up
in the order the instruments are listed, so book row == instrument index), plus the matcher's own
tables (``engine.simexchange.layout.MatchState``, passed as one argument ``ms``).

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

import numpy as np
from numba import njit

from engine.book import layout as BL
from engine.book.book_nb import (
    add_order_nb,
    best_level_nb,
    has_room_nb,
    hash_find_nb,
    hash_slot_nb,
    open_book_nb,
    reduce_order_nb,
    remove_order_nb,
    tables_nb,
)
from engine.core import events as E
from engine.core.borrow import borrow
from engine.simexchange import layout as L
from feeds.itch import encode_add_nb, encode_cancel_nb, encode_delete_nb, encode_executed_nb, encode_replace_nb


@njit(cache=True, nogil=True, inline="always")
def borrowed_nb(ms):
    """The matcher's tables as owner-less views (``engine.core.borrow``): no reference counting per request."""
    return L.MatchState(
        borrow(ms.refs), borrow(ms.inst), borrow(ms.symbols), borrow(ms.mpid_own), borrow(ms.mpid_code), borrow(ms.meta)
    )


@njit(cache=True, nogil=True, inline="always")
def _mpid_index_nb(ms, owner):
    """The row of ``owner``'s MPID in ``mpid_code``, or -1 (its adds are A, not F)."""
    for j in range(ms.mpid_own.shape[0]):
        if ms.mpid_own[j] == owner:
            return j
    return -1


@njit(cache=True, nogil=True, inline="always")
def report_nb(reports, n, kind, owner, client_ref, instrument, side, ref, orig_ref, price, qty, leaves):
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
    r.reason = L.REJ_NONE
    r.liquidity = 0
    return n + 1


# --- book reads ----------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def marketable_nb(t, b, side, price):
    """Whether an order of ``side`` at ``price`` meets the contra side's best level."""
    lvl = best_level_nb(t, b, 1 - side)
    if lvl == BL.EMPTY:
        return False
    best = t.levels[lvl, BL.LV_PRICE]
    return best <= price if side == BL.BID else best >= price


@njit(cache=True, nogil=True, inline="always")
def _check_price_qty_nb(ms, b, price, qty):
    """Reject reason of a price and size for book ``b`` (REJ_NONE when valid)."""
    if price <= 0 or price > L.PRICE_MAX:
        return L.REJ_BAD_PRICE
    if qty <= 0 or qty > L.QTY_MAX:
        return L.REJ_BAD_QTY
    if price % ms.inst[b, L.IN_TICK] != 0:
        return L.REJ_BAD_TICK
    if qty % ms.inst[b, L.IN_LOT] != 0:
        return L.REJ_BAD_LOT
    return L.REJ_NONE


@njit(cache=True, nogil=True, inline="always")
def _post_only_price_nb(t, ms, b, side, price, mode):
    """The price a post-only order rests at: as given, repriced a tick off the contra best, or -1 (reject)."""
    if not marketable_nb(t, b, side, price):
        return price
    if mode == L.POST_ONLY_REJECT:
        return -1
    best = t.levels[best_level_nb(t, b, 1 - side), BL.LV_PRICE]
    repriced = best - ms.inst[b, L.IN_TICK] if side == BL.BID else best + ms.inst[b, L.IN_TICK]
    return repriced if 0 < repriced <= L.PRICE_MAX else -1


# --- matching ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def init_books_nb(st, locates):
    """Create one book per instrument, book row i for locates[i] (capacity sized by the caller)."""
    for i in range(locates.shape[0]):
        open_book_nb(st, locates[i])


@njit(cache=True, nogil=True)
def submit_nb(st, ms, requests, start, now_ns, reports, n_rep, itch, n_itch):
    """Handle ``requests[start:]``; returns ``(index reached, reports used, itch bytes used, status)``.

    Status DONE, or NEED_STATE / NEED_REPORTS / NEED_ITCH when request ``index`` was not touched
    because that store lacks room for its worst case.
    """
    t = tables_nb(st)
    ms = borrowed_nb(ms)
    requests, reports, itch = borrow(requests), borrow(reports), borrow(itch)
    mode = ms.meta[L.MM_POST_ONLY]
    for i in range(start, requests.shape[0]):
        if not has_room_nb(t):
            return i, n_rep, n_itch, L.NEED_STATE
        rq = requests[i]
        kind = rq.kind
        owner = rq.owner
        client_ref = rq.client_ref
        if kind == L.REQ_NEW:
            b = hash_find_nb(t.i_hash, t.books, BL.BK_INSTR, np.int64(rq.instrument))
            o = BL.EMPTY
        else:
            o = hash_find_nb(t.o_hash, t.orders, BL.OR_ID, np.int64(rq.order_ref))
            if o != BL.EMPTY and ms.refs[o, L.RF_OWNER] != owner:
                o = BL.EMPTY  # another session's order is unknown to this one
            b = t.orders[o, BL.OR_BOOK] if o != BL.EMPTY else BL.EMPTY
        depth = t.books[b, BL.BK_ORDERS] if b != BL.EMPTY else 0
        if n_rep + 3 + 2 * depth > reports.shape[0]:
            return i, n_rep, n_itch, L.NEED_REPORTS
        if n_itch + 2 * L.RECORD_MAX + L.RECORD_E * depth > itch.shape[0]:
            return i, n_rep, n_itch, L.NEED_ITCH
        if kind == L.REQ_NEW:
            side = BL.BID if rq.side == E.SIDE_BID else BL.ASK
            reason = L.REJ_NONE
            if b == BL.EMPTY:
                reason = L.REJ_UNKNOWN_INSTRUMENT
            elif ms.inst[b, L.IN_HALTED]:
                reason = L.REJ_HALTED
            elif (rq.side != E.SIDE_BID and rq.side != E.SIDE_ASK) or rq.tif > L.TIF_IOC:
                reason = L.REJ_BAD_REQUEST
            else:
                reason = _check_price_qty_nb(ms, b, rq.price, rq.qty)
            price = rq.price
            if reason == L.REJ_NONE and rq.post_only:
                price = _post_only_price_nb(t, ms, b, side, price, mode)
                if price < 0:
                    reason = L.REJ_POST_ONLY_CROSS
            if reason != L.REJ_NONE:
                n_rep = _reject_nb(reports, n_rep, owner, client_ref, rq.instrument, rq.side, rq.order_ref, reason)
                continue
            ref = ms.meta[L.MM_NEXT_REF]
            ms.meta[L.MM_NEXT_REF] = ref + 1
            n_rep = report_nb(
                reports, n_rep, L.RPT_ACCEPTED, owner, client_ref, rq.instrument, rq.side, ref, 0, price, rq.qty, rq.qty
            )
            n_rep, n_itch = _execute_nb(
                t,
                ms,
                reports,
                n_rep,
                itch,
                n_itch,
                now_ns,
                b,
                side,
                ref,
                owner,
                client_ref,
                price,
                rq.qty,
                rq.tif == L.TIF_IOC,
            )
        elif kind != L.REQ_CANCEL and kind != L.REQ_REPLACE:
            n_rep = _reject_nb(reports, n_rep, owner, client_ref, 0, 0, rq.order_ref, L.REJ_BAD_REQUEST)
        elif o == BL.EMPTY:
            n_rep = _reject_nb(reports, n_rep, owner, client_ref, 0, 0, rq.order_ref, L.REJ_UNKNOWN_ORDER)
        elif kind == L.REQ_CANCEL:
            n_rep, n_itch = cancel_nb(t, ms, reports, n_rep, itch, n_itch, now_ns, o, rq.qty)
        else:
            n_rep, n_itch = _replace_nb(
                t, ms, reports, n_rep, itch, n_itch, now_ns, o, client_ref, rq.price, rq.qty, rq.post_only, mode
            )
    return requests.shape[0], n_rep, n_itch, L.DONE


@njit(cache=True, nogil=True, inline="always")
def _reject_nb(reports, n, owner, client_ref, instrument, side, ref, reason):
    n = report_nb(reports, n, L.RPT_REJECTED, owner, client_ref, instrument, side, ref, 0, 0, 0, 0)
    reports[n - 1].reason = reason
    return n


@njit(cache=True, nogil=True, inline="always")
def _execute_nb(t, ms, reports, n_rep, itch, n_itch, now_ns, b, side, ref, owner, client_ref, price, qty, ioc):
    """Match an accepted order against the contra side, then rest it (A/F) or cancel the rest (IOC, or
    stopped by self-trade prevention)."""
    locate = t.books[b, BL.BK_INSTR]
    ev_side = E.SIDE_BID if side == BL.BID else E.SIDE_ASK
    stp = ms.meta[L.MM_SELF_TRADE] if owner >= 0 else L.SELF_TRADE_ALLOW
    stopped = False
    while qty > 0 and marketable_nb(t, b, side, price):
        lvl = best_level_nb(t, b, 1 - side)
        fill_price = t.levels[lvl, BL.LV_PRICE]
        o = t.levels[lvl, BL.LV_HEAD]
        rest_ref = t.orders[o, BL.OR_ID]
        if stp != L.SELF_TRADE_ALLOW and ms.refs[o, L.RF_OWNER] == owner:
            if stp == L.SELF_TRADE_CANCEL_INCOMING:
                stopped = True
                break
            n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, rest_ref)
            n_rep = report_nb(
                reports,
                n_rep,
                L.RPT_CANCELED,
                owner,
                ms.refs[o, L.RF_CLIENT],
                locate,
                -ev_side,
                rest_ref,
                0,
                fill_price,
                t.orders[o, BL.OR_QTY],
                0,
            )
            reports[n_rep - 1].reason = L.REJ_SELF_TRADE
            remove_order_nb(t, o)
            continue
        fill = min(qty, t.orders[o, BL.OR_QTY])
        match = ms.meta[L.MM_MATCH] + 1
        ms.meta[L.MM_MATCH] = match
        rest_leaves = t.orders[o, BL.OR_QTY] - fill
        n_itch = encode_executed_nb(itch, n_itch, now_ns, locate, rest_ref, fill, match, 0, 0)
        n_rep = report_nb(
            reports,
            n_rep,
            L.RPT_EXECUTED,
            ms.refs[o, L.RF_OWNER],
            ms.refs[o, L.RF_CLIENT],
            locate,
            -ev_side,
            rest_ref,
            0,
            fill_price,
            fill,
            rest_leaves,
        )
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = L.LIQ_ADDED
        reduce_order_nb(t, o, fill)
        qty -= fill
        n_rep = report_nb(
            reports, n_rep, L.RPT_EXECUTED, owner, client_ref, locate, ev_side, ref, 0, fill_price, fill, qty
        )
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = L.LIQ_REMOVED
    if qty > 0:
        if ioc or stopped:
            n_rep = report_nb(reports, n_rep, L.RPT_CANCELED, owner, client_ref, locate, ev_side, ref, 0, price, qty, 0)
            if stopped:
                reports[n_rep - 1].reason = L.REJ_SELF_TRADE
        else:
            slot = hash_slot_nb(t.o_hash, t.orders, BL.OR_ID, ref)
            o = t.meta[BL.M_ORDER_FREE]  # the row add_order_nb takes
            add_order_nb(t, b, side, ref, price, qty, slot)
            ms.refs[o, L.RF_OWNER] = owner
            ms.refs[o, L.RF_CLIENT] = client_ref
            n_itch = encode_add_nb(
                itch,
                n_itch,
                now_ns,
                locate,
                ref,
                ev_side,
                qty,
                ms.symbols[b],
                price,
                ms.mpid_code,
                _mpid_index_nb(ms, owner),
            )
    return n_rep, n_itch


@njit(cache=True, nogil=True, inline="always")
def cancel_nb(t, ms, reports, n_rep, itch, n_itch, now_ns, o, new_qty):
    """Cancel order row ``o`` down to ``new_qty`` shares (0: entirely); X or D on the feed."""
    b = t.orders[o, BL.OR_BOOK]
    locate = t.books[b, BL.BK_INSTR]
    ref = t.orders[o, BL.OR_ID]
    owner, client_ref = ms.refs[o, L.RF_OWNER], ms.refs[o, L.RF_CLIENT]
    ev_side = E.SIDE_BID if t.orders[o, BL.OR_SIDE] == BL.BID else E.SIDE_ASK
    price = t.orders[o, BL.OR_PRICE]
    leaves = t.orders[o, BL.OR_QTY]
    if new_qty < 0:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, ref, L.REJ_BAD_QTY), n_itch
    if new_qty % ms.inst[b, L.IN_LOT] != 0:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, ref, L.REJ_BAD_LOT), n_itch
    cut = leaves - new_qty if new_qty < leaves else 0
    if new_qty == 0:
        n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, ref)
        remove_order_nb(t, o)
    elif cut > 0:
        n_itch = encode_cancel_nb(itch, n_itch, now_ns, locate, ref, cut)
        reduce_order_nb(t, o, cut)
    n_rep = report_nb(
        reports, n_rep, L.RPT_CANCELED, owner, client_ref, locate, ev_side, ref, 0, price, cut, leaves - cut
    )
    return n_rep, n_itch


@njit(cache=True, nogil=True, inline="always")
def _replace_nb(t, ms, reports, n_rep, itch, n_itch, now_ns, o, client_ref, price, qty, post_only, mode):
    """Cancel-replace order row ``o``: a same-price size cut keeps its reference and priority (X on
    the feed); otherwise a new reference at the back of the queue (U), or, when the new price is
    marketable, D then matching as a new order."""
    b = t.orders[o, BL.OR_BOOK]
    locate = t.books[b, BL.BK_INSTR]
    old_ref = t.orders[o, BL.OR_ID]
    owner = ms.refs[o, L.RF_OWNER]
    side = t.orders[o, BL.OR_SIDE]
    ev_side = E.SIDE_BID if side == BL.BID else E.SIDE_ASK
    leaves = t.orders[o, BL.OR_QTY]
    reason = L.REJ_HALTED if ms.inst[b, L.IN_HALTED] else _check_price_qty_nb(ms, b, price, qty)
    if reason == L.REJ_NONE and post_only:
        price = _post_only_price_nb(t, ms, b, side, price, mode)
        if price < 0:
            reason = L.REJ_POST_ONLY_CROSS
    if reason != L.REJ_NONE:
        return _reject_nb(reports, n_rep, owner, client_ref, locate, ev_side, old_ref, reason), n_itch
    if price == t.orders[o, BL.OR_PRICE] and qty <= leaves:
        if qty < leaves:
            n_itch = encode_cancel_nb(itch, n_itch, now_ns, locate, old_ref, leaves - qty)
            reduce_order_nb(t, o, leaves - qty)
        ms.refs[o, L.RF_CLIENT] = client_ref
        n_rep = report_nb(
            reports, n_rep, L.RPT_REPLACED, owner, client_ref, locate, ev_side, old_ref, old_ref, price, qty, qty
        )
        return n_rep, n_itch
    new_ref = ms.meta[L.MM_NEXT_REF]
    ms.meta[L.MM_NEXT_REF] = new_ref + 1
    remove_order_nb(t, o)
    n_rep = report_nb(
        reports, n_rep, L.RPT_REPLACED, owner, client_ref, locate, ev_side, new_ref, old_ref, price, qty, qty
    )
    if marketable_nb(t, b, side, price):
        n_itch = encode_delete_nb(itch, n_itch, now_ns, locate, old_ref)
        return _execute_nb(
            t, ms, reports, n_rep, itch, n_itch, now_ns, b, side, new_ref, owner, client_ref, price, qty, False
        )
    slot = hash_slot_nb(t.o_hash, t.orders, BL.OR_ID, new_ref)
    o = t.meta[BL.M_ORDER_FREE]
    add_order_nb(t, b, side, new_ref, price, qty, slot)
    ms.refs[o, L.RF_OWNER] = owner
    ms.refs[o, L.RF_CLIENT] = client_ref
    n_itch = encode_replace_nb(itch, n_itch, now_ns, locate, old_ref, new_ref, qty, price)
    return n_rep, n_itch
