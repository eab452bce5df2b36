"""The backtester's compiled core: two timelines, two books, a simulated exchange and the trading core.

``run_nb`` replays events through

* the **exchange** book (events in exchange-timestamp order) where our orders rest and fill: on L3
  data each order of ours is a real row of that book (a *phantom* with a negative id), so its queue
  position is exact FIFO; on L2 data its place in the queue is estimated by a queue model. The
  exchange keeps its own record of our orders (``xo``) and learns of one only when its request
  arrives;
* the **local** book (events in local-timestamp order: what our feed handler would have seen),
  which is all the strategy sees;
* the **trading core** (``engine.trading.core``), the same compiled OMS, wake sequence and risk checks
  the live node runs: every ``interval_ns`` of local time (or after every local batch when 0) it fills
  the view, calls the strategy, plans, checks each order against the risk limits and records it;
  what it sends (enter, replace, cancel) reaches the exchange after the entry latency, and the
  exchange's answers (OUCH Accepted, Replaced, Canceled, Executed, Rejected records, as the live node
  receives them) reach the core after the response latency, where positions, cash and fees change.
  Requests and responses are delivered in the order they were sent, as on an order-entry session.

Everything lives in preallocated arrays (the :class:`BacktestState` tuple); when a table is full
``run_nb`` returns a code saying which, ``engine.backtest.backtest`` doubles it and calls again.

Fill rules (no fill without a trade or a cross at our price; market impact is not modelled):

* L3: an execution of a resting order that is *behind* ours in the FIFO fills ours; an execution
  or a trade print at a price worse than ours fills ours; a trade print at our price fills ours
  when it is larger than the quantity ahead of us; an order arriving across our price fills ours.
* L2: hftbacktest's semantics: a trade at our price advances the queue (``front -= qty``), depth
  changes at our price shrink the queue ahead (risk-averse: never below the level's size; power/log:
  the probabilistic split of a decrease between the orders ahead and behind), the order fills when
  the quantity ahead falls below zero; trades through our price and a touch crossing it fill it.
* Without partial fills an order fills whole the first time any of that reaches it.
* A replace takes the old order out and puts the new one at the back of its price's queue.

Speed: on L2 data the two books are dense depth indexed by price rank (``engine.book.depth``,
CF_DENSE), and the local book the strategy reads holds only the best DEPTH levels, written at a
wake; the exchange side tests an event against the price range of our resting orders (MI_BID_LO ..
MI_ASK_HI) before it calls anything; the helpers of a wake are inlined, since a call that passes the
whole state costs more than most of them do.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.backtest import layout as L
from engine.book import layout as BL
from engine.book.book_nb import (
    add_order_nb,
    apply_event_nb,
    best_level_nb,
    check_crossed_nb,
    clear_book_nb,
    has_room_nb,
    hash_find_nb,
    hash_slot_nb,
    level_for_nb,
    open_book_nb,
    queue_ahead_nb,
    reduce_order_nb,
    remove_order_nb,
    set_level_nb,
    tables_nb,
)
from engine.book.depth import depth_apply_nb, depth_best_nb, depth_qty_nb, depth_top_nb
from engine.core import events as E
from engine.core.borrow import borrow, borrow_all
from engine.core.units import NEVER
from engine.trading import layout as TL
from engine.trading.core import mark_nb, respond_nb, wake_nb
from engine.trading.oms import K_ACCEPTED, K_CANCELED, K_EXECUTED, K_REJECTED, K_REPLACED
from engine.trading.view import mid_nb, trade_stats_nb
from strategies.api import P_INTERVAL_NS

MAKER_FLAG, TAKER_FLAG = ord("A"), ord("R")  # OUCH liquidity flags: added, removed


# --- small helpers ------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _side_index(side):
    return BL.BID if side == E.SIDE_BID else BL.ASK


@njit(cache=True, nogil=True, inline="always")
def _better(side, ours, theirs):
    """Whether our price is strictly better than ``theirs`` on ``side`` (higher bid, lower ask)."""
    return ours > theirs if side == E.SIDE_BID else ours < theirs


@njit(cache=True, nogil=True, inline="always")
def _round_half_away(x):
    return np.floor(x + 0.5) if x >= 0 else -np.floor(-x + 0.5)


@njit(cache=True, nogil=True)
def seed_nb(seed):
    """Seed the generator the lognormal latency draws from (Numba keeps its own)."""
    np.random.seed(seed)


@njit(cache=True, nogil=True, inline="always")
def _latency_nb(cf, cff, lat, now, col):
    """Entry (col 1) or response (col 2) latency of a message sent at ``now``."""
    mode = cf[L.CF_LATENCY]
    if mode == L.LAT_CONSTANT:
        return cf[L.CF_ENTRY_NS] if col == 1 else cf[L.CF_RESP_NS]
    if mode == L.LAT_LOGNORMAL:
        median = cf[L.CF_ENTRY_NS] if col == 1 else cf[L.CF_RESP_NS]
        return np.int64(median * np.exp(cff[L.CFF_SIGMA] * np.random.standard_normal()))
    n = lat.shape[0]  # LAT_TABLE: interpolate between the recorded latencies around `now`
    if now <= lat[0, 0]:
        return lat[0, col]
    if now >= lat[n - 1, 0]:
        return lat[n - 1, col]
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if lat[mid, 0] <= now:
            lo = mid
        else:
            hi = mid
    w = (now - lat[lo, 0]) / max(1, lat[hi, 0] - lat[lo, 0])
    return np.int64(lat[lo, col] + w * (lat[hi, col] - lat[lo, col]))


@njit(cache=True, nogil=True, inline="always")
def _push_nb(bt, box, n, at_slot, now, col, kind, order_id, side, price, qty):
    """Queue a message sent at ``now``, due after the latency of ``col`` (1 entry, 2 response) and never before
    the one sent ahead of it (``mi[at_slot]``: a session delivers in order); returns its row."""
    mi = bt.mi
    at = max(now + _latency_nb(bt.cf, bt.cff, bt.lat, now, col), mi[at_slot])
    mi[at_slot] = at
    m = box[n]
    m[L.MS_AT] = at
    m[L.MS_KIND] = kind
    m[L.MS_ID] = order_id
    m[L.MS_SIDE] = side
    m[L.MS_PRICE] = price
    m[L.MS_QTY] = qty
    m[L.MS_OLD_ID] = 0
    m[L.MS_MAKER] = 0
    m[L.MS_EXCH_NS] = now
    m[L.MS_REF] = 0
    m[L.MS_MATCH] = 0
    return m


@njit(cache=True, nogil=True, inline="always")
def _pop_nb(box, n):
    """Remove the first message keeping the others in order; returns the new count."""
    for j in range(n - 1):
        for c in range(L.N_MS):
            box[j, c] = box[j + 1, c]
    return n - 1


@njit(cache=True, nogil=True, inline="always")
def _local_ts(ev, cf):
    return ev.ts_local_ns if cf[L.CF_FEED_NS] < 0 else ev.ts_exch_ns + cf[L.CF_FEED_NS]


@njit(cache=True, nogil=True, inline="always")
def _level_qty_nb(bt, xt, b, side_index, price):
    """Lots at ``price`` on a side of the exchange book (its depth under CF_DENSE, else book ``b``)."""
    if bt.cf[L.CF_DENSE]:
        return depth_qty_nb(bt.xd, bt.dprice, side_index, price)
    lvl = level_for_nb(xt, b, side_index, price, False)
    return 0 if lvl == BL.EMPTY else xt.levels[lvl, BL.LV_QTY]


@njit(cache=True, nogil=True, inline="always")
def _touch_nb(bt, xt, b, side_index):
    """(price, lots) of the best level on a side of the exchange book; lots 0 when that side is empty."""
    if bt.cf[L.CF_DENSE]:
        r = depth_best_nb(bt.xdm, side_index)
        if r == BL.EMPTY:
            return np.int64(0), np.int64(0)
        return bt.dprice[r], bt.xd[side_index, r, 0]
    lvl = best_level_nb(xt, b, side_index)
    if lvl == BL.EMPTY:
        return np.int64(0), np.int64(0)
    return xt.levels[lvl, BL.LV_PRICE], xt.levels[lvl, BL.LV_QTY]


@njit(cache=True, nogil=True)
def _resting_range_nb(bt):
    """Recompute the price range of our resting orders on each side (MI_BID_LO .. MI_ASK_HI), which lets
    the exchange side pass over events that cannot reach them."""
    xo, mi = bt.xo, bt.mi
    mi[L.MI_BID_LO] = mi[L.MI_ASK_LO] = NEVER
    mi[L.MI_BID_HI] = mi[L.MI_ASK_HI] = -NEVER
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_RESTING:
            lo = L.MI_BID_LO if xo[s, L.XO_SIDE] == E.SIDE_BID else L.MI_ASK_LO
            price = xo[s, L.XO_PRICE]
            mi[lo] = min(mi[lo], price)
            mi[lo + 1] = max(mi[lo + 1], price)


# --- the exchange side --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _respond_nb(bt, now, kind, order_id, side, price, qty):
    """Queue an answer for the trading core, due after the response latency; returns its row."""
    mi = bt.mi
    m = _push_nb(bt, bt.rsp, mi[L.MI_NRSP], L.MI_RSP_AT, now, 2, kind, order_id, side, price, qty)
    mi[L.MI_NRSP] += 1
    return m


@njit(cache=True, nogil=True)
def _take_out_nb(bt, xt, slot):
    """Order ``slot`` leaves the exchange (filled, canceled or replaced): its phantom too, and its row is free."""
    xo = bt.xo
    if xo[slot, L.XO_ROW] != BL.EMPTY:
        remove_order_nb(xt, xo[slot, L.XO_ROW])
        xo[slot, L.XO_ROW] = BL.EMPTY
    xo[slot, L.XO_STATE] = L.EX_FREE
    bt.mi[L.MI_RESTING] -= 1
    _resting_range_nb(bt)


@njit(cache=True, nogil=True)
def _exch_fill_nb(bt, xt, now, slot, qty, price, maker):
    """Our order ``slot`` trades ``qty`` lots (at most what it has left) at ``price``: an Executed answer."""
    xo = bt.xo
    qty = min(qty, xo[slot, L.XO_LEAVES])
    if qty <= 0:
        return
    xo[slot, L.XO_LEAVES] -= qty
    if xo[slot, L.XO_LEAVES] == 0:
        _take_out_nb(bt, xt, slot)
    elif xo[slot, L.XO_ROW] != BL.EMPTY:
        reduce_order_nb(xt, xo[slot, L.XO_ROW], qty)
    bt.mi[L.MI_MATCH] += 1
    m = _respond_nb(bt, now, K_EXECUTED, xo[slot, L.XO_ID], xo[slot, L.XO_SIDE], price, qty)
    m[L.MS_MAKER] = maker
    m[L.MS_REF] = xo[slot, L.XO_REF]
    m[L.MS_MATCH] = bt.mi[L.MI_MATCH]


@njit(cache=True, nogil=True, inline="always")
def _fill_amount(bt, slot, available):
    """Lots an order fills when ``available`` lots reach it: all it has, or with partial fills at most that."""
    leaves = bt.xo[slot, L.XO_LEAVES]
    return min(leaves, available) if bt.cf[L.CF_PARTIAL] else leaves


@njit(cache=True, nogil=True)
def _fill_crossed_nb(bt, xt, b, now, side):
    """Fill our resting orders of ``side`` that the other side's touch has reached or crossed."""
    touch, touch_qty = _touch_nb(bt, xt, b, BL.ASK if side == E.SIDE_BID else BL.BID)
    if touch_qty == 0:
        return
    xo = bt.xo
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_RESTING and xo[s, L.XO_SIDE] == side:
            price = xo[s, L.XO_PRICE]
            if (side == E.SIDE_BID and price >= touch) or (side == E.SIDE_ASK and price <= touch):
                _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, touch_qty), price, 1)


