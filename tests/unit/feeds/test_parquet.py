"""Event Parquet files: exact round trips, bounded-memory iteration, and rejection of foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.core import events as E
from engine.core.instruments import Instrument, instruments_from_json, instruments_to_json
from feeds.errors import FeedError
from feeds.parquet import (
    ARROW_SCHEMA_V1,
    EVENT_SCHEMA_VERSION,
    META_INSTRUMENTS,
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
    """Events whose every column spans its whole range: the integer's, or every kind and side there is."""
    rng = np.random.default_rng(seed)
    events = np.empty(n, E.EVENT_DTYPE)
    for name in E.EVENT_DTYPE.names:
        info = np.iinfo(E.EVENT_DTYPE[name])
        events[name] = rng.integers(info.min, info.max, size=n, dtype=E.EVENT_DTYPE[name], endpoint=True)
    events["kind"] = rng.integers(0, len(E.KIND_NAMES), size=n)
    events["side"] = rng.choice([E.SIDE_BID, E.SIDE_ASK, E.SIDE_NONE], size=n)
    events["ts_exch_ns"][:2] = np.iinfo(np.int64).min, np.iinfo(np.int64).max  # NaT's bit pattern survives too
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


def test_columns_keep_names_with_timestamps_and_named_kinds_and_sides(tmp_path: Path) -> None:
    path = tmp_path / "ev.parquet"
    events = random_events(10)
    write_events(path, events, INSTRUMENTS)
    table = pq.read_table(path)
    assert table.schema.names == list(E.EVENT_DTYPE.names)
    assert table.schema.field("ts_exch_ns").type == pa.timestamp("ns")
    assert table.schema.field("ts_local_ns").type == pa.timestamp("ns")
    assert table.schema.field("price").type == pa.int64() and table.schema.field("seq").type == pa.uint64()
    assert table["kind"].to_pylist() == [E.KIND_NAMES[k] for k in events["kind"]]
    assert table["side"].to_pylist() == [{1: "bid", -1: "ask", 0: "none"}[s] for s in events["side"]]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_schema_metadata_that_pyarrow_and_pandas_see_holds_the_instruments_and_version(tmp_path: Path) -> None:
    path = tmp_path / "ev.parquet"
    write_events(path, random_events(10), INSTRUMENTS, source="day.itch")
    meta = pq.read_table(path).schema.metadata
    assert meta[META_VERSION] == b"2" and meta[META_SOURCE] == b"day.itch"
    assert instruments_from_json(meta[META_INSTRUMENTS].decode()) == INSTRUMENTS
    attrs = pd.read_parquet(path).attrs
    assert attrs["hftmm.event_schema"] == EVENT_SCHEMA_VERSION and attrs["source"] == "day.itch"
    by_symbol = {i["symbol"]: i for i in attrs["instruments"]}
    assert by_symbol["ESM4"]["price_scale"] == 1_000_000_000 and by_symbol["AAPL"]["tick_size"] == 0.01


def test_round_trip_through_pandas(tmp_path: Path) -> None:
    """Read with pandas, keep some rows, write with pandas: hftmm reads the result as the same events."""
    events = random_events(2_000, seed=9)
    events["ts_exch_ns"][0] = 0  # pandas reads INT64_MIN as NaT (missing); no real stamp is that
    path = tmp_path / "ev.parquet"
    write_events(path, events, INSTRUMENTS, source="day.itch")
    frame = pd.read_parquet(path)
    assert str(frame["ts_local_ns"].dtype) == "datetime64[ns]"
    assert isinstance(frame["kind"].dtype, pd.CategoricalDtype) and isinstance(frame["side"].dtype, pd.CategoricalDtype)
    assert (frame["kind"] == "add").sum() == (events["kind"] == E.KIND_ADD).sum()
    assert (frame["side"] == "bid").sum() == (events["side"] == E.SIDE_BID).sum()
    keep = frame["side"] != "none"
    frame[keep].to_parquet(tmp_path / "by-pandas.parquet", index=False)
    back, instruments = read_events(tmp_path / "by-pandas.parquet")
    np.testing.assert_array_equal(back, events[events["side"] != E.SIDE_NONE])
    assert instruments == INSTRUMENTS


def test_polars_reads_the_named_columns(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    events = random_events(500, seed=4)
    path = tmp_path / "ev.parquet"
    write_events(path, events, INSTRUMENTS)
    frame = pl.read_parquet(path)
    assert frame["ts_exch_ns"].dtype == pl.Datetime("ns")
    assert frame.filter(pl.col("kind") == "delete").height == (events["kind"] == E.KIND_DELETE).sum()


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    """Files written before the named columns: plain integers, the metadata in the footer only."""
    events = random_events(300, seed=2)
    path = tmp_path / "v1.parquet"
    columns = [pa.array(np.ascontiguousarray(events[name])) for name in E.EVENT_DTYPE.names]
    with pq.ParquetWriter(path, ARROW_SCHEMA_V1) as writer:
        writer.write_table(pa.Table.from_arrays(columns, schema=ARROW_SCHEMA_V1))
        writer.add_key_value_metadata({META_VERSION: b"1", META_INSTRUMENTS: instruments_to_json(INSTRUMENTS).encode()})
    back, instruments = read_events(path)
    np.testing.assert_array_equal(back, events)
    assert instruments == INSTRUMENTS


def test_an_instrument_defined_after_the_first_row_group_still_reaches_the_schema(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("feeds.parquet.ROW_GROUP_ROWS", 100)
    table: dict[int, Instrument] = {7: INSTRUMENTS[7]}
    events = random_events(1_000, seed=6)

    def feed() -> object:
        for i in range(0, len(events), 100):
            if i == 500:
                table[5602] = INSTRUMENTS[5602]
            yield events[i : i + 100]

    path = tmp_path / "ev.parquet"
    assert write_events(path, feed(), table) == len(events)
    assert instruments_from_json(pq.read_schema(path).metadata[META_INSTRUMENTS].decode()) == INSTRUMENTS
    np.testing.assert_array_equal(read_events(path)[0], events)
    assert pq.ParquetFile(path).num_row_groups == 10
    assert [p.name for p in tmp_path.iterdir()] == ["ev.parquet"]


def test_an_event_kind_without_a_name_is_refused(tmp_path: Path) -> None:
    events = random_events(3)
    events["kind"][1] = 200
    with pytest.raises(ValueError, match="event kind 200 has no name"):
        write_events(tmp_path / "ev.parquet", events, INSTRUMENTS)


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
