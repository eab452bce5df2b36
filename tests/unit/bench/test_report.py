"""The benchmark reporting layer: HDR figures, tables, plots, result comparison and the written report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.report import (
    HIGHEST_NS,
    PERCENTILES,
    Change,
    compare,
    compare_lines,
    histogram,
    latency_table,
    load_result,
    new_histogram,
    plot_percentiles,
    summary,
    write_report,
)

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"
FEED = RESULTS / "2026-11-26-feed" / "feed.json"
BACKTEST = RESULTS / "2026-11-27-backtest" / "backtest.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scaled(tree: object, factor: float) -> object:
    """A copy of a JSON tree with every number (bools aside) multiplied by ``factor``."""
    if isinstance(tree, dict):
        return {key: scaled(value, factor) for key, value in tree.items()}
    if isinstance(tree, list):
        return [scaled(value, factor) for value in tree]
    if isinstance(tree, int | float) and not isinstance(tree, bool):
        return tree * factor
    return tree


def test_percentiles_of_uniform_samples_within_hdr_precision() -> None:
    figures = summary(histogram(np.arange(1, 100_001, dtype=np.int64)))
    expected = {"p50": 50_000, "p90": 90_000, "p99": 99_000, "p999": 99_900, "p9999": 99_990, "max": 100_000}
    for key, value in expected.items():
        assert figures[key] == pytest.approx(value, rel=1e-3), key
    assert figures["min"] == 1
    assert figures["mean"] == pytest.approx(50_000, rel=1e-3)
    assert figures["count"] == 100_000
    assert all(isinstance(figures[key], int) for key in figures)


def test_binned_recording_equals_one_record_per_sample() -> None:
    samples = np.random.default_rng(7).lognormal(9, 2, 20_000).astype(np.int64)
    reference = new_histogram()
    for value in np.clip(samples, 1, HIGHEST_NS).tolist():
        reference.record_value(value)
    binned = histogram(samples)
    assert binned.equals(reference)
    assert summary(binned) == summary(reference)


def test_empty_histogram_summary_has_only_a_zero_count() -> None:
    assert summary(new_histogram()) == {**dict.fromkeys([*PERCENTILES, "max", "min", "mean"]), "count": 0}
    assert summary(histogram(np.array([], dtype=np.int64)))["count"] == 0


def test_out_of_range_samples_are_clipped() -> None:
    figures = summary(histogram(np.array([-5, 0, 10, 2 * HIGHEST_NS], dtype=np.int64)))
    assert figures["count"] == 4
    assert figures["min"] == 1
    assert figures["p50"] == 1
    assert figures["max"] == pytest.approx(HIGHEST_NS, rel=1e-3)


def test_latency_table_in_microseconds_with_dashes_for_empty_rows() -> None:
    rows = {
        "tick-to-trade": summary(histogram(np.array([800, 1500, 25_000, 1_234_000], dtype=np.int64))),
        "idle": summary(new_histogram()),
    }
    assert latency_table(rows, title="t2t") == [
        "## t2t",
        "",
        "| | p50 (µs) | p90 (µs) | p99 (µs) | p99.9 (µs) | p99.99 (µs) | max (µs) | count |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        "| tick-to-trade | 1.50 | 1,235 | 1,235 | 1,235 | 1,235 | 1,235 | 4 |",
        "| idle | – | – | – | – | – | – | 0 |",
    ]
    assert latency_table({})[0].startswith("| | p50")


def coloured_pixels(png: Path) -> int:
    """How many pixels of a PNG are clearly coloured: the plotted curves, as axes, text and grid are grey."""
    from matplotlib.image import imread

    rgb = imread(png)[..., :3]
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 0.3).sum())


def test_percentile_plot_is_a_png_with_one_line_per_non_empty_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    curves = {
        "fast": histogram(rng.lognormal(8, 0.5, 50_000).astype(np.int64)),
        "slow": histogram(rng.lognormal(10, 1.0, 50_000).astype(np.int64)),
        "empty": new_histogram(),
    }
    path = plot_percentiles(curves, tmp_path / "t2t.png", "tick to trade")
    assert path == tmp_path / "t2t.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000
    assert coloured_pixels(path) > 1_500
    empty = plot_percentiles({"empty": new_histogram()}, tmp_path / "none.png", "nothing")
    assert empty.read_bytes().startswith(PNG_MAGIC)
    assert coloured_pixels(empty) == 0


def test_compare_flags_latencies_and_rates_that_worsened_beyond_the_threshold() -> None:
    old = {
        "date": "2026-11-01T00:00:00+00:00",
        "machine": {"cores": 2, "load_s": 1.0},
        "config": {"rate_per_s": 1000},
        "results": {
            "t2t": {"p50": 1000, "p99": 5000, "max": 9000, "count": 100_000},
            "feed": {"msgs_per_s": 1_000_000, "ns_per_msg": 100.0, "healthy": True},
        },
        "runs": [{"name": "a", "latency_us": 10.0}, {"name": "b", "latency_us": 10.0}],
    }
    new = {
        "date": "2026-12-01T00:00:00+00:00",
        "machine": {"cores": 4, "load_s": 3.0},
        "config": {"rate_per_s": 10},
        "results": {
            "t2t": {"p50": 1050, "p99": 6000, "max": 8000, "count": 50_000},
            "feed": {"msgs_per_s": 800_000, "ns_per_msg": 104.0, "healthy": False},
        },
        "runs": [{"name": "b", "latency_us": 10.4}, {"name": "a", "latency_us": 13.0}, {"name": "c", "latency_us": 1}],
    }
    changes = {change.path: change for change in compare(old, new)}
    assert set(changes) == {
        "results.t2t.p50",
        "results.t2t.p99",
        "results.t2t.max",
        "results.t2t.count",
        "results.feed.msgs_per_s",
        "results.feed.ns_per_msg",
        "runs[a].latency_us",
        "runs[b].latency_us",
    }
    assert {path for path, change in changes.items() if change.regression} == {
        "results.t2t.p99",
        "results.feed.msgs_per_s",
        "runs[a].latency_us",
    }
    assert changes["results.t2t.p99"] == Change("results.t2t.p99", 5000.0, 6000.0, 1.2, True)
    assert changes["results.t2t.count"].ratio == 0.5
    assert not changes["results.t2t.count"].regression
    assert {change.path for change in compare(old, new, threshold=0.35) if change.regression} == set()


def test_compare_by_index_without_names_and_with_raw_runs_never_flagged() -> None:
    old = {"stages": [{"p99": 100}, {"p99": 100}], "runs_msgs_per_s": [100, 100], "zero_ns": 0}
    new = {"stages": [{"p99": 100}, {"p99": 200}], "runs_msgs_per_s": [50, 100, 7], "zero_ns": 5}
    changes = {change.path: change for change in compare(old, new)}
    assert set(changes) == {"stages[0].p99", "stages[1].p99", "runs_msgs_per_s[0]", "runs_msgs_per_s[1]", "zero_ns"}
    assert [path for path, change in changes.items() if change.regression] == ["stages[1].p99", "zero_ns"]


def test_a_figure_one_run_lacks_is_listed_as_not_available_and_never_flagged() -> None:
    old = {"stages": {"decode": {"p50": 900, "count": 3}, "book": {"p50": 100}}, "gone_ns": 5, "rtt": {"ipc": {}}}
    new = {
        "stages": {"decode": {"p50": None, "count": 0}, "book": {"p50": 120}},
        "new_ns": 7,
        "rtt": {"udp": {"p50": 1}},
    }
    changes = {change.path: change for change in compare(old, new)}
    assert set(changes) == {"stages.decode.p50", "stages.decode.count", "stages.book.p50", "gone_ns", "new_ns"}
    assert changes["stages.decode.p50"] == Change("stages.decode.p50", 900.0, None, None, False)
    assert changes["gone_ns"] == Change("gone_ns", 5.0, None, None, False)
    assert changes["new_ns"] == Change("new_ns", None, 7.0, None, False)
    lines = compare_lines(list(changes.values()), "before", "after")
    assert "| stages.decode.p50 | 900 | n/a | n/a |  |" in lines
    assert "| new_ns | n/a | 7 | n/a |  |" in lines
    assert "| stages.book.p50 | 100 | 120 | +20.0% | REGRESSION |" in lines
    assert lines[-1] == "1 regression beyond 10%"


@pytest.mark.parametrize("path", [FEED, BACKTEST], ids=["feed", "backtest"])
def test_a_real_result_compared_with_itself_has_no_regressions(path: Path) -> None:
    result = load_result(path)
    changes = compare(result, result)
    assert len(changes) > 10
    assert all(change.ratio == 1.0 and not change.regression for change in changes)
    assert not any(change.path.startswith(("machine", "settings")) for change in changes)
    assert compare_lines(changes, "before", "after")[-1] == "no regressions"


def test_real_feed_figures_are_classified_by_direction() -> None:
    result = load_result(FEED)
    rates = {
        "results.decode.msgs_per_s",
        "results.decode.median_msgs_per_s",
        "results.book (pre-decoded).msgs_per_s",
        "results.book (pre-decoded).median_msgs_per_s",
        "results.decode + book.msgs_per_s",
        "results.decode + book.median_msgs_per_s",
        "baseline_python_msgs_per_s",
        "speedup_vs_python",
    }
    times = {
        f"results.{run}.{key}"
        for run in ("decode", "book (pre-decoded)", "decode + book")
        for key in ("seconds", "ns_per_msg")
    }
    slower = {change.path for change in compare(result, scaled(result, 0.75)) if change.regression}
    longer = {change.path for change in compare(result, scaled(result, 1.25)) if change.regression}
    assert slower == rates
    assert longer == times


def test_real_backtest_ratios_rates_and_counts() -> None:
    result = load_result(BACKTEST)
    slower = {change.path for change in compare(result, scaled(result, 0.75)) if change.regression}
    longer = {change.path for change in compare(result, scaled(result, 1.25)) if change.regression}
    assert "ours_over_hftbacktest.touch.best" in slower
    assert "results.ours glft, npz (L2).median_events_per_s" in slower
    assert "results.ours touch, npz (L2).ns_per_event" in longer
    assert "results.ours touch, npz (L2).load_s" in longer
    assert not any(
        "fills" in path or path.endswith((".events", "]")) or path.startswith("input") for path in slower | longer
    )


def test_compare_lines_table_and_verdict() -> None:
    changes = [Change("t2t.p99", 5000.0, 6000.0, 1.2, True), Change("feed.seconds", 0.1196, 0.1196, 1.0, False)]
    assert compare_lines(changes, "2026-11-26", "2026-12-01") == [
        "| figure | 2026-11-26 | 2026-12-01 | change | |",
        "|---|---:|---:|---:|---|",
        "| t2t.p99 | 5,000 | 6,000 | +20.0% | REGRESSION |",
        "| feed.seconds | 0.1196 | 0.1196 | +0.0% |  |",
        "",
        "1 regression beyond 10%",
    ]
    assert compare_lines(changes * 2, "a", "b", threshold=0.2)[-1] == "2 regressions beyond 20%"


def test_write_report_writes_json_markdown_and_linked_plots(tmp_path: Path) -> None:
    hist = histogram(np.random.default_rng(3).integers(1_000, 50_000, 10_000))
    result = {"benchmark": "t2t", "date": "2026-12-01T10:00:00+00:00", "results": {"t2t": summary(hist)}}
    folder = write_report(result, "t2t", ["# T2T"], str(tmp_path), curves={"loopback": {"ours": hist}})
    assert folder == tmp_path / "2026-12-01-t2t"
    assert load_result(folder / "t2t.json") == result
    assert (folder / "t2t.md").read_text() == "# T2T\n\n![loopback](t2t-loopback.png)\n"
    assert (folder / "t2t-loopback.png").read_bytes().startswith(PNG_MAGIC)
    plain = write_report(result, "plain", ["# plain"], str(tmp_path))
    assert (plain / "plain.md").read_text() == "# plain\n"
    assert sorted(p.name for p in plain.iterdir()) == ["plain.json", "plain.md"]


def test_load_result_names_the_bad_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError, match=r"missing\.json"):
        load_result(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON"):
        load_result(broken)
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match=r"list\.json.*JSON object"):
        load_result(listed)
    assert load_result(str(FEED))["benchmark"] == "feed_book"
