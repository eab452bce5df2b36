"""The one interface between a strategy and whatever runs it (the backtester or a live trading node).

A strategy is a Numba function with the signature :data:`QUOTE_SIG`::

    quote(now_ns, view, params, state, quotes) -> levels

It reads a flat float64 ``view`` of its instrument (touch, depth, its position and open quantity,
the trades and its own fills since its previous call), its ``params`` (float64, in the order its
:class:`Strategy` declares them) and its private ``state`` (float64, zero at the start, kept
between calls); it writes the quotes it wants into ``quotes`` (one row a level: bid price, bid
size, ask price, ask size; size 0 means no quote on that side) and returns the number of rows.
Prices are in the instrument's currency, sizes in its units (shares, BTC, ...), as floats.

The engine turns the wanted quotes into orders: it rounds bid prices down and ask prices up to the
tick and sizes to the lot, keeps orders already resting at a wanted price, cancels the others and
sends the missing ones, all through its risk checks. The strategy never sees sockets, files or the
engine's internals, so the same function runs live and in backtests. ``params[0]`` is always
``interval_ns``: how often the engine calls the strategy (0: after every market-data batch).

The kernels that call strategies take them as first-class functions of this one signature, so they
compile once for every strategy and stay in Numba's on-disk cache.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numba import types

# --- the view: what the engine fills in before each call -----------------------------------------
V_BID = 0  # best bid price (NaN when the side is empty)
V_BID_QTY = 1
V_ASK = 2  # best ask price (NaN when the side is empty)
V_ASK_QTY = 3
V_TICK = 4  # price increment
V_LOT = 5  # size increment
V_POSITION = 6  # signed position, units
V_OPEN_BID = 7  # units of our buy orders working or on their way
V_OPEN_ASK = 8
V_ELAPSED_NS = 9  # since the previous call (0 on the first)
V_TRADES = 10  # market trades since the previous call
V_BUY_VOLUME = 11  # units bought by aggressive buyers since the previous call
V_SELL_VOLUME = 12
V_BUY_HIGH = 13  # highest price an aggressive buyer paid since the previous call (NaN: none)
V_SELL_LOW = 14  # lowest price an aggressive seller got (NaN: none)
V_LAST_TRADE = 15  # price of the latest trade ever seen (NaN: none yet)
V_FILLS = 16  # our fills since the previous call
V_FILLED_BUY = 17  # units we bought since the previous call
V_FILLED_SELL = 18
V_EQUITY = 19  # cash + position at the mid - fees, currency
DEPTH = 5  # levels per side in the view
V_DEPTH = 20  # bid price, bid size for DEPTH levels (best first), then the same for asks; NaN past the end
VIEW_LEN = V_DEPTH + 4 * DEPTH

# --- the quotes: what the strategy writes --------------------------------------------------------
Q_BID, Q_BID_QTY, Q_ASK, Q_ASK_QTY = range(4)
MAX_LEVELS = 8

P_INTERVAL_NS = 0  # every strategy's first parameter

QUOTE_SIG = types.int64(types.int64, types.float64[::1], types.float64[::1], types.float64[::1], types.float64[:, ::1])
QUOTE_FN = types.FunctionType(QUOTE_SIG)


@dataclass(frozen=True)
class Param:
    """One tunable number of a strategy, with its default, what it means and the values it may take
    (finite, and at least ``minimum``: above it when ``exclusive``)."""

    name: str
    default: float
    doc: str
    minimum: float = -math.inf
    exclusive: bool = False

    def check(self, value: float) -> None:
        """Raise ValueError when ``value`` is not finite or below the parameter's minimum."""
        low_ok = value > self.minimum if self.exclusive else value >= self.minimum
        if not (math.isfinite(value) and low_ok):
            bound = f"{'>' if self.exclusive else '>='} {self.minimum:g}" if self.minimum > -math.inf else "finite"
            raise ValueError(f"{self.name} = {value:g} must be {bound}")


@dataclass(frozen=True)
class Strategy:
    """A named quoting function with its parameters; ``params[0]`` must be ``interval_ns``."""

    name: str
    quote: object  # a Numba dispatcher compiled for QUOTE_SIG
    params: tuple[Param, ...]
    doc: str
    state_size: int = 64
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(p.name for p in self.params))
        if not self.names or self.names[0] != "interval_ns":
            raise ValueError(f"strategy {self.name}: the first parameter must be interval_ns")

    def param_array(self, values: Mapping[str, float] | None = None) -> np.ndarray:
        """The float64 parameter array: defaults overridden by ``values`` (unknown names are an error)."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise ValueError(
                f"strategy {self.name} has no parameter {', '.join(unknown)} (it has: {', '.join(self.names)})"
            )
        array = np.array([float(values.get(p.name, p.default)) for p in self.params], np.float64)
        for param, value in zip(self.params, array, strict=True):
            try:
                param.check(float(value))
            except ValueError as exc:
                raise ValueError(f"strategy {self.name}: {exc}") from None
        return array

    def describe(self) -> str:
        """A few lines for --help and error messages: each parameter, its default and meaning."""
        rows = [f"{self.name}: {self.doc}"]
        rows += [f"  {p.name} = {p.default:g}  {p.doc}" for p in self.params]
        return "\n".join(rows)


def new_view() -> np.ndarray:
    """A view with every price NaN (nothing known yet)."""
    view = np.zeros(VIEW_LEN, np.float64)
    for i in (V_BID, V_ASK, V_BUY_HIGH, V_SELL_LOW, V_LAST_TRADE):
        view[i] = np.nan
    view[V_DEPTH:] = np.nan
    return view


def new_quotes() -> np.ndarray:
    """An empty quotes table for a strategy to fill."""
    return np.zeros((MAX_LEVELS, 4), np.float64)
