"""Session capture: what a trading node saw and did, replayable through the same compiled step.

A node with a capture (``[capture] enabled`` in the live config) records, in one Arrow IPC stream
``<dir>/<node>-<start>-<pid>.capture.arrow``:

* every MoldUDP64 datagram as it arrived, with its receive time (the receiver's ``tap``: before any
  sequencing, so duplicates, reordered packets and retransmissions are all there);
* every step of the node (``engine.node_nb.step_nb``): the time it was given, the control flags
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
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
from numba import njit

from engine.book_nb import ASK, BID, EMPTY, LV_PRICE, LV_QTY, best_level_nb, tables_nb
from engine.view_nb import book_of_nb

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
    tables = tables_nb(book)
    levels, sides, arena = tables[1], tables[2], tables[4]
    out[:] = 0
    for i in range(locates.shape[0]):
        b = book_of_nb(tables, locates[i])
        if b == EMPTY:
            continue
        for side, col in ((BID, 0), (ASK, 2)):
            lv = best_level_nb(levels, sides, arena, b, side)
            if lv != EMPTY:
                out[i, col] = levels[lv, LV_PRICE]
                out[i, col + 1] = levels[lv, LV_QTY]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class CaptureWriter:
    """The node's recorder: preallocated buffers, written to the Arrow stream when full or once a second."""

    def __init__(
        self, path: str | Path, spec_json: bytes, tables: dict[str, np.ndarray], locates: np.ndarray,
        capacity_bytes: int = 8 << 20, capacity_records: int = 1 << 16,
    ) -> None:  # fmt: skip
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
        self, now_ns: int, flags: int, rows: int, lost: int, responses: np.ndarray, first_seq: int,
        book: object, out: np.ndarray, offsets: np.ndarray, count: int,
    ) -> None:  # fmt: skip
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


# --- replay --------------------------------------------------------------------------------------
@dataclass
class StepMismatch:
    """The first step where the replay and the live node parted."""

    step: int
    ts_ns: int
    what: str  # "book" or "orders"
    recorded: list
    replayed: list


@dataclass
class CaptureReplay:
    """The outcome of :func:`replay_capture`: the node's report, recomputed, and the parity check."""

    report: dict
    steps: int
    packets: int
    events: int
    orders_recorded: int
    orders_replayed: int
    book_mismatches: int
    order_mismatches: int
    first_mismatch: StepMismatch | None
    elapsed_s: float
    equity_ts: np.ndarray
    equity: np.ndarray
    position: np.ndarray  # shares of the node's first instrument
    lots: dict[str, int]  # shares per lot, by symbol

    @property
    def same_decisions(self) -> bool:
        """True when every step saw the same book and wrote the same orders as the live node."""
        return not self.book_mismatches and not self.order_mismatches and self.orders_replayed == self.orders_recorded


def replay_stats(replay: CaptureReplay, path: str | Path, symbol: str | None = None) -> dict:
    """The replay as ``hftmm backtest --json`` reports it: the backtest keys for ``symbol`` (default: the node's
    first), every symbol's figures, and the parity check."""
    from engine.backtest import equity_stats

    symbols = replay.report["symbols"]
    symbol = symbol or next(iter(symbols))
    if symbol not in symbols:
        raise CaptureError(f"{path}: symbol {symbol} was not traded by node {replay.report['node']} "
                           f"(it traded {', '.join(symbols)})")  # fmt: skip
    mine = symbols[symbol]
    ratios = equity_stats(replay.equity_ts, replay.equity, replay.position)
    mismatch = replay.first_mismatch
    return {
        "data": str(path),
        "mode": "capture",
        "node": replay.report["node"],
        "strategy": replay.report["strategy"],
        "params": replay.report["params"],
        "symbol": symbol,
        "events": replay.events,
        "elapsed_s": replay.elapsed_s,
        "events_per_s": replay.events / replay.elapsed_s if replay.elapsed_s > 0 else 0.0,
        "orders": mine["orders"],
        "fills": mine["fills"],
        "position": mine["position"] // replay.lots[symbol],
        "pnl": mine["pnl"],
        "fees": mine["fees"],
        "sharpe": ratios["sharpe"],
        "sortino": ratios["sortino"],
        "max_drawdown": ratios["max_drawdown"],
        "symbols": symbols,
        "parity": {
            "same_decisions": replay.same_decisions,
            "steps": replay.steps,
            "packets": replay.packets,
            "orders_recorded": replay.orders_recorded,
            "orders_replayed": replay.orders_replayed,
            "book_mismatches": replay.book_mismatches,
            "order_mismatches": replay.order_mismatches,
            "first_mismatch": dataclasses.asdict(mismatch) if mismatch else None,
        },
    }


