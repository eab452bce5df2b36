"""The trading node's compiled step: responses -> book -> strategy -> risk -> OUCH bytes, in ONE call.

``step_nb`` is called by ``engine.live.node`` once per duty cycle that brought market data (a batch of
event rows: every packet the receiver read this cycle), order-entry responses, a due strategy timer
or a control change. It

1. reconciles the OUCH responses through the trading core (``engine.trading.core.respond_nb``): order
   states, positions, cash, PnL, our fills in the strategy's flow;
2. applies the event rows to the L3 book, counting trades into the strategy's flow figures;
3. for each instrument: while the node is halted (a feed gap, the kill switch, shutdown) cancels
   every working order and quotes nothing; otherwise, when the strategy is due (``interval_ns``
   after its previous call, or at every batch when 0), runs the trading core's wake
   (``engine.trading.core.wake_nb``: view, strategy, plan, risk, order table; the backtester runs the
   same one) and encodes its sends as OUCH Enter Order / Replace Order / Cancel Order session packets
   into ``out`` (message k is ``out[out_off[k]:out_off[k + 1]]``), journaled before Python offers them.
   Requotes go out as Replace Orders when the node may replace (``NI_REPLACE``);
4. observes tick-to-trade into the metrics block's histograms and writes the control block's next id;
   ``publish_nb`` writes the counters and gauges (``run_step`` after each step; the compiled loop's
   caller at each housekeeping return).

The Python side offers those packets on Aeron and passes back, through ``mi``, when the first went
out. A batch of market data that made the step send leaves a *probe* row (``PR_*``): the stamps of
its way through the node (CLOCK_MONOTONIC, ``engine.core.clock``), completed with that offer time on
the next call, when tick-to-trade and its ``STAGES`` are observed into the metrics block. The
latency harness (``bench/t2t.py``) joins the probes with the exchange's own stamps.

``step_nb`` and its helpers are ``inline="always"``: the compiled loop (``engine.live.loop_nb``) splices the
whole step into its duty cycle, and the Python path and the parity replay call ``step_nb`` on its own.
As calls, each helper paid reference-count calls for the node state's arrays on every tick.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.book.book_nb import apply_event_nb, has_room_nb, tables_nb
from engine.core import events as E
from engine.core.borrow import borrow_all
from engine.core.clock import stamp_ns
from engine.core.units import NEVER
from engine.gateway import session as SP
from engine.live import layout as L
from engine.live.journal import J_FULL, J_READ, J_WRITE, KIND_SENT, append_nb
from engine.runtime import metrics as M
from engine.runtime.metrics import observe_nb
from engine.trading import layout as TL
from engine.trading.core import cancel_all_nb, mark_nb, respond_nb, wake_nb
from engine.trading.oms import unrealized_nb, working_nb
from engine.trading.view import book_of_nb, trade_stats_nb
from feeds import ouch
from feeds.bytes_nb import put_be_nb

POST_ONLY_YES = SP.POST_ONLY_YES[0]
_SIDE_BUY, _SIDE_SELL = ord(ouch.SIDE_BUY), ord(ouch.SIDE_SELL)
_TIF_DAY, _DISPLAY, _CAPACITY = ord(ouch.TIF_DAY), ord(ouch.DISPLAY_VISIBLE), ord(ouch.CAPACITY_PRINCIPAL)
_ISO, _CROSS = ord(ouch.ISO_NOT_ELIGIBLE), ord(ouch.CROSS_CONTINUOUS)
_TAG_POST_ONLY = ouch.TAG_POST_ONLY
_APPLEN_FROM_END = 2  # AppendageLength is the last field of the fixed part


@njit(cache=True, nogil=True, inline="always")
def _begin(ns, k):
    """Start message ``k`` in ``out``: the session packet type; returns where the OUCH message goes."""
    pos = ns.out_off[k]
    ns.out[pos] = SP.PKT_UNSEQUENCED
    return pos + 1


@njit(cache=True, nogil=True, inline="always")
def _room(ns, k):
    """Messages the step may still write after ``k`` (room in ``out`` and in the journal), and whether the
    journal is what limits them."""
    out_room = ns.out_off.shape[0] - 1 - k
    journal_room = ns.jmeta.shape[0] - (ns.jctl[J_WRITE] - ns.jctl[J_READ])
    return max(min(out_room, journal_room), 0), journal_room < out_room


@njit(cache=True, nogil=True, inline="always")
def _count_full(ns, journal_bound, no_room):
    """A full journal stopped orders the core wanted to send (it counted them in OC_NO_ROOM): count it."""
    if journal_bound and ns.oc[TL.OC_NO_ROOM] != no_room:
        ns.jctl[J_FULL] += 1


@njit(cache=True, nogil=True, inline="always")
def _written(ns, k, end):
    """Close message ``k`` at ``end`` and journal it (write-ahead: before Python offers it)."""
    ns.out_off[k + 1] = end
    start = ns.out_off[k]
    append_nb(ns.jmeta, ns.jdata, ns.jctl, KIND_SENT, ns.mi[L.NI_STEP_NS], 0, ns.out, start, end - start)
    return k + 1


@njit(cache=True, nogil=True, inline="always")
def _post_only(ns, end):
    """Append the PostOnly appendage to the message ending at ``end`` when the node posts only; its new end."""
    if not ns.mi[L.NI_POST_ONLY]:
        return end
    ns.out[end] = 2  # one TagValue: length 2, PostOnly, "P"
    ns.out[end + 1] = _TAG_POST_ONLY
    ns.out[end + 2] = POST_ONLY_YES
    put_be_nb(ns.out, end - _APPLEN_FROM_END, 3, 2)
    return end + 3


@njit(cache=True, nogil=True, inline="always")
def _encode(ns, k, n):
    """Encode the core's ``n`` sends rows as OUCH session packets from message ``k``; the new message count."""
    own = ns.own
    for s in range(n):
        kind = ns.sends[s, TL.SD_KIND]
        i = ns.sends[s, TL.SD_INSTRUMENT]
        row = own[i, ns.sends[s, TL.SD_ROW]]
        pos = _begin(ns, k)
        if kind == TL.SEND_CANCEL:
            k = _written(ns, k, pos + ouch.encode_cancel_nb(ns.out, pos, row[TL.OW_ID], 0))
            continue
        shares = row[TL.OW_QTY] * ns.inst[i, TL.IN_LOT]
        if kind == TL.SEND_REPLACE:
            old_id = own[i, ns.sends[s, TL.SD_OLD], TL.OW_ID]
            end = pos + ouch.encode_replace_nb(ns.out, pos, old_id, row[TL.OW_ID], shares, row[TL.OW_PRICE], _TIF_DAY,
                                               _DISPLAY, _ISO, ns.cl_ord_id)  # fmt: skip
        else:
            side = _SIDE_BUY if row[TL.OW_SIDE] == E.SIDE_BID else _SIDE_SELL
            end = pos + ouch.encode_enter_order_nb(ns.out, pos, row[TL.OW_ID], side, shares, ns.symbols[i],
                                                   row[TL.OW_PRICE], _TIF_DAY, _DISPLAY, _CAPACITY, _ISO, _CROSS,
                                                   ns.cl_ord_id)  # fmt: skip
        k = _written(ns, k, _post_only(ns, end))
    return k


