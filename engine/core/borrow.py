"""Owner-less array views for Numba hot loops.

Numba reference-counts every array a jitted function binds to a variable, with an atomic
increment/decrement pair, and an inlined helper binds each array argument afresh. In a loop that
calls a few helpers per message this costs more than the work itself (measured here: 214 ns of
an ignored book event went to it). ``borrow(a)`` returns a view of ``a`` with no owner, for which
those operations compile to nothing. Borrow at the top of a kernel, from arrays that the caller
keeps alive for the duration of the call; never return or store a borrowed view.
"""

from __future__ import annotations

from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def borrow(typingctx, arr):
    """A view of ``arr`` sharing its data, shape and strides, without a reference to its owner."""

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        view = context.make_array(arr)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, name, getattr(src, name))
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return arr(arr), codegen
