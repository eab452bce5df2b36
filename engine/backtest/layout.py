"""Column layouts and the state tuple of the backtester's compiled loop (``backtest_nb``), imported as ``L``.

Our orders are rows of ``own``: the common columns of ``engine.trading.layout`` (what the plan reads),
then the exchange side's view of them. Requests and responses in flight are int64 rows (``MS_*``)
due at a time; fills and equity samples go out as rows; the run's settings are ``cf`` / ``cff`` and its
scalar state ``mi`` / ``mf``. ``run_nb`` returns an ``RC_*`` code saying which table to grow, if any.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.trading import layout as TL

# --- own: the common columns (engine.trading.layout), then the exchange's view ----------------
OW_LEAVES = TL.N_OWN_COMMON  # lots still open at the exchange
OW_EXCH = TL.N_OWN_COMMON + 1  # EX_* state at the exchange
OW_ROW = TL.N_OWN_COMMON + 2  # the phantom's row in the exchange book (L3), EMPTY otherwise
OW_INFLIGHT = TL.N_OWN_COMMON + 3  # requests and responses about this order not yet delivered
OW_SENT_NS = TL.N_OWN_COMMON + 4  # local time the order was sent
N_OW = TL.N_OWN_COMMON + 5
EX_UNSEEN, EX_RESTING, EX_DONE = 0, 1, 2

# --- messages in flight: int64 rows -----------------------------------------------------------
MS_AT, MS_KIND, MS_SLOT, MS_PRICE, MS_QTY, MS_MAKER, MS_EXCH_NS = range(7)
N_MS = 7
RQ_NEW, RQ_CANCEL = 1, 2
RS_ACCEPTED, RS_REJECTED, RS_CANCELED, RS_CANCEL_REJECTED, RS_FILL = 1, 2, 3, 4, 5

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
    CF_DENSE,  # 1: L2 books in dense depth (engine.book.depth: BacktestState.xd/ld); 0: engine.book.book_nb tables
) = range(12)
N_CF = 12
CFF_UNIT, CFF_LOT, CFF_MAKER_FEE, CFF_TAKER_FEE, CFF_QUEUE_N, CFF_SIGMA = range(6)
N_CFF = 6
QM_FIFO, QM_RISK_AVERSE, QM_POWER, QM_LOG = 0, 1, 2, 3
LAT_CONSTANT, LAT_TABLE, LAT_LOGNORMAL = 0, 1, 2

# --- scalar state -----------------------------------------------------------------------------
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

# --- why run_nb returned ----------------------------------------------------------------------
RC_DONE, RC_GROW_EXCH, RC_GROW_LOCAL, RC_FILLS_FULL, RC_EQUITY_FULL, RC_MESSAGES_FULL = range(6)


class BacktestState(NamedTuple):
    """Every array ``run_nb`` reads or writes; ``engine.backtest.backtest`` builds, grows and reads it."""

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
    actions: np.ndarray  # i8[O + 2 * MAX_LEVELS, N_AC] scratch for engine.trading.plan.plan_nb
    flow: np.ndarray  # f8[N_FS]: trades and our fills since the strategy's previous call (engine.trading.view)
    xd: np.ndarray  # i8[2, N, 2] CF_DENSE: the exchange book's depth (engine.book.depth levels)
    xdm: np.ndarray  # i8[N_DM] its meta
    ld: np.ndarray  # i8[2, N, 2] CF_DENSE: the local book's depth
    ldm: np.ndarray  # i8[N_DM]
    dprice: np.ndarray  # i8[N] CF_DENSE: the data's level prices, sorted: a depth row's price
    erank: np.ndarray  # i8[events] CF_DENSE: each event's row in the depth (EMPTY: none)
    vev: np.ndarray  # EVENT_DTYPE[1] scratch: CF_DENSE writes the local depth's top into the local book with it
