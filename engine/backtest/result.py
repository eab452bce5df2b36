"""What a backtest produced (:class:`BacktestResult`) and the statistics of an equity curve.

The statistics are shared with the capture replay (``engine.live.parity``), which reports a live
session the way a backtest reports a replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.units import NS_PER_DAY

SESSION_S = 23_400  # one trading session of 6.5 hours
TRADING_SECONDS_PER_YEAR = 252 * SESSION_S  # Sharpe/Sortino annualisation: 252 sessions
# Sharpe and Sortino are annualised only over at least one whole session of data: scaling the per-second
# ratio of a few minutes by sqrt(5.9 million) says nothing about a year (92 s gave a Sharpe of -544).
# Shorter samples report the ratio of per-second changes as it is, and ``ratio_period`` names the period.
ANNUALISE_MIN_S = SESSION_S


# summary(): (statistic shown, stats key, format); money in the quote currency
SUMMARY_ROWS = (
    ("events", "events", ","),
    ("orders sent", "orders", ","),
    ("orders canceled", "cancels", ","),
    ("orders rejected", "rejects", ","),
    ("fills", "fills", ","),
    ("fill ratio", "fill_ratio", ".3f"),
    ("traded volume (units)", "traded_volume", ",.6g"),
    ("traded value (currency)", "traded_value", ",.2f"),
    ("position (lots)", "position_lots", ","),
    ("position (units)", "position_units", ",.6g"),
    ("pnl gross (currency)", "pnl_gross", ",.2f"),
    ("fees (currency)", "fees", ",.2f"),
    ("pnl net (currency)", "pnl", ",.2f"),
    ("max drawdown (currency)", "max_drawdown", ",.2f"),
    ("Sharpe", "sharpe", ".3f"),
    ("Sortino", "sortino", ".3f"),
    ("ratios per", "ratio_period", ""),
)


@dataclass(repr=False)
class BacktestResult:
    """What a backtest produced: ``stats`` (the report), ``fills`` and ``equity`` (pyarrow tables).

    In a notebook: ``summary()`` is a table of the figures with their units, ``to_pandas()`` the equity
    curve (or the fills) as a DataFrame indexed by time, ``plot()`` a matplotlib Figure.
    """

    stats: dict
    fills: pa.Table
    equity: pa.Table

    def __repr__(self) -> str:
        s = self.stats
        return (f"BacktestResult({s['strategy']} on {s['symbol']}: {s['events']:,} events, {s['fills']:,} fills, "
                f"pnl net {s['pnl']:,.2f}; .summary(), .to_pandas(), .plot())")  # fmt: skip

    def summary(self):
        """The main figures as a one-column pandas DataFrame, indexed by the figure's name with its unit."""
        import pandas as pd

        values = [format(self.stats[key], fmt) for _, key, fmt in SUMMARY_ROWS]
        title = f"{self.stats['strategy']} on {self.stats['symbol']}"
        return pd.DataFrame({title: values}, index=pd.Index([name for name, _, _ in SUMMARY_ROWS], name="figure"))

    def to_pandas(self, table: str = "equity"):
        """``equity`` (the curve: equity net of fees, position, mid, fees, cash, and our quotes ``our_bid`` /
        ``our_ask``: the best prices we had resting, NaN for none) or ``fills`` as a pandas
        DataFrame indexed by time (``ts``: the local timestamp, datetime64[ns])."""
        tables = {"equity": (self.equity, "ts_ns"), "fills": (self.fills, "ts_local_ns")}
        if table not in tables:
            raise ValueError(f"no table {table!r}: equity or fills")
        data, stamp = tables[table]
        frame = data.to_pandas()
        frame.index = frame.pop(stamp).astype("datetime64[ns]").rename("ts")
        return frame

    def to_parquet(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``fills.parquet`` and ``equity.parquet`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.fills, out / "fills.parquet")
        pq.write_table(self.equity, out / "equity.parquet")
        return out / "fills.parquet", out / "equity.parquet"

    def plot(self, path: str | Path | None = None):
        """Price with our quotes and fills, equity before and after fees, and position, over time: a matplotlib Figure
        (saved as PNG when ``path`` is given). Drawn on a Figure of its own, without pyplot: it never
        changes matplotlib's backend or a notebook's current figure."""
        from matplotlib.figure import Figure

        ts = self.equity["ts_ns"].to_numpy()
        t0 = ts[0] if len(ts) else 0
        t = (ts - t0) / 1e9
        fig = Figure(figsize=(10, 8), layout="constrained")
        price, equity, position = fig.subplots(3, 1, sharex=True, height_ratios=(2, 2, 1))
        price.plot(t, self.equity["mid"].to_numpy(), lw=0.8, color="tab:gray", label="mid")
        price.step(t, self.equity["our_bid"].to_numpy(), where="post", lw=0.8, color="tab:green", alpha=0.6,
                   label="our bid")  # fmt: skip
        price.step(t, self.equity["our_ask"].to_numpy(), where="post", lw=0.8, color="tab:red", alpha=0.6,
                   label="our ask")  # fmt: skip
        fills = self.fills
        fill_t = (fills["ts_local_ns"].to_numpy() - t0) / 1e9
        buys = np.asarray(fills["side"].to_pylist()) == "buy"
        fill_price = fills["price"].to_numpy()
        price.scatter(fill_t[buys], fill_price[buys], marker="^", s=18, color="tab:green", label="our buys")
        price.scatter(fill_t[~buys], fill_price[~buys], marker="v", s=18, color="tab:red", label="our sells")
        price.set_ylabel("price")
        price.legend(loc="upper left", fontsize="small")
        net = self.equity["equity"].to_numpy()
        equity.plot(t, net + self.equity["fees"].to_numpy(), lw=1, color="tab:purple", label="before fees")
        equity.plot(t, net, lw=1, color="tab:blue", label="after fees")
        equity.set_ylabel("equity (currency)")
        equity.legend(loc="upper left", fontsize="small")
        position.step(t, self.equity["position"].to_numpy(), where="post", lw=1, color="tab:orange")
        position.set_ylabel("position")
        position.set_xlabel("seconds from start")
        for axes in (price, equity, position):
            axes.grid(alpha=0.3)
        s = self.stats
        fig.suptitle(f"{s['strategy']} on {s['symbol']}: pnl {s['pnl_gross']:,.2f} gross, fees {s['fees']:,.2f}, "
                     f"net {s['pnl']:,.2f}; {s['fills']:,} fills; max drawdown {s['max_drawdown']:,.2f}")  # fmt: skip
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


EPOCH_TS_MIN = 10 * NS_PER_DAY  # smaller timestamps count from midnight (ITCH files), not from 1970


def per_day(ts: np.ndarray, equity: np.ndarray, fill_ts: np.ndarray, fill_qty: np.ndarray) -> list[dict]:
    """PnL, max drawdown, fills and volume of each UTC day of the equity curve."""
    days = []
    if len(ts) == 0:
        return days
    day_of = ts // NS_PER_DAY
    start_equity = 0.0
    for day in np.unique(day_of):
        sel = day_of == day
        curve = equity[sel]
        in_day = (fill_ts // NS_PER_DAY) == day
        label = np.datetime64(int(day), "D").astype(str) if ts[0] >= EPOCH_TS_MIN else f"session {int(day)}"
        days.append(
            {
                "day": label,
                "pnl": float(curve[-1] - start_equity),
                "max_drawdown": float((np.maximum.accumulate(curve) - curve).max()),
                "fills": int(in_day.sum()),
                "volume": float(fill_qty[in_day].sum()),
            }
        )
        start_equity = float(curve[-1])
    return days


def equity_stats(ts: np.ndarray, equity: np.ndarray, position: np.ndarray) -> dict:
    """Sharpe and Sortino of per-second equity changes (annualised over ``ANNUALISE_MIN_S`` of data or more,
    else per second: ``ratio_period`` says "year" or "second"), max drawdown, time-weighted position."""
    out = {"sharpe": 0.0, "sortino": 0.0, "ratio_period": "second", "max_drawdown": 0.0, "mean_abs_position": 0.0,
           "position_quantiles": {}}  # fmt: skip
    if len(ts) == 0:
        return out
    peak = np.maximum.accumulate(equity)
    out["max_drawdown"] = float((peak - equity).max())
    seconds = (ts - ts[0]) // 1_000_000_000
    last = np.flatnonzero(np.r_[seconds[1:] != seconds[:-1], True])  # last sample of each second
    grid = np.arange(seconds[0], seconds[-1] + 1)
    per_second = equity[last][np.searchsorted(seconds[last], grid, side="right") - 1]
    returns = np.diff(per_second)
    annualised = len(grid) - 1 >= ANNUALISE_MIN_S
    out["ratio_period"] = "year" if annualised else "second"
    scale = math.sqrt(TRADING_SECONDS_PER_YEAR) if annualised else 1.0
    if len(returns) > 1 and returns.std() > 0:
        out["sharpe"] = float(returns.mean() / returns.std() * scale)
        downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
        out["sortino"] = float(returns.mean() / downside * scale) if downside > 0 else 0.0
    held = np.diff(ts, append=ts[-1]).astype(np.float64)  # each sample's position holds until the next
    if held.sum() > 0:
        out["mean_abs_position"] = float(np.average(np.abs(position), weights=held))
        order = np.argsort(position, kind="stable")
        cum = np.cumsum(held[order]) / held.sum()
        out["position_quantiles"] = {
            f"p{q}": float(position[order][min(len(order) - 1, np.searchsorted(cum, q / 100))])
            for q in (1, 5, 25, 50, 75, 95, 99)
        }
    return out
