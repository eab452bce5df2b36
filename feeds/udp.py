"""MoldUDP64 over UDP: a receiving agent that delivers every message once, in order, recovering gaps.

:class:`MoldReceiver` reads datagrams from a non-blocking UDP socket (bound on 127.0.0.1, or joined
to a multicast group on the 127.0.0.1 interface), decodes in-order packets with the jitted
``feeds.moldudp64.decode_packet_nb`` into ``engine.core.events`` rows and hands each batch of rows to a
handler (a view of a reused buffer: copy what you keep). A batch is everything decoded in one duty
cycle: the handler is called at most once per cycle (a consumer may keep the view until its next
cycle), so when a cycle decodes more rows than ``out`` holds (a long gap closing at once) ``out``
doubles rather than flushing part of the cycle. ``tap``, when set, sees every datagram as it arrives
(before any sequencing), with its receive time: a session capture (``engine.live.capture``) records them.

Gaps (documented choice: buffer, then re-request). ``expected`` is the next sequence number to
deliver. A data or end-of-session packet that starts past ``expected`` is *buffered* (a copy, keyed
by sequence, at most ``max_buffered_packets``; past that it is dropped and fetched again later as
part of the gap), and a re-request for ``[expected, first buffered seq)`` goes to the retransmission
server from ``request_sock`` (the receiving socket for unicast; for multicast a unicast socket on the
interface), whose answers are read like the feed; a heartbeat past ``expected`` opens
a gap the same way. Answers and late packets that reach ``expected`` are decoded, then every buffered
packet that has become in order; packets wholly below ``expected`` are duplicates and dropped, and
partial overlaps are trimmed by the decoder. So the handler sees every message exactly once and in
order. A request unanswered for ``retry_interval_ns`` is sent again; after ``max_retries`` resends
without progress (or at once without a retransmission server) the receiver gives up on the missing
messages: it counts them ``lost_messages``, jumps to the first buffered packet and goes on (the
decoder's tracker then logs the gap too; recover the state from a snapshot).

Malformed framing drops the packet (``bad_packets``; the gap logic fetches it again); a message the
ITCH decoder rejects raises :class:`feeds.errors.FeedError`, since a retransmission would repeat it.

All of this lives in :class:`MoldStream`, which knows nothing of the transport: :class:`MoldReceiver`
feeds it UDP datagrams, ``feeds.moldaeron.MoldAeronReceiver`` the same packets from an Aeron stream.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import time
from collections.abc import Callable
from typing import TypedDict, Unpack

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.units import LOOPBACK
from feeds.bytes_nb import u16_nb, u64_nb
from feeds.errors import FeedError
from feeds.itch import StockDirectory
from feeds.moldudp64 import (
    COUNT_END_OF_SESSION,
    COUNT_HEARTBEAT,
    COUNT_OFFSET,
    ERR_MESSAGE,
    ERR_TOO_MANY_SESSIONS,
    FULL,
    HEADER_LENGTH,
    OK,
    SEQUENCE_OFFSET,
    SESSION_LENGTH,
    STATUS_TEXT,
    SequenceTracker,
    decode_header,
    decode_packet_nb,
    encode_request,
)

MAX_DATAGRAM_BYTES = 65_536  # a receive slot: any UDP payload fits
DEFAULT_BATCH_PACKETS = 32  # datagrams read per duty cycle
DEFAULT_OUT_ROWS = 8192  # more than the messages of one full datagram
DEFAULT_MAX_BUFFERED_PACKETS = 4096
DEFAULT_RETRY_INTERVAL_NS = 50_000_000
DEFAULT_MAX_RETRIES = 5
DEFAULT_RCVBUF_BYTES = 4 << 20
MAX_REQUEST_COUNT = 0xFFFF
TYPE_COUNTS = 256
STOCK_DIRECTORY = ord("R")  # counts[] index of the ITCH Stock Directory message


# --- the stream's state: one int64 array, read and written by Python and by compiled code ---------
RX_EXPECTED = 0  # the next sequence number to deliver
RX_GAP_UNTIL = 1  # the highest sequence number known to exist (+1)
RX_HIGH_SEQ = 2  # one past the newest message seen on the wire
RX_HELD = 3  # packets held past `expected` (the gap buffer)
RX_SESSION_SET = 4  # 1 once the session followed is known
RX_SESSION_HI = 5  # its name, bytes 0-7 big-endian, as feeds.moldudp64's tracker keys it
RX_SESSION_LO = 6  # bytes 8-9
RX_PACKETS = 7
RX_MESSAGES = 8
RX_HEARTBEATS = 9
RX_DUPLICATE_PACKETS = 10
RX_FOREIGN_PACKETS = 11
RX_BAD_PACKETS = 12
RX_GAPS = 13
RX_MISSING_MESSAGES = 14
RX_RECOVERED_MESSAGES = 15
RX_LOST_MESSAGES = 16
RX_BUFFERED_PACKETS = 17
RX_OVERFLOW_PACKETS = 18
RX_REQUESTS = 19
RX_END_OF_SESSION = 20
N_RX = 21

TAKE_SLOW = -1  # take_datagram_nb: not the in-order case; hand the datagram to MoldStream.on_packet
TAKE_ERROR = -2  # the ITCH decoder rejected a message: MoldStream.on_packet raises the FeedError


def _counter(index: int, doc: str) -> property:
    """A read-write int attribute that is word ``index`` of the object's ``rx`` state array."""

    def get(self: ReceiverStats | MoldStream) -> int:
        return int(self.rx[index])

    def put(self: ReceiverStats | MoldStream, value: int) -> None:
        self.rx[index] = value

    return property(get, put, doc=doc)


