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
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

from engine.core import events as E
from engine.core.units import LOOPBACK
from feeds.errors import FeedError
from feeds.itch import StockDirectory
from feeds.moldudp64 import (
    COUNT_END_OF_SESSION,
    COUNT_HEARTBEAT,
    ERR_MESSAGE,
    ERR_TOO_MANY_SESSIONS,
    FULL,
    HEADER_LENGTH,
    OK,
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


@dataclass(slots=True)
class ReceiverStats:
    """Receiver counters: packets by kind, gaps (holes seen) and their fate."""

    packets: int = 0
    messages: int = 0  # delivered to the handler's decoder, once each
    heartbeats: int = 0
    duplicate_packets: int = 0
    foreign_packets: int = 0  # another session than the one followed
    bad_packets: int = 0  # malformed framing, dropped
    gaps: int = 0
    missing_messages: int = 0  # in the holes seen
    recovered_messages: int = 0
    lost_messages: int = 0  # given up on
    buffered_packets: int = 0
    overflow_packets: int = 0  # dropped because the gap buffer was full
    requests: int = 0
    end_of_session: bool = False


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
        self.session = session
        self.expected = expect_seq
        self.batch_packets = batch_packets
        self.max_buffered_packets = max_buffered_packets
        self.retry_interval_ns = retry_interval_ns
        self.max_retries = max_retries
        self.clock_ns = clock_ns
        self.receive_clock_ns = receive_clock_ns
        self.tap: Callable[[memoryview, int], None] | None = None
        self.stats = ReceiverStats()
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
        self._gap_until = expect_seq  # the highest sequence number known to exist (+1)
        self._high_seq = expect_seq  # one past the newest message seen on the wire
        self._request_seq = -1  # `expected` when the outstanding request went out
        self._request_ns = 0
        self._retries = 0

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
        if self._n:
            if self.counts[STOCK_DIRECTORY] != self._directory_messages:  # a scan of every locate: only when needed
                self._directory_messages = int(self.counts[STOCK_DIRECTORY])
                self.stocks.announce()
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
        work = 0
        for sock in self._sockets:
            work += self._read(sock, self.batch_packets - work)
        work += self._drive_gap()
        self.flush()
        return work

    def on_close(self) -> None:
        """Deliver the rows still held and close the sockets."""
        self.flush()
        for sock in self._sockets:
            sock.close()
