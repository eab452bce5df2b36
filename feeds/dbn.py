"""Databento DBN market-by-order files (``.dbn``, ``.dbn.zst``) -> rows of ``EVENT_DTYPE``.

databento-dbn reads what is rare and structured: the metadata header (dataset, schema, symbols,
symbology mappings, version upgrade from DBN v1/v2) and instrument definition files. The record
stream itself is framed and converted by one jitted pass over the decompressed bytes, so that no
Python object is made per record; zstd frames are decompressed by pyarrow's streaming codec
(databento-dbn's Python API only hands out decoded record objects, never raw bytes).

Stream layout (little-endian)::

    0   "DBN"          3 bytes magic
    3   version        u1   1, 2 or 3
    4   metadata_len   u4   bytes of metadata that follow
    8   metadata       metadata_len bytes (decoded by databento_dbn.Metadata)
    8+metadata_len     records, each starting with its length in 4-byte words

MBO record (rtype 0xA0, 56 bytes; the same in DBN v1, v2 and v3; +8 bytes ts_out when the
metadata says ``ts_out``)::

     0  length        u1   record length / 4 (14)
     1  rtype         u1   0xA0
     2  publisher_id  u2
     4  instrument_id u4
     8  ts_event      u8   exchange timestamp, ns since the UNIX epoch
    16  order_id      u8
    24  price         i8   1e-9 fixed point; UNDEF_PRICE (i64 max) when there is none
    32  size          u4
    36  flags         u1   F_LAST 0x80, F_TOB 0x40, F_SNAPSHOT 0x20, F_MBP 0x10, ...
    37  channel_id    u1
    38  action        c    A add, C cancel, M modify, R clear, T trade, F fill, N none
    39  side          c    B bid, A ask, N none
    40  ts_recv       u8   capture-server receive timestamp
    48  ts_in_delta   i4
    52  sequence      u4

Every field sits at a multiple of 4 bytes from the record start and every record length is a
multiple of 4, so the kernel reads the stream as u32 words (a u8 field pair as two words).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import databento_dbn as dbn
import numpy as np
import pyarrow as pa
from numba import njit

from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.errors import FeedError
from feeds.source import CHUNK_BYTES, FeedReader, FeedStats

DBN_MAGIC = b"DBN"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PREFIX_BYTES = 8  # magic, version, metadata length
DBN_PRICE_SCALE = dbn.FIXED_PRICE_SCALE  # 1e-9 fixed-point prices
SUPPORTED_SCHEMA = "mbo"
DEFINITION_SCHEMA = "definition"  # instrument definitions: read for symbols and ticks, no events

RTYPE_MBO = 0xA0
MBO_RECORD_BYTES = 56
MIN_RECORD_BYTES = 16  # the record header every record carries
MAX_RECORD_BYTES = 255 * 4  # the length byte counts 4-byte words
TS_OUT_BYTES = 8  # what metadata ``ts_out`` adds to every record
RESYNC_RUN = 3  # after a bad record length, records go on where this many right records follow each other
WORD_BYTES = 4

# u32 word index of each MBO field (byte offset / 4); see the layout in the module docstring.
TS_EVENT_WORD = 8 // WORD_BYTES
INSTRUMENT_WORD = 4 // WORD_BYTES
ORDER_ID_WORD = 16 // WORD_BYTES
PRICE_WORD = 24 // WORD_BYTES
SIZE_WORD = 32 // WORD_BYTES
FLAGS_ACTION_SIDE_WORD = 36 // WORD_BYTES  # flags, channel_id, action, side: one byte each
TS_RECV_WORD = 40 // WORD_BYTES
SEQUENCE_WORD = 52 // WORD_BYTES

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_ORDER_SIZE = dbn.UNDEF_ORDER_SIZE
DBN_F_LAST = dbn.F_LAST
DBN_F_SNAPSHOT = dbn.F_SNAPSHOT

# Kernel status codes: why decode_mbo_nb stopped.
STATUS_NEED_MORE = 0  # the rest of the buffer is not a whole record (or is empty)
STATUS_OUT_FULL = 1  # the output array is full; call again from the returned position
STATUS_BAD_LENGTH = 2  # a record claims fewer bytes than a record header
STATUS_BAD_MBO_LENGTH = 3  # an MBO record whose length is not the MBO layout's
STATUS_UNKNOWN_RTYPE = 4  # a record of an rtype DBN does not define

RTYPE_NAMES = {int(r.value): r.name for r in dbn.RType.variants()}
KNOWN_RTYPES = np.zeros(256, np.bool_)  # rtypes DBN defines: the others than MBO are skipped and counted
KNOWN_RTYPES[list(RTYPE_NAMES)] = True

DEFAULT_BATCH_ROWS = 1 << 16
DEFINITION_READ_BYTES = 1 << 20


def _lookup(pairs: dict[str, int], dtype: str) -> np.ndarray:
    """A 256-entry table from a character code to a value (0 for codes not listed)."""
    table = np.zeros(256, dtype=dtype)
    for char, value in pairs.items():
        table[ord(char)] = value
    return table


KIND_BY_ACTION = _lookup(
    {
        "A": E.KIND_ADD,
        "C": E.KIND_CANCEL,
        "M": E.KIND_REPLACE,
        "R": E.KIND_CLEAR,
        "T": E.KIND_TRADE,
        "F": E.KIND_NONE,  # one resting order's share of the T print just before it: counting it would double
        "N": E.KIND_NONE,
    },
    "u1",
)
SIDE_BY_CHAR = _lookup({"B": E.SIDE_BID, "A": E.SIDE_ASK, "N": E.SIDE_NONE}, "i1")


@njit(cache=True, nogil=True, inline="always")
def _u64_nb(words: np.ndarray, i: int) -> np.int64:
    """The little-endian 8-byte value at word ``i`` as an int64 bit pattern."""
    return np.int64(words[i]) | (np.int64(words[i + 1]) << 32)


@njit(cache=True, nogil=True)
def decode_mbo_nb(
    words: np.ndarray,
    start: int,
    end: int,
    out: np.ndarray,
    kind_by_action: np.ndarray,
    side_by_char: np.ndarray,
    skipped_rtypes: np.ndarray,
    skipped_rtype_bytes: np.ndarray,
    known_rtypes: np.ndarray,
    mbo_bytes: int,
) -> tuple[int, int, int]:
    """Frame DBN records in bytes ``[start, end)`` of ``words`` and write the MBO ones to ``out``.

    Records of other rtypes DBN defines are counted in ``skipped_rtypes`` (and their bytes in
    ``skipped_rtype_bytes``); a record of an rtype it does not define, or an MBO record not ``mbo_bytes`` long,
    stops the call. Returns ``(rows written, byte position reached, status)``; the position is the start of the
    first record not consumed.
    """
    pos = start
    n = 0
    cap = out.shape[0]
    while pos + MIN_RECORD_BYTES <= end:
        w = pos >> 2
        head = np.int64(words[w])
        rec_len = (head & 0xFF) * WORD_BYTES
        if rec_len < MIN_RECORD_BYTES:
            return n, pos, STATUS_BAD_LENGTH
        if pos + rec_len > end:
            return n, pos, STATUS_NEED_MORE
        rtype = (head >> 8) & 0xFF
        if rtype != RTYPE_MBO:
            if not known_rtypes[rtype]:
                return n, pos, STATUS_UNKNOWN_RTYPE
            skipped_rtypes[rtype] += 1
            skipped_rtype_bytes[rtype] += rec_len
            pos += rec_len
            continue
        if rec_len != mbo_bytes:
            return n, pos, STATUS_BAD_MBO_LENGTH
        if n == cap:
            return n, pos, STATUS_OUT_FULL
        packed = np.int64(words[w + FLAGS_ACTION_SIDE_WORD])
        raw_flags = packed & 0xFF
        action = (packed >> 16) & 0xFF
        kind = kind_by_action[action]
        order_id = _u64_nb(words, w + ORDER_ID_WORD)
        price = _u64_nb(words, w + PRICE_WORD)
        size = np.int64(words[w + SIZE_WORD])
        flags = 0
        if raw_flags & DBN_F_LAST:
            flags |= E.FLAG_LAST
        if raw_flags & DBN_F_SNAPSHOT:
            flags |= E.FLAG_SNAPSHOT
        ev = out[n]
        ev.ts_exch_ns = _u64_nb(words, w + TS_EVENT_WORD)
        ev.ts_local_ns = _u64_nb(words, w + TS_RECV_WORD)
        ev.seq = words[w + SEQUENCE_WORD]
        ev.order_id = order_id
        ev.new_order_id = order_id if kind == E.KIND_REPLACE else 0
        ev.price = 0 if price == UNDEF_PRICE else price
        ev.qty = 0 if size == UNDEF_ORDER_SIZE else size
        ev.instrument = words[w + INSTRUMENT_WORD]
        ev.kind = kind
        ev.side = side_by_char[(packed >> 24) & 0xFF]
        ev.flags = flags
        ev.src_type = action
        n += 1
        pos += rec_len
    return n, pos, STATUS_NEED_MORE


@njit(cache=True, nogil=True)
def resync_dbn_nb(words: np.ndarray, pos: int, end: int, mbo_bytes: int, at_eof: bool):
    """Where DBN records go on after a record of a bad length: the first 4-byte step from ``pos`` where
    ``RESYNC_RUN`` MBO records ``mbo_bytes`` long follow each other, or fewer reach the end of the file (headers
    of other rtypes are short enough to be read into the zeros inside a record). Returns ``(1, offset)`` when
    found, ``(0, offset)`` when the bytes end before the records at ``offset`` can be judged (call again with
    more), ``(0, end)`` when none.
    """
    for p in range(pos, end, WORD_BYTES):
        q = p
        verdict = 1
        for _ in range(RESYNC_RUN):
            if q == end and at_eof and q > p:
                break
            if end - q < MIN_RECORD_BYTES:
                verdict = 0 if at_eof else -1
                break
            head = np.int64(words[q >> 2])
            rec_len = (head & 0xFF) * WORD_BYTES
            rtype = (head >> 8) & 0xFF
            if rtype != RTYPE_MBO or rec_len != mbo_bytes:
                verdict = 0
                break
            if q + rec_len > end:
                verdict = 0 if at_eof else -1
                break
            q += rec_len
        if verdict == 1:
            return 1, p
        if verdict < 0:
            return 0, p
    return 0, end


def _open_stream(path: str) -> tuple[pa.NativeFile, pa.NativeFile]:
    """``(decompressed stream, raw file)`` of a plain or zstd DBN file."""
    raw = pa.OSFile(path, "rb")
    is_zstd = raw.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC
    raw.seek(0)
    return (pa.CompressedInputStream(raw, "zstd") if is_zstd else raw), raw


def _read_exact(stream: pa.NativeFile, n: int, path: str, offset: int) -> bytes:
    """``n`` bytes of the decompressed stream, or a FeedError naming where it broke."""
    try:
        data = stream.read(n)
    except OSError as exc:
        raise FeedError(f"corrupt zstd stream ({exc})", path=path, offset=offset) from None
    if len(data) != n:
        raise FeedError(f"truncated DBN header ({len(data)} of {n} bytes)", path=path, offset=offset)
    return data


def read_metadata(stream: pa.NativeFile, path: str) -> tuple[int, dbn.Metadata, int]:
    """Read the DBN header: ``(file version, metadata upgraded to the current version, header bytes)``."""
    prefix = _read_exact(stream, PREFIX_BYTES, path, 0)
    if prefix[:3] != DBN_MAGIC:
        raise FeedError("not a DBN file (no 'DBN' magic after decompression)", path=path, offset=0)
    meta_len = int.from_bytes(prefix[4:8], "little")
    body = _read_exact(stream, meta_len, path, PREFIX_BYTES)
    try:
        metadata = dbn.Metadata.decode(prefix + body)
    except Exception as exc:  # databento-dbn raises DBNError and ValueError alike
        raise FeedError(f"bad DBN metadata ({exc})", path=path, offset=PREFIX_BYTES) from None
    return prefix[3], metadata, PREFIX_BYTES + meta_len


def symbols_by_id(metadata: dbn.Metadata) -> dict[int, str]:
    """Instrument id -> raw symbol from the metadata's symbology mappings."""
    out: dict[int, str] = {}
    id_out = metadata.stype_out == dbn.SType.INSTRUMENT_ID
    id_in = metadata.stype_in == dbn.SType.INSTRUMENT_ID
    for key, intervals in metadata.mappings.items():
        for interval in intervals:
            ident, symbol = (interval["symbol"], key) if id_out else (key, interval["symbol"])
            if (id_out or id_in) and ident.isdigit():
                out.setdefault(int(ident), symbol)
    return out


