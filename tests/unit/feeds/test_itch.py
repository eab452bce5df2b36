"""ITCH 5.0 codec: layouts against the spec, Python round trips, and the jitted decoder's rows."""

from __future__ import annotations

import string
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import events as E
from engine.core.events import empty_events
from feeds.errors import FeedError
from feeds.itch import (
    ERR_BAD_LENGTH,
    ERR_TRUNCATED,
    ERR_UNKNOWN_TYPE,
    ERR_ZERO_LENGTH,
    MESSAGE_DTYPES,
    MESSAGE_LENGTHS,
    SPEC_VERSION,
    STATUS_DONE,
    STATUS_NEED_MORE,
    STATUS_OUT_FULL,
    decode_flat_nb,
    decode_message,
    decode_message_nb,
    encode,
    frame,
    new_stock_directory,
)

# Message lengths as the TotalView-ITCH 5.0 specification lists them.
SPEC_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
    "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}  # fmt: skip

# Fields whose values the decoder interprets: draw them from the spec's code sets.
CODE_SETS = {"buy_sell_indicator": "BS", "printable": "YN", "event_code": "OSQMEC", "trading_state": "HPQT"}
ALPHA = string.ascii_uppercase + string.digits + ".-"
SIDES = {"B": E.SIDE_BID, "S": E.SIDE_ASK}


def field_strategy(msg_type: str) -> st.SearchStrategy[dict]:
    """Every field of ``msg_type`` with a random value (alpha fields without padding)."""
    dtype = MESSAGE_DTYPES[msg_type]
    fields: dict[str, st.SearchStrategy] = {"timestamp": st.integers(0, (1 << 48) - 1)}
    for name in dtype.names:
        if name in ("message_type", "timestamp_hi", "timestamp_lo"):
            continue
        field = dtype[name]
        if name in CODE_SETS:
            fields[name] = st.sampled_from(CODE_SETS[name])
        elif field.kind == "S":
            fields[name] = st.text(ALPHA, max_size=field.itemsize)
        else:
            fields[name] = st.integers(0, (1 << (8 * field.itemsize)) - 1)
    return st.fixed_dictionaries(fields)


def expected_row(msg_type: str, f: dict, seq: int) -> dict | None:
    """The event row the spec's meaning of ``f`` gives, or None for a message without a row."""
    row = {
        "ts_exch_ns": f["timestamp"], "ts_local_ns": f["timestamp"], "seq": seq,
        "instrument": f["stock_locate"], "src_type": ord(msg_type), "order_id": 0, "new_order_id": 0,
        "price": 0, "qty": 0, "side": E.SIDE_NONE, "flags": 0,
    }  # fmt: skip
    if msg_type in "AF":
        row.update(kind=E.KIND_ADD, order_id=f["order_reference_number"], price=f["price"],
                   qty=f["shares"], side=SIDES[f["buy_sell_indicator"]])  # fmt: skip
    elif msg_type == "E":
        row.update(kind=E.KIND_EXECUTE, order_id=f["order_reference_number"], qty=f["executed_shares"])
    elif msg_type == "C":
        row.update(kind=E.KIND_EXECUTE_PRICE, order_id=f["order_reference_number"],
                   qty=f["executed_shares"], price=f["execution_price"],
                   flags=E.FLAG_NON_PRINTABLE if f["printable"] == "N" else 0)  # fmt: skip
    elif msg_type == "X":
        row.update(kind=E.KIND_CANCEL, order_id=f["order_reference_number"], qty=f["cancelled_shares"])
    elif msg_type == "D":
        row.update(kind=E.KIND_DELETE, order_id=f["order_reference_number"])
    elif msg_type == "U":
        row.update(kind=E.KIND_REPLACE, order_id=f["original_order_reference_number"], qty=f["shares"],
                   new_order_id=f["new_order_reference_number"], price=f["price"])  # fmt: skip
    elif msg_type == "P":
        row.update(kind=E.KIND_TRADE, order_id=f["order_reference_number"], qty=f["shares"],
                   price=f["price"], side=-SIDES[f["buy_sell_indicator"]])  # aggressor  # fmt: skip
    elif msg_type == "Q":
        row.update(kind=E.KIND_TRADE, qty=int(np.uint64(f["shares"]).astype(np.int64)), price=f["cross_price"])
    elif msg_type == "H":
        row.update(kind=E.KIND_STATUS, flags=ord(f["trading_state"]))
    elif msg_type == "S":
        row.update(kind=E.KIND_STATUS, instrument=E.ALL_INSTRUMENTS, flags=ord(f["event_code"]))
    else:
        return None
    return row


def decode_framed(body: bytes, out_rows: int = 8, seq0: int = 0, skip_bad: bool = False):
    """Run decode_flat_nb over a whole framed body; returns (result, out, counts, directory)."""
    buf = np.frombuffer(body, np.uint8)
    out = empty_events(out_rows)
    counts = np.zeros(256, np.int64)
    directory = new_stock_directory()
    result = decode_flat_nb(buf, 0, len(buf), out, counts, directory, seq0, skip_bad)
    return result, out, counts, directory


