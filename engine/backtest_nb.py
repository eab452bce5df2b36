"""The backtester's compiled core: two timelines, two books, our orders, a queue model, one call.

``run_nb`` replays events through

* the **exchange** book (events in exchange-timestamp order) where our orders rest and fill: on L3
  data each order of ours is a real row of that book (a *phantom* with a negative id), so its queue
  position is exact FIFO; on L2 data its place in the queue is estimated by a queue model;
* the **local** book (events in local-timestamp order: what our feed handler would have seen),
  which is all the strategy sees;
* order requests that reach the exchange after the entry latency, and responses (accepted,
  rejected, canceled, fills) that reach us after the response latency; positions, cash and fees
  change when a fill *reaches us*, as they would live.

The strategy (a ``strategies.api`` quoting function) is called every ``interval_ns`` of local time
(or after every local batch when 0); ``reconcile_nb`` turns its wanted quotes into new orders and
cancels. Everything lives in preallocated arrays (the :class:`BacktestState` tuple); when a table is
full ``run_nb`` returns a code saying which, ``engine.backtest`` doubles it and calls again.

Fill rules (no fill without a trade or a cross at our price; market impact is not modelled):

* L3: an execution of a resting order that is *behind* ours in the FIFO fills ours; an execution
  or a trade print at a price worse than ours fills ours; a trade print at our price fills ours
  when it is larger than the quantity ahead of us; an order arriving across our price fills ours.
* L2: hftbacktest's semantics: a trade at our price advances the queue (``front -= qty``), depth
  changes at our price shrink the queue ahead (risk-averse: never below the level's size; power/log:
  the probabilistic split of a decrease between the orders ahead and behind), the order fills when
  the quantity ahead falls below zero; trades through our price and a touch crossing it fill it.
* Without partial fills an order fills whole the first time any of that reaches it.

Speed: on L2 data the two books are dense depth indexed by price rank (``engine.depth_nb``,
CF_DENSE), and the local book the strategy reads holds only the best DEPTH levels, written at a
wake; the exchange side tests an event against the price range of our resting orders (MI_BID_LO ..
MI_ASK_HI) before it calls anything; the helpers of a wake are inlined, since a call that passes the
whole state costs more than most of them do.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.book_nb import (
    ASK,
    BID,
    BK_INSTR,
    EMPTY,
    LV_PRICE,
    LV_QTY,
    M_ORDER_FREE,
    OR_ID,
    OR_PREV,
    OR_PRICE,
    OR_SIDE,
    _book_of_nb,
    _check_crossed_nb,
    _clear_book_nb,
    _level_for_nb,
    _reduce_order_nb,
    _remove_order_nb,
    _set_level_nb,
    apply_event_nb,
    best_level_nb,
    has_room_nb,
    hash_find_nb,
    hash_slot_nb,
    queue_ahead_nb,
    tables_nb,
)
from engine.book_nb import _add_order_nb as add_order_nb
from engine.borrow import borrow
from engine.depth_nb import depth_apply_nb, depth_best_nb, depth_qty_nb, depth_top_nb
from engine.events import (
    FLAG_EXCH_ONLY,
    FLAG_LOCAL_ONLY,
    KIND_ADD,
    KIND_EXECUTE,
    KIND_EXECUTE_PRICE,
    KIND_LEVEL,
    KIND_REPLACE,
    KIND_TRADE,
    SIDE_ASK,
    SIDE_BID,
)
from engine.quoting_nb import (
    AC_KIND,
    AC_PRICE,
    AC_QTY,
    AC_ROW,
    AC_SIDE,
    ACT_CANCEL,
    LS_DONE,
    LS_FREE,
    LS_LIVE,
    LS_PENDING_CANCEL,
    LS_PENDING_NEW,
    N_OWN_COMMON,
    OW_ID,
    OW_OPEN,
    OW_PRICE,
    OW_QTY,
    OW_SIDE,
    OW_STATE,
    plan_nb,
)
from engine.view_nb import fill_view_nb, mid_nb, own_fill_nb, reset_flow_nb, trade_stats_nb
from strategies.api import MAX_LEVELS, P_INTERVAL_NS

NEVER = np.int64(2**62)

# --- our orders: BacktestState.own, the common columns of engine.quoting_nb, then the exchange's view
OW_LEAVES = N_OWN_COMMON  # lots still open at the exchange
OW_EXCH = N_OWN_COMMON + 1  # EX_* state at the exchange
OW_ROW = N_OWN_COMMON + 2  # the phantom's row in the exchange book (L3), EMPTY otherwise
OW_INFLIGHT = N_OWN_COMMON + 3  # requests and responses about this order not yet delivered
OW_SENT_NS = N_OWN_COMMON + 4  # local time the order was sent
N_OW = N_OWN_COMMON + 5
EX_UNSEEN, EX_RESTING, EX_DONE = 0, 1, 2

# --- messages in flight: int64 rows --------------------------------------------------------------
MS_AT, MS_KIND, MS_SLOT, MS_PRICE, MS_QTY, MS_MAKER, MS_EXCH_NS = range(7)
N_MS = 7
RQ_NEW, RQ_CANCEL = 1, 2
RS_ACCEPTED, RS_REJECTED, RS_CANCELED, RS_CANCEL_REJECTED, RS_FILL = 1, 2, 3, 4, 5

# --- fills out: int64 columns (the fee is in BacktestState.fill_fee) -----------------------------
FL_LOCAL_NS, FL_EXCH_NS, FL_ORDER, FL_SIDE, FL_PRICE, FL_QTY, FL_MAKER = range(7)
N_FL = 7
# --- equity samples: float64 columns (the time is in BacktestState.eq_ts) ------------------------
EQ_EQUITY, EQ_POSITION, EQ_MID, EQ_FEES, EQ_CASH = range(5)
N_EQ = 5

# --- configuration ----------------------------------------------------------------------------
(
    CF_INSTRUMENT,
    CF_TICK,  # price units per tick
    CF_L3,  # 1: exact FIFO with phantom orders; 0: an L2 queue model
    CF_QUEUE,  # QM_*
    CF_PARTIAL,  # 1: partial fills
    CF_GTC,  # 1: a marketable order takes liquidity; 0: post-only (rejected when it would cross)
    CF_LATENCY,  # LAT_*
    CF_ENTRY_NS,
    CF_RESP_NS,
    CF_FEED_NS,  # < 0: the data's local timestamps; >= 0: exchange time plus this
    CF_SAMPLE_NS,  # equity sampling period
    CF_DENSE,  # 1: L2 books in dense depth (engine.depth_nb: BacktestState.xd/ld); 0: book_nb tables
) = range(12)
N_CF = 12
CFF_UNIT, CFF_LOT, CFF_MAKER_FEE, CFF_TAKER_FEE, CFF_QUEUE_N, CFF_SIGMA = range(6)
N_CFF = 6
QM_FIFO, QM_RISK_AVERSE, QM_POWER, QM_LOG = 0, 1, 2, 3
LAT_CONSTANT, LAT_TABLE, LAT_LOGNORMAL = 0, 1, 2

# --- scalar state -------------------------------------------------------------------------------
(
    MI_IE,  # next exchange-timeline event
    MI_IL,  # next local-timeline event
    MI_NREQ,
    MI_NRSP,
    MI_NFILL,
    MI_NEQ,
    MI_NEXT_WAKE,
    MI_LAST_CALL,
    MI_NEXT_ID,
    MI_ORDERS,
    MI_CANCELS,
    MI_REJECTS,
    MI_FILLS,
    MI_POSITION,  # lots, as we know it
    MI_LAST_SAMPLE,
    MI_CALLS,
    MI_NOW,  # local time of the latest step
    MI_FULL_TABLE,  # orders that could not be sent because every order slot was busy
    MI_EX_EVENTS,
    MI_LO_EVENTS,
    MI_TAKER_FILLS,
    MI_RESTING,  # our orders resting at the exchange
    MI_BID_LO,  # lowest and highest price of our resting bids (NEVER, -NEVER when none)
    MI_BID_HI,
    MI_ASK_LO,  # the same for our resting asks
    MI_ASK_HI,
    MI_VIEW_STALE,  # CF_DENSE: the local depth changed since the view book was last written
) = range(27)
N_MI = 27
(
    MF_CASH,
    MF_FEES,
    MF_VOLUME,  # units traded
    MF_VALUE,  # currency traded
) = range(4)
N_MF = 4

# --- why run_nb returned ------------------------------------------------------------------------
RC_DONE, RC_GROW_EXCH, RC_GROW_LOCAL, RC_FILLS_FULL, RC_EQUITY_FULL, RC_MESSAGES_FULL = range(6)


class BacktestState(NamedTuple):
    """Every array ``run_nb`` reads or writes; ``engine.backtest`` builds, grows and reads it."""

    own: np.ndarray  # i8[O, N_OW]
    queue: np.ndarray  # f8[O, 2]: lots ahead of the order, traded at its price since the last depth change
    req: np.ndarray  # i8[R, N_MS] requests on their way to the exchange
    rsp: np.ndarray  # i8[R, N_MS] responses on their way back
    fills: np.ndarray  # i8[F, N_FL]
    fill_fee: np.ndarray  # f8[F]
    eq_ts: np.ndarray  # i8[S]
    eq: np.ndarray  # f8[S, N_EQ]
    cf: np.ndarray  # i8[N_CF]
    cff: np.ndarray  # f8[N_CFF]
    lat: np.ndarray  # i8[K, 3]: time, entry ns, response ns (LAT_TABLE)
    mi: np.ndarray  # i8[N_MI]
    mf: np.ndarray  # f8[N_MF]
    sview: np.ndarray  # f8[VIEW_LEN]: what the strategy sees
    params: np.ndarray  # f8[P]
    sstate: np.ndarray  # f8[strategy state]
    quotes: np.ndarray  # f8[MAX_LEVELS, 4]
    depth: np.ndarray  # i8[DEPTH, 3] scratch for depth reads
    actions: np.ndarray  # i8[O + 2 * MAX_LEVELS, N_AC] scratch for engine.quoting_nb.plan_nb
    flow: np.ndarray  # f8[N_FS]: trades and our fills since the strategy's previous call (engine.view_nb)
    xd: np.ndarray  # i8[2, N, 2] CF_DENSE: the exchange book's depth (engine.depth_nb levels)
    xdm: np.ndarray  # i8[N_DM] its meta
    ld: np.ndarray  # i8[2, N, 2] CF_DENSE: the local book's depth
    ldm: np.ndarray  # i8[N_DM]
    dprice: np.ndarray  # i8[N] CF_DENSE: the data's level prices, sorted: a depth row's price
    erank: np.ndarray  # i8[events] CF_DENSE: each event's row in the depth (EMPTY: none)
    vev: np.ndarray  # EVENT_DTYPE[1] scratch: CF_DENSE writes the local depth's top into the local book with it


# --- small helpers ------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _side_index(side):
    return BID if side == SIDE_BID else ASK


@njit(cache=True, nogil=True, inline="always")
def _better(side, ours, theirs):
    """Whether our price is strictly better than ``theirs`` on ``side`` (higher bid, lower ask)."""
    return ours > theirs if side == SIDE_BID else ours < theirs


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
    mode = cf[CF_LATENCY]
    if mode == LAT_CONSTANT:
        return cf[CF_ENTRY_NS] if col == 1 else cf[CF_RESP_NS]
    if mode == LAT_LOGNORMAL:
        median = cf[CF_ENTRY_NS] if col == 1 else cf[CF_RESP_NS]
        return np.int64(median * np.exp(cff[CFF_SIGMA] * np.random.standard_normal()))
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
def _push_nb(box, n, at, kind, slot, price, qty, maker, exch_ns):
    box[n, MS_AT] = at
    box[n, MS_KIND] = kind
    box[n, MS_SLOT] = slot
    box[n, MS_PRICE] = price
    box[n, MS_QTY] = qty
    box[n, MS_MAKER] = maker
    box[n, MS_EXCH_NS] = exch_ns
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _earliest_nb(box, n):
    """Index of the message due first (FIFO among equal times), or -1."""
    best = -1
    at = NEVER
    for i in range(n):
        if box[i, MS_AT] < at:
            at = box[i, MS_AT]
            best = i
    return best


@njit(cache=True, nogil=True, inline="always")
def _pop_nb(box, n, i):
    """Remove message ``i`` keeping the others in order; returns the new count."""
    for j in range(i, n - 1):
        for c in range(N_MS):
            box[j, c] = box[j + 1, c]
    return n - 1


@njit(cache=True, nogil=True, inline="always")
def _local_ts(ev, cf):
    return ev.ts_local_ns if cf[CF_FEED_NS] < 0 else ev.ts_exch_ns + cf[CF_FEED_NS]


@njit(cache=True, nogil=True, inline="always")
def _level_qty_nb(bt, xt, b, side_index, price):
    """Lots at ``price`` on a side of the exchange book (its depth under CF_DENSE, else book ``b``)."""
    if bt.cf[CF_DENSE]:
        return depth_qty_nb(bt.xd, bt.dprice, side_index, price)
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    lvl = _level_for_nb(levels, sides, arena, meta, b, side_index, price, False)
    return 0 if lvl == EMPTY else levels[lvl, LV_QTY]


@njit(cache=True, nogil=True, inline="always")
def _touch_nb(bt, xt, b, side_index):
    """(price, lots) of the best level on a side of the exchange book; lots 0 when that side is empty."""
    if bt.cf[CF_DENSE]:
        r = depth_best_nb(bt.xdm, side_index)
        if r == EMPTY:
            return np.int64(0), np.int64(0)
        return bt.dprice[r], bt.xd[side_index, r, 0]
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    lvl = best_level_nb(levels, sides, arena, b, side_index)
    if lvl == EMPTY:
        return np.int64(0), np.int64(0)
    return levels[lvl, LV_PRICE], levels[lvl, LV_QTY]


@njit(cache=True, nogil=True)
def _resting_range_nb(bt):
    """Recompute the price range of our resting orders on each side (MI_BID_LO .. MI_ASK_HI), which lets
    the exchange side pass over events that cannot reach them."""
    own, mi = bt.own, bt.mi
    mi[MI_BID_LO] = mi[MI_ASK_LO] = NEVER
    mi[MI_BID_HI] = mi[MI_ASK_HI] = -NEVER
    for s in range(own.shape[0]):
        if own[s, OW_EXCH] == EX_RESTING:
            lo = MI_BID_LO if own[s, OW_SIDE] == SIDE_BID else MI_ASK_LO
            price = own[s, OW_PRICE]
            mi[lo] = min(mi[lo], price)
            mi[lo + 1] = max(mi[lo + 1], price)


# --- the exchange side --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _respond_nb(bt, now, kind, slot, price, qty, maker):
    """Queue a response for the local side, due after the response latency."""
    mi = bt.mi
    at = now + _latency_nb(bt.cf, bt.cff, bt.lat, now, 2)
    mi[MI_NRSP] = _push_nb(bt.rsp, mi[MI_NRSP], at, kind, slot, price, qty, maker, now)
    bt.own[slot, OW_INFLIGHT] += 1


@njit(cache=True, nogil=True)
def _exch_fill_nb(bt, xt, now, slot, qty, price, maker):
    """Our order ``slot`` trades ``qty`` lots (at most what it has left) at ``price``."""
    own = bt.own
    qty = min(qty, own[slot, OW_LEAVES])
    if qty <= 0:
        return
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    own[slot, OW_LEAVES] -= qty
    row = own[slot, OW_ROW]
    if own[slot, OW_LEAVES] == 0:
        own[slot, OW_EXCH] = EX_DONE
        bt.mi[MI_RESTING] -= 1
        _resting_range_nb(bt)
        if row != EMPTY:
            _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, row)
            own[slot, OW_ROW] = EMPTY
    elif row != EMPTY:
        _reduce_order_nb(orders, levels, sides, arena, books, o_hash, meta, counters, row, qty)
    _respond_nb(bt, now, RS_FILL, slot, price, qty, maker)


@njit(cache=True, nogil=True, inline="always")
def _fill_amount(bt, slot, available):
    """Lots an order fills when ``available`` lots reach it: all it has, or with partial fills at most that."""
    leaves = bt.own[slot, OW_LEAVES]
    return min(leaves, available) if bt.cf[CF_PARTIAL] else leaves


@njit(cache=True, nogil=True)
def _fill_crossed_nb(bt, xt, b, now, side):
    """Fill our resting orders of ``side`` that the other side's touch has reached or crossed."""
    touch, touch_qty = _touch_nb(bt, xt, b, ASK if side == SIDE_BID else BID)
    if touch_qty == 0:
        return
    own = bt.own
    for s in range(own.shape[0]):
        if own[s, OW_EXCH] == EX_RESTING and own[s, OW_SIDE] == side:
            price = own[s, OW_PRICE]
            if (side == SIDE_BID and price >= touch) or (side == SIDE_ASK and price <= touch):
                _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, touch_qty), price, 1)


