"""Wire protocols in: ITCH 5.0 (flat files, MoldUDP64, pcap/pcapng), Databento DBN MBO, event Parquet,
hftbacktest ``.npz`` event files.

:func:`open_feed` looks at a file's first bytes, not its name, and returns the reader for it.
"""

from __future__ import annotations

import gzip
import os
import zlib

from feeds.errors import FeedError
from feeds.source import GZIP_MAGIC, FeedReader, FeedStats

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
DBN_MAGIC = b"DBN"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"  # numpy .npz
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
SNIFF_BYTES = 8

__all__ = ["FeedError", "FeedReader", "FeedStats", "feed_files", "open_feed", "sniff"]


def feed_files(paths: list[str]) -> list[str]:
    """``paths`` with each folder replaced by the files below it, sorted by path (a session split into files
    by time sorts in order, and Databento's definition file before its MBO files); hidden entries are left out."""
    files: list[str] = []
    for path in map(str, paths):
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = []
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [os.path.join(root, name) for name in names if not name.startswith(".")]
        if not found:
            raise FeedError("the folder holds no files", path=path)
        files += sorted(found)
    return files


def sniff(path: str) -> str:
    """The format of a feed file: "pcap", "dbn", "parquet", "npz" (hftbacktest) or "itch" (flat ITCH).

    Gzip files are looked into, so ``.pcap.gz`` and ``.itch.gz`` are recognised by their content.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        raise FeedError(f"cannot open: {exc.strerror}", path=path) from None
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise FeedError(f"corrupt gzip stream ({exc})", path=path, offset=0) from None
    if head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC:
        return "pcap"
    if path.removesuffix(".gz").endswith(CAPTURE_SUFFIXES):  # named a capture, but is not one
        raise FeedError(f"not a pcap or pcapng file (magic 0x{head[:4].hex()})", path=path, offset=0)
    if head.startswith(DBN_MAGIC) or head.startswith(ZSTD_MAGIC):
        return "dbn"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if head and not _starts_like_itch(head):
        raise FeedError(
            f"not an ITCH, pcap, DBN, Parquet or npz file (first bytes 0x{head.hex()})", path=path, offset=0
        )
    return "itch"


def _starts_like_itch(head: bytes) -> bool:
    """Whether ``head`` opens a flat ITCH file: a u16 length, then a message type of exactly that length."""
    from feeds.itch import MESSAGE_LENGTHS

    return len(head) >= 3 and int(MESSAGE_LENGTHS[head[2]]) == int.from_bytes(head[:2], "big") > 0


def open_feed(
    path: str,
    *,
    skip_bad: bool = False,
    stats: FeedStats | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
) -> FeedReader:
    """The reader for ``path``; pass one ``stats`` to several readers to add up a split session.

    ``tick_size`` and ``lot_size`` are needed by formats that do not carry them (hftbacktest npz).
    """
    kind = sniff(path)
    if kind == "npz":
        from feeds.hftbacktest import HftbacktestReader

        return HftbacktestReader(path, tick_size=tick_size, lot_size=lot_size, skip_bad=skip_bad, stats=stats)
    if kind == "pcap":
        from feeds.pcap import PcapReader as reader
    elif kind == "dbn":
        from feeds.dbn import DbnReader as reader
    elif kind == "parquet":
        from feeds.parquet import ParquetEventReader as reader
    else:
        from feeds.flatfile import FlatItchReader as reader
    return reader(path, skip_bad=skip_bad, stats=stats)
