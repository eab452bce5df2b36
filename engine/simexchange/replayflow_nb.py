"""Compiled kernels of the replay flow (``engine.simexchange.replayflow`` is the Python face).

Recorded market events (``EVENT_DTYPE`` rows, instruments already mapped to the engine's locates and
prices to its 1e-4 units) are applied straight to the matching engine's tables as the orders of one
anonymous "replay" participant (``owner``), next to the sessions' own orders:

- the engine reference of a recorded order is ``REF_BASE + recorded id`` (our sessions' references
  count up from 1, so the two never meet); its ``refs[o, RF_CLIENT]`` holds its *recorded* remaining
  size, which can differ from its book size once our orders have traded with it;
- a recorded order leaves the book when the recording says it is gone (its recorded remaining size
  reaches zero), whatever our orders did to it, so no stale remainder outlives its recorded life.

Per event kind:

- ADD: an aggressor first (it fills OUR resting orders it crosses, best price first, passing over
  recorded ones), then the rest of it rests at its price as the recorded order. Still crossing a
  recorded contra order (the recording crossed itself) it rests anyway, never trades with recorded
  orders, and is counted ``RC_CROSSED``.
- EXECUTE / EXECUTE_PRICE of recorded order X: an aggressor of that size arrived; it fills OUR
  orders priced better than X and those ahead of X in its queue first, then X. X keeps what is left.
  The rest of the aggressor (X smaller than it) is counted ``RC_CLAMPED``.
- CANCEL / DELETE: applied to X clamped to its book size (``RC_CLAMPED`` when cut short).
- REPLACE: the new size is the recorded one less what our orders took from X. A same-id, same-price
  size cut (DBN modify) keeps priority (X on the feed); any other replace loses it: D, then the new
  order enters as an ADD (so it may trade with our orders first) and rests at the back (A).
- TRADE with a side (ITCH P non-displayed trade, DBN T print): fills OUR orders on the passive side at
  the print price or better, up to the print size (they had priority over a hidden order; for DBN the
  recorded resting orders are reduced by the recording's own C records that follow). Recorded orders
  are untouched.
- CLEAR: every recorded order of the instrument leaves the book (our orders stay).
- anything else (status, system events, crosses, DBN fills and "none" records): ``RC_IGNORED``.

An event naming a recorded order that is not in the book (consumed by our orders, or added before the
replayed window) is counted ``RC_MISSING``; one that cannot be applied (bad price or size, a
duplicate id, an unlisted instrument, a size that is not a whole lot) ``RC_DROPPED``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book import layout as BL
from engine.book.book_nb import add_order_nb, has_room_nb, hash_find_nb, hash_slot_nb, reduce_order_nb, tables_nb
from engine.core import events as E
from engine.simexchange import layout as L
from engine.simexchange.matching_nb import borrowed_nb, cancel_nb, marketable_nb, report_nb
from feeds.itch import TIMESTAMP_MAX, encode_add_nb, encode_executed_nb

REF_BASE = np.int64(1 << 62)  # engine reference of recorded order id i: REF_BASE + i

# --- counters (int64[N_RC]) ----------------------------------------------------------------------
RC_EVENTS = 0  # recorded events handled (all kinds)
RC_ADDS = 1
RC_EXECUTIONS = 2  # recorded executions of resting orders
RC_CANCELS = 3  # cancels and deletes
RC_REPLACES = 4
RC_TRADES = 5  # prints with a side (ITCH P, DBN T)
RC_CLEARS = 6
RC_OUR_FILLS = 7  # fills of OUR orders caused by recorded flow
RC_OUR_QTY = 8  # ... and their size
RC_MISSING = 9  # events naming a recorded order no longer (or never) in the book
RC_CLAMPED = 10  # events cut to what was left (or recorded remainders removed)
RC_DROPPED = 11  # events that could not be applied at all
RC_IGNORED = 12  # kinds that do not change the book
RC_CROSSED = 13  # recorded adds resting through a recorded contra order
N_RC = 14
RC_NAMES = (
    "events",
    "adds",
    "executions",
    "cancels",
    "replaces",
    "trades",
    "clears",
    "our_fills",
    "our_filled_qty",
    "missing_orders",
    "clamped",
    "dropped",
    "ignored",
    "crossed_adds",
)


@njit(cache=True, nogil=True, inline="always")
def _eligible_nb(t, ms, b, side, limit, x, owner):
    """The next resting order (side index ``side``) a recorded aggressor limited at ``limit`` fills:
    price-time order over OUR orders and recorded order row ``x`` (EMPTY: none); other recorded orders
    are passed over. EMPTY when none is left at ``limit`` or better."""
    s = 2 * b + side
    start = t.sides[s, BL.SD_START]
    for p in range(start + t.sides[s, BL.SD_LEN] - 1, start - 1, -1):
        lvl = t.arena[p, BL.AR_LEVEL]
        price = t.levels[lvl, BL.LV_PRICE]
        if (side == BL.BID and price < limit) or (side == BL.ASK and price > limit):
            return BL.EMPTY
        o = t.levels[lvl, BL.LV_HEAD]
        while o != BL.EMPTY:
            if o == x or ms.refs[o, L.RF_OWNER] != owner:
                return o
            o = t.orders[o, BL.OR_NEXT]
    return BL.EMPTY


@njit(cache=True, nogil=True)
def _aggress_nb(t, ms, reports, n_rep, itch, n_itch, now, b, side, limit, qty, x, owner, rc):
    """A recorded aggressor of ``qty`` against side index ``side`` up to ``limit`` (see _eligible_nb);
    it stops once it reached ``x``. Returns (reports used, itch used, size not filled)."""
    locate = t.books[b, BL.BK_INSTR]
    ev_side = E.SIDE_BID if side == BL.BID else E.SIDE_ASK
    while qty > 0:
        o = _eligible_nb(t, ms, b, side, limit, x, owner)
        if o == BL.EMPTY:
            break
        fill = min(qty, t.orders[o, BL.OR_QTY])
        price = t.orders[o, BL.OR_PRICE]
        match = ms.meta[L.MM_MATCH] + 1
        ms.meta[L.MM_MATCH] = match
        n_itch = encode_executed_nb(itch, n_itch, now, locate, t.orders[o, BL.OR_ID], fill, match, 0, 0)
        n_rep = report_nb(
            reports,
            n_rep,
            L.RPT_EXECUTED,
            ms.refs[o, L.RF_OWNER],
            ms.refs[o, L.RF_CLIENT],
            locate,
            ev_side,
            t.orders[o, BL.OR_ID],
            0,
            price,
            fill,
            t.orders[o, BL.OR_QTY] - fill,
        )
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = L.LIQ_ADDED
        qty -= fill
        n_rep = report_nb(reports, n_rep, L.RPT_EXECUTED, owner, 0, locate, -ev_side, 0, 0, price, fill, qty)
        reports[n_rep - 1].match_number = match
        reports[n_rep - 1].liquidity = L.LIQ_REMOVED
        reached = o == x
        if not reached:
            rc[RC_OUR_FILLS] += 1
            rc[RC_OUR_QTY] += fill
        reduce_order_nb(t, o, fill)
        if reached:
            break
    return n_rep, n_itch, qty


@njit(cache=True, nogil=True)
def _enter_nb(t, ms, reports, n_rep, itch, n_itch, now, b, ev_side, ref, price, qty, recorded, owner, rc):
    """A recorded order arrives: it trades with OUR orders it crosses, then rests (A) as ``ref``."""
    side = BL.BID if ev_side == E.SIDE_BID else BL.ASK
    n_rep, n_itch, qty = _aggress_nb(
        t, ms, reports, n_rep, itch, n_itch, now, b, 1 - side, price, qty, BL.EMPTY, owner, rc
    )
    if qty > 0:
        if marketable_nb(t, b, side, price):
            rc[RC_CROSSED] += 1
        slot = hash_slot_nb(t.o_hash, t.orders, BL.OR_ID, ref)
        o = t.meta[BL.M_ORDER_FREE]  # the row add_order_nb takes
        add_order_nb(t, b, side, ref, price, qty, slot)
        ms.refs[o, L.RF_OWNER] = owner
        ms.refs[o, L.RF_CLIENT] = recorded
        n_itch = encode_add_nb(
            itch, n_itch, now, t.books[b, BL.BK_INSTR], ref, ev_side, qty, ms.symbols[b], price, ms.mpid_code, -1
        )
    return n_rep, n_itch


@njit(cache=True, nogil=True)
def _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, new_qty, recorded, rc):
    """Cancel recorded order row ``o`` down to ``new_qty`` (0: delete) and note its recorded size;
    a size that is not a whole lot is dropped (the engine rejects it)."""
    n_rep, n_itch = cancel_nb(t, ms, reports, n_rep, itch, n_itch, now, o, new_qty)
    if reports[n_rep - 1].kind == L.RPT_REJECTED:
        rc[RC_DROPPED] += 1
    elif new_qty > 0:
        ms.refs[o, L.RF_CLIENT] = recorded
    return n_rep, n_itch


@njit(cache=True, nogil=True)
def clear_owner_nb(st, ms, b, owner, now, reports, n_rep, itch, n_itch):
    """Delete every order of ``owner`` in book row ``b`` (D each); room for one report and one D per
    order of the book is the caller's."""
    for o in range(st.orders.shape[0]):
        live = (
            st.orders[o, BL.OR_LEVEL] != BL.EMPTY
            and hash_find_nb(st.o_hash, st.orders, BL.OR_ID, st.orders[o, BL.OR_ID]) == o
        )
        if live and st.orders[o, BL.OR_BOOK] == b and ms.refs[o, L.RF_OWNER] == owner:
            n_rep, n_itch = cancel_nb(st, ms, reports, n_rep, itch, n_itch, now, o, 0)
    return n_rep, n_itch