@njit(cache=True, nogil=True)
def _queue_depth_nb(bt, slot, prev_qty, new_qty):
    """Depth at our price went ``prev_qty`` -> ``new_qty`` lots: update the estimate of what is ahead."""
    q = bt.queue
    model = bt.cf[CF_QUEUE]
    front = q[slot, 0]
    if model == QM_RISK_AVERSE:
        q[slot, 0] = min(front, new_qty)
        return
    change = prev_qty - new_qty - q[slot, 1]  # what trades already took off is not counted twice
    q[slot, 1] = 0.0
    if change < 0:
        q[slot, 0] = min(front, new_qty)
        return
    back = prev_qty - front
    if model == QM_POWER:
        n = bt.cff[CFF_QUEUE_N]
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
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    own = bt.own
    passive = -ev.side
    for s in range(own.shape[0]):
        if own[s, OW_EXCH] != EX_RESTING or own[s, OW_SIDE] != passive:
            continue
        price = own[s, OW_PRICE]
        if _better(passive, price, ev.price):
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, ev.qty), price, 1)
        elif price == ev.price:
            if l3:
                beyond = ev.qty - queue_ahead_nb(orders, own[s, OW_ROW])[1]
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
    if ev.kind == KIND_TRADE:
        _trade_nb(bt, xt, ev, now, False)
        return 0
    if ev.kind == KIND_LEVEL:
        return _level_qty_nb(bt, xt, b, _side_index(ev.side), ev.price)
    return 0


