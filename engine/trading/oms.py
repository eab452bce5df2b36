"""Order management of a trading node: the order state machine, positions, cash and PnL.

Orders live in one int64 table per instrument (``own[instrument, row, column]``) whose first columns
are the common ones of ``engine.trading.plan`` (OW_ID is the OUCH UserRefNum, our client order id), so
``plan_nb`` reads it exactly as the backtester's; the columns after ``N_OWN_COMMON`` are the live
side's. ``OW_STATE`` keeps the coarse state ``plan_nb`` needs, ``OW_ORDER_STATE`` the full one::

    PENDING_NEW ──A──► LIVE ──E──► PARTIAL ──E──► FILLED
        │  └──J──► REJECTED      │ └──X sent──► PENDING_CANCEL ──C──► CANCELED
        │                        └──U sent──► PENDING_REPLACE ──U──► REPLACED (the new row goes LIVE)
        └──X sent before A: PENDING_CANCEL (the A is still counted)      J on a cancel/replace: back to LIVE
                                        (the third refused cancel of one order writes it off as CANCELED)

A replace (OUCH Replace Order) takes a new row (PENDING_NEW, ``OW_REPLACES`` = the old row, a new
UserRefNum) and marks the old one PENDING_REPLACE. Order Replaced finishes the old row (REPLACED) and
makes the new one LIVE with the quantity the exchange states; a Rejected on the new UserRefNum puts the
old order back; executions of the old order before the Replaced count as usual, and when the old order
finishes first (filled, or canceled by the exchange) the replacement can no longer happen: its row is
closed (CANCELED) without waiting for an answer the exchange may never send. A Rejected on an order
whose cancel went out before any accept answers the order itself, so it is a rejection, not a refused
cancel.

Every OUCH response (``feeds.ouch.RESPONSE_DTYPE`` rows) is reconciled by :func:`apply_responses_nb`:
a UserRefNum we never sent (or whose row was reused) counts as *unknown*, a response that repeats a
transition already made (a second accept, an execution with the same match number, a cancel of a
finished order) as *duplicate*; neither stops anything. Terminal rows keep their id (LS_DONE) until
a new order needs the row, so late duplicates are still recognised.

Positions are in lots per instrument (``inst[i, IN_POSITION]``, ``money[i, MN_LOT]`` units each; an OUCH
quantity is ``inst[i, IN_LOT]`` per lot); money in currency in ``money``:
cash, realized PnL on an average-cost basis, the average price of the open position, the last mid,
fees paid, and the fee rates; unrealized = position x (mid - average price). Fees are fractions of the
traded value, as in the backtester (negative: a rebate): the maker rate for an execution whose OUCH
liquidity flag says it added liquidity (``MAKER_FLAGS``), the taker rate for every other (removing,
crosses); cash and realized PnL are net of them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.core import events as E
from engine.trading import layout as L

MAX_CANCEL_REJECTS = 3  # then the order is written off as gone (counted in OC_WRITTEN_OFF): no cancel storm


K_ACCEPTED, K_REPLACED, K_CANCELED, K_AIQ_CANCELED, K_EXECUTED, K_BROKEN, K_REJECTED = (ord(c) for c in "AUCDEBJ")
FIRST_ORDER_ID = 1
# OUCH 5.0 liquidity flags of executions that added liquidity (the maker fee applies; any other: taker):
# A added, J non-displayed added, k midpoint added, u reserve (non-displayed) added, e retail added,
# j retail price improving, 7 / 8 displayed adding that improves / sets the best quote, 0 supplemental,
# N passive midpoint
MAKER_FLAGS = tuple(ord(c) for c in "AJkuej780N")


def new_orders(instruments: int, rows: int) -> np.ndarray:
    """An empty order table: every row free."""
    own = np.zeros((instruments, rows, L.N_OW), np.int64)
    own[:, :, L.OW_REPLACES] = -1
    return own


def new_counters(first_id: int = FIRST_ORDER_ID) -> np.ndarray:
    """Node counters, with the next client order id (UserRefNums must rise within an OUCH session)."""
    oc = np.zeros(L.N_OC, np.int64)
    oc[L.OC_NEXT_ID] = first_id
    return oc


@njit(cache=True, nogil=True, inline="always")
def working_nb(row):
    """Whether an order (a row of the table) may still trade: sent and not finished."""
    return row[L.OW_STATE] in (L.LS_PENDING_NEW, L.LS_LIVE, L.LS_PENDING_CANCEL)


@njit(cache=True, nogil=True)
def free_row_nb(table):
    """A row for a new order: a free one, else the one that finished longest ago (an answer to a message
    that crossed its end, such as the refusal of a cancel sent as it filled, still finds it); -1 when every
    row is working."""
    oldest = -1
    for r in range(table.shape[0]):
        if table[r, L.OW_STATE] == L.LS_FREE:
            return r
        if table[r, L.OW_STATE] == L.LS_DONE and (oldest < 0 or table[r, L.OW_DONE_SEQ] < table[oldest, L.OW_DONE_SEQ]):
            oldest = r
    return oldest


@njit(cache=True, nogil=True)
def new_order_nb(own, oc, i, side, price, lots, now_ns):
    """Record a new order of instrument ``i`` (PENDING_NEW); returns its row, or -1 (table full, counted)."""
    table = own[i]
    r = free_row_nb(table)
    if r < 0:
        oc[L.OC_FULL_TABLE] += 1
        return -1
    table[r, L.OW_ID] = oc[L.OC_NEXT_ID]
    oc[L.OC_NEXT_ID] += 1
    table[r, L.OW_SIDE] = side
    table[r, L.OW_PRICE] = price
    table[r, L.OW_QTY] = lots
    table[r, L.OW_OPEN] = lots
    table[r, L.OW_STATE] = L.LS_PENDING_NEW
    table[r, L.OW_ORDER_STATE] = L.OS_PENDING_NEW
    table[r, L.OW_FILLED] = 0
    table[r, L.OW_EXCH_REF] = 0
    table[r, L.OW_SENT_NS] = now_ns
    table[r, L.OW_LAST_MATCH] = -1
    table[r, L.OW_REPLACES] = -1
    table[r, L.OW_CANCEL_REJECTS] = 0
    return r


@njit(cache=True, nogil=True)
def cancel_order_nb(own, i, r):
    """Mark row ``r`` of instrument ``i`` PENDING_CANCEL; False when it is not working or already canceling."""
    row = own[i, r]
    if row[L.OW_STATE] not in (L.LS_PENDING_NEW, L.LS_LIVE) or row[L.OW_ORDER_STATE] == L.OS_PENDING_REPLACE:
        return False
    row[L.OW_STATE] = L.LS_PENDING_CANCEL
    row[L.OW_ORDER_STATE] = L.OS_PENDING_CANCEL
    return True


@njit(cache=True, nogil=True)
def replace_order_nb(own, oc, i, r, price, lots, now_ns):
    """Ask to replace live row ``r`` by a new price and size: a new row (PENDING_NEW) linked to it; its row or -1."""
    table = own[i]
    if table[r, L.OW_ORDER_STATE] not in (L.OS_LIVE, L.OS_PARTIAL):
        return -1
    n = new_order_nb(own, oc, i, table[r, L.OW_SIDE], price, lots, now_ns)
    if n < 0:
        return -1
    table[n, L.OW_REPLACES] = r
    table[r, L.OW_STATE] = L.LS_PENDING_CANCEL
    table[r, L.OW_ORDER_STATE] = L.OS_PENDING_REPLACE
    return n


@njit(cache=True, nogil=True)
def find_order_nb(own, order_id):
    """(instrument, row) of the order with this client id, or (-1, -1)."""
    for i in range(own.shape[0]):
        for r in range(own.shape[1]):
            if own[i, r, L.OW_ID] == order_id and own[i, r, L.OW_STATE] != L.LS_FREE:
                return i, r
    return -1, -1


@njit(cache=True, nogil=True, inline="always")
def _finish(row, oc, order_state):
    oc[L.OC_FINISHED] += 1
    row[L.OW_DONE_SEQ] = oc[L.OC_FINISHED]
    row[L.OW_STATE] = L.LS_DONE
    row[L.OW_ORDER_STATE] = order_state
    row[L.OW_OPEN] = 0


@njit(cache=True, nogil=True)
def fill_nb(inst, money, i, side, lots, price, maker):
    """Book a fill of ``lots`` at ``price`` (currency): position, cash, realized PnL, average price, and the
    fee at the maker or taker rate (taken from cash and realized PnL)."""
    lot = money[i, L.MN_LOT]
    signed = lots if side == E.SIDE_BID else -lots
    pos = inst[i, L.IN_POSITION]
    fee = lots * lot * price * (money[i, L.MN_MAKER_FEE] if maker else money[i, L.MN_TAKER_FEE])
    money[i, L.MN_FEES] += fee
    money[i, L.MN_CASH] -= signed * lot * price + fee
    money[i, L.MN_REALIZED] -= fee
    if pos == 0 or (pos > 0) == (signed > 0):
        money[i, L.MN_AVG_PRICE] = (money[i, L.MN_AVG_PRICE] * abs(pos) + price * lots) / (abs(pos) + lots)
    else:
        closing = min(abs(pos), lots)
        direction = 1.0 if pos > 0 else -1.0
        money[i, L.MN_REALIZED] += closing * lot * (price - money[i, L.MN_AVG_PRICE]) * direction
        if lots > abs(pos):
            money[i, L.MN_AVG_PRICE] = price
        elif lots == abs(pos):
            money[i, L.MN_AVG_PRICE] = 0.0
    inst[i, L.IN_POSITION] = pos + signed
    inst[i, L.IN_FILLS] += 1
    inst[i, L.IN_FILLED_LOTS] += lots


@njit(cache=True, nogil=True)
def unrealized_nb(inst, money, i):
    """Position x (mid - average price), currency (0 without a mid)."""
    mid = money[i, L.MN_MID]
    if not mid > 0.0:
        return 0.0
    return inst[i, L.IN_POSITION] * money[i, L.MN_LOT] * (mid - money[i, L.MN_AVG_PRICE])


@njit(cache=True, nogil=True)
def pnl_nb(inst, money):
    """Realized + unrealized PnL over every instrument, currency."""
    total = 0.0
    for i in range(inst.shape[0]):
        total += money[i, L.MN_REALIZED] + unrealized_nb(inst, money, i)
    return total


@njit(cache=True, nogil=True)
def _restore_replaced(own, i, r):
    """A replacement (row ``r``) will not happen: the order it was to replace stays as it is."""
    old = own[i, r, L.OW_REPLACES]
    own[i, r, L.OW_REPLACES] = -1
    if old >= 0 and own[i, old, L.OW_ORDER_STATE] == L.OS_PENDING_REPLACE:
        own[i, old, L.OW_STATE] = L.LS_LIVE
        own[i, old, L.OW_ORDER_STATE] = L.OS_PARTIAL if own[i, old, L.OW_FILLED] > 0 else L.OS_LIVE


@njit(cache=True, nogil=True)
def _drop_replacement(own, oc, i, old):
    """Row ``old`` finished while being replaced: its replacement can no longer happen, close its row."""
    for r in range(own.shape[1]):
        if own[i, r, L.OW_REPLACES] == old and own[i, r, L.OW_STATE] != L.LS_DONE and own[i, r, L.OW_EXCH_REF] == 0:
            own[i, r, L.OW_REPLACES] = -1
            _finish(own[i, r], oc, L.OS_CANCELED)


@njit(cache=True, nogil=True)
def _on_reject(own, oc, inst, i, r):
    row = own[i, r]
    state = row[L.OW_ORDER_STATE]
    if state == L.OS_PENDING_NEW or (state == L.OS_PENDING_CANCEL and row[L.OW_EXCH_REF] == 0):
        # the order (or replace) itself was refused; a cancel sent before any accept is answered after it
        _restore_replaced(own, i, r)
        _finish(row, oc, L.OS_REJECTED)
        inst[i, L.IN_REJECTS] += 1
    elif state == L.OS_PENDING_CANCEL:  # the cancel was refused: the order lives on, if anything is left
        row[L.OW_CANCEL_REJECTS] += 1
        if row[L.OW_CANCEL_REJECTS] >= MAX_CANCEL_REJECTS:  # the exchange keeps saying it has no such order
            _finish(row, oc, L.OS_CANCELED)
            oc[L.OC_WRITTEN_OFF] += 1
            return
        row[L.OW_STATE] = L.LS_LIVE
        row[L.OW_ORDER_STATE] = L.OS_PARTIAL if row[L.OW_FILLED] > 0 else L.OS_LIVE
    else:
        oc[L.OC_DUPLICATE] += 1


@njit(cache=True, nogil=True)
def apply_response_nb(own, oc, inst, money, rsp):
    """Reconcile one OUCH response; returns the instrument index it concerned, or -1 (unknown, system, ...)."""
    kind = rsp.kind
    oc[L.OC_RESPONSES] += 1
    if kind not in (K_ACCEPTED, K_REPLACED, K_CANCELED, K_AIQ_CANCELED, K_EXECUTED, K_BROKEN, K_REJECTED):
        return -1  # system events
    i, r = find_order_nb(own, np.int64(rsp.user_ref_num))
    if i < 0:
        oc[L.OC_UNKNOWN] += 1
        return -1
    row = own[i, r]
    state = row[L.OW_ORDER_STATE]
    lot = inst[i, L.IN_LOT]
    if kind in (K_ACCEPTED, K_REPLACED):
        if state != L.OS_PENDING_NEW and not (state == L.OS_PENDING_CANCEL and row[L.OW_EXCH_REF] == 0):
            oc[L.OC_DUPLICATE] += 1
            return i
        row[L.OW_EXCH_REF] = np.int64(rsp.order_reference_number)
        inst[i, L.IN_ACCEPTED] += 1
        if state == L.OS_PENDING_NEW:
            row[L.OW_STATE] = L.LS_LIVE
            row[L.OW_ORDER_STATE] = L.OS_LIVE
        old = row[L.OW_REPLACES]
        if kind == K_REPLACED and old >= 0:
            row[L.OW_REPLACES] = -1
            row[L.OW_OPEN] = np.int64(rsp.qty) // lot  # the replacement's open size is what the exchange says
            if own[i, old, L.OW_ORDER_STATE] == L.OS_PENDING_REPLACE:
                _finish(own[i, old], oc, L.OS_REPLACED)
    elif kind == K_EXECUTED:
        match = np.int64(rsp.match_number)
        if row[L.OW_STATE] == L.LS_DONE or match == row[L.OW_LAST_MATCH]:
            oc[L.OC_DUPLICATE] += 1
            return i
        row[L.OW_LAST_MATCH] = match
        lots = min(np.int64(rsp.qty) // lot, row[L.OW_OPEN])
        fill_nb(
            inst, money, i, row[L.OW_SIDE], lots, rsp.price * money[i, L.MN_UNIT], rsp.liquidity_flag in MAKER_FLAGS
        )
        row[L.OW_FILLED] += lots
        row[L.OW_OPEN] -= lots
        if row[L.OW_OPEN] <= 0:
            _finish(row, oc, L.OS_FILLED)
            if state == L.OS_PENDING_REPLACE:
                _drop_replacement(own, oc, i, r)
        elif state in (L.OS_PENDING_NEW, L.OS_LIVE):
            row[L.OW_STATE] = L.LS_LIVE
            row[L.OW_ORDER_STATE] = L.OS_PARTIAL
    elif kind in (K_CANCELED, K_AIQ_CANCELED):
        if row[L.OW_STATE] == L.LS_DONE:
            oc[L.OC_DUPLICATE] += 1
            return i
        row[L.OW_OPEN] -= min(np.int64(rsp.qty) // lot, row[L.OW_OPEN])
        if row[L.OW_OPEN] <= 0:
            _finish(row, oc, L.OS_CANCELED)
            inst[i, L.IN_CANCELED] += 1
            if state == L.OS_PENDING_REPLACE:
                _drop_replacement(own, oc, i, r)
    elif kind == K_BROKEN:
        oc[L.OC_BROKEN] += 1  # a broken trade: counted for the operator; positions are not rewound
    elif row[L.OW_ORDER_STATE] == L.OS_REJECTED:
        oc[L.OC_DUPLICATE] += 1
    elif row[L.OW_STATE] != L.LS_DONE:  # (a cancel refused because a fill finished the order first: nothing to do)
        _on_reject(own, oc, inst, i, r)
    return i


@njit(cache=True, nogil=True, inline="always")
def exposure_nb(own, inst, money, out):
    """One pass over the order table: per instrument ``j`` the position (``out[0, j]``) and the units of our
    working buy and sell orders (``out[1, j]``, ``out[2, j]``: what could still fill), all in instrument units;
    returns the working orders of every instrument."""
    working = 0
    for j in range(own.shape[0]):
        buy = 0
        sell = 0
        for r in range(own.shape[1]):
            if working_nb(own[j, r]):
                working += 1
                if own[j, r, L.OW_SIDE] == E.SIDE_BID:
                    buy += own[j, r, L.OW_OPEN]
                else:
                    sell += own[j, r, L.OW_OPEN]
        lot = money[j, L.MN_LOT]
        out[0, j] = inst[j, L.IN_POSITION] * lot
        out[1, j] = buy * lot
        out[2, j] = sell * lot
    return working


@njit(cache=True, nogil=True)
def working_count_nb(own):
    """Working orders over every instrument."""
    n = 0
    for i in range(own.shape[0]):
        for r in range(own.shape[1]):
            if working_nb(own[i, r]):
                n += 1
    return n