@njit(cache=True, nogil=True)
def _queue_depth_nb(bt, slot, prev_qty, new_qty):
    """Depth at our price went ``prev_qty`` -> ``new_qty`` lots: update the estimate of what is ahead."""
    q = bt.queue
    model = bt.cf[L.CF_QUEUE]
    front = q[slot, 0]
    if model == L.QM_RISK_AVERSE:
        q[slot, 0] = min(front, new_qty)
        return
    change = prev_qty - new_qty - q[slot, 1]  # what trades already took off is not counted twice
    q[slot, 1] = 0.0
    if change < 0:
        q[slot, 0] = min(front, new_qty)
        return
    back = prev_qty - front
    if model == L.QM_POWER:
        n = bt.cff[L.CFF_QUEUE_N]
        fb, ff = max(back, 0.0) ** n, max(front, 0.0) ** n
    else:
        fb, ff = np.log(1.0 + max(back, 0.0)), np.log(1.0 + max(front, 0.0))
    prob = fb / (fb + ff) if fb + ff > 0 else 1.0
    if not np.isfinite(prob):
        prob = 1.0
    estimate = front - (1.0 - prob) * change + min(back - prob * change, 0.0)
    q[slot, 0] = min(estimate, new_qty)


@njit(cache=True, nogil=True)
def _trade_nb(bt, xt, ev, now, l3):
    """A trade print: it fills our orders it went through; at our price, what it took beyond the
    quantity ahead of us (exact on L3, the queue model's estimate on L2) reaches us."""
    xo = bt.xo
    passive = -ev.side
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] != L.EX_RESTING or xo[s, L.XO_SIDE] != passive:
            continue
        price = xo[s, L.XO_PRICE]
        if _better(passive, price, ev.price):
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, ev.qty), price, 1)
        elif price == ev.price:
            if l3:
                beyond = ev.qty - queue_ahead_nb(xt, xo[s, L.XO_ROW])[1]
            else:
                bt.queue[s, 0] -= ev.qty
                bt.queue[s, 1] += ev.qty
                beyond = np.int64(-_round_half_away(bt.queue[s, 0]))
            if beyond > 0:
                _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, beyond), price, 1)
                if not l3:
                    bt.queue[s, 0] = 0.0


