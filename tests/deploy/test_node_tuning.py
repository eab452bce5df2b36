"""k8s/node: the kubelet, tuned and sysctl settings of the trading nodes agree with each other."""

from __future__ import annotations

import configparser
import re
from typing import Any

import yaml

from engine.runtime.affinity import parse_cpu_list
from feeds.udp import DEFAULT_RCVBUF_BYTES
from tests.deploy.manifests import K8S, quantity_bytes, render

NODE = K8S / "node"
# The reference node of k8s/node/kubelet-config.yaml: 32 CPUs, CPU n and n + 16 share a core.
NODE_CPUS = frozenset(range(32))
SMT_SIBLING_OFFSET = 16
HUGEPAGE_BYTES = 2 << 20


def kubelet() -> dict[str, Any]:
    """The kubelet configuration of the trading nodes."""
    return yaml.safe_load((NODE / "kubelet-config.yaml").read_text())


def tuned_variables() -> configparser.SectionProxy:
    """cpu-partitioning-variables.conf (a section-less key=value file)."""
    parser = configparser.ConfigParser()
    parser.read_string("[variables]\n" + (NODE / "tuned" / "cpu-partitioning-variables.conf").read_text())
    return parser["variables"]


def tuned_profile() -> configparser.ConfigParser:
    """The hftmm-latency tuned profile."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # sysctl names are case-sensitive
    parser.read_string((NODE / "tuned" / "hftmm-latency" / "tuned.conf").read_text())
    return parser


def test_kubelet_enables_the_static_cpu_manager_with_whole_cores() -> None:
    config = kubelet()
    assert config["cpuManagerPolicy"] == "static"
    assert config["cpuManagerPolicyOptions"] == {"full-pcpus-only": "true"}
    assert parse_cpu_list(config["reservedSystemCPUs"]), "the static policy needs reserved CPUs"
    assert config["topologyManagerPolicy"] == "single-numa-node"
    assert config["memoryManagerPolicy"] == "Static"


def test_kubelet_reserved_memory_adds_up() -> None:
    # The Static memory manager refuses to start unless, over all NUMA nodes, reservedMemory equals
    # kube-reserved + system-reserved + the hard eviction threshold.
    config = kubelet()
    reserved = sum(quantity_bytes(entry["limits"]["memory"]) for entry in config["reservedMemory"])
    expected = (
        quantity_bytes(config["kubeReserved"]["memory"])
        + quantity_bytes(config["systemReserved"]["memory"])
        + quantity_bytes(config["evictionHard"]["memory.available"])
    )
    assert reserved == expected


def test_reserved_cpus_are_whole_cores() -> None:
    reserved = parse_cpu_list(kubelet()["reservedSystemCPUs"])
    siblings = {(cpu + SMT_SIBLING_OFFSET) % len(NODE_CPUS) for cpu in reserved}
    assert siblings == reserved


def test_tuned_isolates_exactly_the_cpus_the_kubelet_does_not_reserve() -> None:
    reserved = parse_cpu_list(kubelet()["reservedSystemCPUs"])
    variables = tuned_variables()
    isolated = parse_cpu_list(variables["isolated_cores"])
    assert isolated | reserved == NODE_CPUS
    assert not isolated & reserved
    assert parse_cpu_list(variables["no_balance_cores"]) <= isolated


def test_tuned_profile_builds_on_cpu_partitioning_and_sizes_udp_buffers() -> None:
    profile = tuned_profile()
    assert profile["main"]["include"] == "cpu-partitioning"
    sysctl = profile["sysctl"]
    assert int(sysctl["net.core.rmem_max"]) >= DEFAULT_RCVBUF_BYTES, "the feed's receive buffer would be capped"
    assert int(sysctl["net.core.wmem_max"]) >= DEFAULT_RCVBUF_BYTES
    assert int(sysctl["net.core.rmem_default"]) <= int(sysctl["net.core.rmem_max"])


def test_node_hugepages_cover_the_daemon() -> None:
    cmdline = " ".join(v for k, v in tuned_profile()["bootloader"].items() if k.startswith("cmdline"))
    assert "hugepagesz=2M" in cmdline
    pages = int(re.search(r"(?<!\S)hugepages=(\d+)", cmdline).group(1))
    deployment = next(o for o in render(K8S / "overlays/production") if o["kind"] == "Deployment")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert pages * HUGEPAGE_BYTES >= quantity_bytes(limits["hugepages-2Mi"])
