"""NASDAQ TotalView-ITCH 5.0: message layouts, a Python codec, and the Numba decoder of the hot path.

Every message starts with the same 11-byte header; all integers are big-endian (network order),
alpha fields are left-justified ASCII padded with spaces, ``Price(4)`` fields are unsigned 32-bit
integers with 4 implied decimals (the engine's fixed-point price as is) and ``Price(8)`` fields
64-bit with 8 implied decimals. Timestamps are 48-bit nanoseconds since midnight::

     0  message_type     1  alpha
     1  stock_locate     2  u16   0 for market-wide messages
     3  tracking_number  2  u16
     5  timestamp        6  u48   ns since midnight (here: timestamp_hi u16 + timestamp_lo u32)
    11  ...body...

The numpy dtypes in :data:`MESSAGE_DTYPES` are the one source of truth: the Python codec
(:func:`encode`, :func:`decode_message`) reads and writes through them and :data:`MESSAGE_LENGTHS`
is their item sizes. A flat file is a sequence of ``[u16 big-endian length][message]`` records
(:func:`frame`); :func:`decode_flat_nb` turns a buffer of them into ``engine.core.events`` rows. The
Numba encoders ``encode_*_nb`` write the order messages (A/F, E/C, X, D, U, P) of hot producers
(the synthetic day, the matching engine) as such records straight into a byte buffer.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.borrow import borrow
from engine.core.instruments import Instrument
from feeds.bytes_nb import put_be_nb, put_bytes_nb, u16_nb, u32_nb, u48_nb, u64_nb
from feeds.errors import FeedError
from feeds.record import fill_record, read_record

SPEC_VERSION = "5.0"

HEADER_FIELDS = [
    ("message_type", "S1"),
    ("stock_locate", ">u2"),
    ("tracking_number", ">u2"),
    ("timestamp_hi", ">u2"),
    ("timestamp_lo", ">u4"),
]
HEADER_BYTES = 11
LOCATE_OFFSET = 1
TIMESTAMP_OFFSET = 5
TIMESTAMP_MAX = (1 << 48) - 1

# Message bodies, from offset 11. Offsets in the comments are from the start of the message.
_BODIES: dict[str, list[tuple[str, str]]] = {
    # S System Event: 11 event_code(1) = 12
    "S": [("event_code", "S1")],
    # R Stock Directory: 11 stock(8) 19 market_category(1) 20 financial_status_indicator(1)
    #   21 round_lot_size u32 25 round_lots_only(1) 26 issue_classification(1) 27 issue_sub_type(2)
    #   29 authenticity(1) 30 short_sale_threshold_indicator(1) 31 ipo_flag(1)
    #   32 luld_reference_price_tier(1) 33 etp_flag(1) 34 etp_leverage_factor u32
    #   38 inverse_indicator(1) = 39
    "R": [
        ("stock", "S8"),
        ("market_category", "S1"),
        ("financial_status_indicator", "S1"),
        ("round_lot_size", ">u4"),
        ("round_lots_only", "S1"),
        ("issue_classification", "S1"),
        ("issue_sub_type", "S2"),
        ("authenticity", "S1"),
        ("short_sale_threshold_indicator", "S1"),
        ("ipo_flag", "S1"),
        ("luld_reference_price_tier", "S1"),
        ("etp_flag", "S1"),
        ("etp_leverage_factor", ">u4"),
        ("inverse_indicator", "S1"),
    ],
    # H Stock Trading Action: 11 stock(8) 19 trading_state(1) 20 reserved(1) 21 reason(4) = 25
    "H": [("stock", "S8"), ("trading_state", "S1"), ("reserved", "S1"), ("reason", "S4")],
    # Y Reg SHO Short Sale Price Test Restricted Indicator: 11 stock(8) 19 reg_sho_action(1) = 20
    "Y": [("stock", "S8"), ("reg_sho_action", "S1")],
    # L Market Participant Position: 11 mpid(4) 15 stock(8) 23 primary_market_maker(1)
    #   24 market_maker_mode(1) 25 market_participant_state(1) = 26
    "L": [
        ("mpid", "S4"),
        ("stock", "S8"),
        ("primary_market_maker", "S1"),
        ("market_maker_mode", "S1"),
        ("market_participant_state", "S1"),
    ],
    # V MWCB Decline Level: 11 level_1 Price(8) 19 level_2 Price(8) 27 level_3 Price(8) = 35
    "V": [("level_1", ">u8"), ("level_2", ">u8"), ("level_3", ">u8")],
    # W MWCB Status: 11 breached_level(1) = 12
    "W": [("breached_level", "S1")],
    # K IPO Quoting Period Update: 11 stock(8) 19 ipo_quotation_release_time u32 (s since midnight)
    #   23 ipo_quotation_release_qualifier(1) 24 ipo_price Price(4) = 28
    "K": [
        ("stock", "S8"),
        ("ipo_quotation_release_time", ">u4"),
        ("ipo_quotation_release_qualifier", "S1"),
        ("ipo_price", ">u4"),
    ],
    # J LULD Auction Collar: 11 stock(8) 19 auction_collar_reference_price Price(4)
    #   23 upper_auction_collar_price Price(4) 27 lower_auction_collar_price Price(4)
    #   31 auction_collar_extension u32 = 35
    "J": [
        ("stock", "S8"),
        ("auction_collar_reference_price", ">u4"),
        ("upper_auction_collar_price", ">u4"),
        ("lower_auction_collar_price", ">u4"),
        ("auction_collar_extension", ">u4"),
    ],
    # h Operational Halt: 11 stock(8) 19 market_code(1) 20 operational_halt_action(1) = 21
    "h": [("stock", "S8"), ("market_code", "S1"), ("operational_halt_action", "S1")],
    # A Add Order (no MPID): 11 order_reference_number u64 19 buy_sell_indicator(1) 20 shares u32
    #   24 stock(8) 32 price Price(4) = 36
    "A": [
        ("order_reference_number", ">u8"),
        ("buy_sell_indicator", "S1"),
        ("shares", ">u4"),
        ("stock", "S8"),
        ("price", ">u4"),
    ],
    # F Add Order with MPID: as A, then 36 attribution(4) = 40
    "F": [
        ("order_reference_number", ">u8"),
        ("buy_sell_indicator", "S1"),
        ("shares", ">u4"),
        ("stock", "S8"),
        ("price", ">u4"),
        ("attribution", "S4"),
    ],
    # E Order Executed: 11 order_reference_number u64 19 executed_shares u32 23 match_number u64 = 31
    "E": [("order_reference_number", ">u8"), ("executed_shares", ">u4"), ("match_number", ">u8")],
    # C Order Executed With Price: as E, then 31 printable(1) 32 execution_price Price(4) = 36
    "C": [
        ("order_reference_number", ">u8"),
        ("executed_shares", ">u4"),
        ("match_number", ">u8"),
        ("printable", "S1"),
        ("execution_price", ">u4"),
    ],
    # X Order Cancel: 11 order_reference_number u64 19 cancelled_shares u32 = 23
    "X": [("order_reference_number", ">u8"), ("cancelled_shares", ">u4")],
    # D Order Delete: 11 order_reference_number u64 = 19
    "D": [("order_reference_number", ">u8")],
    # U Order Replace: 11 original_order_reference_number u64 19 new_order_reference_number u64
    #   27 shares u32 31 price Price(4) = 35
    "U": [
        ("original_order_reference_number", ">u8"),
        ("new_order_reference_number", ">u8"),
        ("shares", ">u4"),
        ("price", ">u4"),
    ],
    # P Trade (non-cross): 11 order_reference_number u64 19 buy_sell_indicator(1) 20 shares u32
    #   24 stock(8) 32 price Price(4) 36 match_number u64 = 44
    "P": [
        ("order_reference_number", ">u8"),
        ("buy_sell_indicator", "S1"),
        ("shares", ">u4"),
        ("stock", "S8"),
        ("price", ">u4"),
        ("match_number", ">u8"),
    ],
    # Q Cross Trade: 11 shares u64 19 stock(8) 27 cross_price Price(4) 31 match_number u64
    #   39 cross_type(1) = 40
    "Q": [("shares", ">u8"), ("stock", "S8"), ("cross_price", ">u4"), ("match_number", ">u8"), ("cross_type", "S1")],
    # B Broken Trade: 11 match_number u64 = 19
    "B": [("match_number", ">u8")],
    # I Net Order Imbalance Indicator: 11 paired_shares u64 19 imbalance_shares u64
    #   27 imbalance_direction(1) 28 stock(8) 36 far_price Price(4) 40 near_price Price(4)
    #   44 current_reference_price Price(4) 48 cross_type(1) 49 price_variation_indicator(1) = 50
    "I": [
        ("paired_shares", ">u8"),
        ("imbalance_shares", ">u8"),
        ("imbalance_direction", "S1"),
        ("stock", "S8"),
        ("far_price", ">u4"),
        ("near_price", ">u4"),
        ("current_reference_price", ">u4"),
        ("cross_type", "S1"),
        ("price_variation_indicator", "S1"),
    ],
    # N Retail Price Improvement Indicator: 11 stock(8) 19 interest_flag(1) = 20
    "N": [("stock", "S8"), ("interest_flag", "S1")],
    # O Direct Listing with Capital Raise Price Discovery: 11 stock(8) 19 open_eligibility_status(1)
    #   20 minimum_allowable_price Price(4) 24 maximum_allowable_price Price(4)
    #   28 near_execution_price Price(4) 32 near_execution_time u64 (ns since midnight)
    #   40 lower_price_range_collar Price(4) 44 upper_price_range_collar Price(4) = 48
    "O": [
        ("stock", "S8"),
        ("open_eligibility_status", "S1"),
        ("minimum_allowable_price", ">u4"),
        ("maximum_allowable_price", ">u4"),
        ("near_execution_price", ">u4"),
        ("near_execution_time", ">u8"),
        ("lower_price_range_collar", ">u4"),
        ("upper_price_range_collar", ">u4"),
    ],
}

MESSAGE_DTYPES: dict[str, np.dtype] = {t: np.dtype(HEADER_FIELDS + body) for t, body in _BODIES.items()}


def _lengths_by_type_byte() -> np.ndarray:
    """int64[256]: message length by type byte, 0 for a type the spec does not define."""
    lengths = np.zeros(256, np.int64)
    for msg_type, dtype in MESSAGE_DTYPES.items():
        lengths[ord(msg_type)] = dtype.itemsize
    return lengths


MESSAGE_LENGTHS = _lengths_by_type_byte()
MAX_RECORD_BYTES = 2 + 0xFFFF  # the longest record a u16 length prefix can declare
RESYNC_WINDOW = MAX_RECORD_BYTES - 16  # bytes after a bad record searched for the next good one, at most

# --- return codes of the jitted decoders --------------------------------------------------------
ERR_UNKNOWN_TYPE = -1  # the type byte is not an ITCH 5.0 message type
ERR_BAD_LENGTH = -2  # the length differs from the type's length
ERR_ZERO_LENGTH = -3  # a record of length 0 (no type byte)
ERR_TRUNCATED = -4  # the message runs past the end of the buffer

STATUS_DONE = 0  # every record up to `end` decoded
STATUS_NEED_MORE = 1  # stopped at an incomplete trailing record (pos = its offset)
STATUS_OUT_FULL = 2  # the output array is full (pos = the next record)
# Negative statuses are the ERR_* code of the bad record at pos.

# --- stock directory ------------------------------------------------------------------------------
# One row per stock locate, filled by R (Stock Directory) and H (trading state) messages. Symbols
# are stored without their space padding; the other alpha fields keep the raw ITCH character.
STOCK_DIRECTORY_DTYPE = np.dtype(
    [
        ("round_lot", "u4"),
        ("etp_leverage_factor", "u4"),
        ("symbol", "S8"),
        ("seen", "u1"),  # 1 once an R message announced this locate
        ("market_category", "S1"),
        ("financial_status", "S1"),
        ("round_lots_only", "S1"),
        ("issue_classification", "S1"),
        ("issue_sub_type", "S2"),
        ("authenticity", "S1"),
        ("short_sale_threshold", "S1"),
        ("ipo_flag", "S1"),
        ("luld_tier", "S1"),
        ("etp_flag", "S1"),
        ("inverse", "S1"),
        ("trading_state", "S1"),  # last H trading state (H halted, P paused, Q quotation only, T trading)
    ]
)
STOCK_LOCATES = 1 << 16
_DIR_ITEMSIZE = STOCK_DIRECTORY_DTYPE.itemsize


def _dir_offset(name: str) -> int:
    return int(STOCK_DIRECTORY_DTYPE.fields[name][1])


def _msg_offset(msg_type: str, name: str) -> int:
    return int(MESSAGE_DTYPES[msg_type].fields[name][1])


_DIR_SYMBOL = _dir_offset("symbol")
_DIR_MARKET_CATEGORY = _dir_offset("market_category")
_DIR_INVERSE = _dir_offset("inverse")
_DIR_TRADING_STATE = _dir_offset("trading_state")
_R_STOCK = _msg_offset("R", "stock")
_R_ROUND_LOT = _msg_offset("R", "round_lot_size")
_R_ETP_LEVERAGE = _msg_offset("R", "etp_leverage_factor")
_R_INVERSE = _msg_offset("R", "inverse_indicator")
_H_TRADING_STATE = _msg_offset("H", "trading_state")
# Field offsets the event decoder reads; A, F and P share their leading layout, as E and C do.
_ORDER_REF = _msg_offset("A", "order_reference_number")
_ADD_SIDE = _msg_offset("A", "buy_sell_indicator")
_ADD_SHARES = _msg_offset("A", "shares")
_ADD_PRICE = _msg_offset("A", "price")
_ADD_STOCK = _msg_offset("A", "stock")
_F_MPID = _msg_offset("F", "attribution")
_EXEC_MATCH = _msg_offset("E", "match_number")
_P_MATCH = _msg_offset("P", "match_number")
_EXEC_SHARES = _msg_offset("E", "executed_shares")
_C_PRINTABLE = _msg_offset("C", "printable")
_C_PRICE = _msg_offset("C", "execution_price")
_X_SHARES = _msg_offset("X", "cancelled_shares")
_U_NEW_REF = _msg_offset("U", "new_order_reference_number")
_U_SHARES = _msg_offset("U", "shares")
_U_PRICE = _msg_offset("U", "price")
_Q_SHARES = _msg_offset("Q", "shares")
_Q_PRICE = _msg_offset("Q", "cross_price")
_S_EVENT_CODE = _msg_offset("S", "event_code")
assert {_msg_offset(t, "order_reference_number") for t in "AFPECXD"} == {_ORDER_REF}
assert _msg_offset("U", "original_order_reference_number") == _ORDER_REF
for _t in "FP":
    assert _msg_offset(_t, "buy_sell_indicator") == _ADD_SIDE and _msg_offset(_t, "shares") == _ADD_SHARES
    assert _msg_offset(_t, "price") == _ADD_PRICE and _msg_offset(_t, "stock") == _ADD_STOCK
assert _msg_offset("C", "executed_shares") == _EXEC_SHARES and _msg_offset("C", "match_number") == _EXEC_MATCH
# R's characters from market_category to etp_flag (skipping the u32 round lot size) map one to one
# onto the directory's run from market_category to etp_flag.
_R_CHAR_RUNS = (
    (_msg_offset("R", "market_category"), _DIR_MARKET_CATEGORY, 2),
    (_msg_offset("R", "round_lots_only"), _dir_offset("round_lots_only"), 9),
)
assert _dir_offset("financial_status") == _DIR_MARKET_CATEGORY + 1
assert _dir_offset("etp_flag") == _dir_offset("round_lots_only") + 8


def new_stock_directory() -> np.ndarray:
    """A zeroed stock directory, one row per possible stock locate."""
    return np.zeros(STOCK_LOCATES, dtype=STOCK_DIRECTORY_DTYPE)


ITCH_PRICE_SCALE = 10_000  # Price(4): 4 implied decimals
ITCH_TICK_SIZE = 0.01  # Reg NMS minimum increment for stocks at or above $1


class StockDirectory:
    """The stocks a session has announced (R messages): the Numba ``table`` plus its Instruments.

    One session split across files shares one directory, so that a later file's orders still know
    the symbols the first file announced.
    """

    def __init__(self) -> None:
        self.table = new_stock_directory()
        self.instruments: dict[int, Instrument] = {}

    def announce(self) -> None:
        """Add an Instrument for every locate the table gained since the last call."""
        fresh = np.flatnonzero(self.table["seen"] != 0)
        for locate in fresh:
            if int(locate) not in self.instruments:
                self.instruments[int(locate)] = Instrument(
                    instrument_id=int(locate),
                    symbol=self.table["symbol"][locate].decode("latin-1"),
                    price_scale=ITCH_PRICE_SCALE,
                    tick_size=ITCH_TICK_SIZE,
                    lot_size=1,
                )


# --- Python codec (tests, tools, the simulated exchange; not the hot path) ------------------------
_TIMESTAMP_PARTS = ("timestamp_hi", "timestamp_lo")


def encode(msg_type: str, **fields: int | str) -> bytes:
    """One ITCH message of ``msg_type`` from its fields by name.

    ``timestamp`` is one int (ns since midnight); alpha fields take a str, padded with spaces;
    fields left out are 0 or spaces. Unknown field names and out-of-range values raise ValueError.
    """
    dtype = MESSAGE_DTYPES.get(msg_type)
    if dtype is None:
        raise ValueError(f"unknown ITCH {SPEC_VERSION} message type {msg_type!r}")
    timestamp = int(fields.pop("timestamp", 0))
    if not 0 <= timestamp <= TIMESTAMP_MAX:
        raise ValueError(f"timestamp {timestamp} does not fit in 48 bits")
    record = fill_record(dtype, msg_type, fields, reserved=_TIMESTAMP_PARTS)
    record["timestamp_hi"] = timestamp >> 32
    record["timestamp_lo"] = timestamp & 0xFFFFFFFF
    return record.tobytes()


# A plain listed common stock, for the R messages of simulated sessions (the synthetic day, the exchange).
COMMON_STOCK_DIRECTORY = {
    "market_category": "Q",
    "financial_status_indicator": "N",
    "round_lots_only": "N",
    "issue_classification": "C",
    "issue_sub_type": "Z",
    "authenticity": "P",
    "short_sale_threshold_indicator": "N",
    "ipo_flag": "N",
    "luld_reference_price_tier": "1",
    "etp_flag": "N",
    "inverse_indicator": "N",
}


def encode_stock_directory(locate: int, timestamp: int, stock: str, round_lot_size: int) -> bytes:
    """An R message announcing a plain common stock (``COMMON_STOCK_DIRECTORY`` flags)."""
    return encode(
        "R",
        stock_locate=locate,
        timestamp=timestamp,
        stock=stock,
        round_lot_size=round_lot_size,
        **COMMON_STOCK_DIRECTORY,
    )


def decode_message(data: bytes) -> dict[str, int | str]:
    """All fields of one ITCH message: ints, ``timestamp`` as one int, alpha fields as str.

    Alpha fields lose their space padding (ITCH alpha fields are left-justified). Bad input raises
    :class:`FeedError`.
    """
    if not data:
        raise FeedError("zero-length message")
    msg_type = chr(data[0])
    dtype = MESSAGE_DTYPES.get(msg_type)
    if dtype is None:
        raise FeedError(f"unknown message type {msg_type!r} (0x{data[0]:02x})")
    if len(data) != dtype.itemsize:
        raise FeedError(f"length {len(data)} for type {msg_type!r} (expects {dtype.itemsize})")
    record = np.frombuffer(data, dtype)[0]
    fields: dict[str, int | str] = {}
    for name, value in read_record(record, skip=("timestamp_lo",)).items():
        if name == "timestamp_hi":  # the 48-bit timestamp, in its header position
            fields["timestamp"] = (int(value) << 32) | int(record["timestamp_lo"])
        else:
            fields[name] = value
    return fields


def frame(messages: Iterable[bytes]) -> bytes:
    """A flat ITCH file body: each message behind its u16 big-endian length."""
    out = bytearray()
    for message in messages:
        if not 0 < len(message) <= 0xFFFF:
            raise ValueError(f"cannot frame a message of {len(message)} bytes")
        out += len(message).to_bytes(2, "big")
        out += message
    return bytes(out)


# --- Numba hot path -------------------------------------------------------------------------------
_A, _F, _E, _C, _X, _D, _U = (ord(c) for c in "AFECXDU")
_P, _Q, _H, _S, _R = (ord(c) for c in "PQHSR")
_BUY, _SELL, _NO, _SPACE = ord("B"), ord("S"), ord("N"), ord(" ")
# Per-message helpers are inlined at Numba IR level: a plain call passes every array as ~7 scalars,
# and that call per message cost a third of the decoder's throughput.
_INLINE = "always"


@njit(cache=True, nogil=True, inline=_INLINE)
def _side_nb(c):
    if c == _BUY:
        return E.SIDE_BID
    if c == _SELL:
        return E.SIDE_ASK
    return E.SIDE_NONE


@njit(cache=True, nogil=True, inline=_INLINE)
def _put_nb(out, n, kind, ts, ts_local, seq, instrument, src_type, order_id, new_order_id, price, qty, side, flags):
    row = out[n]
    row.ts_exch_ns = ts
    row.ts_local_ns = ts_local
    row.seq = seq
    row.order_id = order_id
    row.new_order_id = new_order_id
    row.price = price
    row.qty = qty
    row.instrument = instrument
    row.kind = kind
    row.side = side
    row.flags = flags
    row.src_type = src_type


@njit(cache=True, nogil=True)
def _stock_directory_nb(buf, p, directory, locate):
    """Fill the directory row of ``locate`` from the R message at buf[p]."""
    row = directory[locate]
    row.round_lot = u32_nb(buf, p + _R_ROUND_LOT)
    row.etp_leverage_factor = u32_nb(buf, p + _R_ETP_LEVERAGE)
    row.seen = 1
    raw = directory.view(np.uint8)
    base = locate * _DIR_ITEMSIZE
    width = 8  # the symbol without its right space padding
    while width > 0 and buf[p + _R_STOCK + width - 1] == _SPACE:
        width -= 1
    for i in range(8):
        raw[base + _DIR_SYMBOL + i] = buf[p + _R_STOCK + i] if i < width else 0
    for src, dst, count in _R_CHAR_RUNS:
        for i in range(count):
            raw[base + dst + i] = buf[p + src + i]
    raw[base + _DIR_INVERSE] = buf[p + _R_INVERSE]


@njit(cache=True, nogil=True, inline=_INLINE)
def _decode_one_nb(buf, pos, length, out, n, counts, directory, seq, ts_local_ns):
    """The body of :func:`decode_message_nb`, inlined into the record loops."""
    if length <= 0:
        return ERR_ZERO_LENGTH
    if pos + length > buf.shape[0]:
        return ERR_TRUNCATED
    t = np.int64(buf[pos])
    expected = MESSAGE_LENGTHS[t]
    if expected == 0:
        return ERR_UNKNOWN_TYPE
    if length != expected:
        return ERR_BAD_LENGTH
    counts[t] += 1
    locate = u16_nb(buf, pos + LOCATE_OFFSET)
    ts = u48_nb(buf, pos + TIMESTAMP_OFFSET)
    ts_local = ts_local_ns if ts_local_ns > 0 else ts
    # the row's fields; a message type sets what it carries
    instrument = np.uint32(locate)
    ref = np.uint64(0)
    new_ref = np.uint64(0)
    price = np.int64(0)
    qty = np.int64(0)
    side = E.SIDE_NONE
    flags = 0
    if t in (_A, _F, _P):
        kind = E.KIND_TRADE if t == _P else E.KIND_ADD
        ref = u64_nb(buf, pos + _ORDER_REF)
        price = u32_nb(buf, pos + _ADD_PRICE)
        qty = u32_nb(buf, pos + _ADD_SHARES)
        side = _side_nb(buf[pos + _ADD_SIDE])
        if t == _P:  # P names the resting (non-displayed) order's side; trade rows carry the aggressor's
            side = -side
    elif t == _D:
        kind = E.KIND_DELETE
        ref = u64_nb(buf, pos + _ORDER_REF)
    elif t == _U:
        kind = E.KIND_REPLACE
        ref = u64_nb(buf, pos + _ORDER_REF)
        new_ref = u64_nb(buf, pos + _U_NEW_REF)
        price = u32_nb(buf, pos + _U_PRICE)
        qty = u32_nb(buf, pos + _U_SHARES)
    elif t in (_E, _C):
        kind = E.KIND_EXECUTE if t == _E else E.KIND_EXECUTE_PRICE
        ref = u64_nb(buf, pos + _ORDER_REF)
        qty = u32_nb(buf, pos + _EXEC_SHARES)
        if t == _C:
            price = u32_nb(buf, pos + _C_PRICE)
            flags = E.FLAG_NON_PRINTABLE if buf[pos + _C_PRINTABLE] == _NO else 0
    elif t == _X:
        kind = E.KIND_CANCEL
        ref = u64_nb(buf, pos + _ORDER_REF)
        qty = u32_nb(buf, pos + _X_SHARES)
    elif t == _Q:
        kind = E.KIND_TRADE
        price = u32_nb(buf, pos + _Q_PRICE)
        qty = np.int64(u64_nb(buf, pos + _Q_SHARES))
    elif t == _H:
        kind = E.KIND_STATUS
        flags = buf[pos + _H_TRADING_STATE]
        directory.view(np.uint8)[locate * _DIR_ITEMSIZE + _DIR_TRADING_STATE] = flags
    elif t == _S:
        kind = E.KIND_STATUS
        instrument = np.uint32(E.ALL_INSTRUMENTS)
        flags = buf[pos + _S_EVENT_CODE]
    else:  # validated and counted, but no book event
        if t == _R:
            _stock_directory_nb(buf, pos, directory, locate)
        return 0
    _put_nb(out, n, kind, ts, ts_local, seq, instrument, t, ref, new_ref, price, qty, side, flags)
    return 1


@njit(cache=True, nogil=True, inline="always")
def begin_record_nb(buf, pos, msg_type, locate, ts_ns):
    """Write a flat-file record's u16 length and the message header at buf[pos]; returns the body's offset.

    For Numba encoders (the synthetic day, the matching engine): they fill the fields after the header.
    """
    put_be_nb(buf, pos, MESSAGE_LENGTHS[msg_type], 2)
    m = pos + 2
    buf[m] = msg_type
    put_be_nb(buf, m + LOCATE_OFFSET, locate, 2)
    put_be_nb(buf, m + LOCATE_OFFSET + 2, 0, 2)  # tracking number
    put_be_nb(buf, m + TIMESTAMP_OFFSET, ts_ns, 6)
    return m


# --- Numba encoders: one writer per order message type ---------------------------------------------
# Each writes one [u16 length][message] record at buf[pos] (the caller checks the room) and returns
# the offset after it. Sides are the event sides (> 0 buy, else sell); stocks and MPIDs are byte rows.
@njit(cache=True, nogil=True, inline=_INLINE)
def encode_add_nb(buf, pos, ts_ns, locate, ref, side, shares, stock, price, mpids, mpid_index):
    """A, or F attributed to ``mpids[mpid_index]`` (a u1[K, 4] table) when the index is not negative."""
    attributed = mpid_index >= 0
    m = begin_record_nb(buf, pos, _F if attributed else _A, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, ref, 8)
    buf[m + _ADD_SIDE] = _BUY if side > 0 else _SELL
    put_be_nb(buf, m + _ADD_SHARES, shares, 4)
    put_bytes_nb(buf, m + _ADD_STOCK, stock)
    put_be_nb(buf, m + _ADD_PRICE, price, 4)
    if attributed:
        put_bytes_nb(buf, m + _F_MPID, mpids[mpid_index])
    return m + MESSAGE_LENGTHS[_F if attributed else _A]


@njit(cache=True, nogil=True, inline=_INLINE)
def encode_executed_nb(buf, pos, ts_ns, locate, ref, shares, match, printable, price):
    """E, or C (``printable`` character and execution price) when ``price`` is positive."""
    priced = price > 0
    m = begin_record_nb(buf, pos, _C if priced else _E, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, ref, 8)
    put_be_nb(buf, m + _EXEC_SHARES, shares, 4)
    put_be_nb(buf, m + _EXEC_MATCH, match, 8)
    if priced:
        buf[m + _C_PRINTABLE] = printable
        put_be_nb(buf, m + _C_PRICE, price, 4)
    return m + MESSAGE_LENGTHS[_C if priced else _E]


@njit(cache=True, nogil=True, inline=_INLINE)
def encode_cancel_nb(buf, pos, ts_ns, locate, ref, shares):
    """X: ``shares`` of order ``ref`` cancelled."""
    m = begin_record_nb(buf, pos, _X, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, ref, 8)
    put_be_nb(buf, m + _X_SHARES, shares, 4)
    return m + MESSAGE_LENGTHS[_X]


@njit(cache=True, nogil=True, inline=_INLINE)
def encode_delete_nb(buf, pos, ts_ns, locate, ref):
    """D: order ``ref`` deleted."""
    m = begin_record_nb(buf, pos, _D, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, ref, 8)
    return m + MESSAGE_LENGTHS[_D]


@njit(cache=True, nogil=True, inline=_INLINE)
def encode_replace_nb(buf, pos, ts_ns, locate, old_ref, new_ref, shares, price):
    """U: order ``old_ref`` replaced by ``new_ref`` with this size and price."""
    m = begin_record_nb(buf, pos, _U, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, old_ref, 8)
    put_be_nb(buf, m + _U_NEW_REF, new_ref, 8)
    put_be_nb(buf, m + _U_SHARES, shares, 4)
    put_be_nb(buf, m + _U_PRICE, price, 4)
    return m + MESSAGE_LENGTHS[_U]


@njit(cache=True, nogil=True, inline=_INLINE)
def encode_trade_nb(buf, pos, ts_ns, locate, side, shares, stock, price, match):
    """P: a trade of a non-displayed order (which carries no reference)."""
    m = begin_record_nb(buf, pos, _P, locate, ts_ns)
    put_be_nb(buf, m + _ORDER_REF, 0, 8)
    buf[m + _ADD_SIDE] = _BUY if side > 0 else _SELL
    put_be_nb(buf, m + _ADD_SHARES, shares, 4)
    put_bytes_nb(buf, m + _ADD_STOCK, stock)
    put_be_nb(buf, m + _ADD_PRICE, price, 4)
    put_be_nb(buf, m + _P_MATCH, match, 8)
    return m + MESSAGE_LENGTHS[_P]


@njit(cache=True, nogil=True)
def decode_message_nb(buf, pos, length, out, n, counts, directory, seq, ts_local_ns):
    """Decode the message at buf[pos:pos+length] into out[n] (for packet decoders: one call per message).

    Returns the rows written (0 or 1) or a negative ``ERR_*`` code; counts[type] grows on success.
    Rows get ``ts_local_ns`` (the exchange timestamp when it is 0), ``seq`` and the stock locate as
    instrument; R messages fill ``directory``, H messages its trading state.
    """
    return _decode_one_nb(buf, pos, length, out, n, counts, directory, seq, ts_local_ns)


@njit(cache=True, nogil=True, inline="always")
def _header_status_nb(buf, pos, end):
    """Whether the record at buf[pos] starts right: 1 (its length is its type's), an ERR_* code, or 0
    when fewer than the 3 header bytes are there."""
    if end - pos < 2:
        return 0
    length = u16_nb(buf, pos)
    if length == 0:
        return ERR_ZERO_LENGTH
    if end - pos < 3:
        return 0
    expected = MESSAGE_LENGTHS[np.int64(buf[pos + 2])]
    if expected == 0:
        return ERR_UNKNOWN_TYPE
    return 1 if expected == length else ERR_BAD_LENGTH


@njit(cache=True, nogil=True, inline="always")
def _two_records_nb(buf, p, end):
    """1 when a right record starts at p and another right one (or the buffer's end) follows it, 0 when
    not, -1 when the buffer ends before that can be told."""
    first = _header_status_nb(buf, p, end)
    if first < 0:
        return 0
    if first == 0:
        return -1
    q = p + 2 + u16_nb(buf, p)
    if q == end:
        return 1
    if q > end:
        return -1
    second = _header_status_nb(buf, q, end)
    return 1 if second == 1 else (-1 if second == 0 else 0)


@njit(cache=True, nogil=True)
def resync_flat_nb(buf, pos, end):
    """Where decoding goes on after the bad record at buf[pos]: the end of its declared frame when a right
    record (or the buffer's end) is there, else the first later offset where two right records follow
    each other; -1 when the buffer ends before that is known (give it more bytes). Past
    ``RESYNC_WINDOW`` bytes without an answer it goes on from the first undecided offset."""
    length = u16_nb(buf, pos) if end - pos >= 2 else 0
    declared = pos + 2 + length
    if length > 0 and declared <= end and (declared == end or _header_status_nb(buf, declared, end) == 1):
        return declared
    for p in range(pos + 1, end):
        verdict = _two_records_nb(buf, p, end)
        if verdict == 1:
            return p
        if verdict == -1:
            return p if end - pos > RESYNC_WINDOW else -1
    return end if end - pos > RESYNC_WINDOW else -1


@njit(cache=True, nogil=True)
def decode_flat_nb(buf, start, end, out, counts, directory, seq0, skip_bad):
    """Decode ``[u16 length][message]`` records of buf[start:end] into ``out``.

    Returns ``(pos, n_out, status, bad_records)``: ``status`` is STATUS_DONE, STATUS_NEED_MORE (pos =
    the incomplete trailing record), STATUS_OUT_FULL (pos = the next record) or the negative ERR_*
    code of the bad record at pos (known from its first 3 bytes: a length that is not its type's).
    With ``skip_bad`` a bad record is skipped (:func:`resync_flat_nb`) and counted instead. A record's
    seq is ``seq0`` plus its index from ``start``, bad ones included.
    """
    if end > buf.shape[0]:
        end = buf.shape[0]
    buf, out, counts, directory = borrow(buf), borrow(out), borrow(counts), borrow(directory)
    cap = out.shape[0]
    pos = start
    n = 0
    bad = 0
    seq = seq0
    while True:
        if end - pos < 2:
            return pos, n, STATUS_DONE if pos == end else STATUS_NEED_MORE, bad
        header = _header_status_nb(buf, pos, end)
        if header < 0:
            if not skip_bad:
                return pos, n, header, bad
            resumed = resync_flat_nb(buf, pos, end)
            if resumed < 0:
                return pos, n, STATUS_NEED_MORE, bad
            bad += 1
            seq += 1
            pos = resumed
            continue
        length = u16_nb(buf, pos)
        if end - pos - 2 < length:
            return pos, n, STATUS_NEED_MORE, bad
        if n >= cap:
            return pos, n, STATUS_OUT_FULL, bad
        rows = _decode_one_nb(buf, pos + 2, length, out, n, counts, directory, seq, 0)
        if rows < 0:
            if not skip_bad:
                return pos, n, rows, bad
            bad += 1
        else:
            n += rows
        seq += 1
        pos += 2 + length
