"""Agent runner: manual stepping, its own thread, counters and the idle strategies by alias."""

from __future__ import annotations

import time

import pytest

from engine.runtime import agent as agent_module
from engine.runtime.agent import Agent, AgentRunner, BackoffIdle, SleepIdle, SpinIdle, YieldIdle, idle_strategy

WAIT_S = 5.0


class CountingAgent:
    """Does one unit of work per call until its budget runs out; records its life cycle."""

    role_name = "counting"

    def __init__(self, budget: int, fail_at: int = -1) -> None:
        self.budget = budget
        self.fail_at = fail_at
        self.calls = 0
        self.events: list[str] = []

    def on_start(self) -> None:
        self.events.append("start")

    def do_work(self) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ValueError("boom")
        if self.budget:
            self.budget -= 1
            return 1
        return 0

    def on_close(self) -> None:
        self.events.append("close")


def test_counting_agent_satisfies_the_protocol() -> None:
    assert isinstance(CountingAgent(1), Agent)


@pytest.mark.parametrize(
    ("alias", "kind"), [("spin", SpinIdle), ("yield", YieldIdle), ("backoff", BackoffIdle), ("sleep:250", SleepIdle)]
)
def test_idle_strategy_by_alias(alias: str, kind: type) -> None:
    assert isinstance(idle_strategy(alias), kind)


def test_sleep_alias_takes_microseconds_and_defaults() -> None:
    assert idle_strategy("sleep:250").sleep_ns == 250_000
    assert idle_strategy("sleep").sleep_ns == agent_module.DEFAULT_SLEEP_US * 1_000


@pytest.mark.parametrize("alias", ["busy", "spin:3", "sleep:0", "sleep:x", ""])
def test_bad_idle_alias_raises(alias: str) -> None:
    with pytest.raises(ValueError):
        idle_strategy(alias)


def test_backoff_spins_then_yields_then_parks_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(agent_module.os, "sched_yield", lambda: calls.append("yield"))
    monkeypatch.setattr(agent_module.time, "sleep", lambda s: calls.append(f"sleep {round(s * 1e9)}"))
    idle = BackoffIdle(max_spins=2, max_yields=2, min_park_ns=1_000, max_park_ns=4_000)
    for _ in range(8):
        idle.idle(0)
    assert calls == ["yield", "yield", "sleep 1000", "sleep 2000", "sleep 4000", "sleep 4000"]
    idle.idle(1)  # work resets the ladder
    assert (idle.spins, idle.yields, idle.park_ns) == (0, 0, 1_000)


def test_yield_and_sleep_only_idle_without_work(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(agent_module.os, "sched_yield", lambda: calls.append("yield"))
    monkeypatch.setattr(agent_module.time, "sleep", lambda s: calls.append("sleep"))
    YieldIdle().idle(3)
    SleepIdle(1_000).idle(3)
    assert calls == []
    YieldIdle().idle(0)
    SleepIdle(1_000).idle(0)
    assert calls == ["yield", "sleep"]


def test_run_once_steps_every_agent_and_counts_duty_cycles() -> None:
    first, second = CountingAgent(2), CountingAgent(1)
    runner = AgentRunner([first, second], idle="spin")
    assert runner.name == "counting+counting"
    assert [runner.run_once() for _ in range(4)] == [2, 1, 0, 0]
    assert first.events == ["start"] and second.events == ["start"]
    assert runner.duty_cycles == 4
    assert runner.work_count == 3
    assert runner.max_duty_cycle_ns > 0
    runner.close()
    assert first.events == ["start", "close"]
    with pytest.raises(RuntimeError):
        runner.run_once()


def test_close_without_start_does_not_call_on_close() -> None:
    agent = CountingAgent(1)
    AgentRunner(agent).close()
    assert agent.events == []


@pytest.mark.parametrize("alias", ["spin", "yield", "backoff", "sleep:100"])
def test_thread_runs_agents_until_closed(alias: str) -> None:
    agent = CountingAgent(1000)
    runner = AgentRunner(agent, idle=alias)
    runner.start()
    deadline = time.monotonic() + WAIT_S
    while agent.budget and time.monotonic() < deadline:
        time.sleep(0.001)
    runner.close()
    assert agent.budget == 0
    assert agent.events == ["start", "close"]
    assert runner.duty_cycles >= 1000
    with pytest.raises(RuntimeError):
        runner.run_once()
    with pytest.raises(RuntimeError):
        runner.start()


def test_agent_error_stops_the_thread_and_surfaces_on_close() -> None:
    agent = CountingAgent(10, fail_at=3)
    runner = AgentRunner(agent, idle="backoff")
    runner.start()
    deadline = time.monotonic() + WAIT_S
    while runner.error is None and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(RuntimeError, match="failed") as info:
        runner.close()
    assert isinstance(info.value.__cause__, ValueError)
    assert agent.events == ["start", "close"]


def test_runner_needs_an_agent() -> None:
    with pytest.raises(ValueError):
        AgentRunner([])