@njit(cache=True, nogil=True)
def _l2_after_nb(bt, xt, ev, b, now, prev):
    """L2 data, after the book took a level change: our queue estimates, then fills the new touch crossed."""
    if ev.kind != KIND_LEVEL:
        return
    own = bt.own
    for s in range(own.shape[0]):
        if own[s, OW_EXCH] == EX_RESTING and own[s, OW_SIDE] == ev.side and own[s, OW_PRICE] == ev.price:
            _queue_depth_nb(bt, s, np.float64(prev), np.float64(ev.qty))
    _fill_crossed_nb(bt, xt, b, now, -ev.side)


@njit(cache=True, nogil=True, inline="always")
def _dense_exch_nb(bt, xt, ev, rank, now):
    """CF_DENSE: one event of our instrument (its depth row ``rank``) at the exchange. ``_l2_before_nb``,
    the depth update and ``_l2_after_nb``, with the work skipped that cannot change anything: the old
    size of a level where none of our orders rests, and the cross check when the new touch does not
    reach them."""
    mi = bt.mi
    resting = mi[MI_RESTING] > 0
    kind = ev.kind
    if kind == KIND_TRADE:
        if resting and _reaches_nb(mi, -ev.side, ev.price):
            _trade_nb(bt, xt, ev, now, False)
        return
    side = ev.side
    if kind != KIND_LEVEL or not resting or (side != SIDE_BID and side != SIDE_ASK):
        depth_apply_nb(bt.xd, bt.xdm, bt.dprice, ev, rank)
        return
    lo = MI_BID_LO if side == SIDE_BID else MI_ASK_LO
    ours = mi[lo] <= ev.price <= mi[lo + 1]  # a resting order of ours at this price is possible
    si = _side_index(side)
    prev = bt.xd[si, rank, 0] if ours and rank != EMPTY else 0
    depth_apply_nb(bt.xd, bt.xdm, bt.dprice, ev, rank)
    if ours:
        own = bt.own
        for s in range(own.shape[0]):
            if own[s, OW_EXCH] == EX_RESTING and own[s, OW_SIDE] == side and own[s, OW_PRICE] == ev.price:
                _queue_depth_nb(bt, s, np.float64(prev), np.float64(ev.qty))
    if _crossed_nb(bt, xt, EMPTY, -side):  # the touch of this side reaches our orders on the other
        _fill_crossed_nb(bt, xt, EMPTY, now, -side)


