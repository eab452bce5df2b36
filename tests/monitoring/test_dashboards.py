"""docker/grafana and docker-compose.yml: dashboards that Grafana's models accept and that only use real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.runtime import metrics as M
from engine.runtime.metrics import catalog
from tests.monitoring.harness import DASHBOARDS, DOCKER, REPO, panel_queries, panels, variable_names

DATASOURCE_UID = "hftmm-prometheus"
GRID_WIDTH = 24


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _lost(original: Any, back: Any, path: str = "") -> list[str]:
    """Where ``back`` (a model round trip) drops a key of ``original`` or changes a value."""
    if isinstance(original, dict) and isinstance(back, dict):
        lost = []
        for key, value in original.items():
            lost += _lost(value, back[key], f"{path}.{key}") if key in back else [f"{path}.{key} dropped"]
        return lost
    if isinstance(original, list) and isinstance(back, list) and len(original) == len(back):
        lost = []
        for i, (a, b) in enumerate(zip(original, back, strict=True)):
            lost += _lost(a, b, f"{path}[{i}]")
        return lost
    return [] if original == back else [f"{path}: {original!r} became {back!r}"]


def _exported_series() -> set[str]:
    """Series names the exporter produces, plus the ones Prometheus and the rules add."""
    names = {"up", "hftmm:pnl:sum_by_node"}
    for name, kind, _labels, _help in catalog():
        names.update([f"{name}_bucket", f"{name}_sum", f"{name}_count"] if kind == "histogram" else [name])
    return names


def test_both_dashboards_exist_with_unique_uids() -> None:
    uids = {_load(path)["uid"] for path in DASHBOARDS}
    assert {path.name for path in DASHBOARDS} == {"overview.json", "latency.json"}
    assert uids == {"hftmm-overview", "hftmm-latency"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_round_trips_through_grafana_models(path: Path) -> None:
    sdk = pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk is not installed (dev extra)")
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

    assert sdk is not None
    register_default_plugins()  # panel options and Prometheus queries decode into their typed models
    original = _load(path)
    model = Dashboard.from_json(original)
    back = json.loads(json.dumps(model, cls=JSONEncoder))
    assert _lost(original, back) == []  # every key is known to the models and keeps its value (defaults may be added)
    for panel in model.panels or []:
        if isinstance(panel, Panel):
            assert type(panel.options).__module__.endswith(f".models.{panel.type_val}"), panel.title
            assert all(type(t).__module__.endswith(".models.prometheus") for t in panel.targets), panel.title


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_are_laid_out_and_use_the_provisioned_datasource(path: Path) -> None:
    dashboard = _load(path)
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert panel["targets"] and all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_use_only_defined_variables_and_exported_metrics(path: Path) -> None:
    dashboard = _load(path)
    defined = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert "node" in defined
    known = _exported_series()
    for title, expr in panel_queries(dashboard):
        assert variable_names(expr) <= defined, f"{title}: {expr}"
        metrics = set(re.findall(r"\bhftmm_\w+|\bup(?=\{)", re.sub(r'"[^"]*"', "", expr)))
        assert metrics and metrics <= known, f"{title}: {sorted(metrics - known)} in {expr}"


def test_overview_has_the_panels_issue_7_asks_for() -> None:
    (overview,) = [_load(path) for path in DASHBOARDS if path.name == "overview.json"]
    exprs = " ".join(expr for _title, expr in panel_queries(overview))
    for needle in (
        "hftmm_tick_to_trade_seconds_bucket",
        "hftmm_md_messages_total",
        "hftmm_md_gaps_total",
        "hftmm_orders_sent_total",
        "hftmm_orders_filled_total",
        "hftmm_orders_rejected_total",
        "hftmm_risk_rejections_total",
        "hftmm_position",
        "hftmm_pnl",
        "hftmm_kill_switch_engaged",
        "hftmm_node_up",
    ):
        assert needle in exprs
    assert {v["name"] for v in overview["templating"]["list"]} == {"node", "instrument"}


def test_latency_dashboard_has_per_stage_heatmaps_and_back_pressure() -> None:
    (latency,) = [_load(path) for path in DASHBOARDS if path.name == "latency.json"]
    heatmaps = [panel for panel in panels(latency) if panel["type"] == "heatmap"]
    assert any(panel.get("repeat") == "stage" for panel in heatmaps)
    assert all(target["format"] == "heatmap" for panel in heatmaps for target in panel["targets"])
    assert "hftmm_aeron_back_pressure_total" in " ".join(expr for _title, expr in panel_queries(latency))


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    grafana_mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"])
    (provider,) = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/hftmm.yml").read_text())["providers"]
    assert grafana_mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (source,) = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["url"] == "http://prometheus:9090"
    prometheus_mounts = [volume.split(":")[0] for volume in compose["services"]["prometheus"]["volumes"]]
    for host_path in [*grafana_mounts, *prometheus_mounts]:
        if host_path.startswith("./"):
            assert (DOCKER / host_path).exists(), host_path


def test_compose_runs_the_live_daemon_and_prometheus_scrapes_it() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    engine = compose["services"]["engine"]
    assert engine["command"] == ["live", "--config", "/etc/hftmm/live.toml"]  # after the image's `hftmm` entrypoint
    assert re.search(r'^ENTRYPOINT \["hftmm"\]$', (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert engine["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert str(M.DEFAULT_PORT) in engine["expose"]
    scrape = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"engine:{M.DEFAULT_PORT}"]}]
    assert set(compose["services"]) == {"engine", "prometheus", "grafana"}


def test_metrics_doc_lists_every_exported_family() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    rows = dict(re.findall(r"^\| `(hftmm_\w+)` \| (\w+) \|", doc, flags=re.MULTILINE))
    assert rows == {name: kind for name, kind, _labels, _help in catalog()}