@njit(cache=True, nogil=True)
def _on_recorded_nb(t, ms, reports, n_rep, itch, n_itch, now, b, ev, owner, rc):
    """A cancel, delete, replace or execution of a recorded order (see the module notes)."""
    kind, qty = ev.kind, ev.qty
    ref = REF_BASE + np.int64(ev.order_id)
    o = hash_find_nb(t.o_hash, t.orders, BL.OR_ID, ref)
    if o == BL.EMPTY or ms.refs[o, L.RF_OWNER] != owner or t.orders[o, BL.OR_BOOK] != b:
        rc[RC_MISSING] += 1
        return n_rep, n_itch
    left = t.orders[o, BL.OR_QTY]
    recorded = ms.refs[o, L.RF_CLIENT]
    if kind == E.KIND_DELETE:
        rc[RC_CANCELS] += 1
        return _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, 0, 0, rc)
    if kind == E.KIND_CANCEL:
        rc[RC_CANCELS] += 1
        new_qty = max(left - qty, 0) if recorded > qty else 0
        if new_qty != left - qty:
            rc[RC_CLAMPED] += 1  # more than is left, or its recorded life ends with a remainder
        return _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, new_qty, recorded - qty, rc)
    if kind == E.KIND_REPLACE:
        rc[RC_REPLACES] += 1
        new_id = np.int64(ev.new_order_id)
        new_ref = REF_BASE + new_id
        if (
            new_id < 0
            or new_id >= REF_BASE
            or (new_ref != ref and hash_find_nb(t.o_hash, t.orders, BL.OR_ID, new_ref) != BL.EMPTY)
        ):
            rc[RC_DROPPED] += 1
            return n_rep, n_itch
        actual = qty - (recorded - left)  # what our orders took from it stays taken
        if qty > 0 and actual <= 0:
            rc[RC_CLAMPED] += 1
        if new_ref == ref and ev.price == t.orders[o, BL.OR_PRICE] and qty <= recorded:  # a size cut keeps priority
            return _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, max(actual, 0), qty, rc)
        ev_side = E.SIDE_BID if t.orders[o, BL.OR_SIDE] == BL.BID else E.SIDE_ASK
        n_rep, n_itch = _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, 0, 0, rc)
        if actual > 0:
            n_rep, n_itch = _enter_nb(
                t, ms, reports, n_rep, itch, n_itch, now, b, ev_side, new_ref, ev.price, actual, qty, owner, rc
            )
        return n_rep, n_itch
    rc[RC_EXECUTIONS] += 1  # KIND_EXECUTE, KIND_EXECUTE_PRICE: X's price limits the aggressor
    n_rep, n_itch, rest = _aggress_nb(
        t,
        ms,
        reports,
        n_rep,
        itch,
        n_itch,
        now,
        b,
        t.orders[o, BL.OR_SIDE],
        t.orders[o, BL.OR_PRICE],
        qty,
        o,
        owner,
        rc,
    )
    if rest > 0:
        rc[RC_CLAMPED] += 1  # X had less left than the recorded execution
    if hash_find_nb(t.o_hash, t.orders, BL.OR_ID, ref) != o:  # X is gone
        return n_rep, n_itch
    if recorded > qty:
        ms.refs[o, L.RF_CLIENT] = recorded - qty
        return n_rep, n_itch
    rc[RC_CLAMPED] += 1  # its recorded life is over: the remainder our orders left it goes too
    return _cut_nb(t, ms, reports, n_rep, itch, n_itch, now, o, 0, 0, rc)


