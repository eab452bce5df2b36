"""End to end with the real daemon: a short ``hftmm live`` session, a real Prometheus scraping it, and
every PromQL expression of every dashboard panel returning data through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_live import START_S, Daemon, metric
from tests.monitoring.harness import DASHBOARDS, PrometheusServer, finite_samples, panel_queries, substitute

DATA_WAIT_S = 60.0  # a few 1 s scrapes after the node has traded
ALL = ".*"  # Grafana's "All" value of the dashboards' multi-value variables


def _traded(body: str) -> bool:
    """The node has filled orders and timed orders that market data triggered."""
    return metric(body, "hftmm_orders_filled_total") >= 2 and metric(body, "hftmm_tick_to_trade_seconds_count") > 0


def test_every_dashboard_query_returns_data_from_a_live_session(
    tmp_path: Path, start_prometheus: Callable[[list[str]], PrometheusServer]
) -> None:
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_for(_traded, START_S)
        prometheus = start_prometheus([f"127.0.0.1:{daemon.port}"])
        prometheus.wait_for(
            lambda: bool(prometheus.query("rate(hftmm_tick_to_trade_seconds_count[10s]) > 0")),
            DATA_WAIT_S,
            "tick-to-trade samples scraped twice",
        )
        stages = prometheus.api("label/stage/values")
        assert stages, "the node exports no per-stage latency"
        assignments = [{"node": ALL, "instrument": ALL, "stage": ALL}]
        assignments += [{"node": "mm-1", "instrument": symbol, "stage": stage} for symbol in ("AAA", "BBB")
                        for stage in stages]  # fmt: skip
        failures = []
        checked = 0
        for path in DASHBOARDS:
            for title, expr in panel_queries(json.loads(path.read_text())):
                for query in dict.fromkeys(substitute(expr, values) for values in assignments):
                    checked += 1
                    if not finite_samples(prometheus.query(query)):
                        failures.append(f"{path.name} / {title}: {query}")
        assert checked > 50
        assert not failures, "panel queries without data from the live daemon:\n" + "\n".join(failures)
        session = daemon.stop({})
    finally:
        daemon.kill()
    assert session.returncode == 0, session.stderr[-3000:]
