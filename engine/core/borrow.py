"""Owner-less array views for Numba hot loops.

Numba reference-counts every array a jitted function binds to a variable, with an atomic
increment/decrement pair, and an inlined helper binds each array argument afresh. In a loop that
calls a few helpers per message this costs more than the work itself (measured here: 214 ns of
an ignored book event went to it). ``borrow(a)`` returns a view of ``a`` with no owner, for which
those operations compile to nothing. Borrow at the top of a kernel, from arrays that the caller
keeps alive for the duration of the call; never return or store a borrowed view.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _borrowed(context, builder, array_type, value):
    """LLVM value of a view of array ``value`` (of ``array_type``) with its owner and parent nulled."""
    src = context.make_array(array_type)(context, builder, value=value)
    view = context.make_array(array_type)(context, builder)
    for name in ("nitems", "itemsize", "data", "shape", "strides"):
        setattr(view, name, getattr(src, name))
    view.meminfo = cgutils.get_null_value(view.meminfo.type)
    view.parent = cgutils.get_null_value(view.parent.type)
    return view._getvalue()


@intrinsic
def borrow(typingctx, arr):
    """A view of ``arr`` sharing its data, shape and strides, without a reference to its owner."""

    def codegen(context, builder, signature, args):
        return _borrowed(context, builder, arr, args[0])

    return arr(arr), codegen


@intrinsic
def borrow_all(typingctx, state):
    """The (named) tuple ``state`` with every array member borrowed (:func:`borrow`); numbers as they are.

    A state tuple of many arrays passed to helper after helper costs an increment/decrement pair per
    array per call; borrowed once at the top of a kernel, it costs nothing."""
    kinds = types.Array | types.Number
    if not isinstance(state, types.BaseTuple) or not all(isinstance(t, kinds) for t in state.types):
        raise TypeError(f"borrow_all takes a tuple of arrays (and numbers), not {state}")

    def codegen(context, builder, signature, args):
        out = args[0]
        for i, member in enumerate(state.types):
            if isinstance(member, types.Array):
                view = _borrowed(context, builder, member, builder.extract_value(args[0], i))
                out = builder.insert_value(out, view, i)
        return out

    return state(state), codegen
