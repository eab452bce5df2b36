"""Parameter sweeps: every (parameter set, data file) pair as one Ray task running a backtest.

The grid is a dict of parameter name to the values to try; the sweep runs the cartesian product of
those values over each data file, one :func:`engine.backtest.backtest` per pair, on a local Ray
started for the sweep (the default) or on an existing cluster (``address="auto"`` or
``"ray://HOST:PORT"``). A run that raises becomes a row with status ``error`` and the one-line
message; the others go on. ``hftmm sweep`` is a thin layer over :func:`sweep`::

    from engine.backtest.sweep import sweep
    result = sweep(["day1.itch.gz", "day2.itch.gz"], "touch", {"order_qty": [50, 100, 200]})
    result.summary.to_pandas()          # one row per parameter set, best first
    result.to_parquet("sweep.parquet")  # one row per (parameter set, file)

Workers load the backtest kernel from Numba's on-disk cache: the driver loads (or compiles) it
first with a tiny backtest, so that the workers of a local Ray, which inherit the driver's
environment (``NUMBA_CACHE_DIR`` included), never compile it side by side. The workers of an
existing cluster use that cluster's own environment.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from engine.backtest.backtest import backtest
from engine.backtest.models import DEFAULT_LATENCY, Latency, parse_queue
from engine.backtest.ranking import RANK_KEYS
from engine.core import events as E
from engine.core.instruments import Instrument
from engine.runtime.localray import start_local_ray
from feeds.parquet import write_events
from strategies import get_strategy

LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # runs return a few numbers each; /dev/shm is shared with Aeron
STATUS_OK = "ok"
STATUS_ERROR = "error"
PARQUET_META_KEY = b"hftmm.sweep"

# The statistics of each run kept in the table, with their Arrow types (null for a failed run).
STAT_COLUMNS: dict[str, pa.DataType] = {
    "events": pa.int64(),
    "elapsed_s": pa.float64(),
    "orders": pa.int64(),
    "fills": pa.int64(),
    "position": pa.int64(),  # lots, as in BacktestResult.stats
    "pnl": pa.float64(),
    "fees": pa.float64(),
    "sharpe": pa.float64(),
    "sortino": pa.float64(),
    "ratio_period": pa.string(),  # what sharpe and sortino are per: "year" or "second" (BacktestResult.stats)
    "max_drawdown": pa.float64(),
    "fill_ratio": pa.float64(),
}

# backtest() keywords a sweep passes on unchanged to every run (progress is the sweep's own)
BACKTEST_OPTIONS = frozenset(
    name for name, p in inspect.signature(backtest).parameters.items() if p.kind is p.KEYWORD_ONLY
) - {"progress"}


class SweepError(ValueError):
    """A sweep that cannot start as asked (bad grid, unknown strategy or parameter, bad model spec)."""


# --- the grid -----------------------------------------------------------------------------------
def parse_grid(specs: Sequence[str]) -> dict[str, list[float]]:
    """``["order_qty=50,100", "max_position=10,20"]`` -> ``{"order_qty": [50.0, 100.0], ...}``."""
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name or not text.strip():
            raise SweepError(f"bad --grid {spec!r}: expected NAME=V1,V2,...")
        if name in grid:
            raise SweepError(f"bad --grid {spec!r}: {name} is already in the grid")
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise SweepError(f"bad --grid {spec!r}: the values must be numbers") from None
        if len(set(values)) != len(values):
            raise SweepError(f"bad --grid {spec!r}: a value is repeated")
        grid[name] = values
    return grid


def param_sets(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """The cartesian product of the grid, the last name varying fastest (one empty set for no grid)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))]