@njit(cache=True, nogil=True)
def _l2_before_nb(bt, xt, ev, b, now):
    """L2 data, before the book takes ``ev``: trades fill or advance our queues; returns the level's old size."""
    if ev.kind == E.KIND_TRADE:
        _trade_nb(bt, xt, ev, now, False)
        return 0
    if ev.kind == E.KIND_LEVEL:
        return _level_qty_nb(bt, xt, b, _side_index(ev.side), ev.price)
    return 0


@njit(cache=True, nogil=True, inline="always")
def _queue_moves_nb(bt, side, price, prev, qty):
    """Depth at ``price`` on ``side`` went ``prev`` -> ``qty`` lots: every resting order of ours there re-estimates."""
    xo = bt.xo
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_RESTING and xo[s, L.XO_SIDE] == side and xo[s, L.XO_PRICE] == price:
            _queue_depth_nb(bt, s, np.float64(prev), np.float64(qty))


@njit(cache=True, nogil=True)
def _l2_after_nb(bt, xt, ev, b, now, prev):
    """L2 data, after the book took a level change: our queue estimates, then fills the new touch crossed."""
    if ev.kind != E.KIND_LEVEL:
        return
    _queue_moves_nb(bt, ev.side, ev.price, prev, ev.qty)
    _fill_crossed_nb(bt, xt, b, now, -ev.side)


