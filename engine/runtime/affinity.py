"""CPU placement and memory locking for the live daemon.

Inside a Guaranteed pod on a node with the static CPU manager, the container's cpuset holds exactly
the integer CPUs it asked for, and ``os.sched_getaffinity(0)`` returns that set. The daemon keeps one
of those CPUs for its hot thread (the trading loop) and puts every other thread of the process
(exporter, Aeron client conductor, embedded media driver, ...) on the rest, so nothing else ever
runs on the hot CPU. With a single CPU there is nothing to split: both share it, and the placement
says so.

Child processes inherit the mask of the thread that starts them, so read :func:`allowed_cpus` once,
before pinning anything, and give each node process its CPU explicitly (``plan_placement(cpu,
allowed=...)``): a process may move to any CPU of its cpuset, whatever mask it inherited.

After start-up the daemon calls :func:`freeze_gc` (objects that live for the whole run leave the
collector's generations, so later collections scan less) and :func:`lock_memory` (``mlockall``),
which fails softly where the container may not lock memory.

>>> placement = plan_placement(cpu=-1)
>>> pin_process(placement)
>>> freeze_gc()
>>> lock_memory()
LockResult(locked=True, reason='')
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

MCL_CURRENT = 1  # lock every page mapped now
MCL_FUTURE = 2  # and every page mapped later
ANY_CPU = -1  # config value: pick the hot CPU from the allowed set


def parse_cpu_list(text: str) -> frozenset[int]:
    """CPUs of a kernel cpu list such as ``"0-3,8,10-11"`` (the empty string is the empty set)."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low < 0 or high < low:
            raise ValueError(f"bad CPU range {part!r} in {text!r}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """The kernel's compact form of a set of CPUs: ``{0, 1, 2, 5}`` gives ``"0-2,5"``."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            low, high = ordered[start], ordered[i - 1]
            ranges.append(str(low) if low == high else f"{low}-{high}")
            start = i
    return ",".join(ranges)


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may run on (in a container: its cpuset)."""
    return frozenset(os.sched_getaffinity(0))


def check_cpus(cpus: Iterable[int], what: str) -> None:
    """Raise ValueError naming ``what`` when a CPU of ``cpus`` is not one this process may run on."""
    allowed = allowed_cpus()
    for cpu in cpus:
        if cpu not in allowed:
            raise ValueError(f"{what}: cpu {cpu} is not one this process may run on ({format_cpu_list(allowed)})")


@dataclass(frozen=True)
class Placement:
    """Where the hot thread and the other threads of the process run.

    ``shared`` is true when the process has a single CPU, which then serves both; ``note`` says so
    in words for the start-up log.
    """

    hot_cpu: int
    other_cpus: frozenset[int]
    shared: bool
    note: str


def plan_placement(cpu: int = ANY_CPU, allowed: Iterable[int] | None = None) -> Placement:
    """Choose the hot CPU (``cpu``, or the highest allowed one for ``ANY_CPU``) and the rest.

    ``allowed`` defaults to :func:`allowed_cpus`. Raises ``ValueError`` when ``cpu`` is not allowed.
    """
    cpus = frozenset(allowed_cpus() if allowed is None else allowed)
    if not cpus:
        raise ValueError("no allowed CPUs")
    if cpu == ANY_CPU:
        hot = max(cpus)
    elif cpu in cpus:
        hot = cpu
    else:
        raise ValueError(f"CPU {cpu} is not among the allowed CPUs {format_cpu_list(cpus)}")
    others = cpus - {hot}
    if not others:
        note = f"one CPU ({hot}): the hot thread shares it with every other thread"
        return Placement(hot, frozenset({hot}), True, note)
    note = f"hot thread on CPU {hot}, other threads on CPUs {format_cpu_list(others)}"
    return Placement(hot, others, False, note)


def cpu_pair(requested: tuple[int, int] | None = None, allowed: Iterable[int] | None = None) -> tuple[int, int]:
    """Two CPUs for two busy-polling processes: ``requested`` (each must be allowed), else the highest
    allowed CPU and the next one below (the same one twice on a single CPU)."""
    cpus = frozenset(allowed_cpus() if allowed is None else allowed)
    if requested is not None:
        for cpu in requested:
            plan_placement(cpu, cpus)  # ValueError for a CPU outside the allowed set
        return requested
    ordered = sorted(cpus, reverse=True)
    return ordered[0], ordered[min(1, len(ordered) - 1)]


def thread_ids() -> list[int]:
    """Kernel thread ids of every thread of this process (``/proc/self/task``)."""
    return sorted(int(name) for name in os.listdir("/proc/self/task"))


def pin_process(placement: Placement, hot_tid: int | None = None) -> None:
    """Pin ``hot_tid`` (default: the calling thread) to the hot CPU, every other thread to the rest.

    Threads inherit their creator's CPUs, so start helper threads before calling this, or from a
    thread already on the other CPUs. Threads that end meanwhile are skipped.
    """
    hot = threading.get_native_id() if hot_tid is None else hot_tid
    for tid in thread_ids():
        if tid == hot:
            continue
        try:
            os.sched_setaffinity(tid, placement.other_cpus)
        except ProcessLookupError:  # the thread ended between listing and pinning
            continue
    os.sched_setaffinity(hot, {placement.hot_cpu})


@contextlib.contextmanager
def affinity_restored() -> Iterator[None]:
    """Put every thread of the process back on the CPUs it had on entry, when the block ends.

    For code that pins a process it does not own for good (a benchmark run from a test or a notebook):
    without it the caller's interpreter would stay on one CPU afterwards."""
    before = {tid: os.sched_getaffinity(tid) for tid in thread_ids()}
    try:
        yield
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(ProcessLookupError):  # the thread has ended
                os.sched_setaffinity(tid, cpus)


def normal_priority() -> str:
    """Bring the calling thread back to niceness 0 (on Linux niceness is per thread; Ray starts its workers
    at 15, which puts a node's busy loop behind every ordinary process); a note of the outcome (lowering
    needs CAP_SYS_NICE). Call it on the hot thread."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if before <= 0:
        return f"niceness {before}"
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:
        return f"niceness {before} (lowering it needs CAP_SYS_NICE)"
    return f"niceness {before} -> 0"


def freeze_gc() -> int:
    """Collect once, then move every tracked object to the permanent generation; returns their count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@dataclass(frozen=True)
class LockResult:
    """Outcome of :func:`lock_memory`: ``locked``, and when not, the reason in words."""

    locked: bool
    reason: str


def _libc() -> ctypes.CDLL:
    """The C library, with errno kept for the calls made through it."""
    return ctypes.CDLL(None, use_errno=True)


def lock_memory(flags: int = MCL_CURRENT | MCL_FUTURE) -> LockResult:
    """``mlockall(flags)``: keep the process's pages in RAM, now and (by default) later.

    Not being allowed to (no CAP_IPC_LOCK and RLIMIT_MEMLOCK too small: EPERM or ENOMEM) is an
    expected outcome, returned as ``locked=False`` with the reason; other failures raise ``OSError``.
    """
    if _call(_libc().mlockall, flags) == 0:
        return LockResult(True, "")
    code = ctypes.get_errno()
    if code in (errno.EPERM, errno.ENOMEM):
        return LockResult(False, f"mlockall: {errno.errorcode[code]}: {os.strerror(code)}")
    raise OSError(code, f"mlockall: {os.strerror(code)}")


def unlock_memory() -> None:
    """``munlockall()``: undo :func:`lock_memory`."""
    if _call(_libc().munlockall) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"munlockall: {os.strerror(code)}")


def _call(function: Callable[..., int], *args: int) -> int:
    """Call a libc function with errno cleared first; its int result."""
    ctypes.set_errno(0)
    return int(function(*args))