# --- one run ------------------------------------------------------------------------------------
def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (a Ray task error gives its cause's)."""
    cause = getattr(exc, "cause", None)  # ray.exceptions.RayTaskError wraps the task's exception
    if isinstance(cause, BaseException):
        exc = cause
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def run_one(path: str, strategy: str, params: dict[str, float], options: dict[str, Any]) -> dict[str, Any]:
    """One backtest as the outcome part of a row: the status, the error (or None) and the statistics."""
    try:
        stats = backtest(path, strategy, params, progress=False, **options).stats
    except Exception as exc:  # one bad run is a row of the table, not the end of the sweep
        return {"status": STATUS_ERROR, "error": one_line(exc)}
    return {"status": STATUS_OK, "error": None, **{name: stats[name] for name in STAT_COLUMNS}}


def warm_kernel(strategy: str, *, progress: bool = False) -> None:
    """Load (or compile, once) the backtest kernel in this process: a backtest of two events."""
    events = np.zeros(2, E.EVENT_DTYPE)
    events["seq"] = [1, 2]
    events["order_id"] = [1, 2]
    events["kind"] = E.KIND_ADD
    events["side"] = [E.SIDE_BID, E.SIDE_ASK]
    events["price"] = [100_000, 100_100]
    events["qty"] = 100
    events["instrument"] = 1
    with tempfile.TemporaryDirectory(prefix="hftmm-sweep-") as tmp:
        path = Path(tmp) / "warm.parquet"
        write_events(path, events, {1: Instrument(1, "WARM", 10_000, 0.01, 1.0)})
        backtest(str(path), strategy, progress=progress)


# --- the result ---------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """``runs``: one row per (parameter set, file); ``summary``: one row per parameter set, best first."""

    runs: pa.Table
    summary: pa.Table
    rank_by: str
    metadata: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The failed runs: file, parameters and error of each."""
        return self.runs.filter(pc.equal(self.runs["status"], STATUS_ERROR)).to_pylist()

    def to_parquet(self, path: str | Path) -> Path:
        """Write ``runs`` to ``path``, with the sweep's settings as JSON in the schema metadata."""
        meta = {PARQUET_META_KEY: json.dumps(self.metadata, default=str).encode()}
        pq.write_table(self.runs.replace_schema_metadata(meta), str(path))
        return Path(path)


def runs_table(rows: list[dict[str, Any]], param_names: Sequence[str]) -> pa.Table:
    """The runs as an Arrow table: file, each parameter, status, error, then the statistics."""
    columns: dict[str, pa.Array] = {"file": pa.array([r["file"] for r in rows], pa.string())}
    for name in param_names:
        columns[name] = pa.array([r[name] for r in rows], pa.float64())
    columns["status"] = pa.array([r["status"] for r in rows], pa.string())
    columns["error"] = pa.array([r["error"] for r in rows], pa.string())
    for name, type_ in STAT_COLUMNS.items():
        columns[name] = pa.array([r.get(name) for r in rows], type_)
    return pa.table(columns)


def summarize(runs: pa.Table, grid_names: Sequence[str], rank_by: str) -> pa.Table:
    """Per parameter set over its files: runs, ok runs, mean pnl/sharpe/sortino and the period of those
    ratios, worst drawdown, total fills (failed runs count in ``runs`` only), ranked by ``rank_by``, best
    first; a set without a successful run comes last."""
    column, descending = RANK_KEYS[rank_by]
    ok = pc.cast(pc.equal(runs["status"], STATUS_OK), pa.int64())
    grouped = (
        runs.append_column("ok", ok)
        .group_by(list(grid_names), use_threads=False)  # keeps the sets in grid order, for stable ties
        .aggregate(
            [
                ("status", "count"),
                ("ok", "sum"),
                ("pnl", "mean"),
                ("sharpe", "mean"),
                ("sortino", "mean"),
                ("ratio_period", "min"),
                ("ratio_period", "max"),
                ("max_drawdown", "max"),
                ("fills", "sum"),
            ]
        )
    )
    grouped = _one_ratio_period(grouped)
    names = {
        "status_count": "runs",
        "ok_sum": "ok",
        "pnl_mean": "mean_pnl",
        "sharpe_mean": "mean_sharpe",
        "sortino_mean": "mean_sortino",
        "ratio_period": "ratio_period",
        "max_drawdown_max": "worst_drawdown",
        "fills_sum": "total_fills",
    }
    summary = grouped.select([*grid_names, *names]).rename_columns([*grid_names, *names.values()])
    ranked = summary.sort_by([(column, "descending" if descending else "ascending")])  # nulls last
    return ranked.add_column(0, "rank", pa.array(np.arange(1, len(ranked) + 1), pa.int64()))


def _one_ratio_period(grouped: pa.Table) -> pa.Table:
    """``ratio_period`` per set: the period its runs' ratios share, or "mixed" when some files were long
    enough to annualise and others not; a mean over mixed periods means nothing, so it is left out (null)."""
    low, high = grouped["ratio_period_min"], grouped["ratio_period_max"]
    mixed = pc.fill_null(pc.not_equal(low, high), False)
    grouped = grouped.append_column("ratio_period", pc.if_else(mixed, pa.scalar("mixed"), low))
    for name in ("sharpe_mean", "sortino_mean"):
        column = grouped[name]
        grouped = grouped.set_column(grouped.column_names.index(name), name,
                                     pc.if_else(mixed, pa.scalar(None, column.type), column))  # fmt: skip
    return grouped


# --- the sweep ----------------------------------------------------------------------------------
def _check(strategy: str, fixed: Mapping[str, float], sets: list[dict[str, float]], options: Mapping[str, Any]) -> None:
    """Raise SweepError for what would fail every run: strategy, parameter names, options, models."""
    unknown = sorted(set(options) - BACKTEST_OPTIONS)
    if unknown:
        raise SweepError(f"unknown backtest option {', '.join(unknown)} (known: {', '.join(sorted(BACKTEST_OPTIONS))})")
    try:
        spec = get_strategy(strategy)
        for params in sets:
            spec.param_array({**fixed, **params})
        latency = options.get("latency", DEFAULT_LATENCY)
        if isinstance(latency, str):
            Latency.parse(latency)
        if options.get("queue"):
            parse_queue(options["queue"])
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def _start_ray(address: str | None) -> bool:
    """Connect to Ray (a new local instance when ``address`` is None); True when we started it."""
    import ray

    if ray.is_initialized():  # a caller's own session (a notebook, a Ray job): use it as it is
        return False
    if address is None:
        start_local_ray(os.cpu_count() or 1, LOCAL_OBJECT_STORE_BYTES)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)  # Ray's notices off stderr
    return True