def replay_capture(path: str | Path, progress: Callable[[int, int], None] | None = None) -> CaptureReplay:
    """Replay a capture through the node's own sequencing, decoder, step kernel and strategy (module doc).

    ``progress(done, total)`` is called every few thousand steps."""
    cap = read_capture(path)
    if not (cap.kind == K_STEP).any():
        raise CaptureError(f"{cap.path}: the capture holds no step (the node never ran)")
    return _Replayer(cap).run(progress)


def node_spec(cap: Capture):
    """The ``engine.node.NodeSpec`` a capture was recorded with (its starting tables are ``cap.tables``)."""
    from engine.node import NodeSpec

    raw = cap.spec
    hints = typing.get_type_hints(NodeSpec)
    try:
        values = {f.name: msgspec.convert(raw[f.name], hints[f.name]) for f in dataclasses.fields(NodeSpec)
                  if f.name in raw and f.name != "recovered"}  # fmt: skip
        return NodeSpec(**values)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise CaptureError(f"{cap.path}: the recorded node spec does not fit this version ({exc})") from None


class _Replayer:
    """The replay's state: a node's arrays built as the live node built them, fed from the records."""

    def __init__(self, cap: Capture) -> None:
        from engine.book_nb import new_state
        from engine.journal import JournalRing
        from engine.metrics import MetricsBlock
        from engine.node import ControlBlock, QuoteAddress, build_state, load_kernel
        from engine.node_nb import STAGES
        from engine.risk import RISK_REASONS
        from feeds.udp import MoldStream
        from strategies import get_strategy

        self.cap = cap
        self.spec = spec = node_spec(cap)
        tag = f"hftmm-replay-{os.getpid()}-{spec.name}"
        self.block = MetricsBlock.create(spec.name, [i.symbol for i in spec.instruments], STAGES, RISK_REASONS,
                                         name=tag, replace=True)  # fmt: skip
        self.control = ControlBlock(tag + "-control", create=True)
        self.journal = JournalRing.private()
        self.ns = build_state(spec, self.block, self.control, self.journal)
        for name, table in cap.tables.items():  # the live node's starting tables (recovered ones included)
            target = getattr(self.ns, name)
            if target.shape != table.shape:
                raise CaptureError(f"{cap.path}: recorded table {name} has shape {table.shape}, not {target.shape}")
            target[...] = table
        self.book = new_state()
        self.step_nb = load_kernel(self.ns, self.book)
        self.quote = QuoteAddress(get_strategy(spec.strategy).quote)
        self.rows: np.ndarray | None = None
        self.stream = MoldStream(self._on_rows)
        self.locates = self.ns.inst[:, 0].copy()

    def _on_rows(self, rows: np.ndarray) -> None:
        self.rows = rows

    def run(self, progress: Callable[[int, int], None] | None) -> CaptureReplay:
        from engine.events import empty_events
        from engine.node import run_step, symbol_reports
        from engine.node_nb import NI_HALT, NI_STOP
        from engine.oms import IN_LOT, IN_POSITION, pnl_nb
        from engine.risk import RS_KILLED
        from feeds.ouch import RESPONSE_DTYPE, empty_responses

        cap, ns, stream = self.cap, self.ns, self.stream
        kind = cap.kind
        records = len(kind)
        steps = cap.steps()
        top = np.zeros((len(self.locates), TOP_COLUMNS), np.int64)
        no_rows = empty_events(0)
        responses = empty_responses(64)
        equity = np.zeros(len(steps))
        position = np.zeros(len(steps))
        lot = float(ns.inst[0, IN_LOT])
        counts = {"packets": 0, "events": 0, "orders_recorded": 0, "orders_replayed": 0, "book": 0, "orders": 0}
        first: StepMismatch | None = None
        r = 0
        started = time.perf_counter()
        try:
            for s, at in enumerate(steps):
                for q in range(r, at):  # what came before this step: its datagrams
                    if kind[q] == K_PACKET:
                        stream._on_packet(cap.payload(q), int(cap.ts_ns[q]))
                        counts["packets"] += 1
                r = at + 1
                for _ in range(records):  # messages the live receiver gave up on by this step
                    if stream.stats.lost_messages >= cap.c[at] or not stream.gap_open:
                        break
                    stream._give_up()
                self.rows = None
                stream._flush()
                rows = self.rows if self.rows is not None else no_rows
                if len(rows) != cap.b[at]:
                    raise CaptureError(f"{cap.path}: step {s} applied {cap.b[at]} event rows live but "
                                       f"{len(rows)} in the replay: the datagrams are incomplete")  # fmt: skip
                counts["events"] += len(rows)
                flags = int(cap.a[at])
                ns.mi[NI_HALT] = flags & 1
                if flags & FL_STOPPING:
                    ns.mi[NI_STOP] = 1
                if flags & FL_KILLED:
                    ns.rstate[RS_KILLED] = 1.0
                n = 0
                recorded_orders = []
                while r < records and kind[r] in (K_RESPONSE, K_ORDER):
                    if kind[r] == K_RESPONSE:
                        if n == len(responses):
                            responses = np.concatenate((responses, empty_responses(len(responses))))
                        responses[n] = np.frombuffer(cap.payload(r), RESPONSE_DTYPE)[0]
                        n += 1
                    else:
                        recorded_orders.append(bytes(cap.payload(r)))
                    r += 1
                now = int(cap.ts_ns[at])
                count, self.book = run_step(self.step_nb, ns, self.book, rows, responses, n, now, self.quote)
                self.journal.discard()
                replayed = [bytes(ns.out[ns.out_off[j] : ns.out_off[j + 1]]) for j in range(count)]
                counts["orders_recorded"] += len(recorded_orders)
                counts["orders_replayed"] += count
                top_of_book_nb(self.book, self.locates, top)
                recorded_top = np.frombuffer(cap.payload(at), np.int64).reshape(top.shape)
                if not np.array_equal(top, recorded_top):
                    counts["book"] += 1
                    first = first or StepMismatch(s, now, "book", recorded_top.tolist(), top.tolist())
                if replayed != recorded_orders:
                    counts["orders"] += 1
                    first = first or StepMismatch(s, now, "orders", _described(recorded_orders),
                                                  _described(replayed))  # fmt: skip
                equity[s] = pnl_nb(ns.inst, ns.money)
                position[s] = ns.inst[0, IN_POSITION] * lot
                if progress is not None and s % 4096 == 0:
                    progress(s, len(steps))
            elapsed = time.perf_counter() - started
            report = {
                "node": self.spec.name,
                "strategy": self.spec.strategy,
                "params": dict(self.spec.params),
                "symbols": symbol_reports(self.spec, ns.inst, ns.money, ns.risk_counts),
            }
        finally:
            self.ns = None  # its metrics views go with the block
            self.block.close()
            self.control.close()
        if progress is not None:
            progress(len(steps), len(steps))
        return CaptureReplay(
            report=report, steps=len(steps), packets=counts["packets"], events=counts["events"],
            orders_recorded=counts["orders_recorded"], orders_replayed=counts["orders_replayed"],
            book_mismatches=counts["book"], order_mismatches=counts["orders"], first_mismatch=first,
            elapsed_s=elapsed, equity_ts=cap.ts_ns[steps].copy(), equity=equity, position=position,
            lots={i.symbol: i.lot for i in self.spec.instruments},
        )  # fmt: skip


def _described(messages: list[bytes]) -> list[str]:
    """OUCH messages a node wrote, one readable line each (for a mismatch report)."""
    from feeds import ouch

    out = []
    for message in messages:
        try:
            fields = ouch.decode(ouch.INBOUND, message[1:])
            out.append(" ".join(f"{k}={v}" for k, v in fields.items()))
        except (ValueError, KeyError, IndexError):
            out.append(message.hex())
    return out