def load_definitions(path: str) -> dict[int, tuple[str, float]]:
    """Instrument id -> ``(raw symbol, tick size in currency)`` from a DBN definition file.

    Definition records are few and rich, so databento-dbn decodes them (upgrading DBN v1/v2 layouts).
    """
    out: dict[int, tuple[str, float]] = {}
    with open(path, "rb") as f:
        is_zstd = f.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC
        f.seek(0)
        compression = dbn.Compression.ZSTD if is_zstd else dbn.Compression.NONE
        decoder = dbn.DBNDecoder(compression=compression)
        while chunk := f.read(DEFINITION_READ_BYTES):
            try:
                records = decoder.write_and_decode(chunk)
            except Exception as exc:  # DBNError
                raise FeedError(f"bad DBN definition file ({exc})", path=path, offset=f.tell()) from None
            for rec in records:
                increment = getattr(rec, "min_price_increment", None)
                if increment is None:
                    continue
                tick = 0.0 if increment == UNDEF_PRICE else increment / DBN_PRICE_SCALE
                out[rec.instrument_id] = (rec.raw_symbol, tick)
    return out


def find_definitions(path: str) -> str | None:
    """A DBN definition file beside ``path`` (name containing "definition"), if there is one."""
    folder = os.path.dirname(os.path.abspath(path))
    for name in sorted(os.listdir(folder)):
        candidate = os.path.join(folder, name)
        if "definition" in name and name.endswith((".dbn", ".dbn.zst")) and not os.path.samefile(candidate, path):
            return candidate
    return None


