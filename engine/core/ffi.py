"""C functions called by symbol name from compiled code: cacheable, no ctypes object in the kernel.

A jitted function that calls a ctypes function object cannot be cached (the object is a dynamic
global). An intrinsic that *declares* the C function by its symbol name can: the name is resolved
when the machine code is linked, also when it is loaded from Numba's cache in a new process. libc's
symbols are always resolvable; another library's must be made visible first with
``llvmlite.binding.load_library_permanently`` (``engine.gateway.aeron_c.load`` does this for Aeron).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = I8.as_pointer()
MSG_DONTWAIT = 0x40  # <sys/socket.h> on Linux


def c_function(builder: ir.IRBuilder, name: str, result: ir.Type, arguments: list[ir.Type]) -> ir.Function:
    """The declaration of C function ``name`` in the module being built (declared on first use)."""
    function = builder.module.globals.get(name)
    if function is None:
        function = ir.Function(builder.module, ir.FunctionType(result, arguments), name)
    return function


def check_integers(*arguments: types.Type) -> None:
    """Typing check of an intrinsic's arguments: integers only (pointers travel as int64)."""
    for argument in arguments:
        if not isinstance(argument, types.Integer):
            raise TypeError(f"expected an integer (address, descriptor or count), got {argument}")


@intrinsic
def recv_dontwait(typingctx, fd, address, capacity):
    """libc ``recv(fd, address, capacity, MSG_DONTWAIT)``: bytes read, or -1 (nothing waiting, or an error)."""
    check_integers(fd, address, capacity)

    def codegen(context, builder, signature, args):
        recv = c_function(builder, "recv", I64, [I32, PTR, I64, I32])
        descriptor = builder.trunc(args[0], I32)
        return builder.call(recv, [descriptor, builder.inttoptr(args[1], PTR), args[2], ir.Constant(I32, MSG_DONTWAIT)])

    return types.int64(types.int64, types.int64, types.int64), codegen


@intrinsic
def send_datagram(typingctx, fd, address, length):
    """libc ``send(fd, address, length, 0)`` on a connected datagram socket: bytes sent, or -1.

    Blocking (flags 0): a full socket buffer waits for room rather than dropping the datagram."""
    check_integers(fd, address, length)

    def codegen(context, builder, signature, args):
        send = c_function(builder, "send", I64, [I32, PTR, I64, I32])
        descriptor = builder.trunc(args[0], I32)
        return builder.call(send, [descriptor, builder.inttoptr(args[1], PTR), args[2], ir.Constant(I32, 0)])

    return types.int64(types.int64, types.int64, types.int64), codegen
