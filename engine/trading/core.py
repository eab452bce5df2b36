"""The trading core: the one wake sequence the live node and the backtester both run.

A wake of instrument ``i`` is: the view (``engine.trading.view``) -> the strategy's quotes -> the plan
(``engine.trading.plan``) -> pre-trade risk (``engine.trading.risk``) -> the order table
(``engine.trading.oms``), which records every order it lets out. Responses go the other way through
:func:`respond_nb`, which reconciles them in the same order table and counts our fills into the flow
the strategy sees next. Live and backtest differ only around this core: the live node encodes the
``sends`` rows as OUCH and offers them on Aeron, stamped by the wall clock; the backtester queues them
for its simulated exchange, in data time, and turns its simulated answers into OUCH response records.

The functions take a *state*: any tuple with the fields below (``NodeState`` and ``BacktestState``
both have them; :func:`core_tables` builds those that do not come from elsewhere)::

    own, oc, inst, money          the order table and its counters, positions, money (engine.trading.oms)
    flow, sview, params, sstate   what the strategy sees and keeps (one flow and one state row per instrument)
    quotes, depth, actions        scratch: the strategy's quotes, a depth read, the plan
    limits, rstate, rlog, risk_counts, scratch   pre-trade risk (its limits, state, log, counts, sums)
    last_call                     when each instrument's strategy was last called (-1: never)
    sends                         i8[K, N_SD] what the wake sends, by order row (SEND_ENTER / REPLACE / CANCEL)

A requote (the plan for one side cancels exactly one order the exchange has accepted and enters exactly
one) goes out as one Replace Order when the caller allows replaces: the same risk checks, with the
replaced order's quantity out of the worst-case position. When risk refuses it, the old order is still
canceled, as planned. Cancels are never refused: they only reduce risk.

Everything here is ``inline="always"``: it is spliced into the live loop and the backtest loop, where a call
would pay a reference count for every array of the state on every tick.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.clock import stamp_ns
from engine.trading import layout as L
from engine.trading.oms import (
    K_EXECUTED,
    apply_response_nb,
    cancel_order_nb,
    exposure_nb,
    find_order_nb,
    new_order_nb,
    pnl_nb,
    replace_order_nb,
    unrealized_nb,
    working_nb,
)
from engine.trading.plan import new_actions, plan_nb
from engine.trading.risk import RiskConfig, check_order_nb, new_risk_log, new_risk_state
from engine.trading.view import fill_view_nb, mid_nb, new_flow, own_fill_nb, reset_flow_nb
from strategies.api import DEPTH, MAX_LEVELS, Strategy, new_quotes, new_view


def core_tables(instruments: int, order_rows: int, strategy: Strategy, params: Mapping[str, float] | np.ndarray | None,
                risk: RiskConfig) -> dict[str, np.ndarray]:  # fmt: skip
    """The core's arrays besides the order tables and the risk counts (which the caller owns): a dict to
    unpack into the caller's state tuple."""
    limits = risk.limits()
    param_array = params if isinstance(params, np.ndarray) else strategy.param_array(params)
    return {
        "flow": new_flow(instruments),
        "sview": new_view(),
        "params": param_array,
        "sstate": np.zeros((instruments, strategy.state_size), np.float64),
        "quotes": new_quotes(),
        "depth": np.zeros((DEPTH, 3), np.int64),
        "actions": new_actions(order_rows),
        "limits": limits,
        "rstate": new_risk_state(limits),
        "rlog": new_risk_log(),
        "scratch": np.zeros((3, instruments), np.float64),
        "last_call": np.full(instruments, -1, np.int64),
        "sends": np.zeros((order_rows + 2 * MAX_LEVELS, L.N_SD), np.int64),
    }


