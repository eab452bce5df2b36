"""MoldUDP64 framing, the jitted packet decoder and its per-session sequence tracking."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core import events as E
from engine.core.events import empty_events
from feeds import moldudp64 as mold
from feeds.itch import encode, new_stock_directory

SESSION = b"000010059B"


def add(ref: int, ts: int = 34_200_000_000_000) -> bytes:
    return encode(
        "A",
        stock_locate=7,
        order_reference_number=ref,
        buy_sell_indicator="B",
        shares=100,
        stock="TEST",
        price=1_234_500,
        timestamp=ts,
    )


class Decoder:
    """Feeds packets one jitted call at a time and keeps the state between calls."""

    def __init__(self, rows: int = 1024) -> None:
        self.out = empty_events(rows)
        self.n = 0
        self.counts = np.zeros(256, np.int64)
        self.directory = new_stock_directory()
        self.tracker = mold.SequenceTracker()

    def feed(self, packet: bytes, ts_local_ns: int = 1) -> tuple[int, int]:
        buf = np.frombuffer(packet, np.uint8)
        status, self.n, seq = mold.decode_packet_nb(
            buf, 0, len(packet), self.out, self.n, self.counts, self.directory, self.tracker.state, ts_local_ns
        )
        return status, seq

    def refs(self) -> list[int]:
        return [int(r) for r in self.out["order_id"][: self.n]]

    def state(self) -> mold.SessionState:
        (state,) = self.tracker.sessions()
        return state


def data_packet(seq: int, count: int, session: bytes = SESSION) -> bytes:
    return mold.encode_packet(session, seq, [add(ref) for ref in range(seq, seq + count)])


def test_header_layout_matches_dtype_and_round_trips() -> None:
    packet = mold.encode_packet(SESSION, 42, [add(1), add(2)])
    header = np.frombuffer(packet[: mold.HEADER_LENGTH], mold.HEADER_DTYPE)[0]
    assert (header["session"], int(header["seq"]), int(header["count"])) == (SESSION, 42, 2)
    assert mold.decode_header(packet) == (SESSION, 42, 2)
    assert [m for _, m in mold.iter_messages(packet)] == [add(1), add(2)]
    assert [s for s, _ in mold.iter_messages(packet)] == [42, 43]


def test_heartbeat_and_end_of_session_are_bare_headers() -> None:
    assert mold.encode_heartbeat(SESSION, 9) == SESSION + (9).to_bytes(8, "big") + b"\x00\x00"
    assert mold.decode_header(mold.encode_end_of_session("S1", 9)) == (b"S1        ", 9, 0xFFFF)
    assert list(mold.iter_messages(mold.encode_end_of_session(SESSION, 9))) == []


def test_request_round_trips_and_matches_its_dtype() -> None:
    request = mold.encode_request(SESSION, 1000, 25)
    assert mold.decode_request(request) == (SESSION, 1000, 25)
    record = np.frombuffer(request, mold.REQUEST_DTYPE)[0]
    assert (int(record["seq"]), int(record["requested_count"])) == (1000, 25)
    with pytest.raises(ValueError):
        mold.decode_request(request + b"\x00")


def test_encoders_reject_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        mold.encode_packet(b"SESSION_TOO_LONG", 1, [add(1)])
    with pytest.raises(ValueError):
        mold.encode_packet(SESSION, 1, [])
    with pytest.raises(ValueError):
        mold.decode_header(b"short")


def test_in_order_packets_decode_every_message_with_its_sequence() -> None:
    d = Decoder()
    assert d.feed(data_packet(10, 3), ts_local_ns=555) == (mold.OK, 10)
    assert d.feed(data_packet(13, 2)) == (mold.OK, 13)
    assert d.refs() == [10, 11, 12, 13, 14]
    assert d.out["seq"][: d.n].tolist() == [10, 11, 12, 13, 14]
    assert d.out["kind"][0] == E.KIND_ADD and d.out["ts_local_ns"][0] == 555
    assert d.counts[ord("A")] == 5
    state = d.state()
    assert (state.session, state.next_seq, state.packets, state.messages) == ("000010059B", 15, 2, 5)
    assert (state.gaps, state.duplicate_packets, state.first_missing_seq) == (0, 0, None)


def test_gap_is_counted_logged_and_decoding_goes_on() -> None:
    d = Decoder()
    d.feed(data_packet(1, 2))
    d.feed(data_packet(6, 1))  # 3, 4, 5 lost
    d.feed(data_packet(9, 1))  # 7, 8 lost
    assert d.refs() == [1, 2, 6, 9]
    state = d.state()
    assert (state.gaps, state.missing_messages, state.first_missing_seq) == (2, 5, 3)
    assert d.tracker.drain_gaps() == [("000010059B", 3, 3), ("000010059B", 7, 2)]
    assert d.tracker.drain_gaps() == []


def test_duplicate_packet_is_counted_and_ignored() -> None:
    d = Decoder()
    d.feed(data_packet(1, 2))
    d.feed(data_packet(3, 2))
    assert d.feed(data_packet(1, 2)) == (mold.OK, 1)
    assert d.refs() == [1, 2, 3, 4]
    assert (d.state().duplicate_packets, d.state().duplicate_messages, d.state().gaps) == (1, 2, 0)
    assert d.tracker.duplicate_packets == 1


def test_partial_overlap_decodes_only_the_new_messages() -> None:
    d = Decoder()
    d.feed(data_packet(1, 3))
    d.feed(data_packet(2, 4))  # 2, 3 seen; 4, 5 new
    assert d.refs() == [1, 2, 3, 4, 5]
    assert (d.state().next_seq, d.state().duplicate_messages, d.state().duplicate_packets) == (6, 2, 0)


def test_heartbeat_reveals_a_gap_once_and_advances_nothing_else() -> None:
    d = Decoder()
    d.feed(data_packet(1, 2))
    d.feed(mold.encode_heartbeat(SESSION, 3))  # in step: nothing
    assert (d.state().gaps, d.state().next_seq, d.state().heartbeats) == (0, 3, 1)
    d.feed(mold.encode_heartbeat(SESSION, 5))  # 3, 4 lost
    d.feed(data_packet(5, 1))  # no second report of the same gap
    assert (d.state().gaps, d.state().missing_messages, d.state().first_missing_seq) == (1, 2, 3)
    assert d.refs() == [1, 2, 5]


def test_first_packet_of_a_session_sets_the_expectation() -> None:
    d = Decoder()
    d.feed(mold.encode_heartbeat(SESSION, 100))
    d.feed(data_packet(100, 1))
    assert (d.state().gaps, d.state().next_seq) == (0, 101)


def test_end_of_session_is_recorded_and_can_reveal_a_gap() -> None:
    d = Decoder()
    d.feed(data_packet(1, 2))
    assert not d.tracker.end_of_session
    d.feed(mold.encode_end_of_session(SESSION, 4))
    assert d.state().end_of_session and d.tracker.end_of_session
    assert (d.state().gaps, d.state().first_missing_seq) == (1, 3)


def test_sessions_are_tracked_apart() -> None:
    d = Decoder()
    d.feed(data_packet(1, 1, b"SESSION__A"))
    d.feed(data_packet(50, 1, b"SESSION__B"))
    d.feed(data_packet(2, 1, b"SESSION__A"))
    states = {s.session: s for s in d.tracker.sessions()}
    assert states["SESSION__A"].next_seq == 3 and states["SESSION__B"].next_seq == 51
    assert d.tracker.gaps == 0


def test_too_many_sessions_is_an_error() -> None:
    d = Decoder()
    for i in range(mold.MAX_SESSIONS):
        assert d.feed(data_packet(1, 1, f"S{i:09d}".encode()))[0] == mold.OK
    assert d.feed(data_packet(1, 1, b"S_ONE_MORE")) == (mold.ERR_TOO_MANY_SESSIONS, 1)


@pytest.mark.parametrize(
    ("packet", "status"),
    [
        (b"000010059B\x00\x00", mold.ERR_SHORT_PACKET),
        (data_packet(5, 2)[:-3], mold.ERR_BLOCK_OVERRUN),
        (mold.encode_packet(SESSION, 5, [add(5)])[:21], mold.ERR_BLOCK_OVERRUN),
        (data_packet(5, 2) + b"\x00", mold.ERR_TRAILING_BYTES),
        (mold.encode_heartbeat(SESSION, 5) + b"\x00\x00", mold.ERR_TRAILING_BYTES),
    ],
)
def test_malformed_framing_is_reported_and_changes_no_state(packet: bytes, status: int) -> None:
    d = Decoder()
    d.feed(data_packet(1, 4))
    got, seq = d.feed(packet)
    assert got == status
    assert seq == (-1 if status == mold.ERR_SHORT_PACKET else 5)
    assert (d.n, d.state().next_seq, d.state().gaps) == (4, 5, 0)


def test_bad_message_keeps_the_rows_before_it_and_leaves_the_rest_as_a_gap() -> None:
    d = Decoder()
    packet = mold.encode_packet(SESSION, 1, [add(1), b"Z" + bytes(10), add(3)])
    assert d.feed(packet) == (mold.ERR_MESSAGE, 2)
    assert d.refs() == [1]
    d.feed(data_packet(4, 1))
    assert (d.state().gaps, d.state().missing_messages, d.state().first_missing_seq) == (1, 2, 2)


def test_full_output_changes_nothing_until_drained() -> None:
    d = Decoder(rows=3)
    d.feed(data_packet(1, 2))
    assert d.feed(data_packet(3, 2)) == (mold.FULL, 3)
    assert (d.n, d.state().next_seq) == (2, 3)
    d.n = 0
    assert d.feed(data_packet(3, 2)) == (mold.OK, 3)
    assert d.refs() == [3, 4]


def test_decode_many_does_a_chunk_in_one_call_and_stops_at_an_error() -> None:
    packets = [data_packet(1, 2), data_packet(1, 2), data_packet(3, 1), b"too short", data_packet(6, 1)]
    buf = np.frombuffer(b"".join(packets), np.uint8)
    lengths = np.array([len(p) for p in packets], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    stamps = np.arange(len(packets), dtype=np.int64) + 100
    d = Decoder()
    status, index, n, seq = mold.decode_packets_nb(
        buf, offsets, lengths, stamps, 0, len(packets), d.out, 0, d.counts, d.directory, d.tracker.state
    )
    assert (status, index, n, seq) == (mold.ERR_SHORT_PACKET, 3, 3, -1)
    status, index, n, seq = mold.decode_packets_nb(
        buf, offsets, lengths, stamps, 4, len(packets), d.out, n, d.counts, d.directory, d.tracker.state
    )
    assert (status, index, n) == (mold.OK, 5, 4)
    assert d.out["order_id"][:n].tolist() == [1, 2, 3, 6]
    assert d.out["ts_local_ns"][:n].tolist() == [100, 100, 102, 104]
    assert (d.tracker.duplicate_packets, d.tracker.gaps, d.tracker.missing_messages) == (1, 1, 2)


def test_delete_rows_carry_the_packet_sequence() -> None:
    d = Decoder()
    d.feed(mold.encode_packet(SESSION, 77, [encode("D", stock_locate=3, order_reference_number=9)]))
    assert (d.out["kind"][0], d.out["seq"][0], d.out["instrument"][0]) == (E.KIND_DELETE, 77, 3)
