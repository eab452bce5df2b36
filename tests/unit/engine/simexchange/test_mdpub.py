"""MoldUDP64 publisher, retransmission server and receiver on loopback (127.0.0.1, OS-chosen ports)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.core import events as E
from engine.runtime.agent import AgentRunner
from engine.simexchange.mdpub import MoldPublisher, RetransmissionServer, scan_records_nb
from feeds import itch
from feeds.flatfile import FlatItchReader
from feeds.moldudp64 import (
    COUNT_END_OF_SESSION,
    decode_header,
    encode_heartbeat,
    encode_packet,
    encode_request,
    iter_messages,
)
from feeds.synth import generate_itch
from feeds.udp import MoldReceiver, MoldStream
from tests.conftest import skip_unless_multicast_loops_back, step_until

LOOPBACK = "127.0.0.1"
SESSION = b"TEST000001"
MESSAGES = 20_000
MAX_CYCLES = 200_000
WAIT_S = 20.0
QUIET_S = 0.05  # how long a socket must stay silent to count as "no answer"
MULTICAST_GROUP = "239.255.42.1"  # administratively scoped; TTL 0 keeps it on this host
COMPARED = [name for name in E.EVENT_DTYPE.names if name not in ("seq", "ts_local_ns")]


class Collector:
    """Receiver handler: keeps a copy of every batch."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> None:
        self.batches.append(rows.copy())

    @property
    def events(self) -> np.ndarray:
        return np.concatenate(self.batches) if self.batches else np.empty(0, E.EVENT_DTYPE)


class FakeClock:
    """A settable monotonic clock in ns."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, np.ndarray]:
    """A synthetic ITCH day as a flat buffer, and its events through FlatItchReader."""
    path = Path(tmp_path_factory.mktemp("mold")) / "day.itch"
    generate_itch(path, messages=MESSAGES, symbols=20, seed=7)
    events = np.concatenate([batch.copy() for batch in FlatItchReader(str(path)).batches()])
    return path.read_bytes(), events


def record_offsets(data: bytes) -> np.ndarray:
    """Start of every record of a flat buffer, then its end."""
    buf = np.frombuffer(data, np.uint8)
    offsets = np.empty(len(data) // 3 + 2, np.int64)
    status, records, _ = scan_records_nb(buf, 0xFFFF, offsets)
    assert status == 0
    return offsets[: records + 1]


def first_records(data: bytes, count: int) -> bytes:
    """The first ``count`` records of a flat buffer."""
    return data[: record_offsets(data)[count]]


def run_until(runners: list[AgentRunner], done: Callable[[], bool]) -> None:
    """Step the runners until ``done`` (bounded in cycles and time)."""
    step_until(lambda: sum(runner.run_once() for runner in runners), done, wait_s=WAIT_S, max_cycles=MAX_CYCLES)


def assert_same_events(got: np.ndarray, reference: np.ndarray) -> None:
    """Same rows as the flat-file decode; MoldUDP64 numbers messages from 1, the file from 0."""
    assert len(got) == len(reference)
    np.testing.assert_array_equal(got["seq"], reference["seq"] + 1)
    for name in COMPARED:
        np.testing.assert_array_equal(got[name], reference[name], err_msg=name)


@pytest.fixture
def sink() -> Iterator[socket.socket]:
    """A plain non-blocking UDP socket on loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket, quiet_s: float = QUIET_S) -> list[bytes]:
    """Every datagram that arrives until the socket stays quiet for ``quiet_s`` (bounded)."""
    packets = []
    deadline = time.monotonic() + WAIT_S
    sock.settimeout(quiet_s)
    try:
        while time.monotonic() < deadline:
            try:
                packets.append(sock.recv(1 << 16))
            except (TimeoutError, BlockingIOError):
                break
    finally:
        sock.setblocking(False)
    return packets


def feed(
    publisher_kwargs: dict | None = None, receiver_kwargs: dict | None = None
) -> tuple[MoldPublisher, RetransmissionServer, MoldReceiver, Collector]:
    """Receiver, publisher to it, and the publisher's retransmission server, wired on loopback."""
    collector = Collector()
    receiver = MoldReceiver(collector, **(receiver_kwargs or {}))
    publisher = MoldPublisher(receiver.address, SESSION, **(publisher_kwargs or {}))
    server = RetransmissionServer(publisher)
    receiver.retransmit = server.address
    return publisher, server, receiver, collector


