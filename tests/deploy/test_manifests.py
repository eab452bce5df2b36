"""k8s/ renders with kustomize, and every object it renders is valid for its API (offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import KUBELET_CONFIGURATION, SCHEMAS, check_fields
from tests.deploy.manifests import (
    K8S,
    KUBERNETES_VERSIONS,
    REPO,
    all_objects,
    kustomizations,
    name_of,
    render,
    validate_builtin,
    validate_pod_template,
)

EXPECTED = {"base", "overlays/sim", "overlays/production", "sweeps", "sweeps/job"}


def _template_check(version: str):
    """A pod-template checker for check_fields that validates against ``version``."""
    return lambda template, _path: validate_pod_template(template, version)


def _crd_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Field-schema errors of a custom resource; an error when no schema is written down for it."""
    schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"{name_of(obj)}: no bundled schema and no field schema in tests/deploy/crd_schemas.py"]
    return check_fields(obj, schema, _template_check(version))


def test_every_kustomization_renders() -> None:
    found = {str(d.relative_to(K8S)) for d in kustomizations()}
    assert found == EXPECTED
    for directory in kustomizations():
        assert render(directory), f"{directory} renders nothing"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_strictly(version: str) -> None:
    errors, custom = [], []
    for directory, obj in all_objects():
        where = f"{directory.relative_to(K8S)}: {name_of(obj)}"
        try:
            if not validate_builtin(obj, version):  # the schema-not-found warning: a custom kind
                custom.append(obj["kind"])
                errors += [f"{where}: {e}" for e in _crd_errors(obj, version)]
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert {"RayCluster", "RayJob", "PodMonitor"} <= set(custom)


def test_command_line_strict_run_passes_and_warns_only_about_kinds_checked_here(tmp_path: Path) -> None:
    files = []
    for directory in kustomizations():
        files.append(tmp_path / f"{str(directory.relative_to(K8S)).replace('/', '-')}.yaml")
        files[-1].write_text(yaml.safe_dump_all(render(directory)))
    versions = [f"-k{v}" for v in KUBERNETES_VERSIONS]
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *versions, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    warned = set()
    for line in done.stdout.splitlines():
        assert line.startswith("WARN"), line
        warned.add(line.split("schema for kind ", 1)[1].split()[0])
    assert warned == {"RayCluster", "RayJob", "PodMonitor"}
    assert warned <= {kind for _, kind in SCHEMAS}


def test_kubelet_configuration_matches_its_field_schema() -> None:
    config = yaml.safe_load((K8S / "node" / "kubelet-config.yaml").read_text())
    assert check_fields(config, KUBELET_CONFIGURATION, _template_check(KUBERNETES_VERSIONS[0])) == []


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = next(o for _, o in all_objects() if o["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(broken, KUBERNETES_VERSIONS[0])


def test_field_schema_rejects_unknown_fields_wrong_types_and_bad_pod_templates() -> None:
    cluster = next(o for _, o in all_objects() if o["kind"] == "RayCluster")
    broken = yaml.safe_load(yaml.safe_dump(cluster))
    broken["spec"]["workerGroupSpecs"][0]["replica"] = 2
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    broken["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imag"] = "x"
    errors = _crd_errors(broken, KUBERNETES_VERSIONS[0])
    assert any("workerGroupSpecs[0].replica: unknown field" in e for e in errors)
    assert any("rayStartParams" in e for e in errors)
    assert any("workerGroupSpecs[0].template: invalid pod template" in e for e in errors)


def test_yamllint_passes_on_k8s() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "k8s"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_yamllint_config_flags_a_bad_manifest(tmp_path: Path) -> None:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "bad.yaml").write_text("key: value   \nlist:\n- a\n  - b\n")
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint"), "-f", "parsable", "k8s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "trailing-spaces" in done.stdout
