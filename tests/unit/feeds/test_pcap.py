"""Captures of a MoldUDP64 feed: real NASDAQ/BX captures and synthetic pcap/pcapng variants."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from engine.core import events as E
from engine.core.events import empty_events
from feeds import moldudp64 as mold
from feeds.errors import FeedError
from feeds.itch import decode_message, encode, new_stock_directory
from feeds.pcap import PcapReader, iter_udp_payloads
from tests.conftest import real_file

SESSION = b"TESTSESS01"
BASE_TS_NS = 1_692_711_000_000_000_000  # 2023-08-22 13:30:00 UTC


# --- capture builders ----------------------------------------------------------------------------
def ipv4_udp(payload: bytes, *, proto: int = 17, flags_fragment: int = 0x4000) -> bytes:
    udp = struct.pack(">HHHH", 18000, 26477, 8 + len(payload), 0) + payload
    return (
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            1,
            flags_fragment,
            64,
            proto,
            0,
            bytes([10, 0, 0, 1]),
            bytes([233, 54, 12, 111]),
        )
        + udp
    )


def ethernet(ip: bytes, *, tags: tuple[int, ...] = (), ethertype: int = 0x0800) -> bytes:
    head = bytes(6) + bytes([2, 0, 0, 0, 0, 1])
    for tag in tags:
        head += struct.pack(">HH", tag, 141)
    return head + struct.pack(">H", ethertype) + ip


def sll(ip: bytes) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 0x0800) + ip


def sll2(ip: bytes) -> bytes:
    return struct.pack(">HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, bytes(8)) + ip


def write_pcap(
    path: Path, frames: list[tuple[int, bytes]], *, order: str = "<", nanos: bool = True, linktype: int = 1
) -> Path:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for ts_ns, frame in frames:
        seconds, frac = divmod(ts_ns, 1_000_000_000)
        out.append(struct.pack(order + "IIII", seconds, frac if nanos else frac // 1000, len(frame), len(frame)))
        out.append(frame)
    return _write(path, b"".join(out))


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", block_type, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)


def write_pcapng(
    path: Path,
    frames: list[tuple[int, bytes]],
    *,
    order: str = "<",
    tsresol: int = 9,
    simple: bool = False,
    linktype: int = 1,
) -> Path:
    shb = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    options = struct.pack(order + "HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + struct.pack(order + "HH", 0, 0)
    idb = _block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + options)
    name_resolution = _block(order, 4, struct.pack(order + "HH", 0, 0))  # skipped
    out = [shb, idb, name_resolution]
    for ts_ns, frame in frames:
        if simple:
            out.append(_block(order, 3, struct.pack(order + "I", len(frame)) + frame))
            continue
        binary = tsresol & 0x80
        units = (ts_ns << (tsresol & 0x7F)) // 10**9 if binary else ts_ns // 10 ** (9 - tsresol)
        body = struct.pack(order + "IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)) + frame
        out.append(_block(order, 6, body))
    return _write(path, b"".join(out))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --- a small feed --------------------------------------------------------------------------------
def feed_packets() -> list[bytes]:
    ts = 34_200_000_000_000
    r = encode("R", stock_locate=5, stock="ZVZZT", market_category="Q", round_lot_size=100, timestamp=ts)
    h = encode("H", stock_locate=5, stock="ZVZZT", trading_state="T", timestamp=ts + 1)
    adds = [
        encode(
            "A",
            stock_locate=5,
            order_reference_number=k,
            buy_sell_indicator="BS"[k % 2],
            shares=100 * k,
            stock="ZVZZT",
            price=100_000 + k,
            timestamp=ts + 10 + k,
        )
        for k in range(1, 6)
    ]
    e = encode("E", stock_locate=5, order_reference_number=1, executed_shares=50, match_number=1, timestamp=ts + 30)
    u = encode(
        "U",
        stock_locate=5,
        original_order_reference_number=2,
        new_order_reference_number=9,
        shares=10,
        price=100_500,
        timestamp=ts + 31,
    )
    d = encode("D", stock_locate=5, order_reference_number=3, timestamp=ts + 32)
    return [
        mold.encode_packet(SESSION, 1, [r, h]),
        mold.encode_packet(SESSION, 3, adds[:3]),
        mold.encode_heartbeat(SESSION, 6),
        mold.encode_packet(SESSION, 6, adds[3:]),
        mold.encode_packet(SESSION, 8, [e, u, d]),
        mold.encode_end_of_session(SESSION, 11),
    ]


def stamped(packets: list[bytes]) -> list[tuple[int, bytes]]:
    return [(BASE_TS_NS + 1000 * i, p) for i, p in enumerate(packets)]


def expected_events(payloads: list[tuple[int, bytes]]) -> np.ndarray:
    """What the MoldUDP64 decoder makes of the payloads, fed straight from memory."""
    buf = np.frombuffer(b"".join(p for _, p in payloads), np.uint8)
    lengths = np.array([len(p) for _, p in payloads], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    stamps = np.array([t for t, _ in payloads], np.int64)
    out = empty_events(1024)
    status, _, n, _ = mold.decode_packets_nb(
        buf,
        offsets,
        lengths,
        stamps,
        0,
        len(payloads),
        out,
        0,
        np.zeros(256, np.int64),
        new_stock_directory(),
        mold.new_tracker(),
    )
    assert status == mold.OK
    return out[:n]


def read_all(reader: PcapReader) -> np.ndarray:
    batches = [b.copy() for b in reader.batches()]
    return np.concatenate(batches) if batches else np.zeros(0, E.EVENT_DTYPE)


# --- real captures -------------------------------------------------------------------------------
REAL_DIR = "itch/moldudp64_pcap"
REAL_TYPES = {
    "AddOrderNoMpidAttributionMessage": ("A", E.KIND_ADD),
    "OrderDeleteMessage": ("D", E.KIND_DELETE),
    "OrderReplaceMessage": ("U", E.KIND_REPLACE),
    "OrderExecutedMessage": ("E", E.KIND_EXECUTE),
    "StockTradingActionMessage": ("H", E.KIND_STATUS),
    "MarketParticipantPositionMessage": ("L", None),
    "NetOrderImbalanceIndicatorMessage": ("I", None),
}
REAL_FILES = [
    f"{venue}.Equities.TotalView.Itch.v5.0__{name}.pcap"
    for venue, names in (
        ("Nasdaq", REAL_TYPES),
        ("Bx", ("AddOrderNoMpidAttributionMessage", "OrderDeleteMessage", "OrderReplaceMessage")),
    )
    for name in names
]


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_capture_decodes_to_its_one_message(replay_data: Path, name: str) -> None:
    path = real_file(replay_data, f"{REAL_DIR}/{name}")
    msg_type, kind = REAL_TYPES[name.split("__")[1].removesuffix(".pcap")]
    ((capture_ts, payload),) = list(iter_udp_payloads(str(path)))
    session, seq, count = mold.decode_header(payload)
    assert session == (b"000010059B" if name.startswith("Nasdaq") else b"000010059D")
    assert count == 1
    ((_, raw),) = list(mold.iter_messages(payload))
    fields = decode_message(raw)
    assert fields["message_type"] == msg_type and fields["stock_locate"] > 0
    # 2023-08-22 around 09:30 ET: capture clock in UTC, ITCH clock in ns since midnight ET
    assert 1_692_710_400 * 10**9 < capture_ts < 1_692_714_000 * 10**9
    assert 9.49 * 3600e9 < fields["timestamp"] < 9.7 * 3600e9
    capture_ns_of_day_et = capture_ts % 86_400_000_000_000 - 4 * 3_600_000_000_000
    assert 0 < capture_ns_of_day_et - fields["timestamp"] < 1_000_000  # the feed reached us within 1 ms

    reader = PcapReader(str(path))
    events = read_all(reader)
    assert reader.stats.counts() == {msg_type: 1}
    assert (reader.stats.packets, reader.frames, reader.stats.gaps, reader.stats.duplicate_packets) == (1, 1, 0, 0)
    (state,) = reader.tracker.sessions()
    assert (state.session, state.next_seq) == (session.decode(), seq + 1)
    if kind is None:  # L and I do not touch the book: no event row
        assert len(events) == 0
        return
    (row,) = events
    assert (row["kind"], row["seq"], row["instrument"]) == (kind, seq, fields["stock_locate"])
    assert (row["ts_exch_ns"], row["ts_local_ns"]) == (fields["timestamp"], capture_ts)
    if msg_type == "A":
        assert row["price"] == fields["price"] > 0 and row["qty"] == fields["shares"] > 0
        assert row["order_id"] == fields["order_reference_number"]
    elif msg_type == "U":
        assert row["order_id"] == fields["original_order_reference_number"]
        assert row["new_order_id"] == fields["new_order_reference_number"]
        assert row["price"] == fields["price"] > 0 and row["qty"] == fields["shares"]
    elif msg_type == "E":
        assert row["order_id"] == fields["order_reference_number"] and row["qty"] == fields["executed_shares"]
    elif msg_type == "D":
        assert row["order_id"] == fields["order_reference_number"]
    else:
        assert fields["stock"] == "AMC" and chr(row["flags"]) == fields["trading_state"] == "T"


# --- synthetic containers ------------------------------------------------------------------------
def _eth(p: bytes) -> bytes:
    return ethernet(ipv4_udp(p))


@pytest.mark.parametrize(
    ("suffix", "writer", "options", "framing", "exact_ns"),
    [
        (".pcap", write_pcap, {"order": "<", "nanos": True}, _eth, True),
        (".pcap", write_pcap, {"order": ">", "nanos": True}, _eth, True),
        (".pcap", write_pcap, {"order": "<", "nanos": False}, _eth, True),
        (".pcap", write_pcap, {"order": ">", "nanos": False}, lambda p: ethernet(ipv4_udp(p), tags=(0x8100,)), True),
        (".pcap.gz", write_pcap, {}, lambda p: ethernet(ipv4_udp(p), tags=(0x88A8, 0x8100)), True),
        (".pcap", write_pcap, {"linktype": 113}, lambda p: sll(ipv4_udp(p)), True),
        (".pcap", write_pcap, {"linktype": 276}, lambda p: sll2(ipv4_udp(p)), True),
        (".pcap", write_pcap, {"linktype": 101}, ipv4_udp, True),
        (".pcapng", write_pcapng, {"order": "<", "tsresol": 9}, _eth, True),
        (".pcapng", write_pcapng, {"order": ">", "tsresol": 6}, _eth, True),
        (".pcapng.gz", write_pcapng, {"order": ">", "tsresol": 0x80 | 30}, _eth, False),
        (".pcapng", write_pcapng, {"order": "<", "simple": True}, _eth, False),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [1 << 20, 7])
def test_synthetic_capture_decodes_like_the_payloads(
    tmp_path: Path, suffix, writer, options, framing, exact_ns, chunk_bytes: int
) -> None:
    payloads = stamped(feed_packets())
    path = writer(tmp_path / f"feed{suffix}", [(t, framing(p)) for t, p in payloads], **options)
    assert [p for _, p in iter_udp_payloads(str(path))] == [p for _, p in payloads]
    reader = PcapReader(str(path), chunk_bytes=chunk_bytes)
    events = read_all(reader)
    want = expected_events(payloads)
    if exact_ns:
        np.testing.assert_array_equal(events, want)
    else:  # binary resolution rounds; SPB has no timestamp, so rows keep the exchange time
        for name in want.dtype.names:
            if name != "ts_local_ns":
                np.testing.assert_array_equal(events[name], want[name])
        if options.get("simple"):
            np.testing.assert_array_equal(events["ts_local_ns"], want["ts_exch_ns"])
        else:
            assert np.abs(events["ts_local_ns"] - want["ts_local_ns"]).max() <= 1
    assert len(events) == 9 and reader.stats.counts() == {"R": 1, "H": 1, "A": 5, "E": 1, "U": 1, "D": 1}
    assert reader.stats.packets == 6 and reader.stats.gaps == 0 and reader.tracker.end_of_session
    assert reader.instruments[5].symbol == "ZVZZT" and reader.instruments[5].price_scale == 10_000
    assert reader.bytes_done == reader.total_bytes


def test_other_frames_and_fragments_are_counted_and_ignored(tmp_path: Path) -> None:
    packets = feed_packets()
    frames = [
        (BASE_TS_NS, _eth(packets[0])),
        (BASE_TS_NS, ethernet(b"\x00" * 28, ethertype=0x0806)),  # ARP
        (BASE_TS_NS, ethernet(ipv4_udp(b"tcp?", proto=6))),
        (BASE_TS_NS, ethernet(ipv4_udp(packets[1], flags_fragment=0x2000))),  # first fragment
        (BASE_TS_NS, ethernet(b"\x60" + bytes(39), ethertype=0x86DD)),  # IPv6
        (BASE_TS_NS, _eth(packets[1]) + bytes(6)),  # Ethernet padding after the IP datagram
    ]
    reader = PcapReader(str(write_pcap(tmp_path / "mixed.pcap", frames)))
    events = read_all(reader)
    assert (reader.frames, reader.other_frames, reader.fragments, reader.stats.packets) == (6, 3, 1, 2)
    assert len(events) == 4


def test_gaps_and_duplicates_reach_the_stats(tmp_path: Path) -> None:
    p = feed_packets()
    sent = [p[0], p[0], p[1], p[4], p[3], p[5]]  # duplicate, then 6-7 lost before 8, then 6-7 late
    path = write_pcap(tmp_path / "gappy.pcap", [(t, _eth(q)) for t, q in stamped(sent)])
    reader = PcapReader(str(path))
    events = read_all(reader)
    assert (reader.stats.gaps, reader.stats.missing_messages, reader.stats.first_missing_seq) == (1, 2, 6)
    assert reader.stats.duplicate_packets == 2  # the repeat of packet 1 and the late 6-7
    assert reader.stats.packets == 6
    assert events["seq"].tolist() == [2, 3, 4, 5, 8, 9, 10]


# --- bad input -----------------------------------------------------------------------------------
def good_capture(tmp_path: Path, name: str = "good.pcap") -> Path:
    return write_pcap(tmp_path / name, [(t, _eth(p)) for t, p in stamped(feed_packets())])


def test_bad_magic_is_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"NOT A CAPTURE FILE AT ALL, REALLY")
    with pytest.raises(FeedError, match="not a pcap") as info:
        read_all(PcapReader(str(path), skip_bad=True))
    assert info.value.offset == 0


def test_file_shorter_than_its_header_is_a_feed_error(tmp_path: Path) -> None:
    data = good_capture(tmp_path).read_bytes()[:10]
    (tmp_path / "short.pcap").write_bytes(data)
    with pytest.raises(FeedError, match="shorter than its file header"):
        read_all(PcapReader(str(tmp_path / "short.pcap")))


def test_unsupported_link_type_is_a_feed_error(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "wifi.pcap", [], linktype=105)
    with pytest.raises(FeedError, match="unsupported link type 105"):
        read_all(PcapReader(str(path)))


def test_truncated_last_record_raises_or_is_skipped(tmp_path: Path) -> None:
    data = good_capture(tmp_path).read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-5])
    last_record = len(data) - (16 + len(_eth(feed_packets()[-1])))
    with pytest.raises(FeedError, match="truncated record") as info:
        read_all(PcapReader(str(path), chunk_bytes=64))
    assert (info.value.offset, info.value.packet) == (last_record, 6)
    reader = PcapReader(str(path), skip_bad=True)
    assert len(read_all(reader)) == 9
    assert (reader.stats.skipped_records, reader.stats.skipped_bytes) == (1, len(data) - 5 - last_record)


DAMAGED_LENGTHS = {  # (captured, original) lengths written into a record header
    "beyond_the_limit": (0x7FFFFFFF, 0x7FFFFFFF),
    "beyond_the_snapshot_length": (262_145, 262_145),
    "above_the_original_length": (60, 59),
    "past_the_end_of_the_file": (5000, 5000),
}


@pytest.mark.parametrize("damage", list(DAMAGED_LENGTHS))
@pytest.mark.parametrize("chunk_bytes", [7, 100, 1 << 20])
@pytest.mark.parametrize("damaged", [0, 1], ids=["first_record", "second_record"])
def test_skip_bad_goes_on_at_the_record_after_an_impossible_record_length(
    tmp_path: Path, damage: str, chunk_bytes: int, damaged: int
) -> None:
    frames = [_eth(p) for p in feed_packets()]
    data = bytearray(good_capture(tmp_path).read_bytes())
    offset = 24 + sum(16 + len(f) for f in frames[:damaged])
    data[offset + 8 : offset + 16] = struct.pack("<II", *DAMAGED_LENGTHS[damage])
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(data))
    what = "truncated record" if damage == "past_the_end_of_the_file" else "impossible record length"
    with pytest.raises(FeedError, match=what) as info:
        read_all(PcapReader(str(path), chunk_bytes=chunk_bytes))
    assert (info.value.offset, info.value.packet) == (offset, damaged + 1)
    reader = PcapReader(str(path), skip_bad=True, chunk_bytes=chunk_bytes)
    events = read_all(reader)
    lost = [[2], [3, 4, 5]][damaged]  # the events of the damaged packet (its R message makes none)
    assert events["seq"].tolist() == [s for s in [2, 3, 4, 5, 6, 7, 8, 9, 10] if s not in lost]
    assert (reader.stats.skipped_records, reader.stats.skipped_bytes) == (1, 16 + len(frames[damaged]))
    assert reader.stats.errors == [str(info.value)]
    assert reader.frames == 5 and reader.bytes_done == reader.total_bytes


def test_bad_moldudp64_framing_names_packet_offset_and_seq(tmp_path: Path) -> None:
    p = feed_packets()
    broken = p[1][:-4]  # last message block runs past the datagram
    frames = [(t, _eth(q)) for t, q in stamped([p[0], broken, p[3], p[4]])]
    path = write_pcap(tmp_path / "badmold.pcap", frames)
    payload_offset = 24 + 16 + len(frames[0][1]) + 16 + 14 + 20 + 8
    with pytest.raises(FeedError, match="runs past the end of the packet") as info:
        read_all(PcapReader(str(path)))
    assert (info.value.offset, info.value.packet, info.value.seq) == (payload_offset, 2, 3)
    reader = PcapReader(str(path), skip_bad=True)
    events = read_all(reader)
    assert events["seq"].tolist() == [2, 6, 7, 8, 9, 10]
    assert (reader.stats.skipped_records, reader.stats.skipped_bytes) == (1, len(broken))
    assert (reader.stats.gaps, reader.stats.first_missing_seq, reader.stats.missing_messages) == (1, 3, 3)
    assert "packet 2: seq 3" in reader.stats.errors[0]


def test_bad_itch_message_is_described(tmp_path: Path) -> None:
    packet = mold.encode_packet(SESSION, 1, [encode("D", stock_locate=1, order_reference_number=1), b"Z" * 5])
    path = write_pcap(tmp_path / "badmsg.pcap", [(BASE_TS_NS, _eth(packet))])
    with pytest.raises(FeedError, match="unknown message type 'Z'") as info:
        read_all(PcapReader(str(path)))
    assert (info.value.packet, info.value.seq) == (1, 2)


def test_broken_frame_is_skipped_and_the_scan_goes_on(tmp_path: Path) -> None:
    p = feed_packets()
    cut_ip = _eth(p[1])[:40]  # IPv4 total length says more than was captured
    frames = [(BASE_TS_NS, f) for f in (_eth(p[0]), cut_ip, _eth(p[3]))]
    path = write_pcap(tmp_path / "cut_frame.pcap", frames)
    with pytest.raises(FeedError, match="frame shorter") as info:
        read_all(PcapReader(str(path)))
    assert (info.value.packet, info.value.offset) == (2, 24 + 16 + len(frames[0][1]))
    reader = PcapReader(str(path), skip_bad=True)
    read_all(reader)
    assert (reader.stats.skipped_records, reader.stats.packets, reader.stats.gaps) == (1, 2, 1)


def test_pcapng_bad_block_length_is_a_feed_error(tmp_path: Path) -> None:
    data = bytearray(
        write_pcapng(tmp_path / "ok.pcapng", [(t, _eth(p)) for t, p in stamped(feed_packets())]).read_bytes()
    )
    shb_length = struct.unpack_from("<I", data, 4)[0]
    data[shb_length + 4 : shb_length + 8] = struct.pack("<I", 13)  # the IDB's length: not a multiple of 4
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    with pytest.raises(FeedError, match="bad pcapng block length") as info:
        read_all(PcapReader(str(path)))
    assert info.value.offset == shb_length


def test_pcapng_packet_on_an_undeclared_interface(tmp_path: Path) -> None:
    data = write_pcapng(tmp_path / "ok.pcapng", [(BASE_TS_NS, _eth(feed_packets()[0]))]).read_bytes()
    epb = data.rindex(struct.pack("<I", 6))
    path = tmp_path / "iface.pcapng"
    path.write_bytes(data[: epb + 8] + struct.pack("<I", 3) + data[epb + 12 :])
    with pytest.raises(FeedError, match="interface") as info:
        read_all(PcapReader(str(path)))
    assert (info.value.offset, info.value.packet) == (epb, 1)