@njit(cache=True, nogil=True, inline="always")
def _dense_exch_nb(bt, xt, ev, rank, now):
    """CF_DENSE: one event of our instrument (its depth row ``rank``) at the exchange. ``_l2_before_nb``,
    the depth update and ``_l2_after_nb``, with the work skipped that cannot change anything: the old
    size of a level where none of our orders rests, and the cross check when the new touch does not
    reach them."""
    mi = bt.mi
    resting = mi[L.MI_RESTING] > 0
    kind = ev.kind
    if kind == E.KIND_TRADE:
        if resting and _reaches_nb(mi, -ev.side, ev.price):
            _trade_nb(bt, xt, ev, now, False)
        return
    side = ev.side
    if kind != E.KIND_LEVEL or not resting or (side != E.SIDE_BID and side != E.SIDE_ASK):
        depth_apply_nb(bt.xd, bt.xdm, bt.dprice, ev, rank)
        return
    lo = L.MI_BID_LO if side == E.SIDE_BID else L.MI_ASK_LO
    ours = mi[lo] <= ev.price <= mi[lo + 1]  # a resting order of ours at this price is possible
    si = _side_index(side)
    prev = bt.xd[si, rank, 0] if ours and rank != BL.EMPTY else 0
    depth_apply_nb(bt.xd, bt.xdm, bt.dprice, ev, rank)
    if ours:
        _queue_moves_nb(bt, side, ev.price, prev, ev.qty)
    if _crossed_nb(bt, xt, BL.EMPTY, -side):  # the touch of this side reaches our orders on the other
        _fill_crossed_nb(bt, xt, BL.EMPTY, now, -side)


@njit(cache=True, nogil=True, inline="always")
def _reaches_nb(mi, side, price):
    """Whether any resting order of ours on ``side`` is at ``price`` or better (MI_BID_LO .. MI_ASK_HI)."""
    return mi[L.MI_BID_HI] >= price if side == E.SIDE_BID else mi[L.MI_ASK_LO] <= price


@njit(cache=True, nogil=True)
def _l3_execute_nb(bt, xt, o, qty, now):
    """L3 data, before the book takes an execution of ``qty`` from order row ``o``: the phantoms ahead of
    it and our orders at better prices would have traded first."""
    xo = bt.xo
    side = E.SIDE_BID if xt.orders[o, BL.OR_SIDE] == BL.BID else E.SIDE_ASK
    price = xt.orders[o, BL.OR_PRICE]
    p = xt.orders[o, BL.OR_PREV]
    while p != BL.EMPTY:  # phantoms ahead of the executed order would have traded first
        pid = xt.orders[p, BL.OR_ID]
        p = xt.orders[p, BL.OR_PREV]
        if pid < 0:
            s = -pid - 1
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, qty), xo[s, L.XO_PRICE], 1)
    for s in range(xo.shape[0]):  # an execution at a worse price went through ours
        if xo[s, L.XO_STATE] == L.EX_RESTING and xo[s, L.XO_SIDE] == side and _better(side, xo[s, L.XO_PRICE], price):
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, qty), xo[s, L.XO_PRICE], 1)


@njit(cache=True, nogil=True, inline="always")
def _l3_before_nb(bt, xt, ev, now):
    """L3 data, before the book takes ``ev``: executions and prints that reach our phantom orders fill them.

    Inlined: most events cannot reach our orders, and are passed over without a call."""
    kind = ev.kind
    if kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE):
        o = hash_find_nb(xt.o_hash, xt.orders, BL.OR_ID, np.int64(ev.order_id))
        if o != BL.EMPTY and _reaches_nb(
            bt.mi, E.SIDE_BID if xt.orders[o, BL.OR_SIDE] == BL.BID else E.SIDE_ASK, xt.orders[o, BL.OR_PRICE]
        ):
            _l3_execute_nb(bt, xt, o, ev.qty, now)
    elif kind == E.KIND_TRADE and _reaches_nb(bt.mi, -ev.side, ev.price):
        _trade_nb(bt, xt, ev, now, True)


