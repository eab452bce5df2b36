"""Reporting shared by the latency benchmarks: HDR histograms, percentile tables and plots, result comparison.

Latencies are integer nanoseconds throughout; tables and plots show microseconds.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.machine import write_results

PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9, "p9999": 99.99}
HIGHEST_NS: int = 60 * 1_000_000_000

_DASH = "–"


def new_histogram() -> HdrHistogram:
    """An empty histogram of 1 ns .. HIGHEST_NS at 3 significant digits (0.1% error on any figure)."""
    return HdrHistogram(1, HIGHEST_NS, 3)


def histogram(samples_ns: np.ndarray) -> HdrHistogram:
    """A histogram of integer nanosecond samples, clipped to 1 .. HIGHEST_NS.

    Samples are first rounded down to the lowest value of their HDR bucket, which leaves every figure unchanged,
    so a million samples cost one ``record_value`` call per occupied bucket rather than one per sample.
    """
    hist = new_histogram()
    values = np.clip(np.asarray(samples_ns, dtype=np.int64), 1, HIGHEST_NS)
    # a value of b bits lies in a bucket of width 2**(b - bits), where 2**bits is the histogram's sub-bucket count
    bits = hist.sub_bucket_half_count_magnitude + 1 + hist.unit_magnitude
    shift = np.maximum(np.frexp(values.astype(np.float64))[1] - bits, hist.unit_magnitude)
    buckets, counts = np.unique((values >> shift) << shift, return_counts=True)
    for value, count in zip(buckets.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    return hist


def summary(hist: HdrHistogram) -> dict[str, int | None]:
    """The percentiles, max, min, mean (rounded) and count of ``hist`` in ns; all but count are None when empty."""
    count = hist.get_total_count()
    if not count:
        return {**dict.fromkeys(PERCENTILES), "max": None, "min": None, "mean": None, "count": 0}
    at = hist.get_percentile_to_value_dict(list(PERCENTILES.values()))
    return {
        **{key: at[level] for key, level in PERCENTILES.items()},
        "max": hist.get_max_value(),
        "min": hist.get_min_value(),
        "mean": round(hist.get_mean_value()),
        "count": count,
    }


def _micros(ns: int | None) -> str:
    """``ns`` in microseconds to about three significant digits, or a dash when there is no figure."""
    if ns is None:
        return _DASH
    us = ns / 1000
    decimals = 0 if us >= 100 else 1 if us >= 10 else 2 if us >= 1 else 3
    return f"{us:,.{decimals}f}"


def latency_table(rows: dict[str, dict], title: str = "") -> list[str]:
    """Markdown lines of one row per name of ``summary`` dicts: percentiles and max in µs, then the count.

    A non-empty ``title`` becomes a ``##`` heading above the table.
    """
    columns = [*PERCENTILES, "max"]
    labels = [f"p{level:g}" for level in PERCENTILES.values()] + ["max"]
    lines = [f"## {title}", ""] if title else []
    lines.append("| | " + " | ".join(f"{label} (µs)" for label in labels) + " | count |")
    lines.append("|---|" + "---:|" * (len(columns) + 1))
    for name, figures in rows.items():
        cells = [_micros(figures.get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {figures.get('count', 0):,} |")
    return lines


# x positions of the percentile plot: 1 / (1 - p), so each extra nine of the percentile is one decade
_TICKS = {"0%": 1.0, "90%": 10.0, "99%": 100.0, "99.9%": 1e3, "99.99%": 1e4, "99.999%": 1e5}
_RIGHT_EDGE = 1e6  # 99.9999%: where the 100th percentile is drawn
_FLOOR_US = 0.1  # the lowest latency a plot shows


def plot_percentiles(curves: dict[str, HdrHistogram], path: Path, title: str) -> Path:
    """Draw latency (µs, log) against percentile (log of 1 / (1 - p)) for each non-empty histogram into a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, hist in curves.items():
        if not hist.get_total_count():
            continue
        # 5 points per halving of the distance to 100%, up to the resolution of the sample count, then the max;
        # one pass over the counts (the library's percentile iterator walks every sub-bucket: seconds per curve)
        halvings = max(1, math.ceil(math.log2(hist.get_total_count()))) + 1
        levels = [100 * (1 - 2 ** (-i / 5)) for i in range(5 * halvings)]
        values = hist.get_percentile_to_value_dict(levels)
        steps = [(level, values[level]) for level in sorted(values)] + [(100.0, hist.get_max_value())]
        x = [1 / max(1 - level / 100, 1 / _RIGHT_EDGE) for level, _ in steps]
        ax.plot(x, [value / 1000 for _, value in steps], label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ax.lines:  # clipped zeros (1 ns) would stretch the axis three decades below anything of interest
        ax.set_ylim(bottom=max(ax.get_ylim()[0], _FLOOR_US))
    ax.set_xlim(1, _RIGHT_EDGE)
    ax.set_xticks(list(_TICKS.values()), list(_TICKS))
    ax.minorticks_off()
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if ax.lines:
        ax.legend()
    fig.savefig(path, dpi=100)
    return Path(path)


@dataclass(frozen=True)
class Change:
    """One figure of two results; ``regression`` when it got worse beyond the threshold. A figure one of the runs
    lacks (an empty histogram has no percentiles) is None there, and so is its ratio."""

    path: str
    old: float | None
    new: float | None
    ratio: float | None  # new / old
    regression: bool


# subtrees that describe the run rather than measure it
_SKIPPED = re.compile(r"machine|date|(.*_)?(config|settings|params|parameters)")
# a list of dicts is matched by the first of these keys that every item carries with distinct values
_ITEM_KEYS = ("name", "label", "strategy")
_PER_SECOND = re.compile(r"(^|_)per_s(ec|econd)?($|_)")
_LATENCY_STATS = {*PERCENTILES, "max", "min", "mean", "median"}
_STATS = {*_LATENCY_STATS, "best", "worst"}
_HIGHER, _LOWER, _NEUTRAL = 1, -1, 0


def _named_direction(key: str) -> int:
    """Whether the figure a key names is better higher (rates, speedups, ratios) or lower (times), else neutral."""
    key = key.lower()
    if _PER_SECOND.search(key) or any(word in key for word in ("throughput", "speedup", "ratio", "_over_")):
        return _HIGHER
    if (
        key == "seconds"
        or key.startswith(("ns_per_", "us_per_", "ms_per_"))
        or key.endswith(("_ns", "_us", "_ms", "_s"))
    ):
        return _LOWER
    return _NEUTRAL


def _direction(parts: tuple[str, ...]) -> int:
    """The direction of the leaf at ``parts``.

    A named figure (``msgs_per_s``, ``ns_per_msg``, ``load_s``) decides by its own name. A statistic (``p99``,
    ``max``, ``median``, ``best``) takes the direction of its nearest named ancestor, so ``msgs_per_s.max`` is a
    rate and ``ours_over_theirs.best`` a ratio; with none, a percentile, max, min, mean or median is a latency.
    Items of a list of numbers are raw runs, informational like any other leaf (counts, sizes).
    """
    leaf = parts[-1]
    if leaf.startswith("["):
        return _NEUTRAL
    if leaf not in _STATS:
        return _named_direction(leaf)
    for key in reversed(parts[:-1]):
        if not key.startswith("[") and (direction := _named_direction(key)):
            return direction
    return _LOWER if leaf in _LATENCY_STATS else _NEUTRAL


def _pairs(old: list, new: list) -> Iterator[tuple[str, object, object]]:
    """Items of two lists paired by a shared name key (see ``_ITEM_KEYS``) when both lists have one, else by index."""
    for key in _ITEM_KEYS:
        names = [[item.get(key) if isinstance(item, dict) else None for item in items] for items in (old, new)]
        if all(None not in found and len(set(map(str, found))) == len(found) for found in names):
            by_name = {str(item[key]): item for item in new}
            for item in old:
                if (match := by_name.get(str(item[key]))) is not None:
                    yield f"[{item[key]}]", item, match
            return
    for index, (old_item, new_item) in enumerate(zip(old, new, strict=False)):
        yield f"[{index}]", old_item, new_item


def _number(value: object) -> float | None:
    """``value`` as a figure: a float for a number (bools are not), else None."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _leaves(
    old: object, new: object, parts: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], float | None, float | None]]:
    """Every numeric leaf (bools excluded) of either tree, with its path, where the other tree has the same leaf
    or lacks it (None there: missing, or None as an empty histogram's percentiles are). Subtrees only one tree
    has (a transport one run did not measure) are left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in {**old, **new}:
            if _SKIPPED.fullmatch(str(key).lower()):
                continue
            if key in old and key in new:
                yield from _leaves(old[key], new[key], (*parts, str(key)))
            elif _number(old.get(key)) is not None or _number(new.get(key)) is not None:
                yield (*parts, str(key)), _number(old.get(key)), _number(new.get(key))
    elif isinstance(old, list) and isinstance(new, list):
        for label, old_item, new_item in _pairs(old, new):
            yield from _leaves(old_item, new_item, (*parts, label))
    else:
        old_value, new_value = _number(old), _number(new)
        figures = (old is None or old_value is not None) and (new is None or new_value is not None)
        if figures and (old_value is not None or new_value is not None):
            yield parts, old_value, new_value


def compare(old: dict, new: dict, threshold: float = 0.10) -> list[Change]:
    """Every numeric figure of the results, flagged when it worsened by more than ``threshold``.

    Latencies (lower is better) regress when ``new > old * (1 + threshold)``, rates and ratios (higher is better)
    when ``new < old * (1 - threshold)``; counts, sizes and other leaves are listed but never flagged (see
    ``_direction``), and so is a figure one result lacks (None on its side). ``machine``, ``date`` and parameter
    subtrees (``config``, ``settings``, ``*_params``) are skipped. Lists of dicts are matched by their ``name``,
    ``label`` or ``strategy`` key when every item has a distinct one, otherwise by index; paths read like
    ``results.decode.msgs_per_s`` or ``runs[fast].p99``.
    """
    changes = []
    for parts, old_value, new_value in _leaves(old, new, ()):
        path = "".join(part if part.startswith("[") else f".{part}" for part in parts).lstrip(".")
        if old_value is None or new_value is None:
            changes.append(Change(path, old_value, new_value, None, False))
            continue
        ratio = new_value / old_value if old_value else 1.0 if new_value == old_value else math.inf
        direction = _direction(parts)
        regression = (direction == _LOWER and ratio > 1 + threshold) or (direction == _HIGHER and ratio < 1 - threshold)
        changes.append(Change(path, old_value, new_value, ratio, regression))
    return changes


NOT_AVAILABLE = "n/a"  # a figure one of the compared runs lacks


def _figure(value: float | None) -> str:
    """A figure as written in the result: whole numbers with thousands separators, others to six digits."""
    if value is None:
        return NOT_AVAILABLE
    return f"{int(value):,}" if value.is_integer() else f"{value:.6g}"


def compare_lines(changes: list[Change], old_label: str, new_label: str, threshold: float = 0.10) -> list[str]:
    """Markdown table of ``changes`` (figure, old, new, change in %, flag) and a one-line verdict.

    ``threshold`` is the one given to ``compare``; it only words the verdict.
    """
    lines = [f"| figure | {old_label} | {new_label} | change | |", "|---|---:|---:|---:|---|"]
    for change in changes:
        if change.ratio is None:
            percent = NOT_AVAILABLE
        else:
            percent = f"{(change.ratio - 1) * 100:+.1f}%" if math.isfinite(change.ratio) else _DASH
        flag = "REGRESSION" if change.regression else ""
        lines.append(f"| {change.path} | {_figure(change.old)} | {_figure(change.new)} | {percent} | {flag} |")
    regressions = sum(change.regression for change in changes)
    plural = "" if regressions == 1 else "s"
    verdict = f"{regressions} regression{plural} beyond {threshold:.0%}" if regressions else "no regressions"
    return [*lines, "", verdict]


def write_report(
    result: dict, name: str, lines: list[str], out_dir: str, curves: dict[str, dict[str, HdrHistogram]] | None = None
) -> Path:
    """Write the result like ``write_results`` plus a linked percentile plot per entry of ``curves``; return the folder.

    Each entry (plot name -> histograms) becomes ``<name>-<plot name>.png`` beside the JSON and the Markdown.
    """
    pngs = {plot_name: f"{name}-{plot_name}.png" for plot_name in curves or {}}
    links = [f"![{plot_name}]({png})" for plot_name, png in pngs.items()]
    folder = write_results(result, name, [*lines, "", *links] if links else lines, out_dir)
    for plot_name, png in pngs.items():
        plot_percentiles(curves[plot_name], folder / png, f"{name}: {plot_name}")
    return folder


def load_result(path: str | Path) -> dict:
    """A result JSON read back; ValueError naming the file when it is missing, unreadable or not a JSON object."""
    try:
        result = json.loads(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"cannot read result file {path}: {error.strerror or error}") from error
    except ValueError as error:  # bad JSON or bad UTF-8
        raise ValueError(f"result file {path} is not valid JSON: {error}") from error
    if not isinstance(result, dict):
        raise ValueError(f"result file {path} does not hold a JSON object")
    return result