@njit(cache=True, nogil=True, inline="always")
def _quote(ns, tables, i, now_ns, k, quote):
    """The trading core's wake of instrument ``i`` (strategy, plan, risk, order table), then its sends encoded."""
    b = book_of_nb(tables, ns.inst[i, TL.IN_LOCATE])
    room, journal_bound = _room(ns, k)
    no_room = ns.oc[TL.OC_NO_ROOM]
    n, risk_ns = wake_nb(ns, tables, b, i, now_ns, quote, ns.mi[L.NI_REPLACE], room, ns.mi, L.NI_CLOCK)
    _count_full(ns, journal_bound, no_room)
    if n == 0:
        return k
    ns.mi[L.NI_RISK_NS] += risk_ns
    stamp = stamp_ns(ns.mi, L.NI_CLOCK)
    k = _encode(ns, k, n)
    _lap(ns, L.NI_ENCODE_NS, stamp)
    return k


@njit(cache=True, nogil=True, inline="always")
def _cancel_all(ns, i, k):
    """Cancel every working order of instrument ``i`` not already being canceled."""
    room, journal_bound = _room(ns, k)
    no_room = ns.oc[TL.OC_NO_ROOM]
    n = cancel_all_nb(ns, i, 0, room)
    _count_full(ns, journal_bound, no_room)
    return _encode(ns, k, n)


