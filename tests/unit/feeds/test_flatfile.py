"""FlatItchReader: the real NASDAQ sample, plain/gzip/tiny chunks alike, and every kind of bad input."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest

from engine.core import events as E
from feeds.errors import FeedError
from feeds.flatfile import FlatItchReader
from feeds.itch import MESSAGE_LENGTHS, decode_message, encode, frame
from feeds.source import MAX_KEPT_ERRORS, FeedStats
from tests.conftest import real_file

SAMPLE = "itch/real/nasdaq_itch50_first1000.itch"
FIRST_TS = 11072057543747
LAST_TS = 11354360581176


def read_all(path: Path, **kwargs) -> tuple[np.ndarray, FlatItchReader]:
    """Every event of the file (copied out of the reused buffer) and the reader."""
    reader = FlatItchReader(str(path), **kwargs)
    batches = [batch.copy() for batch in reader.batches()]
    events = np.concatenate(batches) if batches else np.empty(0, E.EVENT_DTYPE)
    return events, reader


def split_records(body: bytes) -> list[bytes]:
    """The messages of a flat file body, split in plain Python."""
    messages, pos = [], 0
    while pos < len(body):
        length = int.from_bytes(body[pos : pos + 2], "big")
        messages.append(body[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert pos == len(body), "trailing bytes"
    return messages


@pytest.fixture(scope="module")
def sample(replay_data: Path) -> Path:
    return real_file(replay_data, SAMPLE)


def test_real_sample_counts_and_directory(sample: Path):
    events, reader = read_all(sample)
    assert reader.stats.counts() == {"S": 1, "R": 993, "H": 3, "Y": 3}
    assert reader.stats.messages == 1000
    assert reader.stats.skipped_records == 0 and reader.stats.errors == []
    assert reader.bytes_done == reader.total_bytes == sample.stat().st_size
    assert reader.instruments[1].symbol == "A" and reader.instruments[2].symbol == "AA"
    assert len(reader.instruments) == int(reader.directory["seen"].sum()) == 993
    assert reader.instruments[1].price_scale == 10_000 and reader.instruments[1].tick_size == 0.01
    # Rows: S and H only; the S row first, market-wide, with event code 'O'.
    assert len(events) == 4
    assert events[0]["kind"] == E.KIND_STATUS and events[0]["instrument"] == E.ALL_INSTRUMENTS
    assert chr(events[0]["flags"]) == "O" and chr(events[0]["src_type"]) == "S"
    assert events[0]["ts_exch_ns"] == FIRST_TS and events[0]["seq"] == 0
    assert np.all(np.diff(events["ts_exch_ns"]) >= 0)
    assert np.array_equal(events["ts_local_ns"], events["ts_exch_ns"])
    assert {chr(c) for c in events["src_type"][1:]} == {"H"}


def test_real_sample_in_plain_python(sample: Path):
    messages = split_records(sample.read_bytes())
    assert len(messages) == 1000
    decoded = [decode_message(m) for m in messages]
    stamps = [m["timestamp"] for m in decoded]
    assert stamps[0] == FIRST_TS and stamps[-1] == LAST_TS
    assert all(a <= b for a, b in itertools.pairwise(stamps))
    assert decoded[0]["message_type"] == "S" and decoded[0]["event_code"] == "O"
    symbols = {m["stock_locate"]: m["stock"] for m in decoded if m["message_type"] == "R"}
    assert symbols[1] == "A" and symbols[2] == "AA"


@pytest.mark.parametrize(("compress", "chunk_bytes", "batch_rows"),
                         [(True, 1 << 20, 4096), (False, 1, 4096), (False, 7, 1), (True, 39, 2),
                          (False, 4093, 3)])  # fmt: skip
def test_gzip_and_tiny_chunks_give_identical_results(sample, tmp_path, compress, chunk_bytes, batch_rows):
    expected, baseline = read_all(sample)
    path = sample
    if compress:
        path = tmp_path / "sample.itch.gz"
        path.write_bytes(gzip.compress(sample.read_bytes()))
    events, reader = read_all(path, chunk_bytes=chunk_bytes, batch_rows=batch_rows)
    assert np.array_equal(events, expected)
    assert np.array_equal(reader.stats.type_counts, baseline.stats.type_counts)
    assert reader.instruments == baseline.instruments
    assert np.array_equal(reader.directory, baseline.directory)
    assert reader.bytes_done == path.stat().st_size


def test_stats_merge_across_files(sample):
    stats = FeedStats()
    for _ in range(2):
        read_all(sample, stats=stats)
    assert stats.messages == 2000 and stats.counts()["R"] == 2 * 993


# --- bad input ------------------------------------------------------------------------------------
GOOD = [
    encode("S", timestamp=1, event_code="O"),
    encode("R", stock_locate=5, timestamp=2, stock="ZVZZT", round_lot_size=100),
    encode("A", stock_locate=5, timestamp=3, order_reference_number=11, buy_sell_indicator="B",
           shares=100, stock="ZVZZT", price=101_000),
    encode("D", stock_locate=5, timestamp=4, order_reference_number=11),
]  # fmt: skip
HEAD = frame(GOOD[:2])
TAIL = frame(GOOD[2:])

# (name, body, what, offset, seq of the bad record, skipped bytes)
BAD_CASES = [
    ("unknown type", HEAD + b"\x00\x05Zabcd" + TAIL, "unknown message type 'Z' (0x5a)", len(HEAD), 2, 7),
    ("wrong length", HEAD + b"\x00\x14" + GOOD[2][:20] + TAIL, "length 20 for type 'A' (expects 36)",
     len(HEAD), 2, 22),
    ("zero length", HEAD + b"\x00\x00" + TAIL, "zero-length record", len(HEAD), 2, 2),
    ("truncated", HEAD + TAIL + frame([GOOD[2]])[:14], "truncated record: 12 of 36 bytes at end of file",
     len(HEAD + TAIL), 4, 14),
    ("truncated prefix", HEAD + TAIL + b"\x00", "truncated record: 1 of 2 length bytes at end of file",
     len(HEAD + TAIL), 4, 1),
]  # fmt: skip


def write(tmp_path: Path, body: bytes, name: str = "feed.itch") -> Path:
    path = tmp_path / name
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 20])
@pytest.mark.parametrize(("name", "body", "what", "offset", "seq", "nbytes"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])  # fmt: skip
def test_bad_record_raises_with_its_location(tmp_path, chunk_bytes, name, body, what, offset, seq, nbytes):
    path = write(tmp_path, body)
    reader = FlatItchReader(str(path), chunk_bytes=chunk_bytes)
    seen = []
    with pytest.raises(FeedError) as info:
        for batch in reader.batches():
            seen.extend(batch["seq"].tolist())
    err = info.value
    assert (err.what, err.path, err.offset, err.seq) == (what, str(path), offset, seq)
    assert str(path) in str(err) and f"offset {offset}" in str(err)
    assert all(s < seq for s in seen)  # rows before the bad record were delivered


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 20])
@pytest.mark.parametrize(("name", "body", "what", "offset", "seq", "nbytes"), BAD_CASES,
                         ids=[c[0] for c in BAD_CASES])  # fmt: skip
def test_bad_record_is_skipped_and_counted(tmp_path, chunk_bytes, name, body, what, offset, seq, nbytes):
    path = write(tmp_path, body)
    events, reader = read_all(path, chunk_bytes=chunk_bytes, skip_bad=True)
    stats = reader.stats
    assert stats.counts() == {"S": 1, "R": 1, "A": 1, "D": 1}
    assert (stats.skipped_records, stats.skipped_bytes) == (1, nbytes)
    assert len(stats.errors) == 1 and what in stats.errors[0] and f"offset {offset}" in stats.errors[0]
    assert list(events["kind"]) == [E.KIND_STATUS, E.KIND_ADD, E.KIND_DELETE]
    after = 1 if seq == 2 else 0  # a record skipped mid-file still takes its index
    assert list(events["seq"]) == [0, 2 + after, 3 + after]
    assert reader.instruments[5].symbol == "ZVZZT"


def test_many_bad_records_are_skipped_in_bulk(tmp_path):
    bad_count = 3 * MAX_KEPT_ERRORS
    body = HEAD + (b"\x00\x05Zabcd" + frame([GOOD[0]])) * bad_count + TAIL  # each bad record, then a good one
    path = write(tmp_path, body)
    events, reader = read_all(path, skip_bad=True, chunk_bytes=16)
    stats = reader.stats
    assert (stats.skipped_records, stats.skipped_bytes) == (bad_count, 7 * bad_count)
    assert len(stats.errors) == MAX_KEPT_ERRORS
    assert stats.messages == 4 + bad_count
    assert list(events["seq"][-2:]) == [2 + 2 * bad_count, 3 + 2 * bad_count]


def test_a_run_of_zero_lengths_is_one_bad_stretch(tmp_path):
    body = HEAD + b"\x00\x00" * 40 + TAIL
    events, reader = read_all(write(tmp_path, body), skip_bad=True, chunk_bytes=16)
    assert (reader.stats.skipped_records, reader.stats.skipped_bytes) == (1, 80)
    assert reader.stats.messages == 4 and list(events["seq"]) == [0, 3, 4]


@pytest.mark.parametrize("chunk_bytes", [5, 1 << 20])
def test_garbage_bytes(tmp_path, chunk_bytes):
    garbage = np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    body = HEAD + garbage + TAIL
    path = write(tmp_path, body)
    with pytest.raises(FeedError) as info:
        read_all(path, chunk_bytes=chunk_bytes)
    assert info.value.offset == len(HEAD) and info.value.seq == 2
    events, reader = read_all(path, chunk_bytes=chunk_bytes, skip_bad=True)
    stats = reader.stats
    assert stats.skipped_records >= 1
    assert list(events["seq"][:1]) == [0] and stats.counts()["R"] >= 1
    # Every byte is accounted for: decoded records plus skipped bytes make up the file.
    good_bytes = int(stats.type_counts @ (MESSAGE_LENGTHS + 2))
    assert good_bytes + stats.skipped_bytes == len(body)


def corrupt_gzip(tmp_path: Path, sample: Path) -> Path:
    """The sample gzipped, with the compressed stream cut short."""
    packed = gzip.compress(sample.read_bytes())
    return write(tmp_path, packed[: len(packed) * 2 // 3], "cut.itch.gz")


def test_corrupt_gzip_raises(tmp_path, sample):
    path = corrupt_gzip(tmp_path, sample)
    with pytest.raises(FeedError, match="corrupt gzip") as info:
        read_all(path, chunk_bytes=1024)
    assert info.value.path == str(path) and info.value.offset is not None


def test_corrupt_gzip_is_skipped_and_stops_the_file(tmp_path, sample):
    path = corrupt_gzip(tmp_path, sample)
    events, reader = read_all(path, chunk_bytes=1024, skip_bad=True)
    stats = reader.stats
    assert 0 < stats.messages < 1000
    assert stats.skipped_records == 1 and "corrupt gzip" in stats.errors[0]
    assert events[0]["kind"] == E.KIND_STATUS


@pytest.mark.parametrize("chunk_bytes", [3, 1 << 20])
def test_skip_bad_resynchronises_after_a_corrupt_length_instead_of_dropping_the_rest(tmp_path, chunk_bytes):
    corrupt = b"\x68\x65" + GOOD[2]  # an Add Order whose length says 26,725 bytes: the file has far fewer
    body = HEAD + corrupt + TAIL + TAIL
    path = write(tmp_path, body)
    with pytest.raises(FeedError, match=r"length 26725 for type 'A' \(expects 36\)"):
        read_all(path, chunk_bytes=chunk_bytes)
    events, reader = read_all(path, chunk_bytes=chunk_bytes, skip_bad=True)
    stats = reader.stats
    assert (stats.skipped_records, stats.skipped_bytes) == (1, len(corrupt))
    assert stats.counts() == {"S": 1, "R": 1, "A": 2, "D": 2}
    assert list(events["seq"]) == [0, 3, 4, 5, 6]
