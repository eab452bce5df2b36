"""OUCH order entry over a real embedded Aeron driver (IPC, and UDP on 127.0.0.1), agents stepped by hand."""

from __future__ import annotations

import os
import random
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

    def __init__(
        self, driver: EmbeddedDriver, inbound: tuple[str, str], outbound: tuple[str, str], **settings: object
    ) -> None:
        self.clock = Clock()
        self.ports = (
            Port("ALICE", "secret1", inbound[0], 101, outbound[0], 201),
            Port("BOB", "secret2", inbound[1], 102, outbound[1], 202),
        )
        config = ServerConfig(self.ports, heartbeat_interval_ns=100_000_000, timeout_ns=1_000_000_000, **settings)
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


def test_reconnect_with_requested_sequence_replays_exactly_the_missed_messages(driver: EmbeddedDriver) -> None:
    ipc = Exchange(driver, (IPC_CHANNEL, IPC_CHANNEL), (IPC_CHANNEL, IPC_CHANNEL), cancel_on_disconnect=False)
    try:
        ipc.login(ipc.alice, ipc.bob)
        enter(ipc.alice, 1, ouch.SIDE_SELL, 100)
        enter(ipc.alice, 2, ouch.SIDE_SELL, 100, price=PRICE + TICK)
        assert kinds(ipc.responses(ipc.alice, 2)) == "AA"
        assert ipc.alice.last_sequence == 2
        ipc.alice.drop()
        ipc.step_until(lambda: not ipc.server.is_logged_in("ALICE"))  # its image went away, and its session
        enter(ipc.bob, 1, ouch.SIDE_BUY, 150, price=PRICE + TICK)  # fills alice twice while she is away
        ipc.responses(ipc.bob, 3)
        ipc.settle()
        assert ipc.server.next_sequence("ALICE") == 5
        ipc.login(ipc.alice)  # resumes at sequence 3
        missed = ipc.responses(ipc.alice, 2)
        assert kinds(missed) == "EE" and missed["qty"].tolist() == [100, 50]
        assert ipc.alice.last_sequence == 4
    finally:
        ipc.close()


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


def wait_for(done: Callable[[], bool]) -> None:
    """Wait, without stepping any agent, until ``done()`` (Aeron's own threads act meanwhile)."""
    step_until(lambda: 0, done, wait_s=WAIT_S, max_cycles=MAX_CYCLES, idle_s=0.001)


def test_over_udp_the_session_is_bound_to_its_images_source_address_too(driver: EmbeddedDriver) -> None:
    """A sender elsewhere that reuses the session id of the logged-in client's image once that image is gone
    (before the server has run again) gets nothing in: the binding is session id and source address."""
    a_in, b_in, a_out, b_out = (udp_channel(p) for p in free_udp_ports(4))
    exchange = Exchange(driver, (a_in, b_in), (a_out, b_out))
    elsewhere = EmbeddedDriver(DriverConfig(dir=f"{driver.dir}-elsewhere"))  # its own UDP sender: another address
    try:
        exchange.login(exchange.alice)
        enter(exchange.alice, 1, ouch.SIDE_BUY, 100)
        assert kinds(exchange.responses(exchange.alice, 1)) == "A"
        session = exchange.server.sessions[0]
        image, source = session.image, session.source
        assert source.startswith("127.0.0.1:")
        exchange.alice.drop()  # the exchange's agents stand still from here until the impostor has sent
        impostor = elsewhere.connect().add_exclusive_publication(f"{a_in}|session-id={image}", 101)
        wait_for(lambda: session.images.get(image) not in (None, source))
        forged = ouch.encode(ouch.INBOUND, "O", user_ref_num=1_000, side="S", quantity=100, symbol=SYMBOL,
                             price=PRICE + TICK, time_in_force="0", display="Y")  # fmt: skip
        wait_for(lambda: impostor.offer(bytes((SP.PKT_UNSEQUENCED,)) + forged) > 0)
        polled = lambda: session.subscription.image_by_session_id(image).position > 0  # noqa: E731
        exchange.step_until(lambda: not session.images.get(image) or polled())
        exchange.settle()
        assert not exchange.server.is_logged_in("ALICE") and exchange.server.images_lost == 1
        assert exchange.engine.book_snapshot(LOCATE) == {"bids": [], "asks": []}  # alice's canceled, no forgery
        assert exchange.server.next_sequence("ALICE") == 3  # her order's A and C: nothing answered the impostor
        impostor.close()
    finally:
        exchange.close()
        elsewhere.close()