def test_spec_version_is_5_0():
    assert SPEC_VERSION == "5.0"


def test_every_message_type_has_the_spec_length():
    assert {t: d.itemsize for t, d in MESSAGE_DTYPES.items()} == SPEC_LENGTHS
    for msg_type, length in SPEC_LENGTHS.items():
        assert MESSAGE_LENGTHS[ord(msg_type)] == length
    assert np.count_nonzero(MESSAGE_LENGTHS) == len(SPEC_LENGTHS)
    assert MESSAGE_LENGTHS.dtype == np.int64 and MESSAGE_LENGTHS.shape == (256,)


def test_dtypes_are_big_endian_with_the_common_header():
    for dtype in MESSAGE_DTYPES.values():
        assert dtype.names[:5] == ("message_type", "stock_locate", "tracking_number", "timestamp_hi",
                                   "timestamp_lo")  # fmt: skip
        assert [dtype.fields[n][1] for n in dtype.names[:5]] == [0, 1, 3, 5, 7]
        for name in dtype.names:
            assert dtype[name].kind == "S" or dtype[name].byteorder == ">"


def test_add_order_bytes_match_a_hand_packed_message():
    ts = 0x123456789ABC
    packed = struct.pack(">cHH", b"A", 7, 3) + ts.to_bytes(6, "big")
    packed += struct.pack(">QcI8sI", 99, b"S", 300, b"AAPL    ", 1_234_500)
    built = encode("A", stock_locate=7, tracking_number=3, timestamp=ts, order_reference_number=99,
                   buy_sell_indicator="S", shares=300, stock="AAPL", price=1_234_500)  # fmt: skip
    assert built == packed


def test_cross_trade_carries_64_bit_shares():
    packed = struct.pack(">cHH", b"Q", 1, 0) + (5).to_bytes(6, "big")
    packed += struct.pack(">Q8sIQc", 1 << 40, b"ZVZZT   ", 100, 77, b"O")
    assert encode("Q", stock_locate=1, timestamp=5, shares=1 << 40, stock="ZVZZT", cross_price=100,
                  match_number=77, cross_type="O") == packed  # fmt: skip


def test_encode_defaults_missing_fields_to_zero_and_spaces():
    msg = encode("D")
    assert msg == b"D" + bytes(18)
    assert encode("S")[11:] == b" "
    assert decode_message(encode("R"))["stock"] == ""


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"bogus": 1}, "no field 'bogus'"),
        ({"timestamp_hi": 1}, "no field"),
        ({"stock": "TOOLONGSYM"}, "longer than 8"),
        ({"shares": 1 << 32}, "does not fit"),
        ({"timestamp": 1 << 48}, "48 bits"),
    ],
)
def test_encode_rejects_bad_fields(kwargs, error):
    with pytest.raises(ValueError, match=error):
        encode("A", **kwargs)


def test_encode_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown"):
        encode("Z")


def test_decode_message_rejects_bad_input():
    with pytest.raises(FeedError, match="unknown message type 'Z'"):
        decode_message(b"Z" + bytes(10))
    with pytest.raises(FeedError, match="length 20 for type 'A' \\(expects 36\\)"):
        decode_message(encode("A")[:20])
    with pytest.raises(FeedError, match="zero-length"):
        decode_message(b"")


@pytest.mark.parametrize("msg_type", sorted(SPEC_LENGTHS))
def test_round_trip_every_message_type(msg_type):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(fields=field_strategy(msg_type), seq0=st.integers(0, 1 << 40))
    def check(fields, seq0):
        message = encode(msg_type, **fields)
        assert len(message) == SPEC_LENGTHS[msg_type]
        assert decode_message(message) == {"message_type": msg_type, **fields}
        (pos, n, status, bad), out, counts, directory = decode_framed(frame([message]), seq0=seq0)
        assert (pos, status, bad) == (len(message) + 2, STATUS_DONE, 0)
        assert counts[ord(msg_type)] == 1 and counts.sum() == 1
        expected = expected_row(msg_type, fields, seq0)
        if expected is None:
            assert n == 0
        else:
            assert n == 1
            row = out[0]
            assert {name: row[name].item() for name in expected} == expected
        if msg_type == "R":
            entry = directory[fields["stock_locate"]]
            assert entry["seen"] == 1
            assert entry["symbol"].decode() == fields["stock"]
            assert entry["round_lot"] == fields["round_lot_size"]
            assert entry["etp_leverage_factor"] == fields["etp_leverage_factor"]
            assert entry["issue_sub_type"].decode().rstrip() == fields["issue_sub_type"]
            assert entry["inverse"].decode().strip() == fields["inverse_indicator"]
        elif msg_type == "H":
            assert directory[fields["stock_locate"]]["trading_state"].decode() == fields["trading_state"]

    check()