class ReceiverStats:
    """Receiver counters: packets by kind, gaps (holes seen) and their fate (views of the state array)."""

    __slots__ = ("rx",)

    def __init__(self, rx: np.ndarray) -> None:
        self.rx = rx

    packets = _counter(RX_PACKETS, "Packets of the session followed.")
    messages = _counter(RX_MESSAGES, "Messages delivered to the handler's decoder, once each.")
    heartbeats = _counter(RX_HEARTBEATS, "Heartbeat packets.")
    duplicate_packets = _counter(RX_DUPLICATE_PACKETS, "Packets wholly below the next expected sequence.")
    foreign_packets = _counter(RX_FOREIGN_PACKETS, "Packets of another session than the one followed.")
    bad_packets = _counter(RX_BAD_PACKETS, "Packets with malformed framing, dropped.")
    gaps = _counter(RX_GAPS, "Holes seen in the sequence.")
    missing_messages = _counter(RX_MISSING_MESSAGES, "Messages in the holes seen.")
    recovered_messages = _counter(RX_RECOVERED_MESSAGES, "Missing messages that arrived after all.")
    lost_messages = _counter(RX_LOST_MESSAGES, "Missing messages given up on.")
    buffered_packets = _counter(RX_BUFFERED_PACKETS, "Packets held past a gap.")
    overflow_packets = _counter(RX_OVERFLOW_PACKETS, "Packets dropped because the gap buffer was full.")
    requests = _counter(RX_REQUESTS, "Re-requests sent.")

    @property
    def end_of_session(self) -> bool:
        """True once end-of-session was delivered in order."""
        return bool(self.rx[RX_END_OF_SESSION])

    @end_of_session.setter
    def end_of_session(self, value: bool) -> None:
        self.rx[RX_END_OF_SESSION] = int(value)

    def __repr__(self) -> str:
        names = [name for name in dir(type(self)) if isinstance(getattr(type(self), name), property)]
        return "ReceiverStats(" + ", ".join(f"{name}={getattr(self, name)}" for name in sorted(names)) + ")"


@njit(cache=True, nogil=True)
def take_datagram_nb(rx, buf, length, ts_ns, out, counts, directory, tracker):
    """The in-order case of :meth:`MoldStream.on_packet`, compiled: a datagram of the followed session
    while no gap is open, starting at or before ``expected``. Decodes it into ``out[0:]`` and returns
    the rows (0 for a heartbeat, a duplicate or bad framing, counted as on_packet counts them);
    TAKE_SLOW for any other datagram (nothing changed), TAKE_ERROR when the decoder rejected a message."""
    if length < HEADER_LENGTH or rx[RX_SESSION_SET] == 0 or rx[RX_HELD] != 0 or rx[RX_EXPECTED] < rx[RX_GAP_UNTIL]:
        return TAKE_SLOW
    if np.int64(u64_nb(buf, 0)) != rx[RX_SESSION_HI] or u16_nb(buf, 8) != rx[RX_SESSION_LO]:
        return TAKE_SLOW
    seq = np.int64(u64_nb(buf, SEQUENCE_OFFSET))
    count = u16_nb(buf, COUNT_OFFSET)
    expected = rx[RX_EXPECTED]
    if count == COUNT_END_OF_SESSION or seq > expected:
        return TAKE_SLOW
    rx[RX_PACKETS] += 1
    if count == COUNT_HEARTBEAT:
        rx[RX_HEARTBEATS] += 1
        return 0
    end = seq + count
    if end <= expected:
        rx[RX_DUPLICATE_PACKETS] += 1
        return 0
    status, n, _ = decode_packet_nb(buf, 0, length, out, 0, counts, directory, tracker, ts_ns)
    if status == FULL:
        rx[RX_PACKETS] -= 1
        return TAKE_SLOW
    if status in (ERR_MESSAGE, ERR_TOO_MANY_SESSIONS):
        rx[RX_PACKETS] -= 1
        return TAKE_ERROR
    if status != OK:
        rx[RX_BAD_PACKETS] += 1
        return 0
    rx[RX_MESSAGES] += end - expected
    rx[RX_EXPECTED] = end
    rx[RX_HIGH_SEQ] = max(rx[RX_HIGH_SEQ], end)
    rx[RX_GAP_UNTIL] = max(rx[RX_GAP_UNTIL], end)
    return n


