"""OUCH order entry over a real embedded Aeron driver (IPC, and UDP on 127.0.0.1), agents stepped by hand."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from engine.gateway import session as SP
from engine.gateway.client import DISCONNECTED, LOGGED_IN, REJECTED, ClientConfig, OrderEntryClient
from engine.gateway.session import Port
from engine.runtime.aeron import IPC_CHANNEL, DriverConfig, EmbeddedDriver, udp_channel
from engine.runtime.agent import AgentRunner
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.orderentry import OrderEntryServer, ServerConfig
from feeds import ouch
from tests.conftest import step_until

MAX_CYCLES = 20_000
WAIT_S = 10.0
LOCATE, SYMBOL, TICK, LOT = 1, "AAPL", 100, 10
PRICE = 1_000_000  # $100.0000


class Clock:
    """A settable monotonic clock for heartbeat and timeout tests."""

    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def __call__(self) -> int:
        return self.now_ns


class Exchange:
    """A driver, a server on two ports and a client per port, all stepped by one runner."""

    def __init__(self, driver: EmbeddedDriver, inbound: tuple[str, str], outbound: tuple[str, str]) -> None:
        self.clock = Clock()
        self.ports = (
            Port("ALICE", "secret1", inbound[0], 101, outbound[0], 201),
            Port("BOB", "secret2", inbound[1], 102, outbound[1], 202),
        )
        config = ServerConfig(self.ports, heartbeat_interval_ns=100_000_000, timeout_ns=1_000_000_000)
        self.engine = MatchingEngine([(LOCATE, SYMBOL, TICK, LOT)], post_only="reject")
        self.itch: list[bytes] = []
        self.server = OrderEntryServer(
            driver.connect(), self.engine, config, on_itch=lambda b: self.itch.append(b.tobytes()), clock_ns=self.clock
        )
        self.aeron_dir = driver.dir
        self.alice = self.client("ALICE", "secret1")
        self.bob = self.client("BOB", "secret2")
        self.runner = AgentRunner([self.server, self.alice, self.bob], idle="spin")
        self.runner.run_once()

    def client(self, username: str, password: str) -> OrderEntryClient:
        port = next(p for p in self.ports if p.username == username)
        login = Port(username, password, port.inbound_channel, port.inbound_stream_id, port.outbound_channel,
                     port.outbound_stream_id)  # fmt: skip
        config = ClientConfig(login, heartbeat_interval_ns=100_000_000, timeout_ns=1_000_000_000)
        return OrderEntryClient(self.aeron_dir, config, clock_ns=self.clock)

    def step_until(self, done: Callable[[], bool]) -> None:
        """Step the agents until ``done()`` (bounded by cycles and time)."""
        step_until(self.runner.run_once, done, wait_s=WAIT_S, max_cycles=MAX_CYCLES)

    def settle(self, cycles: int = 50) -> None:
        """A few more cycles so that nothing else is in flight."""
        for _ in range(cycles):
            self.runner.run_once()
            time.sleep(0.0002)

    def login(self, *clients: OrderEntryClient) -> None:
        for client in clients:
            client.connect()
        self.step_until(lambda: all(c.state == LOGGED_IN for c in clients))

    def responses(self, client: OrderEntryClient, count: int) -> np.ndarray:
        """Step until ``client`` holds ``count`` responses; drain them."""
        self.step_until(lambda: client.n_responses >= count)
        self.settle()
        return client.drain()

    def close(self) -> None:
        self.runner.close()


@pytest.fixture
def driver() -> Iterator[EmbeddedDriver]:
    root = tempfile.mkdtemp(prefix="hftmm-orderentry-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    aeron_dir = os.path.join(root, "aeron")
    with EmbeddedDriver(DriverConfig(dir=aeron_dir)) as embedded:
        yield embedded
    assert not os.path.exists(aeron_dir)
    os.rmdir(root)


@pytest.fixture
def ipc(driver: EmbeddedDriver) -> Iterator[Exchange]:
    exchange = Exchange(driver, (IPC_CHANNEL, IPC_CHANNEL), (IPC_CHANNEL, IPC_CHANNEL))
    yield exchange
    exchange.close()


def kinds(rows: np.ndarray) -> str:
    return "".join(chr(k) for k in rows["kind"])


def enter(client: OrderEntryClient, urn: int, side: str, qty: int, price: int = PRICE, **kw: object) -> None:
    assert client.enter(urn, side, qty, SYMBOL, price, **kw)


def test_login_accepted_and_bad_password_rejected(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    assert ipc.alice.session == "HFTMM00001" and ipc.alice.next_sequence == 1
    intruder = ipc.client("BOB", "wrong")
    intruder.connect()
    runner = AgentRunner([ipc.server, intruder], idle="spin")
    deadline = time.monotonic() + WAIT_S
    for _ in range(MAX_CYCLES):
        if intruder.state == REJECTED or time.monotonic() > deadline:
            break
        runner.run_once()
    assert intruder.state == REJECTED and intruder.login_reject_reason == SP.LOGIN_REJECT_NOT_AUTHORIZED
    assert not ipc.server.is_logged_in("BOB")


def test_enter_accepted_replace_replaced_cancel_canceled(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100, cl_ord_id="ORD1")
    (accepted,) = ipc.responses(ipc.alice, 1)
    assert chr(accepted["kind"]) == "A" and accepted["user_ref_num"] == 1 and accepted["qty"] == 100
    assert accepted["price"] == PRICE and chr(accepted["order_state"]) == ouch.ORDER_STATE_LIVE
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == [(PRICE, [(accepted["order_reference_number"], 100, 1, 1)])]
    assert ipc.alice.replace(1, 2, 50, PRICE - TICK)
    (replaced,) = ipc.responses(ipc.alice, 1)
    assert chr(replaced["kind"]) == "U" and replaced["orig_user_ref_num"] == 1 and replaced["user_ref_num"] == 2
    assert replaced["qty"] == 50 and replaced["price"] == PRICE - TICK
    assert ipc.alice.cancel(2)
    (canceled,) = ipc.responses(ipc.alice, 1)
    assert chr(canceled["kind"]) == "C" and canceled["user_ref_num"] == 2 and canceled["qty"] == 50
    assert chr(canceled["reason"]) == ouch.CANCEL_USER_REQUESTED
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == []


def test_orders_named_by_messages_of_the_same_batch_are_matched_in_arrival_order(ipc: Exchange) -> None:
    """Enter, replace the new order and cancel the replacement before the server reads any of them: one poll
    batch, whose later messages name orders only its earlier messages created."""
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert ipc.alice.replace(1, 2, 50, PRICE - TICK) and ipc.alice.cancel(2)
    got = ipc.responses(ipc.alice, 3)
    assert kinds(got) == "AUC" and list(got["user_ref_num"]) == [1, 2, 2]
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == []


def test_crossing_pair_executes_on_both_sides_with_one_match_number(ipc: Exchange) -> None:
    ipc.login(ipc.alice, ipc.bob)
    enter(ipc.alice, 1, ouch.SIDE_SELL, 100)
    ipc.responses(ipc.alice, 1)
    enter(ipc.bob, 1, ouch.SIDE_BUY, 30)
    bob = ipc.responses(ipc.bob, 2)
    alice = ipc.responses(ipc.alice, 1)
    assert kinds(bob) == "AE" and kinds(alice) == "E"
    assert bob[1]["match_number"] == alice[0]["match_number"] != 0
    assert bob[1]["qty"] == alice[0]["qty"] == 30 and bob[1]["price"] == alice[0]["price"] == PRICE
    assert chr(bob[1]["liquidity_flag"]) == "R" and chr(alice[0]["liquidity_flag"]) == "A"
    assert ipc.itch, "the batch's ITCH records reach on_itch"


@pytest.mark.parametrize(
    ("setup", "action", "reason"),
    [
        (None, lambda c: enter(c, 1, ouch.SIDE_BUY, 100, price=PRICE + 1), ouch.REJECT_INVALID_PRICE),
        (None, lambda c: enter(c, 1, ouch.SIDE_BUY, 15), ouch.REJECT_INVALID_QUANTITY),
        (None, lambda c: c.cancel(77), ouch.REJECT_CANCEL_NOT_ALLOWED),
        (None, lambda c: c.replace(77, 1, 100, PRICE), ouch.REJECT_REPLACE_NOT_ALLOWED),
        ("ask", lambda c: enter(c, 1, ouch.SIDE_BUY, 100, post_only=True), ouch.REJECT_CROSSED_MARKET),
    ],
    ids=["bad_tick", "bad_lot", "unknown_order_cancel", "unknown_order_replace", "post_only_cross"],
)
def test_reject_rules_arrive_as_rejected_with_reason(
    ipc: Exchange, setup: str | None, action: Callable[[OrderEntryClient], object], reason: int
) -> None:
    ipc.login(ipc.alice, ipc.bob)
    if setup == "ask":
        enter(ipc.bob, 1, ouch.SIDE_SELL, 100)
        ipc.responses(ipc.bob, 1)
    action(ipc.alice)
    (rejected,) = ipc.responses(ipc.alice, 1)
    assert chr(rejected["kind"]) == "J" and rejected["reason"] == reason
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == []


def test_malformed_inbound_message_is_rejected_and_server_keeps_working(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    enter_order = ouch.encode(ouch.INBOUND, "O", user_ref_num=5, side="B", quantity=10, symbol=SYMBOL, price=PRICE)
    assert ipc.alice.send_unsequenced(enter_order[:20])  # truncated
    assert ipc.alice.send_unsequenced(b"\xff\x00")  # unknown type
    rejected = ipc.responses(ipc.alice, 2)
    assert kinds(rejected) == "JJ" and rejected[0]["user_ref_num"] == 5
    assert (rejected["reason"] == ouch.REJECT_OTHER).all()
    enter(ipc.alice, 6, ouch.SIDE_BUY, 10)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    assert ipc.server.is_logged_in("ALICE")


def test_reconnect_with_requested_sequence_replays_exactly_the_missed_messages(ipc: Exchange) -> None:
    ipc.login(ipc.alice, ipc.bob)
    enter(ipc.alice, 1, ouch.SIDE_SELL, 100)
    enter(ipc.alice, 2, ouch.SIDE_SELL, 100, price=PRICE + TICK)
    assert kinds(ipc.responses(ipc.alice, 2)) == "AA"
    assert ipc.alice.last_sequence == 2
    ipc.alice.drop()
    enter(ipc.bob, 1, ouch.SIDE_BUY, 150, price=PRICE + TICK)  # fills alice twice while she is away
    ipc.responses(ipc.bob, 3)
    ipc.settle()
    assert ipc.server.next_sequence("ALICE") == 5
    ipc.login(ipc.alice)  # resumes at sequence 3
    missed = ipc.responses(ipc.alice, 2)
    assert kinds(missed) == "EE" and missed["qty"].tolist() == [100, 50]
    assert ipc.alice.last_sequence == 4


def test_cancel_on_disconnect_cancels_the_vanished_clients_orders(ipc: Exchange) -> None:
    ipc.login(ipc.alice, ipc.bob)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    enter(ipc.alice, 2, ouch.SIDE_BUY, 100, price=PRICE - TICK)
    enter(ipc.bob, 1, ouch.SIDE_SELL, 100, price=PRICE + TICK)
    ipc.responses(ipc.alice, 2)
    ipc.responses(ipc.bob, 1)
    assert len(ipc.engine.book_snapshot(LOCATE)["bids"]) == 2
    ipc.alice.drop()
    ipc.clock.now_ns += 600_000_000
    ipc.settle()  # bob heartbeats, alice is silent
    ipc.clock.now_ns += 600_000_000
    ipc.step_until(lambda: not ipc.server.is_logged_in("ALICE"))
    book = ipc.engine.book_snapshot(LOCATE)
    assert book["bids"] == [] and len(book["asks"]) == 1
    assert ipc.server.is_logged_in("BOB")
    ipc.login(ipc.alice)
    canceled = ipc.responses(ipc.alice, 2)
    assert kinds(canceled) == "CC" and {chr(r) for r in canceled["reason"]} == {ouch.CANCEL_SUPERVISORY}


def test_a_client_the_server_logs_out_logs_in_again_and_resumes_its_session(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    assert ipc.alice._offer(b"Q")  # a session packet type that does not exist: a protocol violation
    ipc.step_until(lambda: ipc.alice.state == DISCONNECTED)
    assert ipc.alice.logout_reason == "P" and not ipc.server.is_logged_in("ALICE")
    ipc.clock.now_ns += 100_000_000  # one heartbeat interval later
    ipc.step_until(lambda: ipc.alice.state == LOGGED_IN)
    canceled = ipc.responses(ipc.alice, 1)  # what happened meanwhile: cancel on disconnect, replayed
    assert kinds(canceled) == "C" and ipc.alice.last_sequence == 2
    enter(ipc.alice, 2, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A" and ipc.alice.last_sequence == 3


def test_logout_cancels_orders(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    ipc.responses(ipc.alice, 1)
    ipc.alice.logout()
    ipc.step_until(lambda: not ipc.server.is_logged_in("ALICE"))
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == []


def free_udp_ports(n: int) -> list[int]:
    """``n`` UDP ports the OS reports free on 127.0.0.1."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_enter_and_execute_over_udp(driver: EmbeddedDriver) -> None:
    a_in, b_in, a_out, b_out = (udp_channel(p) for p in free_udp_ports(4))
    exchange = Exchange(driver, (a_in, b_in), (a_out, b_out))
    try:
        exchange.login(exchange.alice, exchange.bob)
        enter(exchange.alice, 1, ouch.SIDE_SELL, 100)
        assert kinds(exchange.responses(exchange.alice, 1)) == "A"
        enter(exchange.bob, 1, ouch.SIDE_BUY, 100)
        bob = exchange.responses(exchange.bob, 2)
        alice = exchange.responses(exchange.alice, 1)
        assert kinds(bob) == "AE" and kinds(alice) == "E" and bob[1]["match_number"] == alice[0]["match_number"]
    finally:
        exchange.close()
