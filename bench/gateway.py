"""Order -> acknowledgement round trip over Aeron IPC, Aeron UDP and a plain kernel UDP socket.

Run as ``hftmm bench gateway``. Two processes: this one (the caller) sends a request, busy-polls for
the answer and records the round trip; an echo process (``multiprocessing`` "spawn") answers. They
are pinned to different CPUs when two are allowed, and both poll in a tight loop (``idle``: "spin" by
default). The transports are measured one after the other, each for ``warmup_s`` (discarded) then
``duration_s``, against the same echo process:

    aeron-ipc   exclusive publication -> subscription through shared memory (no driver on the path)
    aeron-ipc-compiled  the same, both ends compiled: Aeron's C client called from Numba loops
                (``engine.gateway.aeron_c``), as the trading node's loop offers and polls; no Python per message
    aeron-udp   the same over unicast UDP on 127.0.0.1: the media driver's thread sends and receives
    kernel-udp  two connected non-blocking UDP sockets on 127.0.0.1, no Aeron at all

In "order" mode (the default) the request is a real OUCH 5.0 Enter Order (``encode_enter_order_nb``)
and the echo answers with a real Order Accepted for the same UserRefNum, built once by the Python
codec the order entry server uses and patched per message (UserRefNum and timestamp) — it decodes
just the type byte and the UserRefNum. ``size`` switches to a raw ping-pong of that many bytes. The
first round trip of every transport is checked in full before anything is timed.

Each Aeron transport gets its own embedded media driver in this process, on a directory under
/dev/shm removed at the end; the echo process connects to it. For IPC the driver is off the data path
and sleeps (``engine.runtime.aeron.DEFAULT_DRIVER_IDLE``). For UDP its one thread (shared threading mode)
carries every hop of a round trip, and on 2 cores with both processes spinning it is a third thread
for two CPUs: how it idles decides when the scheduler lets it run. Measured on the 2-core development
machine (loaded, so roughly): a driver that never sleeps ("backoff", "noop") counts as a CPU hog and
waits for a time slice, about 16 ms p50; a sleeping one is woken ahead of the spinners, about 0.2 ms
p50 with "sleeping:1us" (the kernel's 50 us timer slack stretches the sleep) and 0.4 ms with 100 us.
Hence ``driver_idle`` defaults to ``"sleeping:1us"``; with ``idle="yield"`` on both sides "backoff"
does better (about 0.1 ms p50).

With ``rate`` > 0 the requests are sent on a fixed schedule and each round trip is measured from its
intended send time, so a stall also counts against the requests it delayed (coordinated omission).
Every wait is bounded: a peer that stops answering for ``STALL_TIMEOUT_S`` ends the run with an error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pyaeron
from numba import njit

from bench import report
from bench.machine import machine_info
from engine.core.clock import monotonic_ns, realtime_ns
from engine.core.units import NS_PER_DAY, NS_PER_S
from engine.gateway import aeron_c
from engine.gateway.aeron_c import inbox_clear, inbox_fragment, offer_nb, poll_nb
from engine.runtime.aeron import (
    DEFAULT_DRIVER_IDLE,
    IPC_CHANNEL,
    LOOPBACK,
    DriverConfig,
    EmbeddedDriver,
    connect,
    udp_channel,
)
from engine.runtime.affinity import (
    Placement,
    affinity_restored,
    allowed_cpus,
    cpu_pair,
    format_cpu_list,
    freeze_gc,
    pin_process,
    plan_placement,
)
from engine.runtime.agent import IdleStrategy, idle_strategy
from feeds import ouch
from feeds.bytes_nb import put_be_nb, u32_nb
from feeds.udp import free_udp_port

NAME = "gateway"
IPC, IPC_COMPILED, UDP, KERNEL_UDP = "ipc", "ipc-compiled", "udp", "kernel-udp"
TRANSPORTS = (IPC_COMPILED, IPC, UDP, KERNEL_UDP)
LABELS = {IPC: "aeron-ipc", IPC_COMPILED: "aeron-ipc-compiled", UDP: "aeron-udp", KERNEL_UDP: "kernel-udp"}
BASELINE = LABELS[KERNEL_UDP]  # ratios: its percentile over each transport's (how many times faster)
DEFAULT_UDP_DRIVER_IDLE = "sleeping:1us"
MIN_SIZE_BYTES = 4  # a raw payload carries its u32 sequence number in its first bytes
MAX_SIZE_BYTES = 4096  # well under Aeron's largest message for the 64 KiB terms engine.runtime.aeron uses
MAX_DURATION_S = 600.0  # keeps the u32 sequence number from wrapping even at millions of round trips/s
REQUEST_STREAM_ID = 1001
REPLY_STREAM_ID = 1002
START_TIMEOUT_S = 60.0  # the spawned echo imports numpy, numba and pyaeron: slow on a loaded machine
CONNECT_TIMEOUT_S = 10.0  # Aeron publication and subscription of a transport connected
STALL_TIMEOUT_S = 2.0  # one send or one answer taking longer than this ends the run
SERVE_SLACK_S = 30.0  # the echo gives up on a transport this long after the caller should have finished
CONTROL_CHECK_NS = 10_000_000  # how often an idle echo looks at its control pipe
INITIAL_SAMPLES = 1 << 20
COMPILED_SAMPLES = 1 << 24  # the compiled caller's sample buffer (round trips past it are not kept: noted)
STALLED_SEND, STALLED_ANSWER, WRONG_ANSWER = -1, -2, -3  # the compiled loops' errors
RATE_KEPT_FRACTION = 0.9  # a transport finishing fewer of its scheduled round trips is noted as falling behind
SEQ = struct.Struct(">I")  # the sequence number stamped in a request and echoed back (the UserRefNum)
TIMESTAMP = struct.Struct(">Q")

_ENTER = ouch.INBOUND_DTYPES["O"]
_ACCEPTED = ouch.OUTBOUND_DTYPES["A"]
ENTER_URN_OFFSET = _ENTER.fields["user_ref_num"][1]
ACCEPTED_URN_OFFSET = _ACCEPTED.fields["user_ref_num"][1]
ACCEPTED_TIMESTAMP_OFFSET = _ACCEPTED.fields["timestamp"][1]
ENTER_TYPE = ord("O")
# The order every round trip carries: 100 AAPL at $150.0000, a day limit order, visible, principal.
ORDER_SYMBOL, ORDER_QUANTITY, ORDER_PRICE, ORDER_CL_ORD_ID = "AAPL", 100, 1_500_000, "HFTMMBENCH"


class GatewayBenchError(RuntimeError):
    """The benchmark could not run to the end: the echo process died, stalled or answered wrongly."""


# --- what travels ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """The request (stamped with a u32 sequence number per round trip) and where the answer echoes it."""

    kind: str  # "order" or "raw"
    request: bytes
    request_seq_offset: int
    reply_length: int
    reply_seq_offset: int


def order_payload() -> Payload:
    """An OUCH 5.0 Enter Order whose UserRefNum is the sequence number; the answer is an Order Accepted."""
    buf = np.zeros(_ENTER.itemsize, np.uint8)
    n = ouch.encode_enter_order_nb(
        buf, 0, 1, ord(ouch.SIDE_BUY), ORDER_QUANTITY, ouch.alpha(ORDER_SYMBOL, 8), ORDER_PRICE,
        ord(ouch.TIF_DAY), ord(ouch.DISPLAY_VISIBLE), ord(ouch.CAPACITY_PRINCIPAL), ord(ouch.ISO_NOT_ELIGIBLE),
        ord(ouch.CROSS_CONTINUOUS), ouch.alpha(ORDER_CL_ORD_ID, 14),
    )  # fmt: skip
    return Payload("order", buf[:n].tobytes(), ENTER_URN_OFFSET, _ACCEPTED.itemsize, ACCEPTED_URN_OFFSET)


def raw_payload(size: int) -> Payload:
    """``size`` bytes echoed as they are, the sequence number in the first four."""
    if not MIN_SIZE_BYTES <= size <= MAX_SIZE_BYTES:
        raise ValueError(f"size must be {MIN_SIZE_BYTES}..{MAX_SIZE_BYTES} bytes, not {size}")
    return Payload("raw", bytes(i & 0xFF for i in range(size)), 0, size, 0)


class _Acceptor:
    """The echo's answer to an Enter Order: an Order Accepted for the same UserRefNum, stamped now."""

    def __init__(self, order: bytes) -> None:
        fields = ouch.decode(ouch.INBOUND, order)
        self.reply = bytearray(
            ouch.encode(
                ouch.OUTBOUND,
                "A",
                side=fields["side"],
                quantity=fields["quantity"],
                symbol=fields["symbol"],
                price=fields["price"],
                time_in_force=fields["time_in_force"],
                display=fields["display"],
                order_reference_number=1,
                capacity=fields["capacity"],
                intermarket_sweep_eligibility=fields["intermarket_sweep_eligibility"],
                cross_type=fields["cross_type"],
                order_state=ouch.ORDER_STATE_LIVE,
                cl_ord_id=fields["cl_ord_id"],
            )
        )

    def __call__(self, request: memoryview) -> bytearray:
        if request[0] != ENTER_TYPE:
            raise GatewayBenchError(f"the echo got message type {request[0]:#04x}, not an Enter Order")
        self.reply[ACCEPTED_URN_OFFSET : ACCEPTED_URN_OFFSET + 4] = request[ENTER_URN_OFFSET : ENTER_URN_OFFSET + 4]
        TIMESTAMP.pack_into(self.reply, ACCEPTED_TIMESTAMP_OFFSET, time.time_ns() % NS_PER_DAY)
        return self.reply


