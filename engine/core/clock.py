"""``monotonic_ns()`` inside compiled kernels: CLOCK_MONOTONIC, the clock of Python's ``time.monotonic_ns``.

Numba has no clock of its own. This intrinsic calls libc's ``clock_gettime(CLOCK_MONOTONIC)`` by
name, so the symbol is resolved when the (cached) machine code is loaded and the call goes through
the vDSO: about 30 ns here (clocksource ``tsc``), no system call. Timestamps taken in a kernel, in
Python and in another process on the same machine are directly comparable, which is what the
tick-to-trade stages need. :func:`stamp_ns` gives the same clock from the CPU's counter, for the many
stamps of a hot loop (below).
"""

from __future__ import annotations

import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.core.ffi import I32, I64, c_function
from engine.core.units import NS_PER_S

CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1  # <time.h> on Linux
_TIMESPEC = ir.LiteralStructType([I64, I64])  # struct timespec {time_t tv_sec; long tv_nsec;} on 64-bit Linux


def _clock_ns(clock_id: int):
    """The codegen of an intrinsic reading ``clock_id`` in nanoseconds."""

    def codegen(context, builder, signature, args):
        function = c_function(builder, "clock_gettime", I32, [I32, _TIMESPEC.as_pointer()])
        timespec = cgutils.alloca_once(builder, _TIMESPEC)  # in the entry block: safe inside loops
        builder.call(function, [ir.Constant(I32, clock_id), timespec])
        seconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 0))
        nanoseconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 1))
        return builder.add(builder.mul(seconds, ir.Constant(I64, NS_PER_S)), nanoseconds)

    return codegen


@intrinsic
def monotonic_ns(typingctx):
    """Nanoseconds of CLOCK_MONOTONIC (jitted code only)."""
    return types.int64(), _clock_ns(CLOCK_MONOTONIC)


@intrinsic
def realtime_ns(typingctx):
    """Nanoseconds since the epoch, CLOCK_REALTIME: Python's ``time.time_ns`` (jitted code only)."""
    return types.int64(), _clock_ns(CLOCK_REALTIME)


# --- stamps from the time-stamp counter ---------------------------------------------------------------
# A clock_gettime through the vDSO costs 30-45 ns here, and a tick crosses a dozen stage stamps between
# its packet and its order. A stamp clock reads the CPU's time-stamp counter instead (rdtsc, about half
# that) and turns it into CLOCK_MONOTONIC nanoseconds from an anchor: one real clock reading and the
# counter beside it, taken again whenever the anchor is older than its span (1 ms). Its stamps compare
# with any other process's CLOCK_MONOTONIC to within the anchor's error (a few ns) plus the rate's over
# one span. Four int64 words, wherever the caller keeps its scalars:
CK_NS, CK_TSC, CK_MULT, CK_SPAN = range(4)  # anchor ns, anchor count, ns per count << TSC_SHIFT (0: none), span
CLOCK_WORDS = 4
TSC_SHIFT = 24
ANCHOR_SPAN_NS = 1_000_000
_CALIBRATION_S = 0.01


@intrinsic
def tsc(typingctx):
    """The CPU's time-stamp counter (llvm.readcyclecounter: rdtsc on x86-64; jitted code only)."""

    def codegen(context, builder, signature, args):
        counter = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(I64, []))
        return builder.call(counter, [])

    return types.int64(), codegen


@njit(cache=True, nogil=True, inline="always")
def _reading_nb():
    """CLOCK_MONOTONIC and the counter at the same moment: the clock read between two counter readings."""
    before = tsc()
    now = monotonic_ns()
    return now, before + (tsc() - before) // 2


@njit(cache=True, nogil=True, inline="always")
def _anchor_nb(clock, at):
    """Anchor the stamp clock on a real reading now; returns it."""
    now, count = _reading_nb()
    clock[at + CK_NS] = now
    clock[at + CK_TSC] = count
    return now


@njit(cache=True, nogil=True, inline="always")
def stamp_ns(clock, at):
    """CLOCK_MONOTONIC nanoseconds for a stamp, from the stamp clock in ``clock[at:at + CLOCK_WORDS]``: the
    counter since the anchor, or a real reading (which re-anchors) when the anchor is older than its span
    or the clock has no rate (then it is :func:`monotonic_ns` with two counter reads more)."""
    elapsed = tsc() - clock[at + CK_TSC]
    if clock[at + CK_MULT] == 0 or elapsed < 0 or elapsed > clock[at + CK_SPAN]:
        return _anchor_nb(clock, at)
    return clock[at + CK_NS] + ((elapsed * clock[at + CK_MULT]) >> TSC_SHIFT)


def start_stamp_clock(clock: np.ndarray, at: int) -> None:
    """Measure the counter's rate against CLOCK_MONOTONIC (10 ms) and start the stamp clock at ``clock[at:]``.

    A counter that does not advance leaves the rate 0: every stamp is then a real clock reading."""
    ns0, count0 = _reading_nb()
    time.sleep(_CALIBRATION_S)
    ns1, count1 = _reading_nb()
    counts = count1 - count0
    clock[at + CK_MULT] = round((ns1 - ns0) * (1 << TSC_SHIFT) / counts) if counts > 0 else 0
    clock[at + CK_SPAN] = ANCHOR_SPAN_NS * counts // max(1, ns1 - ns0)
    clock[at + CK_NS], clock[at + CK_TSC] = ns1, count1
