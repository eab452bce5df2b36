"""engine.backtest.sweep without Ray: the grid, its product, one run as a row, and the ranked summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.backtest.sweep import (
    STAT_COLUMNS,
    STATUS_ERROR,
    STATUS_OK,
    SweepError,
    one_line,
    param_sets,
    parse_grid,
    run_one,
    runs_table,
    summarize,
    sweep,
)
from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.parquet import write_events

MS = 1_000_000


def test_parse_grid_reads_names_and_float_values_in_order() -> None:
    grid = parse_grid(["order_qty=50,100,200", " max_position = 1e3,2000"])
    assert grid == {"order_qty": [50.0, 100.0, 200.0], "max_position": [1000.0, 2000.0]}
    assert list(grid) == ["order_qty", "max_position"]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("order_qty", "expected NAME=V1,V2"),
        ("=1,2", "expected NAME=V1,V2"),
        ("order_qty=", "expected NAME=V1,V2"),
        ("order_qty=1,x", "must be numbers"),
        ("order_qty=1,,2", "must be numbers"),
        ("order_qty=1,2,1", "repeated"),
    ],
)
def test_parse_grid_rejects_bad_specs_with_the_reason(spec: str, reason: str) -> None:
    with pytest.raises(SweepError, match=reason):
        parse_grid([spec])


def test_parse_grid_rejects_a_name_given_twice() -> None:
    with pytest.raises(SweepError, match="already in the grid"):
        parse_grid(["order_qty=1,2", "order_qty=3"])


def test_param_sets_is_the_cartesian_product_last_name_fastest() -> None:
    sets = param_sets({"a": [1.0, 2.0], "b": [10.0, 20.0, 30.0]})
    assert len(sets) == 6
    assert sets[:4] == [{"a": 1.0, "b": 10.0}, {"a": 1.0, "b": 20.0}, {"a": 1.0, "b": 30.0}, {"a": 2.0, "b": 10.0}]
    assert len({tuple(s.items()) for s in sets}) == 6


def test_param_sets_of_no_grid_is_one_empty_set() -> None:
    assert param_sets({}) == [{}]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"grid": {"order_qty": [1.0]}, "fixed_params": {"order_qty": 2.0}}, "both fixed and in the grid"),
        ({"grid": {"no_such": [1.0]}}, "has no parameter no_such"),
        ({"grid": {"order_qty": [1.0]}, "strategy": "nope"}, "unknown strategy"),
        ({"grid": {"order_qty": [1.0]}, "latency": "constant:x"}, "bad --latency"),
        ({"grid": {"order_qty": [1.0]}, "queue": "power"}, "bad --queue"),
        ({"grid": {"order_qty": [1.0]}, "rank_by": "luck"}, "bad rank key"),
        ({"grid": {"order_qty": [1.0]}, "no_such_option": 1}, "unknown backtest option"),
    ],
)
def test_sweep_refuses_what_would_fail_every_run_before_starting(kwargs: dict, reason: str) -> None:
    kwargs = {"strategy": "touch", **kwargs}
    with pytest.raises(SweepError, match=reason):
        sweep(["does-not-matter.parquet"], **kwargs)


def test_one_line_keeps_the_type_and_first_line() -> None:
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(RuntimeError()) == "RuntimeError"


def _day(path: Path) -> str:
    """A touch of 10.00 x 10.01, then a little activity on the bid."""
    rows = [
        (0, E.KIND_ADD, 1, E.SIDE_BID, 100_000, 300),
        (0, E.KIND_ADD, 2, E.SIDE_ASK, 100_100, 300),
        (5, E.KIND_ADD, 3, E.SIDE_BID, 100_000, 100),
        (10, E.KIND_EXECUTE, 1, E.SIDE_BID, 100_000, 300),
    ]
    events = np.zeros(len(rows), E.EVENT_DTYPE)
    for i, (t_ms, kind, oid, side, price, qty) in enumerate(rows):
        events[i] = (t_ms * MS, t_ms * MS, i + 1, oid, 0, price, qty, 7, kind, side, 0, 0)
    write_events(path, events, {7: Instrument(7, "TEST", 10_000, 0.01, 1.0)})
    return str(path)


def test_run_one_gives_every_stat_column_or_the_error(tmp_path: Path) -> None:
    day = _day(tmp_path / "day.parquet")
    ok = run_one(
        day, "touch", {"interval_ns": MS, "order_qty": 100, "max_position": 1000}, {"latency": "constant:1000,1000"}
    )
    assert ok["status"] == STATUS_OK and ok["error"] is None
    assert set(STAT_COLUMNS) <= set(ok)
    assert ok["events"] == 4 and ok["orders"] >= 2
    (tmp_path / "bad.itch").write_bytes(b"\x00\x07garbage" * 10)
    bad = run_one(str(tmp_path / "bad.itch"), "touch", {}, {})
    assert bad["status"] == STATUS_ERROR
    assert "\n" not in bad["error"] and ":" in bad["error"]


def _runs() -> pa.Table:
    """Two sets (a=1, a=2) over two files; a=2 has a failed run; a=3 failed everywhere."""

    def row(a: float, file: str, pnl: float | None, sharpe: float | None, dd: float | None, fills: int | None):
        if pnl is None:
            return {"file": file, "a": a, "status": STATUS_ERROR, "error": "FeedError: bad"}
        stats = {"pnl": pnl, "sharpe": sharpe, "sortino": sharpe, "ratio_period": "second", "max_drawdown": dd,
                 "fills": fills}  # fmt: skip
        return {"file": file, "a": a, "status": STATUS_OK, "error": None, **stats}

    rows = [
        row(1.0, "x", 10.0, 1.0, 5.0, 3),
        row(1.0, "y", -4.0, 3.0, 9.0, 4),
        row(2.0, "x", 1.0, 5.0, 1.0, 1),
        row(2.0, "y", None, None, None, None),
        row(3.0, "x", None, None, None, None),
        row(3.0, "y", None, None, None, None),
    ]
    return runs_table(rows, ["a"])


def test_runs_table_has_a_row_per_run_and_nulls_for_failed_stats() -> None:
    runs = _runs()
    assert runs.column_names == ["file", "a", "status", "error", *STAT_COLUMNS]
    assert runs.num_rows == 6
    assert runs["pnl"].null_count == 3 and runs["events"].null_count == 6


def test_summary_aggregates_each_set_over_its_successful_runs() -> None:
    summary = {r["a"]: r for r in summarize(_runs(), ["a"], "pnl").to_pylist()}
    assert summary[1.0]["runs"] == 2 and summary[1.0]["ok"] == 2
    assert summary[1.0]["mean_pnl"] == pytest.approx(3.0)
    assert summary[1.0]["mean_sharpe"] == pytest.approx(2.0)
    assert summary[1.0]["worst_drawdown"] == pytest.approx(9.0)
    assert summary[1.0]["total_fills"] == 7
    assert summary[2.0]["ok"] == 1 and summary[2.0]["mean_pnl"] == pytest.approx(1.0)
    assert summary[3.0]["ok"] == 0 and summary[3.0]["mean_pnl"] is None
    assert [summary[a]["ratio_period"] for a in (1.0, 2.0, 3.0)] == ["second", "second", None]


def test_summary_does_not_average_ratios_over_different_periods() -> None:
    """A set whose files were long enough to annualise on one file and not on another has no mean ratio."""
    runs = _runs()
    periods = runs["ratio_period"].to_pylist()
    periods[1] = "year"  # a=1 on file y
    runs = runs.set_column(runs.column_names.index("ratio_period"), "ratio_period", pa.array(periods, pa.string()))
    summary = {r["a"]: r for r in summarize(runs, ["a"], "sharpe").to_pylist()}
    assert summary[1.0]["ratio_period"] == "mixed"
    assert summary[1.0]["mean_sharpe"] is None and summary[1.0]["mean_sortino"] is None
    assert summary[1.0]["mean_pnl"] == pytest.approx(3.0)  # the rest is still averaged
    assert summary[2.0]["ratio_period"] == "second" and summary[2.0]["mean_sharpe"] == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("rank_by", "order"),
    [
        ("pnl", [1.0, 2.0, 3.0]),
        ("sharpe", [2.0, 1.0, 3.0]),
        ("max_drawdown", [2.0, 1.0, 3.0]),
        ("fills", [1.0, 2.0, 3.0]),
    ],
)
def test_summary_ranks_best_first_and_all_failed_sets_last(rank_by: str, order: list[float]) -> None:
    summary = summarize(_runs(), ["a"], rank_by)
    assert summary["a"].to_pylist() == order
    assert summary["rank"].to_pylist() == [1, 2, 3]


def test_cli_prints_the_ranked_summary_one_line_per_set(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli.backtest import print_sweep_summary

    print_sweep_summary(summarize(_runs(), ["a"], "pnl").to_pylist(), ["a"])
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["rank", "a", "ok"]
    assert [line.split()[:3] for line in lines] == [["1", "1", "2/2"], ["2", "2", "1/2"], ["3", "3", "0/2"]]
    assert lines[0].split()[3:] == ["3.00", "2.00", "2.00", "second", "9.00", "7"]
    assert lines[2].split()[3:] == ["-"] * 6
