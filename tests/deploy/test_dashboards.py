"""The Grafana dashboards ConfigMap carries exactly the dashboards of docker/grafana/dashboards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S, REPO, render

SOURCE = REPO / "docker" / "grafana" / "dashboards"
COPIES = K8S / "components" / "monitoring" / "dashboards"
HOW_TO_SYNC = (
    "copy docker/grafana/dashboards/*.json to k8s/components/monitoring/dashboards/ and list each file "
    "under files: of the hftmm-grafana-dashboards generator in k8s/components/monitoring/kustomization.yaml"
)


APPLY_ANNOTATION_LIMIT_BYTES = 262_144  # client-side `kubectl apply` copies the object into an annotation


def config_map(name: str) -> dict[str, Any]:
    """A rendered ConfigMap of the production overlay."""
    return next(o for o in render(K8S / "overlays/production") if o["metadata"]["name"] == name)


def dashboards_config_map() -> dict[str, Any]:
    """The rendered dashboards ConfigMap."""
    return config_map("hftmm-grafana-dashboards")


def datasource_uids(node: Any) -> Iterator[str]:
    """Every ``datasource.uid`` a dashboard refers to."""
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield source["uid"]
        for value in node.values():
            yield from datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_uids(value)


def test_config_map_is_labelled_for_grafanas_sidecar() -> None:
    assert dashboards_config_map()["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_config_map_holds_every_dashboard_unchanged() -> None:
    sources = sorted(SOURCE.glob("*.json"))
    if not sources:
        pytest.skip(f"{SOURCE.relative_to(REPO)} holds no dashboards yet: nothing to compare the ConfigMap with")
    data = dashboards_config_map().get("data", {})
    assert set(data) == {p.name for p in sources}, HOW_TO_SYNC
    for path in sources:
        assert data[path.name] == path.read_text(), f"{path.name} differs: {HOW_TO_SYNC}"
        assert isinstance(json.loads(data[path.name]), dict)


def test_no_stray_dashboard_copies() -> None:
    copies = {p.name for p in COPIES.glob("*.json")}
    listed = set(dashboards_config_map().get("data", {}))
    assert copies == listed, HOW_TO_SYNC


def test_dashboards_find_their_data_source() -> None:
    data = dashboards_config_map().get("data", {})
    if not data:
        pytest.skip("no dashboards in the ConfigMap yet")
    wanted = {uid for text in data.values() for uid in datasource_uids(json.loads(text))}
    provided = yaml.safe_load(config_map("hftmm-grafana-datasource")["data"]["grafana-datasource.yaml"])
    assert wanted <= {source["uid"] for source in provided["datasources"]}


def test_dashboards_fit_a_client_side_apply() -> None:
    size = len(json.dumps(dashboards_config_map()))
    assert size < APPLY_ANNOTATION_LIMIT_BYTES, f"{size} bytes: apply with --server-side instead"
