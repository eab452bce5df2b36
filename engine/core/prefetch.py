"""``prefetch(a, i)``: ask the CPU to bring the cache line of ``a[i]`` in, from a Numba kernel.

A book over hundreds of thousands of live orders misses the cache on nearly every order-hash probe
(the table is megabytes, the probes random). A kernel that knows which slot message ``i + k`` will
probe can prefetch it while it works on message ``i``, so the misses of consecutive messages overlap
instead of queueing. This is LLVM's ``llvm.prefetch`` (read, high locality, data cache); it never
faults, so any index is safe, and on a hit it costs about one instruction.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
_READ, _KEEP_IN_ALL_LEVELS, _DATA_CACHE = 0, 3, 1


@intrinsic
def prefetch(typingctx, arr, index):
    """Prefetch the cache line holding ``arr[index]`` of a 1-D array, or the start of row ``index`` of a
    2-D one (an integer index; no bounds check)."""
    if not isinstance(arr, types.Array) or arr.ndim not in (1, 2) or not isinstance(index, types.Integer):
        raise TypeError(f"prefetch takes a 1-D or 2-D array and an integer index, not {arr}, {index}")

    def codegen(context, builder, signature, args):
        array = context.make_array(arr)(context, builder, value=args[0])
        at = context.cast(builder, args[1], index, types.intp)
        indices = [at] if arr.ndim == 1 else [at, context.get_constant(types.intp, 0)]
        pointer = cgutils.get_item_pointer(context, builder, arr, array, indices, wraparound=False)
        raw = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [raw.type, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [raw, _I32(_READ), _I32(_KEEP_IN_ALL_LEVELS), _I32(_DATA_CACHE)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen
