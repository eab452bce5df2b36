"""Instrument metadata: what a fixed-point price and an integer quantity mean for one instrument."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Instrument:
    """Static description of one instrument as a feed announces it.

    ``price_scale`` is the number of fixed-point price units per currency unit (ITCH: 10_000, so a
    price of 1_234_500 is 123.45); ``tick_size`` and ``lot_size`` are in currency and in quantity
    units of the feed (ITCH: shares).
    """

    instrument_id: int
    symbol: str
    price_scale: int
    tick_size: float = 0.0
    lot_size: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.price_scale < math.inf:
            raise ValueError(f"instrument {self.symbol!r}: price_scale {self.price_scale} must be positive and finite")
        if not (0 <= self.tick_size < math.inf and 0 < self.lot_size < math.inf):
            raise ValueError(f"instrument {self.symbol!r}: tick_size must be >= 0 and lot_size > 0, both finite")

    def to_price(self, fixed: int) -> float:
        """The currency price of a fixed-point price."""
        return fixed / self.price_scale

    def to_fixed(self, price: float) -> int:
        """The fixed-point price of a currency price, rounded to the nearest unit."""
        return round(price * self.price_scale)


def instruments_to_json(instruments: dict[int, Instrument]) -> str:
    """Serialise an instrument table (for Parquet file metadata)."""
    return json.dumps([asdict(i) for i in sorted(instruments.values(), key=lambda i: i.instrument_id)])


def instruments_from_json(text: str) -> dict[int, Instrument]:
    """Inverse of :func:`instruments_to_json`."""
    return {d["instrument_id"]: Instrument(**d) for d in json.loads(text)}
