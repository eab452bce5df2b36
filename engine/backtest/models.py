"""The backtester's models, chosen by name: order latency, queue position on L2 data, feed latency.

``constant:ENTRY_NS,RESP_NS`` | ``lognormal:ENTRY_MEDIAN,RESP_MEDIAN,SIGMA[,SEED]`` | ``table:FILE``;
``fifo`` | ``risk-averse`` | ``power:N`` | ``log``; ``data`` | ``constant:NS``. A spec that does not
parse is a one-line :class:`BacktestError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.backtest import layout as L

DEFAULT_LATENCY = "constant:10000,10000"  # 10 us each way: a co-located gateway


class BacktestError(ValueError):
    """A backtest that cannot run as asked (bad model spec, no such symbol, missing tick size)."""


@dataclass(frozen=True)
class Latency:
    """Order entry and response latency: ``constant``, ``table`` (interpolated) or ``lognormal``."""

    mode: int
    entry_ns: int
    response_ns: int
    table: np.ndarray = field(default_factory=lambda: np.zeros((1, 3), np.int64))
    sigma: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """``constant:ENTRY_NS,RESP_NS`` | ``lognormal:ENTRY_MEDIAN_NS,RESP_MEDIAN_NS,SIGMA[,SEED]`` |
        ``table:FILE`` (a .npy/.npz/.csv of rows: local time ns, entry ns, response ns)."""
        name, _, arg = spec.partition(":")
        try:
            if name == "constant":
                entry, resp = (int(float(x)) for x in arg.split(","))
                if entry < 0 or resp < 0:
                    raise ValueError("negative latency")
                return cls(L.LAT_CONSTANT, entry, resp)
            if name == "lognormal":
                parts = arg.split(",")
                entry, resp, sigma = int(float(parts[0])), int(float(parts[1])), float(parts[2])
                seed = int(parts[3]) if len(parts) > 3 else 0
                if entry <= 0 or resp <= 0 or sigma < 0:
                    raise ValueError("medians must be positive and sigma non-negative")
                return cls(L.LAT_LOGNORMAL, entry, resp, sigma=sigma, seed=seed)
            if name == "table":
                table = _latency_table(arg)
                return cls(L.LAT_TABLE, int(table[0, 1]), int(table[0, 2]), table=table)
        except (ValueError, IndexError, OSError) as exc:
            raise BacktestError(f"bad --latency {spec!r}: {exc}") from None
        raise BacktestError(f"bad --latency {spec!r}: expected constant:E,R | lognormal:E,R,SIGMA[,SEED] | table:FILE")


def _latency_table(path: str) -> np.ndarray:
    if path.endswith(".csv"):
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        loaded = np.load(path)
        table = loaded[loaded.files[0]] if hasattr(loaded, "files") else loaded
    table = np.asarray(table, np.float64)
    if table.ndim != 2 or table.shape[1] < 3 or len(table) == 0:
        raise ValueError(f"{path}: expected rows of (time ns, entry ns, response ns)")
    table = table[np.argsort(table[:, 0], kind="stable"), :3]
    if (table[:, 1:] < 0).any():
        raise ValueError(f"{path}: negative latency")
    return np.ascontiguousarray(table.astype(np.int64))


QUEUE_MODELS = {"fifo": L.QM_FIFO, "risk-averse": L.QM_RISK_AVERSE, "power": L.QM_POWER, "log": L.QM_LOG}


def parse_queue(spec: str) -> tuple[int, float]:
    """``fifo`` | ``risk-averse`` | ``power:N`` | ``log`` -> (model code, N)."""
    name, _, arg = spec.partition(":")
    if name not in QUEUE_MODELS or (name == "power") != bool(arg):
        raise BacktestError(f"bad --queue {spec!r}: expected fifo | risk-averse | power:N | log")
    try:
        n = float(arg) if arg else 0.0
    except ValueError:
        raise BacktestError(f"bad --queue {spec!r}: N must be a number") from None
    if name == "power" and n <= 0:
        raise BacktestError(f"bad --queue {spec!r}: N must be positive")
    return QUEUE_MODELS[name], n


def parse_feed_latency(spec: str | None) -> int:
    """``data`` (the files' local timestamps; the default) or ``constant:NS`` -> the kernel's CF_FEED_NS."""
    if spec in (None, "data"):
        return -1
    name, _, arg = spec.partition(":")
    if name == "constant":
        try:
            ns = int(float(arg))
        except ValueError:
            ns = -1
        if ns >= 0:
            return ns
    raise BacktestError(f"bad --feed-latency {spec!r}: expected data | constant:NS")
