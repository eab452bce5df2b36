"""NASDAQ OUCH 5.0 order entry: message layouts, a Python codec, and the Numba codecs of both ends.

The Numba codec has a client side (the gateway: encode Enter/Replace/Cancel, decode the outbound
answers into :data:`RESPONSE_DTYPE` rows) and an exchange side (a simulated venue's compiled loop:
decode inbound orders into :data:`ORDER_MESSAGE_DTYPE` rows, encode Accepted, Replaced, Canceled,
Executed and Rejected).

All integers are big-endian (network order); alpha fields are left-justified ASCII padded with
spaces; ``Price`` fields are 8 bytes with 4 implied decimals (integer 1e-4 dollar units, the
engine's fixed-point price as is); timestamps are u64 nanoseconds since midnight; ``UserRefNum`` is
a u32, day-unique and strictly increasing per OUCH account; ``ClOrdID`` is 14 alpha characters.

Enter Order, Replace Order, Mass Cancel, Order Accepted, Order Replaced and Order Executed end their
fixed part with ``AppendageLength`` (u16) and are followed by that many bytes of optional TagValue
elements, each ``[length u8][tag u8][value]`` where ``length`` counts the tag and the value (not
itself). The codec treats the block generically as a list of ``(tag, value_bytes)``; the ``TAG_*``
constants name the tags the spec defines. The other messages (Cancel Order 9 bytes, Modify Order 10,
System Event 10, Order Canceled 18, AIQ Canceled 32, Broken Trade 36, Order Rejected 29) have no
appendage in the spec: they are written without one, and read either way, as the spec has them or
followed by an ``AppendageLength`` and its block (what some senders add), which is checked and dropped.

The numpy dtypes of :data:`INBOUND_DTYPES` and :data:`OUTBOUND_DTYPES` (the fixed part of each
message, type byte and appendage length included) are the one source of truth: the Python codec
(:func:`encode`, :func:`decode`) reads and writes through them, and the jitted codec's offsets and
lengths are taken from them. Offsets in the layout comments are from the start of the message.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from feeds.bytes_nb import put_be_nb, u16_nb, u32_nb
from feeds.errors import FeedError
from feeds.record import fill_record, read_record

SPEC_VERSION = "5.0"

INBOUND = "inbound"  # client -> exchange
OUTBOUND = "outbound"  # exchange -> client

# --- code sets ------------------------------------------------------------------------------------
SIDE_BUY = "B"
SIDE_SELL = "S"
SIDE_SELL_SHORT = "T"
SIDE_SELL_SHORT_EXEMPT = "E"

TIF_DAY = "0"  # market hours
TIF_IOC = "3"
TIF_GTX = "5"  # extended hours
TIF_GTT = "6"  # needs the ExpireTime option
TIF_AFTER_HOURS = "E"

DISPLAY_VISIBLE = "Y"
DISPLAY_HIDDEN = "N"
DISPLAY_ATTRIBUTABLE = "A"

CAPACITY_AGENCY = "A"
CAPACITY_PRINCIPAL = "P"
CAPACITY_RISKLESS = "R"
CAPACITY_OTHER = "O"

ISO_ELIGIBLE = "Y"  # InterMarketSweepEligibility
ISO_NOT_ELIGIBLE = "N"

CROSS_CONTINUOUS = "N"
CROSS_OPENING = "O"
CROSS_CLOSING = "C"
CROSS_HALT_IPO = "H"
CROSS_SUPPLEMENTAL = "S"
CROSS_RETAIL = "R"
CROSS_EXTENDED_LIFE = "E"
CROSS_AFTER_HOURS_CLOSE = "A"

ORDER_STATE_LIVE = "L"
ORDER_STATE_DEAD = "D"

EVENT_START_OF_DAY = "S"
EVENT_END_OF_DAY = "E"

CANCEL_REGULATORY_RESTRICTION = "D"
CANCEL_CLOSED = "E"
CANCEL_POST_ONLY_NMS = "F"  # would have been price slid for NMS
CANCEL_POST_ONLY_DISPLAYED = "G"  # would have been price slid by a contra-side displayed order
CANCEL_HALTED = "H"
CANCEL_IOC = "I"
CANCEL_MARKET_COLLARS = "K"
CANCEL_SELF_MATCH_PREVENTION = "Q"
CANCEL_SUPERVISORY = "S"
CANCEL_TIMEOUT = "T"
CANCEL_USER_REQUESTED = "U"
CANCEL_OPEN_PROTECTION = "X"
CANCEL_SYSTEM = "Z"
CANCEL_EXCEEDS_ALLOWABLE_SHARES = "e"  # direct listing capital raise

BROKEN_ERRONEOUS = "E"
BROKEN_CONSENT = "C"
BROKEN_SUPERVISORY = "S"
BROKEN_EXTERNAL = "X"

# Order Rejected reasons: a u16 code (spec appendix on reject reasons).
REJECT_QUOTE_UNAVAILABLE = 0x0001
REJECT_DESTINATION_CLOSED = 0x0002
REJECT_INVALID_DISPLAY = 0x0003
REJECT_INVALID_MAX_FLOOR = 0x0004
REJECT_INVALID_PEG_TYPE = 0x0005
REJECT_FAT_FINGER = 0x0006
REJECT_HALTED = 0x0007
REJECT_ISO_NOT_ALLOWED = 0x0008
REJECT_INVALID_SIDE = 0x0009
REJECT_PROCESSING_ERROR = 0x000A
REJECT_CANCEL_PENDING = 0x000B
REJECT_FIRM_NOT_AUTHORIZED = 0x000C
REJECT_INVALID_MIN_QUANTITY = 0x000D
REJECT_NO_CLOSING_REFERENCE_PRICE = 0x000E
REJECT_OTHER = 0x000F
REJECT_CANCEL_NOT_ALLOWED = 0x0010
REJECT_PEGGING_NOT_ALLOWED = 0x0011
REJECT_CROSSED_MARKET = 0x0012
REJECT_INVALID_QUANTITY = 0x0013
REJECT_INVALID_CROSS_ORDER = 0x0014
REJECT_REPLACE_NOT_ALLOWED = 0x0015
REJECT_ROUTING_NOT_ALLOWED = 0x0016
REJECT_INVALID_SYMBOL = 0x0017
REJECT_TEST = 0x0018
REJECT_LATE_LOC_TOO_AGGRESSIVE = 0x0019
REJECT_RETAIL_NOT_ALLOWED = 0x001A
REJECT_INVALID_MIDPOINT_POST_ONLY_PRICE = 0x001B
REJECT_INVALID_DESTINATION = 0x001C
REJECT_INVALID_PRICE = 0x001D
REJECT_SHARES_EXCEED_THRESHOLD = 0x001E
REJECT_EXCEEDS_MAX_NOTIONAL_VALUE = 0x001F
REJECT_RISK_AGGREGATE_EXPOSURE = 0x0020
REJECT_RISK_MARKET_IMPACT = 0x0021
REJECT_RISK_RESTRICTED_STOCK = 0x0022
REJECT_RISK_SHORT_SELL_RESTRICTED = 0x0023
REJECT_RISK_ISO_NOT_ALLOWED = 0x0024
REJECT_RISK_EXCEEDS_ADV_LIMIT = 0x0025
REJECT_RISK_FAT_FINGER = 0x0026
REJECT_RISK_LOCATE_REQUIRED = 0x0027
REJECT_RISK_SYMBOL_MESSAGE_RATE = 0x0028
REJECT_RISK_PORT_MESSAGE_RATE = 0x0029
REJECT_RISK_DUPLICATE_MESSAGE_RATE = 0x002A
REJECT_RISK_SHORT_SELL_NOT_ALLOWED = 0x002B
REJECT_RISK_MARKET_ORDER_NOT_ALLOWED = 0x002C
REJECT_RISK_PRE_MARKET_NOT_ALLOWED = 0x002D
REJECT_RISK_POST_MARKET_NOT_ALLOWED = 0x002E
REJECT_RISK_SHORT_SELL_EXEMPT_NOT_ALLOWED = 0x002F
REJECT_RISK_SINGLE_ORDER_NOTIONAL = 0x0030
REJECT_RISK_MAX_QUANTITY = 0x0031
REJECT_REG_SHO_STATE_NOT_AVAILABLE = 0x0032

# TagValue option tags (value sizes in bytes in the comments).
TAG_SECONDARY_ORD_REF_NUM = 1  # u64
TAG_FIRM = 2  # alpha 4
TAG_MIN_QTY = 3  # u32
TAG_CUSTOMER_TYPE = 4  # alpha 1
TAG_MAX_FLOOR = 5  # u32
TAG_PRICE_TYPE = 6  # alpha 1
TAG_PEG_OFFSET = 7  # signed price
TAG_DISCRETION_PRICE = 9  # price
TAG_DISCRETION_PRICE_TYPE = 10  # alpha 1
TAG_DISCRETION_PEG_OFFSET = 11  # signed price
TAG_POST_ONLY = 12  # alpha 1
TAG_RANDOM_RESERVES = 13  # u32
TAG_ROUTE = 14  # alpha 4
TAG_EXPIRE_TIME = 15  # u32 seconds to live
TAG_TRADE_NOW = 16  # alpha 1
TAG_HANDLE_INST = 17  # alpha 1
TAG_BBO_WEIGHT_INDICATOR = 18  # alpha 1
TAG_DISPLAY_QUANTITY = 22  # u32
TAG_DISPLAY_PRICE = 23  # price
TAG_GROUP_ID = 24  # u16
TAG_SHARES_LOCATED = 25  # alpha 1

PRICE_MAX = 1_999_999_900  # $199,999.9900, the highest limit price the spec supports
PRICE_MARKET_CROSS = 0x7FFFFFFF  # $214,748.3647 flags a market order for a cross

# --- layouts --------------------------------------------------------------------------------------
_TYPE = ("message_type", "S1")
_APPENDAGE_LENGTH = ("appendage_length", ">u2")

_INBOUND_FIELDS: dict[str, list[tuple[str, str]]] = {
    # O Enter Order: 0 type 1 user_ref_num u32 5 side(1) 6 quantity u32 10 symbol(8) 18 price Price(8)
    #   26 time_in_force(1) 27 display(1) 28 capacity(1) 29 intermarket_sweep_eligibility(1)
    #   30 cross_type(1) 31 cl_ord_id(14) 45 appendage_length u16 = 47, then the appendage
    "O": [
        ("user_ref_num", ">u4"),
        ("side", "S1"),
        ("quantity", ">u4"),
        ("symbol", "S8"),
        ("price", ">u8"),
        ("time_in_force", "S1"),
        ("display", "S1"),
        ("capacity", "S1"),
        ("intermarket_sweep_eligibility", "S1"),
        ("cross_type", "S1"),
        ("cl_ord_id", "S14"),
    ],
    # U Replace Order: 0 type 1 orig_user_ref_num u32 5 user_ref_num u32 9 quantity u32
    #   13 price Price(8) 21 time_in_force(1) 22 display(1) 23 intermarket_sweep_eligibility(1)
    #   24 cl_ord_id(14) 38 appendage_length u16 = 40
    "U": [
        ("orig_user_ref_num", ">u4"),
        ("user_ref_num", ">u4"),
        ("quantity", ">u4"),
        ("price", ">u8"),
        ("time_in_force", "S1"),
        ("display", "S1"),
        ("intermarket_sweep_eligibility", "S1"),
        ("cl_ord_id", "S14"),
    ],
    # X Cancel Order: 0 type 1 user_ref_num u32 5 quantity u32 (shares to leave, 0 = all) = 9
    "X": [("user_ref_num", ">u4"), ("quantity", ">u4")],
    # M Modify Order: 0 type 1 user_ref_num u32 5 side(1) 6 quantity u32 = 10
    "M": [("user_ref_num", ">u4"), ("side", "S1"), ("quantity", ">u4")],
    # C Mass Cancel: 0 type 1 user_ref_num u32 5 firm(4) 9 symbol(8) 17 appendage_length u16 = 19
    "C": [("user_ref_num", ">u4"), ("firm", "S4"), ("symbol", "S8")],
}

_OUTBOUND_FIELDS: dict[str, list[tuple[str, str]]] = {
    # A Order Accepted: 0 type 1 timestamp u64 9 user_ref_num u32 13 side(1) 14 quantity u32
    #   18 symbol(8) 26 price Price(8) 34 time_in_force(1) 35 display(1) 36 order_reference_number u64
    #   44 capacity(1) 45 intermarket_sweep_eligibility(1) 46 cross_type(1) 47 order_state(1)
    #   48 cl_ord_id(14) 62 appendage_length u16 = 64
    "A": [
        ("timestamp", ">u8"),
        ("user_ref_num", ">u4"),
        ("side", "S1"),
        ("quantity", ">u4"),
        ("symbol", "S8"),
        ("price", ">u8"),
        ("time_in_force", "S1"),
        ("display", "S1"),
        ("order_reference_number", ">u8"),
        ("capacity", "S1"),
        ("intermarket_sweep_eligibility", "S1"),
        ("cross_type", "S1"),
        ("order_state", "S1"),
        ("cl_ord_id", "S14"),
    ],
    # U Order Replaced: 0 type 1 timestamp u64 9 orig_user_ref_num u32 13 user_ref_num u32 17 side(1)
    #   18 quantity u32 22 symbol(8) 30 price Price(8) 38 time_in_force(1) 39 display(1)
    #   40 order_reference_number u64 48 capacity(1) 49 intermarket_sweep_eligibility(1)
    #   50 cross_type(1) 51 order_state(1) 52 cl_ord_id(14) 66 appendage_length u16 = 68
    "U": [
        ("timestamp", ">u8"),
        ("orig_user_ref_num", ">u4"),
        ("user_ref_num", ">u4"),
        ("side", "S1"),
        ("quantity", ">u4"),
        ("symbol", "S8"),
        ("price", ">u8"),
        ("time_in_force", "S1"),
        ("display", "S1"),
        ("order_reference_number", ">u8"),
        ("capacity", "S1"),
        ("intermarket_sweep_eligibility", "S1"),
        ("cross_type", "S1"),
        ("order_state", "S1"),
        ("cl_ord_id", "S14"),
    ],
    # C Order Canceled: 0 type 1 timestamp u64 9 user_ref_num u32 13 quantity u32 (shares decremented)
    #   17 reason(1) = 18
    "C": [("timestamp", ">u8"), ("user_ref_num", ">u4"), ("quantity", ">u4"), ("reason", "S1")],
    # D Order AIQ Canceled: 0 type 1 timestamp u64 9 user_ref_num u32 13 decrement_shares u32
    #   17 reason(1) 18 quantity_prevented_from_trading u32 22 execution_price Price(8)
    #   30 liquidity_flag(1) 31 aiq_strategy(1) = 32
    "D": [
        ("timestamp", ">u8"),
        ("user_ref_num", ">u4"),
        ("decrement_shares", ">u4"),
        ("reason", "S1"),
        ("quantity_prevented_from_trading", ">u4"),
        ("execution_price", ">u8"),
        ("liquidity_flag", "S1"),
        ("aiq_strategy", "S1"),
    ],
    # E Order Executed: 0 type 1 timestamp u64 9 user_ref_num u32 13 quantity u32 17 price Price(8)
    #   25 liquidity_flag(1) 26 match_number u64 34 appendage_length u16 = 36
    "E": [
        ("timestamp", ">u8"),
        ("user_ref_num", ">u4"),
        ("quantity", ">u4"),
        ("price", ">u8"),
        ("liquidity_flag", "S1"),
        ("match_number", ">u8"),
    ],
    # B Broken Trade: 0 type 1 timestamp u64 9 user_ref_num u32 13 match_number u64 21 reason(1)
    #   22 cl_ord_id(14) = 36
    "B": [
        ("timestamp", ">u8"),
        ("user_ref_num", ">u4"),
        ("match_number", ">u8"),
        ("reason", "S1"),
        ("cl_ord_id", "S14"),
    ],
    # J Order Rejected: 0 type 1 timestamp u64 9 user_ref_num u32 13 reason u16 (REJECT_*)
    #   15 cl_ord_id(14) = 29
    "J": [("timestamp", ">u8"), ("user_ref_num", ">u4"), ("reason", ">u2"), ("cl_ord_id", "S14")],
    # S System Event: 0 type 1 timestamp u64 9 event_code(1) = 10
    "S": [("timestamp", ">u8"), ("event_code", "S1")],
}
_WITH_APPENDAGE = {"O", "U", "C"}, {"A", "U", "E"}  # inbound, outbound: the messages the spec gives one


def _dtypes(fields: dict[str, list[tuple[str, str]]], with_appendage: set[str]) -> dict[str, np.dtype]:
    tail = {t: [_APPENDAGE_LENGTH] if t in with_appendage else [] for t in fields}
    return {t: np.dtype([_TYPE, *f, *tail[t]]) for t, f in fields.items()}


INBOUND_DTYPES = _dtypes(_INBOUND_FIELDS, _WITH_APPENDAGE[0])
OUTBOUND_DTYPES = _dtypes(_OUTBOUND_FIELDS, _WITH_APPENDAGE[1])
_DTYPES = {INBOUND: INBOUND_DTYPES, OUTBOUND: OUTBOUND_DTYPES}


def _lengths_by_type_byte(dtypes: dict[str, np.dtype]) -> np.ndarray:
    """int64[256]: fixed-part length by type byte, 0 for a type the direction does not define."""
    lengths = np.zeros(256, np.int64)
    for msg_type, dtype in dtypes.items():
        lengths[ord(msg_type)] = dtype.itemsize
    return lengths


def _appendage_by_type_byte(dtypes: dict[str, np.dtype]) -> np.ndarray:
    """bool[256]: whether the spec ends the type's fixed part with an AppendageLength."""
    flags = np.zeros(256, np.bool_)
    for msg_type, dtype in dtypes.items():
        flags[ord(msg_type)] = "appendage_length" in dtype.names
    return flags


