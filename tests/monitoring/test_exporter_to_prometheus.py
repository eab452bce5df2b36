"""End to end: trading nodes in child processes write metric blocks, a real Prometheus scrapes the exporter,
and every PromQL expression of every dashboard panel returns data through the HTTP API."""

from __future__ import annotations

import json
import multiprocessing
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from engine.runtime.metrics import DaemonMetrics, MetricsBlock, MetricsExporter
from tests.monitoring.harness import (
    DASHBOARDS,
    RULES_DIR,
    PrometheusServer,
    finite_samples,
    panel_queries,
    run_synthetic_node,
    substitute,
    synthetic_ticks_nb,
)

NODES = {"mm-1": ["AAPL", "MSFT"], "mm-2": ["SPY", "QQQ", "IWM"]}
STAGES = ["decode", "book", "strategy", "risk", "gateway"]
REASONS = ["position_limit", "price_band", "order_rate"]
PRODUCE_S = 40.0  # upper bound of the producers' life; the test stops them as soon as it is done
DATA_WAIT_S = 40.0  # producers started (kernels loaded from Numba's cache) and two scrapes with their data
JOIN_S = 10.0
ALL = ".*"  # Grafana's "All" value of the dashboards' multi-value variables
EXPECTED_VARIABLE_VALUES = {
    "node": set(NODES),
    "instrument": {symbol for symbols in NODES.values() for symbol in symbols},
    "stage": set(STAGES),
}
NEVER = "0001-01-01T00:00:00Z"  # lastEvaluation of a rule not evaluated yet


@pytest.fixture
def exporter() -> Iterator[tuple[MetricsExporter, list[MetricsBlock]]]:
    """An exporter on 127.0.0.1 (ephemeral port) with one block per node and the daemon's state."""
    tag = uuid.uuid4().hex[:8]
    blocks = [
        MetricsBlock.create(node, symbols, STAGES, REASONS, name=f"hftmm-metrics-test-{tag}-{node}")
        for node, symbols in NODES.items()
    ]
    daemon = DaemonMetrics()
    for node in NODES:
        daemon.set_node_up(node, True)
    with MetricsExporter(port=0, daemon=daemon) as running:
        for block in blocks:
            running.add(block)
        yield running, blocks
    for block in blocks:
        block.close()


def _assignments() -> list[dict[str, str]]:
    """Variable values to check each query with: "All", then every node with each stage and its instruments."""
    out = [{"node": ALL, "instrument": ALL, "stage": ALL}]
    for node, symbols in NODES.items():
        for k, stage in enumerate(STAGES):
            out.append({"node": node, "instrument": symbols[k % len(symbols)], "stage": stage})
    return out


def _variable_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(variable, metric selector, label) of every ``label_values(selector, label)`` variable."""
    out = []
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, f"{variable['name']}: not a label_values() query"
        out.append((variable["name"], match.group(1), match.group(2)))
    return out


def test_every_dashboard_query_returns_data(
    exporter: tuple[MetricsExporter, list[MetricsBlock]], start_prometheus: Callable[[list[str]], PrometheusServer]
) -> None:
    running, blocks = exporter
    warm = blocks[0]  # compile (or load) the producer's kernel here once, not in both children
    synthetic_ticks_nb(
        warm.node, warm.instrument_counters, warm.instrument_gauges, warm.risk_rejections, warm.histograms, 0
    )
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    children = [
        ctx.Process(target=run_synthetic_node, args=(block.name, PRODUCE_S, seed, stop), daemon=True)
        for seed, block in enumerate(blocks, start=1)
    ]
    for child in children:
        child.start()
    try:
        prometheus = start_prometheus([f"127.0.0.1:{running.port}"])
        producing = f"count(rate(hftmm_tick_to_trade_seconds_count[10s]) > 0) == {len(NODES)}"
        prometheus.wait_for(lambda: bool(prometheus.query(producing)), DATA_WAIT_S, "every node producing")

        failures = []
        checked = 0
        for path in DASHBOARDS:
            dashboard = json.loads(path.read_text())
            for title, expr in panel_queries(dashboard):
                for query in dict.fromkeys(substitute(expr, values) for values in _assignments()):
                    checked += 1
                    if not finite_samples(prometheus.query(query)):
                        failures.append(f"{path.name} / {title}: {query}")
            for name, selector, label in _variable_queries(dashboard):
                values = prometheus.api(f"label/{label}/values", **{"match[]": substitute(selector, {"node": ALL})})
                assert set(values) == EXPECTED_VARIABLE_VALUES[name], f"{path.name} variable {name}"
        assert checked > 100
        assert not failures, "panel queries without data:\n" + "\n".join(failures)

        prometheus.wait_for(
            lambda: all(rule["health"] == "ok" and rule["lastEvaluation"] != NEVER for rule in _rules(prometheus)),
            DATA_WAIT_S,
            "every alert and recording rule evaluated without error",
        )
    finally:
        stop.set()
        for child in children:
            child.join(JOIN_S)
    assert [child.exitcode for child in children] == [0] * len(children)


def _rules(prometheus: PrometheusServer) -> list[dict]:
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    expected = sum(len(group["rules"]) for path in RULES_DIR.glob("*.yml") for group in _groups(path))
    assert len(rules) == expected, rules
    return rules


def _groups(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())["groups"]
