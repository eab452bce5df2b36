"""hftbacktest event files (``.npz`` with a ``data`` array): L2 depth, trades, clears and snapshots.

hftbacktest (github.com/nkaz001/hftbacktest) stores one 64-byte record per event: ``ev`` (u8 flags
and kind), ``exch_ts``, ``local_ts`` (i8 ns), ``px``, ``qty`` (f8), ``order_id`` (u8), ``ival``
(i8), ``fval`` (f8). The low byte of ``ev`` is the kind (1 depth, 2 trade, 3 depth clear, 4 depth
snapshot); bit 31 marks an event of the exchange timeline, bit 30 one of the local timeline, bit
29 the buy side (a bid level, a buying aggressor), bit 28 the sell side.

Rows become ``EVENT_DTYPE``: prices in ticks (``price_scale = 1 / tick_size``), sizes in lots,
depth and snapshot rows as L2 level sets, a clear as a one-sided clear through its price, and an
event of one timeline only carries ``FLAG_EXCH_ONLY`` or ``FLAG_LOCAL_ONLY``. The file holds one
instrument; it gets id 1 and the file's name as its symbol.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator

import numpy as np

from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.errors import FeedError
from feeds.source import FeedReader, FeedStats

HBT_DTYPE = np.dtype(
    [
        ("ev", "<u8"),
        ("exch_ts", "<i8"),
        ("local_ts", "<i8"),
        ("px", "<f8"),
        ("qty", "<f8"),
        ("order_id", "<u8"),
        ("ival", "<i8"),
        ("fval", "<f8"),
    ]
)
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
HBT_DEPTH, HBT_TRADE, HBT_CLEAR, HBT_SNAPSHOT = 1, 2, 3, 4
INSTRUMENT_ID = 1
BATCH_ROWS = 1 << 16
MAX_UNITS = float(1 << 53)  # prices in ticks and quantities in lots must stay below this (exact in float64)


class HftbacktestReader(FeedReader):
    """Reads an hftbacktest ``.npz`` event file; ``tick_size`` and ``lot_size`` are required."""

    def __init__(
        self,
        path: str,
        *,
        tick_size: float | None = None,
        lot_size: float | None = None,
        skip_bad: bool = False,
        stats: FeedStats | None = None,
    ) -> None:
        super().__init__(path, skip_bad=skip_bad, stats=stats)
        if not tick_size or tick_size <= 0 or not lot_size or lot_size <= 0:
            raise FeedError("an hftbacktest file needs --tick-size and --lot-size (positive)", path=path)
        self.tick_size = float(tick_size)
        self.lot_size = float(lot_size)
        symbol = os.path.basename(path).removesuffix(".npz")
        self.instruments = {
            INSTRUMENT_ID: Instrument(INSTRUMENT_ID, symbol, 1.0 / self.tick_size, self.tick_size, self.lot_size)
        }
        self.default_price_scale = 1.0 / self.tick_size

    def _load(self) -> np.ndarray:
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                if "data" not in npz.files:
                    raise FeedError(f"no 'data' array (arrays: {', '.join(npz.files) or 'none'})", path=self.path)
                data = npz["data"]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise FeedError(f"not a readable .npz file ({exc})", path=self.path, offset=0) from None
        if data.dtype != HBT_DTYPE:
            raise FeedError(f"'data' has dtype {data.dtype}, expected hftbacktest's {HBT_DTYPE}", path=self.path)
        return data

    def batches(self) -> Iterator[np.ndarray]:
        data = self._load()
        for start in range(0, len(data), BATCH_ROWS):
            chunk = data[start : start + BATCH_ROWS]
            events = self._convert(chunk, start)
            self.bytes_done = min(self.total_bytes, (start + len(chunk)) * self.total_bytes // max(1, len(data)))
            yield events

    def _convert(self, raw: np.ndarray, start: int) -> np.ndarray:
        ev = raw["ev"]
        kind = (ev & 0xFF).astype(np.int64)
        known = (kind >= HBT_DEPTH) & (kind <= HBT_SNAPSHOT) & ((ev & (EXCH_EVENT | LOCAL_EVENT)) != 0)
        with np.errstate(invalid="ignore", over="ignore"):
            ticks, lots = raw["px"] / self.tick_size, raw["qty"] / self.lot_size
            sane = (ticks >= 0) & (ticks < MAX_UNITS) & (lots >= 0) & (lots < MAX_UNITS)  # NaN fails every test
        good = known & sane
        if not good.all():
            bad = int(np.flatnonzero(~good)[0])
            what = (
                f"unknown event kind {int(kind[bad])} or no timeline flag (ev=0x{int(ev[bad]):x})"
                if not known[bad]
                else f"price {float(raw['px'][bad])!r} or quantity {float(raw['qty'][bad])!r} is not a finite, "
                "non-negative number below 2**53 ticks and lots"
            )
            err = FeedError(what, path=self.path, offset=(start + bad) * HBT_DTYPE.itemsize, seq=start + bad)
            if not self.skip_bad:
                raise err
            self.stats.record_skip(err, records=int((~good).sum()), nbytes=int((~good).sum()) * HBT_DTYPE.itemsize)
        known = good
        ticks, lots = np.where(good, ticks, 0), np.where(good, lots, 0)
        out = np.zeros(len(raw), E.EVENT_DTYPE)
        out["ts_exch_ns"] = raw["exch_ts"]
        out["ts_local_ns"] = raw["local_ts"]
        out["seq"] = np.arange(start, start + len(raw), dtype=np.uint64)
        out["price"] = np.rint(ticks).astype(np.int64)
        out["qty"] = np.rint(lots).astype(np.int64)
        out["instrument"] = INSTRUMENT_ID
        out["side"] = np.where(ev & BUY_EVENT, E.SIDE_BID, np.where(ev & SELL_EVENT, E.SIDE_ASK, E.SIDE_NONE))
        table = np.array([E.KIND_NONE, E.KIND_LEVEL, E.KIND_TRADE, E.KIND_CLEAR_SIDE, E.KIND_LEVEL], np.uint8)
        out["kind"] = np.where(known, table[np.where(known, kind, 0)], E.KIND_NONE)
        out["kind"][(kind == HBT_CLEAR) & (out["side"] == E.SIDE_NONE)] = E.KIND_CLEAR
        exch = (ev & EXCH_EVENT) != 0
        local = (ev & LOCAL_EVENT) != 0
        flags = np.where(exch & ~local, E.FLAG_EXCH_ONLY, 0) | np.where(local & ~exch, E.FLAG_LOCAL_ONLY, 0)
        out["flags"] = flags | np.where(kind == HBT_SNAPSHOT, E.FLAG_SNAPSHOT, 0)
        out["src_type"] = kind.astype(np.uint8) + ord("0")  # counts by kind: "1" depth ... "4" snapshot
        self.stats.type_counts += np.bincount(out["src_type"][known], minlength=256)
        return out[known]
