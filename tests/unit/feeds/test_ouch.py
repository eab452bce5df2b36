"""OUCH 5.0 codec: layouts against the spec, Python round trips, and the jitted codec of the gateway."""

from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
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
    OUTBOUND,
    OUTBOUND_DTYPES,
    RESPONSE_DTYPE,
    SPEC_VERSION,
    alpha,
    decode,
    decode_outbound_nb,
    empty_responses,
    encode,
    encode_cancel_nb,
    encode_enter_order_nb,
    encode_replace_nb,
)

# Fixed-part lengths (type byte through AppendageLength, where the message has one) as the OUCH 5.0
# specification lists them.
SPEC_INBOUND_LENGTHS = {"O": 47, "U": 40, "X": 9, "M": 10, "C": 19}
SPEC_OUTBOUND_LENGTHS = {"S": 10, "A": 64, "U": 68, "C": 18, "D": 32, "E": 36, "B": 36, "J": 29}
ALPHA = string.ascii_uppercase + string.digits
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIRECTED = [(INBOUND, t) for t in INBOUND_DTYPES] + [(OUTBOUND, t) for t in OUTBOUND_DTYPES]

appendages = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=12)), max_size=4)


def fields_of(dtype: np.dtype, *, max_u64: int = (1 << 64) - 1) -> st.SearchStrategy[dict[str, int | str]]:
    """Values for every field of a message but its type byte and appendage length."""
    strategies: dict[str, st.SearchStrategy[int | str]] = {}
    for name in dtype.names:
        if name in ("message_type", "appendage_length"):
            continue
        field = dtype[name]
        if field.kind == "S" and field.itemsize == 1:
            strategies[name] = st.sampled_from(ALPHA)
        elif field.kind == "S":
            strategies[name] = st.text(ALPHA, max_size=field.itemsize)
        else:
            top = max_u64 if field.itemsize == 8 else (1 << (8 * field.itemsize)) - 1
            strategies[name] = st.integers(0, top)
    return st.fixed_dictionaries(strategies)


def test_spec_version() -> None:
    assert SPEC_VERSION == "5.0"


def test_fixed_lengths_match_the_spec() -> None:
    assert {t: d.itemsize for t, d in INBOUND_DTYPES.items()} == SPEC_INBOUND_LENGTHS
    assert {t: d.itemsize for t, d in OUTBOUND_DTYPES.items()} == SPEC_OUTBOUND_LENGTHS
    assert ouch.INBOUND_FIXED_LENGTHS[ord("O")] == 47 and ouch.OUTBOUND_FIXED_LENGTHS[ord("A")] == 64
    assert ouch.INBOUND_FIXED_LENGTHS[ord("A")] == 0 and ouch.OUTBOUND_FIXED_LENGTHS[ord("O")] == 0


def test_enter_order_offsets_match_the_spec() -> None:
    dtype = INBOUND_DTYPES["O"]
    offsets = {name: dtype.fields[name][1] for name in dtype.names}
    assert offsets == {
        "message_type": 0, "user_ref_num": 1, "side": 5, "quantity": 6, "symbol": 10, "price": 18,
        "time_in_force": 26, "display": 27, "capacity": 28, "intermarket_sweep_eligibility": 29,
        "cross_type": 30, "cl_ord_id": 31, "appendage_length": 45,
    }  # fmt: skip
    assert dtype["price"].itemsize == 8


def test_all_numeric_fields_are_big_endian() -> None:
    for dtype in [*INBOUND_DTYPES.values(), *OUTBOUND_DTYPES.values()]:
        for name in dtype.names:
            if dtype[name].kind == "u":
                assert dtype[name].byteorder == ">", name


def test_reject_reasons_are_the_spec_codes() -> None:
    codes = sorted(v for k, v in vars(ouch).items() if k.startswith("REJECT_"))
    assert codes == list(range(0x0001, 0x0033))
    assert ouch.REJECT_HALTED == 0x0007 and ouch.REJECT_OTHER == 0x000F and ouch.REJECT_INVALID_PRICE == 0x001D