INBOUND_FIXED_LENGTHS = _lengths_by_type_byte(INBOUND_DTYPES)
OUTBOUND_FIXED_LENGTHS = _lengths_by_type_byte(OUTBOUND_DTYPES)
INBOUND_HAS_APPENDAGE = _appendage_by_type_byte(INBOUND_DTYPES)
OUTBOUND_HAS_APPENDAGE = _appendage_by_type_byte(OUTBOUND_DTYPES)

# --- Python codec (tests, tools, the simulated exchange; not the hot path) ------------------------
Appendage = list[tuple[int, bytes]]


def encode_appendage(elements: Iterable[tuple[int, bytes]]) -> bytes:
    """The optional appendage block (without its u16 length) from ``(tag, value)`` pairs."""
    out = bytearray()
    for tag, value in elements:
        value = bytes(value)
        if not 0 <= tag <= 0xFF:
            raise ValueError(f"TagValue tag {tag} does not fit in one byte")
        if len(value) > 0xFE:
            raise ValueError(f"TagValue value of {len(value)} bytes (tag {tag}) exceeds 254 bytes")
        out += bytes((1 + len(value), tag)) + value
    if len(out) > 0xFFFF:
        raise ValueError(f"appendage of {len(out)} bytes exceeds the u16 appendage length")
    return bytes(out)


