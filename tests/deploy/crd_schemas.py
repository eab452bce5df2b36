"""Field schemas of the custom kinds in k8s/, and the small checker that applies them.

kubernetes-validate bundles schemas for built-in kinds only. The kinds below come from operators
(KubeRay's ray.io/v1 RayCluster and RayJob, the Prometheus Operator's monitoring.coreos.com/v1
PodMonitor) or are node files (the kubelet's KubeletConfiguration), so their fields are written out
here: the fields of those APIs that hftmm uses or may reasonably use, with their types. A field not
listed is an error, as in a strict schema, so a misspelling fails instead of being ignored by the
operator. Pod templates inside them are handed to kubernetes-validate as core/v1 PodTemplates.

A schema is a dict of field name to value schema; a value schema is a Python type, a nested dict,
a one-element list (a list of that schema), or one of the markers below. ``Required(schema)``
marks a field that must be present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Required:
    """A field that must be present."""

    schema: Any


@dataclass(frozen=True)
class OneOf:
    """A string from a fixed set."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class Pattern:
    """A string matching a regular expression."""

    regex: str


STRING_MAP = "string map"  # an object whose values are all strings (labels, rayStartParams, ...)
ANY_OBJECT = "any object"  # an object passed through as is (autoscalerOptions, relabelings, ...)
POD_TEMPLATE = "pod template"  # a core/v1 PodTemplateSpec, validated by kubernetes-validate

