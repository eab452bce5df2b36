"""engine.runtime.metrics: shared-memory blocks written by another process, read through a real HTTP scrape."""

from __future__ import annotations

import multiprocessing
import os
import urllib.request
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from numba import njit
from prometheus_client.parser import text_string_to_metric_families

from engine.core.config import ConfigError, decode_toml
from engine.runtime import metrics as M
from engine.runtime.metrics import (
    DaemonMetrics,
    MetricsBlock,
    MetricsBlockError,
    MetricsConfig,
    MetricsExporter,
    bucket_index_nb,
    observe_nb,
)

INSTRUMENTS = ["AAPL", "MSFT", "SPY"]
STAGES = ["decode", "book", "strategy", "risk", "gateway"]
REASONS = ["position_limit", "price_band", "order_rate"]
CHILD_LATENCIES_NS = [50, 100, 101, 1_600, 2_000_000, 5_000_000_000]
CHILD_WAIT_S = 60.0  # a spawned child imports numpy and numba, and may load compiled kernels from the cache


def _unique_name() -> str:
    return f"hftmm-metrics-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def block() -> Iterator[MetricsBlock]:
    with MetricsBlock.create("node-a", INSTRUMENTS, STAGES, REASONS, name=_unique_name()) as created:
        yield created


def _write_from_child(name: str) -> None:
    """Runs in a spawned process: attach by name and write like a trading node would."""
    block = MetricsBlock.attach(name)
    block.node[M.N_MD_MESSAGES] += 1_000
    block.node[M.N_MD_GAPS] += 2
    block.node[M.N_MAX_DUTY_CYCLE_NS] = 4_500
    block.instrument_counters[1, M.I_ORDERS_SENT] += 7
    block.instrument_counters[1, M.I_ORDERS_FILLED] += 3
    block.instrument_gauges[2, M.G_POSITION] = -300.0
    block.instrument_gauges[2, M.G_PNL] = 125.25
    block.instrument_gauges[0, M.G_QUOTED_SPREAD_TICKS] = 2.0
    block.risk_rejections[0, 2] += 5
    for value in CHILD_LATENCIES_NS:
        observe_nb(block.histograms[M.HIST_TICK_TO_TRADE], value)
    observe_nb(block.histograms[block.stage_row("risk")], 400)
    block.close()


