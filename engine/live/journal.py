"""The order journal: every OUCH message a node sends and every response it receives, for recovery.

Write-ahead, off the hot path's Python::

    node's compiled step ──append_nb──► ring in /dev/shm/<name>  (outlives the node process)
    node's loop, per batch of responses ──append_responses──►  same ring
    daemon, every poll ──JournalWriter.drain──► runtime_dir/journal/<node>-<start>-<daemon pid>.arrow

A message is in the ring before it is offered on Aeron, so a node killed at any instant leaves a
journal that holds every order it sent; responses it had not yet read are replayed by the exchange
when its successor logs in from the sequence after the last journaled one. :func:`rebuild` replays
a journal through the node's own order-management functions into the tables a new node starts with.
After a crash of the daemon itself, its successor finds the dead run's files (:func:`run_files`) and
what its rings still hold (:meth:`JournalRing.unread`, less what already reached a file:
:func:`new_records`), and resumes the session where those records end (:func:`resume_sequence`).
When the ring is full (the daemon stopped draining) the node sends nothing until there is room.

Ring file: ``ctl`` int64[N_CTL] (write count, read count, full stops), then ``meta`` int64[capacity,
N_META] (ts_ns, kind, sequence, length), then ``data`` uint8[capacity, RECORD_BYTES] (the session
packet as sent, or the ``feeds.ouch.RESPONSE_DTYPE`` row as decoded). Arrow columns: ``ts_ns``,
``kind`` (1 sent, 2 response), ``seq`` (responses: the session's sequence number), ``data`` (binary).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from engine.core.units import SHM_DIR
from engine.trading import layout as TL
from engine.trading.oms import apply_response_nb, cancel_order_nb, find_order_nb, new_order_nb, replace_order_nb
from feeds import ouch

JOURNAL_PREFIX = "hftmm-journal-"  # /dev/shm/<prefix><daemon pid>-<node>: a node's journal ring

J_WRITE, J_READ, J_FULL = range(3)  # ctl slots
N_CTL = 4
M_TS, M_KIND, M_SEQ, M_LEN = range(4)  # meta columns
N_META = 4
RECORD_BYTES = 64  # a session packet of ours (Enter Order with its appendage: 51, Replace: 44) or a response row
KIND_SENT, KIND_RESPONSE = 1, 2
DEFAULT_CAPACITY = 1 << 16
FSYNC_POLICIES = ("batch", "none")  # fsync after every drained batch, or leave it to the OS
SCHEMA = pa.schema([("ts_ns", pa.int64()), ("kind", pa.uint8()), ("seq", pa.int64()), ("data", pa.binary())])
_ENTER, _CANCEL, _REPLACE = ord("O"), ord("X"), ord("U")
_SIDES = {ouch.SIDE_BUY: 1, ouch.SIDE_SELL: -1, ouch.SIDE_SELL_SHORT: -1, ouch.SIDE_SELL_SHORT_EXEMPT: -1}
assert ouch.RESPONSE_DTYPE.itemsize <= RECORD_BYTES


@njit(cache=True, nogil=True)
def ring_has_room_nb(jctl, capacity):
    """Whether the ring takes one more record."""
    return jctl[J_WRITE] - jctl[J_READ] < capacity


@njit(cache=True, nogil=True)
def append_nb(jmeta, jdata, jctl, kind, ts_ns, seq, src, start, length):
    """Append ``src[start:start+length]`` as a record; False (and counted) when the ring is full."""
    capacity = jmeta.shape[0]
    w = jctl[J_WRITE]
    if w - jctl[J_READ] >= capacity:
        jctl[J_FULL] += 1
        return False
    slot = w % capacity
    jmeta[slot, M_TS] = ts_ns
    jmeta[slot, M_KIND] = kind
    jmeta[slot, M_SEQ] = seq
    jmeta[slot, M_LEN] = length
    for b in range(length):
        jdata[slot, b] = src[start + b]
    jctl[J_WRITE] = w + 1  # after the record: a reader never sees a half-written one
    return True


@njit(cache=True, nogil=True)
def append_responses_nb(jmeta, jdata, jctl, raw, n, first_seq, ts_ns):
    """Journal the first ``n`` responses (``raw``: their bytes, one row each; sequence numbers from
    ``first_seq``); returns how many fitted. A full ring counts one full stop: the exchange replays the
    rest from the last journaled sequence."""
    for j in range(n):
        if not ring_has_room_nb(jctl, jmeta.shape[0]):
            jctl[J_FULL] += 1
            return j
        append_nb(jmeta, jdata, jctl, KIND_RESPONSE, ts_ns, first_seq + j, raw[j], 0, raw.shape[1])
    return n


class JournalRing:
    """The ring of one node: in /dev/shm (:meth:`create` by the daemon, :meth:`attach` by the node) or
    :meth:`private` to a node that keeps no journal (it empties the ring itself)."""

    def __init__(self, raw: np.ndarray, capacity: int, path: str = "", owner: bool = False) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.owner = owner
        self.capacity = capacity
        self._raw = raw
        self.ctl = raw[: 8 * N_CTL].view(np.int64)
        meta_end = 8 * N_CTL + capacity * 8 * N_META
        self.meta = raw[8 * N_CTL : meta_end].view(np.int64).reshape(capacity, N_META)
        self.data = raw[meta_end:].reshape(capacity, RECORD_BYTES)

    @staticmethod
    def _size(capacity: int) -> int:
        return 8 * N_CTL + capacity * (8 * N_META + RECORD_BYTES)

    @classmethod
    def create(cls, name: str, capacity: int = DEFAULT_CAPACITY) -> JournalRing:
        """A new, empty ring file ``/dev/shm/<name>`` (removed again by :meth:`close`)."""
        path = os.path.join(SHM_DIR, name)
        raw = np.memmap(path, np.uint8, "w+", shape=(cls._size(capacity),))
        raw[:] = 0
        return cls(raw, capacity, path, owner=True)

    @classmethod
    def attach(cls, name: str, capacity: int = DEFAULT_CAPACITY) -> JournalRing:
        """The existing ring file ``/dev/shm/<name>``."""
        path = os.path.join(SHM_DIR, name)
        return cls(np.memmap(path, np.uint8, "r+", shape=(cls._size(capacity),)), capacity, path)

    @classmethod
    def private(cls, capacity: int = 1024) -> JournalRing:
        """A ring in this process's memory only (no journal kept)."""
        return cls(np.zeros(cls._size(capacity), np.uint8), capacity)

    def discard(self) -> None:
        """Forget everything written (the owner of a private ring calls this)."""
        self.ctl[J_READ] = self.ctl[J_WRITE]

    def append_responses(self, responses: np.ndarray, first_seq: int, ts_ns: int) -> int:
        """Journal decoded responses (sequence numbers from ``first_seq``); returns how many fitted."""
        raw = np.ascontiguousarray(responses).view(np.uint8).reshape(len(responses), ouch.RESPONSE_DTYPE.itemsize)
        return append_responses_nb(self.meta, self.data, self.ctl, raw, len(responses), first_seq, ts_ns)

    def drain(self) -> pa.RecordBatch:
        """The records written since the last drain, as an Arrow batch (the ring forgets them)."""
        batch, upto = self.unread()
        self.release(upto)
        return batch

    def unread(self) -> tuple[pa.RecordBatch, int]:
        """The records not drained yet, as an Arrow batch, and the write count to :meth:`release` once
        they are safe elsewhere (the ring keeps them until then)."""
        r, w = int(self.ctl[J_READ]), int(self.ctl[J_WRITE])
        slots = np.arange(r, w) % self.capacity
        meta = self.meta[slots].copy()
        data = self.data[slots].copy()
        lengths = meta[:, M_LEN]
        blobs = [data[j, : lengths[j]].tobytes() for j in range(len(slots))]
        batch = pa.record_batch(
            [pa.array(meta[:, M_TS]), pa.array(meta[:, M_KIND].astype(np.uint8)), pa.array(meta[:, M_SEQ]),
             pa.array(blobs, pa.binary())], schema=SCHEMA,
        )  # fmt: skip
        return batch, w

    def release(self, upto: int) -> None:
        """Forget the records up to write count ``upto`` (room for the node again)."""
        self.ctl[J_READ] = upto

    @property
    def full_stops(self) -> int:
        """How often the ring was full when a record came."""
        return int(self.ctl[J_FULL])

    def close(self) -> None:
        """Drop the mapping; the creator also removes the file."""
        self.ctl = self.meta = self.data = self._raw = None
        if self.owner and os.path.exists(self.path):
            os.unlink(self.path)
        self.owner = False