@njit(cache=True, nogil=True, inline="always")
def _crossed_nb(bt, xt, b, side):
    """Whether the other side's touch reaches a resting order of ours on ``side`` (``_fill_crossed_nb`` has work)."""
    touch, touch_qty = _touch_nb(bt, xt, b, BL.ASK if side == E.SIDE_BID else BL.BID)
    return touch_qty > 0 and _reaches_nb(bt.mi, side, touch)


@njit(cache=True, nogil=True, inline="always")
def _l3_after_nb(bt, xt, ev, b, now):
    """L3 data, after the book took ``ev``: an order that arrived across our price would have traded with us."""
    kind = ev.kind
    if kind in (E.KIND_ADD, E.KIND_REPLACE, E.KIND_LEVEL):
        if _crossed_nb(bt, xt, b, E.SIDE_BID):
            _fill_crossed_nb(bt, xt, b, now, E.SIDE_BID)
        if _crossed_nb(bt, xt, b, E.SIDE_ASK):
            _fill_crossed_nb(bt, xt, b, now, E.SIDE_ASK)


@njit(cache=True, nogil=True)
def _resting_slot_nb(xo, order_id):
    """The exchange's row of our resting order ``order_id``, or -1."""
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_RESTING and xo[s, L.XO_ID] == order_id:
            return s
    return -1


@njit(cache=True, nogil=True)
def _place_nb(bt, xt, b, now, m, kind):
    """Put the order of request ``m`` on the book and answer it with ``kind`` (Accepted, or Replaced with the
    replaced UserRefNum); a marketable one (GTC) trades at the touch, all of it (no book walk)."""
    xo = bt.xo
    slot = -1
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_FREE:
            slot = s
            break
    order_id, side, price, qty = m[L.MS_ID], m[L.MS_SIDE], m[L.MS_PRICE], m[L.MS_QTY]
    if slot < 0:  # (the core never has more working orders than this table has rows)
        _respond_nb(bt, now, K_REJECTED, order_id, side, price, 0)
        return
    bt.mi[L.MI_REF] += 1
    xo[slot, L.XO_ID] = order_id
    xo[slot, L.XO_SIDE] = side
    xo[slot, L.XO_PRICE] = price
    xo[slot, L.XO_LEAVES] = qty
    xo[slot, L.XO_STATE] = L.EX_RESTING
    xo[slot, L.XO_ROW] = BL.EMPTY
    xo[slot, L.XO_REF] = bt.mi[L.MI_REF]
    bt.mi[L.MI_RESTING] += 1
    answer = _respond_nb(bt, now, kind, order_id, side, price, qty)
    answer[L.MS_REF] = bt.mi[L.MI_REF]
    answer[L.MS_OLD_ID] = m[L.MS_OLD_ID]
    touch, touch_qty = _touch_nb(bt, xt, b, BL.ASK if side == E.SIDE_BID else BL.BID)
    if touch_qty > 0 and ((side == E.SIDE_BID and price >= touch) or (side == E.SIDE_ASK and price <= touch)):
        _exch_fill_nb(bt, xt, now, slot, qty, touch, 0)
        return
    _resting_range_nb(bt)
    if bt.cf[L.CF_L3]:
        oid = -(slot + 1)
        hslot = hash_slot_nb(xt.o_hash, xt.orders, BL.OR_ID, oid)
        row = xt.meta[BL.M_ORDER_FREE]  # the row add_order_nb is about to take
        add_order_nb(xt, b, _side_index(side), oid, price, qty, hslot)
        xo[slot, L.XO_ROW] = row
        check_crossed_nb(xt, b)
    else:
        bt.queue[slot, 0] = _level_qty_nb(bt, xt, b, _side_index(side), price)
        bt.queue[slot, 1] = 0.0


@njit(cache=True, nogil=True)
def _arrive_nb(bt, xt, now, m):
    """Request ``m`` of ours reaches the exchange: a cancel, a new order or a replace."""
    kind = m[L.MS_KIND]
    if kind == L.RQ_CANCEL:
        s = _resting_slot_nb(bt.xo, m[L.MS_ID])
        if s < 0:  # filled or gone already: the cancel is refused
            _respond_nb(bt, now, K_REJECTED, m[L.MS_ID], m[L.MS_SIDE], 0, 0)
            return
        leaves = bt.xo[s, L.XO_LEAVES]
        _take_out_nb(bt, xt, s)
        _respond_nb(bt, now, K_CANCELED, m[L.MS_ID], m[L.MS_SIDE], 0, leaves)
        return
    side, price = m[L.MS_SIDE], m[L.MS_PRICE]
    old = _resting_slot_nb(bt.xo, m[L.MS_OLD_ID]) if kind == L.RQ_REPLACE else -1
    b = open_book_nb(xt, bt.cf[L.CF_INSTRUMENT])
    touch, touch_qty = _touch_nb(bt, xt, b, BL.ASK if side == E.SIDE_BID else BL.BID)
    crosses = touch_qty > 0 and ((side == E.SIDE_BID and price >= touch) or (side == E.SIDE_ASK and price <= touch))
    if (kind == L.RQ_REPLACE and old < 0) or (crosses and not bt.cf[L.CF_GTC]):
        # the order to replace is gone, or post-only and it would take liquidity: refused (a refused replace
        # leaves the old order as it was)
        _respond_nb(bt, now, K_REJECTED, m[L.MS_ID], side, price, 0)
        return
    if old >= 0:
        _take_out_nb(bt, xt, old)
    _place_nb(bt, xt, b, now, m, K_REPLACED if old >= 0 else K_ACCEPTED)