@njit(cache=True, nogil=True, inline="always")
def _reaches_nb(mi, side, price):
    """Whether any resting order of ours on ``side`` is at ``price`` or better (MI_BID_LO .. MI_ASK_HI)."""
    return mi[MI_BID_HI] >= price if side == SIDE_BID else mi[MI_ASK_LO] <= price


@njit(cache=True, nogil=True)
def _l3_execute_nb(bt, xt, o, qty, now):
    """L3 data, before the book takes an execution of ``qty`` from order row ``o``: the phantoms ahead of
    it and our orders at better prices would have traded first."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    own = bt.own
    side = SIDE_BID if orders[o, OR_SIDE] == BID else SIDE_ASK
    price = orders[o, OR_PRICE]
    p = orders[o, OR_PREV]
    while p != EMPTY:  # phantoms ahead of the executed order would have traded first
        pid = orders[p, OR_ID]
        p = orders[p, OR_PREV]
        if pid < 0:
            s = -pid - 1
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, qty), own[s, OW_PRICE], 1)
    for s in range(own.shape[0]):  # an execution at a worse price went through ours
        if own[s, OW_EXCH] == EX_RESTING and own[s, OW_SIDE] == side and _better(side, own[s, OW_PRICE], price):
            _exch_fill_nb(bt, xt, now, s, _fill_amount(bt, s, qty), own[s, OW_PRICE], 1)


@njit(cache=True, nogil=True, inline="always")
def _l3_before_nb(bt, xt, ev, now):
    """L3 data, before the book takes ``ev``: executions and prints that reach our phantom orders fill them.

    Inlined: most events cannot reach our orders, and are passed over without a call."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    kind = ev.kind
    if kind in (KIND_EXECUTE, KIND_EXECUTE_PRICE):
        o = hash_find_nb(o_hash, orders, OR_ID, np.int64(ev.order_id))
        if o != EMPTY and _reaches_nb(bt.mi, SIDE_BID if orders[o, OR_SIDE] == BID else SIDE_ASK, orders[o, OR_PRICE]):
            _l3_execute_nb(bt, xt, o, ev.qty, now)
    elif kind == KIND_TRADE and _reaches_nb(bt.mi, -ev.side, ev.price):
        _trade_nb(bt, xt, ev, now, True)