@njit(cache=True, nogil=True, inline="always")
def _lap(ns, slot, since_ns):
    """Add the time since ``since_ns`` to ``mi[slot]``; returns now."""
    now = stamp_ns(ns.mi, L.NI_CLOCK)
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
        price = own[i, r, TL.OW_PRICE]
        if own[i, r, TL.OW_SIDE] == E.SIDE_BID:
            bid = max(bid, price)
        elif ask < 0 or price < ask:
            ask = price
    return np.nan if bid < 0 or ask < 0 else (ask - bid) / tick


@njit(cache=True, nogil=True)
def publish_nb(ns):
    """Mirror the node's counters and gauges into its metrics block: after each step on the Python path
    (``run_step``), every housekeeping return of the compiled loop (a scrape's grain, off the tick's path:
    writing the shared block on every step slowed the loop's next poll by 0.5 us)."""
    ns = borrow_all(ns)
    inst = ns.inst
    for i in range(inst.shape[0]):
        c = ns.counters[i]
        c[M.I_ORDERS_SENT] = inst[i, TL.IN_ORDERS]
        c[M.I_ORDERS_ACCEPTED] = inst[i, TL.IN_ACCEPTED]
        c[M.I_ORDERS_REJECTED] = inst[i, TL.IN_REJECTS]
        c[M.I_ORDERS_CANCELED] = inst[i, TL.IN_CANCELED]
        c[M.I_ORDERS_FILLED] = inst[i, TL.IN_FILLS]
        g = ns.gauges[i]
        g[M.G_POSITION] = inst[i, TL.IN_POSITION] * inst[i, TL.IN_LOT]
        g[M.G_PNL] = ns.money[i, TL.MN_REALIZED] + unrealized_nb(inst, ns.money, i)
        g[M.G_QUOTED_SPREAD_TICKS] = _spread_ticks(ns.own, i, inst[i, TL.IN_TICK])


@njit(cache=True, nogil=True, inline="always")
def _observe(ns):
    """Complete the open probe with the offer time Python passed back; observe tick-to-trade and its stages."""
    mi = ns.mi
    if mi[L.NI_PROBE_OPEN] and mi[L.NI_OFFER_NS] > 0:
        p = ns.probes[mi[L.NI_PROBES] % ns.probes.shape[0]]
        p[L.PR_OFFERED_NS] = mi[L.NI_OFFER_NS]
        mi[L.NI_PROBES] += 1
        observe_nb(ns.hist[M.HIST_TICK_TO_TRADE], p[L.PR_OFFERED_NS] - p[L.PR_RECV_NS])
        strategy = p[L.PR_STEPPED_NS] - p[L.PR_BOOKED_NS] - p[L.PR_RISK_NS] - p[L.PR_ENCODE_NS]
        _observe_stage(ns, 0, p[L.PR_DECODED_NS] - p[L.PR_RECV_NS])
        _observe_stage(ns, 1, p[L.PR_STEP_NS] - p[L.PR_DECODED_NS])
        _observe_stage(ns, 2, p[L.PR_BOOKED_NS] - p[L.PR_STEP_NS])
        _observe_stage(ns, 3, strategy)
        _observe_stage(ns, 4, p[L.PR_RISK_NS])
        _observe_stage(ns, 5, p[L.PR_ENCODE_NS])
        _observe_stage(ns, 6, p[L.PR_OFFERED_NS] - p[L.PR_STEPPED_NS])
    mi[L.NI_PROBE_OPEN] = 0
    mi[L.NI_OFFER_NS] = 0


@njit(cache=True, nogil=True, inline="always")
def _observe_stage(ns, stage, value):
    if 1 + stage < ns.hist.shape[0]:
        observe_nb(ns.hist[1 + stage], value)


