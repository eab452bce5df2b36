"""The simulated exchange end to end on loopback: real UDP market data, a real Aeron driver, the CLI."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.book import Book
from engine.config import decode_toml
from engine.events import SIDE_ASK, SIDE_BID
from engine.orderentry import LOGGED_IN, ClientConfig, OrderEntryClient
from engine.simexchange import SimExchange, SimExchangeConfig
from feeds import ouch
from feeds.udp import MoldReceiver
from tests.conftest import step_until

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 10.0
MAX_CYCLES = 2_000_000
QUIET_S = 0.3  # market data is quiescent when nothing new arrived for this long
LOCATES = (1, 2)
TICK, LOT = 100, 10
CLI_TIMEOUT_S = 240  # bounded; generous because a cold Numba cache compiles every kernel first


def config_text(md_port: int, **top: object) -> str:
    """A small two-instrument config sending market data to ``md_port``."""
    head = "\n".join(f"{key} = {value}" for key, value in top.items())
    return f"""{head}
warm_up_s = 2.0
[market_data]
port = {md_port}
retransmission_port = 0
heartbeat_interval_ms = 100
[[order_entry.users]]
username = "ALICE"
password = "pw"
inbound_stream_id = 11
outbound_stream_id = 12
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
    """A MoldReceiver rebuilding the exchange's books from its UDP market data."""

    def __init__(self) -> None:
        self.book = Book()
        self.receiver = MoldReceiver(self.book.apply)

    def poll_until(self, done: Callable[[], bool]) -> None:
        """Read market data until ``done()`` (bounded in cycles and time)."""
        step_until(self.receiver.do_work, done, wait_s=WAIT_S, max_cycles=MAX_CYCLES, idle_s=0.0005)

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
            for rows, levels, side in ((bids, snap["bids"], SIDE_BID), (asks, snap["asks"], SIDE_ASK)):
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


def test_order_entry_rests_executes_and_rejects(exchange: SimExchange, listener: Listener) -> None:
    user = exchange.config.order_entry.users[0]
    client = OrderEntryClient(exchange.driver.connect(), ClientConfig(user.port()))
    client.connect()

    def step_client_until(done: Callable[[], bool]) -> None:
        def cycle() -> bool:
            client.do_work()
            return done()

        listener.poll_until(cycle)

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
    return [sys.executable, "-m", "engine.cli", "sim-exchange", *args]


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