@pytest.mark.parametrize(("direction", "msg_type"), DIRECTED)
@HYPOTHESIS
@given(data=st.data())
def test_round_trip_every_message_type(direction: str, msg_type: str, data: st.DataObject) -> None:
    dtype = ouch._DTYPES[direction][msg_type]
    fields = data.draw(fields_of(dtype))
    has_appendage = "appendage_length" in dtype.names
    appendage = data.draw(appendages) if has_appendage else []
    message = encode(direction, msg_type, appendage=appendage, **fields)
    block = sum(2 + len(value) for _, value in appendage)
    assert len(message) == dtype.itemsize + block
    assert message[:1] == msg_type.encode()
    decoded = decode(direction, message)
    expected: dict[str, object] = {"message_type": msg_type, **fields}
    if has_appendage:
        expected["appendage"] = appendage
        assert int.from_bytes(message[dtype.itemsize - 2 : dtype.itemsize], "big") == block
    assert decoded == expected


def test_empty_appendage_by_default() -> None:
    message = encode(INBOUND, "C", user_ref_num=9, firm="FIRM", symbol="AAPL")
    assert message == b"C" + (9).to_bytes(4, "big") + b"FIRM" + b"AAPL    " + b"\x00\x00"
    assert decode(INBOUND, message)["appendage"] == []


def test_tag_value_element_length_counts_tag_and_value() -> None:
    message = encode(INBOUND, "C", user_ref_num=1, appendage=[(ouch.TAG_MIN_QTY, (100).to_bytes(4, "big"))])
    assert message[17:] == b"\x00\x06" + b"\x05\x03" + (100).to_bytes(4, "big")


def test_alpha_fields_are_space_padded() -> None:
    message = encode(OUTBOUND, "J", timestamp=1, user_ref_num=2, reason=ouch.REJECT_HALTED, cl_ord_id="AB")
    assert message[15:29] == b"AB" + b" " * 12
    assert message[13:15] == b"\x00\x07"


@HYPOTHESIS
@given(fields=fields_of(INBOUND_DTYPES["O"], max_u64=(1 << 63) - 1))
def test_encode_enter_order_nb_matches_python(fields: dict[str, int | str]) -> None:
    buf = np.full(64, 0xEE, np.uint8)
    written = encode_enter_order_nb(
        buf,
        3,
        fields["user_ref_num"],
        ord(fields["side"]),
        fields["quantity"],
        alpha(fields["symbol"], 8),
        fields["price"],
        ord(fields["time_in_force"]),
        ord(fields["display"]),
        ord(fields["capacity"]),
        ord(fields["intermarket_sweep_eligibility"]),
        ord(fields["cross_type"]),
        alpha(fields["cl_ord_id"], 14),
    )
    assert written == SPEC_INBOUND_LENGTHS["O"]
    assert bytes(buf[3 : 3 + written]) == encode(INBOUND, "O", **fields)
    assert buf[2] == 0xEE and buf[3 + written] == 0xEE


@HYPOTHESIS
@given(fields=fields_of(INBOUND_DTYPES["U"], max_u64=(1 << 63) - 1))
def test_encode_replace_nb_matches_python(fields: dict[str, int | str]) -> None:
    buf = np.zeros(40, np.uint8)
    written = encode_replace_nb(
        buf,
        0,
        fields["orig_user_ref_num"],
        fields["user_ref_num"],
        fields["quantity"],
        fields["price"],
        ord(fields["time_in_force"]),
        ord(fields["display"]),
        ord(fields["intermarket_sweep_eligibility"]),
        alpha(fields["cl_ord_id"], 14),
    )
    assert written == SPEC_INBOUND_LENGTHS["U"]
    assert bytes(buf) == encode(INBOUND, "U", **fields)


@HYPOTHESIS
@given(fields=fields_of(INBOUND_DTYPES["X"]))
def test_encode_cancel_nb_matches_python(fields: dict[str, int]) -> None:
    buf = np.zeros(9, np.uint8)
    assert encode_cancel_nb(buf, 0, fields["user_ref_num"], fields["quantity"]) == SPEC_INBOUND_LENGTHS["X"]
    assert bytes(buf) == encode(INBOUND, "X", **fields)


def test_nb_encoders_write_nothing_without_room() -> None:
    buf = np.zeros(50, np.uint8)
    sym, clordid = alpha("AAPL", 8), alpha("C1", 14)
    b, y, a, n = ord("B"), ord("Y"), ord("A"), ord("N")
    assert encode_enter_order_nb(buf, 4, 1, b, 100, sym, 10_000, ord("0"), y, a, n, n, clordid) == 0
    assert encode_replace_nb(buf, 11, 1, 2, 100, 10_000, ord("0"), y, n, clordid) == 0
    assert encode_cancel_nb(buf, 42, 1, 0) == 0
    assert not buf.any()


