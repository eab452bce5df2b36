"""The trading node's compiled step: responses -> book -> strategy -> risk -> OUCH bytes, in ONE call.

``step_nb`` is called by ``engine.node`` once per duty cycle that brought market data (a batch of
event rows: every packet the receiver read this cycle), order-entry responses, a due strategy timer
or a control change. It

1. reconciles the OUCH responses (``engine.oms``): order states, positions, cash, PnL;
2. applies the event rows to the L3 book, counting trades into the strategy's flow figures;
3. for each instrument: while the node is halted (a feed gap, the kill switch, shutdown) cancels
   every working order and quotes nothing; otherwise, when the strategy is due (``interval_ns``
   after its previous call, or at every batch when 0), fills the view (``engine.view_nb``), calls
   the strategy, turns its quotes into cancels and new orders with ``quoting_nb.plan_nb`` (as the
   backtester does), passes each new order through ``risk.check_order_nb`` and encodes what passes
   as OUCH Enter Order / Cancel Order session packets into ``out`` (message k is
   ``out[out_off[k]:out_off[k + 1]]``). A requote (the plan for one side cancels exactly one order the
   exchange has accepted and enters exactly one) goes out as ONE Replace Order instead, when the node
   may replace (``NI_REPLACE``): the same risk checks, with the replaced order's quantity out of the
   worst-case position; when risk refuses the replace, the old order is still canceled, as planned;
4. writes the metrics block (counters, gauges, latency histograms) and the control block's next id.

The Python side offers those packets on Aeron and passes back, through ``mi``, when the first went
out. A batch of market data that made the step send leaves a *probe* row (``PR_*``): the stamps of
its way through the node (CLOCK_MONOTONIC, ``engine.clock_nb``), completed with that offer time on
the next call, when tick-to-trade and its ``STAGES`` are observed into the metrics block. The
latency harness (``bench/t2t.py``) joins the probes with the exchange's own stamps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.book_nb import apply_event_nb, has_room_nb, tables_nb
from engine.clock_nb import monotonic_ns
from engine.events import KIND_EXECUTE, KIND_EXECUTE_PRICE, KIND_TRADE, SIDE_BID
from engine.journal import J_FULL, KIND_SENT, append_nb, ring_has_room_nb
from engine.metrics import (
    G_PNL,
    G_POSITION,
    G_QUOTED_SPREAD_TICKS,
    HIST_TICK_TO_TRADE,
    I_BOOK_UPDATES,
    I_ORDERS_ACCEPTED,
    I_ORDERS_CANCELED,
    I_ORDERS_FILLED,
    I_ORDERS_REJECTED,
    I_ORDERS_SENT,
    observe_nb,
)
from engine.oms import (
    IN_ACCEPTED,
    IN_CANCELED,
    IN_CANCELS,
    IN_FILLS,
    IN_LOCATE,
    IN_LOT,
    IN_ORDERS,
    IN_POSITION,
    IN_REJECTS,
    IN_REPLACES,
    IN_TICK,
    MN_MID,
    MN_REALIZED,
    MN_UNIT,
    OC_DUPLICATE,
    OC_NEXT_ID,
    OS_LIVE,
    OS_PARTIAL,
    OW_ORDER_STATE,
    apply_response_nb,
    cancel_order_nb,
    new_order_nb,
    open_units_nb,
    pnl_nb,
    replace_order_nb,
    unrealized_nb,
    working_count_nb,
    working_nb,
)
from engine.quoting_nb import (
    AC_KIND,
    AC_PRICE,
    AC_QTY,
    AC_ROW,
    AC_SIDE,
    ACT_CANCEL,
    OW_ID,
    OW_OPEN,
    OW_PRICE,
    OW_SIDE,
    plan_nb,
)
from engine.risk import RISK_OK, RS_KILLED, check_order_nb
from engine.view_nb import book_of_nb, fill_view_nb, mid_nb, own_fill_nb, reset_flow_nb, trade_stats_nb
from feeds import ouch
from feeds.bytes_nb import put_be_nb

# --- node scalars: mi[NI_*] ---------------------------------------------------------------------
(
    NI_HALT,  # 1 while the feed has a gap (or lost messages): cancel everything, quote nothing
    NI_STOP,  # 1 once shutdown began: cancel everything, quote nothing
    NI_EV_DONE,  # events of the current batch already applied (resume point after the book grew)
    NI_RECV_NS,  # receive time of the newest packet of the batch
    NI_SEQ,  # sequence number of the newest message of the batch
    NI_DECODED_NS,  # written by Python: when the batch's rows were ready (0: no market data)
    NI_STEP_NS,  # when this step began
    NI_RISK_NS,  # time spent in pre-trade checks during this step
    NI_ENCODE_NS,  # time spent encoding OUCH during this step
    NI_PROBE_OPEN,  # 1: the newest probe row waits for its offer time
    NI_OFFER_NS,  # written by Python: when the previous call's packets were offered
    NI_PROBES,  # probe rows completed (the ring keeps the latest)
    NI_MESSAGES,  # OUCH messages written since start
    NI_NEXT_WAKE,  # earliest time a strategy is due
    NI_POST_ONLY,
    NI_CALLS,
    NI_REPLACE,  # 1: requotes go out as OUCH Replace Orders (0: cancel + enter, for a venue without replace)
) = range(17)
N_NI = 17

# --- tick-to-trade probes: probes[n % P, PR_*], one row per market-data batch that made the node send ----
(
    PR_SEQ,  # sequence number of the newest message of the batch
    PR_RECV_NS,  # its packet was in hand (receive time)
    PR_DECODED_NS,  # the batch's event rows were ready
    PR_STEP_NS,  # the compiled step began
    PR_BOOKED_NS,  # responses reconciled and events applied to the book
    PR_RISK_NS,  # duration of the pre-trade checks
    PR_ENCODE_NS,  # duration of the OUCH encoding
    PR_STEPPED_NS,  # the step returned its messages
    PR_OFFERED_NS,  # its first message was handed to Aeron
    PR_FIRST_MESSAGE,  # index of the step's first message among all the node sent (0-based)
    PR_MESSAGES,  # messages the step wrote
) = range(11)
N_PR = 11
# stages of tick-to-trade (histogram rows 1 + s of the metrics block); they add up to offered - received
STAGES = ("decode", "dispatch", "book", "strategy", "risk", "encode", "offer")
NEVER = np.int64(2**62)
STALE, FRESH = 1, 2  # dirty[i]: market data since the previous call, from an earlier step / from this one

PKT_UNSEQUENCED = 85  # "U": the session packet carrying an inbound OUCH message
MESSAGE_BYTES = 64  # room per message in ``out`` (Enter Order 47 / Replace Order 40 + appendage 3, Cancel 11, + 1)
POST_ONLY_YES = 80  # "P"
_SIDE_BUY, _SIDE_SELL = ord(ouch.SIDE_BUY), ord(ouch.SIDE_SELL)
_TIF_DAY, _DISPLAY, _CAPACITY = ord(ouch.TIF_DAY), ord(ouch.DISPLAY_VISIBLE), ord(ouch.CAPACITY_PRINCIPAL)
_ISO, _CROSS = ord(ouch.ISO_NOT_ELIGIBLE), ord(ouch.CROSS_CONTINUOUS)
_TAG_POST_ONLY = ouch.TAG_POST_ONLY
_APPLEN_FROM_END = 2  # AppendageLength is the last field of the fixed part
_K_EXECUTED = ord("E")


class NodeState(NamedTuple):
    """Every array ``step_nb`` reads or writes (built by ``engine.node``); n instruments, R order rows."""

    own: np.ndarray  # i8[n, R, oms.N_OW]
    oc: np.ndarray  # i8[oms.N_OC]
    inst: np.ndarray  # i8[n, oms.N_IN]
    money: np.ndarray  # f8[n, oms.N_MN]
    flow: np.ndarray  # f8[n, view_nb.N_FS]
    symbols: np.ndarray  # u1[n, 8] space-padded OUCH symbols
    cl_ord_id: np.ndarray  # u1[14] (blank)
    limits: np.ndarray  # f8[risk.N_LIMITS]
    rstate: np.ndarray  # f8[risk.N_RS]
    rlog: np.ndarray  # i8[risk.LOG_ROWS, risk.N_LG]
    mi: np.ndarray  # i8[N_NI]
    next_call: np.ndarray  # i8[n]
    last_call: np.ndarray  # i8[n]  (-1: never called)
    dirty: np.ndarray  # i8[n]  0, STALE or FRESH: market data since the strategy's previous call
    scratch: np.ndarray  # f8[3, n] positions, working buys, working sells (units), for risk
    sview: np.ndarray  # f8[VIEW_LEN] what the strategy sees
    params: np.ndarray  # f8[P]
    sstate: np.ndarray  # f8[n, state size]
    quotes: np.ndarray  # f8[MAX_LEVELS, 4]
    depth: np.ndarray  # i8[DEPTH, 3]
    actions: np.ndarray  # i8[R + 2 MAX_LEVELS, N_AC]
    out: np.ndarray  # u1[K * MESSAGE_BYTES]
    out_off: np.ndarray  # i8[K + 1]
    probes: np.ndarray  # i8[P, N_PR] ring of tick-to-trade probes
    jmeta: np.ndarray  # journal ring (engine.journal): i8[capacity, N_META]
    jdata: np.ndarray  # u1[capacity, RECORD_BYTES]
    jctl: np.ndarray  # i8[N_CTL]
    node: np.ndarray  # metrics block: i8[N_NODE_SLOTS]
    counters: np.ndarray  # metrics block: i8[n, N_INSTRUMENT_COUNTERS]
    gauges: np.ndarray  # metrics block: f8[n, N_INSTRUMENT_GAUGES]
    risk_counts: np.ndarray  # metrics block: i8[n, len(RISK_REASONS)]
    hist: np.ndarray  # metrics block: i8[1 + stages, HIST_WIDTH]
    control: np.ndarray  # control block: i8[CT_SLOTS] (engine.node)
    control_next_id: np.ndarray  # i8[1] view of the control block slot that mirrors the next client id


@njit(cache=True, nogil=True)
def _begin(ns, k):
    """Start message ``k`` in ``out``: the session packet type; returns where the OUCH message goes."""
    pos = ns.out_off[k]
    ns.out[pos] = PKT_UNSEQUENCED
    return pos + 1


@njit(cache=True, nogil=True)
def _can_write(ns, k):
    """Whether message ``k`` fits in ``out`` and in the journal (a full journal stops orders, counted)."""
    if k + 1 >= ns.out_off.shape[0]:
        return False
    if ring_has_room_nb(ns.jctl, ns.jmeta.shape[0]):
        return True
    ns.jctl[J_FULL] += 1
    return False


@njit(cache=True, nogil=True)
def _written(ns, k, end):
    """Close message ``k`` at ``end`` and journal it (write-ahead: before Python offers it)."""
    ns.out_off[k + 1] = end
    start = ns.out_off[k]
    append_nb(ns.jmeta, ns.jdata, ns.jctl, KIND_SENT, ns.mi[NI_STEP_NS], 0, ns.out, start, end - start)
    return k + 1


@njit(cache=True, nogil=True)
def _encode_cancel(ns, k, order_id):
    pos = _begin(ns, k)
    return _written(ns, k, pos + ouch.encode_cancel_nb(ns.out, pos, order_id, 0))


@njit(cache=True, nogil=True)
def _post_only(ns, end):
    """Append the PostOnly appendage to the message ending at ``end`` when the node posts only; its new end."""
    if not ns.mi[NI_POST_ONLY]:
        return end
    ns.out[end] = 2  # one TagValue: length 2, PostOnly, "P"
    ns.out[end + 1] = _TAG_POST_ONLY
    ns.out[end + 2] = POST_ONLY_YES
    put_be_nb(ns.out, end - _APPLEN_FROM_END, 3, 2)
    return end + 3


@njit(cache=True, nogil=True)
def _encode_enter(ns, k, i, order_id, side, shares, price):
    pos = _begin(ns, k)
    n = ouch.encode_enter_order_nb(
        ns.out, pos, order_id, _SIDE_BUY if side == SIDE_BID else _SIDE_SELL, shares, ns.symbols[i], price,
        _TIF_DAY, _DISPLAY, _CAPACITY, _ISO, _CROSS, ns.cl_ord_id,
    )  # fmt: skip
    return _written(ns, k, _post_only(ns, pos + n))


@njit(cache=True, nogil=True)
def _encode_replace(ns, k, old_id, order_id, shares, price):
    pos = _begin(ns, k)
    n = ouch.encode_replace_nb(ns.out, pos, old_id, order_id, shares, price, _TIF_DAY, _DISPLAY, _ISO, ns.cl_ord_id)
    return _written(ns, k, _post_only(ns, pos + n))


@njit(cache=True, nogil=True)
def _cancel_all(ns, i, k):
    """Cancel every working order of instrument ``i`` not already being canceled."""
    for r in range(ns.own.shape[1]):
        if working_nb(ns.own[i, r]) and _can_write(ns, k):
            k = _cancel(ns, i, k, r)
    return k


@njit(cache=True, nogil=True)
def _quote(ns, tables, i, now_ns, k, quote):
    """Call the strategy of instrument ``i`` and encode the cancels and the risk-checked new orders."""
    inst, money, own, scratch = ns.inst, ns.money, ns.own, ns.scratch
    b = book_of_nb(tables, inst[i, IN_LOCATE])
    unit = money[i, MN_UNIT]
    lot = inst[i, IN_LOT]
    tick = inst[i, IN_TICK]
    position = np.float64(inst[i, IN_POSITION] * lot)
    open_bid = open_units_nb(own, inst, i, SIDE_BID)
    open_ask = open_units_nb(own, inst, i, -SIDE_BID)
    elapsed = 0.0 if ns.last_call[i] < 0 else np.float64(now_ns - ns.last_call[i])
    mid = money[i, MN_MID]
    equity = money[i, MN_REALIZED] + unrealized_nb(inst, money, i)
    fill_view_nb(ns.sview, tables, b, ns.depth, tick * unit, unit, np.float64(lot), position, open_bid, open_ask,
                 elapsed, ns.flow[i], equity)  # fmt: skip
    wanted = quote(now_ns, ns.sview, ns.params, ns.sstate[i], ns.quotes)
    reset_flow_nb(ns.flow[i])
    ns.last_call[i] = now_ns
    ns.mi[NI_CALLS] += 1
    count = plan_nb(own[i], ns.quotes, wanted, tick, unit, lot, ns.actions)
    if count == 0:
        return k
    stamp = monotonic_ns()  # from here on the time goes to risk (these sums included) and encoding
    for j in range(inst.shape[0]):
        scratch[0, j] = inst[j, IN_POSITION] * inst[j, IN_LOT]
        scratch[1, j] = open_units_nb(own, inst, j, SIDE_BID)
        scratch[2, j] = open_units_nb(own, inst, j, -SIDE_BID)
    working = working_count_nb(own)
    pnl = pnl_nb(inst, money)
    bid_cancel, bid_new = _requote(ns, i, count, SIDE_BID)
    ask_cancel, ask_new = _requote(ns, i, count, -SIDE_BID)
    for a in range(count):
        if not _can_write(ns, k):
            break
        if a in (bid_cancel, ask_cancel):  # goes out as the replace of the side's new order, next
            continue
        if ns.actions[a, AC_KIND] == ACT_CANCEL:
            k = _cancel(ns, i, k, ns.actions[a, AC_ROW])
            stamp = _lap(ns, NI_ENCODE_NS, stamp)
            continue
        side = ns.actions[a, AC_SIDE]
        price = ns.actions[a, AC_PRICE]
        lots = ns.actions[a, AC_QTY]
        old = ns.actions[bid_cancel, AC_ROW] if a == bid_new else ns.actions[ask_cancel, AC_ROW] if a == ask_new else -1
        col = 1 if side == SIDE_BID else 2
        freed = np.float64(own[i, old, OW_OPEN] * lot) if old >= 0 else 0.0  # a replaced order's quantity leaves
        scratch[col, i] -= freed
        others = working - 1 if old >= 0 else working  # a replace adds no working order
        reason = check_order_nb(ns.limits, ns.rstate, ns.risk_counts, ns.rlog, scratch[0], scratch[1], scratch[2], i,
                                side, price * unit, np.float64(lots * lot), mid, others, pnl, now_ns, price,
                                lots)  # fmt: skip
        if reason != RISK_OK:
            r = -1
        elif old >= 0:
            r = replace_order_nb(own, ns.oc, i, old, price, lots, now_ns)
        else:
            r = new_order_nb(own, ns.oc, i, side, price, lots, now_ns)
        stamp = _lap(ns, NI_RISK_NS, stamp)
        if r < 0:
            scratch[col, i] += freed
            if old >= 0 and _can_write(ns, k):  # no replace: the old order still goes, as the plan asked
                k = _cancel(ns, i, k, old)
                stamp = _lap(ns, NI_ENCODE_NS, stamp)
            continue
        if old >= 0:
            k = _encode_replace(ns, k, own[i, old, OW_ID], own[i, r, OW_ID], lots * lot, price)
            inst[i, IN_REPLACES] += 1
        else:
            k = _encode_enter(ns, k, i, own[i, r, OW_ID], side, lots * lot, price)
            inst[i, IN_ORDERS] += 1
            working += 1
        scratch[col, i] += lots * lot
        stamp = _lap(ns, NI_ENCODE_NS, stamp)
    return k


@njit(cache=True, nogil=True)
def _cancel(ns, i, k, r):
    """Encode a Cancel Order for row ``r`` of instrument ``i`` unless it is not working or already canceling."""
    if cancel_order_nb(ns.own, i, r):
        k = _encode_cancel(ns, k, ns.own[i, r, OW_ID])
        ns.inst[i, IN_CANCELS] += 1
    return k


@njit(cache=True, nogil=True)
def _requote(ns, i, count, side):
    """(cancel, new) action indices when the plan for ``side`` cancels exactly one order the exchange has
    accepted and enters exactly one (a requote one Replace Order does), the node replacing; else (-1, -1)."""
    cancel = new = -1
    cancels = news = 0
    for a in range(count):
        if ns.actions[a, AC_SIDE] != side:
            continue
        if ns.actions[a, AC_KIND] == ACT_CANCEL:
            cancels += 1
            cancel = a
        else:
            news += 1
            new = a
    if ns.mi[NI_REPLACE] == 0 or cancels != 1 or news != 1:
        return -1, -1
    if ns.own[i, ns.actions[cancel, AC_ROW], OW_ORDER_STATE] not in (OS_LIVE, OS_PARTIAL):
        return -1, -1
    return cancel, new


@njit(cache=True, nogil=True)
def _lap(ns, slot, since_ns):
    """Add the time since ``since_ns`` to ``mi[slot]``; returns now."""
    now = monotonic_ns()
    ns.mi[slot] += now - since_ns
    return now


@njit(cache=True, nogil=True)
def _spread_ticks(own, i, tick):
    """Our best ask minus our best bid among working orders, in ticks (NaN unless both sides quote)."""
    bid = -1
    ask = -1
    for r in range(own.shape[1]):
        if not working_nb(own[i, r]):
            continue
        price = own[i, r, OW_PRICE]
        if own[i, r, OW_SIDE] == SIDE_BID:
            bid = max(bid, price)
        elif ask < 0 or price < ask:
            ask = price
    return np.nan if bid < 0 or ask < 0 else (ask - bid) / tick


@njit(cache=True, nogil=True)
def _publish(ns):
    """Mirror the node's figures into its metrics block and control block."""
    inst = ns.inst
    for i in range(inst.shape[0]):
        c = ns.counters[i]
        c[I_ORDERS_SENT] = inst[i, IN_ORDERS]
        c[I_ORDERS_ACCEPTED] = inst[i, IN_ACCEPTED]
        c[I_ORDERS_REJECTED] = inst[i, IN_REJECTS]
        c[I_ORDERS_CANCELED] = inst[i, IN_CANCELED]
        c[I_ORDERS_FILLED] = inst[i, IN_FILLS]
        g = ns.gauges[i]
        g[G_POSITION] = inst[i, IN_POSITION] * inst[i, IN_LOT]
        g[G_PNL] = ns.money[i, MN_REALIZED] + unrealized_nb(inst, ns.money, i)
        g[G_QUOTED_SPREAD_TICKS] = _spread_ticks(ns.own, i, inst[i, IN_TICK])
    ns.control_next_id[0] = ns.oc[OC_NEXT_ID]


