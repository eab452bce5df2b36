"""engine.runtime.affinity against the real scheduler and memory-locking syscalls of this machine."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime.affinity import (
    ANY_CPU,
    affinity_restored,
    allowed_cpus,
    cpu_pair,
    format_cpu_list,
    freeze_gc,
    parse_cpu_list,
    pin_process,
    plan_placement,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def helper_thread() -> Iterator[threading.Thread]:
    """A live thread that waits until the test ends."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="helper", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(timeout=5)


def test_parse_cpu_list_reads_ranges_and_singles() -> None:
    assert parse_cpu_list("0-2,5,8-9") == {0, 1, 2, 5, 8, 9}
    assert parse_cpu_list("") == frozenset()
    with pytest.raises(ValueError):
        parse_cpu_list("3-1")


def test_format_cpu_list_round_trips() -> None:
    cpus = {0, 1, 2, 5, 8, 9, 16}
    assert format_cpu_list(cpus) == "0-2,5,8-9,16"
    assert parse_cpu_list(format_cpu_list(cpus)) == cpus


def test_allowed_cpus_match_the_kernels_list_for_this_process() -> None:
    status = Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list:"))
    assert allowed_cpus() == parse_cpu_list(line.split(":", 1)[1].strip())


def test_plan_with_any_cpu_takes_the_highest_and_leaves_the_rest() -> None:
    placement = plan_placement(ANY_CPU, allowed={2, 3, 6})
    assert placement.hot_cpu == 6
    assert placement.other_cpus == {2, 3}
    assert not placement.shared


def test_plan_with_an_explicit_cpu_keeps_it() -> None:
    assert plan_placement(3, allowed={2, 3, 6}).hot_cpu == 3


def test_plan_with_a_cpu_outside_the_cpuset_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="2-3,6"):
        plan_placement(4, allowed={2, 3, 6})


def test_plan_with_one_cpu_shares_it_and_says_so() -> None:
    placement = plan_placement(ANY_CPU, allowed={5})
    assert placement.hot_cpu == 5
    assert placement.other_cpus == {5}
    assert placement.shared
    assert "shares" in placement.note


def test_pin_process_puts_the_caller_on_the_hot_cpu_and_other_threads_elsewhere(
    helper_thread: threading.Thread,
) -> None:
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip(f"needs two allowed CPUs, this process has {format_cpu_list(cpus)}")
    placement = plan_placement()
    pin_process(placement)
    assert os.sched_getaffinity(0) == {placement.hot_cpu}
    assert helper_thread.native_id is not None
    assert os.sched_getaffinity(helper_thread.native_id) == placement.other_cpus
    assert placement.hot_cpu not in placement.other_cpus


def test_pin_process_can_name_another_thread_as_the_hot_one(helper_thread: threading.Thread) -> None:
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip(f"needs two allowed CPUs, this process has {format_cpu_list(cpus)}")
    placement = plan_placement(min(cpus))
    assert helper_thread.native_id is not None
    pin_process(placement, hot_tid=helper_thread.native_id)
    assert os.sched_getaffinity(helper_thread.native_id) == {min(cpus)}
    assert os.sched_getaffinity(0) == placement.other_cpus


def test_pin_process_on_a_single_cpu_puts_every_thread_there(helper_thread: threading.Thread) -> None:
    only = min(allowed_cpus())
    os.sched_setaffinity(0, {only})  # this thread now has a one-CPU "cpuset"
    placement = plan_placement()
    assert placement.shared
    pin_process(placement)
    assert helper_thread.native_id is not None
    assert os.sched_getaffinity(0) == {only}
    assert os.sched_getaffinity(helper_thread.native_id) == {only}