def test_publisher_to_receiver_delivers_every_message_in_order(day: tuple[bytes, np.ndarray]) -> None:
    data, reference = day
    publisher, server, receiver, collector = feed()
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    assert publisher.publish_flat(data) == MESSAGES
    run_until([runner], lambda: receiver.stats.messages == MESSAGES)
    runner.close()
    assert_same_events(collector.events, reference)
    assert receiver.expected == publisher.next_seq == MESSAGES + 1
    assert (receiver.stats.gaps, receiver.stats.requests, receiver.stats.duplicate_packets) == (0, 0, 0)
    assert publisher.stats.messages == MESSAGES
    assert receiver.stats.packets == publisher.stats.packets
    assert receiver.tracker.gaps == 0
    assert len(receiver.stocks.instruments) == 20


def test_packets_never_exceed_the_size_bound(day: tuple[bytes, np.ndarray], sink: socket.socket) -> None:
    data, _ = day
    chunk = first_records(data, 3000)
    publisher = MoldPublisher(sink.getsockname(), SESSION, max_packet_bytes=300)
    runner = AgentRunner(publisher, idle="spin")
    publisher.publish_flat(chunk)
    packets: list[bytes] = []
    run_until([runner], lambda: packets.extend(drain(sink, 0)) or publisher.next_seq == 3001)
    runner.close()
    packets += drain(sink)
    assert all(len(packet) <= 300 for packet in packets)
    assert decode_header(packets[-1])[1:] == (3001, COUNT_END_OF_SESSION)
    messages = [(seq, message) for packet in packets[:-1] for seq, message in iter_messages(packet)]
    assert [seq for seq, _ in messages] == list(range(1, 3001))
    assert itch.frame(message for _, message in messages) == chunk
    assert publisher.stats.packets == len(packets) - 1
    assert publisher.stats.bytes == sum(len(packet) for packet in packets)


def test_single_messages_and_flat_buffers_share_one_sequence(sink: socket.socket) -> None:
    publisher = MoldPublisher(sink.getsockname(), SESSION)
    first = itch.encode("S", timestamp=1, event_code="O")
    second = itch.encode("D", timestamp=2, stock_locate=1, order_reference_number=9)
    publisher.publish_many([first, second])
    publisher.publish_flat(itch.frame([first]))
    runner = AgentRunner(publisher, idle="spin")
    run_until([runner], lambda: publisher.next_seq == 4)
    runner.close()
    packets = drain(sink)
    assert [m for p in packets[:-1] for m in iter_messages(p)] == [(1, first), (2, second), (3, first)]
    with pytest.raises(ValueError, match="truncated"):
        publisher.publish_flat(itch.frame([first])[:-1])
    with pytest.raises(ValueError, match="bytes"):
        publisher.publish(b"")


def test_forced_gap_is_recovered_through_retransmission(day: tuple[bytes, np.ndarray]) -> None:
    data, reference = day
    offsets = record_offsets(data)
    half = MESSAGES // 2
    publisher, server, receiver, collector = feed()
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    publisher.publish_flat(data[: offsets[half]])
    run_until([runner], lambda: receiver.stats.messages == half)
    publisher.drop_next_packets(1)
    publisher.publish_flat(data[offsets[half] :])
    run_until([runner], lambda: receiver.stats.messages == MESSAGES)
    runner.close()
    assert_same_events(collector.events, reference)
    stats = receiver.stats
    assert publisher.stats.dropped_packets == 1
    assert stats.gaps == 1
    assert stats.missing_messages == stats.recovered_messages > 0
    assert stats.lost_messages == 0
    assert stats.buffered_packets > 0
    assert server.stats.served_requests >= 1
    assert server.stats.messages >= stats.recovered_messages
    assert receiver.tracker.gaps == 0


def test_heartbeat_reveals_a_dropped_last_packet(day: tuple[bytes, np.ndarray]) -> None:
    data, reference = day
    clock = FakeClock()
    publisher, server, receiver, collector = feed({"clock_ns": clock, "heartbeat_interval_ns": 1_000})
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    publisher.drop_next_packets(1)
    publisher.publish_flat(first_records(data, 10))
    run_until([runner], lambda: publisher.next_seq == 11)
    assert receiver.stats.messages == 0
    clock.now_ns += 1_000
    run_until([runner], lambda: receiver.stats.messages == 10)
    runner.close()
    assert_same_events(collector.events, reference[reference["seq"] < 10])
    assert receiver.stats.heartbeats >= 1
    assert (receiver.stats.gaps, receiver.stats.recovered_messages) == (1, 10)