@njit(cache=True, nogil=True, inline="always")
def _crossed_nb(bt, xt, b, side):
    """Whether the other side's touch reaches a resting order of ours on ``side`` (``_fill_crossed_nb`` has work)."""
    touch, touch_qty = _touch_nb(bt, xt, b, ASK if side == SIDE_BID else BID)
    return touch_qty > 0 and _reaches_nb(bt.mi, side, touch)


@njit(cache=True, nogil=True, inline="always")
def _l3_after_nb(bt, xt, ev, b, now):
    """L3 data, after the book took ``ev``: an order that arrived across our price would have traded with us."""
    kind = ev.kind
    if kind in (KIND_ADD, KIND_REPLACE, KIND_LEVEL):
        if _crossed_nb(bt, xt, b, SIDE_BID):
            _fill_crossed_nb(bt, xt, b, now, SIDE_BID)
        if _crossed_nb(bt, xt, b, SIDE_ASK):
            _fill_crossed_nb(bt, xt, b, now, SIDE_ASK)


@njit(cache=True, nogil=True)
def _arrive_nb(bt, xt, now, kind, slot):
    """A request of ours reaches the exchange."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
    own = bt.own
    cf = bt.cf
    if kind == RQ_CANCEL:
        if own[slot, OW_EXCH] == EX_RESTING:
            if own[slot, OW_ROW] != EMPTY:
                _remove_order_nb(orders, levels, sides, arena, books, o_hash, meta, own[slot, OW_ROW])
                own[slot, OW_ROW] = EMPTY
            own[slot, OW_EXCH] = EX_DONE
            bt.mi[MI_RESTING] -= 1
            _resting_range_nb(bt)
            _respond_nb(bt, now, RS_CANCELED, slot, 0, own[slot, OW_LEAVES], 0)
        else:
            _respond_nb(bt, now, RS_CANCEL_REJECTED, slot, 0, 0, 0)
        return
    side = own[slot, OW_SIDE]
    price = own[slot, OW_PRICE]
    b = _book_of_nb(books, sides, i_hash, meta, cf[CF_INSTRUMENT])
    touch, touch_qty = _touch_nb(bt, xt, b, ASK if side == SIDE_BID else BID)
    if touch_qty > 0 and ((side == SIDE_BID and price >= touch) or (side == SIDE_ASK and price <= touch)):
        if not cf[CF_GTC]:  # post-only: it would take liquidity, so it is refused
            own[slot, OW_EXCH] = EX_DONE
            _respond_nb(bt, now, RS_REJECTED, slot, 0, 0, 0)
            return
        own[slot, OW_EXCH] = EX_RESTING  # marketable: trades at the touch, all of it (no book walk)
        bt.mi[MI_RESTING] += 1
        bt.mi[MI_TAKER_FILLS] += 1
        _respond_nb(bt, now, RS_ACCEPTED, slot, 0, 0, 0)
        _exch_fill_nb(bt, xt, now, slot, own[slot, OW_LEAVES], touch, 0)
        return
    own[slot, OW_EXCH] = EX_RESTING
    bt.mi[MI_RESTING] += 1
    _resting_range_nb(bt)
    if cf[CF_L3]:
        oid = -(slot + 1)
        hslot = hash_slot_nb(o_hash, orders, OR_ID, oid)
        row = meta[M_ORDER_FREE]  # the row add_order_nb is about to take
        add_order_nb(orders, levels, sides, arena, books, o_hash, meta, b, _side_index(side), oid, price,
                     own[slot, OW_LEAVES], hslot)  # fmt: skip
        own[slot, OW_ROW] = row
        _check_crossed_nb(sides, arena, books, counters, b)
    else:
        bt.queue[slot, 0] = _level_qty_nb(bt, xt, b, _side_index(side), price)
        bt.queue[slot, 1] = 0.0
    _respond_nb(bt, now, RS_ACCEPTED, slot, 0, 0, 0)


# --- the local side ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _receive_nb(bt, now, i):
    """Response ``i`` reaches us: order state, position, cash, fees, the fill record."""
    own, mi, mf, _cf, cff = bt.own, bt.mi, bt.mf, bt.cf, bt.cff
    kind = bt.rsp[i, MS_KIND]
    slot = bt.rsp[i, MS_SLOT]
    own[slot, OW_INFLIGHT] -= 1
    if kind == RS_ACCEPTED:
        if own[slot, OW_STATE] == LS_PENDING_NEW:
            own[slot, OW_STATE] = LS_LIVE
    elif kind == RS_REJECTED:
        own[slot, OW_STATE] = LS_DONE
        own[slot, OW_OPEN] = 0
        mi[MI_REJECTS] += 1
    elif kind == RS_CANCELED:
        own[slot, OW_STATE] = LS_DONE
        own[slot, OW_OPEN] = 0
        mi[MI_CANCELS] += 1
    elif kind == RS_CANCEL_REJECTED:
        own[slot, OW_STATE] = LS_LIVE if own[slot, OW_OPEN] > 0 else LS_DONE
    else:  # RS_FILL
        qty = bt.rsp[i, MS_QTY]
        price = bt.rsp[i, MS_PRICE]
        side = own[slot, OW_SIDE]
        units = qty * cff[CFF_LOT]
        value = price * cff[CFF_UNIT] * units
        maker = bt.rsp[i, MS_MAKER]
        fee = value * (cff[CFF_MAKER_FEE] if maker else cff[CFF_TAKER_FEE])
        mi[MI_POSITION] += qty if side == SIDE_BID else -qty
        mf[MF_CASH] += -value if side == SIDE_BID else value
        mf[MF_FEES] += fee
        mf[MF_VOLUME] += units
        mf[MF_VALUE] += value
        own_fill_nb(bt.flow, side, units)
        n = mi[MI_NFILL]
        f = bt.fills
        f[n, FL_LOCAL_NS] = now
        f[n, FL_EXCH_NS] = bt.rsp[i, MS_EXCH_NS]
        f[n, FL_ORDER] = own[slot, OW_ID]
        f[n, FL_SIDE] = side
        f[n, FL_PRICE] = price
        f[n, FL_QTY] = qty
        f[n, FL_MAKER] = maker
        bt.fill_fee[n] = fee
        mi[MI_NFILL] = n + 1
        mi[MI_FILLS] += 1
        own[slot, OW_OPEN] -= qty
        if own[slot, OW_OPEN] <= 0:
            own[slot, OW_STATE] = LS_DONE
    if own[slot, OW_STATE] == LS_DONE and own[slot, OW_INFLIGHT] == 0:
        own[slot, OW_STATE] = LS_FREE


@njit(cache=True, nogil=True, inline="always")
def _equity_nb(bt, lt, b):
    """Cash plus the position at the local mid, less fees (the mid missing: the position counts nothing)."""
    mid = mid_nb(lt, b, bt.cff[CFF_UNIT])
    position = bt.mi[MI_POSITION] * bt.cff[CFF_LOT]
    return bt.mf[MF_CASH] + (0.0 if np.isnan(mid) else position * mid) - bt.mf[MF_FEES], mid


@njit(cache=True, nogil=True, inline="always")
def _fill_view_nb(bt, lt, b, now):
    """Write what the strategy may know into ``bt.sview`` (engine.view_nb, as the live node does)."""
    mi, cff, own = bt.mi, bt.cff, bt.own
    lot = cff[CFF_LOT]
    open_bid = 0
    open_ask = 0
    for s in range(own.shape[0]):
        if own[s, OW_STATE] in (LS_PENDING_NEW, LS_LIVE, LS_PENDING_CANCEL):
            if own[s, OW_SIDE] == SIDE_BID:
                open_bid += own[s, OW_OPEN]
            else:
                open_ask += own[s, OW_OPEN]
    elapsed = 0.0 if mi[MI_CALLS] == 0 else np.float64(now - mi[MI_LAST_CALL])
    equity, _ = _equity_nb(bt, lt, b)
    fill_view_nb(bt.sview, lt, b, bt.depth, bt.cf[CF_TICK] * cff[CFF_UNIT], cff[CFF_UNIT], lot, mi[MI_POSITION] * lot,
                 open_bid * lot, open_ask * lot, elapsed, bt.flow, equity)  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _send_nb(bt, now, kind, slot):
    mi = bt.mi
    at = now + _latency_nb(bt.cf, bt.cff, bt.lat, now, 1)
    mi[MI_NREQ] = _push_nb(bt.req, mi[MI_NREQ], at, kind, slot, 0, 0, 0, now)
    bt.own[slot, OW_INFLIGHT] += 1


@njit(cache=True, nogil=True, inline="always")
def _act_nb(bt, now, wanted):
    """Send the cancels and new orders that turn our orders into the strategy's wanted quotes."""
    own, cf, cff, actions = bt.own, bt.cf, bt.cff, bt.actions
    count = plan_nb(own, bt.quotes, wanted, cf[CF_TICK], cff[CFF_UNIT], cff[CFF_LOT], actions)
    for a in range(count):
        if actions[a, AC_KIND] == ACT_CANCEL:
            s = actions[a, AC_ROW]
            own[s, OW_STATE] = LS_PENDING_CANCEL
            _send_nb(bt, now, RQ_CANCEL, s)
            continue
        slot = -1
        for s in range(own.shape[0]):
            if own[s, OW_STATE] == LS_FREE:
                slot = s
                break
        if slot < 0:
            bt.mi[MI_FULL_TABLE] += 1
            continue
        bt.mi[MI_NEXT_ID] += 1
        own[slot, OW_ID] = bt.mi[MI_NEXT_ID]
        own[slot, OW_SIDE] = actions[a, AC_SIDE]
        own[slot, OW_PRICE] = actions[a, AC_PRICE]
        own[slot, OW_QTY] = actions[a, AC_QTY]
        own[slot, OW_LEAVES] = actions[a, AC_QTY]
        own[slot, OW_OPEN] = actions[a, AC_QTY]
        own[slot, OW_EXCH] = EX_UNSEEN
        own[slot, OW_STATE] = LS_PENDING_NEW
        own[slot, OW_ROW] = EMPTY
        own[slot, OW_INFLIGHT] = 0
        own[slot, OW_SENT_NS] = now
        bt.mi[MI_ORDERS] += 1
        _send_nb(bt, now, RQ_NEW, slot)