def _reflect(request: memoryview) -> memoryview:
    """The raw ping-pong's answer: the request itself."""
    return request


def _check_first_reply(payload: Payload, request: bytes, reply: bytes) -> None:
    """Before timing: the answer to ``request`` is complete and right, field by field for orders."""
    if payload.kind == "raw":
        if reply != request:
            raise GatewayBenchError(f"the echo answered {len(reply)} bytes that differ from the {len(request)} sent")
        return
    order = ouch.decode(ouch.INBOUND, request)
    accepted = ouch.decode(ouch.OUTBOUND, reply)
    same = ("user_ref_num", "side", "quantity", "symbol", "price", "cl_ord_id")
    if accepted["message_type"] != "A" or any(accepted[name] != order[name] for name in same):
        raise GatewayBenchError(f"the answer to {order} is not its Order Accepted: {accepted}")


# --- links: one way out, one way in ---------------------------------------------------------------
@dataclass(frozen=True)
class Leg:
    """One transport as both processes open it: Aeron directory, UDP ports, how long the echo serves."""

    transport: str
    aeron_dir: str  # "" for kernel-udp
    request_port: int  # the echo receives requests here (UDP transports; 0 for IPC)
    reply_port: int  # the caller receives answers here
    serve_s: float


class _AeronLink:
    """An exclusive publication out and a subscription in; ``poll`` hands at most one message on."""

    def __init__(self, aeron: pyaeron.Aeron, leg: Leg, caller: bool, on_message: Callable[[memoryview], None]) -> None:
        request = IPC_CHANNEL if leg.transport == IPC else udp_channel(leg.request_port)
        reply = IPC_CHANNEL if leg.transport == IPC else udp_channel(leg.reply_port)
        out, out_stream, into, in_stream = (
            (request, REQUEST_STREAM_ID, reply, REPLY_STREAM_ID)
            if caller
            else (reply, REPLY_STREAM_ID, request, REQUEST_STREAM_ID)
        )
        self.aeron = aeron
        self.subscription = aeron.add_subscription(into, in_stream)
        self.publication = aeron.add_exclusive_publication(out, out_stream)
        self.on_message = on_message

    def _on_fragment(self, view: pyaeron.BufferView, header: pyaeron.Header) -> None:
        self.on_message(memoryview(view))

    def offer(self, data: bytes | bytearray | memoryview) -> bool:
        """Append ``data`` to the publication; False when it cannot now (not connected, back-pressured)."""
        return bool(self.publication.offer(data))

    def poll(self) -> int:
        """Deliver at most one message to ``on_message``; how many were delivered."""
        return self.subscription.poll(self._on_fragment, 1)

    def connected(self) -> bool:
        """Whether both directions have a peer."""
        return self.publication.is_connected and self.subscription.is_connected

    def close(self) -> None:
        """Close the client (its publication and subscription with it)."""
        self.aeron.close()