def decode_appendage(block: bytes, *, offset: int = 0) -> Appendage:
    """``(tag, value)`` pairs of an appendage block; ``offset`` only places errors in the message."""
    elements: Appendage = []
    pos = 0
    while pos < len(block):
        length = block[pos]
        if length == 0:
            raise FeedError("TagValue element of length 0 (no tag)", offset=offset + pos)
        if pos + 1 + length > len(block):
            raise FeedError(
                f"truncated TagValue element: length {length} with {len(block) - pos - 1} bytes left in the appendage",
                offset=offset + pos,
            )
        elements.append((block[pos + 1], bytes(block[pos + 2 : pos + 1 + length])))
        pos += 1 + length
    return elements


def _dtypes_of(direction: str) -> dict[str, np.dtype]:
    dtypes = _DTYPES.get(direction)
    if dtypes is None:
        raise ValueError(f"direction must be {INBOUND!r} or {OUTBOUND!r}, not {direction!r}")
    return dtypes


def encode(direction: str, msg_type: str, *, appendage: Iterable[tuple[int, bytes]] = (), **fields: int | str) -> bytes:
    """One OUCH message of ``msg_type`` (in ``direction``) from its fields by name, then its appendage.

    Alpha fields take a str, padded with spaces; fields left out are 0 or spaces; the appendage length
    is computed. Unknown types or field names and out-of-range values raise ValueError.
    """
    dtype = _dtypes_of(direction).get(msg_type)
    if dtype is None:
        raise ValueError(f"unknown OUCH {SPEC_VERSION} {direction} message type {msg_type!r}")
    record = fill_record(dtype, msg_type, fields, reserved=("appendage_length",))
    block = encode_appendage(appendage)
    if "appendage_length" not in dtype.names:
        if block:
            raise ValueError(f"{direction} message {msg_type!r} has no appendage")
        return record.tobytes()
    record["appendage_length"] = len(block)
    return record.tobytes() + block


