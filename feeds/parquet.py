"""Events on disk: Parquet files with one column per ``EVENT_DTYPE`` field, readable by any Arrow tool.

Schema version 2 (written since issue 17), what pandas, Polars, DuckDB and ``pq.read_table`` see:

- ``ts_exch_ns``, ``ts_local_ns``: ``timestamp[ns]`` (no time zone; ITCH stamps count from midnight, so a
  file converted from a flat ITCH day reads as 1970-01-01 plus the time of day);
- ``kind``: a dictionary (pandas: category) of the names in ``engine.core.events.KIND_NAMES`` (``add``,
  ``execute``, ``execute_price``, ``cancel``, ``delete``, ``replace``, ``level``, ``trade``, ``clear``, ...);
- ``side``: a dictionary of ``bid``, ``ask``, ``none`` (``SIDE_BID`` +1, ``SIDE_ASK`` -1, ``SIDE_NONE`` 0);
- the other columns as in ``EVENT_DTYPE``: unsigned ``seq``, ``order_id``, ``new_order_id``, ``instrument``,
  ``flags``, ``src_type``; ``price`` in fixed point (divide by the instrument's ``price_scale``), ``qty``.

The Arrow schema metadata holds ``hftmm.event_schema`` (the version), ``hftmm.instruments`` (the instrument
table as JSON: id, symbol, price_scale, tick_size, lot_size) and ``hftmm.source`` (the file it was decoded
from), plus ``PANDAS_ATTRS`` with the same, so ``pd.read_parquet(path).attrs["instruments"]`` is the table.
Version 1 files (plain integer columns, the metadata in the file footer only) are still read.

Writing streams batches into zstd row groups; reading can be whole-file or in bounded batches, and
:class:`ParquetEventReader` makes such a file one more feed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core import events as E
from engine.core.instruments import Instrument, instruments_from_json, instruments_to_json
from feeds.errors import FeedError
from feeds.source import FeedReader, FeedStats

EVENT_SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")
META_VERSION = b"hftmm.event_schema"
META_INSTRUMENTS = b"hftmm.instruments"
META_SOURCE = b"hftmm.source"
META_PANDAS = b"PANDAS_ATTRS"  # pandas.read_parquet turns this JSON into DataFrame.attrs
ROW_GROUP_ROWS = 1 << 18  # 16 MiB of events per row group
DEFAULT_BATCH_ROWS = 1 << 16
COMPRESSION = "zstd"

TIMESTAMP_COLUMNS = ("ts_exch_ns", "ts_local_ns")
KIND_LABELS = tuple(E.KIND_NAMES[code] for code in range(len(E.KIND_NAMES)))  # a kind's code is its index
SIDE_LABELS = {E.SIDE_ASK: "ask", E.SIDE_NONE: "none", E.SIDE_BID: "bid"}
SIDE_OFFSET = 1  # dictionary index of a side = side + 1
LABELS = {"kind": (KIND_LABELS, 0), "side": (tuple(SIDE_LABELS[c] for c in sorted(SIDE_LABELS)), SIDE_OFFSET)}
DICTIONARY_INDEX = pa.int8()


def _arrow_type(name: str) -> pa.DataType:
    if name in TIMESTAMP_COLUMNS:
        return pa.timestamp("ns")
    if name in LABELS:
        return pa.dictionary(DICTIONARY_INDEX, pa.string())
    return pa.from_numpy_dtype(E.EVENT_DTYPE[name])


ARROW_SCHEMA = pa.schema([pa.field(name, _arrow_type(name), nullable=False) for name in E.EVENT_DTYPE.names])
ARROW_SCHEMA_V1 = pa.schema(
    [pa.field(name, pa.from_numpy_dtype(E.EVENT_DTYPE[name]), nullable=False) for name in E.EVENT_DTYPE.names]
)


def _column(events: np.ndarray, name: str) -> pa.Array:
    """One event column as Arrow (a copy: the input may be a reused buffer)."""
    values = pa.array(np.ascontiguousarray(events[name]))
    if name in TIMESTAMP_COLUMNS:
        return values.view(pa.timestamp("ns"))  # the same int64 values (a cast would not keep INT64_MIN)
    if name in LABELS:
        labels, offset = LABELS[name]
        codes = events[name].astype(np.int64) + offset
        bad = (codes < 0) | (codes >= len(labels))
        if bad.any():
            raise ValueError(f"event {name} {int(events[name][bad][0])} has no name")
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(labels))
    return values


def _record_batch(events: np.ndarray) -> pa.RecordBatch:
    """The columns of an event array as an Arrow batch of the version-2 schema."""
    if events.dtype != E.EVENT_DTYPE:
        raise TypeError(f"events must have EVENT_DTYPE, not {events.dtype}")
    return pa.RecordBatch.from_arrays([_column(events, name) for name in E.EVENT_DTYPE.names], schema=ARROW_SCHEMA)


def _metadata(instruments: dict[int, Instrument], source: str) -> dict[bytes, bytes]:
    table = instruments_to_json(instruments)
    attrs = {"hftmm.event_schema": EVENT_SCHEMA_VERSION, "instruments": json.loads(table), "source": source}
    return {
        META_VERSION: str(EVENT_SCHEMA_VERSION).encode(),
        META_INSTRUMENTS: table.encode(),
        META_SOURCE: source.encode(),
        META_PANDAS: json.dumps(attrs).encode(),
    }


def write_events(
    path: str | Path, events: np.ndarray | Iterable[np.ndarray], instruments: dict[int, Instrument], *, source: str = ""
) -> int:
    """Write events (one array or an iterable of batches) to a Parquet file; return rows written.

    Batches are gathered into row groups of about ``ROW_GROUP_ROWS`` rows, so memory stays bounded
    whatever the input length. ``instruments`` may be a feed reader's dict, filled while its batches are
    consumed: the schema metadata takes the table as it is when the first row group is written, and a
    table that grew after that (an instrument defined late in the feed) is put right by copying the row
    groups into a file with the final table (rare: feeds define their instruments first).
    """
    batches = [events] if isinstance(events, np.ndarray) else events
    rows = 0
    writer: pq.ParquetWriter | None = None
    written_meta: dict[bytes, bytes] = {}
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal writer, written_meta, pending, pending_rows, rows
        if writer is None:
            written_meta = _metadata(instruments, source)
            writer = pq.ParquetWriter(str(path), ARROW_SCHEMA.with_metadata(written_meta), compression=COMPRESSION)
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema=ARROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        rows += pending_rows
        pending, pending_rows = [], 0

    try:
        for batch in batches:
            if not len(batch):
                continue
            pending.append(_record_batch(batch))
            pending_rows += len(batch)
            if pending_rows >= ROW_GROUP_ROWS:
                flush()
        flush()
    finally:
        if writer is not None:
            writer.close()
    final_meta = _metadata(instruments, source)
    if final_meta != written_meta:
        _rewrite_with(Path(path), final_meta)
    return rows


def _rewrite_with(path: Path, metadata: dict[bytes, bytes]) -> None:
    """Copy ``path``'s row groups into a file whose schema metadata is ``metadata``, in its place."""
    partial = path.with_name(path.name + ".partial")
    os.replace(path, partial)
    try:
        with (
            pq.ParquetFile(partial) as source,
            pq.ParquetWriter(str(path), ARROW_SCHEMA.with_metadata(metadata), compression=COMPRESSION) as writer,
        ):
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group), row_group_size=ROW_GROUP_ROWS)
    finally:
        partial.unlink()