def expected_response(msg_type: str, f: dict, appendage_length: int) -> dict[str, int]:
    """The response record decode_outbound_nb must produce for decoded fields ``f``."""
    row = dict.fromkeys(RESPONSE_DTYPE.names, 0)
    row.update(kind=ord(msg_type), timestamp_ns=f["timestamp"], appendage_length=appendage_length)
    if msg_type == "S":
        row["reason"] = ord(f["event_code"])
        return row
    row["user_ref_num"] = f["user_ref_num"]
    if msg_type in "AU":
        row.update(side=ord(f["side"]), qty=f["quantity"], price=f["price"], order_state=ord(f["order_state"]))
        row["order_reference_number"] = f["order_reference_number"]
        if msg_type == "U":
            row["orig_user_ref_num"] = f["orig_user_ref_num"]
    elif msg_type == "C":
        row.update(qty=f["quantity"], reason=ord(f["reason"]))
    elif msg_type == "D":
        row.update(qty=f["decrement_shares"], reason=ord(f["reason"]), price=f["execution_price"])
        row.update(qty_prevented=f["quantity_prevented_from_trading"], liquidity_flag=ord(f["liquidity_flag"]))
        row["aiq_strategy"] = ord(f["aiq_strategy"])
    elif msg_type == "E":
        row.update(qty=f["quantity"], price=f["price"], liquidity_flag=ord(f["liquidity_flag"]))
        row["match_number"] = f["match_number"]
    elif msg_type == "B":
        row.update(match_number=f["match_number"], reason=ord(f["reason"]))
    else:
        row["reason"] = f["reason"]
    return row


@pytest.mark.parametrize("msg_type", list(OUTBOUND_DTYPES))
@HYPOTHESIS
@given(data=st.data())
def test_decode_outbound_nb_fills_the_response(msg_type: str, data: st.DataObject) -> None:
    dtype = OUTBOUND_DTYPES[msg_type]
    fields = data.draw(fields_of(dtype, max_u64=(1 << 63) - 1))
    appendage = data.draw(appendages) if "appendage_length" in dtype.names else []
    message = encode(OUTBOUND, msg_type, appendage=appendage, **fields)
    buf = np.frombuffer(b"\xaa" * 5 + message + b"\xbb", np.uint8)
    out = empty_responses(3)
    out[2] = np.array(tuple(range(1, len(RESPONSE_DTYPE.names) + 1)), RESPONSE_DTYPE)
    assert decode_outbound_nb(buf, 5, len(message), out, 2) == len(message)
    got = {name: int(out[2][name]) for name in RESPONSE_DTYPE.names}
    assert got == expected_response(msg_type, fields, len(message) - dtype.itemsize)
    assert not out[:2].tobytes().strip(b"\x00")


def test_decode_outbound_nb_reads_64_bit_identifiers_in_full() -> None:
    message = encode(OUTBOUND, "E", timestamp=5, user_ref_num=1, quantity=1, price=1, match_number=(1 << 64) - 1)
    out = empty_responses(1)
    assert decode_outbound_nb(np.frombuffer(message, np.uint8), 0, len(message), out, 0) == 36
    assert int(out[0]["match_number"]) == (1 << 64) - 1


def test_decode_outbound_nb_error_codes() -> None:
    accepted = encode(OUTBOUND, "A", timestamp=1, user_ref_num=1, appendage=[(ouch.TAG_FIRM, b"ABCD")])
    buf = np.frombuffer(accepted, np.uint8)
    out = empty_responses(1)
    assert decode_outbound_nb(buf, 0, len(accepted), out, 0) == len(accepted)
    assert decode_outbound_nb(buf, 0, len(accepted) - 1, out, 0) == ERR_TRUNCATED
    assert decode_outbound_nb(buf, 0, 30, out, 0) == ERR_TRUNCATED
    assert decode_outbound_nb(buf, 0, 0, out, 0) == ERR_TRUNCATED
    assert decode_outbound_nb(buf, 1, len(accepted), out, 0) == ERR_OUT_OF_BUFFER
    longer = np.frombuffer(accepted + b"\x00", np.uint8)
    assert decode_outbound_nb(longer, 0, len(accepted) + 1, out, 0) == ERR_BAD_LENGTH
    unknown = np.frombuffer(b"O" + accepted[1:], np.uint8)
    assert decode_outbound_nb(unknown, 0, len(accepted), out, 0) == ERR_UNKNOWN_TYPE
    zero_element = bytearray(accepted)
    zero_element[64] = 0
    assert decode_outbound_nb(np.frombuffer(bytes(zero_element), np.uint8), 0, 70, out, 0) == ERR_BAD_APPENDAGE
    overrun = bytearray(accepted)
    overrun[64] = 6
    assert decode_outbound_nb(np.frombuffer(bytes(overrun), np.uint8), 0, 70, out, 0) == ERR_BAD_APPENDAGE
    assert out[0]["kind"] == ord("A") and out[0]["appendage_length"] == 6  # errors leave the row as it was


