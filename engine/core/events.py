"""The one normalized market-event record that flows between feeds, book, backtest and storage.

Every feed handler (ITCH 5.0, DBN MBO, hftbacktest npz, ...) decodes into rows of ``EVENT_DTYPE``;
the book, the backtester and the Parquet store read nothing else. Timestamps are int64 nanoseconds,
prices int64 fixed-point units of the instrument's ``price_scale`` (ITCH: 1e-4 dollars), quantities
int64 lots of the instrument.

Row layout (64 bytes, little-endian, no padding surprises)::

     0  ts_exch_ns    i8   exchange timestamp (ITCH: ns since midnight unless a day is given)
     8  ts_local_ns   i8   local receive timestamp (capture time; equals ts_exch_ns for flat files)
    16  seq           u8   feed sequence number (MoldUDP64 sequence, DBN sequence, or record index)
    24  order_id      u8   order reference (LEVEL: number of orders at the level, 0 when unknown)
    32  new_order_id  u8   REPLACE: the replacing order's reference (== order_id for an in-place modify)
    40  price         i8   fixed-point price (EXECUTE: 0, the resting order's price applies)
    48  qty           i8   quantity: ADD size, EXECUTE/CANCEL amount, REPLACE new size, LEVEL total
    56  instrument    u4   instrument id (ITCH stock locate, DBN instrument_id)
    60  kind          u1   one of the ``KIND_*`` constants
    61  side          i1   ``SIDE_BID`` (+1), ``SIDE_ASK`` (-1) or ``SIDE_NONE`` (0)
    62  flags         u1   ``FLAG_*`` bits; STATUS: the raw status character
    63  src_type      u1   the source message type (ITCH letter, DBN action) for counts and debugging
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype(
    [
        ("ts_exch_ns", "<i8"),
        ("ts_local_ns", "<i8"),
        ("seq", "<u8"),
        ("order_id", "<u8"),
        ("new_order_id", "<u8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("instrument", "<u4"),
        ("kind", "u1"),
        ("side", "i1"),
        ("flags", "u1"),
        ("src_type", "u1"),
    ]
)
assert EVENT_DTYPE.itemsize == 64

# --- kinds ---------------------------------------------------------------------------------------
KIND_NONE = 0
KIND_ADD = 1  # new resting order: order_id, side, price, qty
KIND_EXECUTE = 2  # qty executed against order_id at its resting price
KIND_EXECUTE_PRICE = 3  # qty executed against order_id at `price` (ITCH C)
KIND_CANCEL = 4  # partial cancel: order_id loses qty
KIND_DELETE = 5  # order_id removed entirely
KIND_REPLACE = 6  # order_id -> new_order_id at price/qty (priority lost unless an in-place size cut)
KIND_LEVEL = 7  # L2: side/price level now holds qty (0 removes it); order_id = order count
KIND_TRADE = 8  # a print that does not touch the book (ITCH P/Q, DBN T); side = the aggressor's side
KIND_CLEAR = 9  # remove every order and level of the instrument
KIND_SNAPSHOT_BEGIN = 10
KIND_SNAPSHOT_END = 11
KIND_STATUS = 12  # trading status / system event; flags holds the raw status character
KIND_CLEAR_SIDE = 13  # L2: remove `side` levels from the touch through `price` (bids >= price, asks <= price)

KIND_NAMES = {
    KIND_NONE: "none",
    KIND_ADD: "add",
    KIND_EXECUTE: "execute",
    KIND_EXECUTE_PRICE: "execute_price",
    KIND_CANCEL: "cancel",
    KIND_DELETE: "delete",
    KIND_REPLACE: "replace",
    KIND_LEVEL: "level",
    KIND_TRADE: "trade",
    KIND_CLEAR: "clear",
    KIND_SNAPSHOT_BEGIN: "snapshot_begin",
    KIND_SNAPSHOT_END: "snapshot_end",
    KIND_STATUS: "status",
    KIND_CLEAR_SIDE: "clear_side",
}

# --- sides ---------------------------------------------------------------------------------------
SIDE_NONE = 0
SIDE_BID = 1
SIDE_ASK = -1

# --- flags ---------------------------------------------------------------------------------------
FLAG_LAST = 0x80  # last event of a packet / of a same-timestamp batch (DBN F_LAST semantics)
FLAG_SNAPSHOT = 0x20  # part of a snapshot replay rather than live flow
FLAG_NON_PRINTABLE = 0x10  # an execution that should not print to the tape (ITCH C printable = N)
# Two timelines (hftbacktest's exchange and local events): a row is in both unless one of these says not.
# (STATUS rows keep their raw character in flags; nothing reads timeline flags on them.)
FLAG_EXCH_ONLY = 0x01  # the matching engine saw it, our feed handler never did (an exchange-only row)
FLAG_LOCAL_ONLY = 0x02  # only in what we received (e.g. a snapshot we requested), not a matching-engine change

# Instrument id meaning "every instrument" (a feed-wide CLEAR or STATUS).
ALL_INSTRUMENTS = 0xFFFFFFFF


def empty_events(n: int) -> np.ndarray:
    """A zeroed event array of ``n`` rows (zero is KIND_NONE, SIDE_NONE)."""
    return np.zeros(n, dtype=EVENT_DTYPE)
