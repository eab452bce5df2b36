"""Aeron's C client called from compiled code: offer and poll inside ``@njit`` loops, cacheable.

pyaeron wraps the C client in Python objects, so every offer and poll from a jitted trading loop
would have to return to the interpreter. This module calls the C functions directly. pyaeron's
extension module carries the whole C client (and driver) with its ``aeron_*`` symbols exported;
:func:`load` makes them visible to LLVM, and the intrinsics below declare each C function by its
symbol name (``engine.core.ffi``), as ``engine.core.clock`` does for ``clock_gettime``. The name is resolved when the
machine code is linked, also when it comes from ``NUMBA_CACHE_DIR`` in a new process, so every
compiled function here and its callers can be cached (a ctypes function object would be a dynamic
global and forbid caching). Importing this module calls :func:`load`.

Set-up is Python (:class:`Client`, through ctypes): context, client, publications, subscriptions,
all raw pointers as ``int``. The client conductor runs in its own C thread that sleeps
``idle_sleep_ns`` between duty cycles, so the hot loop never has to serve it; with
``use_conductor_invoker=True`` there is no such thread and the hot loop must call
:func:`main_do_work_nb` itself (at least every few hundred ms, or the driver drops the client).

Compiled side: :func:`offer_nb` (one attempt), :func:`offer_retry_nb` (retries ADMIN_ACTION and
BACK_PRESSURED a bounded number of times), :func:`poll_nb` with :data:`INBOX_HANDLER` (a cached
``@cfunc`` fragment handler) appending each fragment into an *inbox*, read with the ``inbox_*``
functions once ``poll_nb`` has returned.

Inbox: one C-contiguous uint8 array (from :func:`make_inbox`), its address is the handler's clientd.
Integers are int64, native (little-endian) order::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +---------------------------------------------------------------+
   0 |                        Fragment Count                         |
     |                                                               |
     +---------------------------------------------------------------+
   8 |                    Data Bytes Used (aligned)                  |
     |                                                               |
     +---------------------------------------------------------------+
  16 |          Overflow Count (fragments dropped, cumulative)       |
     |                                                               |
     +---------------------------------------------------------------+
  24 |                 Fragment Capacity (table rows)                |
     |                                                               |
     +---------------------------------------------------------------+
  32 |                    Data Capacity (bytes)                      |
     |                                                               |
     +---------------------------------------------------------------+
  40 |                       Reserved (zero)                        ...
 ... |                                                               |
     +---------------------------------------------------------------+
  64 |  Fragment table, Fragment Capacity rows of 24 bytes:          |
     |    Data Offset: byte offset of the fragment in the inbox      |
     |    Length: bytes of the fragment                              |
     |    Session Id: session of the image (the sender's publication)|
     +---------------------------------------------------------------+
   D |  Data, Data Capacity bytes; each fragment starts at an        |
 ... |  8-byte aligned offset.  D = 64 + 24 * Fragment Capacity      |
     +---------------------------------------------------------------+

The handler writes a fragment only if a table row and its bytes fit; otherwise it adds one to
Overflow Count and drops the fragment (the subscription has consumed it all the same). With
Fragment Capacity >= the poll's fragment limit and Data Capacity >= that many aligned maximum-size
messages, and the inbox cleared after each poll, nothing is dropped. :func:`inbox_clear` empties
the inbox (not the overflow count). Fragments are not reassembled: a message longer than the
publication's maximum payload (MTU 1408 - 32 header bytes by default) arrives as several fragments.

Pointers (publications, subscriptions, the client) are dead after :meth:`Client.close`; an
exclusive publication and a subscription must each be used by one thread at a time.
"""

from __future__ import annotations

import ctypes
import importlib.util
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.core.ffi import I8, I32, I64, PTR, c_function, check_integers