def test_decode_rejects_unknown_types() -> None:
    with pytest.raises(FeedError, match="unknown inbound message type 'A'"):
        decode(INBOUND, encode(OUTBOUND, "A"))
    with pytest.raises(FeedError, match="unknown outbound message type 'O'"):
        decode(OUTBOUND, encode(INBOUND, "O"))
    with pytest.raises(FeedError, match="zero-length"):
        decode(OUTBOUND, b"")
    with pytest.raises(ValueError, match="direction"):
        decode("sideways", b"S")


def test_decode_rejects_short_messages() -> None:
    message = encode(INBOUND, "O", user_ref_num=1)
    with pytest.raises(FeedError, match="truncated inbound message 'O': 46 bytes, fixed part is 47"):
        decode(INBOUND, message[:-1])
    event = encode(OUTBOUND, "S", timestamp=1, event_code=ouch.EVENT_START_OF_DAY)
    assert len(event) == 10
    with pytest.raises(FeedError, match="expects 10, or 12 and more"):
        decode(OUTBOUND, event + b"x")


@pytest.mark.parametrize("msg_type", ["E", "C"])  # E has an appendage; C may carry one the spec does not define
def test_decode_rejects_bad_appendage_lengths(msg_type: str) -> None:
    message = encode(OUTBOUND, msg_type, timestamp=1, user_ref_num=1, quantity=5)
    if msg_type == "C":
        message += b"\x00\x00"
    fixed = len(message) - 2
    with pytest.raises(FeedError, match=f"truncated appendage in outbound message '{msg_type}': appendage length 4, 3"):
        decode(OUTBOUND, message[:fixed] + b"\x00\x04" + b"\x03\x02A")
    with pytest.raises(FeedError, match="bytes after the appendage"):
        decode(OUTBOUND, message + b"\x01\x02")
    with pytest.raises(FeedError, match="truncated TagValue element"):
        decode(OUTBOUND, message[:fixed] + b"\x00\x04" + b"\x05\x02AB")
    with pytest.raises(FeedError, match="length 0"):
        decode(OUTBOUND, message[:fixed] + b"\x00\x01" + b"\x00")


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"unknown OUCH 5\.0 inbound message type 'A'"):
        encode(INBOUND, "A")
    with pytest.raises(ValueError, match="has no field 'timestamp'"):
        encode(INBOUND, "O", timestamp=1)
    with pytest.raises(ValueError, match="has no field 'appendage_length'"):
        encode(INBOUND, "O", appendage_length=3)
    with pytest.raises(ValueError, match="has no appendage"):
        encode(INBOUND, "X", appendage=[(1, b"x")])
    with pytest.raises(ValueError, match="longer than 8"):
        encode(INBOUND, "O", symbol="TOOLONGSYM")
    with pytest.raises(ValueError, match="does not fit"):
        encode(INBOUND, "X", quantity=1 << 32)
    with pytest.raises(ValueError, match="does not fit"):
        encode(OUTBOUND, "E", price=-1)
    with pytest.raises(ValueError, match="has no appendage"):
        encode(OUTBOUND, "S", appendage=[(1, b"x")])
    with pytest.raises(ValueError, match="254 bytes"):
        encode(INBOUND, "X", appendage=[(1, b"x" * 255)])
    with pytest.raises(ValueError, match="one byte"):
        encode(INBOUND, "X", appendage=[(256, b"")])
    with pytest.raises(ValueError, match="longer than 14"):
        alpha("X" * 15, 14)


