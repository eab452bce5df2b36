"""MoldUDP64 packets on Aeron IPC (a real embedded driver) into the same delivery and gap logic as UDP."""

from __future__ import annotations

import socket

import numpy as np

from engine.runtime.aeron import IPC_CHANNEL, EmbeddedDriver
from engine.runtime.agent import AgentRunner
from engine.simexchange.mdpub import MoldPublisher, RetransmissionServer
from feeds.moldaeron import MoldAeronReceiver
from tests.unit.engine.gateway import test_orderentry
from tests.unit.engine.simexchange import test_mdpub
from tests.unit.engine.simexchange.test_mdpub import (
    MESSAGES,
    SESSION,
    Collector,
    assert_same_events,
    record_offsets,
    run_until,
)

day, sink, driver = test_mdpub.day, test_mdpub.sink, test_orderentry.driver  # fixtures shared with those tests

STREAM_ID = 2001


def wired(driver: EmbeddedDriver, sink: socket.socket) -> tuple[MoldPublisher, RetransmissionServer]:
    """A publisher sending UDP to ``sink`` and the same packets on Aeron IPC, with its retransmission server."""
    aeron = driver.connect().add_exclusive_publication(IPC_CHANNEL, STREAM_ID)
    publisher = MoldPublisher(sink.getsockname(), SESSION, aeron=aeron)
    return publisher, RetransmissionServer(publisher)


def receiver_of(driver: EmbeddedDriver, server: RetransmissionServer) -> tuple[MoldAeronReceiver, Collector]:
    collector = Collector()
    receiver = MoldAeronReceiver(collector, driver.connect(), IPC_CHANNEL, STREAM_ID, retransmit=server.address)
    return receiver, collector


def test_every_message_arrives_in_order_over_ipc(
    day: tuple[bytes, np.ndarray], driver: EmbeddedDriver, sink: socket.socket
) -> None:
    data, reference = day
    publisher, server = wired(driver, sink)
    receiver, collector = receiver_of(driver, server)
    runner = AgentRunner([publisher, server, receiver], idle="spin")
    publisher.publish_flat(data)
    run_until([runner], lambda: receiver.stats.messages == MESSAGES)
    sent, dropped = publisher.stats.aeron_packets, publisher.stats.aeron_dropped
    runner.close()  # end-of-session goes out here, racing the receiver's own close: not counted below
    assert_same_events(collector.events, reference)
    assert (receiver.stats.gaps, receiver.stats.requests, server.stats.requests) == (0, 0, 0)
    assert receiver.stats.packets == sent  # every packet published while trading arrived
    assert dropped == 0 and len(receiver.stocks.instruments) == 20


def test_late_subscriber_and_a_lost_packet_are_recovered_by_retransmission(
    day: tuple[bytes, np.ndarray], driver: EmbeddedDriver, sink: socket.socket
) -> None:
    data, reference = day
    offsets = record_offsets(data)
    publisher, server = wired(driver, sink)
    publishing = AgentRunner([publisher, server], idle="spin")
    publisher.publish_flat(data[: offsets[100]])  # nobody subscribes yet: these never go on Aeron
    run_until([publishing], lambda: publisher.next_seq == 101)
    receiver, collector = receiver_of(driver, server)
    receiving = AgentRunner(receiver, idle="spin")
    publisher.publish_flat(data[offsets[100] : offsets[1000]])
    run_until([publishing, receiving], lambda: receiver.stats.messages == 1000)
    publisher.drop_next_packets(1)
    publisher.publish_flat(data[offsets[1000] : offsets[3000]])
    run_until([publishing, receiving], lambda: receiver.stats.messages == 3000)
    publishing.close()
    run_until([receiving], lambda: receiver.finished)
    receiving.close()
    assert_same_events(collector.events, reference[reference["seq"] < 3000])
    assert publisher.stats.aeron_dropped >= 1 and publisher.stats.dropped_packets == 1
    stats = receiver.stats
    assert stats.gaps == 2 and stats.lost_messages == 0 and stats.recovered_messages == stats.missing_messages
    assert server.stats.served_requests >= 2