def _check_alpha(dtype: np.dtype, data: bytes, direction: str, msg_type: str) -> None:
    """Raise FeedError naming the first alpha field with a byte outside printable ASCII (0x20-0x7E)."""
    for name in dtype.names[1:]:
        field, offset = dtype.fields[name][:2]
        if field.kind != "S":
            continue
        for k, byte in enumerate(data[offset : offset + field.itemsize]):
            if not 0x20 <= byte <= 0x7E:
                raise FeedError(
                    f"{direction} message {msg_type!r}: {name} has byte 0x{byte:02x}, not printable ASCII",
                    offset=offset + k,
                )


def decode(direction: str, data: bytes) -> dict[str, int | str | Appendage]:
    """All fields of one OUCH message: ints, alpha fields as str (padding removed), ``appendage``.

    ``appendage`` is the list of ``(tag, value)`` pairs (absent for the messages the spec gives none:
    an appendage after one of those is checked and dropped); ``appendage_length`` is implied by it
    and not returned. Bad input, an alpha field with a byte outside printable ASCII
    included, raises :class:`FeedError`.
    """
    dtypes = _dtypes_of(direction)
    if not data:
        raise FeedError("zero-length message")
    msg_type = chr(data[0])
    dtype = dtypes.get(msg_type)
    if dtype is None:
        raise FeedError(f"unknown {direction} message type {msg_type!r} (0x{data[0]:02x})")
    fixed = dtype.itemsize
    if len(data) < fixed:
        raise FeedError(f"truncated {direction} message {msg_type!r}: {len(data)} bytes, fixed part is {fixed}")
    _check_alpha(dtype, data, direction, msg_type)
    record = np.frombuffer(data, dtype, count=1)[0]
    fields: dict[str, int | str | Appendage] = dict(read_record(record, skip=("appendage_length",)))
    with_appendage = "appendage_length" in dtype.names
    if not with_appendage:
        if len(data) == fixed:
            return fields
        if len(data) < fixed + 2:
            raise FeedError(
                f"length {len(data)} for {direction} message {msg_type!r} (expects {fixed}, "
                f"or {fixed + 2} and more with an appendage)"
            )
    start = fixed if with_appendage else fixed + 2  # the appendage block
    declared = int.from_bytes(data[start - 2 : start], "big")
    if len(data) != start + declared:
        what = "truncated appendage" if len(data) < start + declared else "bytes after the appendage"
        raise FeedError(
            f"{what} in {direction} message {msg_type!r}: appendage length {declared}, "
            f"{len(data) - start} bytes after the fixed part",
            offset=start - 2,
        )
    appendage = decode_appendage(data[start:], offset=start)
    if with_appendage:
        fields["appendage"] = appendage
    return fields


def alpha(text: str, width: int) -> np.ndarray:
    """uint8[width]: ``text`` as an OUCH alpha field (ASCII, space padded), for the jitted encoders."""
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{text!r} is longer than {width} characters")
    return np.frombuffer(raw.ljust(width, b" "), np.uint8).copy()


# --- Numba codec (the gateway's hot path) ---------------------------------------------------------
# Return codes of decode_outbound_nb and decode_inbound_nb; the encoders return 0 when the buffer has no room.
ERR_UNKNOWN_TYPE = -1  # the type byte is not a message type of the direction (that the decoder reads)
ERR_TRUNCATED = -2  # length is shorter than the fixed part plus the declared appendage
ERR_BAD_APPENDAGE = -3  # a TagValue element has length 0 or runs past the appendage
ERR_OUT_OF_BUFFER = -4  # pos + length runs past the end of the buffer
ERR_BAD_LENGTH = -5  # length is longer than the fixed part plus the declared appendage

# One decoded outbound message. `kind` is the type byte; character fields hold their ASCII code;
# `reason` is the event code (S), the cancel reason (C, D), the broken-trade reason (B) or the u16
# reject code (J); `qty` is the quantity (A, U), the shares decremented (C, D) or executed (E);
# `price` is the order price (A, U) or the execution price (D, E), in 1e-4 units.
RESPONSE_DTYPE = np.dtype(
    [
        ("timestamp_ns", "i8"),
        ("price", "i8"),
        ("order_reference_number", "u8"),
        ("match_number", "u8"),
        ("user_ref_num", "u4"),
        ("orig_user_ref_num", "u4"),
        ("qty", "u4"),
        ("qty_prevented", "u4"),
        ("reason", "u2"),
        ("appendage_length", "u2"),
        ("kind", "u1"),
        ("side", "u1"),
        ("liquidity_flag", "u1"),
        ("order_state", "u1"),
        ("aiq_strategy", "u1"),
    ]
)


def empty_responses(n: int) -> np.ndarray:
    """A zeroed array of ``n`` response records."""
    return np.zeros(n, RESPONSE_DTYPE)


# One decoded inbound message (Enter, Replace, Cancel or Modify), as the exchange's loop reads it.
# `kind` is the type byte; character fields hold their ASCII code and alpha fields their raw bytes;
# `iso` is the InterMarketSweepEligibility; `post_only` is 1 when the appendage's (last) PostOnly
# element is "P"; fields the type does not carry are 0. Native-endian, 8-byte fields first.
ORDER_MESSAGE_DTYPE = np.dtype(
    [
        ("quantity", "i8"),
        ("price", "i8"),
        ("appendage_length", "i8"),
        ("user_ref_num", "u4"),
        ("orig_user_ref_num", "u4"),
        ("kind", "u1"),
        ("side", "u1"),
        ("time_in_force", "u1"),
        ("display", "u1"),
        ("capacity", "u1"),
        ("iso", "u1"),
        ("cross_type", "u1"),
        ("post_only", "u1"),
        ("symbol", "u1", (8,)),
        ("cl_ord_id", "u1", (14,)),
    ]
)


def new_order_messages(n: int) -> np.ndarray:
    """A zeroed array of ``n`` inbound order message records, for :func:`decode_inbound_nb`."""
    return np.zeros(n, ORDER_MESSAGE_DTYPE)


