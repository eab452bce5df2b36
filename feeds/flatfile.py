"""Flat ITCH 5.0 files (``[u16 length][message]`` records, plain or gzip) as event batches.

A NASDAQ day is about 10 GB uncompressed, so the file is streamed: each chunk of
:func:`feeds.source.read_chunks` lands behind the incomplete record carried over from the previous
chunk in one preallocated byte buffer, and one jitted :func:`feeds.itch.decode_flat_nb` call per
chunk (or per full event buffer) decodes it. Offsets in errors are positions in the decompressed
stream of the record's length prefix; ``seq`` is the record index in the file.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import numpy as np

from engine.core import events as E
from feeds.errors import FeedError
from feeds.itch import (
    ERR_UNKNOWN_TYPE,
    ERR_ZERO_LENGTH,
    MAX_RECORD_BYTES,
    MESSAGE_LENGTHS,
    STATUS_DONE,
    STATUS_NEED_MORE,
    STATUS_OUT_FULL,
    StockDirectory,
    decode_flat_nb,
    resync_flat_nb,
)
from feeds.source import CHUNK_BYTES, MAX_KEPT_ERRORS, FeedReader, FeedStats, read_chunks

BATCH_ROWS = 1 << 12  # events per yielded batch: 256 KiB of rows, still in L2 when the book reads them
_FRAMED_LENGTHS = MESSAGE_LENGTHS + 2  # bytes of a good record of each type, length prefix included
_R = ord("R")


class FlatItchReader(FeedReader):
    """Streams a flat ITCH 5.0 file in bounded memory; ``instruments`` fill in from R messages.

    ``directory`` is the stock directory (see :func:`feeds.itch.new_stock_directory`) as the file
    has announced it so far.
    """

    def __init__(
        self,
        path: str,
        *,
        skip_bad: bool = False,
        stats: FeedStats | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        super().__init__(str(path), skip_bad=skip_bad, stats=stats)
        if chunk_bytes <= 0 or batch_rows <= 0:
            raise ValueError("chunk_bytes and batch_rows must be positive")
        self.chunk_bytes = chunk_bytes
        self.stocks = StockDirectory()
        self.instruments = self.stocks.instruments
        self._buf = np.empty(chunk_bytes + MAX_RECORD_BYTES, np.uint8)
        self._out = np.empty(batch_rows, E.EVENT_DTYPE)

    @property
    def directory(self) -> np.ndarray:
        """The stock directory table as the session has announced it so far."""
        return self.stocks.table

    def continue_from(self, previous: FeedReader) -> None:
        """Go on with the stock directory of the previous ITCH file of the same session."""
        stocks = getattr(previous, "stocks", None)
        if isinstance(stocks, StockDirectory):
            self.stocks = stocks
            self.instruments = stocks.instruments

    def batches(self) -> Iterator[np.ndarray]:
        """Yield event arrays (views of one reused buffer) until the file ends."""
        buf = self._buf
        carry = 0  # bytes of an incomplete record at buf[:carry]
        base = 0  # stream offset of buf[0]
        seq = 0  # record index of the next record
        chunks = read_chunks(self.path, self.chunk_bytes)
        while True:
            try:
                offset, data, raw_position = next(chunks)
            except StopIteration:
                break
            except FeedError as exc:
                if not self.skip_bad:
                    raise
                self.stats.record_skip(exc, nbytes=carry)
                return
            end = carry + len(data)  # fits: read_chunks yields at most chunk_bytes
            buf[carry:end] = np.frombuffer(data, np.uint8)
            base = offset - carry
            pos = 0
            while True:
                pos, status, seq = yield from self._decode(buf, base, pos, end, seq)
                if status != STATUS_OUT_FULL:
                    break
            carry = end - pos
            buf[:carry] = buf[pos:end]
            base += pos
            self.bytes_done = raw_position
        if carry:
            self._truncated(buf, base, carry, seq)
        self.bytes_done = self.total_bytes

    def _decode(
        self, buf: np.ndarray, base: int, pos: int, end: int, seq: int
    ) -> Generator[np.ndarray, None, tuple[int, int, int]]:
        """Decode buf[pos:end] until it needs more input or ``out`` is full; skip or raise on bad records.

        Returns ``(pos, status, seq)`` with status STATUS_NEED_MORE/STATUS_DONE or STATUS_OUT_FULL.
        """
        counts = self.stats.type_counts
        while True:
            # Skip reasons are kept one by one until the stats hold enough; then skip in bulk.
            bulk = self.skip_bad and len(self.stats.errors) >= MAX_KEPT_ERRORS
            before = counts.copy()
            start = pos
            table = self.stocks.table
            pos, n, status, bad = decode_flat_nb(buf, pos, end, self._out, counts, table, seq, bulk)
            decoded = counts - before
            seq += int(decoded.sum()) + bad
            if bad:
                good_bytes = int(decoded @ _FRAMED_LENGTHS)
                error = FeedError(f"{bad} bad records skipped", path=self.path, offset=base + start)
                self.stats.record_skip(error, records=bad, nbytes=pos - start - good_bytes)
            if decoded[_R]:
                self.stocks.announce()
            if n:
                yield self._out[:n]
            if status in (STATUS_DONE, STATUS_NEED_MORE, STATUS_OUT_FULL):
                return pos, status, seq
            error = self._bad_record(buf, base, pos, seq, status)
            if not self.skip_bad:
                raise error
            resumed = resync_flat_nb(buf, pos, end)
            if resumed < 0:  # where good records go on is not in the buffer yet: again with more bytes
                return pos, STATUS_NEED_MORE, seq
            self.stats.record_skip(error, nbytes=resumed - pos)
            pos = resumed
            seq += 1

    def _bad_record(self, buf: np.ndarray, base: int, pos: int, seq: int, status: int) -> FeedError:
        """The FeedError of the complete bad record at buf[pos]."""
        length = int(buf[pos]) << 8 | int(buf[pos + 1])
        if status == ERR_ZERO_LENGTH:
            what = "zero-length record"
        else:
            t = int(buf[pos + 2])
            if status == ERR_UNKNOWN_TYPE:
                what = f"unknown message type {chr(t)!r} (0x{t:02x})"
            else:  # ERR_BAD_LENGTH: records reach the decoder whole, so nothing else is left
                what = f"length {length} for type {chr(t)!r} (expects {MESSAGE_LENGTHS[t]})"
        return FeedError(what, path=self.path, offset=base + pos, seq=seq)

    def _truncated(self, buf: np.ndarray, base: int, carry: int, seq: int) -> None:
        """Report the incomplete record left at the end of the file."""
        if carry == 1:
            what = "truncated record: 1 of 2 length bytes at end of file"
        else:
            length = int(buf[0]) << 8 | int(buf[1])
            what = f"truncated record: {carry - 2} of {length} bytes at end of file"
        error = FeedError(what, path=self.path, offset=base, seq=seq)
        if not self.skip_bad:
            raise error
        self.stats.record_skip(error, nbytes=carry)
