"""What every file feed reader has in common: statistics, chunked input, and the reader interface.

A reader turns one file into batches of ``engine.core.events.EVENT_DTYPE`` rows with bounded memory, and
keeps :class:`FeedStats` as it goes. ``feeds.open_feed`` picks the reader from the file's bytes.
"""

from __future__ import annotations

import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from engine.core.instruments import Instrument
from feeds.errors import FeedError

CHUNK_BYTES = 8 << 20  # read size: large enough to amortise a jitted call, small enough for any RAM
GZIP_MAGIC = b"\x1f\x8b"
GZIP_WBITS = 31  # zlib window bits that expect a gzip header and trailer
GZIP_STEP = 64 << 10  # compressed bytes inflated per step: what a corruption can cost at most
MAX_KEPT_ERRORS = 20  # with skip_bad, how many skip messages are kept for the report


@dataclass
class FeedStats:
    """Counters of one or more feed files, merged as files are read in order."""

    type_counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    gaps: int = 0
    missing_messages: int = 0
    first_missing_seq: int | None = None
    duplicate_packets: int = 0
    packets: int = 0
    skipped_records: int = 0
    skipped_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        """Messages decoded, of every type."""
        return int(self.type_counts.sum())

    def counts(self) -> dict[str, int]:
        """Message type (ITCH letter, DBN action) -> count, for the types seen."""
        return {chr(t): int(c) for t, c in enumerate(self.type_counts) if c}

    def record_gap(self, first_missing: int, missing: int) -> None:
        """Count a sequence gap of ``missing`` messages starting at ``first_missing``."""
        self.gaps += 1
        self.missing_messages += missing
        if self.first_missing_seq is None:
            self.first_missing_seq = first_missing

    def record_skip(self, error: FeedError, records: int = 1, nbytes: int = 0) -> None:
        """Count input skipped under ``skip_bad`` and keep the first few reasons.

        Every skip names its reason (what, file, offset), so a report of skips always has a first one.
        """
        if not error.what:
            raise ValueError("a skip must say what was skipped")
        self.skipped_records += records
        self.skipped_bytes += nbytes
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(str(error))

    def skip_report(self) -> list[str]:
        """``skipped N bad records (B bytes); first: <reason>``, then the other reasons kept; [] when none."""
        if not self.errors:
            return []
        first, *rest = self.errors
        head = f"skipped {self.skipped_records} bad records ({self.skipped_bytes} bytes); first: {first}"
        return [head, *(f"  {reason}" for reason in rest)]


class FeedReader(ABC):
    """One feed file, read front to back in event batches.

    ``batches()`` yields event arrays that are only valid until the next iteration (buffers are
    reused); ``instruments`` fills in as the file announces them; ``bytes_done`` / ``total_bytes``
    drive progress bars. Bad input raises :class:`FeedError`, or is counted in ``stats`` and skipped
    when ``skip_bad`` is set.
    """

    default_price_scale = 10_000  # for instruments the file never describes (ITCH: 1e-4 dollars)

    def __init__(self, path: str, *, skip_bad: bool = False, stats: FeedStats | None = None) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.stats = stats if stats is not None else FeedStats()
        self.instruments: dict[int, Instrument] = {}
        self.total_bytes = os.path.getsize(path)
        self.bytes_done = 0

    def continue_from(self, previous: FeedReader) -> None:  # noqa: B027 - a hook, empty by default
        """Carry session state over from the file read before this one (a session split in files).

        Formats with session state (the ITCH stock directory, MoldUDP64 sequence numbers) override it.
        """

    @abstractmethod
    def batches(self) -> Iterator[np.ndarray]:
        """Yield event arrays until the file ends."""


def read_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes, int]]:
    """Yield ``(offset, data, raw_position)`` chunks of at most ``chunk_bytes`` of a plain or gzip file.

    ``offset`` is the position of ``data`` in the (decompressed) stream, ``raw_position`` how far
    into the file on disk the reader is (for progress). A corrupt or truncated gzip stream first
    yields everything that decompressed cleanly, then raises a :class:`FeedError` naming the
    decompressed offset where it broke.
    """
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if is_gzip:
            yield from _gunzip_chunks(path, raw, chunk_bytes)
            return
        offset = 0
        while data := raw.read(chunk_bytes):
            yield offset, data, raw.tell()
            offset += len(data)


def _gunzip_chunks(path: str, raw: BinaryIO, chunk_bytes: int) -> Iterator[tuple[int, bytes, int]]:
    """Inflate gzip member after member in small steps, so that a corruption loses no good data."""
    inflate = zlib.decompressobj(GZIP_WBITS)
    fed = False  # the current member has been given input
    pending = b""  # compressed input not yet inflated
    out = bytearray()
    offset = 0
    while True:
        if not pending:
            pending = raw.read(GZIP_STEP)
            if not pending:
                break
        try:
            out += inflate.decompress(pending, chunk_bytes - len(out))
        except zlib.error as exc:
            if out:
                yield offset, bytes(out), raw.tell()
                offset += len(out)
            raise FeedError(f"corrupt gzip stream ({exc})", path=path, offset=offset) from None
        fed = True
        if inflate.eof:  # one member ends; another may follow
            pending = inflate.unused_data
            inflate = zlib.decompressobj(GZIP_WBITS)
            fed = False
        else:
            pending = inflate.unconsumed_tail
        if len(out) >= chunk_bytes:
            yield offset, bytes(out), raw.tell()
            offset += len(out)
            out = bytearray()
    out += inflate.flush()
    for start in range(0, len(out), chunk_bytes):
        yield offset + start, bytes(out[start : start + chunk_bytes]), raw.tell()
    offset += len(out)
    if fed and not inflate.eof:
        raise FeedError("corrupt gzip stream (truncated: the file ends inside a member)", path=path, offset=offset)
