"""Shared fixtures: where the real market data lives, and skipping cleanly when it does not; and the
background compile of the node and exchange kernels (``tests/prewarm.py``) when integration tests run."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.runtime.affinity import affinity_restored

REPO = Path(__file__).resolve().parents[1]
REPLAY_DATA = REPO.parent / "shared" / "replay_data"
_NETNS_IDS = itertools.count()
PREWARM_STOP_S = 30.0
_prewarm: list[subprocess.Popen] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """With integration tests to run, compile the node and exchange kernels on the other CPU meanwhile
    (``HFTMM_PREWARM=0`` turns it off)."""
    heavy = any(item.nodeid.startswith(("tests/integration/", "tests/monitoring/")) for item in session.items)
    if heavy and os.environ.get("HFTMM_PREWARM", "1") != "0":
        _prewarm.append(subprocess.Popen([sys.executable, "-m", "tests.prewarm"], cwd=REPO, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the background compile if it is still going (a short run of the suite)."""
    for process in _prewarm:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=PREWARM_STOP_S)


@pytest.fixture(autouse=True)
def keep_cpus() -> Iterator[None]:
    """Every thread back on its CPUs after each test: a node or benchmark run in-process pins every thread
    of the process (the test runner's too), which would leave the rest of the suite, and every process it
    starts, on one CPU."""
    with affinity_restored():
        yield


@pytest.fixture(scope="session")
def replay_data() -> Path:
    """The read-only real-data folder beside the project (../shared/replay_data)."""
    if not REPLAY_DATA.is_dir():
        pytest.skip(f"real data folder {REPLAY_DATA} is absent")
    return REPLAY_DATA


def real_file(root: Path, relative: str) -> Path:
    """One file of the real data, skipping the test when that file is missing."""
    path = root / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent")
    return path


@pytest.fixture
def netns() -> Iterator[str]:
    """Run the test's thread inside a fresh network namespace with only ``lo`` up.

    Multicast tests live here so that no datagram ever reaches the host's interfaces. Sockets and
    threads created while the fixture is active belong to the namespace; skips with the reason when
    namespaces cannot be made (not root, no iproute2).
    """
    name = f"hftmm-test-{os.getpid()}-{next(_NETNS_IDS)}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot create a network namespace here ({exc})")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            os.setns(target, os.CLONE_NEWNET)
            try:
                yield name
            finally:
                os.setns(home, os.CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(home)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10)


def step_until(
    step: Callable[[], int], done: Callable[[], bool], *, wait_s: float, max_cycles: int, idle_s: float = 0.0002
) -> None:
    """Call ``step()`` until ``done()``, bounded in cycles and in time; sleep briefly when a step did nothing."""
    deadline = time.monotonic() + wait_s
    for _ in range(max_cycles):
        if done():
            return
        if time.monotonic() > deadline:
            break
        if not step():
            time.sleep(idle_s)
    assert done(), f"condition not reached within {max_cycles} cycles and {wait_s} s"


MULTICAST_PROBE_S = 1.0


def skip_unless_multicast_loops_back(group: str, interface: str = "127.0.0.1") -> None:
    """Skip the test when a plain socket's multicast datagram to ``group`` does not come back on this host
    (a property of the host, probed apart from the code under test, so that the code cannot cause the skip)."""
    import select
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind((group, 0))
        membership = socket.inet_aton(group) + socket.inet_aton(interface)
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"probe", (group, receiver.getsockname()[1]))
        ready, _, _ = select.select([receiver], [], [], MULTICAST_PROBE_S)
    except OSError as exc:
        pytest.skip(f"no multicast on {interface} here: {exc}")
    finally:
        receiver.close()
        sender.close()
    if not ready:
        pytest.skip("multicast datagrams do not loop back on this host")