def sweep(
    data: Sequence[str] | str,
    strategy: str,
    grid: Mapping[str, Sequence[float]],
    *,
    address: str | None = None,
    fixed_params: Mapping[str, float] | None = None,
    rank_by: str = "sharpe",
    progress: bool = True,
    **backtest_options: Any,
) -> SweepResult:
    """Backtest ``strategy`` with every parameter set of ``grid`` on every file of ``data`` as Ray tasks.

    ``fixed_params`` apply to every run (a name may not be both fixed and in the grid);
    ``backtest_options`` (symbol, tick_size, latency, queue, maker_fee, ...) go to every
    :func:`engine.backtest.backtest`. ``address`` None starts a local Ray for the sweep and shuts it
    down after; ``"auto"`` or ``"ray://HOST:PORT"`` uses an existing cluster, where the files must
    be readable by the workers. ``rank_by`` is a key of :data:`engine.backtest.ranking.RANK_KEYS`.
    """
    files = [data] if isinstance(data, str) else list(data)
    fixed = {name: float(v) for name, v in (fixed_params or {}).items()}
    both = sorted(set(fixed) & set(grid))
    if both:
        raise SweepError(f"parameter {', '.join(both)} is both fixed and in the grid")
    if rank_by not in RANK_KEYS:
        raise SweepError(f"bad rank key {rank_by!r} (known: {', '.join(RANK_KEYS)})")
    if not files:
        raise SweepError("no data files")
    sets = param_sets(grid)
    _check(strategy, fixed, sets, backtest_options)
    warm_kernel(strategy, progress=progress)

    import ray

    pairs = [(params, path) for params in sets for path in files]
    started = _start_ray(address)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(run_one)
        refs = [task.remote(path, strategy, {**fixed, **params}, backtest_options) for params, path in pairs]
        outcomes = _gather(refs, progress)
    finally:
        if started:
            ray.shutdown()
    rows = [{"file": path, **fixed, **params, **out} for (params, path), out in zip(pairs, outcomes, strict=True)]
    runs = runs_table(rows, [*fixed, *grid])
    metadata = {"strategy": strategy, "grid": {n: list(map(float, v)) for n, v in grid.items()},
                "fixed_params": fixed, "options": backtest_options, "rank_by": rank_by}  # fmt: skip
    return SweepResult(runs, summarize(runs, list(grid), rank_by), rank_by, metadata)


def _gather(refs: list[Any], progress: bool) -> list[dict[str, Any]]:
    """Each task's outcome in submission order, taken as they finish (a task Ray lost is an error row)."""
    import ray
    from ray.exceptions import RayError

    index = {ref: i for i, ref in enumerate(refs)}
    outcomes: list[dict[str, Any]] = [{} for _ in refs]
    pending, failed = list(refs), 0
    with tqdm(total=len(refs), unit="run", desc="sweep", file=sys.stderr, disable=not progress) as bar:
        for _ in range(len(refs)):  # one finished task per pass
            (ref,), pending = ray.wait(pending, num_returns=1)
            try:
                outcome = ray.get(ref)
            except RayError as exc:  # the worker died, the task was cancelled, ...
                outcome = {"status": STATUS_ERROR, "error": one_line(exc)}
            outcomes[index[ref]] = outcome
            failed += outcome["status"] != STATUS_OK
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()
    return outcomes
