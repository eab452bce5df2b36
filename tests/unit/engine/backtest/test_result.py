"""A backtest result in a notebook: a short repr, a summary table, pandas frames and a plot that leaves
matplotlib's global state alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.backtest.result import SUMMARY_ROWS
from engine.core import events as E
from tests.conftest import REPO
from tests.unit.engine.backtest.test_backtest import ASK, BID, book_rows, ev, run, write

TIMEOUT_S = 300


def day(tmp_path: Path) -> str:
    """A book, then trades through both sides of our quotes: one buy and one sell of ours."""
    rows = [
        *book_rows(),
        ev(2, E.KIND_TRADE, side=E.SIDE_ASK, price=BID, qty=400),
        ev(4, E.KIND_TRADE, side=E.SIDE_BID, price=ASK, qty=400),
        ev(9, E.KIND_TRADE),
    ]
    return write(tmp_path, rows)


@pytest.fixture
def result(tmp_path: Path):
    return run(day(tmp_path), maker_fee=0.001)


def test_repr_is_one_short_line(result) -> None:
    text = repr(result)
    assert text.startswith("BacktestResult(touch on TEST: ") and "2 fills" in text
    assert len(text) < 200 and "\n" not in text and "{" not in text


def test_summary_is_a_table_of_the_figures_with_their_units(result) -> None:
    table = result.summary()
    assert isinstance(table, pd.DataFrame) and table.columns.tolist() == ["touch on TEST"]
    assert table.index.tolist() == [name for name, _, _ in SUMMARY_ROWS]
    column = table["touch on TEST"]
    assert column["fills"] == "2"
    assert column["fees (currency)"] == f"{result.stats['fees']:,.2f}" and result.stats["fees"] > 0
    assert column["pnl net (currency)"] == f"{result.stats['pnl']:,.2f}"
    assert column["ratios per"] == "second"


def test_to_pandas_gives_the_equity_curve_and_the_fills_indexed_by_time(result) -> None:
    equity = result.to_pandas()
    assert equity.index.name == "ts" and str(equity.index.dtype) == "datetime64[ns]"
    assert {"equity", "position", "mid", "fees", "cash", "our_bid", "our_ask"} <= set(equity.columns)
    assert equity["equity"].iloc[-1] == pytest.approx(result.stats["pnl"])
    quoted = equity.dropna(subset=["our_bid", "our_ask"])  # touch quotes both sides of the mid, a tick apart
    assert len(quoted) > 0 and (quoted["our_bid"] < quoted["mid"]).all() and (quoted["mid"] < quoted["our_ask"]).all()
    assert set(quoted["our_bid"]) <= {10.0} and set(quoted["our_ask"]) <= {10.01}
    fills = result.to_pandas("fills")
    assert fills["side"].tolist() == ["buy", "sell"] and fills["price"].tolist() == [10.0, 10.01]
    assert fills.index.astype("int64").tolist() == result.fills["ts_local_ns"].to_pylist()
    with pytest.raises(ValueError, match="no table 'orders'"):
        result.to_pandas("orders")


def test_plot_draws_price_quotes_and_fills_equity_before_and_after_fees_and_position(result, tmp_path: Path) -> None:
    fig = result.plot(tmp_path / "plot.png")
    price, equity, position = fig.axes
    assert price.get_ylabel() == "price" and position.get_ylabel() == "position"
    assert [line.get_label() for line in equity.get_lines()] == ["before fees", "after fees"]
    assert [line.get_label() for line in price.get_lines()] == ["mid", "our bid", "our ask"]
    np.testing.assert_array_equal(price.get_lines()[1].get_ydata(), result.equity["our_bid"].to_numpy())
    assert sum(len(c.get_offsets()) for c in price.collections) == result.stats["fills"]
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PLOT_IN_A_NOTEBOOK = """
import sys
import matplotlib
matplotlib.use("svg")  # the notebook's own choice
from engine.backtest.backtest import backtest
fig = backtest({path!r}, "touch", {{"interval_ns": 1e6, "order_qty": 100}}, progress=False).plot({png!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_plot_keeps_the_callers_matplotlib_backend_and_never_loads_pyplot(tmp_path: Path) -> None:
    code = PLOT_IN_A_NOTEBOOK.format(path=day(tmp_path), png=str(tmp_path / "p.png"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svg", "False"]
    assert (tmp_path / "p.png").exists()
