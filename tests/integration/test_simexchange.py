"""The simulated exchange end to end on loopback: real UDP (and Aeron IPC) market data, a real Aeron driver,
the CLI, and the CLI as another process (OUCH over Aeron UDP; multicast inside a network namespace)."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.book.book import Book
from engine.core import events as E
from engine.core.config import ConfigError, decode_toml
from engine.gateway.client import LOGGED_IN, ClientConfig, OrderEntryClient
from engine.gateway.session import Port
from engine.runtime.aeron import EmbeddedDriver, udp_channel
from engine.simexchange.config import SimExchangeConfig
from engine.simexchange.exchange import SimExchange
from feeds import ouch
from feeds.moldaeron import MoldAeronReceiver
from feeds.udp import MoldReceiver
from tests.conftest import step_until
from tests.unit.engine.gateway import test_orderentry

driver = test_orderentry.driver  # fixture: an embedded Aeron driver of the test process

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 10.0
MAX_CYCLES = 2_000_000
QUIET_S = 0.3  # market data is quiescent when nothing new arrived for this long
LOCATES = (1, 2)
TICK, LOT = 100, 10
PRICE = 1_000_000  # $100.0000
CLI_TIMEOUT_S = 240  # bounded; generous because a cold Numba cache compiles every kernel first
MD_STREAM_ID = 21
Receiver = MoldReceiver | MoldAeronReceiver


def config_text(
    md_port: int,
    retransmission_port: int = 0,
    market_data: str = "",
    order_entry: str = "",
    user: str = "",
    **top: object,
) -> str:
    """A small two-instrument config sending market data to ``md_port``; ``market_data``, ``order_entry``
    and ``user`` are more keys of those tables (``user``: the one order-entry user, ALICE)."""
    head = "\n".join(f"{key} = {value}" for key, value in top.items())
    return f"""{head}
warm_up_s = 2.0
[market_data]
port = {md_port}
retransmission_port = {retransmission_port}
heartbeat_interval_ms = 100
{market_data}
[order_entry]
{order_entry}
[[order_entry.users]]
username = "ALICE"
password = "pw"
inbound_stream_id = 11
outbound_stream_id = 12
{user}
[[instruments]]
locate = 1
symbol = "AAA"
tick = {TICK}
lot = {LOT}
limit_rate = 60.0
[[instruments]]
locate = 2
symbol = "BBB"
tick = 50
initial_price = 500000
"""


class Listener:
    """A MoldUDP64 listener (UDP unless ``connect`` makes another) rebuilding the exchange's books."""

    def __init__(self, connect: Callable[[Callable[[np.ndarray], None]], Receiver] = MoldReceiver) -> None:
        self.book = Book()
        self.receiver = connect(self.book.apply)

    def poll_until(self, done: Callable[[], bool], also: Callable[[], int] | None = None) -> None:
        """Read market data (and step ``also``, an order-entry client) until ``done()``, bounded."""

        def cycle() -> int:
            return self.receiver.do_work() + (also() if also is not None else 0)

        step_until(cycle, done, wait_s=WAIT_S, max_cycles=MAX_CYCLES, idle_s=0.0005)

    def touch(self, locate: int = 1) -> tuple[int, int]:
        """Best bid and best ask of ``locate`` in the rebuilt book."""
        bids, asks = self.book.depth(locate, 1)
        return int(bids[0][0]), int(asks[0][0])

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.poll_until(lambda: time.monotonic() >= end)

    def quiesce(self, exchange: SimExchange) -> None:
        """Pause the flow and read until every published message arrived and nothing moves."""
        exchange.pause_flow()
        seen = [-1, time.monotonic()]

        def settled() -> bool:
            now_seq = exchange.publisher.next_seq
            if self.receiver.expected != now_seq or self.receiver.gap_open or now_seq != seen[0]:
                seen[:] = [now_seq, time.monotonic()]
                return False
            return time.monotonic() - seen[1] >= QUIET_S

        self.poll_until(settled)

    def assert_matches(self, exchange: SimExchange) -> None:
        """Same levels, orders (refs, quantities, queue positions) for every instrument."""
        total = 0
        for locate in LOCATES:
            snap = exchange.book_snapshot(locate)
            bids, asks = self.book.depth(locate, 10_000)
            assert snap["bids"] and snap["asks"]
            for rows, levels, side in ((bids, snap["bids"], E.SIDE_BID), (asks, snap["asks"], E.SIDE_ASK)):
                assert [tuple(map(int, r)) for r in rows] == [(p, sum(o[1] for o in q), len(q)) for p, q in levels]
                for price, queue in levels:
                    for ahead, (ref, qty, _, _) in enumerate(queue):
                        got = self.book.order(ref)
                        assert got is not None
                        assert (got["instrument"], got["side"], got["price"], got["qty"], got["orders_ahead"]) == (
                            locate,
                            side,
                            price,
                            qty,
                            ahead,
                        )
                    total += len(queue)
        assert self.book.total_orders == total


