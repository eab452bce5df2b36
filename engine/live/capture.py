"""Session capture: what a trading node saw and did, replayable through the same compiled step.

A node with a capture (``[capture] enabled`` in the live config) records, in one Arrow IPC stream
``<dir>/<node>-<start>-<pid>.capture.arrow``:

* every MoldUDP64 datagram as it arrived, with its receive time (the receiver's ``tap``: before any
  sequencing, so duplicates, reordered packets and retransmissions are all there);
* every step of the node (``engine.live.node_nb.step_nb``): the time it was given, the control flags
  (halted, stopping, killed), how many event rows it applied, how many messages the receiver had
  given up on by then, and the top of each instrument's book after it;
* the OUCH responses each step applied (with their session sequence numbers) and the OUCH messages it
  wrote (what it decided).

The stream's schema metadata holds the node's spec (strategy, parameters, instruments, risk limits)
and its order tables at the start (a restarted node's were rebuilt from the journal).

:func:`replay_capture` (``hftmm backtest --data FILE.capture.arrow``) feeds the datagrams through the
same MoldUDP64 sequencing and ITCH decoder, the recorded responses and times through the same step
kernel and strategy, and compares, step by step, the book the strategy saw and the orders it wrote with
what the live node recorded. The exchange side is not simulated: the recorded responses are the
exchange. So the replay proves that the live decisions were those of the strategy code on that data,
and its report (orders, fills, position, PnL) is the live session's, recomputed.

Recording costs the node a copy of each datagram into a buffer and, about once a second, writing that
buffer (milliseconds on the node's thread): turn it on to check a session, not on the fastest path.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
from numba import njit

from engine.book import layout as BL
from engine.book.book_nb import best_level_nb, tables_nb
from engine.trading.view import book_of_nb

CAPTURE_SUFFIX = ".capture.arrow"
FORMAT = b"hftmm-capture-1"
K_PACKET, K_STEP, K_RESPONSE, K_ORDER = (ord(c) for c in "PSRO")
FL_HALTED, FL_STOPPING, FL_KILLED = 1, 2, 4  # step flags: what the node's Python side set before the step
TOP_COLUMNS = 4  # per instrument after each step: bid price, bid shares, ask price, ask shares (0 when empty)
FLUSH_INTERVAL_NS = 1_000_000_000
SCHEMA = pa.schema(
    [
        ("kind", pa.uint8()),  # K_*
        ("step", pa.int64()),  # the step a record belongs to (a datagram: the first step after it arrived)
        ("ts_ns", pa.int64()),  # datagram: receive time; the others: the time the step was given
        ("a", pa.int64()),  # step: flags; response: session sequence number; order: index in the step
        ("b", pa.int64()),  # step: event rows applied
        ("c", pa.int64()),  # step: messages the receiver had given up on (lost) so far
        ("data", pa.binary()),  # datagram, response row, OUCH message, or the step's top of book (int64s)
    ]
)
_META_COLUMNS = 7  # kind, step, ts_ns, a, b, c, data length


class CaptureError(ValueError):
    """A capture file that cannot be replayed (one line: which file, what is wrong)."""


@njit(cache=True, nogil=True)
def top_of_book_nb(book, locates, out):
    """Best bid and ask (price, shares; zeros when a side is empty) of each locate, into ``out`` rows."""
    t = tables_nb(book)
    out[:] = 0
    for i in range(locates.shape[0]):
        b = book_of_nb(t, locates[i])
        if b == BL.EMPTY:
            continue
        for side, col in ((BL.BID, 0), (BL.ASK, 2)):
            lv = best_level_nb(t, b, side)
            if lv != BL.EMPTY:
                out[i, col] = t.levels[lv, BL.LV_PRICE]
                out[i, col + 1] = t.levels[lv, BL.LV_QTY]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class CaptureWriter:
    """The node's recorder: preallocated buffers, written to the Arrow stream when full or once a second."""

    def __init__(
        self,
        path: str | Path,
        spec_json: bytes,
        tables: dict[str, np.ndarray],
        locates: np.ndarray,
        capacity_bytes: int = 8 << 20,
        capacity_records: int = 1 << 16,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {b"format": FORMAT, b"spec": spec_json, b"tables": _npz_bytes(tables)}
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA.with_metadata(metadata))
        self._bytes = np.empty(capacity_bytes, np.uint8)
        self._meta = np.empty((capacity_records, _META_COLUMNS), np.int64)
        self._pos = 0
        self._n = 0
        self._locates = locates
        self._top = np.zeros((len(locates), TOP_COLUMNS), np.int64)
        self._next_flush_ns = time.monotonic_ns() + FLUSH_INTERVAL_NS
        self.steps = 0
        self.records = 0

    def _add(self, kind: int, ts_ns: int, a: int, b: int, c: int, data: np.ndarray) -> None:
        n = data.shape[0]
        if self._n == self._meta.shape[0] or self._pos + n > self._bytes.shape[0]:
            self.flush()
            if n > self._bytes.shape[0]:
                self._bytes = np.empty(2 * n, np.uint8)
        self._bytes[self._pos : self._pos + n] = data
        row = self._meta[self._n]
        row[0], row[1], row[2], row[3], row[4], row[5], row[6] = kind, self.steps, ts_ns, a, b, c, n
        self._pos += n
        self._n += 1

    def packet(self, packet: memoryview, ts_ns: int) -> None:
        """A datagram as it arrived (the MoldUDP64 receiver's ``tap``)."""
        self._add(K_PACKET, ts_ns, 0, 0, 0, np.frombuffer(packet, np.uint8))

    def step(
        self,
        now_ns: int,
        flags: int,
        rows: int,
        lost: int,
        responses: np.ndarray,
        first_seq: int,
        book: object,
        out: np.ndarray,
        offsets: np.ndarray,
        count: int,
    ) -> None:
        """One step: its inputs (time, flags, rows, lost messages, responses), the book after it, its orders."""
        top_of_book_nb(book, self._locates, self._top)
        self._add(K_STEP, now_ns, flags, rows, lost, self._top.reshape(-1).view(np.uint8))
        raw = responses.view(np.uint8).reshape(len(responses), responses.dtype.itemsize)
        for j in range(len(responses)):
            self._add(K_RESPONSE, now_ns, first_seq + j, 0, 0, raw[j])
        for j in range(count):
            self._add(K_ORDER, now_ns, j, 0, 0, out[offsets[j] : offsets[j + 1]])
        self.steps += 1

    def due(self, now_ns: int) -> bool:
        """Whether the periodic write is due."""
        return now_ns >= self._next_flush_ns

    def flush(self) -> None:
        """Write what is buffered as one record batch."""
        self._next_flush_ns = time.monotonic_ns() + FLUSH_INTERVAL_NS
        n = self._n
        if not n:
            return
        meta = self._meta[:n]
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(meta[:, 6], out=offsets[1:])
        data = pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(self._bytes[: self._pos].copy())]
        )
        columns = [pa.array(meta[:, 0].astype(np.uint8))] + [pa.array(meta[:, j]) for j in range(1, 6)] + [data]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=SCHEMA))
        self.records += n
        self._n = 0
        self._pos = 0

    def close(self) -> None:
        """Write the rest and close the file."""
        self.flush()
        self._writer.close()
        self._sink.close()


