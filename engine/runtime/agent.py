"""Agents and the runner that owns their loop (Agrona's agent model, kept small).

An agent does a bounded slice of work per :meth:`Agent.do_work` call and returns how much it did
(0 = idle). Only :class:`AgentRunner` loops: on its own thread, or stepped by hand with
:meth:`AgentRunner.run_once` in tests, backtests and Ray actors. When a duty cycle does no work the
runner calls its idle strategy, chosen by alias:

    "spin"          busy-spin (burns a core; count the spinners on small machines)
    "yield"         os.sched_yield()
    "backoff"       spin, then yield, then sleep from BACKOFF_MIN_PARK_NS doubling to BACKOFF_MAX_PARK_NS
    "sleep:N_US"    sleep N microseconds ("sleep" alone: DEFAULT_SLEEP_US)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from engine.core.units import NS_PER_S, NS_PER_US

BACKOFF_MAX_SPINS = 100
BACKOFF_MAX_YIELDS = 20
BACKOFF_MIN_PARK_NS = 1_000
BACKOFF_MAX_PARK_NS = 1_000_000
DEFAULT_SLEEP_US = 1_000


@runtime_checkable
class Agent(Protocol):
    """A component driven by a runner."""

    role_name: str

    def on_start(self) -> None:
        """Called once, on the runner's thread, before the first duty cycle."""

    def do_work(self) -> int:
        """Do a bounded amount of work; return the work count (0 = idle)."""

    def on_close(self) -> None:
        """Called once, on the runner's thread, after the last duty cycle."""


class IdleStrategy(Protocol):
    """What a runner does after a duty cycle: back off when it did no work."""

    def idle(self, work_count: int) -> None:
        """Idle after a duty cycle with ``work_count`` (reset on work)."""


class SpinIdle:
    """Busy-spin: never give the core away."""

    def idle(self, work_count: int) -> None:
        """Do nothing."""


class YieldIdle:
    """Give the core to another runnable thread when idle."""

    def idle(self, work_count: int) -> None:
        """sched_yield on an idle cycle."""
        if work_count <= 0:
            os.sched_yield()


class SleepIdle:
    """Sleep a fixed time when idle."""

    def __init__(self, sleep_ns: int) -> None:
        if sleep_ns <= 0:
            raise ValueError(f"sleep must be positive, got {sleep_ns} ns")
        self.sleep_ns = sleep_ns

    def idle(self, work_count: int) -> None:
        """Sleep ``sleep_ns`` on an idle cycle."""
        if work_count <= 0:
            time.sleep(self.sleep_ns / NS_PER_S)


class BackoffIdle:
    """Spin, then yield, then sleep with a doubling park time up to a cap; any work resets it."""

    def __init__(
        self,
        max_spins: int = BACKOFF_MAX_SPINS,
        max_yields: int = BACKOFF_MAX_YIELDS,
        min_park_ns: int = BACKOFF_MIN_PARK_NS,
        max_park_ns: int = BACKOFF_MAX_PARK_NS,
    ) -> None:
        if min(max_spins, max_yields) < 0 or not 0 < min_park_ns <= max_park_ns:
            raise ValueError("backoff needs spins, yields >= 0 and 0 < min_park_ns <= max_park_ns")
        self.max_spins = max_spins
        self.max_yields = max_yields
        self.min_park_ns = min_park_ns
        self.max_park_ns = max_park_ns
        self.spins = 0
        self.yields = 0
        self.park_ns = min_park_ns

    def reset(self) -> None:
        """Back to spinning."""
        self.spins = 0
        self.yields = 0
        self.park_ns = self.min_park_ns

    def idle(self, work_count: int) -> None:
        """One step of the back-off ladder, or a reset after work."""
        if work_count > 0:
            self.reset()
        elif self.spins < self.max_spins:
            self.spins += 1
        elif self.yields < self.max_yields:
            self.yields += 1
            os.sched_yield()
        else:
            time.sleep(self.park_ns / NS_PER_S)
            self.park_ns = min(self.park_ns * 2, self.max_park_ns)


def idle_strategy(alias: str) -> IdleStrategy:
    """The idle strategy named by ``alias`` ("spin", "yield", "backoff", "sleep" or "sleep:N_US")."""
    name, _, arg = alias.partition(":")
    if name == "sleep":
        return SleepIdle(int(arg or DEFAULT_SLEEP_US) * NS_PER_US)
    if arg:
        raise ValueError(f"idle strategy {name!r} takes no argument: {alias!r}")
    strategies = {"spin": SpinIdle, "yield": YieldIdle, "backoff": BackoffIdle}
    if name not in strategies:
        raise ValueError(f"unknown idle strategy {alias!r}; expected spin, yield, backoff or sleep:N_US")
    return strategies[name]()


class AgentRunner:
    """Runs agents in duty cycles (each agent's do_work once per cycle), threaded or stepped by hand.

    Counters (read from any thread): ``duty_cycles``, ``work_count`` (sum over cycles) and
    ``max_duty_cycle_ns``. An exception in an agent stops the thread; it is kept in ``error``.
    """

    def __init__(self, agents: Agent | Sequence[Agent], idle: str | IdleStrategy = "backoff", name: str = "") -> None:
        self.agents: tuple[Agent, ...] = (agents,) if isinstance(agents, Agent) else tuple(agents)
        if not self.agents:
            raise ValueError("a runner needs at least one agent")
        self.idle = idle_strategy(idle) if isinstance(idle, str) else idle
        self.name = name or "+".join(agent.role_name for agent in self.agents)
        self.duty_cycles = 0
        self.work_count = 0
        self.max_duty_cycle_ns = 0
        self.error: BaseException | None = None
        self._started = False
        self._closed = False
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_agents(self) -> None:
        if not self._started:
            self._started = True
            for agent in self.agents:
                agent.on_start()

    def _duty_cycle(self) -> int:
        begin = time.perf_counter_ns()
        work = 0
        for agent in self.agents:
            work += agent.do_work()
        elapsed = time.perf_counter_ns() - begin
        self.duty_cycles += 1
        self.work_count += work
        if elapsed > self.max_duty_cycle_ns:
            self.max_duty_cycle_ns = elapsed
        return work

    def run_once(self) -> int:
        """One duty cycle on the caller's thread (starting the agents first); returns the work count."""
        if self._thread is not None:
            raise RuntimeError(f"runner {self.name!r} runs on its own thread")
        if self._closed:
            raise RuntimeError(f"runner {self.name!r} is closed")
        self._start_agents()
        return self._duty_cycle()

    def start(self) -> None:
        """Run the agents on a daemon thread until :meth:`close`."""
        if self._thread is not None or self._started or self._closed:
            raise RuntimeError(f"runner {self.name!r} was already started")
        self._running.set()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._start_agents()
            while self._running.is_set():
                self.idle.idle(self._duty_cycle())
        except BaseException as exc:  # kept for the owner; the thread just ends
            self.error = exc
        finally:
            self._close_agents()

    def _close_agents(self) -> None:
        was_open = self._started and not self._closed
        self._closed = True
        if was_open:
            for agent in self.agents:
                agent.on_close()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (if any) and close the agents; re-raises an agent's error."""
        if self._thread is not None:
            self._running.clear()
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"runner {self.name!r} did not stop within {timeout_s} s")
        else:
            self._close_agents()
        if self.error is not None:
            raise RuntimeError(
                f"agent of runner {self.name!r} failed: {type(self.error).__name__}: {self.error}"
            ) from self.error

    def __enter__(self) -> AgentRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