def test_heartbeats_while_idle_and_end_of_session_reach_the_receiver(day: tuple[bytes, np.ndarray]) -> None:
    data, _ = day
    clock = FakeClock()
    publisher, _, receiver, _ = feed({"clock_ns": clock, "heartbeat_interval_ns": 1_000})
    publishing = AgentRunner(publisher, idle="spin")
    receiving = AgentRunner(receiver, idle="spin")
    publisher.publish_flat(first_records(data, 50))
    run_until([publishing, receiving], lambda: receiver.stats.messages == 50)
    for _ in range(10):  # not idle long enough yet
        publishing.run_once()
    assert publisher.stats.heartbeats == 0
    for beat in range(1, 4):
        clock.now_ns += 1_000
        publishing.run_once()
        publishing.run_once()
        run_until([receiving], lambda beat=beat: receiver.stats.heartbeats == beat)
    assert publisher.stats.heartbeats == 3
    assert not receiver.finished
    publishing.close()
    run_until([receiving], lambda: receiver.finished)
    receiving.close()
    assert publisher.stats.end_of_session
    assert receiver.expected == 51
    assert receiver.stats.gaps == 0


def test_request_outside_history_is_counted_and_not_answered(
    day: tuple[bytes, np.ndarray], sink: socket.socket
) -> None:
    data, _ = day
    publisher = MoldPublisher(sink.getsockname(), SESSION, history_messages=100)
    server = RetransmissionServer(publisher, max_messages_per_answer=8)
    runner = AgentRunner([publisher, server], idle="spin")
    publisher.publish_flat(first_records(data, 500))
    run_until([runner], lambda: publisher.next_seq == 501)
    assert publisher.oldest_seq == 401
    drain(sink)

    def ask(request: bytes) -> list[tuple[int, bytes]]:
        sink.sendto(request, server.address)
        served = server.stats.requests + 1
        run_until([runner], lambda: server.stats.requests == served)
        return [m for packet in drain(sink) for m in iter_messages(packet)]

    records = record_offsets(data)

    def message(seq: int) -> bytes:
        return data[records[seq - 1] + 2 : records[seq]]

    assert ask(encode_request(SESSION, 1, 10)) == []  # too old
    assert ask(encode_request(SESSION, 600, 5)) == []  # not sent yet
    assert server.stats.out_of_history == 2
    assert ask(encode_request(SESSION, 450, 3)) == [(s, message(s)) for s in (450, 451, 452)]
    assert ask(encode_request(SESSION, 395, 10)) == [(s, message(s)) for s in range(401, 405)]  # kept part
    assert server.stats.out_of_history == 3
    assert len(ask(encode_request(SESSION, 410, 50))) == 8  # capped per answer
    assert ask(encode_request(b"OTHER", 450, 3)) == []
    assert ask(b"short") == []
    assert server.stats.bad_requests == 2
    assert server.stats.served_requests == 3
    assert server.stats.requests == 7
    runner.close()


def test_receiver_gives_up_on_messages_out_of_history(day: tuple[bytes, np.ndarray]) -> None:
    data, reference = day
    offsets = record_offsets(data)
    publisher, server, receiver, collector = feed({"history_messages": 64}, {"retry_interval_ns": 0, "max_retries": 2})
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    publisher.publish_flat(data[: offsets[100]])
    run_until([runner], lambda: receiver.expected == 101)
    publisher.drop_next_packets(1)  # then more than the history is sent before the receiver asks
    publisher.publish_flat(data[offsets[100] : offsets[2000]])
    run_until([runner], lambda: receiver.expected == 2001)
    runner.close()
    lost = receiver.stats.lost_messages
    assert lost > 0
    assert receiver.stats.messages == 2000 - lost
    assert server.stats.out_of_history >= 1
    assert server.stats.served_requests == 0
    assert receiver.stats.requests == 3  # the request and its two resends
    assert (receiver.tracker.gaps, receiver.tracker.missing_messages) == (1, lost)
    mold_seq = reference["seq"] + 1
    kept = (mold_seq < 101) | ((mold_seq >= 101 + lost) & (mold_seq <= 2000))
    assert_same_events(collector.events, reference[kept])