def with_bytes(message: bytes, msg_type: str, name: str, raw: bytes) -> bytes:
    """``message`` (an inbound ``msg_type``) with field ``name`` overwritten by ``raw`` from its start."""
    offset = ouch.INBOUND_DTYPES[msg_type].fields[name][1]
    return message[:offset] + raw + message[offset + len(raw) :]


ENTER = ouch.encode(ouch.INBOUND, "O", user_ref_num=5, side="B", quantity=10, symbol=SYMBOL, price=PRICE,
                    time_in_force="0", display="Y", capacity="A", intermarket_sweep_eligibility="N",
                    cross_type="N", cl_ord_id="GOOD")  # fmt: skip
REPLACE = ouch.encode(ouch.INBOUND, "U", orig_user_ref_num=4, user_ref_num=5, quantity=10, price=PRICE,
                      time_in_force="0", display="Y", intermarket_sweep_eligibility="N", cl_ord_id="GOOD")  # fmt: skip


@pytest.mark.parametrize(
    "message",
    [
        with_bytes(ENTER, "O", "display", b"\xe9"),
        with_bytes(ENTER, "O", "cl_ord_id", b"\xff" * 14),
        with_bytes(ENTER, "O", "symbol", b"AAPL\xe9"),
        with_bytes(ENTER, "O", "side", b"\x80"),
        with_bytes(REPLACE, "U", "cl_ord_id", b"\xff" * 14),
        with_bytes(REPLACE, "U", "display", b"\x00"),
    ],
    ids=["enter_display", "enter_cl_ord_id", "enter_symbol", "enter_side", "replace_cl_ord_id", "replace_display"],
)
def test_alpha_field_bytes_outside_printable_ascii_are_rejected_and_the_server_survives(
    ipc: Exchange, message: bytes
) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 4, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    assert ipc.alice.send_unsequenced(message)
    (rejected,) = ipc.responses(ipc.alice, 1)
    assert chr(rejected["kind"]) == "J" and rejected["user_ref_num"] == 5 and rejected["reason"] == ouch.REJECT_OTHER
    assert ipc.server.malformed_messages == 1
    enter(ipc.alice, 6, ouch.SIDE_BUY, 10)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    assert ipc.server.is_logged_in("ALICE")


FUZZ_PACKETS = 100_000
FUZZ_BURST = 48  # packets a hostile client offers per duty cycle (under the server's fragment limit)
HOSTILE_USERS = ("EVE", "MALLET", "TRUDY")