def _off(dtypes: dict[str, np.dtype], msg_type: str, name: str) -> int:
    return int(dtypes[msg_type].fields[name][1])


_O_LEN = INBOUND_DTYPES["O"].itemsize
_O_URN = _off(INBOUND_DTYPES, "O", "user_ref_num")
_O_SIDE = _off(INBOUND_DTYPES, "O", "side")
_O_QTY = _off(INBOUND_DTYPES, "O", "quantity")
_O_SYMBOL = _off(INBOUND_DTYPES, "O", "symbol")
_O_PRICE = _off(INBOUND_DTYPES, "O", "price")
_O_TIF = _off(INBOUND_DTYPES, "O", "time_in_force")
_O_DISPLAY = _off(INBOUND_DTYPES, "O", "display")
_O_CAPACITY = _off(INBOUND_DTYPES, "O", "capacity")
_O_ISO = _off(INBOUND_DTYPES, "O", "intermarket_sweep_eligibility")
_O_CROSS = _off(INBOUND_DTYPES, "O", "cross_type")
_O_CLORDID = _off(INBOUND_DTYPES, "O", "cl_ord_id")
_O_APPLEN = _off(INBOUND_DTYPES, "O", "appendage_length")
_SYMBOL_LEN = INBOUND_DTYPES["O"]["symbol"].itemsize
_CLORDID_LEN = INBOUND_DTYPES["O"]["cl_ord_id"].itemsize

_IU_LEN = INBOUND_DTYPES["U"].itemsize
_IU_ORIG_URN = _off(INBOUND_DTYPES, "U", "orig_user_ref_num")
_IU_URN = _off(INBOUND_DTYPES, "U", "user_ref_num")
_IU_QTY = _off(INBOUND_DTYPES, "U", "quantity")
_IU_PRICE = _off(INBOUND_DTYPES, "U", "price")
_IU_TIF = _off(INBOUND_DTYPES, "U", "time_in_force")
_IU_DISPLAY = _off(INBOUND_DTYPES, "U", "display")
_IU_ISO = _off(INBOUND_DTYPES, "U", "intermarket_sweep_eligibility")
_IU_CLORDID = _off(INBOUND_DTYPES, "U", "cl_ord_id")
_IU_APPLEN = _off(INBOUND_DTYPES, "U", "appendage_length")

_X_LEN = INBOUND_DTYPES["X"].itemsize
_X_URN = _off(INBOUND_DTYPES, "X", "user_ref_num")
_X_QTY = _off(INBOUND_DTYPES, "X", "quantity")

_M_URN = _off(INBOUND_DTYPES, "M", "user_ref_num")
_M_SIDE = _off(INBOUND_DTYPES, "M", "side")
_M_QTY = _off(INBOUND_DTYPES, "M", "quantity")
assert ORDER_MESSAGE_DTYPE["symbol"].itemsize == _SYMBOL_LEN
assert ORDER_MESSAGE_DTYPE["cl_ord_id"].itemsize == _CLORDID_LEN

# The inbound types decode_inbound_nb reads: all but Mass Cancel, whose Firm has no place in a row
# (and a mass cancel read without it would cancel more than asked).
_DECODED_INBOUND_LENGTHS = INBOUND_FIXED_LENGTHS.copy()
_DECODED_INBOUND_LENGTHS[ord("C")] = 0
_K_ENTER, _K_REPLACE, _K_CANCEL, _K_MODIFY = (ord(t) for t in "OUXM")

_TS = _off(OUTBOUND_DTYPES, "A", "timestamp")
_URN = _off(OUTBOUND_DTYPES, "A", "user_ref_num")  # every outbound type but S and U
_S_EVENT = _off(OUTBOUND_DTYPES, "S", "event_code")
_A_SIDE = _off(OUTBOUND_DTYPES, "A", "side")
_A_QTY = _off(OUTBOUND_DTYPES, "A", "quantity")
_A_PRICE = _off(OUTBOUND_DTYPES, "A", "price")
_A_ORDER_REF = _off(OUTBOUND_DTYPES, "A", "order_reference_number")
_A_STATE = _off(OUTBOUND_DTYPES, "A", "order_state")
_U_ORIG_URN = _off(OUTBOUND_DTYPES, "U", "orig_user_ref_num")
_U_URN = _off(OUTBOUND_DTYPES, "U", "user_ref_num")
_U_SIDE = _off(OUTBOUND_DTYPES, "U", "side")
_U_QTY = _off(OUTBOUND_DTYPES, "U", "quantity")
_U_PRICE = _off(OUTBOUND_DTYPES, "U", "price")
_U_ORDER_REF = _off(OUTBOUND_DTYPES, "U", "order_reference_number")
_U_STATE = _off(OUTBOUND_DTYPES, "U", "order_state")
_C_QTY = _off(OUTBOUND_DTYPES, "C", "quantity")
_C_REASON = _off(OUTBOUND_DTYPES, "C", "reason")
_D_QTY = _off(OUTBOUND_DTYPES, "D", "decrement_shares")
_D_REASON = _off(OUTBOUND_DTYPES, "D", "reason")
_D_PREVENTED = _off(OUTBOUND_DTYPES, "D", "quantity_prevented_from_trading")
_D_PRICE = _off(OUTBOUND_DTYPES, "D", "execution_price")
_D_LIQUIDITY = _off(OUTBOUND_DTYPES, "D", "liquidity_flag")
_D_STRATEGY = _off(OUTBOUND_DTYPES, "D", "aiq_strategy")
_E_QTY = _off(OUTBOUND_DTYPES, "E", "quantity")
_E_PRICE = _off(OUTBOUND_DTYPES, "E", "price")
_E_LIQUIDITY = _off(OUTBOUND_DTYPES, "E", "liquidity_flag")
_E_MATCH = _off(OUTBOUND_DTYPES, "E", "match_number")
_B_MATCH = _off(OUTBOUND_DTYPES, "B", "match_number")
_B_REASON = _off(OUTBOUND_DTYPES, "B", "reason")
_J_REASON = _off(OUTBOUND_DTYPES, "J", "reason")
_J_CLORDID = _off(OUTBOUND_DTYPES, "J", "cl_ord_id")
_A_LEN = OUTBOUND_DTYPES["A"].itemsize
_U_LEN = OUTBOUND_DTYPES["U"].itemsize
_C_LEN = OUTBOUND_DTYPES["C"].itemsize
_E_LEN = OUTBOUND_DTYPES["E"].itemsize
_J_LEN = OUTBOUND_DTYPES["J"].itemsize
_E_APPLEN = _off(OUTBOUND_DTYPES, "E", "appendage_length")


