"""Render a dashboard's data to PNG: the picture of the overview dashboard in the README.

Runs what the monitoring end-to-end test runs (synthetic trading nodes writing metric blocks from
child processes, the exporter, a real Prometheus on 127.0.0.1 scraping it every second), then asks
Prometheus for every panel's PromQL over the run with ``query_range`` and draws the panels where the
dashboard places them: time series as lines, stats as their last value. Needs the ``prometheus``
binary (scripts/test-deps.sh installs it).

    .venv/bin/python scripts/render_dashboard.py --seconds 90 -o docs/img/dashboard-overview.png
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the harness lives in the test tree

from engine.runtime.metrics import DaemonMetrics, MetricsBlock, MetricsExporter  # noqa: E402
from tests.monitoring.harness import (  # noqa: E402
    DOCKER,
    PrometheusServer,
    find_tool,
    panels,
    run_synthetic_node,
    scrape_config,
    substitute,
)

NODES = {"mm-1": ["AAPL", "MSFT"], "mm-2": ["SPY", "QQQ", "IWM"]}
STAGES = ["decode", "book", "strategy", "risk", "gateway"]
REASONS = ["position_limit", "price_band", "order_rate"]
ALL = {"node": ".*", "instrument": ".*", "stage": ".*"}
ROW_UNITS = 0.42  # inches per Grafana grid row
WARM_UP_S = 15.0  # run this long before the plotted window: the dashboards' rates look back 10 s


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or "value"


def _collect(prometheus: PrometheusServer, dashboard: dict[str, Any], start: float, end: float) -> list[dict]:
    """Every non-row panel with its series: [(legend, times relative to end in s, values)]."""
    out = []
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        series = []
        for target in panel["targets"]:
            data = prometheus.api(
                "query_range", query=substitute(target["expr"], ALL), start=str(start), end=str(end), step="1"
            )
            for result in data["result"]:
                times = [float(t) - end for t, _v in result["values"]]
                values = [float(v) for _t, v in result["values"]]
                series.append((_legend(target.get("legendFormat", ""), result["metric"]), times, values))
        out.append({"panel": panel, "series": series})
    return out


def _scale(panel: dict[str, Any]) -> tuple[float, str]:
    """Seconds are drawn in microseconds; other units as they are."""
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    return (1e6, "us") if unit == "s" else (1.0, {"ops": "/s", "Hz": "/s", "currencyUSD": "$"}.get(unit, ""))


def draw(dashboard: dict[str, Any], collected: list[dict], out: Path) -> None:
    """Lay the panels out on a 24-column grid as the dashboard does and write the PNG."""
    row_ys = sorted(p["gridPos"]["y"] for p in panels(dashboard) if p["type"] == "row")

    def top(panel: dict[str, Any]) -> int:  # grid rows above the panel, row headers left out
        return panel["gridPos"]["y"] - sum(y < panel["gridPos"]["y"] for y in row_ys)

    rows = max(top(p["panel"]) + p["panel"]["gridPos"]["h"] for p in collected)
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(20, rows * ROW_UNITS))
    grid = fig.add_gridspec(rows, 24, top=0.95, bottom=0.03, hspace=0.4, wspace=1.2)
    for item in collected:
        panel, series = item["panel"], item["series"]
        pos = panel["gridPos"]
        y = top(panel)
        # the panel's first grid row is left free for its title and the tick labels of the panel above
        ax = fig.add_subplot(grid[y + 1 : y + pos["h"], pos["x"] : pos["x"] + pos["w"]])
        factor, unit = _scale(panel)
        title = re.sub(r"\$\w+", "all stages", panel["title"])  # a repeated panel, drawn once for every value
        ax.set_title(title + (f" ({unit})" if unit else ""), fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        if panel["type"] == "stat":
            ax.axis("off")
            texts = [f"{legend}: {_stat_text(panel, values[-1])}" for legend, _t, values in series if values]
            ax.text(0.02, 0.5, "\n".join(texts) or "no data", fontsize=9, va="center", transform=ax.transAxes)
            continue
        if panel["type"] == "heatmap":
            _heatmap(ax, series)
            continue
        for legend, times, values in series:
            ax.plot(times, [v * factor for v in values], linewidth=1, label=legend)
        ax.legend(fontsize=6, loc="upper left", ncols=3, framealpha=0.3)
    fig.suptitle(
        f"{dashboard['title']}: synthetic nodes {', '.join(NODES)} scraped by a real Prometheus (x: seconds)",
        fontsize=12,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80, bbox_inches="tight")
    plt.close(fig)
    with Image.open(buffer) as image:  # a 64-colour palette keeps the picture small in the repository
        image.convert("RGB").quantize(64).save(out, optimize=True)


def _heatmap(ax: plt.Axes, series: list[tuple[str, list[float], list[float]]]) -> None:
    """Cumulative ``le`` buckets (legend ``{{le}}``) as a time x bucket heat map of per-bucket rates."""
    ordered = sorted(series, key=lambda item: float(item[0]))  # "+Inf" parses as inf
    width = min(len(values) for _le, _t, values in ordered)
    cumulative = np.array([values[-width:] for _le, _t, values in ordered])
    ax.pcolormesh(
        ordered[0][1][-width:], np.arange(len(ordered)), np.diff(cumulative, axis=0, prepend=0), cmap="inferno"
    )
    ticks = range(0, len(ordered), 5)
    ax.set_yticks(list(ticks), [_le_label(ordered[i][0]) for i in ticks])


def _le_label(le: str) -> str:
    value = float(le)
    return le if not math.isfinite(value) else f"{value * 1e6:g} us" if value < 1e-3 else f"{value * 1e3:g} ms"


def _stat_text(panel: dict[str, Any], value: float) -> str:
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        text = mapping["options"].get(str(int(value)) if math.isfinite(value) else "", {}).get("text")
        if text:
            return text
    return f"{value:.4g}"


def main(argv: list[str] | None = None) -> int:
    """Run the synthetic session, query Prometheus, write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="length of the synthetic session")
    parser.add_argument("--dashboard", default="overview.json", help="file under docker/grafana/dashboards")
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs/img/dashboard-overview.png")
    args = parser.parse_args(argv)
    binary = find_tool("prometheus")
    if binary is None:
        print("render_dashboard: prometheus is not installed (scripts/test-deps.sh installs it)", file=sys.stderr)
        return 2
    dashboard = json.loads((DOCKER / "grafana/dashboards" / args.dashboard).read_text())
    tag = uuid.uuid4().hex[:8]
    blocks = [
        MetricsBlock.create(n, s, STAGES, REASONS, name=f"hftmm-metrics-render-{tag}-{n}") for n, s in NODES.items()
    ]
    daemon = DaemonMetrics()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    children = [
        ctx.Process(target=run_synthetic_node, args=(b.name, args.seconds + WARM_UP_S + 30, seed, stop), daemon=True)
        for seed, b in enumerate(blocks, start=1)
    ]
    with tempfile.TemporaryDirectory(prefix="hftmm-render-") as workdir, MetricsExporter(port=0, daemon=daemon) as exp:
        for block in blocks:
            exp.add(block)
        prometheus = PrometheusServer(binary, scrape_config([f"127.0.0.1:{exp.port}"]), Path(workdir))
        try:
            for child in children:
                child.start()
            for node in NODES:
                daemon.set_node_up(node, True)
            start = time.time() + WARM_UP_S  # the first rate windows fill up
            time.sleep(args.seconds + WARM_UP_S)
            end = time.time()
            collected = _collect(prometheus, dashboard, start, end)
        finally:
            stop.set()
            for child in children:
                child.join(10)
            prometheus.stop()
    for block in blocks:
        block.close()
    draw(dashboard, collected, args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