def test_decoded_field_order_puts_timestamp_in_the_header():
    fields = decode_message(encode("E", stock_locate=2, timestamp=9, executed_shares=5))
    assert list(fields)[:5] == ["message_type", "stock_locate", "tracking_number", "timestamp",
                                "order_reference_number"]  # fmt: skip


def test_directory_keeps_raw_flag_characters():
    msg = encode("R", stock_locate=42, stock="ZVZZT", market_category="Q", financial_status_indicator="N",
                 round_lot_size=100, round_lots_only="N", issue_classification="C", issue_sub_type="Z",
                 authenticity="P", short_sale_threshold_indicator="N", ipo_flag="N",
                 luld_reference_price_tier="2", etp_flag="N", inverse_indicator="N")  # fmt: skip
    _, _, _, directory = decode_framed(frame([msg]))
    row = directory[42]
    assert row["symbol"] == b"ZVZZT"
    assert (row["market_category"], row["financial_status"], row["round_lots_only"]) == (b"Q", b"N", b"N")
    assert (row["issue_classification"], row["issue_sub_type"], row["authenticity"]) == (b"C", b"Z ", b"P")
    assert (row["short_sale_threshold"], row["ipo_flag"], row["luld_tier"]) == (b"N", b"N", b"2")
    assert (row["etp_flag"], row["inverse"], row["round_lot"]) == (b"N", b"N", 100)
    assert directory["seen"].sum() == 1


def adds(count: int) -> list[bytes]:
    """``count`` Add Order messages with order references 1..count."""
    fields = {"stock_locate": 1, "buy_sell_indicator": "B", "shares": 100, "stock": "X", "price": 10_000}
    return [encode("A", timestamp=10 + i, order_reference_number=i + 1, **fields) for i in range(count)]


def test_incomplete_trailing_record_needs_more():
    body = frame(adds(2))
    first = 2 + SPEC_LENGTHS["A"]
    for end in (len(body) - 5, first + 1, first + 2):
        buf = np.frombuffer(body, np.uint8)
        out = empty_events(4)
        counts = np.zeros(256, np.int64)
        result = decode_flat_nb(buf, 0, end, out, counts, new_stock_directory(), 0, False)
        assert result == (first, 1, STATUS_NEED_MORE, 0)
        assert counts[ord("A")] == 1


def test_full_output_stops_and_resumes():
    body = frame(adds(3))
    buf = np.frombuffer(body, np.uint8)
    out = empty_events(2)
    counts = np.zeros(256, np.int64)
    directory = new_stock_directory()
    pos, n, status, _ = decode_flat_nb(buf, 0, len(buf), out, counts, directory, 100, False)
    assert (pos, n, status) == (2 * 38, 2, STATUS_OUT_FULL)
    assert list(out["seq"]) == [100, 101]
    pos, n, status, _ = decode_flat_nb(buf, pos, len(buf), out, counts, directory, 102, False)
    assert (pos, n, status) == (len(buf), 1, STATUS_DONE)
    assert out[0]["order_id"] == 3 and out[0]["seq"] == 102


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (b"\x00\x05Zabcd", ERR_UNKNOWN_TYPE),
        (b"\x00\x14" + encode("A")[:20], ERR_BAD_LENGTH),
        (b"\x00\x00", ERR_ZERO_LENGTH),
    ],
)
def test_bad_record_stops_or_is_skipped(bad, status):
    good = adds(3)
    body = frame(good[:1]) + bad + frame(good[1:])
    (pos, n, got, skipped), _, counts, _ = decode_framed(body)
    assert (pos, n, got, skipped) == (38, 1, status, 0)
    assert counts.sum() == 1
    (pos, n, got, skipped), out, counts, _ = decode_framed(body, seq0=5, skip_bad=True)
    assert (pos, n, got, skipped) == (len(body), 3, STATUS_DONE, 1)
    assert list(out["seq"][:3]) == [5, 7, 8]  # the bad record keeps its index
    assert counts.sum() == 3


def test_decode_message_nb_checks_bounds_and_local_time():
    msg = encode("D", stock_locate=3, timestamp=50, order_reference_number=9)
    buf = np.frombuffer(msg, np.uint8)
    out = empty_events(1)
    counts = np.zeros(256, np.int64)
    directory = new_stock_directory()
    assert decode_message_nb(buf, 1, 19, out, 0, counts, directory, 0, 0) == ERR_TRUNCATED
    assert decode_message_nb(buf, 0, 0, out, 0, counts, directory, 0, 0) == ERR_ZERO_LENGTH
    assert counts.sum() == 0
    assert decode_message_nb(buf, 0, 19, out, 0, counts, directory, 4, 777) == 1
    assert (out[0]["ts_exch_ns"], out[0]["ts_local_ns"], out[0]["seq"]) == (50, 777, 4)
    assert (out[0]["kind"], out[0]["order_id"], out[0]["instrument"]) == (E.KIND_DELETE, 9, 3)


def test_frame_prefixes_lengths():
    assert frame([b"abc", b"W" + bytes(11)]) == b"\x00\x03abc\x00\x0cW" + bytes(11)
    with pytest.raises(ValueError):
        frame([b""])