class _SocketLink:
    """A non-blocking UDP socket bound to one loopback port and connected to another."""

    def __init__(self, leg: Leg, caller: bool, on_message: Callable[[memoryview], None]) -> None:
        local, remote = (leg.reply_port, leg.request_port) if caller else (leg.request_port, leg.reply_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, local))
        self.sock.connect((LOOPBACK, remote))
        self.sock.setblocking(False)
        self.buffer = bytearray(MAX_SIZE_BYTES + 1)  # one byte more: an oversized datagram shows up too long
        self.view = memoryview(self.buffer)
        self.on_message = on_message

    def offer(self, data: bytes | bytearray | memoryview) -> bool:
        """Send one datagram; False when the socket buffer is full."""
        try:
            self.sock.send(data)
        except BlockingIOError:
            return False
        return True

    def poll(self) -> int:
        """Receive at most one datagram and hand it to ``on_message``; how many were received."""
        try:
            n = self.sock.recv_into(self.buffer)
        except BlockingIOError:
            return 0
        self.on_message(self.view[:n])
        return 1

    def connected(self) -> bool:
        """Always: UDP has no connection to wait for."""
        return True

    def close(self) -> None:
        """Close the socket."""
        self.view.release()
        self.sock.close()


@njit(cache=True, nogil=True)
def _offer_until_nb(publication, buf, start, length, stall_ns):
    """Offer until Aeron takes the message, at most ``stall_ns``; False when it never did."""
    give_up = monotonic_ns() + stall_ns
    while offer_nb(publication, buf, start, length) < 0:
        if monotonic_ns() > give_up:
            return False
    return True


