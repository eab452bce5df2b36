"""hftmm as a library, for notebooks and scripts: the calls behind the ``hftmm`` command, in one place.

>>> import hftmm
>>> result = hftmm.backtest("day.itch.gz", "touch", {"order_qty": 100}, symbol="AAPL")
>>> result.summary()                      # a table of the figures, with units
>>> result.to_pandas()                    # the equity curve (net of fees), position, mid; "fills" for the fills
>>> fig = result.plot()                   # price and our fills, equity before/after fees, position
>>> hftmm.sweep(["day.itch.gz"], "touch", {"order_qty": [50, 100]}, symbol="AAPL").summary.to_pandas()
>>> books = hftmm.replay(["day.itch.gz"]).book
>>> events, instruments = hftmm.read_events("day.parquet")   # or pd.read_parquet: see feeds.parquet

``hftmm.STRATEGIES`` maps each strategy's name to its parameters and doc (``describe()``). Importing this
package points Numba at the package's kernel cache first (``engine.core.kernel_cache``), so a notebook
shares compiled kernels with the command line; ``hftmm compile`` fills that cache ahead of time.
"""

from __future__ import annotations

from importlib.metadata import version

from engine.backtest.backtest import backtest
from engine.backtest.result import BacktestResult
from engine.backtest.sweep import SweepResult, sweep
from engine.book.replay import ReplayResult, replay
from feeds import open_feed
from feeds.parquet import read_events, write_events
from strategies import STRATEGIES, get_strategy

__version__ = version("hftmm")

__all__ = [
    "STRATEGIES",
    "BacktestResult",
    "ReplayResult",
    "SweepResult",
    "__version__",
    "backtest",
    "get_strategy",
    "open_feed",
    "read_events",
    "replay",
    "sweep",
    "write_events",
]
