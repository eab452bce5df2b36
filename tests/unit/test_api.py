"""The library face: ``import hftmm`` gives the documented calls, the same objects the commands use."""

from __future__ import annotations

from importlib.metadata import version

import hftmm
from engine.backtest.backtest import backtest
from engine.backtest.sweep import sweep
from engine.book.replay import replay


def test_every_exported_name_exists_and_is_the_engines_own() -> None:
    assert all(hasattr(hftmm, name) for name in hftmm.__all__)
    assert (hftmm.backtest, hftmm.sweep, hftmm.replay) == (backtest, sweep, replay)
    assert hftmm.__version__ == version("hftmm")


def test_every_call_shown_in_the_package_doc_is_exported() -> None:
    shown = {word.split("(")[0].removeprefix("hftmm.") for word in hftmm.__doc__.split() if word.startswith("hftmm.")}
    shown = {name.rstrip(".,:") for name in shown} - {"", "compile"}
    assert shown and shown <= set(hftmm.__all__), shown - set(hftmm.__all__)
