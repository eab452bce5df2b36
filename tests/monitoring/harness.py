"""Monitoring test harness: a real Prometheus server, the dashboards' PromQL, and a synthetic trading node.

Used by the fixtures in ``conftest.py`` and by ``scripts/render_dashboard.py``. Every wait here is
bounded in attempts and in time.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numba import njit

from engine.runtime import metrics as M
from engine.runtime.metrics import MetricsBlock, observe_nb

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
RULES_DIR = DOCKER / "prometheus" / "rules"
RULE_TESTS = DOCKER / "prometheus" / "tests" / "hftmm_test.yml"
DASHBOARDS = sorted((DOCKER / "grafana" / "dashboards").glob("*.json"))
JOB = "hftmm"
LOOPBACK = "127.0.0.1"
READY_WAIT_S = 30.0
POLL_S = 0.25
# What the dashboards' Grafana macros become in tests: a 1 s scrape keeps ten samples in a rate window.
MACROS = {"$__rate_interval": "10s", "$__interval": "1s", "$__range": "1m"}


def find_tool(name: str) -> str | None:
    """Path of a Prometheus binary (``prometheus`` or ``promtool``) on PATH, or None."""
    return shutil.which(name)


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def scrape_config(targets: list[str], interval_s: int = 1) -> dict[str, Any]:
    """The project's docker/prometheus/prometheus.yml, pointed at ``targets`` with ``interval_s`` intervals.

    Rule files become absolute paths, so the server also loads and evaluates the project's alert rules."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = f"{interval_s}s"
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / pattern) for pattern in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    job["static_configs"] = [{"targets": targets}]
    return config


class PrometheusServer:
    """A real ``prometheus`` process on 127.0.0.1 with its own port, config and data dir."""

    def __init__(self, binary: str, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={LOOPBACK}:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.wait_for(self._ready, READY_WAIT_S, "Prometheus ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raises on an API error."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector (a scalar becomes a one-sample vector)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def wait_for(self, condition: Callable[[], bool], wait_s: float, what: str) -> None:
        """Poll ``condition`` every POLL_S until true; bounded in time and in attempts."""
        deadline = time.monotonic() + wait_s
        for _ in range(int(wait_s / POLL_S) + 1):
            if condition():
                return
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        raise AssertionError(f"{what}: not reached within {wait_s} s\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (kill it when it does not stop within 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def finite_samples(result: list[dict[str, Any]]) -> list[float]:
    """The finite values of an instant-query result."""
    values = [float(sample["value"][1]) for sample in result]
    return [v for v in values if math.isfinite(v)]


# --- dashboards ---------------------------------------------------------------------------------------
def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query target of every panel."""
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]


def variable_names(expr: str) -> set[str]:
    """Dashboard variables used by an expression (``$name`` or ``${name}``), Grafana macros left out."""
    return {m for m in re.findall(r"\$\{?(\w+)\}?", expr) if not m.startswith("__")}


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's macros and the given variable values filled in."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


# --- a synthetic trading node ----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _seed_nb(seed):
    np.random.seed(seed)


@njit(cache=True, nogil=True)
def synthetic_ticks_nb(node, counters, gauges, risk, histograms, ticks):
    """Simulate ``ticks`` market-data packets of a market-making node, writing what its loop would.

    Stage latencies are log-normal (medians of a few hundred ns to a few us), tick-to-trade is their
    sum; about one tick in ten sends an order, fills move the position and PnL, and a gap opens now
    and then and is recovered a few calls later.
    """
    n_inst = counters.shape[0]
    n_stages = histograms.shape[0] - 1
    for _ in range(ticks):
        node[M.N_MD_PACKETS] += 1
        node[M.N_MD_MESSAGES] += 1 + np.random.poisson(3.0)
        node[M.N_DUTY_CYCLES] += 1 + np.random.poisson(50.0)
        i = np.random.randint(n_inst)
        counters[i, M.I_BOOK_UPDATES] += 1 + np.random.poisson(2.0)
        total_ns = 0
        for s in range(n_stages):
            ns = np.int64(np.exp(np.random.normal(6.0 + 0.4 * s, 0.5)))
            observe_nb(histograms[1 + s], ns)
            total_ns += ns
        observe_nb(histograms[M.HIST_TICK_TO_TRADE], total_ns)
        if total_ns > node[M.N_MAX_DUTY_CYCLE_NS]:
            node[M.N_MAX_DUTY_CYCLE_NS] = total_ns
        if np.random.random() < 0.1:
            if np.random.random() < 0.05:
                risk[i, np.random.randint(risk.shape[1])] += 1
                continue
            counters[i, M.I_ORDERS_SENT] += 1
            if np.random.random() < 0.01:
                node[M.N_AERON_BACK_PRESSURE] += 1
            if np.random.random() < 0.02:
                counters[i, M.I_ORDERS_REJECTED] += 1
                continue
            counters[i, M.I_ORDERS_ACCEPTED] += 1
            if np.random.random() < 0.3:
                counters[i, M.I_ORDERS_FILLED] += 1
                side = 1.0 if np.random.random() < 0.5 else -1.0
                gauges[i, M.G_POSITION] += 100.0 * side
                gauges[i, M.G_PNL] += np.random.normal(0.5, 3.0)
            else:
                counters[i, M.I_ORDERS_CANCELED] += 1
        gauges[i, M.G_QUOTED_SPREAD_TICKS] = 1.0 + np.random.poisson(1.0)
    if node[M.N_MD_MISSING] > 0:
        node[M.N_MD_MISSING] = 0  # recovered by the next call
    elif np.random.random() < 0.02:
        node[M.N_MD_GAPS] += 1
        node[M.N_MD_MISSING] = 1 + np.random.poisson(20.0)


def run_synthetic_node(block_name: str, seconds: float, seed: int, stop: Any) -> None:
    """Child-process entry: drive the block ``block_name`` for ``seconds`` or until ``stop`` (an Event) is set.

    About 50 batches a second of a few hundred ticks, sleeping in between, so the producer costs little CPU."""
    block = MetricsBlock.attach(block_name)
    _seed_nb(seed)
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds * 100) + 1):
        if stop.is_set() or time.monotonic() > deadline:
            break
        synthetic_ticks_nb(
            block.node, block.instrument_counters, block.instrument_gauges, block.risk_rejections, block.histograms, 200
        )
        time.sleep(0.02)
    block.close()
