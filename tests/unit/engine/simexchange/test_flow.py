"""The background flow alone and driven through a real matching engine.

Statistical tolerances: counts of a Poisson process with mean ``mu`` have standard deviation
``sqrt(mu)``; the checks allow 4 of them (a false failure about once in 16 000 runs, and the seeds
are fixed anyway, so the tests are deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pytest

from engine.runtime.agent import AgentRunner
from engine.simexchange import layout as L
from engine.simexchange.flow import BACKGROUND_OWNER, SESSION_START_NS, BackgroundFlow, FlowConfig, InstrumentFlow
from engine.simexchange.matching import MatchingEngine

SIGMAS = 4.0
NS_PER_S = 1_000_000_000
STEP_NS = 100_000_000  # the book is sampled every 100 simulated ms
AAA = InstrumentFlow(locate=1, tick=100, lot=1, initial_price=1_000_000)
BBB = InstrumentFlow(
    locate=2, tick=50, lot=10, initial_price=500_000, limit_rate=25.0, market_rate=2.5, volatility_ticks=0.3
)
CONFIG = FlowConfig(instruments=(AAA, BBB), seed=11)


def new_engine() -> MatchingEngine:
    return MatchingEngine([(i.locate, f"S{i.locate}", i.tick, i.lot) for i in CONFIG.instruments])


def drive(flow: BackgroundFlow, engine: MatchingEngine, seconds: float) -> list[np.ndarray]:
    """Run the flow for ``seconds`` in 100 ms steps; returns every batch and report array (copies)."""
    out = []
    end_ns = flow.now_ns + int(seconds * NS_PER_S)
    while flow.now_ns < end_ns:
        until = min(flow.now_ns + STEP_NS, end_ns)
        while len(batch := flow.next_batch(until)):
            reports, _ = engine.submit(batch, flow.now_ns)
            flow.on_reports(reports)
            out.append(batch.copy())
    return out


def test_same_seed_gives_identical_requests() -> None:
    first = np.concatenate(drive(BackgroundFlow(CONFIG), new_engine(), 20.0))
    second = np.concatenate(drive(BackgroundFlow(CONFIG), new_engine(), 20.0))
    assert len(first) > 500 and np.array_equal(first, second)


def test_different_seed_gives_different_requests() -> None:
    first = np.concatenate(drive(BackgroundFlow(CONFIG), new_engine(), 20.0))
    other = msgspec.structs.replace(CONFIG, seed=12)
    second = np.concatenate(drive(BackgroundFlow(other), new_engine(), 20.0))
    n = min(len(first), len(second))
    assert not np.array_equal(first[:n], second[:n])


@dataclass
class Run:
    """Statistics of a long flow through the engine, per locate."""

    seconds: float
    requests: np.ndarray
    rejected: int = 0
    executions: int = 0
    samples: int = 0
    two_sided: dict[int, int] = field(default_factory=dict)
    spreads: dict[int, list[int]] = field(default_factory=dict)
    depth: dict[int, np.ndarray] = field(default_factory=dict)
    live_seconds: dict[int, float] = field(default_factory=dict)  # integral of resting orders over time
    fair: dict[int, list[float]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run() -> Run:
    flow, engine = BackgroundFlow(CONFIG), new_engine()
    flow.warm_up(engine, 30.0)
    seconds = 300.0
    locates = [i.locate for i in CONFIG.instruments]
    stats = Run(seconds, np.zeros(0))
    stats.two_sided = dict.fromkeys(locates, 0)
    stats.spreads = {x: [] for x in locates}
    stats.depth = {x: np.zeros(12) for x in locates}
    stats.live_seconds = dict.fromkeys(locates, 0.0)
    stats.fair = {x: [flow.fair_value(x)] for x in locates}
    batches = []
    for step in range(int(seconds * NS_PER_S // STEP_NS)):
        for x in locates:
            stats.live_seconds[x] += flow.live_orders(x) * STEP_NS / NS_PER_S
        until = flow.now_ns + STEP_NS
        while len(batch := flow.next_batch(until)):
            reports, _ = engine.submit(batch, flow.now_ns)
            flow.on_reports(reports)
            batches.append(batch.copy())
            stats.rejected += int(np.count_nonzero(reports["kind"] == L.RPT_REJECTED))
            stats.executions += int(np.count_nonzero(reports["kind"] == L.RPT_EXECUTED))
        stats.samples += 1
        for inst in CONFIG.instruments:
            snap = engine.book_snapshot(inst.locate)
            if step % 10 == 9:
                stats.fair[inst.locate].append(flow.fair_value(inst.locate))
            if not (snap["bids"] and snap["asks"]):
                continue
            stats.two_sided[inst.locate] += 1
            stats.spreads[inst.locate].append((snap["asks"][0][0] - snap["bids"][0][0]) // inst.tick)
            for side in ("bids", "asks"):
                best = snap[side][0][0]
                for price, queue in snap[side]:
                    d = abs(price - best) // inst.tick
                    if d < 12:
                        stats.depth[inst.locate][d] += sum(q[1] for q in queue) / inst.lot
    stats.requests = np.concatenate(batches)
    assert flow.rejected == stats.rejected
    return stats


def test_no_background_request_is_rejected(run: Run) -> None:
    # prices are whole ticks, sizes whole lots, cancels only for acknowledged untraded orders:
    # the model allows no reject at all, REJ_UNKNOWN_ORDER included
    assert run.rejected == 0
    assert np.all(run.requests["owner"] == BACKGROUND_OWNER)


def test_fills_happen(run: Run) -> None:
    assert run.executions > 1000


@pytest.mark.parametrize("inst", CONFIG.instruments, ids=lambda i: f"locate{i.locate}")
def test_book_is_two_sided_with_a_tight_spread(run: Run, inst: InstrumentFlow) -> None:
    assert run.two_sided[inst.locate] >= 0.99 * run.samples
    spreads = np.array(run.spreads[inst.locate])
    assert np.all(spreads >= 1)
    assert np.mean(spreads <= 3) >= 0.95


@pytest.mark.parametrize("inst", CONFIG.instruments, ids=lambda i: f"locate{i.locate}")
def test_depth_decays_with_distance(run: Run, inst: InstrumentFlow) -> None:
    depth = run.depth[inst.locate]
    near, far = depth[1:4].mean(), depth[inst.depth_ticks - 2 : inst.depth_ticks + 1].mean()
    assert near > 1.5 * far > 0


@pytest.mark.parametrize("inst", CONFIG.instruments, ids=lambda i: f"locate{i.locate}")
def test_message_mix_matches_rates(run: Run, inst: InstrumentFlow) -> None:
    mine = run.requests[run.requests["instrument"] == inst.locate]
    new = mine[mine["kind"] == L.REQ_NEW]
    for rate, tif in ((inst.limit_rate, L.TIF_DAY), (inst.market_rate, L.TIF_IOC)):
        mu = rate * run.seconds
        assert abs(np.count_nonzero(new["tif"] == tif) - mu) < SIGMAS * math.sqrt(mu)
    # cancels: rate * integral of resting orders, here sampled every 100 ms (an approximation good to
    # a few percent), so the tolerance is 4 sd of the Poisson count plus 5 %
    mu = inst.cancel_rate * run.live_seconds[inst.locate]
    cancels = np.count_nonzero(mine["kind"] == L.REQ_CANCEL)
    assert abs(cancels - mu) < SIGMAS * math.sqrt(mu) + 0.05 * mu


@pytest.mark.parametrize("inst", CONFIG.instruments, ids=lambda i: f"locate{i.locate}")
def test_fair_value_drifts_with_its_volatility(run: Run, inst: InstrumentFlow) -> None:
    steps = np.diff(np.array(run.fair[inst.locate]) / inst.tick)  # one-second moves, in ticks
    assert run.fair[inst.locate][-1] != run.fair[inst.locate][0]
    # ~300 one-second increments: the sample variance is within 30 % (> 4 sd of a chi-square/300)
    assert abs(np.var(steps) / inst.volatility_ticks**2 - 1) < 0.3


def test_request_count_over_a_long_window_is_poisson() -> None:
    inst = InstrumentFlow(locate=1, limit_rate=30.0, market_rate=3.0, cancel_rate=0.0)
    flow, engine = BackgroundFlow(FlowConfig(instruments=(inst,), seed=5)), new_engine()
    seconds = 3000.0
    requests = np.concatenate(drive(flow, engine, seconds))
    mu = (inst.limit_rate + inst.market_rate) * seconds
    assert abs(len(requests) - mu) < SIGMAS * math.sqrt(mu)
    assert flow.rejected == 0


def test_next_batch_needs_the_reports_of_the_previous_one() -> None:
    flow = BackgroundFlow(CONFIG)
    assert len(flow.next_batch(SESSION_START_NS + NS_PER_S)) > 0
    with pytest.raises(RuntimeError, match="on_reports"):
        flow.next_batch(SESSION_START_NS + 2 * NS_PER_S)


def test_runs_as_an_agent_on_a_clock() -> None:
    clock = [SESSION_START_NS]
    engine = new_engine()
    published = []
    flow = BackgroundFlow(CONFIG, engine, lambda: clock[0], on_submit=lambda r, itch: published.append(len(itch)))
    runner = AgentRunner(flow, idle="spin")
    assert runner.run_once() == 0
    clock[0] += 5 * NS_PER_S
    assert runner.run_once() > 100
    assert flow.now_ns == clock[0] and sum(published) > 0
    assert engine.book_snapshot(1)["bids"] and engine.book_snapshot(2)["asks"]
    runner.close()


def test_config_rejects_unknown_keys_and_bad_profiles() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"instruments": [{"locate": 1, "speed": 3}]}, FlowConfig)
    with pytest.raises(ValueError, match="profile"):
        InstrumentFlow(locate=1, depth_ticks=3, profile=(1.0, 0.5))
    weights = InstrumentFlow(locate=1, depth_ticks=3, profile=(2.0, 1.0, 1.0)).distance_weights()
    assert np.allclose(weights, [0.5, 0.25, 0.25])