def _tail_offsets(msg_type: str) -> dict[str, int]:
    """Offsets from Side of the fields from Side on (to AppendageLength) of Order Accepted or Replaced."""
    names = OUTBOUND_DTYPES[msg_type].names
    side = _off(OUTBOUND_DTYPES, msg_type, "side")
    return {name: _off(OUTBOUND_DTYPES, msg_type, name) - side for name in names[names.index("side") :]}


_TAIL = _tail_offsets("A")  # _put_order_tail_nb writes both messages' tails with these
assert _tail_offsets("U") == _TAIL
_T_SIDE = _TAIL["side"]
_T_QTY = _TAIL["quantity"]
_T_SYMBOL = _TAIL["symbol"]
_T_PRICE = _TAIL["price"]
_T_TIF = _TAIL["time_in_force"]
_T_DISPLAY = _TAIL["display"]
_T_ORDER_REF = _TAIL["order_reference_number"]
_T_CAPACITY = _TAIL["capacity"]
_T_ISO = _TAIL["intermarket_sweep_eligibility"]
_T_CROSS = _TAIL["cross_type"]
_T_STATE = _TAIL["order_state"]
_T_CLORDID = _TAIL["cl_ord_id"]
_T_APPLEN = _TAIL["appendage_length"]
assert {_off(OUTBOUND_DTYPES, t, "timestamp") for t in OUTBOUND_DTYPES} == {_TS}
assert {_off(OUTBOUND_DTYPES, t, "user_ref_num") for t in "ACDEBJ"} == {_URN}

_K_S, _K_A, _K_U, _K_C, _K_D, _K_E, _K_B, _K_J = (ord(t) for t in "SAUCDEBJ")
_INLINE = "always"


@njit(cache=True, nogil=True, inline=_INLINE)
def _i64_nb(buf, p):
    """The 8 bytes at p as int64 (two's complement: a u64 above 2**63 - 1 comes back negative)."""
    return (u32_nb(buf, p) << 32) | u32_nb(buf, p + 4)


@njit(cache=True, nogil=True)
def encode_enter_order_nb(
    buf,
    pos,
    user_ref_num,
    side,
    quantity,
    symbol8,
    price,
    time_in_force,
    display,
    capacity,
    intermarket_sweep_eligibility,
    cross_type,
    cl_ord_id14,
):
    """Write an Enter Order with an empty appendage at buf[pos:]; bytes written (47), 0 if no room.

    Character fields are ASCII codes (``ord(SIDE_BUY)``); symbol8 and cl_ord_id14 are space-padded
    uint8 arrays (see :func:`alpha`); price is in 1e-4 units.
    """
    if pos + _O_LEN > buf.shape[0]:
        return 0
    buf[pos] = 79  # "O"
    put_be_nb(buf, pos + _O_URN, user_ref_num, 4)
    buf[pos + _O_SIDE] = side
    put_be_nb(buf, pos + _O_QTY, quantity, 4)
    for k in range(_SYMBOL_LEN):
        buf[pos + _O_SYMBOL + k] = symbol8[k]
    put_be_nb(buf, pos + _O_PRICE, price, 8)
    buf[pos + _O_TIF] = time_in_force
    buf[pos + _O_DISPLAY] = display
    buf[pos + _O_CAPACITY] = capacity
    buf[pos + _O_ISO] = intermarket_sweep_eligibility
    buf[pos + _O_CROSS] = cross_type
    for k in range(_CLORDID_LEN):
        buf[pos + _O_CLORDID + k] = cl_ord_id14[k]
    put_be_nb(buf, pos + _O_APPLEN, 0, 2)
    return _O_LEN


@njit(cache=True, nogil=True)
def encode_replace_nb(
    buf,
    pos,
    orig_user_ref_num,
    user_ref_num,
    quantity,
    price,
    time_in_force,
    display,
    intermarket_sweep_eligibility,
    cl_ord_id14,
):
    """Write a Replace Order with an empty appendage at buf[pos:]; bytes written (40), 0 if no room."""
    if pos + _IU_LEN > buf.shape[0]:
        return 0
    buf[pos] = 85  # "U"
    put_be_nb(buf, pos + _IU_ORIG_URN, orig_user_ref_num, 4)
    put_be_nb(buf, pos + _IU_URN, user_ref_num, 4)
    put_be_nb(buf, pos + _IU_QTY, quantity, 4)
    put_be_nb(buf, pos + _IU_PRICE, price, 8)
    buf[pos + _IU_TIF] = time_in_force
    buf[pos + _IU_DISPLAY] = display
    buf[pos + _IU_ISO] = intermarket_sweep_eligibility
    for k in range(_CLORDID_LEN):
        buf[pos + _IU_CLORDID + k] = cl_ord_id14[k]
    put_be_nb(buf, pos + _IU_APPLEN, 0, 2)
    return _IU_LEN


@njit(cache=True, nogil=True)
def encode_cancel_nb(buf, pos, user_ref_num, quantity):
    """Write a Cancel Order (``quantity`` = shares to leave, 0 cancels all) at buf[pos:]; 9, or 0 if no room."""
    if pos + _X_LEN > buf.shape[0]:
        return 0
    buf[pos] = 88  # "X"
    put_be_nb(buf, pos + _X_URN, user_ref_num, 4)
    put_be_nb(buf, pos + _X_QTY, quantity, 4)
    return _X_LEN


@njit(cache=True, nogil=True, inline=_INLINE)
def _frame_nb(buf, pos, length, fixed_lengths, has_appendage, tag):
    """Check the framing of the message at buf[pos:pos+length], for both directions' decoders.

    ``fixed_lengths`` / ``has_appendage`` are a direction's tables by type byte (0 length: a type the
    decoder does not read). ``length`` must be the fixed part plus the declared appendage (for a type
    the spec gives no appendage: the fixed part alone, or the fixed part, an AppendageLength and its
    block), and the TagValue walk must end exactly at the end of the block. One walk also finds the
    last element with tag ``tag`` (-1: none wanted). Returns ``(code, appendage_length, tag_at)``:
    code 0 or a negative ERR_*, tag_at the offset in buf of that element's length byte or -1.
    """
    if pos + length > buf.shape[0]:
        return ERR_OUT_OF_BUFFER, 0, -1
    if length < 1:
        return ERR_TRUNCATED, 0, -1
    kind = np.int64(buf[pos])
    fixed = fixed_lengths[kind]
    if fixed == 0:
        return ERR_UNKNOWN_TYPE, 0, -1
    if length < fixed:
        return ERR_TRUNCATED, 0, -1
    start = pos + fixed  # where the appendage block starts
    applen = np.int64(0)
    if has_appendage[kind]:
        applen = u16_nb(buf, start - 2)
    elif length >= fixed + 2:
        start += 2
        applen = u16_nb(buf, start - 2)
    elif length > fixed:
        return ERR_BAD_LENGTH, 0, -1
    end = start + applen
    if pos + length < end:
        return ERR_TRUNCATED, 0, -1
    if pos + length > end:
        return ERR_BAD_LENGTH, 0, -1
    tag_at = np.int64(-1)
    p = start
    while p < end:  # walk the TagValue elements: each must have a tag and end inside the block
        element = np.int64(buf[p])
        if element == 0 or p + 1 + element > end:
            return ERR_BAD_APPENDAGE, 0, -1
        if np.int64(buf[p + 1]) == tag:
            tag_at = p
        p += 1 + element
    return 0, applen, tag_at


