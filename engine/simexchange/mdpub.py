"""MoldUDP64 market-data publisher and its retransmission server (agents; see engine.runtime.agent).

:class:`MoldPublisher` takes ITCH messages (one ``bytes`` each, or a flat ``[u16 length][msg]``
buffer), numbers them from ``first_seq`` and sends them in MoldUDP64 packets of at most
``max_packet_bytes`` to one UDP destination (unicast, or a multicast group with ``IP_MULTICAST_IF``
and a TTL of 0 or 1). A MoldUDP64 message block is the same ``[u16 length][msg]`` record as a flat
file, so a packet is its 20-byte header plus one contiguous slice of the input, sent with
``sendmsg`` without copying; the record boundaries and the packet cuts come from one jitted scan per
input batch. While idle it sends a heartbeat every ``heartbeat_interval_ns``; ``on_close`` sends
whatever is still queued, then an end-of-session packet.

With an Aeron publication (``aeron``, e.g. on ``aeron:ipc`` for the lowest-latency local path) every
packet also goes there, the same bytes as one Aeron message each, without holding the UDP feed back:
packets Aeron back-pressures wait in a backlog of at most ``aeron_backlog_packets`` that the next
duty cycles offer first. A packet nobody subscribes to (not connected) or that overflows the
backlog is dropped, counted ``aeron_dropped``, as if lost on the wire: the listener recovers it
through retransmission (``feeds.moldaeron.MoldAeronReceiver``).

Every sent message is kept in a bounded history: a ring of ``history_messages`` fixed slots of
``2 + max_message_bytes`` bytes, slot ``seq % history_messages``. :class:`RetransmissionServer`
answers re-request packets (session, seq, count) from it on its own UDP port, to the requester's
address. What it does with a request (documented choice; MoldUDP64 has no negative answer):

* a session other than the publisher's, or a malformed packet: ignored, counted ``bad_requests``;
* a range wholly outside the history (too old, or not yet sent): no answer, counted
  ``out_of_history`` — the listener must give up on it (``feeds.udp.MoldReceiver`` does after its
  retries) and recover the state some other way (snapshot);
* otherwise the kept part of the range, from ``max(seq, oldest)``, at most
  ``max_messages_per_answer`` messages, in as many packets of at most ``max_packet_bytes`` as
  needed; a range that starts before the oldest kept message is also counted ``out_of_history``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyaeron
from numba import njit

from engine.core.units import LOOPBACK
from feeds.itch import MESSAGE_LENGTHS
from feeds.moldudp64 import (
    BLOCK_LENGTH_SIZE,
    HEADER_LENGTH,
    MAX_MESSAGES_PER_PACKET,
    SESSION_LENGTH,
    decode_request,
    encode_end_of_session,
    encode_heartbeat,
)
from feeds.udp import bind_udp

DEFAULT_MAX_PACKET_BYTES = 1400  # UDP payload: fits a 1500-byte Ethernet MTU with IP and UDP headers
DEFAULT_HEARTBEAT_INTERVAL_NS = 1_000_000_000
DEFAULT_HISTORY_MESSAGES = 1 << 16
DEFAULT_MAX_MESSAGE_BYTES = int(MESSAGE_LENGTHS.max())  # the longest ITCH 5.0 message
DEFAULT_PACKETS_PER_CYCLE = 16  # data packets sent per duty cycle: bounds the cycle and the listener's burst
DEFAULT_MAX_MESSAGES_PER_ANSWER = 1024
DEFAULT_REQUESTS_PER_CYCLE = 8
DEFAULT_AERON_BACKLOG_PACKETS = 1024  # packets waiting out Aeron back pressure
REQUEST_BUFFER_BYTES = 64  # more than a re-request; a longer datagram is malformed

_HEADER = struct.Struct(">10sQH")  # session, sequence, message count (see feeds.moldudp64)

# --- flat-buffer scan status codes ----------------------------------------------------------------
SCAN_OK = 0
SCAN_TRUNCATED = -1  # the last record runs past the end of the buffer
SCAN_ZERO_LENGTH = -2  # a record of length 0
SCAN_TOO_LONG = -3  # a record longer than max_message_bytes

_SCAN_TEXT = {
    SCAN_TRUNCATED: "truncated record at the end of the buffer",
    SCAN_ZERO_LENGTH: "zero-length record",
    SCAN_TOO_LONG: "record longer than max_message_bytes",
}


@njit(cache=True, nogil=True)
def scan_records_nb(buf, max_message_bytes, offsets):
    """Record starts of the flat buffer ``buf`` into ``offsets`` (plus the end after the last one).

    ``offsets`` needs ``len(buf) // 3 + 2`` entries. Returns ``(status, records, pos)``: ``pos`` is
    the offset of the bad record when ``status`` is not ``SCAN_OK``.
    """
    pos = 0
    n = 0
    end = buf.shape[0]
    while pos < end:
        if end - pos < BLOCK_LENGTH_SIZE:
            return SCAN_TRUNCATED, n, pos
        length = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
        if length == 0:
            return SCAN_ZERO_LENGTH, n, pos
        if length > max_message_bytes:
            return SCAN_TOO_LONG, n, pos
        if pos + BLOCK_LENGTH_SIZE + length > end:
            return SCAN_TRUNCATED, n, pos
        offsets[n] = pos
        n += 1
        pos += BLOCK_LENGTH_SIZE + length
    offsets[n] = pos
    return SCAN_OK, n, pos


@njit(cache=True, nogil=True)
def plan_packets_nb(offsets, records, max_block_bytes, max_messages, starts):
    """Cut ``records`` records into packets of at most ``max_block_bytes`` of blocks and ``max_messages``.

    Writes the first record of each packet into ``starts`` (then ``records``) and returns the packet
    count. Every record must fit alone (the scan bounds its length).
    """
    packets = 0
    i = 0
    while i < records:
        starts[packets] = i
        packets += 1
        j = i + 1
        while j < records and j - i < max_messages and offsets[j + 1] - offsets[i] <= max_block_bytes:
            j += 1
        i = j
    starts[packets] = records
    return packets


@njit(cache=True, nogil=True)
def store_history_nb(buf, offsets, first, stop, seq, history, history_lengths):
    """Copy records ``first..stop-1`` (framed, numbered from ``seq``) into their history slots."""
    slots = history.shape[0]
    for i in range(first, stop):
        slot = (seq + i - first) % slots
        length = offsets[i + 1] - offsets[i]
        history[slot, :length] = buf[offsets[i] : offsets[i + 1]]
        history_lengths[slot] = length


@njit(cache=True, nogil=True)
def gather_history_nb(history, history_lengths, seq, count, max_block_bytes, out):
    """Copy framed messages ``seq..`` (at most ``count``, ``max_block_bytes``) from the history to ``out``.

    Returns ``(messages, nbytes)``; the caller checks that the range is kept.
    """
    slots = history.shape[0]
    nbytes = 0
    for k in range(count):
        slot = (seq + k) % slots
        length = history_lengths[slot]
        if nbytes + length > max_block_bytes:
            return k, nbytes
        out[nbytes : nbytes + length] = history[slot, :length]
        nbytes += length
    return count, nbytes


def _session_bytes(session: bytes | str) -> bytes:
    raw = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(raw) > SESSION_LENGTH:
        raise ValueError(f"session {raw!r} is longer than {SESSION_LENGTH} bytes")
    return raw.ljust(SESSION_LENGTH, b" ")


def _udp_socket(destination_host: str, multicast_interface: str, multicast_ttl: int) -> socket.socket:
    """A non-blocking UDP socket, set up for multicast sends when the destination is a group.

    It is bound to the address it sends from (127.0.0.1 to a loopback destination, the interface of a
    multicast group), never to every interface; only a unicast destination elsewhere leaves the choice
    of source to the kernel, as configured."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    destination = ipaddress.ip_address(destination_host)
    if destination.is_loopback:
        sock.bind((LOOPBACK, 0))
    elif destination.is_multicast:
        sock.bind((multicast_interface, 0))
    if destination.is_multicast:
        if multicast_ttl not in (0, 1):
            raise ValueError(f"multicast TTL must be 0 (host) or 1 (subnet), got {multicast_ttl}")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(multicast_interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, multicast_ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return sock


@dataclass(slots=True)
class PublisherStats:
    """Publisher counters (data packets and messages include those dropped by the test hook)."""

    packets: int = 0
    messages: int = 0
    bytes: int = 0
    heartbeats: int = 0
    dropped_packets: int = 0
    would_block: int = 0  # packets the socket refused (data stays in history, like a loss on the wire)
    aeron_packets: int = 0  # packets appended to the Aeron publication
    aeron_dropped: int = 0  # packets not put on Aeron: no subscriber connected, or the backlog overflowed
    end_of_session: bool = False


@dataclass(slots=True)
class _Batch:
    """A flat input buffer with its record offsets and packet cuts, sent packet by packet."""

    buf: np.ndarray
    offsets: np.ndarray
    starts: np.ndarray
    packets: int
    next_packet: int = 0


class MoldPublisher:
    """Agent: ITCH messages in, MoldUDP64 packets out over UDP, with heartbeats and a history.

    Not thread-safe: call the ``publish*`` methods before the runner starts or from its thread.
    """

    role_name = "mold-publisher"

    def __init__(
        self,
        destination: tuple[str, int],
        session: bytes | str,
        *,
        first_seq: int = 1,
        max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS,
        history_messages: int = DEFAULT_HISTORY_MESSAGES,
        packets_per_cycle: int = DEFAULT_PACKETS_PER_CYCLE,
        multicast_interface: str = LOOPBACK,
        multicast_ttl: int = 0,
        aeron: pyaeron.ExclusivePublication | None = None,
        aeron_backlog_packets: int = DEFAULT_AERON_BACKLOG_PACKETS,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if max_packet_bytes < HEADER_LENGTH + BLOCK_LENGTH_SIZE + max_message_bytes:
            raise ValueError(f"max_packet_bytes {max_packet_bytes} cannot hold a {max_message_bytes}-byte message")
        if first_seq < 1 or history_messages < 1 or packets_per_cycle < 1 or heartbeat_interval_ns <= 0:
            raise ValueError(
                "first_seq, history_messages, packets_per_cycle and heartbeat_interval_ns must be positive"
            )
        self.destination = destination
        self.session = _session_bytes(session)
        self.max_packet_bytes = max_packet_bytes
        self.max_message_bytes = max_message_bytes
        self.heartbeat_interval_ns = heartbeat_interval_ns
        self.packets_per_cycle = packets_per_cycle
        self.clock_ns = clock_ns
        self.stats = PublisherStats()
        self.first_seq = first_seq
        self.next_seq = first_seq  # the sequence number of the next message sent
        self.history = np.zeros((history_messages, BLOCK_LENGTH_SIZE + max_message_bytes), np.uint8)
        self.history_lengths = np.zeros(history_messages, np.int64)
        self.sock = _udp_socket(destination[0], multicast_interface, multicast_ttl)
        self.aeron = aeron  # closed by on_close
        self.aeron_backlog_packets = aeron_backlog_packets
        self._aeron_backlog: deque[list[bytes | memoryview]] = deque()  # [header, blocks] back-pressured
        self._staged = bytearray()  # single messages framed by publish(), batched at the next cycle
        self._batches: deque[_Batch] = deque()
        self._drop_next = 0
        self._last_send_ns = clock_ns()

    # --- input ------------------------------------------------------------------------------------
    def publish(self, message: bytes) -> None:
        """Queue one ITCH message (sent by the next duty cycles)."""
        if not 0 < len(message) <= self.max_message_bytes:
            raise ValueError(f"message of {len(message)} bytes; expected 1..{self.max_message_bytes}")
        self._staged += len(message).to_bytes(BLOCK_LENGTH_SIZE, "big")
        self._staged += message

    def publish_many(self, messages: Iterable[bytes]) -> None:
        """Queue ITCH messages in order."""
        for message in messages:
            self.publish(message)

    def publish_flat(self, data: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Queue a flat ``[u16 length][msg]`` buffer (copied); returns its message count."""
        self._flush_staged()
        return self._queue(np.frombuffer(data, np.uint8).copy())

    def _flush_staged(self) -> None:
        if self._staged:
            self._queue(np.frombuffer(self._staged, np.uint8).copy())
            self._staged.clear()

    def _queue(self, buf: np.ndarray) -> int:
        offsets = np.empty(buf.shape[0] // (BLOCK_LENGTH_SIZE + 1) + 2, np.int64)
        status, records, pos = scan_records_nb(buf, self.max_message_bytes, offsets)
        if status != SCAN_OK:
            raise ValueError(f"{_SCAN_TEXT[status]} at offset {pos}")
        if records:
            starts = np.empty(records + 1, np.int64)
            block_bytes = self.max_packet_bytes - HEADER_LENGTH
            packets = plan_packets_nb(offsets, records, block_bytes, MAX_MESSAGES_PER_PACKET, starts)
            self._batches.append(_Batch(buf, offsets, starts, packets))
        return records

    def drop_next_packets(self, count: int = 1) -> None:
        """Test hook: the next ``count`` data packets are numbered and kept in history but not sent."""
        self._drop_next += count

    # --- history ----------------------------------------------------------------------------------
    @property
    def oldest_seq(self) -> int:
        """The oldest sequence number still in the history (== next_seq when it is empty)."""
        return max(self.first_seq, self.next_seq - self.history.shape[0])

    # --- agent ------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Start the heartbeat clock."""
        self._last_send_ns = self.clock_ns()

    def do_work(self) -> int:
        """Send up to ``packets_per_cycle`` data packets, or a heartbeat when idle long enough."""
        self._flush_staged()
        self._drain_aeron()
        sent = 0
        while self._batches and sent < self.packets_per_cycle:
            batch = self._batches[0]
            self._send_packet(batch)
            sent += 1
            if batch.next_packet == batch.packets:
                self._batches.popleft()
        now = self.clock_ns()
        if sent:
            self._last_send_ns = now
        elif now - self._last_send_ns >= self.heartbeat_interval_ns:
            self._send(encode_heartbeat(self.session, self.next_seq))
            self.stats.heartbeats += 1
            self._last_send_ns = now
            sent = 1
        return sent

    def _send_packet(self, batch: _Batch) -> None:
        first = int(batch.starts[batch.next_packet])
        stop = int(batch.starts[batch.next_packet + 1])
        batch.next_packet += 1
        count = stop - first
        store_history_nb(batch.buf, batch.offsets, first, stop, self.next_seq, self.history, self.history_lengths)
        header = _HEADER.pack(self.session, self.next_seq, count)
        blocks = memoryview(batch.buf)[batch.offsets[first] : batch.offsets[stop]]
        self.next_seq += count
        self.stats.packets += 1
        self.stats.messages += count
        if self._drop_next:
            self._drop_next -= 1
            self.stats.dropped_packets += 1
            return
        try:
            self.stats.bytes += self.sock.sendmsg([header, blocks], [], 0, self.destination)
        except BlockingIOError:
            self.stats.would_block += 1
        self._mirror([header, blocks])

    def _send(self, packet: bytes) -> None:
        try:
            self.stats.bytes += self.sock.sendto(packet, self.destination)
        except BlockingIOError:
            self.stats.would_block += 1
        self._mirror([packet])

    def _mirror(self, parts: list[bytes | memoryview]) -> None:
        """Offer a sent packet on Aeron too, behind any back-pressured ones."""
        if self.aeron is None:
            return
        self._aeron_backlog.append(parts)
        if len(self._aeron_backlog) > self.aeron_backlog_packets:
            self._aeron_backlog.popleft()
            self.stats.aeron_dropped += 1
        self._drain_aeron()

    def _drain_aeron(self) -> None:
        """Offer the backlog in order until Aeron pushes back; drop what nobody subscribes to."""
        aeron = self.aeron
        while aeron is not None and self._aeron_backlog:
            result = aeron.offerv(self._aeron_backlog[0])
            if not result and result is not pyaeron.NOT_CONNECTED:
                return  # back pressure or an admin action: offer it again next cycle
            self._aeron_backlog.popleft()
            if result:
                self.stats.aeron_packets += 1
            else:
                self.stats.aeron_dropped += 1

    def on_close(self) -> None:
        """Send everything still queued, then end-of-session; close the socket."""
        self._flush_staged()
        while self._batches:
            batch = self._batches[0]
            while batch.next_packet < batch.packets:
                self._send_packet(batch)
            self._batches.popleft()
        self._send(encode_end_of_session(self.session, self.next_seq))
        self.stats.end_of_session = True
        self.sock.close()
        if self.aeron is not None and not self.aeron.is_closed:
            self.stats.aeron_dropped += len(self._aeron_backlog)  # still back-pressured
            self._aeron_backlog.clear()
            self.aeron.close()


@dataclass(slots=True)
class RetransmissionStats:
    """Retransmission server counters."""

    requests: int = 0
    served_requests: int = 0
    out_of_history: int = 0
    bad_requests: int = 0
    would_block: int = 0  # answer packets the socket refused (the requester asks again)
    packets: int = 0
    messages: int = 0
    bytes: int = 0


class RetransmissionServer:
    """Agent: answers MoldUDP64 re-requests from a :class:`MoldPublisher`'s history (see module doc).

    It reads the publisher's history without locks: run it on the publisher's runner.
    """

    role_name = "mold-retransmitter"

    def __init__(
        self,
        publisher: MoldPublisher,
        bind: tuple[str, int] = (LOOPBACK, 0),
        *,
        max_messages_per_answer: int = DEFAULT_MAX_MESSAGES_PER_ANSWER,
        requests_per_cycle: int = DEFAULT_REQUESTS_PER_CYCLE,
    ) -> None:
        if max_messages_per_answer < 1 or requests_per_cycle < 1:
            raise ValueError("max_messages_per_answer and requests_per_cycle must be positive")
        self.publisher = publisher
        self.max_messages_per_answer = max_messages_per_answer
        self.requests_per_cycle = requests_per_cycle
        self.stats = RetransmissionStats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        bind_udp(self.sock, bind)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._request = bytearray(REQUEST_BUFFER_BYTES)
        self._blocks = np.empty(publisher.max_packet_bytes - HEADER_LENGTH, np.uint8)

    def on_start(self) -> None:
        """Load (or compile) the history kernel now, not on the first request, when a gap is waiting.

        The socket is bound at construction, so its port is known early.
        """
        pub = self.publisher
        gather_history_nb(pub.history, pub.history_lengths, 0, 0, self._blocks.shape[0], self._blocks)

    def do_work(self) -> int:
        """Answer up to ``requests_per_cycle`` pending requests."""
        work = 0
        for _ in range(self.requests_per_cycle):
            try:
                size, sender = self.sock.recvfrom_into(self._request)
            except BlockingIOError:
                break
            work += 1
            self._answer(bytes(self._request[:size]), sender)
        return work

    def _answer(self, request: bytes, sender: tuple[str, int]) -> None:
        self.stats.requests += 1
        try:
            session, seq, count = decode_request(request)
        except ValueError:
            self.stats.bad_requests += 1
            return
        pub = self.publisher
        if session != pub.session or count == 0:
            self.stats.bad_requests += 1
            return
        oldest, newest = pub.oldest_seq, pub.next_seq
        first = max(seq, oldest)
        stop = min(seq + count, newest, first + self.max_messages_per_answer)
        if seq < oldest or first >= stop:
            self.stats.out_of_history += 1
        if first >= stop:
            return
        self.stats.served_requests += 1
        block_bytes = self._blocks.shape[0]
        while first < stop:
            sent, nbytes = gather_history_nb(
                pub.history, pub.history_lengths, first, stop - first, block_bytes, self._blocks
            )
            header = _HEADER.pack(pub.session, first, sent)
            first += sent
            try:
                self.stats.bytes += self.sock.sendmsg([header, memoryview(self._blocks)[:nbytes]], [], 0, sender)
            except BlockingIOError:
                self.stats.would_block += 1
                continue
            self.stats.packets += 1
            self.stats.messages += sent

    def on_close(self) -> None:
        """Close the socket."""
        self.sock.close()