def open_event_file(path: str | Path) -> tuple[pq.ParquetFile, dict[int, Instrument], str]:
    """Open and validate an hftmm event Parquet (schema version 1 or 2): ``(file, instruments, source)``.

    Anything else (not Parquet, another program's Parquet, another schema version, changed
    columns) is a :class:`FeedError` saying which.
    """
    name = str(path)
    try:
        pfile = pq.ParquetFile(name)
    except (pa.ArrowException, OSError) as exc:
        raise FeedError(f"not a Parquet file ({exc})", path=name) from None
    meta = _hftmm_metadata(pfile)
    if META_VERSION not in meta:
        raise FeedError("not an hftmm event Parquet (no hftmm.event_schema metadata)", path=name)
    version = meta[META_VERSION].decode()
    if version not in READABLE_VERSIONS:
        raise FeedError(
            f"event schema version {version} is not supported (this build reads {', '.join(READABLE_VERSIONS)})",
            path=name,
        )
    expected = ARROW_SCHEMA if version == str(EVENT_SCHEMA_VERSION) else ARROW_SCHEMA_V1
    columns = pfile.schema_arrow
    if columns.names != expected.names or not all(map(_same_type, columns, expected)):
        raise FeedError(f"not hftmm's event columns: {_schema_difference(columns, expected)}", path=name)
    try:
        instruments = instruments_from_json(meta.get(META_INSTRUMENTS, b"[]").decode())
    except (ValueError, TypeError, KeyError) as exc:
        raise FeedError(f"bad instrument metadata ({exc})", path=name) from None
    return pfile, instruments, meta.get(META_SOURCE, b"").decode()


def _hftmm_metadata(pfile: pq.ParquetFile) -> dict[bytes, bytes]:
    """Version, instruments and source: from the footer's key-value pairs (version 2's schema metadata is there
    too), else from ``PANDAS_ATTRS`` (a file pandas wrote back from a frame read here keeps only that)."""
    meta = pfile.metadata.metadata or {}
    if META_VERSION in meta or META_PANDAS not in meta:
        return meta
    try:
        attrs = json.loads(meta[META_PANDAS])
        return {
            META_VERSION: str(attrs["hftmm.event_schema"]).encode(),
            META_INSTRUMENTS: json.dumps(attrs.get("instruments", [])).encode(),
            META_SOURCE: str(attrs.get("source", "")).encode(),
        }
    except (ValueError, TypeError, KeyError):
        return meta


