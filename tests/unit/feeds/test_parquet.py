"""Event Parquet files: exact round trips, bounded-memory iteration, and rejection of foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.errors import FeedError
from feeds.parquet import (
    EVENT_SCHEMA_VERSION,
    META_SOURCE,
    META_VERSION,
    ParquetEventReader,
    iter_events,
    read_events,
    write_events,
)

INSTRUMENTS = {
    7: Instrument(7, "AAPL", 10_000, tick_size=0.01),
    5602: Instrument(5602, "ESM4", 1_000_000_000, tick_size=0.25, lot_size=1.0),
}


def random_events(n: int, seed: int = 7) -> np.ndarray:
    """Events whose every column spans its whole integer range."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, E.EVENT_DTYPE)
    for name in E.EVENT_DTYPE.names:
        info = np.iinfo(E.EVENT_DTYPE[name])
        events[name] = rng.integers(info.min, info.max, size=n, dtype=E.EVENT_DTYPE[name], endpoint=True)
    return events


def test_round_trip_is_exact(tmp_path: Path) -> None:
    events = random_events(5_000)
    path = tmp_path / "ev.parquet"
    assert write_events(path, events, INSTRUMENTS, source="unit test") == len(events)
    back, instruments = read_events(path)
    assert back.dtype == E.EVENT_DTYPE
    np.testing.assert_array_equal(back, events)
    assert instruments == INSTRUMENTS
    meta = pq.ParquetFile(path).metadata.metadata
    assert meta[META_VERSION] == str(EVENT_SCHEMA_VERSION).encode()
    assert meta[META_SOURCE] == b"unit test"


def test_columns_keep_names_and_integer_types(tmp_path: Path) -> None:
    path = tmp_path / "ev.parquet"
    write_events(path, random_events(10), INSTRUMENTS)
    schema = pq.read_schema(path)
    assert schema.names == list(E.EVENT_DTYPE.names)
    assert [schema.field(n).type.to_pandas_dtype() for n in schema.names] == [
        E.EVENT_DTYPE[n].type for n in E.EVENT_DTYPE.names
    ]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_batches_in_iterator_and_small_reads_equal_the_whole(tmp_path: Path) -> None:
    events = random_events(3_001, seed=3)
    path = tmp_path / "ev.parquet"
    chunks = (events[i : i + 250] for i in range(0, len(events), 250))
    assert write_events(path, chunks, INSTRUMENTS) == len(events)
    parts = list(iter_events(path, batch_rows=128))
    assert max(len(p) for p in parts) <= 128
    np.testing.assert_array_equal(np.concatenate(parts), events)


def test_reused_writer_buffer_is_copied(tmp_path: Path) -> None:
    events = random_events(40, seed=5)
    buffer = np.empty(10, E.EVENT_DTYPE)

    def reused() -> object:
        for i in range(0, len(events), 10):
            buffer[:] = events[i : i + 10]
            yield buffer

    path = tmp_path / "ev.parquet"
    write_events(path, reused(), INSTRUMENTS)
    np.testing.assert_array_equal(read_events(path)[0], events)


def test_instruments_filled_during_writing_are_stored(tmp_path: Path) -> None:
    table: dict[int, Instrument] = {}

    def feed() -> object:
        table[7] = INSTRUMENTS[7]
        yield random_events(3)

    path = tmp_path / "ev.parquet"
    write_events(path, feed(), table)
    assert read_events(path)[1] == {7: INSTRUMENTS[7]}


def test_empty_input_gives_a_readable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "ev.parquet"
    assert write_events(path, iter(()), {}) == 0
    events, instruments = read_events(path)
    assert (len(events), events.dtype, instruments) == (0, E.EVENT_DTYPE, {})


def test_parquet_reader_is_a_feed(tmp_path: Path) -> None:
    events = random_events(1_000, seed=11)
    events["src_type"] = np.frombuffer(b"AC" * 500, np.uint8)
    path = tmp_path / "ev.parquet"
    write_events(path, events, INSTRUMENTS, source="x.dbn")
    reader = ParquetEventReader(str(path), batch_rows=300)
    parts = [b.copy() for b in reader.batches()]
    np.testing.assert_array_equal(np.concatenate(parts), events)
    assert reader.stats.counts() == {"A": 500, "C": 500}
    assert reader.instruments == INSTRUMENTS
    assert reader.source == "x.dbn"
    assert reader.bytes_done == reader.total_bytes


def test_foreign_parquet_is_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), path)
    with pytest.raises(FeedError, match="not an hftmm event Parquet"):
        read_events(path)
    with pytest.raises(FeedError, match="not an hftmm event Parquet"):
        ParquetEventReader(str(path))


def test_changed_columns_are_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "ev.parquet"
    write_events(path, random_events(5), INSTRUMENTS)
    table = pq.read_table(path).drop_columns(["price"])
    pq.write_table(table.replace_schema_metadata({META_VERSION: str(EVENT_SCHEMA_VERSION).encode()}), path)
    with pytest.raises(FeedError, match=r"not hftmm's event columns: missing price$"):
        read_events(path)


def test_garbage_file_is_a_feed_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"this is not parquet" * 10)
    with pytest.raises(FeedError, match="not a Parquet file") as info:
        list(iter_events(path))
    assert str(path) in str(info.value)
