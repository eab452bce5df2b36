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

from engine.core.units import NS_PER_S

CLOCK_MONOTONIC = 1  # <time.h> on Linux
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_TIMESPEC = ir.LiteralStructType([_I64, _I64])  # struct timespec {time_t tv_sec; long tv_nsec;} on 64-bit Linux


@intrinsic
def monotonic_ns(typingctx):
    """Nanoseconds of CLOCK_MONOTONIC (jitted code only)."""

    def codegen(context, builder, signature, args):
        module = builder.module
        function = module.globals.get("clock_gettime")
        if function is None:
            function = ir.Function(module, ir.FunctionType(_I32, [_I32, _TIMESPEC.as_pointer()]), "clock_gettime")
        timespec = cgutils.alloca_once(builder, _TIMESPEC)  # in the entry block: safe inside loops
        builder.call(function, [ir.Constant(_I32, CLOCK_MONOTONIC), timespec])
        seconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 0))
        nanoseconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 1))
        return builder.add(builder.mul(seconds, ir.Constant(_I64, NS_PER_S)), nanoseconds)

    return types.int64(), codegen
