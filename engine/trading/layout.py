"""Column layouts of the trading tables live nodes and the backtester share (imported as ``L`` / ``TL``).

Every table is a plain int64 or float64 numpy array whose columns are named here, so a kernel reads
``own[i, r, TL.OW_STATE]`` and the Python side reads the same constant.

    own    i8[n, R, N_OW]   our orders per instrument: the common columns (OW_ID .. OW_OPEN, what
                            ``plan`` reads, the backtester's too), then the live node's (OW_ORDER_STATE ..)
    inst   i8[n, N_IN]      per instrument: locate, tick, lot, position (lots), order counters
    money  f8[n, N_MN]      per instrument, currency: cash, realized PnL, average price, mid, fees, fee rates
    oc     i8[N_OC]         the node's counters (next client order id, unknown / duplicate responses, ...)
    flow   f8[N_FS]         market flow and our fills since the strategy's previous call (``view``)
    actions i8[K, N_AC]     a plan: cancels and new orders (``plan``)
    sends  i8[K, N_SD]      what a wake sends: enters, replaces and cancels by order row (``core``)
    limits f8[N_LIMITS], rstate f8[N_RS], rlog i8[LOG_ROWS, N_LG]   pre-trade risk (``risk``)
"""

from __future__ import annotations

# --- own: the common columns of an order table (live and backtest) ------------------------------
OW_ID, OW_SIDE, OW_PRICE, OW_QTY, OW_STATE, OW_OPEN = range(6)  # OW_OPEN: lots still open as we know it
N_OWN_COMMON = 6
LS_FREE, LS_PENDING_NEW, LS_LIVE, LS_PENDING_CANCEL, LS_DONE = range(5)  # OW_STATE values

# --- own: the live node's columns (engine.trading.oms) ------------------------------------------
OW_ORDER_STATE = N_OWN_COMMON  # OS_*
OW_FILLED = N_OWN_COMMON + 1  # lots filled
OW_EXCH_REF = N_OWN_COMMON + 2  # the exchange's order reference number
OW_SENT_NS = N_OWN_COMMON + 3
OW_LAST_MATCH = N_OWN_COMMON + 4  # match number of the latest execution (duplicate detection)
OW_REPLACES = N_OWN_COMMON + 5  # row this order replaces (pending replace), -1 otherwise
OW_CANCEL_REJECTS = N_OWN_COMMON + 6  # cancels of this order the exchange refused
OW_DONE_SEQ = N_OWN_COMMON + 7  # when it finished, in finishes counted by OC_FINISHED (the oldest is reused first)
N_OW = N_OWN_COMMON + 8
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

# --- inst: per-instrument integers ---------------------------------------------------------------
IN_LOCATE, IN_TICK, IN_LOT, IN_POSITION, IN_ORDERS, IN_CANCELS, IN_FILLS, IN_REJECTS, IN_CANCELED = range(9)
IN_FILLED_LOTS, IN_ACCEPTED, IN_REPLACES = 9, 10, 11  # IN_REPLACES: Replace Orders sent (IN_ORDERS: Enter Orders)
N_IN = 12

# --- money: per-instrument currency (the fee rates are fractions of traded value) ----------------
MN_UNIT, MN_CASH, MN_REALIZED, MN_AVG_PRICE, MN_MID, MN_FEES, MN_MAKER_FEE, MN_TAKER_FEE = range(8)
MN_LOT = 8  # instrument units per lot (IN_LOT is the integer OUCH quantity per lot: shares live, 1 in a backtest)
N_MN = 9

# --- oc: node counters ---------------------------------------------------------------------------
OC_NEXT_ID, OC_UNKNOWN, OC_DUPLICATE, OC_RESPONSES, OC_BROKEN, OC_FULL_TABLE, OC_WRITTEN_OFF = range(7)
OC_FINISHED = 7  # orders finished so far (stamps OW_DONE_SEQ)
OC_CALLS = 8  # strategy calls
OC_NO_ROOM = 9  # wakes whose orders did not all fit in what the caller could take (engine.trading.core)
N_OC = 10

# --- flow since the strategy's previous call ------------------------------------------------------
FS_TRADES, FS_BUY_VOL, FS_SELL_VOL, FS_BUY_HIGH, FS_SELL_LOW, FS_LAST_TRADE = range(6)
FS_FILLS, FS_FILLED_BUY, FS_FILLED_SELL = 6, 7, 8
N_FS = 9

# --- actions: int64 rows (kind, side, price units, lots, order row) -------------------------------
AC_KIND, AC_SIDE, AC_PRICE, AC_QTY, AC_ROW = range(5)
N_AC = 5
ACT_CANCEL, ACT_NEW = 1, 2

# --- sends: what a wake decided to send, i8 rows (engine.trading.core); the caller encodes or queues them ---
SD_KIND, SD_INSTRUMENT, SD_ROW, SD_OLD = range(4)  # SD_OLD: the row a replace replaces (-1 otherwise)
N_SD = 4
SEND_ENTER, SEND_REPLACE, SEND_CANCEL = 1, 2, 3

# --- risk: the first failing check, its limits, state and log -------------------------------------
RISK_OK = -1
(
    R_KILL_SWITCH,
    R_MAX_LOSS,
    R_ORDER_QTY,
    R_ORDER_NOTIONAL,
    R_NO_REFERENCE,
    R_PRICE_COLLAR,
    R_POSITION,
    R_TOTAL_POSITION,
    R_OPEN_ORDERS,
    R_ORDER_RATE,
) = range(10)
RISK_REASONS = (
    "kill_switch",
    "max_loss",
    "order_qty",
    "order_notional",
    "no_reference",
    "price_collar",
    "position",
    "total_position",
    "open_orders",
    "order_rate",
)
(
    LM_MAX_POSITION,
    LM_MAX_TOTAL_POSITION,
    LM_MAX_ORDER_QTY,
    LM_MAX_ORDER_NOTIONAL,
    LM_PRICE_COLLAR_BPS,
    LM_MAX_OPEN_ORDERS,
    LM_MAX_ORDERS_PER_S,
    LM_MAX_LOSS,
) = range(8)
N_LIMITS = 8
RS_KILLED, RS_TOKENS, RS_LAST_NS, RS_LOGGED = range(4)  # RS_LOGGED: rows ever written to the log
N_RS = 4
LG_NS, LG_INSTRUMENT, LG_REASON, LG_SIDE, LG_PRICE, LG_LOTS = range(6)  # the rejection log's columns
N_LG = 6
LOG_ROWS = 256
