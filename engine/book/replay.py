"""Replay feed files, in order, into one set of books: the engine behind ``hftmm replay`` and ``book``.

Files of one session split across several captures are applied to the same books and the same
counters, so the second file's executions find the first file's orders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.book.book import Book
from engine.core.jit import CompileWatch, tell_compiling
from feeds.read import FeedPass, read_feeds


@dataclass
class ReplayResult:
    """Books and counters after a replay."""

    feed: FeedPass
    book: Book
    elapsed_s: float  # wall time from the first file opened to the last event applied, Numba compilation left out
    compile_s: float = 0.0  # Numba compilation during the replay (0 when the cache was warm)

    def summary(self) -> dict:
        """The ``hftmm replay --json`` object."""
        stats = self.feed.stats
        counters = self.book.counters
        messages = stats.messages
        return {
            "files": self.feed.paths,
            "messages": messages,
            "counts": stats.counts(),
            "instruments": len(self.feed.instruments),
            "events": self.feed.events,
            "unknown_order_refs": counters["unknown_order_refs"],
            "crossed_books": counters["crossed_books"],
            "resting_orders": self.book.total_orders,
            "gaps": stats.gaps,
            "missing_messages": stats.missing_messages,
            "first_missing_seq": stats.first_missing_seq,
            "packets": stats.packets,
            "duplicate_packets": stats.duplicate_packets,
            "skipped_records": stats.skipped_records,
            "skipped_bytes": stats.skipped_bytes,
            "first_event_ts_ns": self.feed.first_ts_ns,
            "last_event_ts_ns": self.feed.last_ts_ns,
            "elapsed_s": round(self.elapsed_s, 6),
            "compile_s": round(self.compile_s, 3),
            "msgs_per_s": round(messages / self.elapsed_s) if self.elapsed_s > 0 else 0,
        }


def replay(
    paths: list[str],
    *,
    symbols: set[str] | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    orders: int | None = None,
) -> ReplayResult:
    """Decode ``paths`` in order into one :class:`Book`; bad input raises ``FeedError``.

    ``orders``: size the book for that many live orders before the clock starts (``Book.sized``); by
    default it starts small and doubles its tables as the files fill it."""
    fp = FeedPass(list(paths))
    watch = CompileWatch(tell_compiling if progress else None)
    with watch.installed():
        book = Book() if orders is None else Book.sized(orders)
        start, compiled = time.perf_counter(), watch.seconds
        for events in read_feeds(paths, symbols=symbols, skip_bad=skip_bad, progress=progress, feed_pass=fp):
            book.apply(events)
    compile_s = watch.seconds - compiled
    return ReplayResult(fp, book, time.perf_counter() - start - compile_s, watch.seconds)