class Hostile:
    """A logged-in user that sends random and mutated session packets and OUCH messages on its own port,
    and some of them on the victim's port."""

    def __init__(self, aeron: object, port: Port, victim: Port, rng: random.Random) -> None:
        self.publication = aeron.add_exclusive_publication(port.inbound_channel, port.inbound_stream_id)
        self.intrusion = aeron.add_exclusive_publication(victim.inbound_channel, victim.inbound_stream_id)
        self.login = SP.encode_login_request(port.username, port.password)
        self.rng = rng
        self.sent = 0
        self.urn = 0xFFFF0000

    def packet(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            return self.login  # log in again after being logged out for a violation
        if roll < 0.08:
            return rng.randbytes(rng.randrange(0, 80))
        if roll < 0.13:
            return bytes((rng.choice(b"LURHOZSAJQ\x00\xff"),)) + rng.randbytes(rng.randrange(0, 40))
        if roll < 0.3:  # a well-formed order the good client may trade with (UserRefNums above any mutated one)
            self.urn += 1
            return bytes((SP.PKT_UNSEQUENCED,)) + ouch.encode(
                ouch.INBOUND, "O", user_ref_num=self.urn, side=rng.choice("BS"), quantity=10 * rng.randrange(1, 20),
                symbol=SYMBOL, price=PRICE + TICK * rng.randrange(-3, 4), time_in_force="0", display="Y",
            )  # fmt: skip
        message = bytearray(rng.choice((ENTER, REPLACE, CANCEL, MODIFY, MASS_CANCEL)))
        for _ in range(rng.randrange(1, 4)):
            mutation = rng.random()
            if mutation < 0.6 and message:
                message[rng.randrange(len(message))] = rng.randrange(256)
            elif mutation < 0.8:
                del message[rng.randrange(len(message) + 1) :]
            else:
                message += rng.randbytes(rng.randrange(1, 40))
        return bytes((SP.PKT_UNSEQUENCED,)) + bytes(message)

    def burst(self) -> None:
        for _ in range(FUZZ_BURST):
            publication = self.intrusion if self.rng.random() < 0.1 else self.publication
            if publication.offer(self.packet()) < 0:
                return
            self.sent += 1


CANCEL = ouch.encode(ouch.INBOUND, "X", user_ref_num=5, quantity=0)
MODIFY = ouch.encode(ouch.INBOUND, "M", user_ref_num=5, side="S", quantity=5)
MASS_CANCEL = ouch.encode(ouch.INBOUND, "C", user_ref_num=5, firm="FIRM", symbol=SYMBOL)


def net_shares(sent: list[bytes]) -> int:
    """Net shares bought by a user, from the exchange's numbered OUCH messages to it."""
    sides: dict[int, int] = {}
    net = 0
    for packet in sent:
        message = ouch.decode(ouch.OUTBOUND, packet[1:])
        if chr(packet[1]) == "A":
            sides[int(message["user_ref_num"])] = 1 if message["side"] == ouch.SIDE_BUY else -1
        elif chr(packet[1]) == "E":
            net += sides[int(message["user_ref_num"])] * int(message["quantity"])
    return net


def test_hostile_clients_fuzzing_the_server_leave_a_trading_client_unharmed(driver: EmbeddedDriver) -> None:
    hostile_ports = [
        Port(name, "secret", IPC_CHANNEL, 101 + i, IPC_CHANNEL, 201 + i) for i, name in enumerate(HOSTILE_USERS)
    ]
    ports = (Port("GOOD", "secret0", IPC_CHANNEL, 100, IPC_CHANNEL, 200), *hostile_ports)
    clock = Clock()
    engine = MatchingEngine([(LOCATE, SYMBOL, TICK, LOT)], post_only="reject")
    server = OrderEntryServer(driver.connect(), engine, ServerConfig(ports), clock_ns=clock)
    good = OrderEntryClient(driver.dir, ClientConfig(ports[0]), clock_ns=clock)
    runner = AgentRunner([server, good], idle="spin")
    hostile_aeron = driver.connect()
    rng = random.Random(18)
    hostiles = [Hostile(hostile_aeron, port, ports[0], rng) for port in hostile_ports]
    try:
        good.connect()
        step_until(runner.run_once, lambda: good.state == LOGGED_IN, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        responses, urn, position = [], 0, 0
        deadline = time.monotonic() + 120
        while sum(h.sent for h in hostiles) < FUZZ_PACKETS and time.monotonic() < deadline:
            for hostile in hostiles:
                hostile.burst()
            if urn < 2_000 and rng.random() < 0.5:
                urn += 1
                side = rng.choice((ouch.SIDE_BUY, ouch.SIDE_SELL))
                enter(good, urn, side, 10 * rng.randrange(1, 20), PRICE + TICK * rng.randrange(-3, 4),
                      time_in_force=ouch.TIF_IOC if urn % 3 == 0 else ouch.TIF_DAY)  # fmt: skip
            runner.run_once()
            clock.now_ns += 1_000_000  # a millisecond a cycle: the order rate limit refills (the good client's
            responses.append(good.drain())  # orders stay under it, the hostile ones do not)
        assert sum(h.sent for h in hostiles) >= FUZZ_PACKETS
        step_until(runner.run_once, lambda: good.next_sequence > server.next_sequence("GOOD") - 1,
                   wait_s=WAIT_S, max_cycles=MAX_CYCLES)  # fmt: skip
        rows = np.concatenate([*responses, good.drain()])
        assert good.state == LOGGED_IN and server.is_logged_in("GOOD")
        answered = rows[np.isin(rows["kind"], [ord("A"), ord("J")])]
        assert sorted(answered["user_ref_num"].tolist()) == list(range(1, urn + 1))
        assert (answered["kind"] == ord("A")).all(), "a good order was rejected"
        sides = {int(r["user_ref_num"]): 1 if chr(r["side"]) == ouch.SIDE_BUY else -1 for r in answered}
        executed = rows[rows["kind"] == ord("E")]
        position = sum(sides[int(r["user_ref_num"])] * int(r["qty"]) for r in executed)
        assert position == net_shares(server.sessions[0].sent)
        assert server.malformed_messages > 1_000 and server.protocol_violations > 100
        assert server.foreign_packets > 1_000
        assert server.handler_errors == 0, server.last_handler_error
    finally:
        for hostile in hostiles:
            hostile.publication.close()
            hostile.intrusion.close()
        runner.close()


def test_packets_from_another_publisher_on_a_users_stream_cannot_act_for_the_user(
    ipc: Exchange, driver: EmbeddedDriver
) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    port = ipc.ports[0]
    intruder = driver.connect().add_exclusive_publication(port.inbound_channel, port.inbound_stream_id)
    forged = [
        bytes((SP.PKT_UNSEQUENCED,)) + ouch.encode(ouch.INBOUND, "O", user_ref_num=1_000, side="S", quantity=100,
                                                   symbol=SYMBOL, price=PRICE - TICK),  # would shift the floor
        bytes((SP.PKT_UNSEQUENCED,)) + CANCEL[:1] + (1).to_bytes(4, "big") + CANCEL[5:],  # cancel alice's order 1
        b"Q",  # a stray byte: a protocol violation
        bytes((SP.PKT_LOGOUT,)),
        SP.encode_login_request(port.username, "guessed"),
    ]  # fmt: skip
    step_until(ipc.runner.run_once, lambda: intruder.is_connected, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
    for packet in forged:
        assert intruder.offer(packet) > 0
    ipc.step_until(lambda: ipc.server.foreign_packets == len(forged) or not ipc.server.is_logged_in("ALICE"))
    ipc.settle()
    assert ipc.server.is_logged_in("ALICE") and ipc.alice.state == LOGGED_IN
    assert ipc.server.foreign_packets == len(forged)
    assert ipc.alice.n_responses == 0
    assert [lvl for lvl, _ in ipc.engine.book_snapshot(LOCATE)["bids"]] == [PRICE]
    assert ipc.engine.book_snapshot(LOCATE)["asks"] == []
    enter(ipc.alice, 2, ouch.SIDE_BUY, 100)  # the floor is still alice's own
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    intruder.close()


def test_a_client_that_reconnects_from_a_new_publication_logs_in_again_once_its_old_image_is_gone(
    ipc: Exchange,
) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    ipc.alice.connect()  # closes its publication, opens a new one (a new Aeron session id) and logs in again
    ipc.step_until(lambda: ipc.server.images_lost == 1)  # the clock stands still: no timeout ended it
    ipc.clock.now_ns += 100_000_000  # a heartbeat interval: a login refused meanwhile is sent again
    ipc.step_until(lambda: ipc.alice.state == LOGGED_IN)
    enter(ipc.alice, 2, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 2)) == "CA"  # the old session's order, canceled as it ended
    assert ipc.server.foreign_packets == 0


def refused(ipc: Exchange, client: OrderEntryClient) -> Callable[[], int]:
    """Log ``client`` in beside the exchange's agents until the server refuses it; returns its step."""

    def step() -> int:
        return ipc.runner.run_once() + client.do_work()

    client.connect()
    step_until(step, lambda: client.state == REJECTED, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
    assert client.login_reject_reason == SP.LOGIN_REJECT_SESSION_UNAVAILABLE
    return step


def test_a_second_login_while_the_session_is_live_is_refused_and_the_first_keeps_trading(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    second = ipc.client("ALICE", "secret1")  # the right credentials, from another publication
    try:
        refused(ipc, second)
        assert ipc.server.refused_logins == 1 and ipc.server.foreign_packets == 0
        assert ipc.alice.state == LOGGED_IN and ipc.server.is_logged_in("ALICE")
        enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
        assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    finally:
        second.on_close()


def test_a_refused_client_logs_in_once_the_live_clients_image_is_gone(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    successor = ipc.client("ALICE", "secret1")  # a restarted node, say, while its predecessor's session lives
    try:
        step = refused(ipc, successor)
        ipc.alice.drop()  # its publication closes, no logout: the image goes away
        step_until(step, lambda: not ipc.server.is_logged_in("ALICE"), wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        assert ipc.server.images_lost == 1  # the clock stands still: no timeout ended it
        assert ipc.engine.book_snapshot(LOCATE)["bids"] == []  # canceled on disconnect
        ipc.clock.now_ns += 100_000_000  # a heartbeat interval after the refusal: it asks again
        step_until(step, lambda: successor.state == LOGGED_IN, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        step_until(step, lambda: successor.n_responses >= 2, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        assert kinds(successor.drain()) == "AC"  # the session from its start: the order, its cancel
        assert successor.enter(2, ouch.SIDE_BUY, 100, SYMBOL, PRICE)
        step_until(step, lambda: successor.n_responses >= 1, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
        assert kinds(successor.drain()) == "A" and ipc.server.refused_logins == 1
    finally:
        successor.on_close()


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (lambda c: enter(c, 2, ouch.SIDE_BUY, 4_294_967_290), ouch.REJECT_SHARES_EXCEED_THRESHOLD),
        (lambda c: enter(c, 2, ouch.SIDE_BUY, 1_000_010), ouch.REJECT_SHARES_EXCEED_THRESHOLD),
        (lambda c: enter(c, 2, ouch.SIDE_SELL, 600_000, price=1_000_000_000), ouch.REJECT_EXCEEDS_MAX_NOTIONAL_VALUE),
        (lambda c: c.replace(1, 2, 2_000_000, PRICE), ouch.REJECT_SHARES_EXCEED_THRESHOLD),
        (lambda c: c.replace(1, 2, 1_000, ouch.PRICE_MAX // TICK * TICK), ouch.REJECT_EXCEEDS_MAX_NOTIONAL_VALUE),
    ],
    ids=["u32_max_shares", "over_max_shares", "over_max_notional", "replace_over_max_shares", "replace_notional"],
)
def test_orders_beyond_the_exchange_limits_are_rejected_with_the_limits_reason(
    ipc: Exchange, action: Callable[[OrderEntryClient], object], reason: int
) -> None:
    ipc.login(ipc.alice)
    enter(ipc.alice, 1, ouch.SIDE_BUY, 100)
    assert kinds(ipc.responses(ipc.alice, 1)) == "A"
    action(ipc.alice)
    (rejected,) = ipc.responses(ipc.alice, 1)
    assert chr(rejected["kind"]) == "J" and rejected["user_ref_num"] == 2 and rejected["reason"] == reason
    assert ipc.engine.book_snapshot(LOCATE)["bids"] == [(PRICE, [(1, 100, 1, 1)])]
    assert ipc.engine.book_snapshot(LOCATE)["asks"] == []


def test_orders_at_the_exchange_limits_are_accepted(ipc: Exchange) -> None:
    ipc.login(ipc.alice)
    config = ipc.server.config
    enter(ipc.alice, 1, ouch.SIDE_BUY, config.max_order_shares, price=PRICE)  # $100 x 1M = $100M > $50M
    enter(ipc.alice, 2, ouch.SIDE_BUY, 500_000)  # $50M exactly
    rows = ipc.responses(ipc.alice, 2)
    assert kinds(rows) == "JA" and rows[0]["reason"] == ouch.REJECT_EXCEEDS_MAX_NOTIONAL_VALUE


@pytest.mark.parametrize("limits", [{"max_order_shares": 0}, {"max_order_notional": -1}, {"max_order_shares": 1 << 32}])
def test_exchange_limits_must_be_positive_and_fit_ouch(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_order"):
        ServerConfig((Port(),), **limits)


def test_an_order_priced_through_the_band_is_rejected_and_does_not_rest(driver: EmbeddedDriver) -> None:
    ipc = Exchange(driver, (IPC_CHANNEL, IPC_CHANNEL), (IPC_CHANNEL, IPC_CHANNEL), price_band_pct=10.0)
    try:
        ipc.login(ipc.alice, ipc.bob)
        enter(ipc.bob, 1, ouch.SIDE_BUY, 100, price=950_000)
        enter(ipc.bob, 2, ouch.SIDE_SELL, 100, price=1_050_000)  # the touch: its midpoint $100.00 is the reference
        assert kinds(ipc.responses(ipc.bob, 2)) == "AA"
        enter(ipc.alice, 1, ouch.SIDE_BUY, 100, price=1_100_000 + TICK)  # would take bob's ask: 10.01 % above
        enter(ipc.alice, 2, ouch.SIDE_SELL, 100, price=900_000 - TICK)  # would take bob's bid: 10.01 % below
        rows = ipc.responses(ipc.alice, 2)
        assert kinds(rows) == "JJ" and (rows["reason"] == ouch.REJECT_FAT_FINGER).all()
        enter(ipc.alice, 3, ouch.SIDE_BUY, 100, price=1_040_000)  # inside the band (and the spread): rests
        enter(ipc.alice, 4, ouch.SIDE_SELL, 100, price=1_500_000)  # 50 % above, but passive: a stub quote rests
        assert kinds(ipc.responses(ipc.alice, 2)) == "AA"
        assert ipc.alice.replace(3, 5, 100, 1_200_000)  # a replace is held to the band too
        (rejected,) = ipc.responses(ipc.alice, 1)
        assert chr(rejected["kind"]) == "J" and rejected["reason"] == ouch.REJECT_FAT_FINGER
        book = ipc.engine.book_snapshot(LOCATE)
        assert [p for p, _ in book["bids"]] == [1_040_000, 950_000] and [p for p, _ in book["asks"]] == [
            1_050_000,
            1_500_000,
        ]
    finally:
        ipc.close()


def test_with_a_side_of_the_book_empty_the_band_centres_on_the_reference_price(driver: EmbeddedDriver) -> None:
    ipc = Exchange(driver, (IPC_CHANNEL, IPC_CHANNEL), (IPC_CHANNEL, IPC_CHANNEL), reference_prices={SYMBOL: PRICE})
    try:
        ipc.login(ipc.alice)
        enter(ipc.alice, 1, ouch.SIDE_BUY, 100, price=1_100_000 + TICK)  # the default band: 10 %
        enter(ipc.alice, 2, ouch.SIDE_BUY, 100, price=1_100_000)
        rows = ipc.responses(ipc.alice, 2)
        assert kinds(rows) == "JA" and rows[0]["reason"] == ouch.REJECT_FAT_FINGER
        assert ipc.engine.book_snapshot(LOCATE)["bids"] == [(1_100_000, [(1, 100, 1, 2)])]
    finally:
        ipc.close()


def by_kind(rows: np.ndarray) -> dict[str, list[int]]:
    """The UserRefNums of ``rows`` by response kind; every Rejected must be for the order rate."""
    assert (rows[rows["kind"] == ord("J")]["reason"] == ouch.REJECT_RISK_SYMBOL_MESSAGE_RATE).all()
    return {kind: sorted(int(r["user_ref_num"]) for r in rows if chr(r["kind"]) == kind) for kind in set(kinds(rows))}


def test_orders_past_the_rate_are_rejected_until_the_bucket_refills(driver: EmbeddedDriver) -> None:
    ipc = Exchange(driver, (IPC_CHANNEL, IPC_CHANNEL), (IPC_CHANNEL, IPC_CHANNEL), max_orders_per_s=5.0)
    try:
        ipc.login(ipc.alice, ipc.bob)
        for urn in range(1, 8):  # a burst of 7 at one instant: one second's worth (5) passes
            enter(ipc.alice, urn, ouch.SIDE_BUY, 10, price=PRICE - urn * TICK)
        assert by_kind(ipc.responses(ipc.alice, 7)) == {"A": [1, 2, 3, 4, 5], "J": [6, 7]}
        assert len(ipc.engine.book_snapshot(LOCATE)["bids"]) == 5
        assert ipc.alice.replace(1, 8, 10, PRICE - 20 * TICK)  # a replace counts as an order
        assert ipc.alice.cancel(2)  # a cancel never waits
        rows = ipc.responses(ipc.alice, 2)
        assert kinds(rows) == "JC" and rows[0]["reason"] == ouch.REJECT_RISK_SYMBOL_MESSAGE_RATE
        enter(ipc.bob, 1, ouch.SIDE_SELL, 10, price=PRICE + TICK)  # another user has a bucket of its own
        assert kinds(ipc.responses(ipc.bob, 1)) == "A"
        ipc.clock.now_ns += 200_000_000  # a fifth of a second later: one order's worth again
        enter(ipc.alice, 9, ouch.SIDE_BUY, 10, price=PRICE - 9 * TICK)
        enter(ipc.alice, 10, ouch.SIDE_BUY, 10, price=PRICE - 10 * TICK)
        assert by_kind(ipc.responses(ipc.alice, 2)) == {"A": [9], "J": [10]}
        for _ in range(5):  # a second later (in steps the heartbeats keep up with) the bucket is full again
            ipc.clock.now_ns += 200_000_000
            ipc.settle()
        for urn in range(11, 17):
            enter(ipc.alice, urn, ouch.SIDE_BUY, 10, price=PRICE - urn * TICK)
        assert by_kind(ipc.responses(ipc.alice, 6)) == {"A": [11, 12, 13, 14, 15], "J": [16]}
        assert ipc.server.is_logged_in("ALICE") and ipc.server.is_logged_in("BOB")
    finally:
        ipc.close()


@pytest.mark.parametrize("limits", [{"price_band_pct": -1.0}, {"price_band_pct": float("nan")},
                                    {"max_orders_per_s": float("inf")}, {"max_orders_per_s": -5.0}])  # fmt: skip
def test_price_band_and_order_rate_must_be_finite_and_not_negative(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(limits))):
        ServerConfig((Port(),), **limits)
