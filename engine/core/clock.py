"""``monotonic_ns()`` inside compiled kernels: CLOCK_MONOTONIC, the clock of Python's ``time.monotonic_ns``.

Numba has no clock of its own. This intrinsic calls libc's ``clock_gettime(CLOCK_MONOTONIC)`` by
name, so the symbol is resolved when the (cached) machine code is loaded and the call goes through
the vDSO: about 30 ns here (clocksource ``tsc``), no system call. Timestamps taken in a kernel, in
Python and in another process on the same machine are directly comparable, which is what the
tick-to-trade stages need.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
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