@njit(cache=True, nogil=True)
def _round_trip_nb(link, request, seq, seq_offset, reply_seq_offset, stall_ns):
    """Send ``request`` stamped with ``seq`` and poll until its answer: the arrival time, or an error (< 0).
    The answer stays in the inbox (fragment 0)."""
    publication, subscription, handler, inbox = link
    put_be_nb(request, seq_offset, seq, 4)
    if not _offer_until_nb(publication, request, 0, request.size, stall_ns):
        return STALLED_SEND
    give_up = monotonic_ns() + stall_ns
    while True:
        inbox_clear(inbox)
        if poll_nb(subscription, handler, inbox.ctypes.data, 1) > 0:
            offset, length, _ = inbox_fragment(inbox, 0)
            if length < reply_seq_offset + 4:
                return WRONG_ANSWER
            if u32_nb(inbox, offset + reply_seq_offset) == seq:
                return monotonic_ns()
        elif monotonic_ns() > give_up:
            return STALLED_ANSWER


@njit(cache=True, nogil=True)
def _measure_nb(link, request, seq_offset, reply_seq_offset, period_ns, warmup_ns, duration_ns, stall_ns, samples):
    """``_measure`` compiled: round trips for warm-up + duration from request 2 on; (samples kept, error or 0)."""
    start = monotonic_ns()
    measure_from = start + warmup_ns
    end = measure_from + duration_ns
    n = 0
    seq = 1
    next_send = start
    while True:
        now = monotonic_ns()
        if now >= end:
            return n, 0
        if period_ns:
            if now < next_send:
                continue
            intended = next_send
            next_send += period_ns
        else:
            intended = now
        seq += 1
        arrived = _round_trip_nb(link, request, seq, seq_offset, reply_seq_offset, stall_ns)
        if arrived < 0:
            return n, arrived
        if intended >= measure_from and n < samples.size:
            samples[n] = arrived - intended
            n += 1


@njit(cache=True, nogil=True)
def _echo_nb(link, reply, request_urn_offset, reply_urn_offset, timestamp_offset, raw, stall_ns, budget_ns):
    """Answer requests for ``budget_ns``: the request itself (``raw``), or ``reply`` (an Order Accepted)
    with the request's UserRefNum and the time of day; how many, or an error (< 0)."""
    publication, subscription, handler, inbox = link
    until = monotonic_ns() + budget_ns
    answered = 0
    while monotonic_ns() < until:
        inbox_clear(inbox)
        if poll_nb(subscription, handler, inbox.ctypes.data, 1) == 0:
            continue
        offset, length, _ = inbox_fragment(inbox, 0)
        if raw:
            sent = _offer_until_nb(publication, inbox, offset, length, stall_ns)
        else:
            if length <= request_urn_offset + 4 or inbox[offset] != ENTER_TYPE:
                return WRONG_ANSWER
            for b in range(4):
                reply[reply_urn_offset + b] = inbox[offset + request_urn_offset + b]
            put_be_nb(reply, timestamp_offset, realtime_ns() % NS_PER_DAY, 8)
            sent = _offer_until_nb(publication, reply, 0, reply.size, stall_ns)
        if not sent:
            return STALLED_SEND
        answered += 1
    return answered


class _CompiledLink:
    """Aeron IPC through the C client, driven by the compiled loops above (no Python per message)."""

    def __init__(self, leg: Leg, caller: bool) -> None:
        out_stream, in_stream = (REQUEST_STREAM_ID, REPLY_STREAM_ID) if caller else (REPLY_STREAM_ID, REQUEST_STREAM_ID)
        self.client = aeron_c.Client(leg.aeron_dir)
        self.subscription = self.client.add_subscription(IPC_CHANNEL, in_stream)
        self.publication = self.client.add_exclusive_publication(IPC_CHANNEL, out_stream)
        self.inbox = aeron_c.make_inbox(1, MAX_SIZE_BYTES + 8)
        self.link = (self.publication, self.subscription, aeron_c.INBOX_HANDLER.address, self.inbox)

    def connected(self) -> bool:
        """Whether both directions have a peer."""
        try:
            self.client.await_connected(self.publication, timeout_s=0.0)
            self.client.await_connected(self.subscription, timeout_s=0.0)
        except aeron_c.AeronCError:
            return False
        return True

    def answer(self) -> bytes:
        """The last answer the caller polled."""
        offset, length, _ = aeron_c.inbox_fragment(self.inbox, 0)
        return self.inbox[offset : offset + length].tobytes()

    def close(self) -> None:
        """Close the C client (publication and subscription with it)."""
        self.client.close()