@njit(cache=True, nogil=True)
def _observe(ns):
    """Complete the open probe with the offer time Python passed back; observe tick-to-trade and its stages."""
    mi = ns.mi
    if mi[NI_PROBE_OPEN] and mi[NI_OFFER_NS] > 0:
        p = ns.probes[mi[NI_PROBES] % ns.probes.shape[0]]
        p[PR_OFFERED_NS] = mi[NI_OFFER_NS]
        mi[NI_PROBES] += 1
        observe_nb(ns.hist[HIST_TICK_TO_TRADE], p[PR_OFFERED_NS] - p[PR_RECV_NS])
        strategy = p[PR_STEPPED_NS] - p[PR_BOOKED_NS] - p[PR_RISK_NS] - p[PR_ENCODE_NS]
        _observe_stage(ns, 0, p[PR_DECODED_NS] - p[PR_RECV_NS])
        _observe_stage(ns, 1, p[PR_STEP_NS] - p[PR_DECODED_NS])
        _observe_stage(ns, 2, p[PR_BOOKED_NS] - p[PR_STEP_NS])
        _observe_stage(ns, 3, strategy)
        _observe_stage(ns, 4, p[PR_RISK_NS])
        _observe_stage(ns, 5, p[PR_ENCODE_NS])
        _observe_stage(ns, 6, p[PR_OFFERED_NS] - p[PR_STEPPED_NS])
    mi[NI_PROBE_OPEN] = 0
    mi[NI_OFFER_NS] = 0