@njit(cache=True, nogil=True)
def decode_outbound_nb(buf, pos, length, out, i):
    """Decode the outbound message at buf[pos:pos+length] into out[i] (a RESPONSE_DTYPE row).

    ``length`` is the framed message length (e.g. the SoupBinTCP payload) and must equal the fixed
    part plus the declared appendage (for a type the spec gives no appendage: the fixed part, or the
    fixed part, an AppendageLength and its block). Returns ``length``, or a negative ERR_* code
    leaving out[i] as it was.
    """
    code, applen, _ = _frame_nb(buf, pos, length, OUTBOUND_FIXED_LENGTHS, OUTBOUND_HAS_APPENDAGE, -1)
    if code != 0:
        return code
    kind = np.int64(buf[pos])
    row = out[i]
    row.timestamp_ns = _i64_nb(buf, pos + _TS)
    row.price = 0
    row.order_reference_number = 0
    row.match_number = 0
    row.user_ref_num = 0
    row.orig_user_ref_num = 0
    row.qty = 0
    row.qty_prevented = 0
    row.reason = 0
    row.appendage_length = applen
    row.kind = kind
    row.side = 0
    row.liquidity_flag = 0
    row.order_state = 0
    row.aiq_strategy = 0
    if kind == _K_S:
        row.reason = buf[pos + _S_EVENT]
    elif kind == _K_A:
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.side = buf[pos + _A_SIDE]
        row.qty = u32_nb(buf, pos + _A_QTY)
        row.price = _i64_nb(buf, pos + _A_PRICE)
        row.order_reference_number = _i64_nb(buf, pos + _A_ORDER_REF)
        row.order_state = buf[pos + _A_STATE]
    elif kind == _K_U:
        row.orig_user_ref_num = u32_nb(buf, pos + _U_ORIG_URN)
        row.user_ref_num = u32_nb(buf, pos + _U_URN)
        row.side = buf[pos + _U_SIDE]
        row.qty = u32_nb(buf, pos + _U_QTY)
        row.price = _i64_nb(buf, pos + _U_PRICE)
        row.order_reference_number = _i64_nb(buf, pos + _U_ORDER_REF)
        row.order_state = buf[pos + _U_STATE]
    elif kind == _K_C:
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.qty = u32_nb(buf, pos + _C_QTY)
        row.reason = buf[pos + _C_REASON]
    elif kind == _K_D:
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.qty = u32_nb(buf, pos + _D_QTY)
        row.reason = buf[pos + _D_REASON]
        row.qty_prevented = u32_nb(buf, pos + _D_PREVENTED)
        row.price = _i64_nb(buf, pos + _D_PRICE)
        row.liquidity_flag = buf[pos + _D_LIQUIDITY]
        row.aiq_strategy = buf[pos + _D_STRATEGY]
    elif kind == _K_E:
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.qty = u32_nb(buf, pos + _E_QTY)
        row.price = _i64_nb(buf, pos + _E_PRICE)
        row.liquidity_flag = buf[pos + _E_LIQUIDITY]
        row.match_number = _i64_nb(buf, pos + _E_MATCH)
    elif kind == _K_B:
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.match_number = _i64_nb(buf, pos + _B_MATCH)
        row.reason = buf[pos + _B_REASON]
    else:  # J
        row.user_ref_num = u32_nb(buf, pos + _URN)
        row.reason = u16_nb(buf, pos + _J_REASON)
    return length


# --- exchange side: decode what a client sends, encode the answers --------------------------------
@njit(cache=True, nogil=True)
def decode_inbound_nb(buf, pos, length, out, i):
    """Decode the inbound message at buf[pos:pos+length] into out[i] (an ORDER_MESSAGE_DTYPE row).

    For the exchange's compiled loop. Reads Enter Order (O), Replace Order (U), Cancel Order (X) and
    Modify Order (M: user_ref_num, side, quantity); refuses Mass Cancel (C) with ERR_UNKNOWN_TYPE, as
    its Firm has no place in the row. Framing rules are those of :func:`decode_outbound_nb` (shared
    helper): ``length`` must equal the fixed part plus the declared appendage, the TagValue walk must
    end exactly. ``post_only`` is 1 when the last PostOnly element of an O or U appendage has the
    value "P"; other tags are checked and skipped. Returns ``length``, or a negative ERR_* code
    leaving out[i] as it was.
    """
    code, applen, post_at = _frame_nb(buf, pos, length, _DECODED_INBOUND_LENGTHS, INBOUND_HAS_APPENDAGE, TAG_POST_ONLY)
    if code != 0:
        return code
    kind = np.int64(buf[pos])
    row = out[i]
    row.quantity = 0
    row.price = 0
    row.appendage_length = applen
    row.user_ref_num = 0
    row.orig_user_ref_num = 0
    row.kind = kind
    row.side = 0
    row.time_in_force = 0
    row.display = 0
    row.capacity = 0
    row.iso = 0
    row.cross_type = 0
    row.post_only = 0
    for k in range(_SYMBOL_LEN):
        row.symbol[k] = 0
    for k in range(_CLORDID_LEN):
        row.cl_ord_id[k] = 0
    if kind == _K_ENTER:
        row.user_ref_num = u32_nb(buf, pos + _O_URN)
        row.side = buf[pos + _O_SIDE]
        row.quantity = u32_nb(buf, pos + _O_QTY)
        for k in range(_SYMBOL_LEN):
            row.symbol[k] = buf[pos + _O_SYMBOL + k]
        row.price = _i64_nb(buf, pos + _O_PRICE)
        row.time_in_force = buf[pos + _O_TIF]
        row.display = buf[pos + _O_DISPLAY]
        row.capacity = buf[pos + _O_CAPACITY]
        row.iso = buf[pos + _O_ISO]
        row.cross_type = buf[pos + _O_CROSS]
        for k in range(_CLORDID_LEN):
            row.cl_ord_id[k] = buf[pos + _O_CLORDID + k]
    elif kind == _K_REPLACE:
        row.orig_user_ref_num = u32_nb(buf, pos + _IU_ORIG_URN)
        row.user_ref_num = u32_nb(buf, pos + _IU_URN)
        row.quantity = u32_nb(buf, pos + _IU_QTY)
        row.price = _i64_nb(buf, pos + _IU_PRICE)
        row.time_in_force = buf[pos + _IU_TIF]
        row.display = buf[pos + _IU_DISPLAY]
        row.iso = buf[pos + _IU_ISO]
        for k in range(_CLORDID_LEN):
            row.cl_ord_id[k] = buf[pos + _IU_CLORDID + k]
    elif kind == _K_CANCEL:
        row.user_ref_num = u32_nb(buf, pos + _X_URN)
        row.quantity = u32_nb(buf, pos + _X_QTY)
    else:  # M
        row.user_ref_num = u32_nb(buf, pos + _M_URN)
        row.side = buf[pos + _M_SIDE]
        row.quantity = u32_nb(buf, pos + _M_QTY)
    if INBOUND_HAS_APPENDAGE[kind] and post_at >= 0 and buf[post_at] == 2 and buf[post_at + 2] == 80:  # "P"
        row.post_only = 1
    return length


