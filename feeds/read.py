"""Reading feed files in order as one session: event batches, their counters and instruments.

Files of one session split across several captures share their counters and instruments, so the second
file's executions find the first file's orders. Every input command (replay, book, convert, backtest,
the sim-exchange's replay flow) reads through :func:`read_feeds`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from engine.core.instruments import Instrument
from feeds import FeedError, FeedReader, FeedStats, feed_files, open_feed

PROGRESS_MIN_BYTES = 4 << 20  # files smaller than this replay too fast to need a progress bar


@dataclass
class FeedPass:
    """What reading some feed files produced besides the events: counters and instruments."""

    paths: list[str]
    stats: FeedStats = field(default_factory=FeedStats)
    instruments: dict[int, Instrument] = field(default_factory=dict)
    events: int = 0
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    missing_symbols: list[str] = field(default_factory=list)
    default_price_scale: int = FeedReader.default_price_scale

    def instrument(self, instrument_id: int) -> Instrument:
        """Metadata of an instrument, or a placeholder named by its id when no file described it."""
        known = self.instruments.get(instrument_id)
        if known is None:
            return Instrument(instrument_id, str(instrument_id), self.default_price_scale)
        return known


def read_feeds(
    paths: list[str],
    *,
    symbols: set[str] | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    feed_pass: FeedPass | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield the event batches of ``paths`` in order, keeping only ``symbols`` when given.

    Counters, instruments and timestamps accumulate in ``feed_pass`` (pass one in to read them
    afterwards). A progress bar on stderr follows the bytes read when the input is large.
    ``tick_size`` and ``lot_size`` reach the formats that need them (hftbacktest npz).
    """
    paths = feed_files(paths)
    fp = feed_pass if feed_pass is not None else FeedPass(paths)
    fp.paths = paths
    readers: list[FeedReader] = []
    for path in paths:
        try:
            readers.append(open_feed(path, skip_bad=skip_bad, stats=fp.stats, tick_size=tick_size, lot_size=lot_size))
        except FeedError as exc:  # not a feed file at all: with skip_bad, the whole file is skipped
            if not skip_bad or not os.path.isfile(path):  # a missing file is never skipped quietly
                raise
            fp.stats.record_skip(exc, records=1, nbytes=os.path.getsize(path))
    total = sum(r.total_bytes for r in readers)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        disable=not progress or total < PROGRESS_MIN_BYTES,
        leave=False,
    )
    with bar:
        wanted, wanted_from = np.zeros(0, np.uint32), -1
        for previous, reader in zip([None, *readers], readers, strict=False):
            if previous is not None:
                reader.continue_from(previous)
            done = 0
            for batch in reader.batches():
                bar.update(reader.bytes_done - done)
                done = reader.bytes_done
                events = batch
                if symbols is not None:
                    known = len(fp.instruments) + len(reader.instruments)
                    if known != wanted_from:  # instruments were announced: recompute the ids to keep
                        wanted, wanted_from = _wanted(fp, reader, symbols), known
                    events = batch[np.isin(batch["instrument"], wanted)]
                if len(events):
                    fp.events += len(events)
                    if fp.first_ts_ns is None:
                        fp.first_ts_ns = int(events["ts_exch_ns"][0])
                    fp.last_ts_ns = int(events["ts_exch_ns"][-1])
                    yield events
            bar.update(reader.total_bytes - done)
            fp.instruments.update(reader.instruments)
            fp.default_price_scale = reader.default_price_scale
    if symbols is not None:
        seen = {i.symbol for i in fp.instruments.values()}
        fp.missing_symbols = sorted(symbols - seen)


def _wanted(fp: FeedPass, reader: FeedReader, symbols: set[str]) -> np.ndarray:
    """Instrument ids of ``symbols`` among those announced so far (earlier files and this one)."""
    instruments = {**fp.instruments, **reader.instruments}
    return np.asarray([i for i, inst in instruments.items() if inst.symbol in symbols], dtype=np.uint32)