def _compiled_error(code: int) -> str:
    what = {STALLED_SEND: "could not send", STALLED_ANSWER: "no answer", WRONG_ANSWER: "a malformed message"}
    return f"{what.get(code, 'error')} within {STALL_TIMEOUT_S:g} s (compiled loop)"


Link = _AeronLink | _SocketLink


def _open_link(leg: Leg, caller: bool, on_message: Callable[[memoryview], None]) -> Link:
    """This side's link of ``leg`` (the caller sends requests and receives answers, the echo the reverse)."""
    if leg.transport == KERNEL_UDP:
        return _SocketLink(leg, caller, on_message)
    return _AeronLink(connect(leg.aeron_dir), leg, caller, on_message)


def _offer(link: Link, data: bytes | bytearray | memoryview, idle: IdleStrategy, what: str) -> None:
    """Offer ``data`` until it goes, for at most STALL_TIMEOUT_S."""
    give_up = time.perf_counter_ns() + int(STALL_TIMEOUT_S * NS_PER_S)
    while not link.offer(data):
        if time.perf_counter_ns() > give_up:
            raise GatewayBenchError(f"could not send {what} for {STALL_TIMEOUT_S:g} s (is the peer gone?)")
        idle.idle(0)


# --- the echo process -----------------------------------------------------------------------------
@dataclass
class _Echo:
    """The echo's message handler: answer every request through ``link``."""

    respond: Callable[[memoryview], bytes | bytearray | memoryview]
    idle: IdleStrategy
    link: Link | None = None

    def __call__(self, request: memoryview) -> None:
        _offer(self.link, self.respond(request), self.idle, "an answer")


def _serve(link: Link, control: Connection, serve_s: float, idle: IdleStrategy) -> None:
    """Answer requests until the caller says stop on ``control`` or ``serve_s`` runs out."""
    clock = time.perf_counter_ns
    deadline = clock() + int(serve_s * NS_PER_S)
    next_check = 0
    while True:
        work = link.poll()
        idle.idle(work)
        if work:
            continue
        now = clock()
        if now >= next_check:
            if control.poll():
                control.recv()  # the caller's "stop"
                return
            if now > deadline:
                return
            next_check = now + CONTROL_CHECK_NS


def _serve_compiled(leg: Leg, control: Connection, payload: Payload, placement: Placement) -> None:
    """The echo of the compiled transport: compiled answering, the control pipe looked at between slices."""
    link = _CompiledLink(leg, caller=False)
    pin_process(placement)
    reply = np.frombuffer(bytes(_Acceptor(payload.request).reply), np.uint8).copy() if payload.kind == "order" else None
    reply = reply if reply is not None else np.zeros(1, np.uint8)
    raw = payload.kind == "raw"
    stall_ns = int(STALL_TIMEOUT_S * NS_PER_S)
    deadline = time.monotonic() + leg.serve_s
    try:
        # an empty slice loads (on a cold cache: compiles) the loop before the caller may send: else its first
        # request waits through the compile and the run ends with "no answer within 2 s"
        _echo_nb(link.link, reply, ENTER_URN_OFFSET, ACCEPTED_URN_OFFSET, ACCEPTED_TIMESTAMP_OFFSET, raw, stall_ns, 0)
        control.send("ready")
        while not control.poll() and time.monotonic() < deadline:
            answered = _echo_nb(link.link, reply, ENTER_URN_OFFSET, ACCEPTED_URN_OFFSET, ACCEPTED_TIMESTAMP_OFFSET, raw,
                                stall_ns, CONTROL_CHECK_NS)  # fmt: skip
            if answered < 0:
                raise GatewayBenchError(f"echo: {_compiled_error(answered)}")
        if control.poll():
            control.recv()  # the caller's "stop"
    finally:
        link.close()
    control.send("done")


def echo_main(control: Connection, cpu: int, allowed: frozenset[int], idle: str, payload: Payload) -> None:
    """The echo process: pin to ``cpu``, then serve each Leg the caller sends until it sends None."""
    placement = plan_placement(cpu, allowed)
    pin_process(placement)
    strategy = idle_strategy(idle)
    echo = _Echo(_Acceptor(payload.request) if payload.kind == "order" else _reflect, strategy)
    freeze_gc()
    try:
        control.send("started")
        while control.poll(START_TIMEOUT_S):
            leg = control.recv()
            if leg is None:
                return
            if leg.transport == IPC_COMPILED:
                _serve_compiled(leg, control, payload, placement)
                continue
            echo.link = _open_link(leg, caller=False, on_message=echo)
            pin_process(placement)  # the Aeron client's conductor thread just started: off the hot CPU
            try:
                control.send("ready")
                _serve(echo.link, control, leg.serve_s, strategy)
            finally:
                echo.link.close()
            control.send("done")
    except EOFError:  # the caller is gone
        return


