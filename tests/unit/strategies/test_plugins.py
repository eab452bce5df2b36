"""Strategies of one's own, found without editing ``strategies``: ``module:ATTRIBUTE`` and entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from strategies import ENTRY_POINT_GROUP, get_strategy
from strategies.api import V_ASK, V_BID, V_TICK, Strategy, new_quotes, new_view

# a strategy module as a user writes it: its own compiled quote function, a Strategy named for it
PLUGIN = '''
from numba import njit
from strategies.api import QUOTE_SIG, V_ASK, V_BID, V_TICK, Param, Strategy

@njit(QUOTE_SIG)
def outside_quote(now_ns, view, params, state, quotes):
    """One tick outside the touch on both sides."""
    if not (view[V_BID] < view[V_ASK]):
        return 0
    quotes[0, 0] = view[V_BID] - view[V_TICK]
    quotes[0, 1] = params[1]
    quotes[0, 2] = view[V_ASK] + view[V_TICK]
    quotes[0, 3] = params[1]
    return 1

OUTSIDE = Strategy(
    name="outside",
    quote=outside_quote,
    params=(Param("interval_ns", 0, "re-evaluation period, ns"), Param("order_qty", 1.0, "size of each quote")),
    doc="one tick outside the touch",
)
NOT_A_STRATEGY = 42
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path holding ``my_mm.py`` and an installed distribution registering it."""
    (tmp_path / "my_mm.py").write_text(PLUGIN)
    dist = tmp_path / "my_mm-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-mm\nVersion: 1.0\n")
    entries = "outside = my_mm:OUTSIDE\nbroken = no_such_module:X\n"
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entries}")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_mm", None)


def test_module_attribute_names_a_strategy_of_ones_own(plugin_dir: Path) -> None:
    strategy = get_strategy("my_mm:OUTSIDE")
    assert isinstance(strategy, Strategy) and strategy.name == "outside"
    view = new_view()
    view[V_BID], view[V_ASK], view[V_TICK] = 100.0, 100.02, 0.01
    quotes = new_quotes()
    n = strategy.quote(0, view, strategy.param_array({"order_qty": 3}), np.zeros(4), quotes)
    assert n == 1 and quotes[0].tolist() == pytest.approx([99.99, 3.0, 100.03, 3.0])


def test_an_installed_entry_point_names_a_strategy(plugin_dir: Path) -> None:
    assert get_strategy("outside").name == "outside"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_mm:NOT_A_STRATEGY", "is a int, not a strategies.api.Strategy"),
        ("my_mm:MISSING", "has no 'MISSING'"),
        ("no_such_module:X", "cannot import 'no_such_module'"),
        ("broken", "failed to load"),
        ("nothing", "known: avellaneda-stoikov, glft, grid, touch, broken, outside; or module:ATTRIBUTE"),
    ],
)
def test_a_bad_name_says_what_is_wrong(plugin_dir: Path, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_strategy(name)
