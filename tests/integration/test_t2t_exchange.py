"""The t2t harness's compiled exchange against a scripted client: real Aeron driver, real UDP on 127.0.0.1.

The test plays the node: it logs in and sends OUCH over Aeron's C client, reads the answers, and
reads the market data as datagrams. Each step pumps the exchange's loop for a short slice on this
thread, so what it did is on the wire when the test looks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bench.t2t_exchange import HarnessExchange
from engine.gateway import session as SP
from engine.gateway.aeron_c import (
    INBOX_HANDLER,
    Client,
    inbox_clear,
    inbox_count,
    inbox_fragment,
    make_inbox,
    offer_retry_nb,
    poll_nb,
)
from engine.gateway.session import Port, encode_login_request
from feeds import itch, ouch
from feeds.moldudp64 import iter_messages
from feeds.udp import free_udp_port

LOCATE, SYMBOL, TICK, LOT, PRICE, LOTS = 1, "BENCH", 100, 1, 1_000_000, 100
PORT = Port(username="BENCH", password="bench", inbound_stream_id=3001, outbound_stream_id=3002)
SLICE_S = 0.02


class Node:
    """The test's side: an Aeron client on the harness's driver and a UDP socket on the market-data port."""

    def __init__(self, exchange: HarnessExchange, md: socket.socket) -> None:
        self.exchange = exchange
        self.md = md
        self.client = Client(exchange.aeron_dir)
        self.publication = self.client.add_exclusive_publication(PORT.inbound_channel, PORT.inbound_stream_id)
        self.subscription = self.client.add_subscription(PORT.outbound_channel, PORT.outbound_stream_id)
        self.inbox = make_inbox(64, 64 * 1408)
        self.urn = 100

    def send(self, packet: bytes) -> list[bytes]:
        """Offer one session packet, pump the exchange, and return the packets it answered with."""
        buf = np.frombuffer(packet, np.uint8).copy()
        deadline = time.monotonic() + 5.0
        while offer_retry_nb(self.publication, buf, 0, len(buf), 64)[0] <= 0:
            assert time.monotonic() < deadline, "the exchange's subscription never connected"
            self.exchange.pump(SLICE_S, ticking=False)
        return self.answers()

    def answers(self) -> list[bytes]:
        out: list[bytes] = []
        for _ in range(10):
            self.exchange.pump(SLICE_S, ticking=False)
            inbox_clear(self.inbox)
            poll_nb(self.subscription, INBOX_HANDLER.address, self.inbox.ctypes.data, 64)
            for f in range(inbox_count(self.inbox)):
                offset, length, _ = inbox_fragment(self.inbox, f)
                packet = self.inbox[offset : offset + length].tobytes()
                if packet != bytes((SP.PKT_SERVER_HEARTBEAT,)):
                    out.append(packet)
            if out:
                return out
        return out

    def market_data(self) -> list[tuple[int, dict]]:
        """Every ITCH message waiting on the socket: (sequence number, fields)."""
        out = []
        while True:
            try:
                data = self.md.recv(2048)
            except BlockingIOError:
                return out
            out += [(seq, itch.decode_message(message)) for seq, message in iter_messages(data)]

    def order(self, **fields: int | str) -> bytes:
        self.urn += 1
        base = dict(user_ref_num=self.urn, side="B", quantity=100, symbol=SYMBOL, price=PRICE - 5 * TICK,
                    time_in_force="0", display="Y", capacity="P", intermarket_sweep_eligibility="N",
                    cross_type="N", cl_ord_id=f"C{self.urn}")  # fmt: skip
        return bytes((SP.PKT_UNSEQUENCED,)) + ouch.encode(ouch.INBOUND, "O", **(base | fields))

    def close(self) -> None:
        self.client.close()


def _sequenced(packets: list[bytes]) -> list[dict]:
    assert all(p[0] == SP.PKT_SEQUENCED for p in packets), packets
    return [ouch.decode(ouch.OUTBOUND, p[1:]) | {"type": chr(p[1])} for p in packets]


@pytest.fixture
def node() -> Iterator[Node]:
    md = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    md.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # as the node's receiver
    md.bind(("127.0.0.1", free_udp_port()))
    md.setblocking(False)
    exchange = HarnessExchange(PORT, md.getsockname()[1], "T2TTEST001", (LOCATE, SYMBOL, TICK, LOT), PRICE, LOTS)
    n = Node(exchange, md)
    try:
        yield n
    finally:
        n.close()
        exchange.close()
        md.close()


def _login(node: Node, password: str = "bench") -> list[bytes]:
    return node.send(encode_login_request("BENCH", password))


def test_open_publishes_the_directory_and_the_participants_quotes(node: Node) -> None:
    node.exchange.open()
    node.exchange.pump(SLICE_S, ticking=False)
    messages = node.market_data()
    assert [seq for seq, _ in messages] == list(range(1, len(messages) + 1))
    kinds = [m["message_type"] for _, m in messages]
    assert kinds[:2] == ["S", "R"] and kinds[-2:] == ["A", "A"]
    assert messages[1][1]["stock"] == SYMBOL
    adds = [m for _, m in messages[-2:]]
    assert {(m["buy_sell_indicator"], m["price"], m["shares"]) for m in adds} == {
        ("B", PRICE - TICK, LOTS * LOT), ("S", PRICE + TICK, LOTS * LOT)}  # fmt: skip


def test_login_checks_the_credentials(node: Node) -> None:
    assert _login(node, "wrong") == [bytes((SP.PKT_LOGIN_REJECTED, ord(SP.LOGIN_REJECT_NOT_AUTHORIZED)))]
    assert not node.exchange.logged_in
    assert _login(node) == [SP.encode_login_accepted("T2TTEST001", 1)]
    assert node.exchange.logged_in
    assert node.exchange.counters()["logins"] == 1


def test_orders_are_stamped_matched_answered_and_published(node: Node) -> None:
    node.exchange.open()
    _login(node)
    node.exchange.pump(SLICE_S, ticking=False)
    node.market_data()
    [accepted] = _sequenced(node.send(node.order()))
    assert accepted["type"] == "A" and accepted["user_ref_num"] == node.urn and accepted["price"] == PRICE - 5 * TICK
    assert accepted["quantity"] == 100 and accepted["cl_ord_id"] == f"C{node.urn}" and accepted["side"] == "B"
    ref = accepted["order_reference_number"]
    [(_, add)] = node.market_data()
    assert add["message_type"] == "A" and add["order_reference_number"] == ref and add["price"] == PRICE - 5 * TICK
    entered = node.urn
    replace = ouch.encode(ouch.INBOUND, "U", orig_user_ref_num=entered, user_ref_num=entered + 1, quantity=200,
                          price=PRICE - 6 * TICK, time_in_force="0", display="Y", intermarket_sweep_eligibility="N",
                          cl_ord_id="R1")  # fmt: skip
    node.urn += 1
    [replaced] = _sequenced(node.send(bytes((SP.PKT_UNSEQUENCED,)) + replace))
    assert replaced["type"] == "U" and replaced["orig_user_ref_num"] == entered and replaced["quantity"] == 200
    assert replaced["side"] == "B" and replaced["cl_ord_id"] == "R1" and replaced["price"] == PRICE - 6 * TICK
    [(_, moved)] = node.market_data()
    assert moved["message_type"] == "U" and moved["original_order_reference_number"] == ref
    cancel = bytes((SP.PKT_UNSEQUENCED,)) + ouch.encode(ouch.INBOUND, "X", user_ref_num=node.urn, quantity=0)
    [canceled] = _sequenced(node.send(cancel))
    assert canceled["type"] == "C" and canceled["quantity"] == 200 and canceled["reason"] == ouch.CANCEL_USER_REQUESTED
    [(_, deleted)] = node.market_data()
    assert deleted["message_type"] == "D"
    assert node.exchange.arrivals == 3  # every order message stamped as it was read


def test_bad_orders_get_the_right_rejects_and_never_reach_the_book(node: Node) -> None:
    node.exchange.open()
    _login(node)
    node.exchange.pump(SLICE_S, ticking=False)
    node.market_data()
    cases = [
        (node.order(symbol="OTHER"), ouch.REJECT_INVALID_SYMBOL),
        (node.order(side="X"), ouch.REJECT_INVALID_SIDE),
        (node.order(price=PRICE + 7), ouch.REJECT_INVALID_PRICE),  # off the tick: the matcher's reject
        (bytes((SP.PKT_UNSEQUENCED,)) + ouch.encode(ouch.INBOUND, "X", user_ref_num=1, quantity=0),
         ouch.REJECT_CANCEL_NOT_ALLOWED),
        (bytes((SP.PKT_UNSEQUENCED,)) + b"O\x00\x00", ouch.REJECT_OTHER),  # truncated
    ]  # fmt: skip
    for packet, code in cases:
        [rejected] = _sequenced(node.send(packet))
        assert rejected["type"] == "J" and rejected["reason"] == code, (packet, rejected)
    node.urn -= 10  # a UserRefNum that does not increase
    [rejected] = _sequenced(node.send(node.order()))
    assert rejected["reason"] == ouch.REJECT_OTHER
    assert node.market_data() == []
    counters = node.exchange.counters()
    assert counters["rejects"] == len(cases) + 1 and counters["decode_errors"] == 1


def test_ticks_move_the_participant_on_schedule_and_background_never_touches_the_quotes(node: Node) -> None:
    node.exchange.open()
    node.exchange.pump(SLICE_S, ticking=False)
    node.market_data()
    node.exchange.schedule(6, 2000.0, 50_000.0, time.monotonic_ns())
    deadline = time.monotonic() + 10.0
    while node.exchange.ticks_sent < 6 and time.monotonic() < deadline:
        node.exchange.pump(SLICE_S, ticking=True)
    messages = dict(node.market_data())
    s = node.exchange.state
    assert node.exchange.ticks_sent == 6
    assert (np.diff(s.intended) == 500_000).all() and (s.sent >= s.intended).all()
    mids = []
    for t in range(6):
        tick = [messages[seq] for seq in range(s.first_seq[t], s.end_seq[t])]
        assert [m["message_type"] for m in tick] == ["U", "U"]
        mids.append(sum(m["price"] for m in tick) // 2)
    assert mids == [PRICE + TICK, PRICE, PRICE + TICK, PRICE, PRICE + TICK, PRICE]
    background = [m for seq, m in messages.items() if not any(s.first_seq[t] <= seq < s.end_seq[t] for t in range(6))]
    assert len(background) >= 100 and node.exchange.counters()["background_messages"] == len(background)
    adds = [m for m in background if m["message_type"] == "A"]
    assert adds and all(m["message_type"] in "AD" for m in background)
    assert all(m["price"] <= PRICE - 4 * TICK for m in adds if m["buy_sell_indicator"] == "B")
    assert all(m["price"] >= PRICE + 5 * TICK for m in adds if m["buy_sell_indicator"] == "S")