# --- the caller -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class GatewayBenchConfig:
    """The controls of a run (see the module docstring); ``cpus`` is (caller, echo), None to choose."""

    duration_s: float = 5.0
    warmup_s: float = 1.0
    rate: float = 0.0  # round trips per second; 0 = back-to-back
    transports: tuple[str, ...] = TRANSPORTS
    cpus: tuple[int, int] | None = None
    idle: str = "spin"
    driver_idle: str = DEFAULT_UDP_DRIVER_IDLE
    size: int = 0  # 0 = order mode

    def __post_init__(self) -> None:
        if not 0 < self.duration_s <= MAX_DURATION_S or self.warmup_s < 0 or self.rate < 0:
            raise ValueError(f"need 0 < duration <= {MAX_DURATION_S:g} s, warmup >= 0 and rate >= 0")
        unknown = set(self.transports) - set(TRANSPORTS)
        if unknown or not self.transports or len(set(self.transports)) != len(self.transports):
            raise ValueError(f"transports must be distinct names among {', '.join(TRANSPORTS)}: {self.transports}")
        if self.cpus is not None and len(self.cpus) != 2:
            raise ValueError(f"cpus is (caller, echo), not {self.cpus}")
        idle_strategy(self.idle)
        DriverConfig(dir="-", idle=self.driver_idle)  # raises ValueError for an unknown driver idle strategy
        if self.size:
            raw_payload(self.size)


@dataclass
class _Replies:
    """The caller's handler: the last answer, copied into a preallocated buffer, and its sequence number."""

    payload: Payload
    buffer: bytearray = field(default_factory=lambda: bytearray(MAX_SIZE_BYTES + 1))
    length: int = 0
    seq: int = -1

    def __call__(self, reply: memoryview) -> None:
        n = len(reply)
        if n != self.payload.reply_length:
            raise GatewayBenchError(f"an answer of {n} bytes, expected {self.payload.reply_length}")
        self.buffer[:n] = reply
        self.length = n
        self.seq = SEQ.unpack_from(self.buffer, self.payload.reply_seq_offset)[0]


def _round_trip(link: Link, replies: _Replies, request: bytearray, seq: int, idle: IdleStrategy) -> int:
    """Send ``request`` (stamped with ``seq``) and poll until its answer; the arrival time (ns)."""
    clock = time.perf_counter_ns
    _offer(link, request, idle, f"request {seq}")
    give_up = clock() + int(STALL_TIMEOUT_S * NS_PER_S)
    while replies.seq != seq:
        if link.poll():
            continue
        if clock() > give_up:
            raise GatewayBenchError(f"no answer to request {seq} within {STALL_TIMEOUT_S:g} s")
        idle.idle(0)
    idle.idle(1)
    return clock()


def _measure(link: Link, replies: _Replies, config: GatewayBenchConfig, idle: IdleStrategy) -> np.ndarray:
    """Round trips for ``warmup_s + duration_s``; the int64 ns samples after the warm-up. On a machine busy
    enough to stall one round trip through the whole window, it goes on until one sample is measured (at
    most STALL_TIMEOUT_S more): a leg never reports an empty histogram."""
    clock = time.perf_counter_ns
    payload = replies.payload
    request = bytearray(payload.request)
    period_ns = round(NS_PER_S / config.rate) if config.rate else 0
    seq = 1  # the first answer is checked in full before anything counts, and before the clock starts
    SEQ.pack_into(request, payload.request_seq_offset, seq)
    _round_trip(link, replies, request, seq, idle)
    _check_first_reply(payload, bytes(request), bytes(replies.buffer[: replies.length]))
    start = clock()
    measure_from = start + int(config.warmup_s * NS_PER_S)
    end = measure_from + int(config.duration_s * NS_PER_S)
    samples = np.empty(INITIAL_SAMPLES, np.int64)
    n = 0
    next_send = start
    while True:
        now = clock()
        if now >= end and (n or now >= end + int(STALL_TIMEOUT_S * NS_PER_S)):
            return samples[:n]
        if period_ns:
            if now < next_send:
                idle.idle(0)
                continue
            intended = next_send
            next_send += period_ns
        else:
            intended = now
        seq += 1
        SEQ.pack_into(request, payload.request_seq_offset, seq)
        arrived = _round_trip(link, replies, request, seq, idle)
        if intended >= measure_from:
            if n == len(samples):
                samples = np.concatenate([samples, np.empty_like(samples)])
            samples[n] = arrived - intended
            n += 1


