"""The node's compiled duty cycle (``engine.live.loop_nb``) driven from outside, as a venue drives it.

The test is the venue: it sends MoldUDP64 datagrams to the node's real loopback socket, answers its
re-requests from the retransmission address, and runs the simulated exchange's OUCH server (over a
real embedded Aeron driver) whose book holds nothing but the node's orders. The node runs on its own
thread exactly as in a session (``TradingNode`` on an ``AgentRunner``, no capture: the loop path).
No timing assertion; every wait is bounded in cycles and time.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator

import pytest
from numba import typeof

from engine.core.units import LOOPBACK
from engine.gateway.client import LOGGED_IN
from engine.gateway.session import Port
from engine.live import layout as L
from engine.live.builder import NodeBlocks, NodeInstrument, NodeSpec, blank_loop_state
from engine.live.node import TradingNode
from engine.runtime import control as CB
from engine.runtime import metrics as M
from engine.runtime.aeron import IPC_CHANNEL, DriverConfig, EmbeddedDriver
from engine.runtime.agent import AgentRunner
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.orderentry import OrderEntryServer, ServerConfig
from engine.trading import layout as TL
from engine.trading.risk import RiskConfig
from feeds import itch
from feeds.moldudp64 import decode_request, encode_packet
from feeds.udp import free_udp_port
from tests.conftest import step_until

LOCATE, SYMBOL, TICK, LOT = 1, "AAPL", 100, 1
BID, ASK = 1_000_000, 1_002_000  # wide: our own quotes never cross each other at the exchange
SESSION = b"LOOPTEST01"
WAIT_S = 30.0
START_S = 300.0
MAX_CYCLES = 5_000_000
BID_REF, ASK_REF = 1, 2


class Venue:
    """Market data, retransmission and order entry around one trading node."""

    def __init__(self, root: str, order_rows: int = 32) -> None:
        self.driver = EmbeddedDriver(DriverConfig(dir=os.path.join(root, "aeron")))
        self.port = Port("MM", "pw", IPC_CHANNEL, 101, IPC_CHANNEL, 201)
        self.engine = MatchingEngine([(LOCATE, SYMBOL, TICK, LOT)])
        self.server = OrderEntryServer(self.driver.connect(), self.engine, ServerConfig((self.port,)))
        self.exchange = AgentRunner(self.server, idle="spin")
        self.md = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.retransmitter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.retransmitter.bind((LOOPBACK, 0))
        self.retransmitter.setblocking(False)
        self.answering = True
        self.requests = 0
        self.seq = 1
        self.sent: dict[int, bytes] = {}  # first sequence number -> packet
        self.md_address = (LOOPBACK, free_udp_port())
        self.blocks = NodeBlocks.create("loop", [SYMBOL], f"{os.getpid()}-loop", journal=False)
        spec = NodeSpec(
            name="loop",
            strategy="touch",
            params={"order_qty": 1, "max_position": 50, "interval_ns": 0},
            instruments=(NodeInstrument(SYMBOL, LOCATE, TICK, LOT),),
            md_bind=self.md_address,
            multicast_group="",
            retransmit=self.retransmitter.getsockname(),
            aeron_dir=self.driver.dir,
            port=self.port,
            risk=RiskConfig(max_orders_per_s=0, max_open_orders=0),
            metrics_block=self.blocks.metrics.name,
            control_block=self.blocks.control.name,
            stop_wait_s=10.0,
            order_rows=order_rows,
        )
        self.node = TradingNode(spec)
        self.runner = AgentRunner(self.node, idle="spin", name="node-loop")
        self.runner.start()
        # generous: from a cold Numba cache the node compiles its loop first
        self.until(self.started, "the node started and logged in", wait_s=START_S)

    # --- market data -----------------------------------------------------------------------------
    def send(self, messages: list[bytes], *, lose: bool = False) -> None:
        """One datagram of ``messages`` with the next sequence numbers (``lose``: numbered, never sent)."""
        packet = encode_packet(SESSION, self.seq, messages)
        self.sent[self.seq] = packet
        self.seq += len(messages)
        if not lose:
            self.md.sendto(packet, self.md_address)

    def touch(self, bid: int, ask: int) -> None:
        """Move the scripted participant's bid and ask (delete and add again) in one datagram."""
        self.send([delete(BID_REF), delete(ASK_REF), add(BID_REF, "B", bid), add(ASK_REF, "S", ask)])

    def _answer(self) -> int:
        """Answer every re-request waiting with the packets it covers (sent to the requester)."""
        answered = 0
        while True:
            try:
                data, requester = self.retransmitter.recvfrom(64)
            except BlockingIOError:
                return answered
            self.requests += 1
            if not self.answering:
                continue
            _, first, count = decode_request(data)
            for seq, packet in sorted(self.sent.items()):
                if seq < first + count and seq + int.from_bytes(packet[18:20], "big") > first:
                    self.retransmitter.sendto(packet, requester)
                    answered += 1

    # --- driving -----------------------------------------------------------------------------------
    def cycle(self) -> int:
        return self.exchange.run_once() + self._answer()

    def started(self) -> bool:
        """The node runs its loop and is logged in."""
        node = self.node
        return getattr(node, "lp", None) is not None and node.client.state == LOGGED_IN

    def until(self, done: Callable[[], bool], what: str, wait_s: float = WAIT_S) -> None:
        """Run the exchange side until ``done()`` (bounded); fail naming ``what``."""
        if self.runner.error is not None:
            raise AssertionError(f"{what}: the node failed: {self.runner.error!r}")
        try:
            step_until(self.cycle, done, wait_s=wait_s, max_cycles=MAX_CYCLES, idle_s=0.0001)
        except AssertionError as error:
            raise AssertionError(f"{what}: {error}; node error: {self.runner.error!r}") from None

    def settle(self, cycles: int = 2000) -> None:
        """Serve a while longer so that anything in flight arrives."""
        for _ in range(cycles):
            self.cycle()

    def quotes(self) -> tuple[list[int], list[int]]:
        """Prices of the node's resting bids and asks at the exchange (its book holds only ours)."""
        book = self.engine.book_snapshot(LOCATE)
        return [price for price, queue in book["bids"] for _ in queue], [p for p, q in book["asks"] for _ in q]

    def responses(self) -> int:
        """Responses the node has applied: the exchange's book can show an order before its ack is read."""
        return int(self.node.ns.oc[TL.OC_RESPONSES])

    def close(self) -> None:
        control = self.blocks.control.slots
        control[CB.CT_STOP] = 1
        self.until(self.node.finished.is_set, "the node stopped")
        self.runner.close()
        self.exchange.close()
        self.driver.close()
        self.blocks.metrics.close()
        self.blocks.control.close()
        self.blocks.journal.close()
        self.md.close()
        self.retransmitter.close()


