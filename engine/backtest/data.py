"""The backtester's input: one instrument's events from feed files, with the tick and lot to trade it at.

Formats without tick and lot (hftbacktest npz) take them from the command line or an instrument file
(``--instruments FILE.toml``: ``[[instruments]]`` tables of symbol, tick_size, lot_size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.backtest.models import BacktestError
from engine.core import events as E
from engine.core.config import ConfigError, FrozenConfig, load_toml
from engine.core.instruments import Instrument
from feeds.read import FeedPass, read_feeds

DEFAULT_ITCH_TICK = 0.01  # US equities at or above $1 (Reg NMS)


class InstrumentSpec(FrozenConfig):
    """Tick and lot of one symbol, for data that does not carry them (or to override what it says)."""

    symbol: str
    tick_size: float = 0.0  # price increment in currency (0: keep the data's)
    lot_size: float = 0.0  # size increment in the instrument's units (0: keep the data's)


class InstrumentFile(FrozenConfig):
    """``--instruments FILE.toml``: ``[[instruments]]`` tables of symbol, tick_size, lot_size."""

    instruments: tuple[InstrumentSpec, ...] = ()


def read_instruments(path: str) -> dict[str, InstrumentSpec]:
    """The instrument file as symbol -> spec; a ConfigError names the file and the problem."""
    specs = load_toml(path, InstrumentFile).instruments
    for spec in specs:
        if spec.tick_size < 0 or spec.lot_size < 0:
            raise ConfigError(f"{path}: {spec.symbol}: tick_size and lot_size must not be negative")
    return {spec.symbol: spec for spec in specs}


def _spec_for(specs: dict[str, InstrumentSpec], symbol: str | None, path: str) -> InstrumentSpec | None:
    """The spec of ``symbol``, else of the file's name (an npz is named after its symbol), else the only one."""
    stem = Path(path).name.removesuffix(".gz").removesuffix(".npz")
    for key in (symbol, stem):
        if key in specs:
            return specs[key]
    return next(iter(specs.values())) if len(specs) == 1 and symbol is None else None


def load_events(
    paths: list[str],
    *,
    symbol: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
    instruments: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, Instrument, FeedPass]:
    """The events of one instrument from ``paths`` (read in order), its description, and the pass stats.

    Tick and lot: the command line's, else the instrument file's, else what the data says.
    """
    specs = read_instruments(instruments) if instruments else {}
    guess = _spec_for(specs, symbol, paths[0]) if specs and paths else None
    if guess is not None:  # formats without tick and lot (hftbacktest npz) need them to read the file
        tick_size = tick_size or guess.tick_size or None
        lot_size = lot_size or guess.lot_size or None
    fp = FeedPass(list(paths))
    symbols = {symbol} if symbol else None
    batches = [
        b.copy()
        for b in read_feeds(
            paths, symbols=symbols, progress=progress, feed_pass=fp, tick_size=tick_size, lot_size=lot_size
        )
    ]
    events = np.concatenate(batches) if batches else np.zeros(0, E.EVENT_DTYPE)
    if fp.missing_symbols:
        raise BacktestError(f"symbol {symbol} is not in {', '.join(paths)}")
    market = (events["kind"] != E.KIND_NONE) & (events["instrument"] != E.ALL_INSTRUMENTS)  # not system events
    ids, counts = np.unique(events["instrument"][market], return_counts=True)
    if symbol is None and len(ids) > 1:
        top = ", ".join(fp.instrument(int(i)).symbol for i in ids[np.argsort(-counts)][:8])
        raise BacktestError(f"the data holds {len(ids)} instruments: choose one with --symbol (busiest: {top})")
    if len(ids) == 0:
        raise BacktestError(f"no market events in {', '.join(paths)}")
    inst = fp.instrument(int(ids[0]))
    spec = specs.get(inst.symbol)
    tick = tick_size or (spec and spec.tick_size) or inst.tick_size or DEFAULT_ITCH_TICK
    lot = lot_size or (spec and spec.lot_size) or inst.lot_size or 1.0
    inst = Instrument(inst.instrument_id, inst.symbol, inst.price_scale, tick, lot)
    return events, inst, fp
