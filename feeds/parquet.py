"""Events on disk: Parquet files whose columns are exactly the ``EVENT_DTYPE`` fields.

A file carries, in its key-value metadata, the event-schema version, the instrument table
(``instruments_to_json``) and a free-text source (e.g. the feed file it was decoded from). Writing
streams batches into zstd row groups; reading can be whole-file or in bounded batches, and
:class:`ParquetEventReader` makes such a file one more feed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core import events as E
from engine.core.instruments import Instrument, instruments_from_json, instruments_to_json
from feeds.errors import FeedError
from feeds.source import FeedReader, FeedStats

EVENT_SCHEMA_VERSION = 1
META_VERSION = b"hftmm.event_schema"
META_INSTRUMENTS = b"hftmm.instruments"
META_SOURCE = b"hftmm.source"
ROW_GROUP_ROWS = 1 << 18  # 16 MiB of events per row group
DEFAULT_BATCH_ROWS = 1 << 16
COMPRESSION = "zstd"

ARROW_SCHEMA = pa.schema(
    [pa.field(name, pa.from_numpy_dtype(E.EVENT_DTYPE[name]), nullable=False) for name in E.EVENT_DTYPE.names]
)


def _record_batch(events: np.ndarray) -> pa.RecordBatch:
    """The columns of an event array as an Arrow batch (copies: the input may be a reused buffer)."""
    if events.dtype != E.EVENT_DTYPE:
        raise TypeError(f"events must have EVENT_DTYPE, not {events.dtype}")
    return pa.RecordBatch.from_arrays(
        [pa.array(np.ascontiguousarray(events[name])) for name in E.EVENT_DTYPE.names], schema=ARROW_SCHEMA
    )


def write_events(
    path: str | Path, events: np.ndarray | Iterable[np.ndarray], instruments: dict[int, Instrument], *, source: str = ""
) -> int:
    """Write events (one array or an iterable of batches) to a Parquet file; return rows written.

    Batches are gathered into row groups of about ``ROW_GROUP_ROWS`` rows, so memory stays bounded
    whatever the input length. ``instruments`` is serialised when the file is closed, so a feed
    reader's ``instruments`` dict, filled while its batches are consumed, may be passed directly.
    """
    batches = [events] if isinstance(events, np.ndarray) else events
    rows = 0
    with pq.ParquetWriter(str(path), ARROW_SCHEMA, compression=COMPRESSION) as writer:
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in batches:
            if not len(batch):
                continue
            pending.append(_record_batch(batch))
            pending_rows += len(batch)
            if pending_rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_ROWS)
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_ROWS)
            rows += pending_rows
        writer.add_key_value_metadata(
            {
                META_VERSION: str(EVENT_SCHEMA_VERSION).encode(),
                META_INSTRUMENTS: instruments_to_json(instruments).encode(),
                META_SOURCE: source.encode(),
            }
        )
    return rows


def open_event_file(path: str | Path) -> tuple[pq.ParquetFile, dict[int, Instrument], str]:
    """Open and validate an hftmm event Parquet: ``(file, instruments, source)``.

    Anything else (not Parquet, another program's Parquet, another schema version, changed
    columns) is a :class:`FeedError` saying which.
    """
    name = str(path)
    try:
        pfile = pq.ParquetFile(name)
    except (pa.ArrowException, OSError) as exc:
        raise FeedError(f"not a Parquet file ({exc})", path=name) from None
    meta = pfile.metadata.metadata or {}
    if META_VERSION not in meta:
        raise FeedError("not an hftmm event Parquet (no hftmm.event_schema metadata)", path=name)
    version = meta[META_VERSION].decode()
    if version != str(EVENT_SCHEMA_VERSION):
        raise FeedError(
            f"event schema version {version} is not supported (this build reads {EVENT_SCHEMA_VERSION})", path=name
        )
    columns = pfile.schema_arrow.remove_metadata()
    if not columns.equals(ARROW_SCHEMA):
        raise FeedError(f"not hftmm's event columns: {_schema_difference(columns)}", path=name)
    try:
        instruments = instruments_from_json(meta.get(META_INSTRUMENTS, b"[]").decode())
    except (ValueError, TypeError, KeyError) as exc:
        raise FeedError(f"bad instrument metadata ({exc})", path=name) from None
    return pfile, instruments, meta.get(META_SOURCE, b"").decode()


def _schema_difference(columns: pa.Schema) -> str:
    """What keeps ``columns`` from being the event columns, briefly: the missing and extra names, or the
    first column of another type or place."""
    wanted, have = ARROW_SCHEMA.names, columns.names
    missing = [n for n in wanted if n not in have]
    extra = [n for n in have if n not in wanted]
    if missing or extra:
        parts = [
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(extra[:5])}" if extra else "",
        ]
        return "; ".join(p for p in parts if p)
    for k, field in enumerate(ARROW_SCHEMA):
        other = columns.field(field.name)
        if other.type != field.type:
            return f"column {field.name} is {other.type}, not {field.type}"
        if have[k] != field.name:
            return f"column {k} is {have[k]}, not {field.name}"
    return "the columns differ in nullability or metadata"


def _to_events(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """Arrow columns (validated against ARROW_SCHEMA, chunked or not) -> an event array."""
    out = np.empty(batch.num_rows, E.EVENT_DTYPE)
    for i, name in enumerate(E.EVENT_DTYPE.names):
        out[name] = batch.column(i).to_numpy()
    return out


def _iter_checked(pfile: pq.ParquetFile, path: str, batch_rows: int) -> Iterator[np.ndarray]:
    """Event batches of an opened file, turning damaged data pages into FeedError."""
    rows = 0
    try:
        for batch in pfile.iter_batches(batch_size=batch_rows):
            rows += batch.num_rows
            yield _to_events(batch)
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
    return _to_events(table), instruments


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