CPU_LIST = Pattern(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
PROMETHEUS_DURATION = Pattern(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")
GO_DURATION = Pattern(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")

METADATA = {"name": Required(str), "namespace": str, "labels": STRING_MAP, "annotations": STRING_MAP}
LABEL_SELECTOR = {"matchLabels": STRING_MAP, "matchExpressions": [ANY_OBJECT]}

# KubeRay ray.io/v1 (ray-operator/apis/ray/v1/raycluster_types.go)
RAY_CLUSTER_SPEC = {
    "rayVersion": str,
    "enableInTreeAutoscaling": bool,
    "autoscalerOptions": ANY_OBJECT,
    "headServiceAnnotations": STRING_MAP,
    "suspend": bool,
    "managedBy": str,
    "gcsFaultToleranceOptions": ANY_OBJECT,
    "headGroupSpec": Required(
        {
            "template": Required(POD_TEMPLATE),
            "rayStartParams": STRING_MAP,
            "serviceType": OneOf(("ClusterIP", "NodePort", "LoadBalancer")),
            "headService": ANY_OBJECT,
            "enableIngress": bool,
        }
    ),
    "workerGroupSpecs": [
        {
            "groupName": Required(str),
            "replicas": int,
            "minReplicas": int,
            "maxReplicas": int,
            "idleTimeoutSeconds": int,
            "rayStartParams": STRING_MAP,
            "template": Required(POD_TEMPLATE),
            "scaleStrategy": ANY_OBJECT,
            "numOfHosts": int,
            "suspend": bool,
        }
    ],
}
RAY_CLUSTER = {
    "apiVersion": Required(OneOf(("ray.io/v1",))),
    "kind": Required(OneOf(("RayCluster",))),
    "metadata": Required(METADATA),
    "spec": Required(RAY_CLUSTER_SPEC),
}

# KubeRay ray.io/v1 (ray-operator/apis/ray/v1/rayjob_types.go)
RAY_JOB = {
    "apiVersion": Required(OneOf(("ray.io/v1",))),
    "kind": Required(OneOf(("RayJob",))),
    "metadata": Required(METADATA),
    "spec": Required(
        {
            "entrypoint": str,
            "runtimeEnvYAML": str,
            "jobId": str,
            "metadata": STRING_MAP,
            "clusterSelector": STRING_MAP,
            "rayClusterSpec": RAY_CLUSTER_SPEC,
            "submissionMode": OneOf(("K8sJobMode", "HTTPMode", "InteractiveMode")),
            "submitterPodTemplate": POD_TEMPLATE,
            "submitterConfig": {"backoffLimit": int},
            "activeDeadlineSeconds": int,
            "backoffLimit": int,
            "shutdownAfterJobFinishes": bool,
            "ttlSecondsAfterFinished": int,
            "entrypointNumCpus": (int, float),
            "entrypointNumGpus": (int, float),
            "entrypointResources": str,
            "suspend": bool,
            "managedBy": str,
            "deletionPolicy": OneOf(("DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone")),
        }
    ),
}

# Prometheus Operator monitoring.coreos.com/v1 PodMonitor
POD_MONITOR = {
    "apiVersion": Required(OneOf(("monitoring.coreos.com/v1",))),
    "kind": Required(OneOf(("PodMonitor",))),
    "metadata": Required(METADATA),
    "spec": Required(
        {
            "selector": Required(LABEL_SELECTOR),
            "namespaceSelector": {"any": bool, "matchNames": [str]},
            "jobLabel": str,
            "podTargetLabels": [str],
            "sampleLimit": int,
            "podMetricsEndpoints": Required(
                [
                    {
                        "port": str,
                        "portNumber": int,
                        "path": str,
                        "scheme": OneOf(("http", "https")),
                        "interval": PROMETHEUS_DURATION,
                        "scrapeTimeout": PROMETHEUS_DURATION,
                        "honorLabels": bool,
                        "params": ANY_OBJECT,
                        "relabelings": [ANY_OBJECT],
                        "metricRelabelings": [ANY_OBJECT],
                    }
                ]
            ),
        }
    ),
}

# kubelet.config.k8s.io/v1beta1 KubeletConfiguration: the fields k8s/node/kubelet-config.yaml sets
KUBELET_CONFIGURATION = {
    "apiVersion": Required(OneOf(("kubelet.config.k8s.io/v1beta1",))),
    "kind": Required(OneOf(("KubeletConfiguration",))),
    "cpuManagerPolicy": OneOf(("none", "static")),
    "cpuManagerPolicyOptions": STRING_MAP,
    "cpuManagerReconcilePeriod": GO_DURATION,
    "reservedSystemCPUs": CPU_LIST,
    "topologyManagerPolicy": OneOf(("none", "best-effort", "restricted", "single-numa-node")),
    "topologyManagerScope": OneOf(("container", "pod")),
    "memoryManagerPolicy": OneOf(("None", "Static")),
    "kubeReserved": STRING_MAP,
    "systemReserved": STRING_MAP,
    "evictionHard": STRING_MAP,
    "reservedMemory": [{"numaNode": Required(int), "limits": Required(STRING_MAP)}],
}

SCHEMAS = {
    ("ray.io/v1", "RayCluster"): RAY_CLUSTER,
    ("ray.io/v1", "RayJob"): RAY_JOB,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"): KUBELET_CONFIGURATION,
}


def check_fields(value: Any, schema: Any, pod_template: Callable[[dict, str], None], path: str = "") -> list[str]:
    """Errors of ``value`` against ``schema``, each naming its path; ``pod_template`` checks embedded templates.

    ``pod_template(template, path)`` raises on an invalid template; its message becomes an error.
    """
    if isinstance(schema, Required):
        schema = schema.schema
    where = path or "<root>"
    if schema is POD_TEMPLATE:
        if not isinstance(value, dict):
            return [f"{where}: expected a pod template"]
        try:
            pod_template(value, where)
        except Exception as exc:  # kubernetes-validate's ValidationError, reported as a field error
            return [f"{where}: invalid pod template: {getattr(exc, 'message', exc)}"]
        return []
    if schema is STRING_MAP:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            return [f"{where}: expected a map of strings to strings, got {value!r}"]
        return []
    if schema is ANY_OBJECT:
        return [] if isinstance(value, dict) else [f"{where}: expected an object"]
    if isinstance(schema, OneOf):
        return [] if value in schema.values else [f"{where}: {value!r} is not one of {schema.values}"]
    if isinstance(schema, Pattern):
        ok = isinstance(value, str) and re.fullmatch(schema.regex, value)
        return [] if ok else [f"{where}: {value!r} does not match {schema.regex}"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in check_fields(item, schema[0], pod_template, f"{path}[{i}]")]
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        errors = [f"{path}.{key}".lstrip(".") + ": unknown field" for key in value if key not in schema]
        for key, sub in schema.items():
            if key in value:
                errors += check_fields(value[key], sub, pod_template, f"{path}.{key}".lstrip("."))
            elif isinstance(sub, Required):
                errors.append(f"{path}.{key}".lstrip(".") + ": required field missing")
        return errors
    # a Python type or a tuple of types; bool is not accepted where a number is expected
    types = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(value, bool) and bool not in types:
        return [f"{where}: expected {schema}, got a boolean"]
    return [] if isinstance(value, types) else [f"{where}: expected {schema}, got {type(value).__name__}"]
