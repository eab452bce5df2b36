"""Order management of a trading node: the order state machine, positions, cash and PnL.

Orders live in one int64 table per instrument (``own[instrument, row, column]``) whose first columns
are the common ones of ``engine.quoting_nb`` (OW_ID is the OUCH UserRefNum, our client order id), so
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

Positions are in lots per instrument (``inst[i, IN_POSITION]``); money in currency in ``money``:
cash, realized PnL on an average-cost basis, the average price of the open position, the last mid,
fees paid, and the fee rates; unrealized = position x (mid - average price). Fees are fractions of the
traded value, as in the backtester (negative: a rebate): the maker rate for an execution whose OUCH
liquidity flag says it added liquidity (``MAKER_FLAGS``), the taker rate for every other (removing,
crosses); cash and realized PnL are net of them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.events import SIDE_BID
from engine.quoting_nb import (
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
)

# --- the live columns of an order row -----------------------------------------------------------
OW_ORDER_STATE = N_OWN_COMMON  # OS_*
OW_FILLED = N_OWN_COMMON + 1  # lots filled
OW_EXCH_REF = N_OWN_COMMON + 2  # the exchange's order reference number
OW_SENT_NS = N_OWN_COMMON + 3
OW_LAST_MATCH = N_OWN_COMMON + 4  # match number of the latest execution (duplicate detection)
OW_REPLACES = N_OWN_COMMON + 5  # row this order replaces (pending replace), -1 otherwise
OW_CANCEL_REJECTS = N_OWN_COMMON + 6  # cancels of this order the exchange refused
N_OW = N_OWN_COMMON + 7
MAX_CANCEL_REJECTS = 3  # then the order is written off as gone (counted in OC_WRITTEN_OFF): no cancel storm
(
    OS_NONE,
    OS_PENDING_NEW,
    OS_LIVE,
    OS_PARTIAL,
    OS_FILLED,
    OS_CANCELED,
    OS_REJECTED,
    OS_PENDING_CANCEL,
    OS_PENDING_REPLACE,
    OS_REPLACED,
) = range(10)

# --- per-instrument integers: inst[i, IN_*] -------------------------------------------------------
IN_LOCATE, IN_TICK, IN_LOT, IN_POSITION, IN_ORDERS, IN_CANCELS, IN_FILLS, IN_REJECTS, IN_CANCELED = range(9)
IN_FILLED_LOTS, IN_ACCEPTED, IN_REPLACES = 9, 10, 11  # IN_REPLACES: Replace Orders sent (IN_ORDERS: Enter Orders)
N_IN = 12
# --- per-instrument money: money[i, MN_*] (currency; the fee rates are fractions of traded value) ----
MN_UNIT, MN_CASH, MN_REALIZED, MN_AVG_PRICE, MN_MID, MN_FEES, MN_MAKER_FEE, MN_TAKER_FEE = range(8)
N_MN = 8
# --- node counters: oc[OC_*] -----------------------------------------------------------------------
OC_NEXT_ID, OC_UNKNOWN, OC_DUPLICATE, OC_RESPONSES, OC_BROKEN, OC_FULL_TABLE, OC_WRITTEN_OFF = range(7)
N_OC = 7

K_ACCEPTED, K_REPLACED, K_CANCELED, K_AIQ_CANCELED, K_EXECUTED, K_BROKEN, K_REJECTED = (ord(c) for c in "AUCDEBJ")
FIRST_ORDER_ID = 1
# OUCH 5.0 liquidity flags of executions that added liquidity (the maker fee applies; any other: taker):
# A added, J non-displayed added, k midpoint added, u reserve (non-displayed) added, e retail added,
# j retail price improving, 7 / 8 displayed adding that improves / sets the best quote, 0 supplemental,
# N passive midpoint
MAKER_FLAGS = tuple(ord(c) for c in "AJkuej780N")


def new_orders(instruments: int, rows: int) -> np.ndarray:
    """An empty order table: every row free."""
    own = np.zeros((instruments, rows, N_OW), np.int64)
    own[:, :, OW_REPLACES] = -1
    return own


def new_counters(first_id: int = FIRST_ORDER_ID) -> np.ndarray:
    """Node counters, with the next client order id (UserRefNums must rise within an OUCH session)."""
    oc = np.zeros(N_OC, np.int64)
    oc[OC_NEXT_ID] = first_id
    return oc


@njit(cache=True, nogil=True, inline="always")
def working_nb(row):
    """Whether an order (a row of the table) may still trade: sent and not finished."""
    return row[OW_STATE] in (LS_PENDING_NEW, LS_LIVE, LS_PENDING_CANCEL)


@njit(cache=True, nogil=True)
def free_row_nb(table):
    """A row for a new order (a free one, else a finished one), or -1 when every row is working."""
    done = -1
    for r in range(table.shape[0]):
        if table[r, OW_STATE] == LS_FREE:
            return r
        if done < 0 and table[r, OW_STATE] == LS_DONE:
            done = r
    return done


@njit(cache=True, nogil=True)
def new_order_nb(own, oc, i, side, price, lots, now_ns):
    """Record a new order of instrument ``i`` (PENDING_NEW); returns its row, or -1 (table full, counted)."""
    table = own[i]
    r = free_row_nb(table)
    if r < 0:
        oc[OC_FULL_TABLE] += 1
        return -1
    table[r, OW_ID] = oc[OC_NEXT_ID]
    oc[OC_NEXT_ID] += 1
    table[r, OW_SIDE] = side
    table[r, OW_PRICE] = price
    table[r, OW_QTY] = lots
    table[r, OW_OPEN] = lots
    table[r, OW_STATE] = LS_PENDING_NEW
    table[r, OW_ORDER_STATE] = OS_PENDING_NEW
    table[r, OW_FILLED] = 0
    table[r, OW_EXCH_REF] = 0
    table[r, OW_SENT_NS] = now_ns
    table[r, OW_LAST_MATCH] = -1
    table[r, OW_REPLACES] = -1
    table[r, OW_CANCEL_REJECTS] = 0
    return r


@njit(cache=True, nogil=True)
def cancel_order_nb(own, i, r):
    """Mark row ``r`` of instrument ``i`` PENDING_CANCEL; False when it is not working or already canceling."""
    row = own[i, r]
    if row[OW_STATE] not in (LS_PENDING_NEW, LS_LIVE) or row[OW_ORDER_STATE] == OS_PENDING_REPLACE:
        return False
    row[OW_STATE] = LS_PENDING_CANCEL
    row[OW_ORDER_STATE] = OS_PENDING_CANCEL
    return True


@njit(cache=True, nogil=True)
def replace_order_nb(own, oc, i, r, price, lots, now_ns):
    """Ask to replace live row ``r`` by a new price and size: a new row (PENDING_NEW) linked to it; its row or -1."""
    table = own[i]
    if table[r, OW_ORDER_STATE] not in (OS_LIVE, OS_PARTIAL):
        return -1
    n = new_order_nb(own, oc, i, table[r, OW_SIDE], price, lots, now_ns)
    if n < 0:
        return -1
    table[n, OW_REPLACES] = r
    table[r, OW_STATE] = LS_PENDING_CANCEL
    table[r, OW_ORDER_STATE] = OS_PENDING_REPLACE
    return n


@njit(cache=True, nogil=True)
def find_order_nb(own, order_id):
    """(instrument, row) of the order with this client id, or (-1, -1)."""
    for i in range(own.shape[0]):
        for r in range(own.shape[1]):
            if own[i, r, OW_ID] == order_id and own[i, r, OW_STATE] != LS_FREE:
                return i, r
    return -1, -1


@njit(cache=True, nogil=True, inline="always")
def _finish(row, order_state):
    row[OW_STATE] = LS_DONE
    row[OW_ORDER_STATE] = order_state
    row[OW_OPEN] = 0


@njit(cache=True, nogil=True)
def fill_nb(inst, money, i, side, lots, price, maker):
    """Book a fill of ``lots`` at ``price`` (currency): position, cash, realized PnL, average price, and the
    fee at the maker or taker rate (taken from cash and realized PnL)."""
    lot = inst[i, IN_LOT]
    signed = lots if side == SIDE_BID else -lots
    pos = inst[i, IN_POSITION]
    fee = lots * lot * price * (money[i, MN_MAKER_FEE] if maker else money[i, MN_TAKER_FEE])
    money[i, MN_FEES] += fee
    money[i, MN_CASH] -= signed * lot * price + fee
    money[i, MN_REALIZED] -= fee
    if pos == 0 or (pos > 0) == (signed > 0):
        money[i, MN_AVG_PRICE] = (money[i, MN_AVG_PRICE] * abs(pos) + price * lots) / (abs(pos) + lots)
    else:
        closing = min(abs(pos), lots)
        direction = 1.0 if pos > 0 else -1.0
        money[i, MN_REALIZED] += closing * lot * (price - money[i, MN_AVG_PRICE]) * direction
        if lots > abs(pos):
            money[i, MN_AVG_PRICE] = price
        elif lots == abs(pos):
            money[i, MN_AVG_PRICE] = 0.0
    inst[i, IN_POSITION] = pos + signed
    inst[i, IN_FILLS] += 1
    inst[i, IN_FILLED_LOTS] += lots


@njit(cache=True, nogil=True)
def unrealized_nb(inst, money, i):
    """Position x (mid - average price), currency (0 without a mid)."""
    mid = money[i, MN_MID]
    if not mid > 0.0:
        return 0.0
    return inst[i, IN_POSITION] * inst[i, IN_LOT] * (mid - money[i, MN_AVG_PRICE])


@njit(cache=True, nogil=True)
def pnl_nb(inst, money):
    """Realized + unrealized PnL over every instrument, currency."""
    total = 0.0
    for i in range(inst.shape[0]):
        total += money[i, MN_REALIZED] + unrealized_nb(inst, money, i)
    return total


@njit(cache=True, nogil=True)
def _restore_replaced(own, i, r):
    """A replacement (row ``r``) will not happen: the order it was to replace stays as it is."""
    old = own[i, r, OW_REPLACES]
    own[i, r, OW_REPLACES] = -1
    if old >= 0 and own[i, old, OW_ORDER_STATE] == OS_PENDING_REPLACE:
        own[i, old, OW_STATE] = LS_LIVE
        own[i, old, OW_ORDER_STATE] = OS_PARTIAL if own[i, old, OW_FILLED] > 0 else OS_LIVE


@njit(cache=True, nogil=True)
def _drop_replacement(own, i, old):
    """Row ``old`` finished while being replaced: its replacement can no longer happen, close its row."""
    for r in range(own.shape[1]):
        if own[i, r, OW_REPLACES] == old and own[i, r, OW_STATE] != LS_DONE and own[i, r, OW_EXCH_REF] == 0:
            own[i, r, OW_REPLACES] = -1
            _finish(own[i, r], OS_CANCELED)


@njit(cache=True, nogil=True)
def _on_reject(own, oc, inst, i, r):
    row = own[i, r]
    state = row[OW_ORDER_STATE]
    if state == OS_PENDING_NEW or (state == OS_PENDING_CANCEL and row[OW_EXCH_REF] == 0):
        # the order (or replace) itself was refused; a cancel sent before any accept is answered after it
        _restore_replaced(own, i, r)
        _finish(row, OS_REJECTED)
        inst[i, IN_REJECTS] += 1
    elif state == OS_PENDING_CANCEL:  # the cancel was refused: the order lives on, if anything is left
        row[OW_CANCEL_REJECTS] += 1
        if row[OW_CANCEL_REJECTS] >= MAX_CANCEL_REJECTS:  # the exchange keeps saying it has no such order
            _finish(row, OS_CANCELED)
            oc[OC_WRITTEN_OFF] += 1
            return
        row[OW_STATE] = LS_LIVE
        row[OW_ORDER_STATE] = OS_PARTIAL if row[OW_FILLED] > 0 else OS_LIVE
    else:
        oc[OC_DUPLICATE] += 1


@njit(cache=True, nogil=True)
def apply_response_nb(own, oc, inst, money, rsp):
    """Reconcile one OUCH response; returns the instrument index it concerned, or -1 (unknown, system, ...)."""
    kind = rsp.kind
    oc[OC_RESPONSES] += 1
    if kind not in (K_ACCEPTED, K_REPLACED, K_CANCELED, K_AIQ_CANCELED, K_EXECUTED, K_BROKEN, K_REJECTED):
        return -1  # system events
    i, r = find_order_nb(own, np.int64(rsp.user_ref_num))
    if i < 0:
        oc[OC_UNKNOWN] += 1
        return -1
    row = own[i, r]
    state = row[OW_ORDER_STATE]
    lot = inst[i, IN_LOT]
    if kind in (K_ACCEPTED, K_REPLACED):
        if state != OS_PENDING_NEW and not (state == OS_PENDING_CANCEL and row[OW_EXCH_REF] == 0):
            oc[OC_DUPLICATE] += 1
            return i
        row[OW_EXCH_REF] = np.int64(rsp.order_reference_number)
        inst[i, IN_ACCEPTED] += 1
        if state == OS_PENDING_NEW:
            row[OW_STATE] = LS_LIVE
            row[OW_ORDER_STATE] = OS_LIVE
        old = row[OW_REPLACES]
        if kind == K_REPLACED and old >= 0:
            row[OW_REPLACES] = -1
            row[OW_OPEN] = np.int64(rsp.qty) // lot  # the replacement's open size is what the exchange says
            if own[i, old, OW_ORDER_STATE] == OS_PENDING_REPLACE:
                _finish(own[i, old], OS_REPLACED)
    elif kind == K_EXECUTED:
        match = np.int64(rsp.match_number)
        if row[OW_STATE] == LS_DONE or match == row[OW_LAST_MATCH]:
            oc[OC_DUPLICATE] += 1
            return i
        row[OW_LAST_MATCH] = match
        lots = min(np.int64(rsp.qty) // lot, row[OW_OPEN])
        fill_nb(inst, money, i, row[OW_SIDE], lots, rsp.price * money[i, MN_UNIT], rsp.liquidity_flag in MAKER_FLAGS)
        row[OW_FILLED] += lots
        row[OW_OPEN] -= lots
        if row[OW_OPEN] <= 0:
            _finish(row, OS_FILLED)
            if state == OS_PENDING_REPLACE:
                _drop_replacement(own, i, r)
        elif state in (OS_PENDING_NEW, OS_LIVE):
            row[OW_STATE] = LS_LIVE
            row[OW_ORDER_STATE] = OS_PARTIAL
    elif kind in (K_CANCELED, K_AIQ_CANCELED):
        if row[OW_STATE] == LS_DONE:
            oc[OC_DUPLICATE] += 1
            return i
        row[OW_OPEN] -= min(np.int64(rsp.qty) // lot, row[OW_OPEN])
        if row[OW_OPEN] <= 0:
            _finish(row, OS_CANCELED)
            inst[i, IN_CANCELED] += 1
            if state == OS_PENDING_REPLACE:
                _drop_replacement(own, i, r)
    elif kind == K_BROKEN:
        oc[OC_BROKEN] += 1  # a broken trade: counted for the operator; positions are not rewound
    elif row[OW_ORDER_STATE] == OS_REJECTED:
        oc[OC_DUPLICATE] += 1
    elif row[OW_STATE] != LS_DONE:  # (a cancel refused because a fill finished the order first: nothing to do)
        _on_reject(own, oc, inst, i, r)
    return i


@njit(cache=True, nogil=True)
def open_units_nb(own, inst, i, side):
    """Units of our working orders of instrument ``i`` on ``side`` (what could still fill)."""
    total = 0
    for r in range(own.shape[1]):
        if own[i, r, OW_SIDE] == side and working_nb(own[i, r]):
            total += own[i, r, OW_OPEN]
    return np.float64(total * inst[i, IN_LOT])


@njit(cache=True, nogil=True)
def working_count_nb(own):
    """Working orders over every instrument."""
    n = 0
    for i in range(own.shape[0]):
        for r in range(own.shape[1]):
            if working_nb(own[i, r]):
                n += 1
    return n