@njit(cache=True, nogil=True, inline="always")
def _sample_nb(bt, lt, b, now):
    mi, mf = bt.mi, bt.mf
    n = mi[MI_NEQ]
    equity, mid = _equity_nb(bt, lt, b)
    position = mi[MI_POSITION] * bt.cff[CFF_LOT]
    bt.eq_ts[n] = now
    bt.eq[n, EQ_EQUITY] = equity
    bt.eq[n, EQ_POSITION] = position
    bt.eq[n, EQ_MID] = mid
    bt.eq[n, EQ_FEES] = mf[MF_FEES]
    bt.eq[n, EQ_CASH] = mf[MF_CASH]
    mi[MI_NEQ] = n + 1
    mi[MI_LAST_SAMPLE] = now


# --- the loop -----------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _borrowed_nb(bt):
    """The state with owner-less views of its arrays: helpers that are not inlined then pay no
    reference counting per event (the caller keeps the arrays alive; tables grow between calls)."""
    return BacktestState(
        borrow(bt.own), borrow(bt.queue), borrow(bt.req), borrow(bt.rsp), borrow(bt.fills), borrow(bt.fill_fee),
        borrow(bt.eq_ts), borrow(bt.eq), borrow(bt.cf), borrow(bt.cff), borrow(bt.lat), borrow(bt.mi),
        borrow(bt.mf), borrow(bt.sview), borrow(bt.params), borrow(bt.sstate), borrow(bt.quotes),
        borrow(bt.depth), borrow(bt.actions), borrow(bt.flow), borrow(bt.xd), borrow(bt.xdm), borrow(bt.ld),
        borrow(bt.ldm), borrow(bt.dprice), borrow(bt.erank), borrow(bt.vev),
    )  # fmt: skip