def _expect(control: Connection, echo: mp.process.BaseProcess, message: str, timeout_s: float, what: str) -> None:
    """Wait for the echo's ``message``; an error when something else or nothing comes within ``timeout_s``."""
    try:
        if control.poll(timeout_s) and control.recv() == message:
            return
    except (EOFError, OSError):
        pass
    raise GatewayBenchError(f"the echo process did not {what} within {timeout_s:g} s (exit code {echo.exitcode})")


@dataclass
class _Caller:
    """The caller's side of a run: the echo process, its control pipe, placement and scratch directory."""

    config: GatewayBenchConfig
    payload: Payload
    control: Connection
    echo: mp.process.BaseProcess
    placement: Placement
    run_dir: Path

    def transport(self, transport: str) -> np.ndarray:
        """Round-trip samples of one transport (its own media driver for the Aeron ones)."""
        if transport == KERNEL_UDP:
            return self._leg(Leg(transport, "", free_udp_port(), free_udp_port(), self._serve_s()))
        ipc = transport in (IPC, IPC_COMPILED)
        driver_idle = DEFAULT_DRIVER_IDLE if ipc else self.config.driver_idle
        aeron_dir = str(self.run_dir / transport)
        with EmbeddedDriver(DriverConfig(dir=aeron_dir, idle=driver_idle)):
            ports = (0, 0) if ipc else (free_udp_port(), free_udp_port())
            return self._leg(Leg(transport, aeron_dir, *ports, self._serve_s()))

    def _serve_s(self) -> float:
        return self.config.warmup_s + self.config.duration_s + SERVE_SLACK_S

    def _measure_compiled(self, link: _CompiledLink) -> np.ndarray:
        """``_measure`` through the compiled loops: the first answer checked, then the timed round trips."""
        payload, config = self.payload, self.config
        request = np.frombuffer(payload.request, np.uint8).copy()
        stall_ns = int(STALL_TIMEOUT_S * NS_PER_S)
        offsets = (payload.request_seq_offset, payload.reply_seq_offset)
        first = _round_trip_nb(link.link, request, 1, *offsets, stall_ns)
        if first < 0:
            raise GatewayBenchError(_compiled_error(first))
        _check_first_reply(payload, request.tobytes(), link.answer())
        samples = np.empty(COMPILED_SAMPLES, np.int64)
        period_ns = round(NS_PER_S / config.rate) if config.rate else 0
        n, error = _measure_nb(link.link, request, *offsets, period_ns, int(config.warmup_s * NS_PER_S),
                               int(config.duration_s * NS_PER_S), stall_ns, samples)  # fmt: skip
        if error:
            raise GatewayBenchError(_compiled_error(error))
        return samples[:n].copy()

    def _leg(self, leg: Leg) -> np.ndarray:
        compiled = leg.transport == IPC_COMPILED
        replies = _Replies(self.payload)
        link = _CompiledLink(leg, caller=True) if compiled else _open_link(leg, caller=True, on_message=replies)
        try:
            pin_process(self.placement)  # driver and client threads just started: off the hot CPU
            self.control.send(leg)
            ready_s = START_TIMEOUT_S if compiled else CONNECT_TIMEOUT_S  # the compiled echo loads its loop first
            _expect(self.control, self.echo, "ready", ready_s, f"open {leg.transport}")
            give_up = time.monotonic() + CONNECT_TIMEOUT_S
            while not link.connected():
                if time.monotonic() > give_up:
                    raise GatewayBenchError(f"not connected within {CONNECT_TIMEOUT_S:g} s")
                time.sleep(0.001)
            if compiled:
                samples = self._measure_compiled(link)
            else:
                samples = _measure(link, replies, self.config, idle_strategy(self.config.idle))
        except GatewayBenchError as exc:
            raise GatewayBenchError(f"{leg.transport}: {exc} (echo process exit code {self.echo.exitcode})") from None
        finally:
            link.close()
        self.control.send("stop")
        _expect(self.control, self.echo, "done", CONNECT_TIMEOUT_S, f"finish {leg.transport}")
        return samples