@njit(cache=True, nogil=True, inline="always")
def _close_step(ns, booked_ns, first_message, messages):
    """Record the probe of a step whose market data made it send ``messages`` (offer time comes next call)."""
    mi = ns.mi
    p = ns.probes[mi[L.NI_PROBES] % ns.probes.shape[0]]
    p[L.PR_SEQ] = mi[L.NI_SEQ]
    p[L.PR_RECV_NS] = mi[L.NI_RECV_NS]
    p[L.PR_DECODED_NS] = mi[L.NI_DECODED_NS]
    p[L.PR_STEP_NS] = mi[L.NI_STEP_NS]
    p[L.PR_BOOKED_NS] = booked_ns
    p[L.PR_RISK_NS] = mi[L.NI_RISK_NS]
    p[L.PR_ENCODE_NS] = mi[L.NI_ENCODE_NS]
    p[L.PR_FIRST_MESSAGE] = first_message
    p[L.PR_MESSAGES] = messages
    p[L.PR_OFFERED_NS] = 0
    p[L.PR_STEPPED_NS] = stamp_ns(mi, L.NI_CLOCK)
    mi[L.NI_PROBE_OPEN] = 1


@njit(cache=True, nogil=True, inline="always")
def step_nb(ns, book, events, responses, n_responses, now_ns, quote):
    """One step (see the module doc); returns the messages written to ``out``, or -1 when the book must grow
    (grow it and call again with the same events and no responses: the step resumes where it stopped)."""
    ns = borrow_all(ns)  # the caller holds the arrays: no reference counting in the helpers below
    mi, inst, money = ns.mi, ns.inst, ns.money
    n = inst.shape[0]
    if mi[L.NI_EV_DONE] == 0:
        mi[L.NI_STEP_NS] = stamp_ns(mi, L.NI_CLOCK)
        _observe(ns)
        for j in range(n_responses):
            respond_nb(ns, responses[j])
    tables = tables_nb(book)
    for e in range(mi[L.NI_EV_DONE], len(events)):
        if not has_room_nb(tables):
            mi[L.NI_EV_DONE] = e
            return -1
        ev = events[e]
        for i in range(n):
            if inst[i, TL.IN_LOCATE] == ev.instrument:
                if ev.kind == E.KIND_TRADE or ev.kind == E.KIND_EXECUTE or ev.kind == E.KIND_EXECUTE_PRICE:
                    trade_stats_nb(ns.flow[i], tables, ev, money[i, TL.MN_UNIT], money[i, TL.MN_LOT])
                ns.dirty[i] = L.FRESH
                ns.counters[i, M.I_BOOK_UPDATES] += 1
        apply_event_nb(tables, ev)
        mi[L.NI_RECV_NS] = ev.ts_local_ns
        mi[L.NI_SEQ] = ev.seq
    mi[L.NI_EV_DONE] = 0
    booked = stamp_ns(mi, L.NI_CLOCK)
    mi[L.NI_RISK_NS] = 0
    mi[L.NI_ENCODE_NS] = 0
    halted = mi[L.NI_HALT] != 0 or mi[L.NI_STOP] != 0 or ns.rstate[TL.RS_KILLED] != 0.0
    interval = np.int64(ns.params[0])
    k = 0
    ns.out_off[0] = 0
    fresh = False
    mi[L.NI_NEXT_WAKE] = NEVER
    for i in range(n):
        mark_nb(ns, tables, book_of_nb(tables, inst[i, TL.IN_LOCATE]), i)
        if halted:
            k = _cancel_all(ns, i, k)
            ns.dirty[i] = min(ns.dirty[i], L.STALE)
            continue
        due = now_ns >= ns.next_call[i] if interval > 0 else ns.dirty[i] != 0
        if due:
            before = k
            k = _quote(ns, tables, i, now_ns, k, quote)
            fresh = fresh or (k > before and ns.dirty[i] == L.FRESH)
            ns.dirty[i] = 0
            ns.next_call[i] = now_ns + interval
        elif ns.dirty[i] == L.FRESH:
            ns.dirty[i] = L.STALE
        if interval > 0:
            mi[L.NI_NEXT_WAKE] = min(mi[L.NI_NEXT_WAKE], ns.next_call[i])
    if ns.rstate[TL.RS_KILLED] != 0.0 and not halted:  # the loss limit tripped during this step
        for i in range(n):
            k = _cancel_all(ns, i, k)
    first_message = mi[L.NI_MESSAGES]
    mi[L.NI_MESSAGES] += k
    ns.control_next_id[0] = ns.oc[TL.OC_NEXT_ID]  # at once: a restarted node continues above it
    if fresh:
        _close_step(ns, booked, first_message, k)
    return k
