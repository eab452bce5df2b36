"""Market-making strategies: Numba quoting functions behind one interface (``strategies.api``).

Add a strategy by writing a module with a :class:`~strategies.api.Strategy` and listing it here;
nothing in ``engine`` changes.
"""

from __future__ import annotations

from strategies.api import Strategy
from strategies.avellaneda_stoikov import AVELLANEDA_STOIKOV
from strategies.glft import GLFT
from strategies.grid import GRID
from strategies.touch import TOUCH

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (AVELLANEDA_STOIKOV, GLFT, GRID, TOUCH)}


def get_strategy(name: str) -> Strategy:
    """The registered strategy called ``name``; a ValueError names the ones that exist."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})") from None