class StreamOptions(TypedDict, total=False):
    """Keyword options every MoldUDP64 listener takes (see :class:`MoldStream`)."""

    retransmit: tuple[str, int] | None
    session: bytes | None
    expect_seq: int
    batch_packets: int
    out_rows: int
    max_buffered_packets: int
    retry_interval_ns: int
    max_retries: int
    clock_ns: Callable[[], int]
    receive_clock_ns: Callable[[], int]


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port on ``host`` that nobody holds right now (to hand to a process that binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bind_udp(sock: socket.socket, address: tuple[str, int]) -> None:
    """``sock.bind(address)``; a failure (the port in use, an address not on this host) names the address."""
    try:
        sock.bind(address)
    except OSError as exc:
        raise OSError(exc.errno, f"UDP {address[0]}:{address[1]}: {exc.strerror}") from None


def request_socket(interface: str = LOOPBACK) -> socket.socket:
    """A non-blocking unicast UDP socket on ``interface`` to send re-requests from and read answers on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((interface, 0))
    return sock


class MoldStream:
    """The transport-independent half of a MoldUDP64 listener: in-order delivery and gap recovery.

    A subclass owns the transport: it hands every packet to :meth:`on_packet`, then calls
    :meth:`_drive_gap` and :meth:`flush` once per duty cycle. Re-requests go over UDP from
    ``request_sock`` (set by the subclass) to ``retransmit``.
    """

    request_sock: socket.socket

    def __init__(
        self,
        handler: Callable[[np.ndarray], None],
        *,
        retransmit: tuple[str, int] | None = None,
        session: bytes | None = None,
        expect_seq: int = 1,
        batch_packets: int = DEFAULT_BATCH_PACKETS,
        out_rows: int = DEFAULT_OUT_ROWS,
        max_buffered_packets: int = DEFAULT_MAX_BUFFERED_PACKETS,
        retry_interval_ns: int = DEFAULT_RETRY_INTERVAL_NS,
        max_retries: int = DEFAULT_MAX_RETRIES,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        receive_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if min(batch_packets, out_rows, max_buffered_packets, expect_seq) < 1 or max_retries < 0:
            raise ValueError("batch_packets, out_rows, max_buffered_packets, expect_seq must be positive")
        self.handler = handler
        self.retransmit = retransmit
        self.rx = np.zeros(N_RX, np.int64)
        self.stats = ReceiverStats(self.rx)
        self.session = session
        self.expected = expect_seq
        self.batch_packets = batch_packets
        self.max_buffered_packets = max_buffered_packets
        self.retry_interval_ns = retry_interval_ns
        self.max_retries = max_retries
        self.clock_ns = clock_ns
        self.receive_clock_ns = receive_clock_ns
        self.tap: Callable[[memoryview, int], None] | None = None
        self.tracker = SequenceTracker()
        self.stocks = StockDirectory()
        self.counts = np.zeros(TYPE_COUNTS, np.int64)
        self._directory_messages = 0  # Stock Directory messages decoded when the directory was last announced
        self.out = np.empty(out_rows, E.EVENT_DTYPE)
        self._n = 0
        # load (or compile) the decoder now, not on the first packet; an empty packet changes no state
        empty = np.frombuffer(b"", np.uint8)
        decode_packet_nb(empty, 0, 0, self.out, 0, self.counts, self.stocks.table, self.tracker.state, 0)
        self._slots = np.empty((batch_packets, MAX_DATAGRAM_BYTES), np.uint8)  # datagram receive buffers
        self._slot_views = [memoryview(row) for row in self._slots]
        self._buffered: list[tuple[int, int, bytes]] = []  # heap of (seq, receive ns, packet) past `expected`
        self._gap_until = expect_seq
        self._high_seq = expect_seq
        self._request_seq = -1  # `expected` when the outstanding request went out
        self._request_ns = 0
        self._retries = 0

    @property
    def session(self) -> bytes | None:
        """The MoldUDP64 session followed (None until the first packet, unless given)."""
        if not self.rx[RX_SESSION_SET]:
            return None
        head = int(self.rx[RX_SESSION_HI]).to_bytes(8, "big", signed=True)
        return head + int(self.rx[RX_SESSION_LO]).to_bytes(2, "big")

    @session.setter
    def session(self, value: bytes | None) -> None:
        self.rx[RX_SESSION_SET] = value is not None
        if value is not None:
            raw = bytes(value).ljust(SESSION_LENGTH, b" ")
            self.rx[RX_SESSION_HI] = int.from_bytes(raw[:8], "big", signed=True)
            self.rx[RX_SESSION_LO] = int.from_bytes(raw[8:SESSION_LENGTH], "big")

    expected = _counter(RX_EXPECTED, "The next sequence number to deliver.")
    _gap_until = _counter(RX_GAP_UNTIL, "The highest sequence number known to exist (+1).")
    _high_seq = _counter(RX_HIGH_SEQ, "One past the newest message seen on the wire.")

    @property
    def gap_open(self) -> bool:
        """True while messages before a known later sequence number are missing."""
        return self.expected < self._gap_until

    @property
    def finished(self) -> bool:
        """True once end-of-session was delivered in order (nothing missing before it)."""
        return self.stats.end_of_session

    def _read(self, sock: socket.socket, budget: int) -> int:
        """Hand up to ``budget`` datagrams waiting on ``sock`` to :meth:`on_packet`; returns how many."""
        n = 0
        for view in self._slot_views[:budget]:
            try:
                size = sock.recv_into(view)
            except BlockingIOError:
                break
            self.on_packet(view[:size], self.receive_clock_ns())
            n += 1
        return n

    # --- packets ----------------------------------------------------------------------------------
    def on_packet(self, packet: memoryview, ts_ns: int) -> None:
        """One datagram as it arrived (the sockets' duty cycle, or a capture replay): sequence and buffer it."""
        if self.tap is not None:
            self.tap(packet, ts_ns)
        if len(packet) < HEADER_LENGTH:
            self.stats.bad_packets += 1
            return
        session, seq, count = decode_header(packet)
        if self.session is None:
            self.session = session
        elif session != self.session:
            self.stats.foreign_packets += 1
            return
        self.stats.packets += 1
        control = count in (COUNT_HEARTBEAT, COUNT_END_OF_SESSION)
        end = seq if control else seq + count
        if count == COUNT_HEARTBEAT:
            self.stats.heartbeats += 1
        if seq > self._high_seq:
            self.stats.gaps += 1
            self.stats.missing_messages += seq - self._high_seq
        self._high_seq = max(self._high_seq, end)
        if count == COUNT_HEARTBEAT:
            self._gap_until = max(self._gap_until, seq)
        elif not control and end <= self.expected:
            self.stats.duplicate_packets += 1
        elif seq <= self.expected:
            target = self._gap_target()
            if target > self.expected:
                self.stats.recovered_messages += min(end, target) - self.expected
            self._decode(packet, ts_ns)
            self._drain_buffered()
        elif len(self._buffered) < self.max_buffered_packets:
            heapq.heappush(self._buffered, (seq, ts_ns, bytes(packet)))
            self.rx[RX_HELD] = len(self._buffered)
            self.stats.buffered_packets += 1
            self._gap_until = max(self._gap_until, seq)
        else:
            self.stats.overflow_packets += 1
            self._gap_until = max(self._gap_until, seq)

    def _gap_target(self) -> int:
        """The sequence number that closes the current gap: the first buffered packet, else the known high."""
        return self._buffered[0][0] if self._buffered else self._gap_until

    def _drain_buffered(self) -> None:
        while self._buffered and self._buffered[0][0] <= self.expected:
            seq, ts_ns, packet = heapq.heappop(self._buffered)
            self.rx[RX_HELD] = len(self._buffered)
            _, _, count = decode_header(packet)
            if count not in (COUNT_HEARTBEAT, COUNT_END_OF_SESSION) and seq + count <= self.expected:
                self.stats.duplicate_packets += 1
            else:
                self._decode(memoryview(packet), ts_ns)

    def _decode(self, packet: memoryview, ts_ns: int) -> None:
        """Decode one in-order packet into ``out`` (flushing when full) and advance ``expected``."""
        buf = np.frombuffer(packet, np.uint8)
        while True:
            status, n, seq = decode_packet_nb(
                buf, 0, buf.shape[0], self.out, self._n, self.counts, self.stocks.table, self.tracker.state, ts_ns
            )
            if status != FULL:
                break
            if self._n == 0:
                raise FeedError(f"a packet holds more messages than out_rows={self.out.shape[0]}")
            self._grow_out()
        if status in (ERR_MESSAGE, ERR_TOO_MANY_SESSIONS):
            raise FeedError(STATUS_TEXT[status], seq=int(seq))
        if status != OK:
            self.stats.bad_packets += 1
            return
        self._n = n
        _, first, count = decode_header(packet)
        if count == COUNT_END_OF_SESSION:
            self.stats.end_of_session = True
        elif count != COUNT_HEARTBEAT:
            self.stats.messages += first + count - max(first, self.expected)
            self.expected = max(self.expected, first + count)
        self._gap_until = max(self._gap_until, self.expected)

    def _grow_out(self) -> None:
        """Double ``out``, keeping this cycle's rows: the cycle's batch stays one handler call."""
        grown = np.empty(2 * self.out.shape[0], E.EVENT_DTYPE)
        grown[: self._n] = self.out[: self._n]
        self.out = grown

    def flush(self) -> None:
        """Decode what the packets since the last flush brought and hand the rows to the callback."""
        if self.counts[STOCK_DIRECTORY] != self._directory_messages:  # a scan of every locate: only when needed
            self._directory_messages = int(self.counts[STOCK_DIRECTORY])
            self.stocks.announce()
        if self._n:
            self.handler(self.out[: self._n])
            self._n = 0

    # --- gap recovery -----------------------------------------------------------------------------
    def _drive_gap(self) -> int:
        """Request the open gap, resend on timeout, give up after the retries; returns work done."""
        if not self.gap_open:
            return 0
        now = self.clock_ns()
        if self.retransmit is not None and self._request_seq != self.expected:
            self._retries = 0
        elif self.retransmit is not None and now - self._request_ns < self.retry_interval_ns:
            return 0
        elif self.retransmit is not None and self._retries < self.max_retries:
            self._retries += 1
        else:
            self.give_up()
            return 1
        count = min(self._gap_target() - self.expected, MAX_REQUEST_COUNT)
        with contextlib.suppress(BlockingIOError):  # as if lost on the wire: the retry timer sends it again
            self.request_sock.sendto(encode_request(self.session or b"", self.expected, count), self.retransmit)
        self.stats.requests += 1
        self._request_seq = self.expected
        self._request_ns = now
        return 1

    def give_up(self) -> None:
        """Skip the missing messages before the first buffered packet (or the known high)."""
        target = self._gap_target()
        self.stats.lost_messages += target - self.expected
        self.expected = target
        self._request_seq = -1
        self._drain_buffered()


class MoldReceiver(MoldStream):
    """Agent: MoldUDP64 datagrams in, event rows out to ``handler`` in sequence order."""

    role_name = "mold-receiver"

    def __init__(
        self,
        handler: Callable[[np.ndarray], None],
        bind: tuple[str, int] = (LOOPBACK, 0),
        *,
        multicast_group: str | None = None,
        interface: str = LOOPBACK,
        rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES,
        **options: Unpack[StreamOptions],
    ) -> None:
        super().__init__(handler, **options)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
        if multicast_group is None:
            bind_udp(self.sock, bind)
            self.request_sock = self.sock
        else:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((multicast_group, bind[1]))
            membership = socket.inet_aton(multicast_group) + socket.inet_aton(interface)
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            # a socket bound to a group cannot be a unicast source: requests and answers use their own
            self.request_sock = request_socket(interface)
        self._sockets = (self.sock,) if self.request_sock is self.sock else (self.sock, self.request_sock)
        self.address: tuple[str, int] = self.sock.getsockname()

    # --- agent ------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Nothing to prepare: the socket is bound at construction, so its port is known early."""

    def do_work(self) -> int:
        """Read up to ``batch_packets`` datagrams, deliver what is in order, drive gap recovery."""
        return self._read(self.sock, self.batch_packets) + self.maintain()

    def maintain(self) -> int:
        """Everything but reading the feed socket: read re-request answers (multicast: their own socket),
        drive gap recovery, deliver what is in order. A compiled loop reading the feed socket itself
        (``engine.live.loop_nb``) calls this when it returns."""
        work = self._read(self.request_sock, self.batch_packets) if self.request_sock is not self.sock else 0
        work += self._drive_gap()
        self.flush()
        return work

    def on_close(self) -> None:
        """Deliver the rows still held and close the sockets."""
        self.flush()
        for sock in self._sockets:
            sock.close()