def _scrape(url: str) -> dict[str, dict[tuple, float]]:
    """GET the exposition and index it as {sample name: {sorted label items: value}}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counters_written_by_a_spawned_child_reach_a_real_scrape(block: MetricsBlock) -> None:
    daemon = DaemonMetrics()
    daemon.set_node_up("node-a", True)
    daemon.node_restarted("node-a")
    daemon.set_kill_switch(True)
    with MetricsExporter(M.LOOPBACK, 0, daemon) as exporter:
        exporter.add(block)
        child = multiprocessing.get_context("spawn").Process(target=_write_from_child, args=(block.name,))
        child.start()
        child.join(CHILD_WAIT_S)
        assert child.exitcode == 0
        samples = _scrape(exporter.url)

    node = (("node", "node-a"),)
    assert samples["hftmm_md_messages_total"][node] == 1_000
    assert samples["hftmm_md_gaps_total"][node] == 2
    assert samples["hftmm_max_duty_cycle_seconds"][node] == pytest.approx(4.5e-6)
    msft = (("instrument", "MSFT"), ("node", "node-a"))
    spy = (("instrument", "SPY"), ("node", "node-a"))
    assert samples["hftmm_orders_sent_total"][msft] == 7
    assert samples["hftmm_orders_filled_total"][msft] == 3
    assert samples["hftmm_orders_sent_total"][spy] == 0
    assert samples["hftmm_position"][spy] == -300.0
    assert samples["hftmm_pnl"][spy] == 125.25
    assert samples["hftmm_quoted_spread_ticks"][(("instrument", "AAPL"), ("node", "node-a"))] == 2.0
    rate_label = (("instrument", "AAPL"), ("node", "node-a"), ("reason", "order_rate"))
    assert samples["hftmm_risk_rejections_total"][rate_label] == 5
    assert len(samples["hftmm_risk_rejections_total"]) == len(INSTRUMENTS) * len(REASONS)

    buckets = samples["hftmm_tick_to_trade_seconds_bucket"]
    assert buckets[(("le", "1e-07"), ("node", "node-a"))] == 2  # 50 and 100 ns: le is inclusive
    assert buckets[(("le", "1.6e-07"), ("node", "node-a"))] == 3
    assert buckets[(("le", "1.0"), ("node", "node-a"))] == 5
    assert buckets[(("le", "+Inf"), ("node", "node-a"))] == 6
    assert samples["hftmm_tick_to_trade_seconds_count"][node] == 6
    assert samples["hftmm_tick_to_trade_seconds_sum"][node] == pytest.approx(sum(CHILD_LATENCIES_NS) / 1e9)
    risk_stage = (("node", "node-a"), ("stage", "risk"))
    assert samples["hftmm_stage_latency_seconds_count"][risk_stage] == 1
    assert samples["hftmm_stage_latency_seconds_count"][(("node", "node-a"), ("stage", "book"))] == 0

    assert samples["hftmm_kill_switch_engaged"][()] == 1
    assert samples["hftmm_node_up"][node] == 1
    assert samples["hftmm_node_restarts_total"][node] == 1


@njit(cache=True, nogil=True)
def _observe_all_nb(hist, values):
    for i in range(values.shape[0]):
        observe_nb(hist, values[i])


def test_histogram_buckets_match_numpy(block: MetricsBlock) -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            np.exp(rng.normal(9.0, 3.0, 20_000)).astype(np.int64),  # ~8 us median, spread over the whole range
            M.BUCKET_BOUNDS_NS,  # exactly on a bound: that bucket (le is inclusive)
            M.BUCKET_BOUNDS_NS + 1,  # just above: the next one
            np.array([-5, 0, 1, 10**12], dtype=np.int64),  # negative counts as 0; beyond 1 s is +Inf
        ]
    )
    hist = block.histograms[block.stage_row("book")]
    _observe_all_nb(hist, values)

    clipped = np.maximum(values, 0)
    expected = np.bincount(np.searchsorted(M.BUCKET_BOUNDS_NS, clipped, side="left"), minlength=M.N_BUCKETS)
    assert np.array_equal(hist[: M.N_BUCKETS], expected)
    assert hist[M.HIST_SUM] == clipped.sum()
    cumulative_le = (clipped[:, None] <= M.BUCKET_BOUNDS_NS[None, :]).sum(axis=0)
    assert np.array_equal(np.cumsum(hist[: M.N_BUCKETS])[:-1], cumulative_le)
    assert bucket_index_nb(M.BUCKET_BOUNDS_NS[-1] + 1) == M.N_BUCKETS - 1
    assert block.histograms.shape == (1 + len(STAGES), M.HIST_WIDTH)


def test_bucket_bounds_are_log_spaced_from_100ns_to_1s() -> None:
    ratios = M.BUCKET_BOUNDS_NS[1:] / M.BUCKET_BOUNDS_NS[:-1]
    assert M.BUCKET_BOUNDS_NS[0] == 100 and M.BUCKET_BOUNDS_NS[-1] == 1_000_000_000
    assert np.all(ratios > 1.5) and np.all(ratios < 1.7)


def test_attach_of_unknown_block_names_it() -> None:
    name = _unique_name()
    with pytest.raises(MetricsBlockError, match=f"no metrics block named '{name}'"):
        MetricsBlock.attach(name)


def test_attach_of_foreign_shared_memory_is_refused() -> None:
    name = _unique_name()
    path = os.path.join(M.SHM_DIR, name)
    with open(path, "wb") as foreign:
        foreign.write(b"\x01" * 4096)
    try:
        with pytest.raises(MetricsBlockError, match="not an hftmm metrics block"):
            MetricsBlock.attach(name)
    finally:
        os.unlink(path)


def test_attach_rejects_a_path_as_name() -> None:
    with pytest.raises(MetricsBlockError, match="block names must match"):
        MetricsBlock.attach("../etc/passwd")


def test_create_refuses_an_existing_block_unless_replacing(block: MetricsBlock) -> None:
    with pytest.raises(MetricsBlockError, match="already exists"):
        MetricsBlock.create("node-a", INSTRUMENTS, STAGES, REASONS, name=block.name)
    block.node[M.N_MD_MESSAGES] = 9
    fresh = MetricsBlock.create("node-b", ["QQQ"], [], [], name=block.name, replace=True)
    reader = MetricsBlock.attach(block.name)
    assert reader.node_name == "node-b" and reader.instruments == ["QQQ"] and reader.node[M.N_MD_MESSAGES] == 0
    reader.close()
    fresh.close()


def test_create_rejects_duplicate_or_empty_labels() -> None:
    with pytest.raises(MetricsBlockError, match="instruments must be distinct"):
        MetricsBlock.create("node-a", ["AAPL", "AAPL"], STAGES, REASONS, name=_unique_name())
    with pytest.raises(MetricsBlockError, match="stages must be distinct"):
        MetricsBlock.create("node-a", INSTRUMENTS, ["decode", ""], REASONS, name=_unique_name())
    with pytest.raises(MetricsBlockError, match="node and block names"):
        MetricsBlock.create("node a/b", INSTRUMENTS, STAGES, REASONS)


def test_attached_reader_sees_the_labels_and_only_the_owner_unlinks(block: MetricsBlock) -> None:
    reader = MetricsBlock.attach(block.name)
    assert (reader.node_name, reader.instruments, reader.stages, reader.reasons) == (
        "node-a",
        INSTRUMENTS,
        STAGES,
        REASONS,
    )
    assert reader.stage_row("gateway") == 5
    with pytest.raises(MetricsBlockError, match="no stage 'quote'"):
        reader.stage_row("quote")
    reader.close()
    assert os.path.exists(os.path.join(M.SHM_DIR, block.name))
    block.close()
    assert not os.path.exists(os.path.join(M.SHM_DIR, block.name))


def test_removed_block_leaves_the_scrape(block: MetricsBlock) -> None:
    with MetricsExporter(port=0) as exporter:
        assert exporter.host == M.LOOPBACK and exporter.port > 0
        exporter.add(block)
        assert _scrape(exporter.url)["hftmm_md_messages_total"] == {(("node", "node-a"),): 0.0}
        exporter.remove(block)
        samples = _scrape(exporter.url)
    assert "hftmm_md_messages_total" not in samples and "hftmm_kill_switch_engaged" not in samples


def test_metrics_config_rejects_a_bad_port() -> None:
    assert decode_toml('host = "0.0.0.0"\nport = 9108\n', MetricsConfig).host == "0.0.0.0"
    with pytest.raises(ConfigError, match=r"port in 0\.\.65535"):
        decode_toml("port = 70000\n", MetricsConfig)
    with pytest.raises(ConfigError, match="unknown field"):
        decode_toml("prot = 1\n", MetricsConfig)