@njit(cache=True, nogil=True, inline="always")
def respond_nb(st, rsp):
    """Reconcile one OUCH response record; (instrument or -1, lots it filled: > 0 bought, < 0 sold, 0 none)."""
    filled = np.int64(0)
    before = np.int64(0)
    i = -1
    if rsp.kind == K_EXECUTED:
        i, _ = find_order_nb(st.own, np.int64(rsp.user_ref_num))
        if i >= 0:
            before = st.inst[i, L.IN_POSITION]
    j = apply_response_nb(st.own, st.oc, st.inst, st.money, rsp)
    if i >= 0 and j == i:
        filled = st.inst[i, L.IN_POSITION] - before
        if filled != 0:
            own_fill_nb(st.flow[i], E.SIDE_BID if filled > 0 else E.SIDE_ASK, abs(filled) * st.money[i, L.MN_LOT])
    return j, filled


@njit(cache=True, nogil=True, inline="always")
def mark_nb(st, tables, b, i):
    """Mark instrument ``i`` to the mid of its book ``b`` (kept when a side is empty); returns that mid (or NaN)."""
    mid = mid_nb(tables, b, st.money[i, L.MN_UNIT])
    if mid > 0.0:
        st.money[i, L.MN_MID] = mid
    return mid


@njit(cache=True, nogil=True, inline="always")
def _send(st, n, kind, i, r, old):
    s = st.sends[n]
    s[L.SD_KIND] = kind
    s[L.SD_INSTRUMENT] = i
    s[L.SD_ROW] = r
    s[L.SD_OLD] = old
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _cancel(st, i, n, r):
    """A cancel of row ``r`` of instrument ``i`` unless it is not working or already being canceled."""
    if cancel_order_nb(st.own, i, r):
        st.inst[i, L.IN_CANCELS] += 1
        return _send(st, n, L.SEND_CANCEL, i, r, -1)
    return n


@njit(cache=True, nogil=True, inline="always")
def cancel_all_nb(st, i, n, room):
    """Cancel every working order of instrument ``i`` (sends from row ``n``, at most ``room`` rows); the new count."""
    for r in range(st.own.shape[1]):
        if working_nb(st.own[i, r]):
            if n >= room:
                st.oc[L.OC_NO_ROOM] += 1
                break
            n = _cancel(st, i, n, r)
    return n


@njit(cache=True, nogil=True, inline="always")
def _requote(st, i, count, side, replace):
    """(cancel, new) action indices when the plan for ``side`` cancels exactly one order the exchange has
    accepted and enters exactly one, and replaces are allowed; else (-1, -1)."""
    actions = st.actions
    cancel = new = -1
    cancels = news = 0
    for a in range(count):
        if actions[a, L.AC_SIDE] != side:
            continue
        if actions[a, L.AC_KIND] == L.ACT_CANCEL:
            cancels += 1
            cancel = a
        else:
            news += 1
            new = a
    if not replace or cancels != 1 or news != 1:
        return -1, -1
    if st.own[i, actions[cancel, L.AC_ROW], L.OW_ORDER_STATE] not in (L.OS_LIVE, L.OS_PARTIAL):
        return -1, -1
    return cancel, new