# --- the trading core's side ---------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _receive_nb(bt, now):
    """The first response reaches the trading core as the OUCH record the live node would read; an execution
    is also written to the fills table."""
    m = bt.rsp[0]
    r = bt.record[0]
    r.timestamp_ns = m[L.MS_EXCH_NS]
    r.kind = m[L.MS_KIND]
    r.user_ref_num = m[L.MS_ID]
    r.orig_user_ref_num = m[L.MS_OLD_ID]
    r.order_reference_number = m[L.MS_REF]
    r.match_number = m[L.MS_MATCH]
    r.qty = m[L.MS_QTY]  # lots: the core's OUCH quantity per lot (IN_LOT) is 1 here
    r.price = m[L.MS_PRICE]
    r.liquidity_flag = MAKER_FLAG if m[L.MS_MAKER] else TAKER_FLAG
    money = bt.money
    fees = money[0, TL.MN_FEES]
    _, filled = respond_nb(bt, r)
    if filled == 0:
        return
    mi, mf = bt.mi, bt.mf
    units = abs(filled) * money[0, TL.MN_LOT]
    n = mi[L.MI_NFILL]
    f = bt.fills
    f[n, L.FL_LOCAL_NS] = now
    f[n, L.FL_EXCH_NS] = m[L.MS_EXCH_NS]
    f[n, L.FL_ORDER] = m[L.MS_ID]
    f[n, L.FL_SIDE] = E.SIDE_BID if filled > 0 else E.SIDE_ASK
    f[n, L.FL_PRICE] = m[L.MS_PRICE]
    f[n, L.FL_QTY] = abs(filled)
    f[n, L.FL_MAKER] = m[L.MS_MAKER]
    bt.fill_fee[n] = money[0, TL.MN_FEES] - fees
    mi[L.MI_NFILL] = n + 1
    mf[L.MF_VOLUME] += units
    mf[L.MF_VALUE] += m[L.MS_PRICE] * money[0, TL.MN_UNIT] * units


@njit(cache=True, nogil=True, inline="always")
def _equity_nb(bt, lt, b):
    """Cash (net of fees) plus the position at the local mid (the mid missing: the position counts nothing)."""
    money = bt.money
    mid = mid_nb(lt, b, money[0, TL.MN_UNIT])
    position = bt.inst[0, TL.IN_POSITION] * money[0, TL.MN_LOT]
    return money[0, TL.MN_CASH] + (0.0 if np.isnan(mid) else position * mid), mid


@njit(cache=True, nogil=True, inline="always")
def _send_nb(bt, now, n):
    """Queue the core's ``n`` sends rows as requests to the exchange, due after the entry latency."""
    own, mi = bt.own, bt.mi
    for s in range(n):
        kind = bt.sends[s, TL.SD_KIND]
        order = own[0, bt.sends[s, TL.SD_ROW]]
        request = L.RQ_CANCEL if kind == TL.SEND_CANCEL else L.RQ_REPLACE if kind == TL.SEND_REPLACE else L.RQ_NEW
        m = _push_nb(bt, bt.req, mi[L.MI_NREQ], L.MI_REQ_AT, now, 1, request, order[TL.OW_ID], order[TL.OW_SIDE],
                     order[TL.OW_PRICE], order[TL.OW_QTY])  # fmt: skip
        if kind == TL.SEND_REPLACE:
            m[L.MS_OLD_ID] = own[0, bt.sends[s, TL.SD_OLD], TL.OW_ID]
        mi[L.MI_NREQ] += 1


@njit(cache=True, nogil=True)
def _resting_quotes_nb(xo, unit):
    """Our quotes in currency: the best buy and sell price among our orders resting at the exchange (``xo``),
    NaN for a side without one. A plain call, given only what it reads: it runs once per equity sample, and a
    call passed the whole state pays for every array in it."""
    bid, ask = -np.inf, np.inf
    for s in range(xo.shape[0]):
        if xo[s, L.XO_STATE] == L.EX_RESTING:
            if xo[s, L.XO_SIDE] == E.SIDE_BID:
                bid = max(bid, np.float64(xo[s, L.XO_PRICE]))
            else:
                ask = min(ask, np.float64(xo[s, L.XO_PRICE]))
    return (bid * unit if bid > -np.inf else np.nan), (ask * unit if ask < np.inf else np.nan)