@njit(cache=True, nogil=True, inline="always")
def _valid_order_nb(ev):
    """Whether an event's price and size can be an order of the engine (ITCH Price(4), u32 shares)."""
    return 0 < ev.price <= L.PRICE_MAX and 0 < ev.qty <= L.QTY_MAX


@njit(cache=True, nogil=True, inline="always")
def _bad_size_nb(ev):
    """Whether a cancel, delete, replace or execution carries a size (or a replace a price) it cannot have."""
    if ev.qty < 0 or ev.qty > L.QTY_MAX:
        return True
    if ev.kind == E.KIND_REPLACE:
        return ev.qty > 0 and not _valid_order_nb(ev)
    return ev.qty == 0 and ev.kind != E.KIND_DELETE


@njit(cache=True, nogil=True)
def replay_nb(st, ms, events, start, end, until_ns, stamp_ns, day_ns, owner, reports, n_rep, itch, n_itch, rc):
    """Apply ``events[start:end]`` up to the first one recorded (``ts_local_ns``) after ``until_ns``; returns ``(index
    reached, reports used, itch bytes used, status)`` with the statuses of ``submit_nb``.

    ITCH out is stamped ``stamp_ns``, or each event's own time less ``day_ns`` when it is negative.
    """
    t = tables_nb(st)
    ms = borrowed_nb(ms)
    for i in range(start, end):
        ev = events[i]
        if ev.ts_local_ns > until_ns:
            return i, n_rep, n_itch, L.DONE
        if not has_room_nb(t):
            return i, n_rep, n_itch, L.NEED_STATE
        b = hash_find_nb(t.i_hash, t.books, BL.BK_INSTR, np.int64(ev.instrument))
        depth = t.books[b, BL.BK_ORDERS] if b != BL.EMPTY else 0
        if n_rep + 3 + 2 * depth > reports.shape[0]:
            return i, n_rep, n_itch, L.NEED_REPORTS
        if n_itch + 2 * L.RECORD_MAX + L.RECORD_E * depth > itch.shape[0]:
            return i, n_rep, n_itch, L.NEED_ITCH
        rc[RC_EVENTS] += 1
        now = stamp_ns if stamp_ns >= 0 else min(max(ev.ts_local_ns - day_ns, 0), TIMESTAMP_MAX)
        kind = ev.kind
        recorded_order = kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE, E.KIND_CANCEL, E.KIND_DELETE, E.KIND_REPLACE)
        trade = kind == E.KIND_TRADE and (ev.side == E.SIDE_BID or ev.side == E.SIDE_ASK)
        if not (recorded_order or trade or kind in (E.KIND_ADD, E.KIND_CLEAR)):
            rc[RC_IGNORED] += 1  # status, system events, crosses (ITCH Q), DBN fills and none records
            continue
        rid = np.int64(ev.order_id)
        if b == BL.EMPTY or (kind != E.KIND_CLEAR and not trade and (rid < 0 or rid >= REF_BASE)):
            rc[RC_DROPPED] += 1
            continue
        if kind == E.KIND_CLEAR:
            rc[RC_CLEARS] += 1
            n_rep, n_itch = clear_owner_nb(st, ms, b, owner, now, reports, n_rep, itch, n_itch)
        elif trade:
            rc[RC_TRADES] += 1
            if not _valid_order_nb(ev):
                rc[RC_DROPPED] += 1
                continue
            n_rep, n_itch, _ = _aggress_nb(
                t,
                ms,
                reports,
                n_rep,
                itch,
                n_itch,
                now,
                b,
                BL.ASK if ev.side == E.SIDE_BID else BL.BID,
                ev.price,
                ev.qty,
                BL.EMPTY,
                owner,
                rc,
            )
        elif kind == E.KIND_ADD:
            rc[RC_ADDS] += 1
            ref = REF_BASE + rid
            bad_side = ev.side != E.SIDE_BID and ev.side != E.SIDE_ASK
            if bad_side or not _valid_order_nb(ev) or hash_find_nb(t.o_hash, t.orders, BL.OR_ID, ref) != BL.EMPTY:
                rc[RC_DROPPED] += 1
                continue
            n_rep, n_itch = _enter_nb(
                t, ms, reports, n_rep, itch, n_itch, now, b, ev.side, ref, ev.price, ev.qty, ev.qty, owner, rc
            )
        elif _bad_size_nb(ev):
            rc[RC_DROPPED] += 1
        else:
            n_rep, n_itch = _on_recorded_nb(t, ms, reports, n_rep, itch, n_itch, now, b, ev, owner, rc)
    return end, n_rep, n_itch, L.DONE
