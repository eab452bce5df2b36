"""Strategies of one's own, found without editing ``strategies``: ``module:ATTRIBUTE`` and entry points.

The plugin is the template in ``examples/strategy-template`` (its package, and the entry point its
pyproject.toml declares), copied into a temporary folder on ``sys.path`` as an installed package would be.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from strategies import ENTRY_POINT_GROUP, get_strategy
from strategies.api import V_ASK, V_BID, V_TICK, Strategy, new_quotes, new_view

TEMPLATE = Path(__file__).resolve().parents[3] / "examples" / "strategy-template"


def install_template(folder: Path, broken_entry: bool = False) -> None:
    """The template's package in ``folder`` and a dist-info with the entry points of its pyproject.toml."""
    shutil.copytree(TEMPLATE / "my_mm", folder / "my_mm")
    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    entries = dict(project["entry-points"][ENTRY_POINT_GROUP])
    if broken_entry:
        entries["broken"] = "no_such_module:X"
    dist = folder / f"my_mm-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    install_template(tmp_path, broken_entry=True)
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "my_mm" or m.startswith("my_mm.")]:
            del sys.modules[name]


def test_module_attribute_names_the_templates_strategy(plugin_dir: Path) -> None:
    strategy = get_strategy("my_mm.outside:OUTSIDE")
    assert isinstance(strategy, Strategy) and strategy.name == "outside"
    view = new_view()
    view[V_BID], view[V_ASK], view[V_TICK] = 100.0, 100.02, 0.01
    quotes = new_quotes()
    n = strategy.quote(0, view, strategy.param_array({"order_qty": 3}), np.zeros(4), quotes)
    assert n == 1 and quotes[0].tolist() == pytest.approx([99.99, 3.0, 100.03, 3.0])


def test_the_templates_entry_point_names_it(plugin_dir: Path) -> None:
    assert get_strategy("outside") is get_strategy("my_mm.outside:OUTSIDE")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_mm.outside:P_ORDER_QTY", "is a int, not a strategies.api.Strategy"),
        ("my_mm.outside:MISSING", "has no 'MISSING'"),
        ("no_such_module:X", "cannot import 'no_such_module'"),
        ("broken", "failed to load"),
        ("nothing", "known: avellaneda-stoikov, glft, grid, touch, broken, outside; or module:ATTRIBUTE"),
    ],
)
def test_a_bad_name_says_what_is_wrong(plugin_dir: Path, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_strategy(name)