@pytest.fixture
def listener() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.receiver.on_close()


@pytest.fixture
def exchange(listener: Listener) -> Iterator[SimExchange]:
    config = decode_toml(config_text(listener.receiver.address[1]), SimExchangeConfig)
    sim = SimExchange(config)
    listener.receiver.retransmit = sim.retransmission_address
    with sim:
        yield sim
    assert not sim.failed


def test_books_rebuilt_from_market_data_equal_the_exchange_books(exchange: SimExchange, listener: Listener) -> None:
    listener.run_for(2.0)
    listener.quiesce(exchange)
    listener.assert_matches(exchange)
    stats = exchange.stats()
    assert (
        stats["flow_requests"] > 0
        and stats["executions"] > 0
        and stats["md_messages"] == exchange.publisher.next_seq - 1
    )
    assert listener.receiver.stats.messages == stats["md_messages"] and listener.receiver.stats.gaps == 0


def test_forced_gap_is_recovered_by_retransmission(exchange: SimExchange, listener: Listener) -> None:
    listener.run_for(0.5)
    exchange.drop_next_packets(3)
    listener.poll_until(lambda: exchange.publisher.stats.dropped_packets == 3)
    listener.run_for(1.0)
    listener.quiesce(exchange)
    listener.assert_matches(exchange)
    rx = listener.receiver.stats
    assert rx.gaps >= 1 and rx.recovered_messages >= 3 and rx.lost_messages == 0
    assert exchange.stats()["retransmissions_served"] >= 1


def test_books_rebuilt_from_aeron_ipc_market_data_equal_the_exchange_books() -> None:
    aeron_md = f'aeron_channel = "aeron:ipc"\naeron_stream_id = {MD_STREAM_ID}'
    sim = SimExchange(decode_toml(config_text(free_port(), market_data=aeron_md), SimExchangeConfig))
    assert sim.driver is not None and f"aeron:ipc stream {MD_STREAM_ID}" in sim.describe()
    client = sim.driver.connect()  # the exchange's own driver: IPC is shared memory on this machine
    listener = Listener(
        lambda handler: MoldAeronReceiver(
            handler, client, "aeron:ipc", MD_STREAM_ID, retransmit=sim.retransmission_address
        )
    )
    try:
        with sim:
            listener.run_for(1.0)
            listener.quiesce(sim)
            listener.assert_matches(sim)
            stats = sim.stats()
    finally:
        listener.receiver.on_close()
    rx = listener.receiver.stats
    assert rx.messages == stats["md_messages"] > 0 and rx.lost_messages == 0
    assert stats["md_aeron_packets"] > 0 and stats["executions"] > 0