def capture_path(directory: str | Path, node: str, start: str, pid: int | None = None) -> Path:
    """``<directory>/<node>-<start>-<pid>.capture.arrow``."""
    return Path(directory) / f"{node}-{start}-{pid or os.getpid()}{CAPTURE_SUFFIX}"


def is_capture(path: str | Path) -> bool:
    """Whether ``path`` names a session capture (by its suffix)."""
    return str(path).endswith(CAPTURE_SUFFIX)


# --- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capture:
    """A capture file, read whole: the node's spec (JSON), its starting tables and the records by kind."""

    path: Path
    spec_json: bytes
    tables: dict[str, np.ndarray]
    kind: np.ndarray
    step: np.ndarray
    ts_ns: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    data: pa.BinaryArray

    @property
    def spec(self) -> dict:
        """The spec as plain JSON values (strategy, params, instruments, risk, ...)."""
        return json.loads(self.spec_json)

    def payload(self, r: int) -> memoryview:
        """The data bytes of record ``r``, without a copy."""
        return memoryview(self.data[r].as_buffer())

    def steps(self) -> np.ndarray:
        """Record index of every step, in step order."""
        return np.flatnonzero(self.kind == K_STEP)


def read_capture(path: str | Path) -> Capture:
    """Read a capture (a file cut short by a crash is read up to its last whole batch)."""
    path = Path(path)
    batches = []
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
        metadata = reader.schema.metadata or {}
        try:
            for batch in reader:
                batches.append(batch)
        except (pa.ArrowInvalid, OSError):  # a torn tail: what came before it stands
            pass
    except (pa.ArrowInvalid, OSError) as exc:
        raise CaptureError(f"{path}: not a readable session capture ({exc})") from None
    if metadata.get(b"format") != FORMAT:
        raise CaptureError(f"{path}: not an hftmm session capture (format {metadata.get(b'format')!r})")
    if reader.schema.remove_metadata() != SCHEMA:
        raise CaptureError(f"{path}: unexpected columns {reader.schema.names}")
    with np.load(io.BytesIO(metadata[b"tables"])) as npz:
        tables = {name: npz[name] for name in npz.files}
    table = pa.Table.from_batches(batches, schema=reader.schema)
    column = {name: table.column(name).to_numpy() for name in SCHEMA.names[:-1]}
    data = table.column("data").combine_chunks() if table.num_rows else pa.array([], pa.binary())
    return Capture(path, metadata[b"spec"], tables, data=data, **column)


def spec_json(spec: object) -> bytes:
    """A node spec (without recovered tables, which go to the capture as arrays) as JSON."""
    return msgspec.json.encode(dataclasses.replace(spec, recovered=None))
