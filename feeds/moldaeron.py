"""MoldUDP64 over Aeron: the exchange's market-data packets from an Aeron stream (IPC for the local path).

``engine.simexchange.mdpub.MoldPublisher`` can offer every MoldUDP64 packet it sends over UDP on an Aeron
publication as well, unchanged: one Aeron message per packet (Aeron reassembles packets longer than
its MTU, so the subscription polls with ``assemble=True``). :class:`MoldAeronReceiver` polls that
stream and hands each packet to the same in-order delivery and gap logic as the UDP receiver
(:class:`feeds.udp.MoldStream`). Aeron itself loses nothing once connected, but a subscriber that
joins late, or a packet the publisher could not offer (back pressure), leaves a hole: it is filled,
as over UDP, by re-requests to the MoldUDP64 retransmission server (UDP on ``interface``).

>>> receiver = MoldAeronReceiver(book.apply, driver.connect(), "aeron:ipc", 26400, retransmit=("127.0.0.1", 26401))
>>> AgentRunner(receiver).run_once()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

import numpy as np
import pyaeron

from feeds.udp import LOOPBACK, MoldStream, StreamOptions, request_socket


class MoldAeronReceiver(MoldStream):
    """Agent: MoldUDP64 packets from an Aeron subscription in, event rows out to ``handler`` in order."""

    role_name = "mold-aeron-receiver"

    def __init__(
        self,
        handler: Callable[[np.ndarray], None],
        aeron: pyaeron.Aeron,
        channel: str,
        stream_id: int,
        *,
        interface: str = LOOPBACK,
        **options: Unpack[StreamOptions],
    ) -> None:
        super().__init__(handler, **options)
        self.subscription = aeron.add_subscription(channel, stream_id)
        self.request_sock = request_socket(interface)
        # one handler object for every poll: pyaeron's fragment assembler drops a message whose
        # fragments come in polls with different handler objects (a fresh bound method per call)
        self._handler = self._on_fragment

    def on_start(self) -> None:
        """Nothing to prepare: the subscription is added at construction, so it sees the stream early."""

    def do_work(self) -> int:
        """Poll up to ``batch_packets`` packets and retransmission answers, deliver in order, drive gaps."""
        work = self.subscription.poll(self._handler, self.batch_packets)
        work += self._read(self.request_sock, self.batch_packets)
        work += self._drive_gap()
        self.flush()
        return work

    def _on_fragment(self, view: pyaeron.BufferView, header: pyaeron.Header) -> None:
        self.on_packet(memoryview(view), self.receive_clock_ns())

    def on_close(self) -> None:
        """Deliver the rows still held, close the subscription and the request socket."""
        self.flush()
        if not self.subscription.is_closed:
            self.subscription.close()
        self.request_sock.close()
