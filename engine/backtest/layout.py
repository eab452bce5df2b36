"""Column layouts and the state tuple of the backtester's compiled loop (``backtest_nb``), imported as ``L``.

Our orders are the trading core's (``engine.trading.layout``: ``own``, ``oc``, ``inst``, ``money``, one
instrument). The simulated exchange keeps its own record of them in ``xo`` (``XO_*``), as a venue keeps
its own book: it learns of an order only when the request arrives, and answers with OUCH-like responses.
Requests and responses in flight are int64 rows (``MS_*``), delivered in the order they were sent (an
order-entry session is ordered); fills and equity samples go out as rows; the run's settings are ``cf`` /
``cff`` and its scalar state ``mi`` / ``mf``. ``run_nb`` returns an ``RC_*`` code saying which table to grow.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# --- xo: our orders as the simulated exchange knows them ----------------------------------------
XO_ID, XO_SIDE, XO_PRICE, XO_LEAVES, XO_STATE, XO_ROW, XO_REF = range(7)  # XO_ID: our UserRefNum
N_XO = 7  # XO_ROW: the phantom's row in the exchange book (L3), EMPTY otherwise; XO_REF: the exchange's reference
EX_FREE, EX_RESTING = 0, 1

# --- messages in flight: int64 rows -----------------------------------------------------------
MS_AT, MS_KIND, MS_ID, MS_SIDE, MS_PRICE, MS_QTY, MS_OLD_ID, MS_MAKER, MS_EXCH_NS, MS_REF, MS_MATCH = range(11)
N_MS = 11  # MS_OLD_ID: the order a replace request replaces; MS_REF / MS_MATCH: reference and match numbers
RQ_NEW, RQ_CANCEL, RQ_REPLACE = 1, 2, 3  # requests; responses use the OUCH message types (engine.trading.oms.K_*)

# --- fills out: int64 columns (the fee is in BacktestState.fill_fee) --------------------------
FL_LOCAL_NS, FL_EXCH_NS, FL_ORDER, FL_SIDE, FL_PRICE, FL_QTY, FL_MAKER = range(7)
N_FL = 7

# --- equity samples: float64 columns (the time is in BacktestState.eq_ts) ---------------------
EQ_EQUITY, EQ_POSITION, EQ_MID, EQ_FEES, EQ_CASH = range(5)
EQ_BID, EQ_ASK = 5, 6  # our quotes: the best buy and sell price we have resting at the exchange (NaN: none)
N_EQ = 7

# --- configuration ----------------------------------------------------------------------------
(
    CF_INSTRUMENT,
    CF_L3,  # 1: exact FIFO with phantom orders; 0: an L2 queue model
    CF_QUEUE,  # QM_*
    CF_PARTIAL,  # 1: partial fills
    CF_GTC,  # 1: a marketable order takes liquidity; 0: post-only (rejected when it would cross)
    CF_LATENCY,  # LAT_*
    CF_ENTRY_NS,
    CF_RESP_NS,
    CF_FEED_NS,  # < 0: the data's local timestamps; >= 0: exchange time plus this
    CF_SAMPLE_NS,  # equity sampling period
    CF_DENSE,  # 1: L2 books in dense depth (engine.book.depth: BacktestState.xd/ld); 0: engine.book.book_nb tables
    CF_REPLACE,  # 1: requotes go out as Replace requests (the live node's default); 0: cancel + new
) = range(12)
N_CF = 12
CFF_QUEUE_N, CFF_SIGMA = range(2)  # (price unit, lot and fees are the trading core's: money[0, MN_*])
N_CFF = 2
QM_FIFO, QM_RISK_AVERSE, QM_POWER, QM_LOG = 0, 1, 2, 3
LAT_CONSTANT, LAT_TABLE, LAT_LOGNORMAL = 0, 1, 2

# --- scalar state -----------------------------------------------------------------------------
(
    MI_IE,  # next exchange-timeline event
    MI_IL,  # next local-timeline event
    MI_NREQ,
    MI_NRSP,
    MI_REQ_AT,  # arrival time of the latest request sent (a later one never arrives before it)
    MI_RSP_AT,  # the same for responses
    MI_NFILL,
    MI_NEQ,
    MI_NEXT_WAKE,
    MI_LAST_SAMPLE,
    MI_NOW,  # local time of the latest step
    MI_EX_EVENTS,
    MI_LO_EVENTS,
    MI_RESTING,  # our orders resting at the exchange
    MI_BID_LO,  # lowest and highest price of our resting bids (NEVER, -NEVER when none)
    MI_BID_HI,
    MI_ASK_LO,  # the same for our resting asks
    MI_ASK_HI,
    MI_VIEW_STALE,  # CF_DENSE: the local depth changed since the view book was last written
    MI_REF,  # the exchange's last order reference number
    MI_MATCH,  # its last match number
) = range(21)
N_MI = 21
(
    MF_VOLUME,  # units traded
    MF_VALUE,  # currency traded
) = range(2)
N_MF = 2

# --- why run_nb returned ----------------------------------------------------------------------
RC_DONE, RC_GROW_EXCH, RC_GROW_LOCAL, RC_FILLS_FULL, RC_EQUITY_FULL, RC_MESSAGES_FULL = range(6)


class BacktestState(NamedTuple):
    """Every array ``run_nb`` reads or writes; ``engine.backtest.backtest`` builds, grows and reads it. The fields
    from ``own`` to ``sends`` are the trading core's (``engine.trading.core``), for one instrument."""

    own: np.ndarray  # i8[1, O, TL.N_OW] our orders (engine.trading.oms)
    oc: np.ndarray  # i8[TL.N_OC]
    inst: np.ndarray  # i8[1, TL.N_IN]
    money: np.ndarray  # f8[1, TL.N_MN]
    flow: np.ndarray  # f8[1, TL.N_FS]: trades and our fills since the strategy's previous call
    sview: np.ndarray  # f8[VIEW_LEN]: what the strategy sees
    params: np.ndarray  # f8[P]
    sstate: np.ndarray  # f8[1, strategy state]
    quotes: np.ndarray  # f8[MAX_LEVELS, 4]
    depth: np.ndarray  # i8[DEPTH, 3] scratch for depth reads
    actions: np.ndarray  # i8[O + 2 * MAX_LEVELS, TL.N_AC] scratch for the plan
    limits: np.ndarray  # f8[TL.N_LIMITS] pre-trade risk, as live
    rstate: np.ndarray  # f8[TL.N_RS]
    rlog: np.ndarray  # i8[TL.LOG_ROWS, TL.N_LG]
    risk_counts: np.ndarray  # i8[1, len(TL.RISK_REASONS)]
    scratch: np.ndarray  # f8[3, 1]
    last_call: np.ndarray  # i8[1]
    sends: np.ndarray  # i8[K, TL.N_SD]
    xo: np.ndarray  # i8[X, N_XO] our orders at the exchange
    queue: np.ndarray  # f8[X, 2]: lots ahead of the order, traded at its price since the last depth change
    req: np.ndarray  # i8[R, N_MS] requests on their way to the exchange
    rsp: np.ndarray  # i8[R, N_MS] responses on their way back
    record: np.ndarray  # feeds.ouch.RESPONSE_DTYPE[1]: the response being delivered, as the live node reads one
    fills: np.ndarray  # i8[F, N_FL]
    fill_fee: np.ndarray  # f8[F]
    eq_ts: np.ndarray  # i8[S]
    eq: np.ndarray  # f8[S, N_EQ]
    cf: np.ndarray  # i8[N_CF]
    cff: np.ndarray  # f8[N_CFF]
    lat: np.ndarray  # i8[K, 3]: time, entry ns, response ns (LAT_TABLE)
    mi: np.ndarray  # i8[N_MI]
    mf: np.ndarray  # f8[N_MF]
    xd: np.ndarray  # i8[2, N, 2] CF_DENSE: the exchange book's depth (engine.book.depth levels)
    xdm: np.ndarray  # i8[N_DM] its meta
    ld: np.ndarray  # i8[2, N, 2] CF_DENSE: the local book's depth
    ldm: np.ndarray  # i8[N_DM]
    dprice: np.ndarray  # i8[N] CF_DENSE: the data's level prices, sorted: a depth row's price
    erank: np.ndarray  # i8[events] CF_DENSE: each event's row in the depth (EMPTY: none)
    vev: np.ndarray  # EVENT_DTYPE[1] scratch: CF_DENSE writes the local depth's top into the local book with it
