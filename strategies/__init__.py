"""Market-making strategies: Numba quoting functions behind one interface (``strategies.api``).

The built-in strategies are listed here. A strategy of your own needs no change to this package or
to ``engine``: write a module with a :class:`~strategies.api.Strategy` and name it

- as ``module:ATTRIBUTE`` wherever a strategy name goes (``--strategy my_pkg.mm:MY_MM``, a config's
  ``strategy = "my_pkg.mm:MY_MM"``): the module must be importable by every process that runs it;
- or by a short name, registered by an installed package as an entry point in the group
  ``hftmm.strategies`` (pyproject.toml: ``[project.entry-points."hftmm.strategies"] my_mm = "my_pkg.mm:MY_MM"``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from strategies.api import Strategy
from strategies.avellaneda_stoikov import AVELLANEDA_STOIKOV
from strategies.glft import GLFT
from strategies.grid import GRID
from strategies.touch import TOUCH

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (AVELLANEDA_STOIKOV, GLFT, GRID, TOUCH)}
ENTRY_POINT_GROUP = "hftmm.strategies"


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``: a built-in, an installed plugin's entry point, or ``module:ATTRIBUTE``;
    a ValueError says which exist or what is wrong."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    if ":" in name:
        return _checked(_import(name), name)
    plugins = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in plugins:
        try:
            found = plugins[name].load()
        except Exception as exc:  # a plugin's import error, whatever it is, is a bad strategy name here
            raise ValueError(f"strategy plugin {name!r} ({plugins[name].value}) failed to load: {exc}") from None
        return _checked(found, name)
    known = ", ".join(sorted(STRATEGIES) + sorted(plugins))
    raise ValueError(f"unknown strategy {name!r} (known: {known}; or module:ATTRIBUTE of your own)")


def _import(reference: str) -> object:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error while importing it is reported, not raised through
        raise ValueError(f"strategy {reference!r}: cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attribute):
        raise ValueError(f"strategy {reference!r}: module {module_name!r} has no {attribute!r}")
    return getattr(module, attribute)


def _checked(found: object, name: str) -> Strategy:
    if not isinstance(found, Strategy):
        raise ValueError(f"strategy {name!r} is a {type(found).__name__}, not a strategies.api.Strategy")
    return found
