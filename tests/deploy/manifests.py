"""Helpers of the deployment tests: render k8s/ with kubectl, validate objects, read quantities.

Built-in kinds are validated by ``kubernetes-validate`` against its bundled schemas (strict: unknown
fields are errors). It has no schema for custom resources and says so (``SchemaNotFoundError``, a
warning on its command line); those kinds are checked here against the field schemas of
``crd_schemas.py`` instead, and the pod templates they embed are validated as core/v1 PodTemplates.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
DOCKERFILE = REPO / "docker" / "Dockerfile"
# The oldest Kubernetes the manifests target (Memory Manager GA) and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")


def kubectl() -> str:
    """Path of kubectl, or skip: no other renderer is bundled."""
    path = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if path is None:
        pytest.skip("kubectl is not installed: cannot render the kustomizations")
    return path


def kustomizations() -> list[Path]:
    """Every buildable kustomization under k8s/ (components are built through the overlays using them)."""
    found = []
    for file in sorted(K8S.rglob("kustomization.yaml")):
        if yaml.safe_load(file.read_text()).get("kind", "Kustomization") == "Kustomization":
            found.append(file.parent)
    return found


@functools.cache
def render(directory: Path) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize DIRECTORY`` prints."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory.relative_to(REPO)} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def all_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(kustomization, object) for every rendered object of every kustomization."""
    for directory in kustomizations():
        for obj in render(directory):
            yield directory, obj


def name_of(obj: dict[str, Any]) -> str:
    """``Kind/name`` for messages."""
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate_builtin(obj: dict[str, Any], version: str) -> bool:
    """Validate strictly against the bundled schema of ``version``; False when there is none (a CRD).

    Raises ``kubernetes_validate.ValidationError`` on an invalid object.
    """
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return False
    return True


def validate_pod_template(template: dict[str, Any], version: str) -> None:
    """Validate a pod template embedded in a custom resource as a core/v1 PodTemplate."""
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "embedded"}, "template": template}
    kubernetes_validate.validate(wrapper, version, strict=True)


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of a workload or a KubeRay resource."""
    spec = obj.get("spec", {})
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [(name_of(obj), spec["template"])]
    if kind == "RayCluster":
        found = [(f"{name_of(obj)} head", spec["headGroupSpec"]["template"])]
        for group in spec.get("workerGroupSpecs", []):
            found.append((f"{name_of(obj)} worker group {group['groupName']}", group["template"]))
        return found
    if kind == "RayJob" and "submitterPodTemplate" in spec:
        return [(f"{name_of(obj)} submitter", spec["submitterPodTemplate"])]
    return []


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers and containers of a pod template."""
    pod = template["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def guaranteed_errors(where: str, template: dict[str, Any]) -> list[str]:
    """Why a pod template is not Guaranteed with integer CPUs (empty when it is)."""
    errors = []
    for c in containers(template):
        res = c.get("resources", {})
        requests, limits = res.get("requests", {}), res.get("limits", {})
        name = f"{where} container {c['name']}"
        for key in sorted({"cpu", "memory", *requests, *limits}):
            amount = cpu_millis if key == "cpu" else quantity_bytes
            if key not in requests or key not in limits or amount(requests[key]) != amount(limits[key]):
                errors.append(f"{name}: {key} requests {requests.get(key)} must equal limits {limits.get(key)}")
        if "cpu" in limits and (cpu_millis(limits["cpu"]) % 1000 or cpu_millis(limits["cpu"]) == 0):
            errors.append(f"{name}: cpu {limits['cpu']} is not a whole number of CPUs")
    return errors


_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(value: str | int) -> int:
    """Bytes of a Kubernetes memory quantity such as ``4Gi``, ``100Mi``, ``1G`` or ``1024``."""
    text = str(value)
    for suffix, scale in (_BINARY | _DECIMAL).items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * scale
    return int(text)


def cpu_millis(value: str | int | float) -> int:
    """Millicores of a CPU quantity such as ``2``, ``"2"``, ``500m`` or ``1.5``."""
    text = str(value)
    if text.endswith("m"):
        return int(text[:-1])
    return round(float(text) * 1000)
