"""k8s/sweeps: the KubeRay cluster runs backtests on Guaranteed pods; the RayJob runs `hftmm sweep`."""

from __future__ import annotations

import shlex
from typing import Any

from tests.deploy.manifests import K8S, containers, cpu_millis, guaranteed_errors, pod_templates, quantity_bytes, render


def objects(kind: str) -> list[dict[str, Any]]:
    """Rendered objects of one kind in k8s/sweeps and k8s/sweeps/job."""
    return [o for d in ("sweeps", "sweeps/job") for o in render(K8S / d) if o["kind"] == kind]


def test_ray_pods_are_guaranteed_with_integer_cpus() -> None:
    templates = [t for obj in objects("RayCluster") + objects("RayJob") for t in pod_templates(obj)]
    assert len(templates) == 3  # head, the backtest worker group, the job submitter
    errors = [e for where, t in templates for e in guaranteed_errors(where, t)]
    assert not errors, "\n".join(errors)


def test_worker_groups_scale_within_their_bounds() -> None:
    (cluster,) = objects("RayCluster")
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]


def test_object_store_fits_in_each_pods_dev_shm() -> None:
    (cluster,) = objects("RayCluster")
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = containers(group["template"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["emptyDir"]["medium"] == "Memory"
        store = int(group["rayStartParams"]["object-store-memory"])
        assert store <= quantity_bytes(volume["emptyDir"]["sizeLimit"])
        assert store < quantity_bytes(container["resources"]["limits"]["memory"])


def test_head_schedules_only_and_workers_offer_their_cpus() -> None:
    (cluster,) = objects("RayCluster")
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in cluster["spec"]["workerGroupSpecs"]:
        (container,) = containers(group["template"])
        assert "num-cpus" not in group["rayStartParams"], "KubeRay takes it from the CPU limit"
        assert cpu_millis(container["resources"]["limits"]["cpu"]) >= 1000


def test_ray_containers_run_kuberays_start_command_in_the_sweeps_image() -> None:
    (cluster,) = objects("RayCluster")
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    for _, template in pod_templates(cluster):
        (container,) = containers(template)
        assert container["image"] == "hftmm-sweeps:0.1.0"
        assert "$KUBERAY_GEN_RAY_START_CMD" in container["args"][-1]


def test_ray_job_runs_hftmm_sweep_on_the_cluster() -> None:
    (cluster,) = objects("RayCluster")
    (job,) = objects("RayJob")
    spec = job["spec"]
    assert job["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in spec
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["hftmm", "sweep"]
    for option in ("--data", "--strategy", "--grid"):
        assert option in words and not words[words.index(option) + 1].startswith("--"), option
    assert words[words.index("--address") + 1] == "auto"
    grid = words[words.index("--grid") + 1]
    name, _, values = grid.partition("=")
    assert name and len(values.split(",")) > 1
    assert words[words.index("--data") + 1].startswith("/data/")
    for where, template in pod_templates(cluster):  # the entrypoint runs on the head, backtests on workers
        assert any(m["mountPath"] == "/data" for c in containers(template) for m in c["volumeMounts"]), where


def test_ray_job_submitter_uses_the_clusters_image() -> None:
    (cluster,) = objects("RayCluster")
    (job,) = objects("RayJob")
    images = {c["image"] for _, t in pod_templates(cluster) + pod_templates(job) for c in containers(t)}
    assert images == {"hftmm-sweeps:0.1.0"}