def test_order_entry_rests_executes_and_rejects(exchange: SimExchange, listener: Listener) -> None:
    user = exchange.config.order_entry.users[0]
    client = OrderEntryClient(exchange.driver.dir, ClientConfig(user))
    client.connect()

    def step_client_until(done: Callable[[], bool]) -> None:
        listener.poll_until(done, also=client.do_work)

    step_client_until(lambda: client.state == LOGGED_IN)
    assert exchange.stats()["order_entry_sessions"] == 1
    listener.run_for(0.3)
    listener.quiesce(exchange)
    best_bid = exchange.book_snapshot(1)["bids"][0][0]
    best_ask = exchange.book_snapshot(1)["asks"][0][0]

    assert client.enter(1, ouch.SIDE_BUY, 3 * LOT, "AAA", best_bid - 3 * TICK)
    step_client_until(lambda: client.n_responses >= 1)
    (accepted,) = client.drain()
    assert chr(accepted["kind"]) == "A" and accepted["price"] == best_bid - 3 * TICK
    ref = int(accepted["order_reference_number"])
    listener.poll_until(lambda: listener.book.order(ref) is not None)
    assert listener.book.order(ref)["price"] == best_bid - 3 * TICK and listener.book.order(ref)["qty"] == 3 * LOT

    assert client.enter(2, ouch.SIDE_BUY, LOT, "AAA", best_ask, time_in_force=ouch.TIF_IOC)
    step_client_until(lambda: client.n_responses >= 2)
    accepted_ioc, executed = client.drain()  # OUCH acknowledges an IOC order before it trades
    assert chr(accepted_ioc["kind"]) == "A" and chr(executed["kind"]) == "E"
    assert executed["price"] == best_ask and executed["qty"] == LOT and executed["user_ref_num"] == 2

    assert client.enter(3, ouch.SIDE_BUY, LOT, "AAA", best_bid - TICK // 2)
    step_client_until(lambda: client.n_responses >= 1)
    (rejected,) = client.drain()
    assert chr(rejected["kind"]) == "J" and rejected["reason"] == ouch.REJECT_INVALID_PRICE

    listener.quiesce(exchange)
    listener.assert_matches(exchange)
    stats = exchange.stats()
    assert stats["order_entry_requests"] == 3 and stats["rejects"] == 1 and stats["executions"] > 0
    client.logout()


QUIET_INSTRUMENT = """
[[instruments]]
locate = 3
symbol = "QUIET"
limit_rate = 0.0
market_rate = 0.0
"""  # no background flow: only the test's orders rest there


@pytest.mark.parametrize(
    "text, key", [('self_trade = "maybe"', "self_trade"), ('[market_data]\naeron_channel = "ipc"', "aeron_channel")]
)
def test_config_rejects_an_unknown_self_trade_mode_and_a_non_aeron_channel(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        decode_toml(text, SimExchangeConfig)


def test_self_trade_prevention_cancels_the_sessions_resting_order(listener: Listener) -> None:
    sim = SimExchange(decode_toml(config_text(listener.receiver.address[1]) + QUIET_INSTRUMENT, SimExchangeConfig))
    assert sim.config.self_trade == "cancel-resting" and sim.driver is not None
    client = OrderEntryClient(sim.driver.dir, ClientConfig(sim.config.order_entry.users[0]))

    def until(done: Callable[[], bool]) -> None:
        listener.poll_until(done, also=client.do_work)

    with sim:
        client.connect()
        until(lambda: client.state == LOGGED_IN)
        assert client.enter(1, ouch.SIDE_SELL, 2, "QUIET", PRICE)
        until(lambda: client.n_responses >= 1)
        sell_ref = int(client.drain()[0]["order_reference_number"])
        assert client.enter(2, ouch.SIDE_BUY, 1, "QUIET", PRICE)  # would trade with the session's own sell
        until(lambda: client.n_responses >= 2)
        accepted, canceled = client.drain()
        assert (chr(canceled["kind"]), canceled["user_ref_num"], canceled["qty"]) == ("C", 1, 2)
        assert chr(canceled["reason"]) == ouch.CANCEL_SELF_MATCH_PREVENTION
        buy_ref = int(accepted["order_reference_number"])
        until(lambda: listener.book.order(sell_ref) is None and listener.book.order(buy_ref) is not None)
        assert sim.book_snapshot(3) == {"bids": [(PRICE, [(buy_ref, 1, 1, 2)])], "asks": []}
        client.logout()
    assert not sim.failed


# --- the CLI, as a user runs it ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli.main", "sim-exchange", *args]


def test_cli_runs_for_a_duration_and_prints_where_it_listens_and_the_stats(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "sim.toml"
    path.write_text(config_text(port))
    done = subprocess.run(
        cli("--config", str(path), "--duration", "3"), cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    assert f"market data    udp 127.0.0.1:{port}" in done.stdout and "user ALICE" in done.stdout
    assert "retransmission udp 127.0.0.1:" in done.stdout and "aeron dir" in done.stdout
    assert "flow_requests" in done.stdout and "md_messages" in done.stdout and "Traceback" not in done.stderr


def test_cli_bad_config_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config_text(free_port()).replace("[market_data]", "[market_data]\nprot = 1"))
    done = subprocess.run(cli("--config", str(path)), cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "prot" in lines[0] and str(path) in lines[0] and "Traceback" not in done.stderr


def test_cli_serves_metrics_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    metrics_port = free_tcp_port()
    path = tmp_path / "sim.toml"
    path.write_text(config_text(free_port(), metrics_port=metrics_port))
    proc = subprocess.Popen(
        cli("--config", str(path), "--duration", str(2 * CLI_TIMEOUT_S)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + CLI_TIMEOUT_S  # a cold Numba cache compiles first
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
                    body = response.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            if "hftmm_sim_flow_requests_total" in body and "hftmm_sim_flow_requests_total 0.0" not in body:
                break
            time.sleep(0.2)
        for name in ("flow_requests_total", "executions_total", "rejects_total", "md_packets_total"):
            assert f"hftmm_sim_{name}" in body
        assert "hftmm_sim_order_entry_sessions 0.0" in body
        assert "hftmm_sim_retransmissions_served_total" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    assert proc.returncode == 0, err
    assert f"metrics        http://127.0.0.1:{metrics_port}/metrics" in out and "executions" in out


def test_stepped_exchange_publishes_the_session_start_before_any_order() -> None:
    types: list[str] = []
    receiver = MoldReceiver(lambda rows: types.extend(chr(t) for t in rows["src_type"]))
    sim = SimExchange(decode_toml(config_text(receiver.address[1]), SimExchangeConfig))
    try:
        deadline = time.monotonic() + WAIT_S
        while len(types) < 20 and time.monotonic() < deadline:
            sim.step()
            receiver.do_work()
    finally:
        sim.stop()
        receiver.on_close()
    # S start of messages, (R per instrument: no event rows), S system hours, H per instrument, S market hours
    assert "".join(types[:5]) == "SSHHS" and set(types[5:]) <= set("AEXDUCP")
    assert {i.symbol.strip() for i in receiver.stocks.instruments.values()} == {"AAA", "BBB"}


def test_a_stopped_exchange_ends_its_itch_with_end_of_messages_before_the_end_of_session() -> None:
    events: list[tuple[str, str]] = []
    receiver = MoldReceiver(lambda rows: events.extend((chr(r["src_type"]), chr(r["flags"])) for r in rows))
    sim = SimExchange(decode_toml(config_text(receiver.address[1]), SimExchangeConfig))
    try:
        step_until(lambda: sim.step() + receiver.do_work(), lambda: len(events) >= 5, wait_s=WAIT_S,
                   max_cycles=MAX_CYCLES)  # fmt: skip
    finally:
        sim.stop()
    try:
        step_until(receiver.do_work, lambda: receiver.finished, wait_s=WAIT_S, max_cycles=MAX_CYCLES)
    finally:
        receiver.on_close()
    # S end of market hours, S end of system hours, S end of messages: ITCH's last message
    assert events[-3:] == [("S", "M"), ("S", "E"), ("S", "C")]


# --- the CLI in another process: OUCH over Aeron UDP, market data over unicast and multicast UDP ----
MULTICAST_GROUP = "239.255.42.2"  # administratively scoped; TTL 0 keeps it on the host (here: in a namespace)
SESSION_TIMEOUT_MS = 1000  # the exchange ends a silent order-entry session after this long
CLIENT_HEARTBEAT_NS = 200_000_000
KILL_WAIT_S = 10.0


class CliExchange:
    """``hftmm sim-exchange`` as a subprocess (optionally behind ``prefix``, e.g. ``ip netns exec NAME``)."""

    def __init__(
        self, config: Path, prefix: tuple[str, ...] = (), args: tuple[str, ...] = (), wait_s: float = CLI_TIMEOUT_S
    ) -> None:
        command = [*prefix, *cli("--config", str(config), "--duration", str(2 * CLI_TIMEOUT_S), *args)]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            self.describe = self._read_describe(wait_s)
        except BaseException:  # nobody holds this object yet to end the process
            self.kill()
            raise

    def _read_describe(self, wait_s: float) -> str:
        """What it prints once it listens, up to the instruments line (bounded: a cold Numba cache
        compiles first). Read from the pipe's descriptor, so that nothing waits in a Python buffer."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        text = ""
        deadline = time.monotonic() + wait_s
        while not re.search(r"^instruments .*\n", text, re.MULTILINE):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 1 << 16).decode() if ready else ""
            assert chunk, f"no start-up lines within {wait_s} s: {text!r}"
            text += chunk
        return text

    def stop(self) -> dict[str, int]:
        """SIGTERM, wait for a clean exit and return the stats it printed."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=CLI_TIMEOUT_S)
        assert self.proc.returncode == 0, err
        fields = [line.split() for line in out.splitlines()]
        return {f[0]: int(f[1].replace(",", "")) for f in fields if len(f) == 2 and f[1][0].isdigit()}

    def kill(self) -> None:
        """End the process if it still runs (a failed test): SIGTERM, so it cleans up, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=KILL_WAIT_S)


@pytest.fixture
def cli_exchanges() -> Iterator[list[CliExchange]]:
    """Subprocess exchanges a test starts; killed at the end if the test did not stop them."""
    started: list[CliExchange] = []
    yield started
    for exchange in started:
        exchange.kill()


def assert_consistent_until_the_end(listener: Listener, stats: dict[str, int]) -> None:
    """After the exchange stopped: every message up to end-of-session arrived and built sane books."""
    listener.poll_until(lambda: listener.receiver.finished)
    rx = listener.receiver.stats
    assert listener.receiver.expected == stats["md_messages"] + 1 and rx.lost_messages == 0
    counters = listener.book.counters
    assert counters["adds"] > 0 and counters["executes"] > 0
    for anomaly in ("unknown_order_refs", "duplicate_order_ids", "over_executions", "crossed_books"):
        assert counters[anomaly] == 0, anomaly
    for locate in LOCATES:
        bids, asks = listener.book.depth(locate, 1)
        assert len(bids) and len(asks) and bids[0][0] < asks[0][0]


def test_cli_exchange_in_another_process_serves_ouch_over_aeron_udp_and_unicast_market_data(
    tmp_path: Path, driver: EmbeddedDriver, cli_exchanges: list[CliExchange], listener: Listener
) -> None:
    rport, in_port, out_port = free_port(), free_port(), free_port()
    listener.receiver.retransmit = ("127.0.0.1", rport)
    session_timing = f"timeout_ms = {SESSION_TIMEOUT_MS}\nheartbeat_interval_ms = {SESSION_TIMEOUT_MS // 5}"
    channels = f'inbound_channel = "{udp_channel(in_port)}"\noutbound_channel = "{udp_channel(out_port)}"'
    path = tmp_path / "sim.toml"
    path.write_text(config_text(listener.receiver.address[1], rport, order_entry=session_timing, user=channels))
    exchange = CliExchange(path)
    cli_exchanges.append(exchange)
    assert f"in {udp_channel(in_port)} stream 11" in exchange.describe
    port = Port("ALICE", "pw", udp_channel(in_port), 11, udp_channel(out_port), 12)
    # the client runs its own media driver in this process; the two drivers meet over UDP on 127.0.0.1
    client = OrderEntryClient(driver.dir, ClientConfig(port, heartbeat_interval_ns=CLIENT_HEARTBEAT_NS))

    def until(done: Callable[[], bool]) -> None:
        listener.poll_until(done, also=client.do_work)

    def answers(count: int) -> np.ndarray:
        until(lambda: client.n_responses >= count)
        return client.drain()

    client.connect()
    until(lambda: client.state == LOGGED_IN and all(len(side) for side in listener.book.depth(1, 1)))
    best_bid, _ = listener.touch()

    assert client.enter(1, ouch.SIDE_BUY, 3 * LOT, "AAA", best_bid - 3 * TICK)
    (accepted,) = answers(1)
    ref = int(accepted["order_reference_number"])
    until(lambda: listener.book.order(ref) is not None)
    assert (listener.book.order(ref)["price"], listener.book.order(ref)["qty"]) == (best_bid - 3 * TICK, 3 * LOT)

    assert client.replace(1, 2, 2 * LOT, best_bid - 4 * TICK)
    (replaced,) = answers(1)
    new_ref = int(replaced["order_reference_number"])
    assert chr(replaced["kind"]) == "U" and new_ref != ref
    until(lambda: listener.book.order(ref) is None and listener.book.order(new_ref) is not None)
    assert listener.book.order(new_ref)["qty"] == 2 * LOT

    assert client.cancel(2)
    (canceled,) = answers(1)
    assert chr(canceled["kind"]) == "C" and chr(canceled["reason"]) == ouch.CANCEL_USER_REQUESTED
    until(lambda: listener.book.order(new_ref) is None)

    _, best_ask = listener.touch()
    assert client.enter(3, ouch.SIDE_BUY, LOT, "AAA", best_ask + 5 * TICK, time_in_force=ouch.TIF_IOC)
    until(lambda: any(chr(r["kind"]) == "E" for r in client.responses[: client.n_responses]))
    executed = [r for r in client.drain() if chr(r["kind"]) == "E"]
    assert executed[0]["qty"] == LOT and chr(executed[0]["liquidity_flag"]) == "R"  # taken from the flow

    assert client.enter(4, ouch.SIDE_BUY, LOT, "AAA", best_bid - 5 * TICK)
    (resting,) = answers(1)
    seen = client.last_sequence
    client.drop()  # silent: the exchange ends the session after its timeout and cancels the order
    listener.poll_until(lambda: listener.book.order(int(resting["order_reference_number"])) is None)
    client.connect()
    (missed,) = answers(1)
    assert chr(missed["kind"]) == "C" and chr(missed["reason"]) == ouch.CANCEL_SUPERVISORY
    assert missed["user_ref_num"] == 4 and client.last_sequence == seen + 1
    client.logout()

    stats = exchange.stop()
    assert stats["order_entry_requests"] >= 6 and stats["executions"] > 0
    assert_consistent_until_the_end(listener, stats)


def test_cli_exchange_in_a_network_namespace_sends_multicast_market_data(
    tmp_path: Path, netns: str, cli_exchanges: list[CliExchange]
) -> None:
    listener = Listener(lambda handler: MoldReceiver(handler, multicast_group=MULTICAST_GROUP))
    rport = free_port()
    listener.receiver.retransmit = ("127.0.0.1", rport)
    path = tmp_path / "sim.toml"
    group = f'multicast_group = "{MULTICAST_GROUP}"'
    path.write_text(config_text(listener.receiver.address[1], rport, market_data=group))
    exchange = CliExchange(path, ("ip", "netns", "exec", netns))
    cli_exchanges.append(exchange)
    assert f"udp {MULTICAST_GROUP}:{listener.receiver.address[1]} (multicast via 127.0.0.1" in exchange.describe
    listener.run_for(1.0)
    if listener.receiver.stats.messages == 0:
        pytest.skip("multicast datagrams do not loop back on this host")
    stats = exchange.stop()
    assert_consistent_until_the_end(listener, stats)
    listener.receiver.on_close()
