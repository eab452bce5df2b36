"""``hftmm sim-exchange`` replaying a recorded ITCH day, as another process: its MoldUDP64 market data on
127.0.0.1 rebuilds the recorded book, and an OUCH order over Aeron UDP trades with the recorded orders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.book.replay import replay
from engine.core import events as E
from engine.gateway.client import LOGGED_IN, ClientConfig, OrderEntryClient
from engine.gateway.session import Port
from engine.runtime.aeron import EmbeddedDriver, udp_channel
from engine.simexchange.replayflow_nb import REF_BASE
from feeds import ouch
from feeds.synth import generate_itch
from tests.integration import test_simexchange
from tests.integration.test_simexchange import CliExchange, Listener, free_port
from tests.unit.engine.simexchange.test_replayflow import l3

listener = test_simexchange.listener  # fixtures: a UDP market-data listener, the test's Aeron driver, ...
driver = test_simexchange.driver
cli_exchanges = test_simexchange.cli_exchanges

TICK = 100
MESSAGES = 6_000


def replay_config(md_port: int, rport: int, in_port: int, out_port: int, day: Path, tickers: list[str]) -> str:
    """A replay of ``day`` as fast as possible, the recorded tickers listed (the first one renamed)."""
    instruments = "".join(
        f'[[instruments]]\nlocate = {locate}\nsymbol = "{"FIRST" if locate == 1 else t}"\ntick = {TICK}\n'
        for locate, t in enumerate(tickers, 1)
    )
    return f"""
[flow]
mode = "replay"
files = ["{day}"]
speed = 0.0
at_end = "stop"
symbols = {{ "{tickers[0]}" = "FIRST" }}
[market_data]
port = {md_port}
retransmission_port = {rport}
heartbeat_interval_ms = 100
[[order_entry.users]]
username = "ALICE"
password = "pw"
inbound_channel = "{udp_channel(in_port)}"
inbound_stream_id = 11
outbound_channel = "{udp_channel(out_port)}"
outbound_stream_id = 12
{instruments}"""


def test_cli_replays_an_itch_day_and_our_ouch_order_trades_with_the_recorded_book(
    tmp_path: Path, driver: EmbeddedDriver, cli_exchanges: list[CliExchange], listener: Listener
) -> None:
    day = tmp_path / "day.itch"
    tickers = generate_itch(day, messages=MESSAGES, symbols=2, seed=11)["tickers"]
    recorded = replay([str(day)], progress=False).book
    want = {locate: l3(recorded, locate) for locate in (1, 2)}
    rport, in_port, out_port = free_port(), free_port(), free_port()
    listener.receiver.retransmit = ("127.0.0.1", rport)
    path = tmp_path / "replay.toml"
    path.write_text(replay_config(listener.receiver.address[1], rport, in_port, out_port, day, tickers))
    exchange = CliExchange(path)
    cli_exchanges.append(exchange)
    assert "flow           replay" in exchange.describe and "speed 0" in exchange.describe

    # the whole day, as fast as possible: the market data rebuilds exactly the recorded book
    # (the count alone can match midway through the day: compare the books once it does)
    def rebuilt() -> bool:
        if listener.book.total_orders != sum(map(len, want.values())):
            return False
        return all(l3(listener.book, locate, int(REF_BASE)) == want[locate] for locate in (1, 2))

    listener.poll_until(rebuilt)
    for locate in (1, 2):
        assert l3(listener.book, locate, int(REF_BASE)) == want[locate]

    port = Port("ALICE", "pw", udp_channel(in_port), 11, udp_channel(out_port), 12)
    client = OrderEntryClient(driver.dir, ClientConfig(port))

    def until(done: Callable[[], bool]) -> None:
        listener.poll_until(done, also=client.do_work)

    client.connect()
    until(lambda: client.state == LOGGED_IN)
    (best_ask, ask_qty, _), *_ = listener.book.depth(1, 1)[1].tolist()
    head = min((ahead, oid) for oid, (side, px, _, ahead) in want[1].items() if side == E.SIDE_ASK and px == best_ask)
    assert client.enter(1, ouch.SIDE_BUY, 1, "FIRST", best_ask, time_in_force=ouch.TIF_IOC)
    until(lambda: any(chr(r["kind"]) == "E" for r in client.responses[: client.n_responses]))
    (executed,) = [r for r in client.drain() if chr(r["kind"]) == "E"]
    assert (executed["qty"], executed["price"], chr(executed["liquidity_flag"])) == (1, best_ask, "R")
    # the head of the recorded queue at the best ask gave that share, as the ITCH out says
    head_ref = int(REF_BASE) + head[1]
    until(lambda: listener.book.depth(1, 1)[1][0][1] == ask_qty - 1)
    assert listener.book.order(head_ref)["qty"] == want[1][head[1]][2] - 1

    assert client.enter(2, ouch.SIDE_SELL, 1, "FIRST", best_ask + 1000 * TICK)  # rests far away
    until(lambda: client.n_responses >= 1)
    (accepted,) = client.drain()
    assert chr(accepted["kind"]) == "A"
    ref = int(accepted["order_reference_number"])
    until(lambda: listener.book.order(ref) is not None)
    assert listener.book.order(ref)["side"] == E.SIDE_ASK and l3(listener.book, 2, int(REF_BASE)) == want[2]
    client.logout()

    stats = exchange.stop()
    events = stats["replay_events"]
    assert events == stats["flow_requests"] and events > MESSAGES // 2 and stats["replay_events_left"] == 0
    assert stats["replay_dropped"] == stats["replay_missing_orders"] == stats["replay_clamped"] == 0
    assert stats["order_entry_requests"] == 2 and stats["executions"] >= 1 and stats["replay_executions"] > 0
