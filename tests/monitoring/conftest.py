"""Fixtures of the monitoring tests: the Prometheus binaries and a real Prometheus server to scrape with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.monitoring.harness import PrometheusServer, find_tool, scrape_config

INSTALL_HINT = "install Debian's prometheus package (scripts/test-deps.sh does it as root)"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool; skips with the reason when it is not installed."""
    path = find_tool("promtool")
    if path is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """Path of the prometheus server; skips with the reason when it is not installed."""
    path = find_tool("prometheus")
    if path is None:
        pytest.skip(f"prometheus is not installed: {INSTALL_HINT}")
    return path


@pytest.fixture
def start_prometheus(prometheus_binary: str, tmp_path: Path) -> Iterator[Callable[[list[str]], PrometheusServer]]:
    """Start real Prometheus servers on 127.0.0.1 (free port, temp data dir, 1 s scrape and rule intervals).

    ``start_prometheus(["127.0.0.1:PORT"])`` loads docker/prometheus/prometheus.yml and its alert rules,
    scrapes the given exporters as job ``hftmm`` and returns once the server is ready; every server
    started is stopped after the test."""
    servers: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        server = PrometheusServer(prometheus_binary, scrape_config(targets), tmp_path / f"prometheus-{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