# Offer results (aeronc.h, AERON_PUBLICATION_*); a positive result is the new stream position.
AERON_PUBLICATION_NOT_CONNECTED = -1  # no subscriber (image) yet
AERON_PUBLICATION_BACK_PRESSURED = -2  # the slowest subscriber is a window behind: retry
AERON_PUBLICATION_ADMIN_ACTION = -3  # the log rotated to the next term: retry at once
AERON_PUBLICATION_CLOSED = -4
AERON_PUBLICATION_MAX_POSITION_EXCEEDED = -5
AERON_PUBLICATION_ERROR = -6  # bad arguments, see aeron_errmsg()

DEFAULT_IDLE_SLEEP_NS = 1_000_000  # client conductor thread's sleep between duty cycles
DEFAULT_DRIVER_TIMEOUT_MS = 10_000  # Aeron's default: how long the client waits for a silent driver
DEFAULT_ADD_TIMEOUT_S = 5.0  # wait for the driver to complete an add_* request
_ADD_POLL_SLEEP_S = 0.0002  # sleep between polls of an add_* request

INBOX_COUNT = 0  # int64 word indices of the inbox header
INBOX_USED_BYTES = 1
INBOX_OVERFLOWS = 2
INBOX_MAX_FRAGMENTS = 3
INBOX_DATA_CAPACITY = 4
INBOX_HEADER_BYTES = 64
INBOX_ROW_WORDS = 3  # data offset, length, session id
INBOX_ROW_BYTES = INBOX_ROW_WORDS * 8
INBOX_ALIGNMENT_BYTES = 8
_HEADER_WORDS = INBOX_HEADER_BYTES // 8

# aeron_header_values_t under #pragma pack(4): frame (32 bytes) with session_id at byte 12,
# initial_term_id (int32) at 32, position_bits_to_shift (size_t) at 36: 44 bytes.
_HEADER_VALUES_BYTES = 44
_HEADER_VALUES_SESSION_ID_OFFSET = 12

_library_path: str | None = None


class AeronCError(RuntimeError):
    """An Aeron C client call failed; the message is one line ending with aeron_errmsg()."""


def library_path() -> str:
    """Path of pyaeron's extension module, which holds the Aeron C client."""
    spec = importlib.util.find_spec("pyaeron._pyaeron")
    if spec is None or spec.origin is None:
        raise ImportError("pyaeron._pyaeron not found: install pyaeron")
    return spec.origin


def load() -> str:
    """Make the C client's symbols resolvable by compiled code in this process (idempotent); returns the path."""
    global _library_path
    if _library_path is None:
        path = library_path()
        llvm.load_library_permanently(path)
        _library_path = path
    return _library_path


load()  # before any compiled code below is compiled or loaded from the cache (the cfunc is, on import)


# --- compiled side ---------------------------------------------------------------------------------


@intrinsic
def _exclusive_publication_offer(typingctx, publication, address, length):
    """aeron_exclusive_publication_offer(publication, address, length, NULL, NULL)."""
    check_integers(publication, address, length)

    def codegen(context, builder, signature, args):
        offer = c_function(builder, "aeron_exclusive_publication_offer", I64, [PTR, PTR, I64, PTR, PTR])
        null = ir.Constant(PTR, None)
        return builder.call(
            offer, [builder.inttoptr(args[0], PTR), builder.inttoptr(args[1], PTR), args[2], null, null]
        )

    return types.int64(types.int64, types.int64, types.int64), codegen