def test_reordered_and_duplicate_packets_are_delivered_once_in_order(sink: socket.socket) -> None:
    collector = Collector()
    receiver = MoldReceiver(collector, retransmit=sink.getsockname(), retry_interval_ns=10**12)
    runner = AgentRunner(receiver, idle="spin")
    messages = [
        itch.encode("A", timestamp=i, stock_locate=1, order_reference_number=i, buy_sell_indicator="B", shares=1)
        for i in range(1, 7)
    ]
    packets = [encode_packet(SESSION, 1, messages[:2]), encode_packet(SESSION, 3, messages[2:4])]
    packets.append(encode_packet(SESSION, 5, messages[4:]))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for packet in (packets[0], packets[2]):
        sender.sendto(packet, receiver.address)
    run_until([runner], lambda: receiver.stats.requests == 1)
    assert receiver.gap_open
    for packet in (packets[0], packets[1], packets[2]):
        sender.sendto(packet, receiver.address)
    sender.sendto(encode_heartbeat(SESSION, 7), receiver.address)
    sender.close()
    run_until([runner], lambda: receiver.stats.packets == 6)
    assert not receiver.gap_open
    runner.close()
    assert collector.events["order_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert collector.events["seq"].tolist() == [1, 2, 3, 4, 5, 6]
    assert receiver.stats.duplicate_packets == 2
    assert (receiver.stats.gaps, receiver.stats.missing_messages, receiver.stats.recovered_messages) == (1, 2, 2)
    assert receiver.stats.requests == 1
    assert [decode_header(r)[1:] for r in drain(sink)] == [(3, 2)]  # the re-request: seq 3, 2 messages


def test_a_gap_closing_at_once_is_one_batch_and_the_tap_sees_every_datagram() -> None:
    """More rows in one cycle than ``out`` holds (a long gap closing) stay one handler call: the node keeps
    the view of a cycle's batch until it steps, so a second call in the cycle would lose the first."""
    collector = Collector()
    stream = MoldStream(collector, out_rows=4)
    tapped: list[tuple[bytes, int]] = []
    stream.tap = lambda packet, ts_ns: tapped.append((bytes(packet), ts_ns))
    messages = [
        itch.encode("A", timestamp=i, stock_locate=1, order_reference_number=i, buy_sell_indicator="S", shares=i)
        for i in range(1, 13)
    ]
    packets = [encode_packet(SESSION, seq, messages[seq - 1 : seq + 1]) for seq in range(1, 13, 2)]
    for ts_ns, packet in enumerate(packets[1:] + packets[:1], start=100):  # the first packet comes last
        stream.on_packet(memoryview(packet), ts_ns)
    stream.flush()
    assert len(collector.batches) == 1
    assert collector.events["order_id"].tolist() == list(range(1, 13))
    assert stream.out.shape[0] >= 12
    assert tapped == [(packet, ts) for ts, packet in enumerate(packets[1:] + packets[:1], start=100)]


def test_threaded_publisher_and_receiver_deliver_everything(day: tuple[bytes, np.ndarray]) -> None:
    data, reference = day
    publisher, server, receiver, collector = feed()
    publishing = AgentRunner([publisher, server], idle="backoff")
    receiving = AgentRunner(receiver, idle="backoff")
    publisher.publish_flat(data)  # publish from the runner's thread once it runs; before, from any
    receiving.start()
    publishing.start()
    deadline = time.monotonic() + WAIT_S
    while receiver.stats.messages < MESSAGES and time.monotonic() < deadline:
        time.sleep(0.01)
    publishing.close()
    receiving.close()
    assert_same_events(collector.events, reference)
    assert receiver.stats.lost_messages == 0


def test_multicast_on_loopback_with_a_recovered_gap(day: tuple[bytes, np.ndarray], netns: str) -> None:
    data, reference = day
    offsets = record_offsets(data)
    collector = Collector()
    skip_unless_multicast_loops_back(MULTICAST_GROUP)
    receiver = MoldReceiver(collector, multicast_group=MULTICAST_GROUP)
    publisher = MoldPublisher((MULTICAST_GROUP, receiver.address[1]), SESSION, multicast_ttl=0)
    server = RetransmissionServer(publisher)
    receiver.retransmit = server.address
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    publisher.publish_flat(data[: offsets[100]])
    deadline = time.monotonic() + QUIET_S * 20
    for _ in range(MAX_CYCLES):
        if receiver.stats.messages == 100 or time.monotonic() > deadline:
            break
        runner.run_once()
    assert receiver.stats.messages == 100, "the publisher's multicast datagrams did not arrive"
    publisher.drop_next_packets(1)
    publisher.publish_flat(data[offsets[100] : offsets[3000]])
    run_until([runner], lambda: receiver.stats.messages == 3000)
    runner.close()
    assert_same_events(collector.events, reference[reference["seq"] < 3000])
    assert (receiver.stats.gaps, receiver.stats.lost_messages) == (1, 0)
    assert receiver.stats.recovered_messages > 0