@njit(cache=True, nogil=True, inline="always")
def _act(st, i, now_ns, count, replace, room, working):
    """Turn the plan's ``count`` actions into checked orders in the table and ``sends`` rows; how many rows.
    ``scratch`` holds the exposure (``exposure_nb``) and ``working`` the working orders, as of the wake."""
    inst, money, own, scratch, actions = st.inst, st.money, st.own, st.scratch, st.actions
    lot = money[i, L.MN_LOT]
    unit = money[i, L.MN_UNIT]
    mid = money[i, L.MN_MID]
    pnl = pnl_nb(inst, money)
    bid_cancel, bid_new = _requote(st, i, count, E.SIDE_BID, replace)
    ask_cancel, ask_new = _requote(st, i, count, E.SIDE_ASK, replace)
    n = 0
    for a in range(count):
        if n >= room:
            st.oc[L.OC_NO_ROOM] += 1
            break
        if a in (bid_cancel, ask_cancel):  # goes out as the replace of the side's new order
            continue
        if actions[a, L.AC_KIND] == L.ACT_CANCEL:
            n = _cancel(st, i, n, actions[a, L.AC_ROW])
            continue
        side = actions[a, L.AC_SIDE]
        price = actions[a, L.AC_PRICE]
        lots = actions[a, L.AC_QTY]
        old = actions[bid_cancel, L.AC_ROW] if a == bid_new else actions[ask_cancel, L.AC_ROW] if a == ask_new else -1
        col = 1 if side == E.SIDE_BID else 2
        freed = own[i, old, L.OW_OPEN] * lot if old >= 0 else 0.0  # a replaced order's quantity leaves
        scratch[col, i] -= freed
        others = working - 1 if old >= 0 else working  # a replace adds no working order
        reason = check_order_nb(st.limits, st.rstate, st.risk_counts, st.rlog, scratch[0], scratch[1], scratch[2], i,
                                side, price * unit, lots * lot, mid, others, pnl, now_ns, price, lots)  # fmt: skip
        if reason != L.RISK_OK:
            r = -1
        elif old >= 0:
            r = replace_order_nb(own, st.oc, i, old, price, lots, now_ns)
        else:
            r = new_order_nb(own, st.oc, i, side, price, lots, now_ns)
        if r < 0:
            scratch[col, i] += freed
            if old >= 0:  # no replace: the old order still goes, as the plan asked
                if n >= room:
                    st.oc[L.OC_NO_ROOM] += 1
                    break
                n = _cancel(st, i, n, old)
            continue
        if old >= 0:
            n = _send(st, n, L.SEND_REPLACE, i, r, old)
            inst[i, L.IN_REPLACES] += 1
        else:
            n = _send(st, n, L.SEND_ENTER, i, r, -1)
            inst[i, L.IN_ORDERS] += 1
            working += 1
        scratch[col, i] += lots * lot
    return n


@njit(cache=True, nogil=True, inline="always")
def wake_nb(st, tables, b, i, now_ns, quote, replace, room, clock, at):
    """Wake the strategy of instrument ``i`` on its book ``b`` of ``tables`` and send what it wants.

    Returns (sends rows written, at most ``room``; nanoseconds from the strategy's answer to the last
    row, read from the stamp clock ``clock[at:]``, 0 when ``at`` < 0). With the kill switch engaged it
    cancels every working order instead and calls nothing.
    """
    inst, money, own = st.inst, st.money, st.own
    if st.rstate[L.RS_KILLED] != 0.0:
        return cancel_all_nb(st, i, 0, room), np.int64(0)
    unit = money[i, L.MN_UNIT]
    lot = money[i, L.MN_LOT]
    tick = inst[i, L.IN_TICK]
    elapsed = 0.0 if st.last_call[i] < 0 else np.float64(now_ns - st.last_call[i])
    equity = money[i, L.MN_REALIZED] + unrealized_nb(inst, money, i)
    scratch = st.scratch
    working = exposure_nb(own, inst, money, scratch)  # for the view and for risk: one pass over the table
    fill_view_nb(st.sview, tables, b, st.depth, tick * unit, unit, lot, scratch[0, i], scratch[1, i], scratch[2, i],
                 elapsed, st.flow[i], equity)  # fmt: skip
    wanted = quote(now_ns, st.sview, st.params, st.sstate[i], st.quotes)
    reset_flow_nb(st.flow[i])
    st.last_call[i] = now_ns
    st.oc[L.OC_CALLS] += 1
    started = stamp_ns(clock, at) if at >= 0 else np.int64(0)
    count = plan_nb(own[i], st.quotes, wanted, tick, unit, lot, st.actions)
    n = _act(st, i, now_ns, count, replace, room, working) if count > 0 else 0
    return n, (stamp_ns(clock, at) - started if at >= 0 else np.int64(0))