@njit(cache=True, nogil=True, inline="always")
def _sample_nb(bt, lt, b, now):
    mi, money = bt.mi, bt.money
    n = mi[L.MI_NEQ]
    equity, mid = _equity_nb(bt, lt, b)
    bt.eq_ts[n] = now
    bt.eq[n, L.EQ_EQUITY] = equity
    bt.eq[n, L.EQ_POSITION] = bt.inst[0, TL.IN_POSITION] * money[0, TL.MN_LOT]
    bt.eq[n, L.EQ_MID] = mid
    bt.eq[n, L.EQ_FEES] = money[0, TL.MN_FEES]
    bt.eq[n, L.EQ_CASH] = money[0, TL.MN_CASH]
    bt.eq[n, L.EQ_BID], bt.eq[n, L.EQ_ASK] = _resting_quotes_nb(bt.xo, money[0, TL.MN_UNIT])
    mi[L.MI_NEQ] = n + 1
    mi[L.MI_LAST_SAMPLE] = now


# --- the loop -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def run_nb(bt, xs, ls, events, quote):
    """Advance the backtest until the events end (RC_DONE) or a table is full (another RC_* code).

    The state's arrays are borrowed (owner-less views): the helpers that are not inlined then pay no
    reference counting per event (the caller keeps the arrays alive; tables grow between calls)."""
    xt = tables_nb(xs)
    lt = tables_nb(ls)
    events = borrow(events)
    bt = borrow_all(bt)
    mi, cf = bt.mi, bt.cf
    n = len(events)
    interval = np.int64(bt.params[P_INTERVAL_NS])
    instrument = cf[L.CF_INSTRUMENT]
    while True:
        wake = False
        ie = mi[L.MI_IE]
        while ie < n and events[ie].flags & E.FLAG_LOCAL_ONLY:
            ie += 1
        mi[L.MI_IE] = ie
        il = mi[L.MI_IL]
        while il < n and events[il].flags & E.FLAG_EXCH_ONLY:
            il += 1
        mi[L.MI_IL] = il
        if ie >= n and il >= n:
            return L.RC_DONE
        t_e = events[ie].ts_exch_ns if ie < n else NEVER
        t_l = _local_ts(events[il], cf) if il < n else NEVER
        t_req = bt.req[0, L.MS_AT] if mi[L.MI_NREQ] > 0 else NEVER
        t_rsp = bt.rsp[0, L.MS_AT] if mi[L.MI_NRSP] > 0 else NEVER
        t_w = mi[L.MI_NEXT_WAKE] if interval > 0 else NEVER
        t = min(min(t_e, t_l), min(min(t_req, t_rsp), t_w))
        # room for a wake's requests, and for the answers one event can cause (every order of ours filled)
        if mi[L.MI_NREQ] + bt.sends.shape[0] >= bt.req.shape[0] or mi[L.MI_NRSP] + bt.xo.shape[0] >= bt.rsp.shape[0]:
            return L.RC_MESSAGES_FULL
        if t == t_e:
            if not has_room_nb(xt):
                return L.RC_GROW_EXCH
            ev = events[ie]
            mi[L.MI_EX_EVENTS] += 1
            if ev.instrument == instrument and cf[L.CF_DENSE]:
                _dense_exch_nb(bt, xt, ev, bt.erank[ie], t)
            elif ev.instrument == instrument:
                # our resting orders are checked around the event (one inlined book update: compile time)
                b = (
                    hash_find_nb(xt.i_hash, xt.books, BL.BK_INSTR, np.int64(instrument))
                    if mi[L.MI_RESTING] > 0
                    else BL.EMPTY
                )
                prev = 0
                if b != BL.EMPTY:
                    if cf[L.CF_L3]:
                        _l3_before_nb(bt, xt, ev, t)
                    else:
                        prev = _l2_before_nb(bt, xt, ev, b, t)
                apply_event_nb(xt, ev)
                if b != BL.EMPTY:
                    if cf[L.CF_L3]:
                        _l3_after_nb(bt, xt, ev, b, t)
                    else:
                        _l2_after_nb(bt, xt, ev, b, t, prev)
            mi[L.MI_IE] = ie + 1
        elif t == t_req:
            if not has_room_nb(xt):
                return L.RC_GROW_EXCH
            _arrive_nb(bt, xt, t, bt.req[0])
            mi[L.MI_NREQ] = _pop_nb(bt.req, mi[L.MI_NREQ])
        elif t == t_rsp:
            if mi[L.MI_NFILL] >= bt.fills.shape[0]:
                return L.RC_FILLS_FULL
            mi[L.MI_NOW] = t
            _receive_nb(bt, t)
            mi[L.MI_NRSP] = _pop_nb(bt.rsp, mi[L.MI_NRSP])
        elif t == t_l:
            if not has_room_nb(lt):
                return L.RC_GROW_LOCAL
            ev = events[il]
            mi[L.MI_LO_EVENTS] += 1
            mi[L.MI_NOW] = t
            if ev.instrument == instrument:
                if ev.kind == E.KIND_TRADE or ev.kind == E.KIND_EXECUTE or ev.kind == E.KIND_EXECUTE_PRICE:
                    trade_stats_nb(bt.flow[0], lt, ev, bt.money[0, TL.MN_UNIT], bt.money[0, TL.MN_LOT])
                if cf[L.CF_DENSE]:
                    depth_apply_nb(bt.ld, bt.ldm, bt.dprice, ev, bt.erank[il])
                    mi[L.MI_VIEW_STALE] = 1
                else:
                    apply_event_nb(lt, ev)
            mi[L.MI_IL] = il + 1
            if interval > 0 and mi[L.MI_NEXT_WAKE] == NEVER:
                mi[L.MI_NEXT_WAKE] = t + interval  # the clock starts with the first event we see
            if interval == 0:
                nxt = il + 1
                while nxt < n and events[nxt].flags & E.FLAG_EXCH_ONLY:
                    nxt += 1
                if nxt >= n or _local_ts(events[nxt], cf) != t:
                    if mi[L.MI_NEQ] >= bt.eq.shape[0]:
                        return L.RC_EQUITY_FULL
                    wake = True
        else:  # t == t_w
            if mi[L.MI_NEQ] >= bt.eq.shape[0]:
                return L.RC_EQUITY_FULL
            mi[L.MI_NOW] = t
            mi[L.MI_NEXT_WAKE] = t + interval
            wake = True
        if wake:  # one call site: the wake is inlined once
            _wake_nb(bt, lt, t, quote)


