"""The simulated exchange's records and tables: what goes into the matching engine and what comes out.

``REQUEST_DTYPE`` rows enter ``matching_nb.submit_nb`` (from the OUCH server, the background flow, the
replay flow or a test), ``REPORT_DTYPE`` rows come back with the ITCH 5.0 records of every book change.
The matcher keeps, beside the book's tables (``engine.book.layout``), the :class:`MatchState` tables::

    refs      [O, 2]  owner, client reference of each order row (parallel to the book's orders)
    inst      [B, 3]  tick (price units), lot (shares), halted flag of each instrument
    symbols   [B, 8]  ITCH stock symbol bytes, space padded
    mpid_own  [K]     owners whose adds carry an MPID (ITCH F instead of A) ...
    mpid_code [K, 4]  ... and that MPID
    meta      [4]     next exchange order reference, last match number, post-only mode, self-trade mode
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from feeds.itch import MESSAGE_LENGTHS

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
