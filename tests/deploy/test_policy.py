"""Policies of the rendered manifests: Guaranteed trading pods, nobody root, the daemon's contract."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import (
    K8S,
    all_objects,
    containers,
    cpu_millis,
    guaranteed_errors,
    kustomizations,
    name_of,
    pod_templates,
    quantity_bytes,
    render,
)

DAEMON_OVERLAYS = ("base", "overlays/sim", "overlays/production")
TRADING_LABEL = ("app.kubernetes.io/component", "trading")
IMAGE_UID = 10001  # USER of docker/Dockerfile
ALLOWED_CAPABILITIES = {"IPC_LOCK", "SYS_NICE"}
METRICS_PORT = 9108
# Measured /dev/shm use of one Aeron UDP publication plus subscription at Aeron's default 16 MiB
# terms: cnc.dat 48,238,592 + two log buffers of 50,335,744 + loss-report.dat 1,048,576 bytes.
AERON_DEFAULT_TERMS_SHM_BYTES = 149_958_656


def trading_templates(directory: str) -> list[tuple[str, dict[str, Any]]]:
    """Pod templates labelled as trading pods in one rendered kustomization; at least one."""
    key, value = TRADING_LABEL
    found = [
        (where, t)
        for obj in render(K8S / directory)
        for where, t in pod_templates(obj)
        if t.get("metadata", {}).get("labels", {}).get(key) == value
    ]
    assert found, f"{directory} renders no trading pod"
    return found


def daemon(directory: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod template, main container) of the hftmm-live Deployment of a rendered kustomization."""
    deployment = next(o for o in render(K8S / directory) if name_of(o) == "Deployment/hftmm-live")
    template = deployment["spec"]["template"]
    return template, next(c for c in template["spec"]["containers"] if c["name"] == "hftmm")


def volume_at(template: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The pod volume a container mounts at ``path``."""
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    return next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])


def live_config(directory: str) -> dict[str, Any]:
    """The live.toml the daemon of a rendered kustomization reads, parsed."""
    template, container = daemon(directory)
    assert container["args"] == ["live", "--config", "/etc/hftmm/live.toml"]
    volume = volume_at(template, container, "/etc/hftmm")
    config_map = next(o for o in render(K8S / directory) if name_of(o) == f"ConfigMap/{volume['configMap']['name']}")
    return tomllib.loads(config_map["data"]["live.toml"])


@pytest.mark.parametrize("directory", DAEMON_OVERLAYS)
def test_every_trading_container_is_guaranteed_with_integer_cpus(directory: str) -> None:
    errors = [e for where, t in trading_templates(directory) for e in guaranteed_errors(where, t)]
    assert not errors, "\n".join(errors)
    _, container = daemon(directory)
    assert quantity_bytes(container["resources"]["limits"]["hugepages-2Mi"]) > 0


def test_guaranteed_check_catches_fractional_cpus_and_unequal_memory() -> None:
    template = {
        "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}, "limits": {"cpu": "1500m"}}}
            ]
        }
    }
    errors = guaranteed_errors("pod", template)
    assert any("whole number" in e for e in errors)
    assert any("memory" in e for e in errors)


def test_no_container_runs_as_root() -> None:
    errors, checked = [], 0
    for directory, obj in all_objects():
        for where, template in pod_templates(obj):
            pod = template["spec"].get("securityContext", {})
            for c in containers(template):
                checked += 1
                ctx = {**pod, **c.get("securityContext", {})}
                name = f"{directory.relative_to(K8S)}: {where} container {c['name']}"
                if ctx.get("runAsNonRoot") is not True:
                    errors.append(f"{name}: runAsNonRoot is not true")
                if ctx.get("runAsUser") != IMAGE_UID or ctx.get("runAsGroup", IMAGE_UID) == 0:
                    errors.append(f"{name}: runs as {ctx.get('runAsUser')}:{ctx.get('runAsGroup')}, not {IMAGE_UID}")
                if ctx.get("allowPrivilegeEscalation") is not False:
                    errors.append(f"{name}: allowPrivilegeEscalation is not false")
                if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
                    errors.append(f"{name}: does not drop ALL capabilities")
    assert not errors, "\n".join(errors)
    assert checked >= 5, f"only {checked} containers found in {kustomizations()}"


@pytest.mark.parametrize("directory", DAEMON_OVERLAYS)
def test_trading_containers_have_a_read_only_root_and_only_the_needed_capabilities(directory: str) -> None:
    for where, template in trading_templates(directory):
        for c in containers(template):
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, f"{where} {c['name']}"
            assert set(ctx["capabilities"].get("add", [])) <= ALLOWED_CAPABILITIES, f"{where} {c['name']}"
    _, container = daemon(directory)
    assert set(container["securityContext"]["capabilities"]["add"]) == ALLOWED_CAPABILITIES


@pytest.mark.parametrize("directory", DAEMON_OVERLAYS)
def test_daemon_runs_on_tuned_nodes_with_host_networking(directory: str) -> None:
    deployment = next(o for o in render(K8S / directory) if name_of(o) == "Deployment/hftmm-live")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"hftmm/tuned": "true"}
    assert {"key": "hftmm/tuned", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("directory", DAEMON_OVERLAYS)
def test_dev_shm_is_memory_backed_and_holds_aeron(directory: str) -> None:
    template, container = daemon(directory)
    volume = volume_at(template, container, "/dev/shm")
    assert volume["emptyDir"]["medium"] == "Memory"
    shm_bytes = quantity_bytes(volume["emptyDir"]["sizeLimit"])
    assert shm_bytes >= AERON_DEFAULT_TERMS_SHM_BYTES
    # a memory-backed emptyDir is charged to the container's memory limit
    assert quantity_bytes(container["resources"]["limits"]["memory"]) >= shm_bytes + (1 << 30)
    assert Path(live_config(directory)["aeron"]["dir"]).is_relative_to("/dev/shm")


@pytest.mark.parametrize(("directory", "embedded"), [("overlays/sim", True), ("overlays/production", False)])
def test_live_config_matches_the_pod(directory: str, embedded: bool) -> None:
    config = live_config(directory)
    template, container = daemon(directory)
    assert config["exchange"]["embedded"] is embedded
    assert config["metrics"] == {"host": "0.0.0.0", "port": METRICS_PORT}
    assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]
    assert {node["cpu"] for node in config["nodes"]} == {-1}
    cpus = cpu_millis(container["resources"]["limits"]["cpu"]) // 1000
    assert cpus >= len(config["nodes"]) + 1, "one CPU per hot loop plus one for the other threads"
    assert template["spec"]["containers"][0]["startupProbe"]["httpGet"]["path"] == "/metrics"


@pytest.mark.parametrize("directory", ["overlays/sim", "overlays/production"])
def test_pod_monitor_scrapes_the_daemon_metrics_port(directory: str) -> None:
    monitor = next(o for o in render(K8S / directory) if o["kind"] == "PodMonitor")
    template, container = daemon(directory)
    labels = template["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    port = next(p for p in container["ports"] if p["name"] == endpoint["port"])
    assert (port["containerPort"], endpoint["path"]) == (METRICS_PORT, "/metrics")