@njit(cache=True, nogil=True)
def _view_book_nb(bt, lt):
    """The local book ``lt`` under CF_DENSE: the best DEPTH levels of each side of the local depth, which is
    all that the view and the mid read; rewritten only when the depth has changed since. Returns its row."""
    mi = bt.mi
    instrument = np.int64(bt.cf[L.CF_INSTRUMENT])
    if not mi[L.MI_VIEW_STALE]:
        return hash_find_nb(lt.i_hash, lt.books, BL.BK_INSTR, instrument)
    b = hash_find_nb(lt.i_hash, lt.books, BL.BK_INSTR, instrument)
    if b != BL.EMPTY:
        clear_book_nb(lt, b)
    ev = bt.vev[0]
    ev.instrument = np.uint32(instrument)
    ev.kind = E.KIND_LEVEL
    for side_index in range(2):
        ev.side = E.SIDE_BID if side_index == BL.BID else E.SIDE_ASK
        for j in range(depth_top_nb(bt.ld, bt.ldm, bt.dprice, side_index, bt.depth)):
            ev.price = bt.depth[j, 0]
            ev.qty = bt.depth[j, 1]
            ev.order_id = np.uint64(bt.depth[j, 2])
            set_level_nb(lt, ev)
    mi[L.MI_VIEW_STALE] = 0
    return hash_find_nb(lt.i_hash, lt.books, BL.BK_INSTR, instrument)


@njit(cache=True, nogil=True, inline="always")
def _local_book_nb(bt, lt):
    """Row of our instrument in the local book (EMPTY before its first event), brought up to date."""
    if bt.cf[L.CF_DENSE]:
        return _view_book_nb(bt, lt)
    return hash_find_nb(lt.i_hash, lt.books, BL.BK_INSTR, np.int64(bt.cf[L.CF_INSTRUMENT]))


@njit(cache=True, nogil=True)
def final_sample_nb(bt, ls):
    """Mark the books to market at the last event, so that the equity curve ends where the data ends.

    Returns RC_EQUITY_FULL when the equity table has no room for it (grow it and call again), else RC_DONE.
    """
    mi = bt.mi
    if mi[L.MI_NOW] - mi[L.MI_LAST_SAMPLE] <= 0:
        return L.RC_DONE
    if mi[L.MI_NEQ] >= bt.eq.shape[0]:
        return L.RC_EQUITY_FULL
    lt = tables_nb(ls)
    bt = borrow_all(bt)
    _sample_nb(bt, lt, _local_book_nb(bt, lt), mi[L.MI_NOW])
    return L.RC_DONE


@njit(cache=True, nogil=True, inline="always")
def _wake_nb(bt, lt, now, quote):
    """The trading core's wake (view, strategy, plan, risk, order table: what the live node runs), its sends
    queued for the exchange, the equity curve sampled (inlined at run_nb's one call site: as a call it cost
    0.5 us a wake, more than the wake's own work, since nothing of the state it is passed is known to the
    callee)."""
    b = _local_book_nb(bt, lt)
    mark_nb(bt, lt, b, 0)
    n, _ = wake_nb(bt, lt, b, 0, now, quote, bt.cf[L.CF_REPLACE], bt.sends.shape[0], bt.mi, -1)
    _send_nb(bt, now, n)
    if now - bt.mi[L.MI_LAST_SAMPLE] >= bt.cf[L.CF_SAMPLE_NS]:
        _sample_nb(bt, lt, b, now)