def measure(config: GatewayBenchConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Round-trip samples (ns) by transport label, and notes on how they were taken."""
    payload = raw_payload(config.size) if config.size else order_payload()
    allowed = allowed_cpus()  # before pinning anything: the echo may use any of them
    caller_cpu, echo_cpu = cpu_pair(config.cpus, allowed)
    notes = [f"caller on CPU {caller_cpu}, echo on CPU {echo_cpu} (allowed: {format_cpu_list(allowed)})"]
    if caller_cpu == echo_cpu:
        notes.append("caller and echo share one CPU: every round trip includes context switches")
    context = mp.get_context("spawn")
    control, child = context.Pipe()
    echo = context.Process(
        target=echo_main, args=(child, echo_cpu, allowed, config.idle, payload), name="hftmm-bench-echo", daemon=True
    )
    shm = Path("/dev/shm")
    run_dir = Path(tempfile.mkdtemp(prefix="hftmm-bench-gateway-", dir=shm if shm.is_dir() else None))
    samples: dict[str, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(affinity_restored())  # the caller pins itself; a test or notebook gets its CPUs back
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        stack.callback(_end_echo, control, echo)
        echo.start()
        child.close()
        _expect(control, echo, "started", START_TIMEOUT_S, "start")
        caller = _Caller(config, payload, control, echo, plan_placement(caller_cpu, allowed), run_dir)
        pin_process(caller.placement)
        freeze_gc()
        for transport in config.transports:
            samples[LABELS[transport]] = caller.transport(transport)
        control.send(None)
    return samples, notes


def _end_echo(control: Connection, echo: mp.process.BaseProcess) -> None:
    """Close the control pipe (after an error the echo sees it closed and ends) and reap the echo process."""
    control.close()
    echo.join(CONNECT_TIMEOUT_S)
    if echo.is_alive():
        echo.terminate()
        echo.join(CONNECT_TIMEOUT_S)


# --- results --------------------------------------------------------------------------------------
def _describe(config: GatewayBenchConfig) -> str:
    if config.size:
        return f"raw ping-pong of {config.size} bytes"
    return f"OUCH 5.0 Enter Order ({_ENTER.itemsize} B) -> Order Accepted ({_ACCEPTED.itemsize} B)"


def build_result(config: GatewayBenchConfig, samples: dict[str, np.ndarray], notes: list[str]) -> tuple[dict, dict]:
    """The result object (see the module docstring) and the histograms it summarizes, by label."""
    histograms = {label: report.histogram(values) for label, values in samples.items()}
    rtt = {label: report.summary(hist) for label, hist in histograms.items()}
    base = rtt.get(BASELINE, {})
    ratios = {
        f"{BASELINE}/{label}": {key: round(base[key] / row[key], 3) for key in ("p50", "p99") if base[key] and row[key]}
        for label, row in rtt.items()
        if base.get("count") and row["count"] and label != BASELINE
    }
    pace = f"{config.rate:g} round trips/s, timed from the intended send" if config.rate else "back-to-back"
    driver = f"Aeron driver idle: {DEFAULT_DRIVER_IDLE} for IPC, {config.driver_idle} for UDP"
    notes = [*notes, f"caller and echo idle: {config.idle}", driver, pace]
    scheduled = int(config.rate * config.duration_s)
    for label, row in rtt.items():
        if config.rate and row["count"] < scheduled * RATE_KEPT_FRACTION:
            notes.append(f"{label} did {row['count']:,} of {scheduled:,} scheduled round trips: it cannot keep up")
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "benchmark": NAME,
        "machine": machine_info(),
        "config": {**asdict(config), "payload": _describe(config)},
        "rtt_ns": rtt,
        "ratios": ratios,
        "notes": notes,
    }
    return result, histograms


def report_lines(result: dict) -> list[str]:
    """The Markdown of a result: what ran, the percentile table, the ratios, the notes."""
    config = result["config"]
    lines = [
        f"# Gateway round trip, {result['date']}",
        "",
        f"{config['payload']}; {config['warmup_s']:g} s warm-up then {config['duration_s']:g} s per transport.",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores.",
        "",
        *report.latency_table(result["rtt_ns"], title="Round trip"),
        "",
    ]
    if result["ratios"]:
        lines.append(f"{BASELINE}'s round trip over each transport's (above 1: that transport is faster):")
    lines += [f"- {name}: " + ", ".join(f"{k} {v:g}" for k, v in row.items()) for name, row in result["ratios"].items()]
    lines += ["", *(f"- {note}" for note in result["notes"])]
    return lines


def run(config: GatewayBenchConfig, out_dir: str, compare_with: str | None = None) -> dict:
    """Measure, write json/md/png into ``out_dir/<date>-gateway/`` (echoing the tables); the result.

    With ``compare_with`` (an earlier result's JSON) the changes against it are added to the result
    (``comparison``) and the Markdown. A bad earlier file raises ValueError before anything runs.
    """
    old = report.load_result(compare_with) if compare_with else None
    samples, notes = measure(config)
    result, histograms = build_result(config, samples, notes)
    lines = report_lines(result)
    if old is not None:
        compared = report.compare_lines(report.compare(old, result), old["date"], result["date"])
        result["comparison"] = {"against": str(compare_with), "lines": compared}
        lines += ["", *compared]
    report.write_report(result, NAME, lines, out_dir, curves={"rtt": histograms})
    return result
