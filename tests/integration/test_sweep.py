"""``hftmm sweep`` as a user runs it: a separate process, a real local Ray, real files.

One sweep (module scope: Ray's start-up is most of its time) of a 2x2 grid of ``touch`` over a
generated ITCH day and a corrupt file: every run on the corrupt file must fail, be reported with
its parameters, and leave the runs on the good day intact.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from itertools import product
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.backtest.sweep import STAT_COLUMNS

CLI = [sys.executable, "-m", "engine.cli.main"]
TIMEOUT_S = 240  # a cold Numba cache compiles the backtest kernel first
GRID = {"order_qty": [1.0, 2.0], "max_position": [4.0, 8.0]}
GEN_MESSAGES = 20_000


def run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``hftmm ARGS`` in ``cwd`` and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def only_symbol(path: Path) -> str:
    """The one symbol of a generated day (its system events carry no instrument, so name it)."""
    from feeds.read import FeedPass, read_feeds

    feed = FeedPass([str(path)])
    for _ in read_feeds([str(path)], progress=False, feed_pass=feed):
        pass
    (instrument,) = feed.instruments.values()
    return instrument.symbol


class Swept:
    """What one ``hftmm sweep --json`` left: the process, its folder, the files swept and the summary."""

    def __init__(self, proc: subprocess.CompletedProcess, folder: Path, good: str, bad: str) -> None:
        self.proc, self.folder, self.good, self.bad = proc, folder, good, bad
        self.runs = pq.read_table(folder / "out.parquet").to_pylist()
        self.summary = json.loads(proc.stdout)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    folder = tmp_path_factory.mktemp("sweep")
    gen = run("gen-itch", "-o", "day.itch", "--messages", GEN_MESSAGES, "--symbols", 1, "--seed", 5, cwd=folder)
    assert gen.returncode == 0, gen.stderr
    (folder / "corrupt.itch").write_bytes(b"\x00\x05Zjunk" * 64)  # a record of an unknown message type
    symbol = only_symbol(folder / "day.itch")
    grid = [f"{name}={','.join(f'{v:g}' for v in values)}" for name, values in GRID.items()]
    proc = run(
        "sweep", "--data", "day.itch", "corrupt.itch", "--strategy", "touch",
        "--grid", grid[0], "--grid", grid[1], "--symbol", symbol, "--param", "interval_ns=1e9",
        "--rank-by", "pnl", "--out", "out.parquet", "--json", "-q",
        cwd=folder,
    )  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return Swept(proc, folder, "day.itch", "corrupt.itch")


def test_one_row_per_parameter_set_and_file(swept: Swept) -> None:
    keys = [(r["order_qty"], r["max_position"], r["file"]) for r in swept.runs]
    expected = [(q, m, f) for q, m in product(*GRID.values()) for f in (swept.good, swept.bad)]
    assert sorted(keys) == sorted(expected)
    assert all(r["interval_ns"] == 1e9 for r in swept.runs)


def test_runs_on_the_good_day_succeed_with_their_stats(swept: Swept) -> None:
    good = [r for r in swept.runs if r["file"] == swept.good]
    assert len(good) == 4
    for r in good:
        assert r["status"] == "ok" and r["error"] is None, r
        assert r["events"] > 0 and r["orders"] > 0
        assert all(r[k] is not None and math.isfinite(r[k]) for k in ("pnl", "sharpe", "max_drawdown", "fill_ratio"))
    assert len({(r["orders"], r["fills"], r["pnl"]) for r in good}) > 1, "every parameter set gave the same run"


def test_failed_runs_are_reported_with_their_parameters(swept: Swept) -> None:
    bad = [r for r in swept.runs if r["file"] == swept.bad]
    assert len(bad) == 4
    assert all(r["status"] == "error" and r["error"] and "\n" not in r["error"] for r in bad)
    assert all(r["pnl"] is None and r["fills"] is None for r in bad)
    stderr = swept.proc.stderr
    assert "4 of 8 runs failed" in stderr
    for r in bad:
        line = f"{swept.bad} order_qty={r['order_qty']:g} max_position={r['max_position']:g}: {r['error']}"
        assert line in stderr, f"{line!r} not in\n{stderr}"


def test_summary_ranks_the_parameter_sets_by_mean_pnl(swept: Swept) -> None:
    summary = swept.summary
    assert [row["rank"] for row in summary] == [1, 2, 3, 4]
    assert sorted((row["order_qty"], row["max_position"]) for row in summary) == sorted(product(*GRID.values()))
    pnl = [row["mean_pnl"] for row in summary]
    assert pnl == sorted(pnl, reverse=True)
    by_set = {(r["order_qty"], r["max_position"]): r["pnl"] for r in swept.runs if r["status"] == "ok"}
    for row in summary:
        assert row["runs"] == 2 and row["ok"] == 1
        assert row["mean_pnl"] == pytest.approx(by_set[row["order_qty"], row["max_position"]])


def test_a_sweep_row_equals_a_direct_backtest_of_its_parameters(swept: Swept) -> None:
    qty, position = GRID["order_qty"][-1], GRID["max_position"][-1]
    proc = run(
        "backtest", "--data", swept.good, "--strategy", "touch", "--param", f"order_qty={qty:g}",
        "--param", f"max_position={position:g}", "--param", "interval_ns=1e9", "--symbol", only_symbol(
            swept.folder / swept.good), "--json", "-q",
        cwd=swept.folder,
    )  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    direct = json.loads(proc.stdout)
    [row] = [r for r in swept.runs if (r["file"], r["order_qty"], r["max_position"]) == (swept.good, qty, position)]
    figures = [name for name in STAT_COLUMNS if name != "elapsed_s"]  # the only figure a rerun may change
    assert {name: row[name] for name in figures} == pytest.approx({name: direct[name] for name in figures}, nan_ok=True)
    assert direct["orders"] > 0 and direct["fills"] > 0, direct  # runs that did something, so the figures tell
    [ranked] = [r for r in swept.summary if (r["order_qty"], r["max_position"]) == (qty, position)]
    assert (ranked["mean_pnl"], ranked["total_fills"]) == (pytest.approx(direct["pnl"]), direct["fills"])


def test_parquet_records_the_sweep_settings(swept: Swept) -> None:
    meta = json.loads(pq.read_schema(swept.folder / "out.parquet").metadata[b"hftmm.sweep"])
    assert meta["strategy"] == "touch" and meta["rank_by"] == "pnl"
    assert meta["grid"] == GRID and meta["fixed_params"] == {"interval_ns": 1e9}


@pytest.mark.parametrize("spec", ["order_qty", "order_qty=1,x", "order_qty=", "no_such=1,2"])
def test_bad_grid_is_a_one_line_error_and_exit_2(tmp_path: Path, spec: str) -> None:
    proc = run("sweep", "--data", "day.itch", "--strategy", "touch", "--grid", spec, "-q", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hftmm: error:"), proc.stderr
    assert not (tmp_path / "sweep.parquet").exists()


def test_help_describes_the_sweep_options(tmp_path: Path) -> None:
    proc = run("sweep", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: hftmm sweep"), proc.stderr
    for option in ("--data", "--strategy", "--grid", "--param", "--address", "--out", "--rank-by", "--json", "touch"):
        assert option in proc.stdout, option


def test_json_parses_with_stderr_merged_no_ray_notice(tmp_path: Path) -> None:
    """``--json 2>&1 | json.load``: a sweep whose runs all succeed writes nothing else, not even Ray's warnings."""
    gen = run("gen-itch", "-o", "day.itch", "--messages", GEN_MESSAGES, "--symbols", 1, "--seed", 5, cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    symbol = only_symbol(tmp_path / "day.itch")
    proc = subprocess.run(
        [*CLI, "sweep", "--data", "day.itch", "--strategy", "touch", "--grid", "order_qty=1,2", "--symbol", symbol,
         "--param", "interval_ns=1e9", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    summary = json.loads(proc.stdout)
    assert [row["order_qty"] for row in sorted(summary, key=lambda r: r["order_qty"])] == [1.0, 2.0]