# Messages written byte by byte from the OUCH 5.0 specification's tables (type, then each field at its
# offset and width; no AppendageLength where the spec's table has none), and the fields they carry.
def u(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


TS = u(34_200_000_000_123, 8)  # 09:30:00.000000123
GOLDEN = [
    (INBOUND, b"X" + u(7, 4) + u(0, 4), {"user_ref_num": 7, "quantity": 0}),  # Cancel Order: 9
    (INBOUND, b"M" + u(7, 4) + b"S" + u(300, 4), {"user_ref_num": 7, "side": "S", "quantity": 300}),  # Modify: 10
    (INBOUND, b"O" + u(8, 4) + b"B" + u(100, 4) + b"AAPL    " + u(1_500_000, 8) + b"0YAN" + b"N" + b"CLORD1        "
     + u(0, 2), {"user_ref_num": 8, "side": "B", "quantity": 100, "symbol": "AAPL", "price": 1_500_000,
                 "time_in_force": "0", "display": "Y", "capacity": "A", "intermarket_sweep_eligibility": "N",
                 "cross_type": "N", "cl_ord_id": "CLORD1", "appendage": []}),  # Enter Order: 47 + appendage
    (OUTBOUND, b"S" + TS + b"S", {"timestamp": 34_200_000_000_123, "event_code": "S"}),  # System Event: 10
    (OUTBOUND, b"C" + TS + u(7, 4) + u(100, 4) + b"U",
     {"timestamp": 34_200_000_000_123, "user_ref_num": 7, "quantity": 100, "reason": "U"}),  # Order Canceled: 18
    (OUTBOUND, b"J" + TS + u(9, 4) + u(0x1D, 2) + b"CLORD9        ",
     {"timestamp": 34_200_000_000_123, "user_ref_num": 9, "reason": 0x1D, "cl_ord_id": "CLORD9"}),  # Rejected: 29
    (OUTBOUND, b"B" + TS + u(7, 4) + u(42, 8) + b"E" + b"CLORD7        ",
     {"timestamp": 34_200_000_000_123, "user_ref_num": 7, "match_number": 42, "reason": "E",
      "cl_ord_id": "CLORD7"}),  # Broken Trade: 36
    (OUTBOUND, b"D" + TS + u(7, 4) + u(50, 4) + b"Q" + u(50, 4) + u(1_500_000, 8) + b"A" + b"N",
     {"timestamp": 34_200_000_000_123, "user_ref_num": 7, "decrement_shares": 50, "reason": "Q",
      "quantity_prevented_from_trading": 50, "execution_price": 1_500_000, "liquidity_flag": "A",
      "aiq_strategy": "N"}),  # AIQ Canceled: 32
    (OUTBOUND, b"E" + TS + u(7, 4) + u(100, 4) + u(1_500_000, 8) + b"A" + u(42, 8) + u(0, 2),
     {"timestamp": 34_200_000_000_123, "user_ref_num": 7, "quantity": 100, "price": 1_500_000,
      "liquidity_flag": "A", "match_number": 42, "appendage": []}),  # Order Executed: 34 + appendage
]  # fmt: skip


@pytest.mark.parametrize(("direction", "wire", "fields"), GOLDEN, ids=[f"{d}-{w[:1].decode()}" for d, w, _ in GOLDEN])
def test_codec_is_held_to_the_spec_bytes(direction: str, wire: bytes, fields: dict) -> None:
    msg_type = wire[:1].decode()
    plain = {k: v for k, v in fields.items() if k != "appendage"}
    assert encode(direction, msg_type, **plain) == wire
    assert decode(direction, wire) == {"message_type": msg_type, **fields}


@pytest.mark.parametrize("msg_type", ["C", "D", "B", "J"])
def test_outbound_messages_without_an_appendage_are_also_read_with_one(msg_type: str) -> None:
    wire = next(w for d, w, _ in GOLDEN if d == OUTBOUND and w[:1] == msg_type.encode())
    out = empty_responses(2)
    for k, message in enumerate((wire, wire + b"\x00\x00")):  # the spec's form; one with an empty appendage
        assert decode_outbound_nb(np.frombuffer(message, np.uint8), 0, len(message), out, k) == len(message)
    assert out[0].tobytes() == out[1].tobytes()
    assert decode(OUTBOUND, wire + b"\x00\x03\x02\x0cP") == decode(OUTBOUND, wire)
    for bad in (wire + b"\x00", wire + b"\x00\x05\x00"):
        assert decode_outbound_nb(np.frombuffer(bad, np.uint8), 0, len(bad), out, 0) < 0
        with pytest.raises(FeedError):
            decode(OUTBOUND, bad)


def test_cancel_order_is_read_with_and_without_an_appendage_and_written_without() -> None:
    assert decode(INBOUND, b"X" + u(7, 4) + u(0, 4) + b"\x00\x00") == {"message_type": "X", "user_ref_num": 7,
                                                                        "quantity": 0}  # fmt: skip
    buf = np.zeros(16, np.uint8)
    assert encode_cancel_nb(buf, 0, 7, 0) == 9 and buf[:9].tobytes() == b"X" + u(7, 4) + u(0, 4)