@njit(cache=True, nogil=True)
def _observe_stage(ns, stage, value):
    if 1 + stage < ns.hist.shape[0]:
        observe_nb(ns.hist[1 + stage], value)


@njit(cache=True, nogil=True)
def _close_step(ns, booked_ns, first_message, messages):
    """Record the probe of a step whose market data made it send ``messages`` (offer time comes next call)."""
    mi = ns.mi
    p = ns.probes[mi[NI_PROBES] % ns.probes.shape[0]]
    p[PR_SEQ] = mi[NI_SEQ]
    p[PR_RECV_NS] = mi[NI_RECV_NS]
    p[PR_DECODED_NS] = mi[NI_DECODED_NS]
    p[PR_STEP_NS] = mi[NI_STEP_NS]
    p[PR_BOOKED_NS] = booked_ns
    p[PR_RISK_NS] = mi[NI_RISK_NS]
    p[PR_ENCODE_NS] = mi[NI_ENCODE_NS]
    p[PR_FIRST_MESSAGE] = first_message
    p[PR_MESSAGES] = messages
    p[PR_OFFERED_NS] = 0
    p[PR_STEPPED_NS] = monotonic_ns()
    mi[NI_PROBE_OPEN] = 1


@njit(cache=True, nogil=True)
def step_nb(ns, book, events, responses, n_responses, now_ns, quote):
    """One step (see the module doc); returns the messages written to ``out``, or -1 when the book must grow
    (grow it and call again with the same events and no responses: the step resumes where it stopped)."""
    mi, inst, money = ns.mi, ns.inst, ns.money
    n = inst.shape[0]
    if mi[NI_EV_DONE] == 0:
        mi[NI_STEP_NS] = monotonic_ns()
        _observe(ns)
        for j in range(n_responses):
            rsp = responses[j]
            duplicates = ns.oc[OC_DUPLICATE]
            i = apply_response_nb(ns.own, ns.oc, inst, money, rsp)
            if i >= 0 and rsp.kind == _K_EXECUTED and ns.oc[OC_DUPLICATE] == duplicates:
                own_fill_nb(ns.flow[i], SIDE_BID if _bought(ns, i, rsp) else -SIDE_BID, np.float64(rsp.qty))
    tables = tables_nb(book)
    for e in range(mi[NI_EV_DONE], len(events)):
        if not has_room_nb(tables):
            mi[NI_EV_DONE] = e
            return -1
        ev = events[e]
        for i in range(n):
            if inst[i, IN_LOCATE] == ev.instrument:
                if ev.kind == KIND_TRADE or ev.kind == KIND_EXECUTE or ev.kind == KIND_EXECUTE_PRICE:
                    trade_stats_nb(ns.flow[i], tables, ev, money[i, MN_UNIT], np.float64(inst[i, IN_LOT]))
                ns.dirty[i] = FRESH
                ns.counters[i, I_BOOK_UPDATES] += 1
        apply_event_nb(tables, ev)
        mi[NI_RECV_NS] = ev.ts_local_ns
        mi[NI_SEQ] = ev.seq
    mi[NI_EV_DONE] = 0
    booked = monotonic_ns()
    mi[NI_RISK_NS] = 0
    mi[NI_ENCODE_NS] = 0
    halted = mi[NI_HALT] != 0 or mi[NI_STOP] != 0 or ns.rstate[RS_KILLED] != 0.0
    interval = np.int64(ns.params[0])
    k = 0
    ns.out_off[0] = 0
    fresh = False
    mi[NI_NEXT_WAKE] = NEVER
    for i in range(n):
        mid = mid_nb(tables, book_of_nb(tables, inst[i, IN_LOCATE]), money[i, MN_UNIT])
        if mid > 0.0:
            money[i, MN_MID] = mid
        if halted:
            k = _cancel_all(ns, i, k)
            ns.dirty[i] = min(ns.dirty[i], STALE)
            continue
        due = now_ns >= ns.next_call[i] if interval > 0 else ns.dirty[i] != 0
        if due:
            before = k
            k = _quote(ns, tables, i, now_ns, k, quote)
            fresh = fresh or (k > before and ns.dirty[i] == FRESH)
            ns.dirty[i] = 0
            ns.next_call[i] = now_ns + interval
        elif ns.dirty[i] == FRESH:
            ns.dirty[i] = STALE
        if interval > 0:
            mi[NI_NEXT_WAKE] = min(mi[NI_NEXT_WAKE], ns.next_call[i])
    if ns.rstate[RS_KILLED] != 0.0 and not halted:  # the loss limit tripped during this step
        for i in range(n):
            k = _cancel_all(ns, i, k)
    first_message = mi[NI_MESSAGES]
    mi[NI_MESSAGES] += k
    _publish(ns)
    if fresh:
        _close_step(ns, booked, first_message, k)
    return k


@njit(cache=True, nogil=True)
def _bought(ns, i, rsp):
    """Whether the execution ``rsp`` of instrument ``i`` was a buy of ours (looked up by client id)."""
    own = ns.own
    for r in range(own.shape[1]):
        if own[i, r, OW_ID] == rsp.user_ref_num:
            return own[i, r, OW_SIDE] == SIDE_BID
    return False
