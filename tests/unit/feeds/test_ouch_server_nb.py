"""OUCH 5.0 exchange side in Numba: outbound encoders and the inbound decoder, held to the Python codec."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import feeds.ouch as ouch
from feeds.errors import FeedError
from feeds.ouch import (
    ERR_BAD_APPENDAGE,
    ERR_BAD_LENGTH,
    ERR_OUT_OF_BUFFER,
    ERR_TRUNCATED,
    ERR_UNKNOWN_TYPE,
    INBOUND,
    INBOUND_DTYPES,
    ORDER_MESSAGE_DTYPE,
    OUTBOUND,
    OUTBOUND_DTYPES,
    RESPONSE_DTYPE,
    TAG_FIRM,
    TAG_MIN_QTY,
    TAG_POST_ONLY,
    alpha,
    decode,
    decode_inbound_nb,
    decode_outbound_nb,
    empty_responses,
    encode,
    encode_accepted_nb,
    encode_canceled_nb,
    encode_executed_nb,
    encode_rejected_nb,
    encode_replaced_nb,
    new_order_messages,
)
from tests.unit.feeds.test_ouch import HYPOTHESIS, fields_of

JUNK = 0xEE  # fills buffers around what an encoder writes
# Python ints above 2**63 - 1 passed to a jitted function that has an int64 specialization overflow in
# Numba's dispatcher, so the encoders get u64 fields below 2**63 from Python (a compiled caller passes
# int64 or uint64 values; test_encoders_take_uint64_identifiers covers the latter).
MAX_I64 = (1 << 63) - 1


def as_i64(value: int) -> int:
    """A u64 wire value as the int64 row fields hold it (two's complement)."""
    return value - (1 << 64) if value > MAX_I64 else value


# --- outbound encoders ----------------------------------------------------------------------------
def _order_tail(f: dict) -> tuple:
    """The arguments Order Accepted and Order Replaced share, Side to ClOrdID."""
    return (
        ord(f["side"]), f["quantity"], alpha(f["symbol"], 8), f["price"], ord(f["time_in_force"]),
        ord(f["display"]), f["order_reference_number"], ord(f["capacity"]),
        ord(f["intermarket_sweep_eligibility"]), ord(f["cross_type"]), ord(f["order_state"]),
        alpha(f["cl_ord_id"], 14),
    )  # fmt: skip


# type -> (encoder, its arguments after buf and pos from the Python codec's fields)
ENCODERS: dict[str, tuple[Callable, Callable[[dict], tuple]]] = {
    "A": (encode_accepted_nb, lambda f: (f["timestamp"], f["user_ref_num"], *_order_tail(f))),
    "U": (encode_replaced_nb, lambda f: (f["timestamp"], f["orig_user_ref_num"], f["user_ref_num"], *_order_tail(f))),
    "C": (encode_canceled_nb, lambda f: (f["timestamp"], f["user_ref_num"], f["quantity"], ord(f["reason"]))),
    "E": (encode_executed_nb, lambda f: (f["timestamp"], f["user_ref_num"], f["quantity"], f["price"],
                                         ord(f["liquidity_flag"]), f["match_number"])),
    "J": (encode_rejected_nb, lambda f: (f["timestamp"], f["user_ref_num"], f["reason"], alpha(f["cl_ord_id"], 14))),
}  # fmt: skip
SPEC_LENGTHS = {"A": 64, "U": 68, "C": 18, "E": 36, "J": 29}


def response_of(msg_type: str, f: dict) -> dict[str, int]:
    """The RESPONSE_DTYPE row decode_outbound_nb must give for the answer with fields ``f``."""
    row = dict.fromkeys(RESPONSE_DTYPE.names, 0)
    row.update(kind=ord(msg_type), timestamp_ns=f["timestamp"], user_ref_num=f["user_ref_num"])
    if msg_type in "AU":
        row.update(side=ord(f["side"]), qty=f["quantity"], price=f["price"], order_state=ord(f["order_state"]))
        row.update(order_reference_number=f["order_reference_number"], orig_user_ref_num=f.get("orig_user_ref_num", 0))
    elif msg_type == "C":
        row.update(qty=f["quantity"], reason=ord(f["reason"]))
    elif msg_type == "E":
        row.update(qty=f["quantity"], price=f["price"], liquidity_flag=ord(f["liquidity_flag"]))
        row["match_number"] = f["match_number"]
    else:
        row["reason"] = f["reason"]
    return row


@pytest.mark.parametrize("msg_type", list(ENCODERS))
@HYPOTHESIS
@given(data=st.data())
def test_encoders_write_the_python_codec_bytes(msg_type: str, data: st.DataObject) -> None:
    encoder, args = ENCODERS[msg_type]
    fields = data.draw(fields_of(OUTBOUND_DTYPES[msg_type], max_u64=MAX_I64))
    pos = data.draw(st.integers(0, 7))
    buf = np.full(pos + SPEC_LENGTHS[msg_type] + 3, JUNK, np.uint8)
    written = encoder(buf, pos, *args(fields))
    assert written == SPEC_LENGTHS[msg_type]
    assert bytes(buf[pos : pos + written]) == encode(OUTBOUND, msg_type, **fields)
    assert not (buf[:pos] != JUNK).any() and not (buf[pos + written :] != JUNK).any()
    # and the client's decoder reads them back
    out = empty_responses(1)
    assert decode_outbound_nb(buf, pos, written, out, 0) == written
    assert {name: int(out[0][name]) for name in RESPONSE_DTYPE.names} == response_of(msg_type, fields)


def test_encoders_take_uint64_identifiers() -> None:
    top, buf = (1 << 64) - 1, np.zeros(68, np.uint8)
    fields = dict(timestamp=top, user_ref_num=7, quantity=1, price=top - 1, liquidity_flag="R", match_number=1 << 63)
    u64 = np.uint64
    assert encode_executed_nb(buf, 0, u64(top), 7, 1, u64(top - 1), ord("R"), u64(1 << 63)) == 36
    assert bytes(buf[:36]) == encode(OUTBOUND, "E", **fields)
    args = (u64(top), 7, 8, ord("B"), 1, alpha("A", 8), u64(top), ord("0"), ord("Y"), u64(top - 2))
    n = encode_replaced_nb(buf, 0, *args, ord("A"), ord("N"), ord("N"), ord("L"), alpha("C", 14))
    assert n == 68 and decode(OUTBOUND, bytes(buf[:n]))["order_reference_number"] == top - 2
    assert decode(OUTBOUND, bytes(buf[:n]))["price"] == top and decode(OUTBOUND, bytes(buf[:n]))["timestamp"] == top


def test_encoders_are_held_to_the_spec_bytes() -> None:
    ts, clordid = (34_200_000_000_123).to_bytes(8, "big"), b"CLORD9        "
    buf = np.zeros(68, np.uint8)
    n = encode_rejected_nb(buf, 0, 34_200_000_000_123, 9, ouch.REJECT_INVALID_PRICE, alpha("CLORD9", 14))
    assert bytes(buf[:n]) == b"J" + ts + (9).to_bytes(4, "big") + b"\x00\x1d" + clordid
    n = encode_canceled_nb(buf, 0, 34_200_000_000_123, 7, 100, ord(ouch.CANCEL_USER_REQUESTED))
    assert bytes(buf[:n]) == b"C" + ts + (7).to_bytes(4, "big") + (100).to_bytes(4, "big") + b"U"
    n = encode_executed_nb(buf, 0, 34_200_000_000_123, 7, 100, 1_500_000, ord("A"), 42)
    wire = b"E" + ts + (7).to_bytes(4, "big") + (100).to_bytes(4, "big") + (1_500_000).to_bytes(8, "big") + b"A"
    assert bytes(buf[:n]) == wire + (42).to_bytes(8, "big") + b"\x00\x00"


@pytest.mark.parametrize("msg_type", list(ENCODERS))
def test_encoders_write_nothing_without_room(msg_type: str) -> None:
    encoder, args = ENCODERS[msg_type]
    fields = {
        name: "A" if OUTBOUND_DTYPES[msg_type][name].kind == "S" else 1
        for name in OUTBOUND_DTYPES[msg_type].names
        if name not in ("message_type", "appendage_length")
    }
    size = SPEC_LENGTHS[msg_type] + 5
    buf = np.zeros(size, np.uint8)
    assert encoder(buf, 6, *args(fields)) == 0  # one byte short
    assert encoder(buf[: size - 6], 0, *args(fields)) == 0
    assert not buf.any()
    assert encoder(buf, 5, *args(fields)) == SPEC_LENGTHS[msg_type]  # exactly fits
    assert bytes(buf[5:]) == encode(OUTBOUND, msg_type, **fields)


# --- inbound decoder ------------------------------------------------------------------------------
DECODED = ["O", "U", "X", "M"]
tags = st.sampled_from([TAG_POST_ONLY, TAG_POST_ONLY, TAG_FIRM, TAG_MIN_QTY]) | st.integers(0, 255)
values = st.sampled_from([b"P", b"N", b"", b"PP", b"ABCD"]) | st.binary(max_size=6)
appendages = st.lists(st.tuples(tags, values), max_size=4)


def order_message_of(decoded: dict, appendage_length: int) -> dict[str, object]:
    """The ORDER_MESSAGE_DTYPE row decode_inbound_nb must give for what ``ouch.decode`` read."""
    row: dict[str, object] = dict.fromkeys(ORDER_MESSAGE_DTYPE.names, 0)
    row.update(symbol=[0] * 8, cl_ord_id=[0] * 14, appendage_length=appendage_length)
    row["kind"] = ord(decoded["message_type"])
    for name in ("user_ref_num", "orig_user_ref_num", "quantity"):
        row[name] = decoded.get(name, 0)
    row["price"] = as_i64(decoded.get("price", 0))
    for name, source in (("side", "side"), ("time_in_force", "time_in_force"), ("display", "display"),
                         ("capacity", "capacity"), ("cross_type", "cross_type"),
                         ("iso", "intermarket_sweep_eligibility")):  # fmt: skip
        if source in decoded:
            row[name] = decoded[source].encode().ljust(1)[0]  # a blank field decodes as ""
    for name, width in (("symbol", 8), ("cl_ord_id", 14)):
        if name in decoded:
            row[name] = list(decoded[name].encode().ljust(width))
    row["post_only"] = int(dict(decoded.get("appendage", [])).get(TAG_POST_ONLY) == b"P")  # the last one decides
    return row


def row_of(record: np.void) -> dict[str, object]:
    return {name: record[name].tolist() if name in ("symbol", "cl_ord_id") else int(record[name])
            for name in ORDER_MESSAGE_DTYPE.names}  # fmt: skip


def junk_rows(n: int) -> np.ndarray:
    """n order message rows with no zero byte, so that a field left unwritten shows."""
    return np.frombuffer(bytes([0xA5]) * (n * ORDER_MESSAGE_DTYPE.itemsize), ORDER_MESSAGE_DTYPE).copy()


def decode_nb(message: bytes, out: np.ndarray, i: int = 0) -> int:
    """decode_inbound_nb of the whole of ``message`` into out[i]."""
    return decode_inbound_nb(np.frombuffer(message, np.uint8), 0, len(message), out, i)


@pytest.mark.parametrize("msg_type", DECODED)
@HYPOTHESIS
@given(data=st.data())
def test_decode_inbound_nb_agrees_with_python(msg_type: str, data: st.DataObject) -> None:
    dtype = INBOUND_DTYPES[msg_type]
    fields = data.draw(fields_of(dtype))
    appendage = data.draw(appendages) if "appendage_length" in dtype.names else []
    message = encode(INBOUND, msg_type, appendage=appendage, **fields)
    out = junk_rows(3)
    before = out[[0, 2]].tobytes()
    buf = np.frombuffer(b"\xbb" * 5 + message + b"\xcc", np.uint8)  # a longer buffer is fine: length decides
    assert decode_inbound_nb(buf, 5, len(message), out, 1) == len(message)
    assert row_of(out[1]) == order_message_of(decode(INBOUND, message), len(message) - dtype.itemsize)
    assert out[[0, 2]].tobytes() == before


@pytest.mark.parametrize(
    ("appendage", "post_only"),
    [
        ([], 0),
        ([(TAG_POST_ONLY, b"P")], 1),
        ([(TAG_POST_ONLY, b"N")], 0),
        ([(TAG_FIRM, b"ABCD"), (TAG_POST_ONLY, b"P"), (TAG_MIN_QTY, (100).to_bytes(4, "big"))], 1),
        ([(TAG_FIRM, b"ABCD"), (TAG_MIN_QTY, (100).to_bytes(4, "big"))], 0),
        ([(TAG_POST_ONLY, b"PP")], 0),  # not a one-byte value
        ([(TAG_POST_ONLY, b"")], 0),
        ([(TAG_POST_ONLY, b"P"), (TAG_POST_ONLY, b"N")], 0),  # the last one decides
        ([(TAG_POST_ONLY, b"N"), (TAG_POST_ONLY, b"P")], 1),
        ([(TAG_FIRM, b"P")], 0),  # another tag with the value P
    ],
)
@pytest.mark.parametrize("msg_type", ["O", "U"])
def test_post_only_comes_from_the_appendage(msg_type: str, appendage: list, post_only: int) -> None:
    message = encode(INBOUND, msg_type, user_ref_num=3, quantity=100, price=10_000, appendage=appendage)
    out = junk_rows(1)
    assert decode_nb(message, out) == len(message)
    appendage_length = len(message) - INBOUND_DTYPES[msg_type].itemsize
    assert out[0]["post_only"] == post_only and out[0]["appendage_length"] == appendage_length
    assert row_of(out[0]) == order_message_of(decode(INBOUND, message), appendage_length)


@pytest.mark.parametrize("msg_type", ["X", "M"])
def test_messages_without_an_appendage_are_also_read_with_one(msg_type: str) -> None:
    fields = {"user_ref_num": 7, "quantity": 300} | ({"side": "S"} if msg_type == "M" else {})
    wire = encode(INBOUND, msg_type, **fields)
    out = junk_rows(3)
    assert decode_nb(wire, out, 0) == len(wire)
    assert decode_nb(wire + b"\x00\x00", out, 1) == len(wire) + 2
    post_only = wire + b"\x00\x03\x02\x0cP"
    assert decode_nb(post_only, out, 2) == len(post_only)
    expected = order_message_of(decode(INBOUND, wire), 0)
    assert row_of(out[0]) == expected
    assert row_of(out[1]) == expected
    assert row_of(out[2]) == {**expected, "appendage_length": 3}  # checked and skipped: no post_only here
    assert decode(INBOUND, post_only) == decode(INBOUND, wire)


def test_decode_inbound_nb_reads_the_spec_bytes() -> None:
    wire = (b"O" + (8).to_bytes(4, "big") + b"B" + (100).to_bytes(4, "big") + b"AAPL    "
            + (1_500_000).to_bytes(8, "big") + b"0YAN" + b"N" + b"CLORD1        " + b"\x00\x03\x02\x0cP")  # fmt: skip
    out = new_order_messages(1)
    assert decode_nb(wire, out) == 50
    m = out[0]
    assert (m["kind"], m["user_ref_num"], m["side"], m["quantity"]) == (ord("O"), 8, ord("B"), 100)
    assert m["price"] == 1_500_000
    assert (m["time_in_force"], m["display"], m["capacity"], m["iso"], m["cross_type"]) == tuple(b"0YANN")
    assert bytes(m["symbol"]) == b"AAPL    " and bytes(m["cl_ord_id"]) == b"CLORD1        "
    assert m["post_only"] == 1 and m["appendage_length"] == 3 and m["orig_user_ref_num"] == 0


def test_decode_inbound_nb_reads_64_bit_prices_in_full() -> None:
    message = encode(INBOUND, "O", user_ref_num=1, quantity=1, price=ouch.PRICE_MARKET_CROSS)
    out = new_order_messages(1)
    assert decode_nb(message, out) == 47 and out[0]["price"] == ouch.PRICE_MARKET_CROSS


def _enter_with_firm() -> bytes:
    return encode(INBOUND, "O", user_ref_num=1, side="B", quantity=5, appendage=[(TAG_FIRM, b"ABCD")])


def _patched(message: bytes, at: int, value: int) -> bytes:
    data = bytearray(message)
    data[at] = value
    return bytes(data)


ENTER = _enter_with_firm()  # 47 + 6 bytes: element at 47 is [5][2]ABCD
CANCEL = encode(INBOUND, "X", user_ref_num=1, quantity=0)
BAD_INPUTS = [
    ("truncated by one", ENTER, len(ENTER) - 1, ERR_TRUNCATED),
    ("inside the fixed part", ENTER, 30, ERR_TRUNCATED),
    ("empty", ENTER, 0, ERR_TRUNCATED),
    ("one byte over", ENTER + b"\x00", len(ENTER) + 1, ERR_BAD_LENGTH),
    ("element of length 0", _patched(ENTER, 47, 0), len(ENTER), ERR_BAD_APPENDAGE),
    ("element past the block", _patched(ENTER, 47, 6), len(ENTER), ERR_BAD_APPENDAGE),
    ("declared appendage too long", _patched(ENTER, 46, 7), len(ENTER), ERR_TRUNCATED),
    ("declared appendage too short", _patched(ENTER, 46, 5), len(ENTER), ERR_BAD_LENGTH),
    ("cancel and one byte", CANCEL + b"\x00", 10, ERR_BAD_LENGTH),
    ("cancel, truncated appendage", CANCEL + b"\x00\x05\x00", 12, ERR_TRUNCATED),
    ("cancel, bad element", CANCEL + b"\x00\x02\x02\x0c", 13, ERR_BAD_APPENDAGE),
    ("outbound type", encode(OUTBOUND, "A"), 64, ERR_UNKNOWN_TYPE),
    ("mass cancel", encode(INBOUND, "C", user_ref_num=1, firm="FIRM", symbol="AAPL"), 19, ERR_UNKNOWN_TYPE),
    ("unknown type", b"Z" + ENTER[1:], len(ENTER), ERR_UNKNOWN_TYPE),
]


@pytest.mark.parametrize(("message", "length", "code"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_decode_inbound_nb_error_codes_leave_the_row(message: bytes, length: int, code: int) -> None:
    out = junk_rows(1)
    before = out.tobytes()
    buf = np.frombuffer(message, np.uint8)
    assert decode_inbound_nb(buf, 0, length, out, 0) == code
    assert out.tobytes() == before
    if code == ERR_UNKNOWN_TYPE and message[:1] == b"C":
        assert decode(INBOUND, message)["firm"] == "FIRM"  # read by the Python codec, refused by the kernel
    else:
        with pytest.raises(FeedError):
            decode(INBOUND, message[:length])


def test_decode_inbound_nb_out_of_buffer() -> None:
    out = junk_rows(1)
    before = out.tobytes()
    buf = np.frombuffer(ENTER, np.uint8)
    assert decode_inbound_nb(buf, 1, len(ENTER), out, 0) == ERR_OUT_OF_BUFFER
    assert decode_inbound_nb(buf[:-1], 0, len(ENTER), out, 0) == ERR_OUT_OF_BUFFER
    assert out.tobytes() == before
    assert decode_inbound_nb(buf, 0, len(ENTER), out, 0) == len(ENTER)


def test_new_order_messages_are_zeroed() -> None:
    rows = new_order_messages(4)
    assert rows.dtype == ORDER_MESSAGE_DTYPE and rows.shape == (4,) and not rows.tobytes().strip(b"\x00")
    assert all(ORDER_MESSAGE_DTYPE[name].byteorder in "=|" for name in ORDER_MESSAGE_DTYPE.names)