class DbnReader(FeedReader):
    """A Databento DBN MBO file as a feed.

    The header is read on construction (``metadata``, ``dbn_version``; a schema other than MBO is a
    :class:`FeedError`). ``batches()`` yields up to ``batch_rows`` events at a time, counted by DBN
    action in ``stats.type_counts``; records of other rtypes are skipped and counted in
    ``skipped_rtypes`` and ``stats.skipped_records``. Prices stay in DBN's 1e-9 units.
    ``definitions`` names an instrument definition file for tick sizes; by default one beside the
    data file is used when present, and ``""`` disables the search.
    """

    def __init__(
        self,
        path: str,
        *,
        definitions: str | None = None,
        skip_bad: bool = False,
        stats: FeedStats | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        super().__init__(path, skip_bad=skip_bad, stats=stats)
        self.chunk_bytes = max(WORD_BYTES, chunk_bytes - chunk_bytes % WORD_BYTES)
        self.batch_rows = batch_rows
        self.skipped_rtypes = np.zeros(256, np.int64)
        self.skipped_rtype_bytes = np.zeros(256, np.int64)
        self._records = 0  # records framed so far, bad ones included (errors name a record by its index)
        self._skipping: tuple[FeedError, int] | None = None  # a skip under way: its reason, where it began
        stream, raw = _open_stream(path)
        try:
            self.dbn_version, self.metadata, self.header_bytes = read_metadata(stream, path)
        finally:
            raw.close()
        self.mbo_bytes = MBO_RECORD_BYTES + (TS_OUT_BYTES if self.metadata.ts_out else 0)
        schema = self.metadata.schema
        self.definitions_only = schema is not None and str(schema) == DEFINITION_SCHEMA
        if schema is not None and str(schema) != SUPPORTED_SCHEMA and not self.definitions_only:
            raise FeedError(f"schema {schema} is not supported; hftmm reads MBO (and definitions)", path=path)
        self.symbols = symbols_by_id(self.metadata)
        if self.definitions_only:  # the instruments of the files after it, no events of its own
            definitions = path
        elif definitions is None:
            definitions = find_definitions(path)
        self.definitions = load_definitions(definitions) if definitions else {}
        if self.definitions_only:
            self.instruments = {i: self._instrument(i) for i in self.definitions}

    def continue_from(self, previous: FeedReader) -> None:
        """Definitions read just before (a definition file given with the data) name these instruments."""
        if isinstance(previous, DbnReader) and not self.definitions:
            self.definitions = previous.definitions

    def _instrument(self, instrument_id: int) -> Instrument:
        """The instrument of an id: symbol from the mappings, else the definitions, else the metadata."""
        symbol, tick = self.definitions.get(instrument_id, ("", 0.0))
        symbol = self.symbols.get(instrument_id) or symbol
        if not symbol:
            listed = self.metadata.symbols
            symbol = listed[0] if len(listed) == 1 else str(instrument_id)
        return Instrument(instrument_id, symbol, DBN_PRICE_SCALE, tick_size=tick)

    def _note_batch(self, events: np.ndarray) -> None:
        """Count a batch by action and register the instruments it introduces."""
        self.stats.type_counts += np.bincount(events["src_type"], minlength=256)
        for instrument_id in np.unique(events["instrument"]).tolist():
            if instrument_id not in self.instruments:
                self.instruments[instrument_id] = self._instrument(instrument_id)

    def _note_other_rtypes(self, counts: np.ndarray, sizes: np.ndarray) -> int:
        """Count records of other rtypes than MBO as skipped, each rtype named; returns how many."""
        for rtype in np.flatnonzero(counts).tolist():
            what = f"{int(counts[rtype])} record(s) of rtype 0x{rtype:02x} ({RTYPE_NAMES[rtype]}), not MBO"
            self.stats.record_skip(
                FeedError(what, path=self.path), records=int(counts[rtype]), nbytes=int(sizes[rtype])
            )
        return int(counts.sum())

    def _bad_record(self, what: str, offset: int, length: int) -> None:
        """Raise, or under ``skip_bad`` count that one record as skipped."""
        error = FeedError(what, path=self.path, offset=offset)
        if not self.skip_bad:
            raise error
        self.stats.record_skip(error, records=1, nbytes=length)

    def _bad_input(self, what: str, offset: int, remaining: int) -> None:
        """Raise, or under ``skip_bad`` count the rest of the stream as skipped."""
        error = FeedError(what, path=self.path, offset=offset)
        if not self.skip_bad:
            raise error
        self.stats.record_skip(error, records=1, nbytes=remaining)

    def _end_skip(self, offset: int) -> None:
        """A skip under way (after a record of a bad length) ends at stream ``offset``: count it."""
        if self._skipping is not None:
            error, start = self._skipping
            self._skipping = None
            self.stats.record_skip(error, records=1, nbytes=offset - start)

    def batches(self) -> Iterator[np.ndarray]:
        """Yield event arrays (views into one reused buffer) until the file ends."""
        if self.definitions_only:
            self.bytes_done = self.total_bytes
            return
        work = np.empty(self.chunk_bytes + RESYNC_RUN * MAX_RECORD_BYTES + WORD_BYTES, np.uint8)
        out = np.empty(self.batch_rows, E.EVENT_DTYPE)
        stream, raw = _open_stream(self.path)
        try:
            stream.read(self.header_bytes)
            base = self.header_bytes  # decompressed offset of work[0]
            tail = 0
            while True:
                try:
                    got = stream.readinto(memoryview(work)[tail : tail + self.chunk_bytes])
                except OSError as exc:
                    self._end_skip(base + tail)
                    self._bad_input(f"corrupt zstd stream ({exc})", base + tail, 0)
                    return
                self.bytes_done = raw.tell()
                end = tail + got
                pos = yield from self._decode(work, out, end, base, at_eof=got == 0)
                if got == 0:
                    break
                tail = end - pos
                work[:tail] = work[pos:end]
                base += pos
        finally:
            raw.close()

    def _decode(
        self, work: np.ndarray, out: np.ndarray, end: int, base: int, at_eof: bool
    ) -> Generator[np.ndarray, None, int]:
        """Decode the records of ``work[:end]`` into ``out``, yielding full batches; returns where the bytes not
        consumed begin. A record of an unknown rtype is skipped alone (its length frames it); after one of a bad
        length the skip goes on to where right records follow each other again (:func:`resync_dbn_nb`)."""
        words = work.view(np.uint32)
        pos = 0
        while True:
            if self._skipping is not None:
                found, pos = resync_dbn_nb(words, pos, end, self.mbo_bytes, at_eof)
                if not found and not at_eof:
                    return pos
                self._end_skip(base + (pos if found else end))
                if not found:
                    return end
            counts, sizes = self.skipped_rtypes.copy(), self.skipped_rtype_bytes.copy()
            n, pos, status = decode_mbo_nb(
                words, pos, end, out, KIND_BY_ACTION, SIDE_BY_CHAR, self.skipped_rtypes, self.skipped_rtype_bytes,
                KNOWN_RTYPES, self.mbo_bytes,
            )  # fmt: skip
            self._records += n + self._note_other_rtypes(self.skipped_rtypes - counts, self.skipped_rtype_bytes - sizes)
            if n:
                self._note_batch(out[:n])
                yield out[:n]
            if status == STATUS_OUT_FULL:
                continue
            rec_len = int(work[pos]) * WORD_BYTES if pos < end else 0
            if status == STATUS_UNKNOWN_RTYPE:  # its length frames it: skip that record alone
                what = f"record {self._records}: unknown rtype 0x{int(work[pos + 1]):02x}"
                self._bad_record(what, base + pos, rec_len)
                self._records += 1
                pos += rec_len
                continue
            if status != STATUS_NEED_MORE:
                reason = "record length" if status == STATUS_BAD_LENGTH else "MBO record length"
                error = FeedError(f"record {self._records}: bad {reason} {rec_len}", path=self.path, offset=base + pos)
                if not self.skip_bad:
                    raise error
                self._skipping = (error, base + pos)
                self._records += 1
                pos += WORD_BYTES
                continue
            if at_eof and pos < end:
                tail = end - pos
                self._bad_input(f"record {self._records}: truncated ({tail} of {rec_len} bytes)", base + pos, tail)
                return end
            return pos