@njit(cache=True, nogil=True)
def run_nb(bt, xs, ls, events, quote):
    """Advance the backtest until the events end (RC_DONE) or a table is full (another RC_* code)."""
    xt = tables_nb(xs)
    lt = tables_nb(ls)
    events = borrow(events)
    bt = _borrowed_nb(bt)
    mi, cf = bt.mi, bt.cf
    n = len(events)
    interval = np.int64(bt.params[P_INTERVAL_NS])
    instrument = cf[CF_INSTRUMENT]
    while True:
        ie = mi[MI_IE]
        while ie < n and events[ie].flags & FLAG_LOCAL_ONLY:
            ie += 1
        mi[MI_IE] = ie
        il = mi[MI_IL]
        while il < n and events[il].flags & FLAG_EXCH_ONLY:
            il += 1
        mi[MI_IL] = il
        if ie >= n and il >= n:
            return RC_DONE
        t_e = events[ie].ts_exch_ns if ie < n else NEVER
        t_l = _local_ts(events[il], cf) if il < n else NEVER
        i_req = _earliest_nb(bt.req, mi[MI_NREQ])
        t_req = bt.req[i_req, MS_AT] if i_req >= 0 else NEVER
        i_rsp = _earliest_nb(bt.rsp, mi[MI_NRSP])
        t_rsp = bt.rsp[i_rsp, MS_AT] if i_rsp >= 0 else NEVER
        t_w = mi[MI_NEXT_WAKE] if interval > 0 else NEVER
        t = min(min(t_e, t_l), min(min(t_req, t_rsp), t_w))
        if mi[MI_NREQ] + 4 * MAX_LEVELS >= bt.req.shape[0] or mi[MI_NRSP] + 4 >= bt.rsp.shape[0]:
            return RC_MESSAGES_FULL
        if t == t_e:
            if not has_room_nb(xt):
                return RC_GROW_EXCH
            ev = events[ie]
            mi[MI_EX_EVENTS] += 1
            if ev.instrument == instrument and cf[CF_DENSE]:
                _dense_exch_nb(bt, xt, ev, bt.erank[ie], t)
            elif ev.instrument == instrument:
                # our resting orders are checked around the event (one inlined book update: compile time)
                orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = xt
                b = hash_find_nb(i_hash, books, BK_INSTR, np.int64(instrument)) if mi[MI_RESTING] > 0 else EMPTY
                prev = 0
                if b != EMPTY:
                    if cf[CF_L3]:
                        _l3_before_nb(bt, xt, ev, t)
                    else:
                        prev = _l2_before_nb(bt, xt, ev, b, t)
                apply_event_nb(xt, ev)
                if b != EMPTY:
                    if cf[CF_L3]:
                        _l3_after_nb(bt, xt, ev, b, t)
                    else:
                        _l2_after_nb(bt, xt, ev, b, t, prev)
            mi[MI_IE] = ie + 1
        elif t == t_req:
            if not has_room_nb(xt):
                return RC_GROW_EXCH
            kind = bt.req[i_req, MS_KIND]
            slot = bt.req[i_req, MS_SLOT]
            mi[MI_NREQ] = _pop_nb(bt.req, mi[MI_NREQ], i_req)
            bt.own[slot, OW_INFLIGHT] -= 1
            _arrive_nb(bt, xt, t, kind, slot)
        elif t == t_rsp:
            if mi[MI_NFILL] >= bt.fills.shape[0]:
                return RC_FILLS_FULL
            mi[MI_NOW] = t
            _receive_nb(bt, t, i_rsp)
            mi[MI_NRSP] = _pop_nb(bt.rsp, mi[MI_NRSP], i_rsp)
        elif t == t_l:
            if not has_room_nb(lt):
                return RC_GROW_LOCAL
            ev = events[il]
            mi[MI_LO_EVENTS] += 1
            mi[MI_NOW] = t
            if ev.instrument == instrument:
                if ev.kind == KIND_TRADE or ev.kind == KIND_EXECUTE or ev.kind == KIND_EXECUTE_PRICE:
                    trade_stats_nb(bt.flow, lt, ev, bt.cff[CFF_UNIT], bt.cff[CFF_LOT])
                if cf[CF_DENSE]:
                    depth_apply_nb(bt.ld, bt.ldm, bt.dprice, ev, bt.erank[il])
                    mi[MI_VIEW_STALE] = 1
                else:
                    apply_event_nb(lt, ev)
            mi[MI_IL] = il + 1
            if interval > 0 and mi[MI_NEXT_WAKE] == NEVER:
                mi[MI_NEXT_WAKE] = t + interval  # the clock starts with the first event we see
            if interval == 0:
                nxt = il + 1
                while nxt < n and events[nxt].flags & FLAG_EXCH_ONLY:
                    nxt += 1
                if nxt >= n or _local_ts(events[nxt], cf) != t:
                    if mi[MI_NEQ] >= bt.eq.shape[0]:
                        return RC_EQUITY_FULL
                    _wake_nb(bt, lt, t, quote)
        else:  # t == t_w
            if mi[MI_NEQ] >= bt.eq.shape[0]:
                return RC_EQUITY_FULL
            mi[MI_NOW] = t
            _wake_nb(bt, lt, t, quote)
            mi[MI_NEXT_WAKE] = t + interval