@intrinsic
def _subscription_poll(typingctx, subscription, handler, clientd, fragment_limit):
    """aeron_subscription_poll(subscription, handler, clientd, fragment_limit), all four as integers."""
    check_integers(subscription, handler, clientd, fragment_limit)

    def codegen(context, builder, signature, args):
        poll = c_function(builder, "aeron_subscription_poll", I32, [PTR, PTR, PTR, I64])
        pointers = [builder.inttoptr(value, PTR) for value in args[:3]]
        return builder.sext(builder.call(poll, [*pointers, args[3]]), I64)

    return types.int64(types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def _main_do_work(typingctx, client):
    """aeron_main_do_work(client)."""
    check_integers(client)

    def codegen(context, builder, signature, args):
        do_work = c_function(builder, "aeron_main_do_work", I32, [PTR])
        return builder.sext(builder.call(do_work, [builder.inttoptr(args[0], PTR)]), I64)

    return types.int64(types.int64), codegen


@intrinsic
def _header_session_id(typingctx, header):
    """Session id of the fragment's image, through aeron_header_values (0 if that fails)."""

    def codegen(context, builder, signature, args):
        header_values = c_function(builder, "aeron_header_values", I32, [PTR, PTR])
        values = cgutils.alloca_once(builder, ir.ArrayType(I8, _HEADER_VALUES_BYTES))  # entry block
        values.align = 8
        values_pointer = builder.bitcast(values, PTR)
        status = builder.call(header_values, [builder.bitcast(args[0], PTR), values_pointer])
        field = builder.gep(values_pointer, [ir.Constant(I32, _HEADER_VALUES_SESSION_ID_OFFSET)])
        session_id = builder.load(builder.bitcast(field, I32.as_pointer()))
        ok = builder.icmp_signed("==", status, ir.Constant(I32, 0))
        return builder.select(ok, session_id, ir.Constant(I32, 0))

    return types.int32(header), codegen


@intrinsic
def _byte_pointer(typingctx, pointer):
    """The same address as a ``uint8 *``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(types.uint8)(pointer), codegen


@njit(cache=True, nogil=True)
def offer_nb(publication: int, buffer: np.ndarray, start: int, length: int) -> int:
    """Offer ``length`` bytes from byte ``start`` of the C-contiguous ``buffer``, once; the raw offer result."""
    if start < 0 or length < 0 or start + length > buffer.nbytes or not buffer.flags.c_contiguous:
        raise IndexError("offer_nb: start/length outside the buffer, or the buffer is not C-contiguous")
    return _exclusive_publication_offer(publication, buffer.ctypes.data + start, length)


@njit(cache=True, nogil=True)
def offer_retry_nb(publication: int, buffer: np.ndarray, start: int, length: int, max_attempts: int) -> tuple:
    """:func:`offer_nb`, repeated while the result is ADMIN_ACTION or BACK_PRESSURED, ``max_attempts`` at most.

    Returns ``(result, attempts)``: the last offer result (positive: sent) and the offers made.
    NOT_CONNECTED, CLOSED, MAX_POSITION_EXCEEDED and ERROR are returned at once.
    """
    result = AERON_PUBLICATION_ERROR
    attempts = 0
    while attempts < max_attempts:
        result = offer_nb(publication, buffer, start, length)
        attempts += 1
        if result != AERON_PUBLICATION_ADMIN_ACTION and result != AERON_PUBLICATION_BACK_PRESSURED:
            break
    return result, attempts


@njit(cache=True, nogil=True)
def poll_nb(subscription: int, handler: int, clientd: int, fragment_limit: int) -> int:
    """Deliver up to ``fragment_limit`` fragments to the C fragment handler at address ``handler``.

    With the inbox: ``poll_nb(subscription, INBOX_HANDLER.address, inbox.ctypes.data, limit)``.
    Returns the fragments delivered, or -1 on error.
    """
    return _subscription_poll(subscription, handler, clientd, fragment_limit)


@njit(cache=True, nogil=True)
def main_do_work_nb(client: int) -> int:
    """One duty cycle of the client conductor (for ``use_conductor_invoker=True`` clients only).

    Returns the work count, or -1 on error (the client is then closed).
    """
    return _main_do_work(client)


@cfunc(
    types.void(types.CPointer(types.int64), types.CPointer(types.uint8), types.uintp, types.voidptr),
    cache=True,
    nogil=True,
)
def _inbox_handler(clientd, buffer, length, header):
    """aeron_fragment_handler_t appending one fragment to the inbox at ``clientd``."""
    control = carray(clientd, _HEADER_WORDS)
    count = control[INBOX_COUNT]
    used = control[INBOX_USED_BYTES]
    max_fragments = control[INBOX_MAX_FRAGMENTS]
    data_capacity = control[INBOX_DATA_CAPACITY]
    size = np.int64(length)
    if count >= max_fragments or size > data_capacity - used:
        control[INBOX_OVERFLOWS] += 1
        return
    data_start = INBOX_HEADER_BYTES + INBOX_ROW_BYTES * max_fragments
    offset = data_start + used
    inbox = carray(_byte_pointer(clientd), data_start + data_capacity)
    source = carray(buffer, size)
    for i in range(size):
        inbox[offset + i] = source[i]
    table = carray(clientd, _HEADER_WORDS + INBOX_ROW_WORDS * max_fragments)
    row = _HEADER_WORDS + INBOX_ROW_WORDS * count
    table[row] = offset
    table[row + 1] = size
    table[row + 2] = _header_session_id(header)
    aligned = (size + INBOX_ALIGNMENT_BYTES - 1) & -INBOX_ALIGNMENT_BYTES
    control[INBOX_USED_BYTES] = min(used + aligned, data_capacity)
    control[INBOX_COUNT] = count + 1


INBOX_HANDLER = _inbox_handler
"""The inbox fragment handler; pass ``INBOX_HANDLER.address`` to :func:`poll_nb`."""

ERRORS_COUNT = 0  # int64 words of a client's error record
ERRORS_LAST_CODE = 1


@cfunc(types.void(types.CPointer(types.int64), types.int32, types.voidptr), cache=True, nogil=True)
def _error_handler(clientd, errcode, message):
    """aeron_error_handler_t counting errors (Aeron's default handler prints and exits the process)."""
    record = carray(clientd, 2)
    record[ERRORS_COUNT] += 1
    record[ERRORS_LAST_CODE] = errcode


@njit(cache=True, nogil=True)
def inbox_count(inbox: np.ndarray) -> int:
    """Fragments in the inbox."""
    return inbox[:INBOX_HEADER_BYTES].view(np.int64)[INBOX_COUNT]


@njit(cache=True, nogil=True)
def inbox_overflows(inbox: np.ndarray) -> int:
    """Fragments dropped because the inbox was full, since :func:`make_inbox`."""
    return inbox[:INBOX_HEADER_BYTES].view(np.int64)[INBOX_OVERFLOWS]


@njit(cache=True, nogil=True)
def inbox_fragment(inbox: np.ndarray, index: int) -> tuple:
    """``(offset, length, session_id)`` of fragment ``index``: its bytes are ``inbox[offset:offset + length]``."""
    control = inbox[:INBOX_HEADER_BYTES].view(np.int64)
    if index < 0 or index >= control[INBOX_COUNT]:
        raise IndexError("inbox_fragment: no such fragment")
    row = inbox[INBOX_HEADER_BYTES + INBOX_ROW_BYTES * index : INBOX_HEADER_BYTES + INBOX_ROW_BYTES * (index + 1)]
    fields = row.view(np.int64)
    return fields[0], fields[1], fields[2]


@njit(cache=True, nogil=True)
def inbox_clear(inbox: np.ndarray) -> None:
    """Forget the fragments (the overflow count stays)."""
    control = inbox[:INBOX_HEADER_BYTES].view(np.int64)
    control[INBOX_COUNT] = 0
    control[INBOX_USED_BYTES] = 0


def make_inbox(max_fragments: int, data_capacity: int) -> np.ndarray:
    """An empty inbox for ``max_fragments`` fragments of ``data_capacity`` bytes in all (layout above)."""
    if max_fragments <= 0 or data_capacity <= 0:
        raise ValueError("max_fragments and data_capacity must be positive")
    data_capacity = -(-data_capacity // INBOX_ALIGNMENT_BYTES) * INBOX_ALIGNMENT_BYTES
    words = np.zeros((INBOX_HEADER_BYTES + INBOX_ROW_BYTES * max_fragments + data_capacity) // 8, np.int64)
    words[INBOX_MAX_FRAGMENTS] = max_fragments
    words[INBOX_DATA_CAPACITY] = data_capacity
    return words.view(np.uint8)


# --- set-up side (Python, ctypes) ------------------------------------------------------------------

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_PROTOTYPES: dict[str, tuple[type | None, list[type]]] = {
    "aeron_context_init": (ctypes.c_int, [_PP]),
    "aeron_context_set_dir": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "aeron_context_set_driver_timeout_ms": (ctypes.c_int, [_P, ctypes.c_uint64]),
    "aeron_context_set_idle_sleep_duration_ns": (ctypes.c_int, [_P, ctypes.c_uint64]),
    "aeron_context_set_idle_strategy_init_args": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "aeron_context_set_idle_strategy": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "aeron_context_set_use_conductor_agent_invoker": (ctypes.c_int, [_P, ctypes.c_bool]),
    "aeron_context_set_pre_touch_mapped_memory": (ctypes.c_int, [_P, ctypes.c_bool]),
    "aeron_context_set_error_handler": (ctypes.c_int, [_P, _P, _P]),
    "aeron_context_close": (ctypes.c_int, [_P]),
    "aeron_init": (ctypes.c_int, [_PP, _P]),
    "aeron_start": (ctypes.c_int, [_P]),
    "aeron_main_do_work": (ctypes.c_int, [_P]),
    "aeron_close": (ctypes.c_int, [_P]),
    "aeron_async_add_exclusive_publication": (ctypes.c_int, [_PP, _P, ctypes.c_char_p, ctypes.c_int32]),
    "aeron_async_add_exclusive_publication_poll": (ctypes.c_int, [_PP, _P]),
    "aeron_async_add_exclusive_publication_cancel": (ctypes.c_int, [_P, _P]),
    "aeron_async_add_subscription": (ctypes.c_int, [_PP, _P, ctypes.c_char_p, ctypes.c_int32, _P, _P, _P, _P]),
    "aeron_async_add_subscription_poll": (ctypes.c_int, [_PP, _P]),
    "aeron_async_add_subscription_cancel": (ctypes.c_int, [_P, _P]),
    "aeron_exclusive_publication_is_connected": (ctypes.c_bool, [_P]),
    "aeron_subscription_is_connected": (ctypes.c_bool, [_P]),
    "aeron_exclusive_publication_close": (ctypes.c_int, [_P, _P, _P]),
    "aeron_subscription_close": (ctypes.c_int, [_P, _P, _P]),
    "aeron_errmsg": (ctypes.c_char_p, []),
    "aeron_errcode": (ctypes.c_int, []),
}
_c: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    """ctypes view of the C client with the prototypes above."""
    global _c
    if _c is None:
        library = ctypes.CDLL(load())
        for name, (result, arguments) in _PROTOTYPES.items():
            function = getattr(library, name)
            function.restype = result
            function.argtypes = arguments
        _c = library
    return _c


def _error(what: str) -> AeronCError:
    """``what`` and the C client's last error of this thread, on one line."""
    c = _library()
    message = (c.aeron_errmsg() or b"").decode(errors="replace")
    detail = " | ".join(line.strip() for line in message.splitlines() if line.strip())
    return AeronCError(f"{what}: aeron errcode {c.aeron_errcode()}: {detail or 'no message'}")


def _check(status: int, what: str) -> None:
    """Raise :class:`AeronCError` for a negative C status."""
    if status < 0:
        raise _error(what)


@dataclass
class _Handles:
    """What a :class:`Client` owns in C, and the error record its conductor writes into: closed together
    by :meth:`Client.close`, or when the Client is garbage collected (a C client left running after its
    Python owner is gone would write into freed memory)."""

    context: int = 0
    client: int = 0
    publications: list[int] = field(default_factory=list)
    subscriptions: list[int] = field(default_factory=list)
    errors: np.ndarray = field(default_factory=lambda: np.zeros(2, np.int64))  # count, last code: ERRORS_*

    def close(self) -> None:
        """Close publications, subscriptions, the client, then the context (idempotent)."""
        c = _library()
        while self.publications:
            c.aeron_exclusive_publication_close(self.publications.pop(), None, None)
        while self.subscriptions:
            c.aeron_subscription_close(self.subscriptions.pop(), None, None)
        if self.client:
            c.aeron_close(self.client)
            self.client = 0
        if self.context:
            c.aeron_context_close(self.context)
            self.context = 0


class Client:
    """An Aeron client (C ``aeron_t``) of the media driver at ``aeron_dir``, for compiled code.

    Publications and subscriptions are raw pointers (``int``) for :func:`offer_nb` / :func:`poll_nb`.
    ``idle_sleep_ns``: the conductor thread's sleep between duty cycles (ignored with
    ``use_conductor_invoker``, where the caller runs the duty cycle with :func:`main_do_work_nb`).
    ``driver_timeout_ms``: how long to wait for the driver (at start, and a silent driver later).
    ``pre_touch``: map log buffers with every page present, so that no page fault (several us)
    lands in the hot loop; costs the mapping time per publication/image (3 terms each) at set-up.
    Not thread-safe; close it (or use ``with``) before the driver goes.
    """

    def __init__(
        self,
        aeron_dir: str,
        *,
        idle_sleep_ns: int = DEFAULT_IDLE_SLEEP_NS,
        use_conductor_invoker: bool = False,
        driver_timeout_ms: int = DEFAULT_DRIVER_TIMEOUT_MS,
        pre_touch: bool = True,
    ) -> None:
        if idle_sleep_ns <= 0 or driver_timeout_ms <= 0:
            raise ValueError("idle_sleep_ns and driver_timeout_ms must be positive")
        c = _library()
        self.aeron_dir = aeron_dir
        self.use_conductor_invoker = use_conductor_invoker
        self._h = _Handles()
        self._publications = self._h.publications
        self._subscriptions = self._h.subscriptions
        self.errors = self._h.errors  # errors the conductor reported (count, last code); ERRORS_*
        self._finalizer = weakref.finalize(self, self._h.close)
        context = ctypes.c_void_p()
        _check(c.aeron_context_init(ctypes.byref(context)), "aeron_context_init")
        self._h.context = context.value or 0
        try:
            # The conductor's sleep is the state of its idle strategy, built by aeron_context_init from
            # AERON_CLIENT_IDLE_SLEEP_DURATION (16 ms by default): only reloading the strategy changes it.
            # aeron_context_set_idle_sleep_duration_ns alone just moves the service-interval check.
            sleep = str(idle_sleep_ns).encode()  # nanoseconds
            _check(c.aeron_context_set_dir(self.context, aeron_dir.encode()), "aeron_context_set_dir")
            _check(c.aeron_context_set_driver_timeout_ms(self.context, driver_timeout_ms), "set_driver_timeout_ms")
            _check(c.aeron_context_set_idle_sleep_duration_ns(self.context, idle_sleep_ns), "set_idle_sleep")
            _check(c.aeron_context_set_idle_strategy_init_args(self.context, sleep), "set_idle_strategy_init_args")
            _check(c.aeron_context_set_idle_strategy(self.context, b"sleep-ns"), "set_idle_strategy")
            _check(
                c.aeron_context_set_use_conductor_agent_invoker(self.context, use_conductor_invoker),
                "set_use_conductor_agent_invoker",
            )
            _check(c.aeron_context_set_pre_touch_mapped_memory(self.context, pre_touch), "set_pre_touch_mapped_memory")
            # a driver gone (or any conductor error) is counted here, never a process exit
            _check(
                c.aeron_context_set_error_handler(self.context, _error_handler.address, self.errors.ctypes.data),
                "set_error_handler",
            )
            client = ctypes.c_void_p()
            _check(c.aeron_init(ctypes.byref(client), self.context), f"aeron_init (aeron dir {aeron_dir})")
            self._h.client = client.value or 0
            _check(c.aeron_start(self.client), f"aeron_start (aeron dir {aeron_dir})")
        except BaseException:
            self.close()
            raise

    def _await(self, what: str, poll, cancel, timeout_s: float) -> int:
        """Poll an async add until it gives a pointer; cancel it and raise on error or after ``timeout_s``."""
        c = _library()
        result = ctypes.c_void_p()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.use_conductor_invoker:
                c.aeron_main_do_work(self.client)
            status = poll(ctypes.byref(result))
            if status > 0 and result.value:
                return result.value
            if status < 0:
                raise _error(what)
            if time.monotonic() > deadline:
                cancel()
                raise AeronCError(f"{what}: no answer from the media driver in {timeout_s} s")
            time.sleep(_ADD_POLL_SLEEP_S)

    def _add(self, what: str, start, poll, cancel, timeout_s: float) -> int:
        """Start an async add (``start(&pending)``) and wait for the pointer it gives."""
        pending = ctypes.c_void_p()
        _check(start(ctypes.byref(pending)), what)
        return self._await(what, lambda out: poll(out, pending), lambda: cancel(self.client, pending), timeout_s)

    def add_exclusive_publication(self, channel: str, stream_id: int, timeout_s: float = DEFAULT_ADD_TIMEOUT_S) -> int:
        """A new exclusive publication (``aeron_exclusive_publication_t *``) on ``channel``/``stream_id``."""
        c = _library()
        publication = self._add(
            f"add_exclusive_publication({channel!r}, stream {stream_id})",
            lambda out: c.aeron_async_add_exclusive_publication(out, self.client, channel.encode(), stream_id),
            c.aeron_async_add_exclusive_publication_poll,
            c.aeron_async_add_exclusive_publication_cancel,
            timeout_s,
        )
        self._publications.append(publication)
        return publication

    def add_subscription(self, channel: str, stream_id: int, timeout_s: float = DEFAULT_ADD_TIMEOUT_S) -> int:
        """A new subscription (``aeron_subscription_t *``) on ``channel``/``stream_id``."""
        c = _library()
        subscription = self._add(
            f"add_subscription({channel!r}, stream {stream_id})",
            lambda out: c.aeron_async_add_subscription(out, self.client, channel.encode(), stream_id, *(None,) * 4),
            c.aeron_async_add_subscription_poll,
            c.aeron_async_add_subscription_cancel,
            timeout_s,
        )
        self._subscriptions.append(subscription)
        return subscription

    def is_connected(self, pointer: int) -> bool:
        """Whether the publication has a subscriber, or the subscription an image, of this client's adding."""
        c = _library()
        if pointer in self._publications:
            return bool(c.aeron_exclusive_publication_is_connected(pointer))
        if pointer in self._subscriptions:
            return bool(c.aeron_subscription_is_connected(pointer))
        raise ValueError(f"{pointer:#x} is no publication or subscription of this client")

    def await_connected(self, pointer: int, timeout_s: float = DEFAULT_ADD_TIMEOUT_S) -> None:
        """Wait until the publication has a subscriber, or the subscription an image, of this client's adding."""
        c = _library()
        deadline = time.monotonic() + timeout_s
        while not self.is_connected(pointer):
            if self.use_conductor_invoker:
                c.aeron_main_do_work(self.client)
            if time.monotonic() > deadline:
                raise AeronCError(f"{pointer:#x} not connected after {timeout_s} s")
            time.sleep(_ADD_POLL_SLEEP_S)

    def close_publication(self, publication: int) -> None:
        """Close one publication of this client (its pointer is dead afterwards)."""
        self._publications.remove(publication)
        _library().aeron_exclusive_publication_close(publication, None, None)

    def close_subscription(self, subscription: int) -> None:
        """Close one subscription of this client (its pointer is dead afterwards)."""
        self._subscriptions.remove(subscription)
        _library().aeron_subscription_close(subscription, None, None)

    @property
    def context(self) -> int:
        """The ``aeron_context_t *`` (0 once closed)."""
        return self._h.context

    @property
    def client(self) -> int:
        """The ``aeron_t *`` (0 once closed)."""
        return self._h.client

    def close(self) -> None:
        """Close publications, subscriptions, the client, then the context (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