@njit(cache=True, nogil=True, inline=_INLINE)
def _put_order_tail_nb(
    buf,
    p,
    side,
    quantity,
    symbol8,
    price,
    time_in_force,
    display,
    order_reference_number,
    capacity,
    iso,
    cross_type,
    order_state,
    cl_ord_id14,
):
    """Write the Side..AppendageLength part Order Accepted and Order Replaced share, from Side at buf[p]."""
    buf[p + _T_SIDE] = side
    put_be_nb(buf, p + _T_QTY, quantity, 4)
    for k in range(_SYMBOL_LEN):
        buf[p + _T_SYMBOL + k] = symbol8[k]
    put_be_nb(buf, p + _T_PRICE, price, 8)
    buf[p + _T_TIF] = time_in_force
    buf[p + _T_DISPLAY] = display
    put_be_nb(buf, p + _T_ORDER_REF, order_reference_number, 8)
    buf[p + _T_CAPACITY] = capacity
    buf[p + _T_ISO] = iso
    buf[p + _T_CROSS] = cross_type
    buf[p + _T_STATE] = order_state
    for k in range(_CLORDID_LEN):
        buf[p + _T_CLORDID + k] = cl_ord_id14[k]
    put_be_nb(buf, p + _T_APPLEN, 0, 2)


@njit(cache=True, nogil=True)
def encode_accepted_nb(
    buf,
    pos,
    timestamp,
    user_ref_num,
    side,
    quantity,
    symbol8,
    price,
    time_in_force,
    display,
    order_reference_number,
    capacity,
    iso,
    cross_type,
    order_state,
    cl_ord_id14,
):
    """Write an Order Accepted with an empty appendage at buf[pos:]; bytes written (64), 0 if no room.

    The exchange's answer to an Enter Order. Character fields are ASCII codes, symbol8 and
    cl_ord_id14 space-padded uint8 arrays (see :func:`alpha`), price in 1e-4 units, ``iso`` the
    InterMarketSweepEligibility.
    """
    if pos + _A_LEN > buf.shape[0]:
        return 0
    buf[pos] = _K_A
    put_be_nb(buf, pos + _TS, timestamp, 8)
    put_be_nb(buf, pos + _URN, user_ref_num, 4)
    _put_order_tail_nb(
        buf,
        pos + _A_SIDE,
        side,
        quantity,
        symbol8,
        price,
        time_in_force,
        display,
        order_reference_number,
        capacity,
        iso,
        cross_type,
        order_state,
        cl_ord_id14,
    )
    return _A_LEN


@njit(cache=True, nogil=True)
def encode_replaced_nb(
    buf,
    pos,
    timestamp,
    orig_user_ref_num,
    user_ref_num,
    side,
    quantity,
    symbol8,
    price,
    time_in_force,
    display,
    order_reference_number,
    capacity,
    iso,
    cross_type,
    order_state,
    cl_ord_id14,
):
    """Write an Order Replaced with an empty appendage at buf[pos:]; bytes written (68), 0 if no room.

    The exchange's answer to a Replace Order; fields as in :func:`encode_accepted_nb`.
    """
    if pos + _U_LEN > buf.shape[0]:
        return 0
    buf[pos] = _K_U
    put_be_nb(buf, pos + _TS, timestamp, 8)
    put_be_nb(buf, pos + _U_ORIG_URN, orig_user_ref_num, 4)
    put_be_nb(buf, pos + _U_URN, user_ref_num, 4)
    _put_order_tail_nb(
        buf,
        pos + _U_SIDE,
        side,
        quantity,
        symbol8,
        price,
        time_in_force,
        display,
        order_reference_number,
        capacity,
        iso,
        cross_type,
        order_state,
        cl_ord_id14,
    )
    return _U_LEN


@njit(cache=True, nogil=True)
def encode_canceled_nb(buf, pos, timestamp, user_ref_num, quantity, reason):
    """Write an Order Canceled (``quantity`` = shares decremented, ``reason`` a CANCEL_* code) at buf[pos:].

    Bytes written (18, no appendage as in the spec), 0 if no room.
    """
    if pos + _C_LEN > buf.shape[0]:
        return 0
    buf[pos] = _K_C
    put_be_nb(buf, pos + _TS, timestamp, 8)
    put_be_nb(buf, pos + _URN, user_ref_num, 4)
    put_be_nb(buf, pos + _C_QTY, quantity, 4)
    buf[pos + _C_REASON] = reason
    return _C_LEN


@njit(cache=True, nogil=True)
def encode_executed_nb(buf, pos, timestamp, user_ref_num, quantity, price, liquidity_flag, match_number):
    """Write an Order Executed with an empty appendage at buf[pos:]; bytes written (36), 0 if no room."""
    if pos + _E_LEN > buf.shape[0]:
        return 0
    buf[pos] = _K_E
    put_be_nb(buf, pos + _TS, timestamp, 8)
    put_be_nb(buf, pos + _URN, user_ref_num, 4)
    put_be_nb(buf, pos + _E_QTY, quantity, 4)
    put_be_nb(buf, pos + _E_PRICE, price, 8)
    buf[pos + _E_LIQUIDITY] = liquidity_flag
    put_be_nb(buf, pos + _E_MATCH, match_number, 8)
    put_be_nb(buf, pos + _E_APPLEN, 0, 2)
    return _E_LEN


@njit(cache=True, nogil=True)
def encode_rejected_nb(buf, pos, timestamp, user_ref_num, reason, cl_ord_id14):
    """Write an Order Rejected (``reason`` the u16 REJECT_* code) at buf[pos:]; bytes written (29), 0 if no room."""
    if pos + _J_LEN > buf.shape[0]:
        return 0
    buf[pos] = _K_J
    put_be_nb(buf, pos + _TS, timestamp, 8)
    put_be_nb(buf, pos + _URN, user_ref_num, 4)
    put_be_nb(buf, pos + _J_REASON, reason, 2)
    for k in range(_CLORDID_LEN):
        buf[pos + _J_CLORDID + k] = cl_ord_id14[k]
    return _J_LEN