def _same_type(field: pa.Field, expected: pa.Field) -> bool:
    """A column of the expected type; a dictionary of strings with any integer index (pandas, Polars) will do."""
    if pa.types.is_dictionary(expected.type):
        return pa.types.is_dictionary(field.type) and pa.types.is_string(field.type.value_type)
    return field.type.equals(expected.type)


def _codes(column: pa.ChunkedArray | pa.Array, name: str, path: str) -> np.ndarray:
    """A dictionary column back to the event codes, chunk by chunk (each chunk may have its own dictionary)."""
    labels, offset = LABELS[name]
    code_of = {label: index - offset for index, label in enumerate(labels)}
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        try:
            lut = np.array([code_of[label] for label in chunk.dictionary.to_pylist()], np.int64)
        except KeyError as exc:
            raise FeedError(f"unknown event {name} {exc}", path=path) from None
        parts.append(lut[chunk.indices.to_numpy(zero_copy_only=False)] if len(lut) else np.zeros(len(chunk), np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _schema_difference(columns: pa.Schema, expected: pa.Schema) -> str:
    """What keeps ``columns`` from being the event columns, briefly: the missing and extra names, or the
    first column of another type or place."""
    wanted, have = expected.names, columns.names
    missing = [n for n in wanted if n not in have]
    extra = [n for n in have if n not in wanted]
    if missing or extra:
        parts = [
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(extra[:5])}" if extra else "",
        ]
        return "; ".join(p for p in parts if p)
    for k, field in enumerate(expected):
        other = columns.field(field.name)
        if not _same_type(other, field):
            return f"column {field.name} is {other.type}, not {field.type}"
        if have[k] != field.name:
            return f"column {k} is {have[k]}, not {field.name}"
    return "the columns differ in nullability or metadata"


def _to_events(batch: pa.RecordBatch | pa.Table, path: str) -> np.ndarray:
    """Arrow columns (validated against a readable schema, chunked or not) -> an event array."""
    out = np.empty(batch.num_rows, E.EVENT_DTYPE)
    for i, name in enumerate(E.EVENT_DTYPE.names):
        column = batch.column(i)
        if column.null_count:
            raise FeedError(f"column {name} has {column.null_count} missing values", path=path)
        if pa.types.is_dictionary(column.type):
            out[name] = _codes(column, name, path)
        elif pa.types.is_timestamp(column.type):
            out[name] = column.cast(pa.int64()).to_numpy()
        else:
            out[name] = column.to_numpy()
    return out


def _iter_checked(pfile: pq.ParquetFile, path: str, batch_rows: int) -> Iterator[np.ndarray]:
    """Event batches of an opened file, turning damaged data pages into FeedError."""
    rows = 0
    try:
        for batch in pfile.iter_batches(batch_size=batch_rows):
            rows += batch.num_rows
            yield _to_events(batch, path)
    except (pa.ArrowException, OSError) as exc:
        raise FeedError(f"corrupt Parquet data after row {rows} ({exc})", path=path) from None


def iter_events(path: str | Path, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[np.ndarray]:
    """Yield the events of a file in arrays of at most ``batch_rows`` rows (bounded memory)."""
    pfile, _, _ = open_event_file(path)
    yield from _iter_checked(pfile, str(path), batch_rows)


def read_events(path: str | Path) -> tuple[np.ndarray, dict[int, Instrument]]:
    """The whole file: ``(events, instruments)``."""
    pfile, instruments, _ = open_event_file(path)
    try:
        table = pfile.read()
    except (pa.ArrowException, OSError) as exc:
        raise FeedError(f"corrupt Parquet data ({exc})", path=str(path)) from None
    return _to_events(table, str(path)), instruments


class ParquetEventReader(FeedReader):
    """An hftmm event Parquet as a feed: batches of events, counted by ``src_type``.

    The file is validated on construction; ``instruments`` and ``source`` come from its metadata.
    """

    def __init__(
        self, path: str, *, batch_rows: int = DEFAULT_BATCH_ROWS, skip_bad: bool = False, stats: FeedStats | None = None
    ) -> None:
        super().__init__(path, skip_bad=skip_bad, stats=stats)
        self.batch_rows = batch_rows
        self._file, self.instruments, self.source = open_event_file(path)
        self.total_rows = self._file.metadata.num_rows

    def batches(self) -> Iterator[np.ndarray]:
        """Yield event arrays until the file ends; progress is in proportion to rows read."""
        rows = 0
        for events in _iter_checked(self._file, self.path, self.batch_rows):
            rows += len(events)
            self.stats.type_counts += np.bincount(events["src_type"], minlength=256)
            self.bytes_done = self.total_bytes * rows // max(self.total_rows, 1)
            yield events