class JournalWriter:
    """Appends drained batches to one Arrow IPC stream file (fsync per batch unless ``fsync="none"``)."""

    def __init__(self, path: Path, fsync: str = "batch") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"journal fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fsync = fsync
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._writer = pa.ipc.new_stream(self._file, SCHEMA)
        self.records = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Append a batch (nothing for an empty one) and make it durable per the policy."""
        if not batch.num_rows:
            return
        self._writer.write_batch(batch)
        self.records += batch.num_rows
        if self.fsync == "batch":
            self._file.flush()
            os.fsync(self._file.fileno())

    def drain(self, ring: JournalRing) -> int:
        """Move the ring's new records into the file, then free them in the ring; how many. A crash in
        between leaves them in both (recovery drops the repeats: :func:`new_records`), never in neither."""
        batch, upto = ring.unread()
        self.write(batch)
        ring.release(upto)
        return batch.num_rows

    def flush(self) -> None:
        """Hand what was written to the OS (so a reader of the file sees it)."""
        self._file.flush()

    def close(self) -> None:
        """End the stream and close the file."""
        self._writer.close()
        self._file.close()


def read_journal(path: str | Path) -> pa.Table:
    """A journal file as one table (a stream cut short by a crash is read up to its last whole batch)."""
    batches = []
    with pa.memory_map(str(path)) as source:
        try:
            for batch in pa.ipc.open_stream(source):
                batches.append(batch)
        except (pa.ArrowInvalid, OSError):  # the writer died mid-batch: what came before stands
            pass
    return pa.Table.from_batches(batches, SCHEMA)


def journal_file_name(node: str, started: str, pid: int, ring: bool = False) -> str:
    """The file name of a node's journal in a daemon run: ``<node>-<start, %Y%m%dT%H%M%SZ>-<daemon pid>.arrow``;
    with ``ring``, ``.ring.arrow``: what the ring of that run held when its successor found it."""
    return f"{node}-{started}-{pid}{'.ring' if ring else ''}.arrow"


def run_files(directory: str | Path, node: str, pid: int) -> list[Path]:
    """The journal files of ``node`` from the daemon run of process ``pid`` (ring leftovers included),
    oldest first."""
    pattern = re.compile(rf"{re.escape(node)}-\d{{8}}T\d{{6}}Z-{pid}(\.ring)?\.arrow")
    directory = Path(directory)
    found = [p for p in directory.iterdir() if pattern.fullmatch(p.name)] if directory.is_dir() else []
    return sorted(found)  # the start stamps order them


def read_journals(paths: list[Path]) -> pa.Table:
    """Several journal files, in the given order, as one table."""
    return pa.concat_tables([read_journal(p) for p in paths]) if paths else SCHEMA.empty_table()


def new_records(batch: pa.RecordBatch, journaled: pa.Table) -> pa.RecordBatch:
    """The records of a ring's undrained ``batch`` that are not already the last ones ``journaled``
    (the writer died after writing them, before freeing them in the ring)."""
    tail = journaled.slice(max(0, journaled.num_rows - batch.num_rows)).to_pylist()
    head = pa.Table.from_batches([batch]).to_pylist()
    for start in range(len(tail)):
        if tail[start:] == head[: len(tail) - start]:
            return batch.slice(len(tail) - start)
    return batch


def resume_sequence(records: pa.Table) -> int:
    """The first response sequence number the records lack, counting on from the first one they hold
    (an exchange that outlives a daemon numbers on across its clean runs); 1 without responses."""
    seqs = records.filter(pc.equal(records.column("kind"), KIND_RESPONSE)).column("seq").to_numpy()
    if not len(seqs):
        return 1
    have = set(seqs.tolist())
    expected = int(seqs.min())
    while expected in have:
        expected += 1
    return expected


@dataclass(frozen=True)
class Recovered:
    """What a restarted node starts from: its order-management tables and where its session resumes."""

    own: np.ndarray
    oc: np.ndarray
    inst: np.ndarray
    money: np.ndarray
    next_sequence: int  # the first response sequence number not in the journal
    highest_id: int  # the highest UserRefNum the journal holds


def rebuild(records: pa.Table, own: np.ndarray, oc: np.ndarray, inst: np.ndarray, money: np.ndarray,
            symbols: list[str]) -> Recovered:  # fmt: skip
    """Replay journal records (oldest first) into fresh tables as the node built them (changed in place).

    Sent Enter Orders become PENDING_NEW rows with their UserRefNum, sent Replace Orders new rows that
    replace theirs, sent Cancels mark their rows, responses go through the node's reconciliation (fees
    at the rates in ``money``); the session resumes at :func:`resume_sequence`."""
    index = {symbol: i for i, symbol in enumerate(symbols)}
    kinds = records.column("kind").to_numpy()
    stamps = records.column("ts_ns").to_numpy()
    blobs = records.column("data").to_pylist()
    highest = 0
    saved_next_id = int(oc[TL.OC_NEXT_ID])
    for kind, ts, blob in zip(kinds, stamps, blobs, strict=True):
        if kind == KIND_SENT:
            highest = max(highest, _replay_sent(blob[1:], own, oc, inst, index, int(ts)))
        elif kind == KIND_RESPONSE:
            row = np.frombuffer(blob, ouch.RESPONSE_DTYPE)
            apply_response_nb(own, oc, inst, money, row[0])
    oc[TL.OC_NEXT_ID] = max(saved_next_id, highest + 1)
    return Recovered(own, oc, inst, money, resume_sequence(records), highest)


def _replay_sent(message: bytes, own: np.ndarray, oc: np.ndarray, inst: np.ndarray, index: dict[str, int],
                 ts_ns: int) -> int:  # fmt: skip
    """Apply one journaled OUCH message of ours to the tables; returns its UserRefNum."""
    fields = ouch.decode(ouch.INBOUND, message)
    urn = int(fields["user_ref_num"])
    if message[0] == _ENTER:
        i = index[str(fields["symbol"])]
        oc[TL.OC_NEXT_ID] = urn  # the row gets the id it was sent with
        lots = int(fields["quantity"]) // int(inst[i, TL.IN_LOT])
        if new_order_nb(own, oc, i, _SIDES[str(fields["side"])], int(fields["price"]), lots, ts_ns) >= 0:
            inst[i, TL.IN_ORDERS] += 1
    elif message[0] == _CANCEL:
        i, r = find_order_nb(own, np.int64(urn))
        if i >= 0 and cancel_order_nb(own, i, r):
            inst[i, TL.IN_CANCELS] += 1
    elif message[0] == _REPLACE:
        i, r = find_order_nb(own, np.int64(fields["orig_user_ref_num"]))
        if i >= 0:
            oc[TL.OC_NEXT_ID] = urn
            lots = int(fields["quantity"]) // int(inst[i, TL.IN_LOT])
            if replace_order_nb(own, oc, i, r, int(fields["price"]), lots, ts_ns) >= 0:
                inst[i, TL.IN_REPLACES] += 1
    return urn