def test_a_child_with_an_inherited_narrow_mask_can_take_the_cpu_it_is_given() -> None:
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip(f"needs two allowed CPUs, this process has {format_cpu_list(cpus)}")
    os.sched_setaffinity(0, {min(cpus)})  # the parent pinned itself; a child started now inherits that
    code = (
        "import os\n"
        "from engine.runtime.affinity import pin_process, plan_placement\n"
        f"pin_process(plan_placement({max(cpus)}, allowed={sorted(cpus)}))\n"
        "print(sorted(os.sched_getaffinity(0)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == str([max(cpus)])


def test_freeze_gc_moves_live_objects_to_the_permanent_generation() -> None:
    try:
        kept = [object() for _ in range(1000)]
        frozen = freeze_gc()
        assert frozen >= len(kept)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def _run_lock(setup: str) -> str:
    """Run lock_memory() in a child process after ``setup``.

    Prints ``locked | reason | locked kB`` and, after unlock_memory() when it locked, `` | kB``.
    """
    code = (
        "import os, resource\n"
        "from engine.runtime.affinity import lock_memory, unlock_memory\n"
        "def vmlck(): return next(x for x in open('/proc/self/status') if x.startswith('VmLck:')).split()[1]\n"
        f"{setup}\n"
        "result = lock_memory()\n"
        "print(result.locked, '|', result.reason, '|', vmlck(), end='')\n"
        "if result.locked:\n"
        "    unlock_memory()\n"
        "    print(' |', vmlck(), end='')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_lock_memory_locks_pages_where_allowed() -> None:
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    if os.geteuid() != 0 and hard != resource.RLIM_INFINITY:
        pytest.skip(f"not root and RLIMIT_MEMLOCK hard limit is {hard} bytes: locking is not permitted here")
    raise_soft_limit = "hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]\n"
    raise_soft_limit += "resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))"
    out = _run_lock(raise_soft_limit)
    locked, reason, locked_kb, unlocked_kb = (part.strip() for part in out.split("|"))
    assert (locked, reason) == ("True", "")
    assert int(locked_kb) > 0
    assert unlocked_kb == "0"


def test_lock_memory_without_permission_returns_false_with_the_reason() -> None:
    # No lockable memory, and (when started as root) an unprivileged user, so no CAP_IPC_LOCK either.
    drop = "resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))\nif os.geteuid() == 0:\n    os.setuid(65534)"
    out = _run_lock(drop)
    locked, reason, vmlck_kb = (part.strip() for part in out.split("|"))
    assert locked == "False"
    assert reason.startswith(("mlockall: EPERM", "mlockall: ENOMEM"))
    assert vmlck_kb == "0"


def test_cpu_pair_takes_the_two_highest_allowed_cpus_or_checks_the_requested_ones() -> None:
    assert cpu_pair(None, {0, 1, 2, 3}) == (3, 2)
    assert cpu_pair(None, {5}) == (5, 5)
    assert cpu_pair((0, 2), {0, 1, 2}) == (0, 2)
    with pytest.raises(ValueError, match="CPU 7"):
        cpu_pair((0, 7), {0, 1})


def test_normal_priority_undoes_the_niceness_ray_gives_its_workers() -> None:
    code = (
        "import os; from engine.runtime.affinity import normal_priority; "
        "note = normal_priority(); print(note, '|', os.getpriority(os.PRIO_PROCESS, 0))"
    )
    done = subprocess.run([sys.executable, "-c", code], preexec_fn=lambda: os.nice(15), capture_output=True,
                          text=True, timeout=60, cwd=REPO)  # fmt: skip
    note, niceness = done.stdout.strip().split(" | ")
    if note == "niceness 15 -> 0":
        assert niceness == "0"
    else:  # without CAP_SYS_NICE the process stays where it was, and says why
        assert (note, niceness) == ("niceness 15 (lowering it needs CAP_SYS_NICE)", "15")


def test_affinity_restored_puts_every_thread_back_after_a_pin(helper_thread: threading.Thread) -> None:
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip(f"needs two allowed CPUs, this process has {format_cpu_list(cpus)}")
    assert helper_thread.native_id is not None
    with affinity_restored():
        pin_process(plan_placement(min(cpus)))
        assert os.sched_getaffinity(0) == {min(cpus)}
    assert os.sched_getaffinity(0) == cpus
    assert os.sched_getaffinity(helper_thread.native_id) == cpus