def add(ref: int, side: str, price: int, locate: int = LOCATE) -> bytes:
    return itch.encode("A", stock_locate=locate, order_reference_number=ref, buy_sell_indicator=side, shares=100,
                       stock=SYMBOL, price=price)  # fmt: skip


def delete(ref: int) -> bytes:
    return itch.encode("D", stock_locate=LOCATE, order_reference_number=ref)


@pytest.fixture
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    root = tempfile.mkdtemp(prefix="hftmm-loop-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    v = Venue(root, **getattr(request, "param", {}))
    try:
        v.send([add(BID_REF, "B", BID), add(ASK_REF, "S", ASK)])
        v.until(lambda: v.quotes() == ([BID], [ASK]) and v.responses() == 2, "the node quoted the touch, acked")
        yield v
    finally:
        v.close()
        os.rmdir(root)


def test_in_order_datagrams_are_quoted_by_the_compiled_loop_alone(venue: Venue) -> None:
    for k in range(1, 21):
        venue.touch(BID + k * TICK, ASK + k * TICK)
        moved = ([BID + k * TICK], [ASK + k * TICK])
        venue.until(lambda k=k, moved=moved: venue.quotes() == moved and venue.responses() == 2 + 2 * k,
                    f"the quotes followed move {k}, replaces acked")  # fmt: skip
    report = venue.node.report()
    assert report["md_messages"] == 2 + 20 * 4 and report["md_gaps"] == 0 and venue.requests == 0
    assert report["md_slow_datagrams"] == 1  # the session's first, which names the session to follow
    assert report["symbols"][SYMBOL]["replaces"] == 40 and venue.node.lp.ls[L.LS_CYCLES] > 0


def test_the_loop_compiled_ahead_is_the_one_a_node_runs(venue: Venue) -> None:
    """``hftmm compile`` builds the loop from blank arrays: they must type exactly as a running node's."""
    assert typeof(blank_loop_state()) == typeof(venue.node.lp)


def test_a_gap_halts_and_cancels_then_the_retransmission_resumes_quoting(venue: Venue) -> None:
    venue.answering = False
    venue.touch(BID + TICK, ASK + TICK)
    venue.send([add(10, "B", BID - 5 * TICK)], lose=True)  # the gap
    venue.touch(BID + 2 * TICK, ASK + 2 * TICK)
    venue.until(lambda: venue.quotes() == ([], []) and venue.requests > 0, "halted: every order canceled")
    assert venue.node.ns.mi[L.NI_HALT] == 1 and venue.node.receiver.gap_open
    venue.answering = True
    venue.until(lambda: venue.quotes() == ([BID + 2 * TICK], [ASK + 2 * TICK]), "quoting again after recovery")
    stats = venue.node.receiver.stats
    assert stats.gaps == 1 and stats.recovered_messages == 1 and stats.lost_messages == 0
    assert venue.node.ns.mi[L.NI_HALT] == 0 and venue.node.report()["md_slow_datagrams"] >= 2


def test_the_kill_switch_cancels_everything_and_nothing_more_is_quoted(venue: Venue) -> None:
    venue.blocks.control.slots[CB.CT_KILL] = 1
    venue.until(lambda: venue.quotes() == ([], []), "killed: every order canceled")
    sent = int(venue.blocks.metrics.instrument_counters[0, M.I_ORDERS_SENT])
    for k in range(1, 6):
        venue.touch(BID + k * TICK, ASK + k * TICK)
    venue.until(lambda: venue.node.receiver.stats.messages == 2 + 5 * 4, "the moves arrived")
    venue.settle()
    assert venue.quotes() == ([], [])
    assert int(venue.blocks.metrics.instrument_counters[0, M.I_ORDERS_SENT]) == sent


def test_stop_cancels_every_order_then_the_node_finishes(venue: Venue) -> None:
    venue.blocks.control.slots[CB.CT_STOP] = 1
    venue.until(venue.node.finished.is_set, "the node finished")
    assert venue.quotes() == ([], []) and venue.blocks.control.slots[CB.CT_STATE] == CB.ST_DONE


def test_the_book_grows_mid_loop_and_the_step_resumes(venue: Venue) -> None:
    levels = venue.node.book.levels.shape[0]
    far = [add(1000 + k, "B", BID - (k + 1) * TICK) for k in range(levels + 10)]  # one new level each
    for start in range(0, len(far), 1000):
        venue.send(far[start : start + 1000])
    venue.touch(BID + TICK, ASK + TICK)
    venue.until(lambda: venue.quotes() == ([BID + TICK], [ASK + TICK]), "quoting after the book grew")
    assert venue.node.book.levels.shape[0] > levels
    assert venue.node.receiver.stats.messages == 2 + len(far) + 4


@pytest.mark.parametrize("venue", [{"order_rows": 4096}], indirect=True)  # room for orders nobody answers
def test_messages_aeron_refuses_wait_in_the_backlog_and_go_out_in_order(venue: Venue) -> None:
    """The exchange stops reading: each move cancels and re-enters both quotes (no acknowledgement comes), until
    the publication's window (half a 64 KiB term) is full and Aeron refuses; then the exchange reads again."""
    node = venue.node
    moves = 0
    for k in range(1, 1201):
        venue.touch(BID + (k % 7) * TICK, ASK + (k % 7) * TICK)
        moves = k
        arrived = lambda k=k: node.receiver.stats.messages == 2 + 4 * k  # noqa: E731
        step_until(lambda: 0, arrived, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        if node.lp.ls[L.LS_BACK_PRESSURE] > 0:
            break
    assert node.lp.ls[L.LS_BACK_PRESSURE] > 0, f"no back pressure after {moves} moves"
    last = moves % 7
    venue.until(lambda: venue.quotes() == ([BID + last * TICK], [ASK + last * TICK]), "the backlog went out")
    venue.settle()
    assert not node._backlog and venue.quotes() == ([BID + last * TICK], [ASK + last * TICK])
    assert node.report()["unknown_responses"] == 0