@njit(cache=True, nogil=True)
def _view_book_nb(bt, lt):
    """The local book ``lt`` under CF_DENSE: the best DEPTH levels of each side of the local depth, which is
    all that the view and the mid read; rewritten only when the depth has changed since. Returns its row."""
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = lt
    mi = bt.mi
    instrument = np.int64(bt.cf[CF_INSTRUMENT])
    if not mi[MI_VIEW_STALE]:
        return hash_find_nb(i_hash, books, BK_INSTR, instrument)
    b = hash_find_nb(i_hash, books, BK_INSTR, instrument)
    if b != EMPTY:
        _clear_book_nb(orders, levels, sides, arena, books, o_hash, meta, b)
    ev = bt.vev[0]
    ev.instrument = np.uint32(instrument)
    ev.kind = KIND_LEVEL
    for side_index in range(2):
        ev.side = SIDE_BID if side_index == BID else SIDE_ASK
        for j in range(depth_top_nb(bt.ld, bt.ldm, bt.dprice, side_index, bt.depth)):
            ev.price = bt.depth[j, 0]
            ev.qty = bt.depth[j, 1]
            ev.order_id = np.uint64(bt.depth[j, 2])
            _set_level_nb(levels, sides, arena, books, i_hash, meta, counters, ev)
    mi[MI_VIEW_STALE] = 0
    return hash_find_nb(i_hash, books, BK_INSTR, instrument)


@njit(cache=True, nogil=True, inline="always")
def _local_book_nb(bt, lt):
    """Row of our instrument in the local book (EMPTY before its first event), brought up to date."""
    if bt.cf[CF_DENSE]:
        return _view_book_nb(bt, lt)
    orders, levels, sides, books, arena, o_hash, i_hash, meta, counters = lt
    return hash_find_nb(i_hash, books, BK_INSTR, np.int64(bt.cf[CF_INSTRUMENT]))


@njit(cache=True, nogil=True)
def final_sample_nb(bt, ls):
    """Mark the books to market at the last event, so that the equity curve ends where the data ends.

    Returns RC_EQUITY_FULL when the equity table has no room for it (grow it and call again), else RC_DONE.
    """
    mi = bt.mi
    if mi[MI_NOW] - mi[MI_LAST_SAMPLE] <= 0:
        return RC_DONE
    if mi[MI_NEQ] >= bt.eq.shape[0]:
        return RC_EQUITY_FULL
    lt = tables_nb(ls)
    bt = _borrowed_nb(bt)
    _sample_nb(bt, lt, _local_book_nb(bt, lt), mi[MI_NOW])
    return RC_DONE


@njit(cache=True, nogil=True)
def _wake_nb(bt, lt, now, quote):
    """Call the strategy, act on its quotes, sample the equity curve."""
    mi = bt.mi
    b = _local_book_nb(bt, lt)
    _fill_view_nb(bt, lt, b, now)
    wanted = quote(now, bt.sview, bt.params, bt.sstate, bt.quotes)
    mi[MI_CALLS] += 1
    mi[MI_LAST_CALL] = now
    reset_flow_nb(bt.flow)
    _act_nb(bt, now, wanted)
    if now - mi[MI_LAST_SAMPLE] >= bt.cf[CF_SAMPLE_NS]:
        _sample_nb(bt, lt, b, now)
