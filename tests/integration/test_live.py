"""``hftmm live`` end to end: the daemon as a user runs it, against its embedded sim-exchange (real UDP
market data on 127.0.0.1, a real Aeron driver, a real local Ray), scraped over HTTP, tripped with
``hftmm kill`` and stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from engine.live.journal import KIND_RESPONSE, KIND_SENT, read_journal
from engine.runtime import control as CB
from engine.trading import oms
from feeds import ouch
from tests.conftest import step_until
from tests.integration.test_simexchange import free_port, free_tcp_port

REPO = Path(__file__).resolve().parents[2]
START_S = 600.0  # bounded; generous: from a cold Numba cache the exchange, node and feed kernels compile first,
# side by side in three processes on two cores (measured up to ~5 min on the CI machine)
SETTLE_S = 1.5  # after the kill switch: long enough for any order already decided to have gone out
STOP_S = 90.0
POLL_S = 0.25
MAX_POLLS = 4000  # enough 0.25 s polls to reach START_S
REPORT_KEYS = ("orders", "replaces", "fills", "position", "pnl", "fees", "risk_rejections", "t2t_p50_ns", "t2t_p99_ns")
MAKER_FEE, TAKER_FEE = -0.0002, 0.0003  # a rebate for adding liquidity, a fee for taking it


def config_text(tmp: Path, max_order_qty: float = 500, capture: bool = True) -> str:
    """Two instruments on one node quoting the touch; free ports; the runtime dir in ``tmp``. A node that
    records a capture runs its duty cycle from Python; without, it runs the compiled loop (engine.live.loop_nb)."""
    return f"""
runtime_dir = "{tmp / "run"}"
stop_wait_s = 5.0
[exchange]
md_port = {free_port()}
retransmission_port = {free_port()}
warm_up_s = 2.0
[metrics]
port = {free_tcp_port()}
[risk]
max_position = 1000
max_order_qty = {max_order_qty}
[capture]
enabled = {str(capture).lower()}
[[instruments]]
symbol = "AAA"
[[instruments]]
symbol = "BBB"
initial_price = 500000
tick = 50
[[nodes]]
name = "mm-1"
strategy = "touch"
symbols = ["AAA", "BBB"]
idle = "backoff"
params = {{ order_qty = 1, max_position = 50, interval_ns = 0 }}
maker_fee = {MAKER_FEE}
taker_fee = {TAKER_FEE}
"""


def hftmm(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli.main", *args]


def metric(body: str, name: str) -> float:
    """The sum of every sample of ``name`` (any labels) in a Prometheus text body."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for v in pattern.findall(body))


@dataclass
class Session:
    """What a finished daemon left: exit status, stdout, stderr, the JSON report, scrapes, leftovers."""

    returncode: int
    stdout: str
    stderr: str
    report: dict
    scrapes: dict[str, str]
    kill_output: str
    leftovers: list[str]
    runtime: Path


class Daemon:
    """``hftmm live`` as a subprocess with a config in ``tmp``."""

    def __init__(self, tmp: Path, max_order_qty: float = 500, capture: bool = True) -> None:
        self.config = tmp / "live.toml"
        self.config.write_text(config_text(tmp, max_order_qty, capture))
        self.port = int(re.search(r"\[metrics\]\nport = (\d+)", self.config.read_text()).group(1))
        self.report_path = tmp / "report.json"
        self.stderr_path = tmp / "stderr.txt"
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                hftmm("live", "--config", str(self.config), "--duration", "600", "--report", str(self.report_path)),
                cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

    def replaced(self) -> int:
        """Order Replaced messages the node's journal file holds so far (the daemon writes it as it runs)."""
        files = list((self.config.parent / "run" / "journal").glob("*.arrow"))
        if not files:
            return 0
        table = read_journal(files[0])
        kinds = table.column("kind").to_numpy()
        rows = [np.frombuffer(blob, ouch.RESPONSE_DTYPE)[0] for blob, kind in
                zip(table.column("data").to_pylist(), kinds, strict=True) if kind == KIND_RESPONSE]  # fmt: skip
        return sum(row["kind"] == ord("U") for row in rows)

    def scrape(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    def wait_for(self, done, wait_s: float) -> None:
        """Poll (scrape) until ``done(body)``, bounded; fails early if the daemon died."""

        def check() -> bool:
            assert self.proc.poll() is None, self.stderr_path.read_text()[-3000:]
            return done(self.scrape())

        step_until(lambda: 0, check, wait_s=wait_s, max_cycles=MAX_POLLS, idle_s=POLL_S)

    def stop(self, scrapes: dict[str, str], kill_output: str = "") -> Session:
        """SIGTERM, wait for the report, look for what it left behind in /dev/shm."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=STOP_S)
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else {}
        pid = str(self.proc.pid)
        leftovers = [name for name in os.listdir("/dev/shm") if f"-{pid}-" in name or name.endswith(f"-{pid}")]
        return Session(self.proc.returncode, out, self.stderr_path.read_text(), report, scrapes, kill_output, leftovers,
                       self.config.parent / "run")  # fmt: skip

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=STOP_S)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """One live session: trade until orders and fills show on /metrics and a requote was replaced,
    ``hftmm kill``, SIGTERM."""
    daemon = Daemon(tmp_path_factory.mktemp("live"))
    try:
        daemon.wait_for(lambda b: metric(b, "hftmm_orders_filled_total") >= 2 and daemon.replaced() > 0, START_S)
        trading = daemon.scrape()
        killed = subprocess.run(hftmm("kill", "--config", str(daemon.config)), cwd=REPO, capture_output=True,
                                text=True, timeout=STOP_S)  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        daemon.wait_for(lambda b: metric(b, "hftmm_kill_switch_engaged") == 1, STOP_S)
        time.sleep(SETTLE_S)
        after_kill = daemon.scrape()
        yield daemon.stop({"trading": trading, "after_kill": after_kill}, killed.stdout)
    finally:
        daemon.kill()


def test_orders_flow_and_fills_arrive(session: Session) -> None:
    assert session.returncode == 0, session.stderr[-3000:]
    report = session.report
    assert sum(report["orders"].values()) > 0 and sum(report["fills"].values()) >= 2
    assert report["t2t_samples"] > 0 and 0 < report["t2t_p50_ns"] <= report["t2t_p99_ns"]
    assert report["unknown_responses"] == 0


def test_positions_match_the_exchange_record_of_our_executions(session: Session) -> None:
    ours = {s: q for s, q in session.report["position"].items() if q}
    assert ours == {s: q for s, q in session.report["exchange_position"].items() if q}


def test_the_metrics_endpoint_serves_the_node_metrics(session: Session) -> None:
    body = session.scrapes["trading"]
    for name in ("hftmm_md_messages_total", "hftmm_orders_sent_total", "hftmm_book_updates_total",
                 "hftmm_tick_to_trade_seconds_count", "hftmm_position", "hftmm_risk_rejections_total"):  # fmt: skip
        assert f"{name}{{" in body, name
    assert 'instrument="AAA",node="mm-1"' in body and metric(body, "hftmm_md_messages_total") > 0
    assert metric(body, "hftmm_node_up") == 1 and metric(body, "hftmm_kill_switch_engaged") == 0


def test_hftmm_kill_cancels_everything_and_stops_quoting(session: Session) -> None:
    assert "kill switch sent" in session.kill_output
    report = session.report
    assert report["killed"] is True
    node = report["nodes"]["mm-1"]
    assert node["killed"] is True and node["working_orders_left"] == 0
    assert report["risk_rejections"]["by_reason"]["kill_switch"] == 0  # halted: nothing is even planned
    after = session.scrapes["after_kill"]
    assert metric(after, "hftmm_orders_sent_total") == sum(report["orders"].values())  # no order after the kill


def test_sigterm_shuts_down_cleanly_with_the_report(session: Session) -> None:
    assert session.returncode == 0 and "Traceback" not in session.stderr
    for key in REPORT_KEYS:
        assert key in session.report, key
    for key in ("orders", "replaces", "fills", "position", "pnl", "fees"):
        assert set(session.report[key]) == {"AAA", "BBB"}
    assert "tick-to-trade" in session.stdout and "AAA" in session.stdout
    assert session.leftovers == []


def test_a_low_risk_limit_rejects_counts_and_sends_nothing(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, max_order_qty=0.5, capture=False)  # every order of the node (1 share) is too big
    try:
        daemon.wait_for(lambda b: metric(b, "hftmm_risk_rejections_total") >= 4, START_S)
        scraped = daemon.scrape()
        session = daemon.stop({"trading": scraped})
    finally:
        daemon.kill()
    assert session.returncode == 0, session.stderr[-3000:]
    report = session.report
    assert report["risk_rejections"]["by_reason"]["order_qty"] >= 4
    assert report["risk_rejections"]["total"] == report["risk_rejections"]["by_reason"]["order_qty"]
    assert sum(report["orders"].values()) == 0 and not any(report["exchange_position"].values())
    assert 'reason="order_qty"' in scraped and metric(scraped, "hftmm_orders_sent_total") == 0


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config_text(tmp_path).replace("[risk]", "[risk]\nmax_positon = 3"))
    done = subprocess.run(hftmm("live", "--config", str(path)), cwd=REPO, capture_output=True, text=True,
                          timeout=STOP_S)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_positon" in lines[0] and str(path) in lines[0]


def test_kill_without_a_daemon_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "live.toml"
    path.write_text(config_text(tmp_path))
    done = subprocess.run(hftmm("kill", "--config", str(path)), cwd=REPO, capture_output=True, text=True,
                          timeout=STOP_S)  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "no live daemon" in done.stderr


def test_the_journal_holds_every_order_sent_and_every_response(session: Session) -> None:
    node = session.report["nodes"]["mm-1"]
    table = read_journal(node["journal"]["file"])
    assert table.num_rows == node["journal"]["records"] > 0
    kinds = table.column("kind").to_numpy()
    sent = [blob[1] for blob, kind in zip(table.column("data").to_pylist(), kinds, strict=True) if kind == KIND_SENT]
    assert sent.count(ord("O")) == sum(session.report["orders"].values())
    assert (kinds == KIND_RESPONSE).sum() == node["responses"]


def journal_messages(session: Session) -> tuple[list[dict], np.ndarray]:
    """The node's journal: the OUCH messages it sent (decoded) and the responses it received (rows)."""
    table = read_journal(session.report["nodes"]["mm-1"]["journal"]["file"])
    blobs = table.column("data").to_pylist()
    kinds = table.column("kind").to_numpy()
    sent = [ouch.decode(ouch.INBOUND, blob[1:]) for blob, kind in zip(blobs, kinds, strict=True) if kind == KIND_SENT]
    rows = [np.frombuffer(blob, ouch.RESPONSE_DTYPE) for blob, kind in zip(blobs, kinds, strict=True)
            if kind == KIND_RESPONSE]  # fmt: skip
    return sent, np.concatenate(rows)


def test_requotes_go_out_as_replace_orders_the_exchange_confirms(session: Session) -> None:
    sent, responses = journal_messages(session)
    replaces = [m for m in sent if m["message_type"] == "U"]
    assert replaces and all(m["orig_user_ref_num"] < m["user_ref_num"] for m in replaces)
    assert sum(session.report["replaces"].values()) == len(replaces)  # the report counts every requote
    replaced = responses[responses["kind"] == ord("U")]
    assert len(replaced) > 0 and set(replaced["user_ref_num"]) <= {m["user_ref_num"] for m in replaces}
    # the positions test above holds with them: the exchange's executions of replaced orders are ours too


def test_fees_are_the_fee_rates_times_the_value_of_each_execution(session: Session) -> None:
    sent, responses = journal_messages(session)
    symbol_of = {}
    for m in sent:  # Enter Orders name their symbol; a replacement trades its original's
        if m["message_type"] == "O":
            symbol_of[m["user_ref_num"]] = m["symbol"]
        elif m["message_type"] == "U":
            symbol_of[m["user_ref_num"]] = symbol_of[m["orig_user_ref_num"]]
    expected = {"AAA": 0.0, "BBB": 0.0}
    executions = responses[responses["kind"] == ord("E")]
    assert len(executions) == sum(session.report["fills"].values())
    for e in executions:
        rate = MAKER_FEE if e["liquidity_flag"] in oms.MAKER_FLAGS else TAKER_FEE
        expected[symbol_of[int(e["user_ref_num"])]] += rate * int(e["qty"]) * int(e["price"]) * 1e-4
    assert session.report["fees"] == pytest.approx(expected, abs=1e-5)
    assert any(session.report["fees"].values())


def replay_capture(path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``hftmm backtest --data CAPTURE --json``, as a user checks a session; its exit and JSON."""
    done = subprocess.run(hftmm("backtest", "--data", str(path), "--json"), cwd=REPO, capture_output=True, text=True,
                          timeout=START_S)  # fmt: skip
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


def test_the_session_capture_replays_to_the_same_decisions(session: Session) -> None:
    """Live/backtest parity: the node's capture, replayed through the same decoder, step and strategy with the
    recorded responses, sees the same book at every step and writes the same orders, byte for byte; and its
    figures are the live session's."""
    (capture,) = session.runtime.glob("capture/mm-1-*.capture.arrow")
    assert session.report["nodes"]["mm-1"]["capture"] == str(capture) and str(capture) in session.stdout
    done, out = replay_capture(capture)
    assert done.returncode == 0, (done.stderr[-2000:], out.get("parity"))
    assert done.stderr == ""
    parity = out["parity"]
    assert parity["same_decisions"] and parity["first_mismatch"] is None
    assert parity["orders_recorded"] == parity["orders_replayed"] > 0
    assert parity["book_mismatches"] == 0 == parity["order_mismatches"]
    report = session.report
    for symbol in ("AAA", "BBB"):
        figures = out["symbols"][symbol]
        assert figures["orders"] == report["orders"][symbol] and figures["fills"] == report["fills"][symbol]
        assert figures["position"] == report["position"][symbol]
        assert figures["pnl"] == pytest.approx(report["pnl"][symbol], abs=1e-9)
        assert figures["fees"] == pytest.approx(report["fees"][symbol], abs=1e-9)
    assert out["events"] > 0 and out["strategy"] == "touch" and out["symbol"] == "AAA"
    assert out["orders"] == report["orders"]["AAA"]


def replay_altered_capture(session: Session, tmp_path: Path, kind: int) -> tuple[dict, int]:
    """The session's capture with the first record of ``kind`` altered (its last byte flipped), replayed: the
    parity figures, and the step of the altered record. The replay must exit 1."""
    import pyarrow as pa

    (capture,) = session.runtime.glob("capture/mm-1-*.capture.arrow")
    with pa.ipc.open_stream(pa.memory_map(str(capture))) as reader:
        table = reader.read_all()
    data = table.column("data").to_pylist()
    first = table.column("kind").to_pylist().index(kind)
    data[first] = data[first][:-1] + bytes([data[first][-1] ^ 1])
    table = table.set_column(table.schema.get_field_index("data"), "data", pa.array(data, pa.binary()))
    altered = tmp_path / "altered.capture.arrow"
    with pa.ipc.new_stream(str(altered), table.schema) as writer:
        writer.write_table(table)
    done, out = replay_capture(altered)
    assert done.returncode == 1, done.stderr[-2000:]
    return out["parity"], table.column("step")[first].as_py()


def test_a_capture_whose_orders_disagree_with_its_replay_is_reported(session: Session, tmp_path: Path) -> None:
    """One recorded order altered: the replay must say the decisions differ, at that step, and exit 1."""
    from engine.live.capture import K_ORDER

    parity, step = replay_altered_capture(session, tmp_path, K_ORDER)
    assert not parity["same_decisions"] and parity["order_mismatches"] >= 1
    assert parity["first_mismatch"]["what"] == "orders" and parity["first_mismatch"]["step"] == step


def test_a_capture_whose_book_disagrees_with_its_replay_is_reported(session: Session, tmp_path: Path) -> None:
    """One step's recorded top of book altered: the book side of the comparison must catch it, at that step."""
    from engine.live.capture import K_STEP

    parity, step = replay_altered_capture(session, tmp_path, K_STEP)
    assert not parity["same_decisions"] and parity["book_mismatches"] == 1 and parity["order_mismatches"] == 0
    assert parity["first_mismatch"]["what"] == "book" and parity["first_mismatch"]["step"] == step


def test_a_node_killed_mid_session_is_restarted_from_its_journal(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, capture=False)  # the compiled loop journals
    try:
        daemon.wait_for(lambda b: metric(b, "hftmm_orders_filled_total") >= 1, START_S)
        control = np.memmap(f"/dev/shm/hftmm-control-{daemon.proc.pid}-mm-1", np.int64, "r", shape=(CB.CT_SLOTS,))
        first_pid = int(control[CB.CT_PID])
        os.kill(first_pid, signal.SIGKILL)
        daemon.wait_for(lambda b: metric(b, "hftmm_node_restarts_total") == 1 and control[CB.CT_STATE] == CB.ST_RUNNING
                        and int(control[CB.CT_PID]) not in (0, first_pid), START_S)  # fmt: skip
        time.sleep(SETTLE_S)  # the new life has published the counters it rebuilt from the journal ...
        rebuilt = metric(daemon.scrape(), "hftmm_orders_sent_total")
        daemon.wait_for(lambda b: metric(b, "hftmm_orders_sent_total") > rebuilt, START_S)  # ... and quotes again
        session = daemon.stop({})
    finally:
        daemon.kill()
    assert session.returncode == 0, session.stderr[-3000:]
    report = session.report
    assert report["nodes"]["mm-1"]["restarts"] == 1 and "restart 1" in session.stderr
    assert re.search(
        r"node mm-1: recovered \d+ working orders and positions from [1-9]\d* journal records", session.stderr
    )
    assert sum(report["orders"].values()) >= 1 and session.leftovers == []
    # the successor carried the dead node's fills on: our positions are the exchange's record of our executions
    assert sum(report["fills"].values()) >= 1
    assert {s: q for s, q in report["position"].items() if q} == {
        s: q for s, q in report["exchange_position"].items() if q
    }
    assert report["unknown_responses"] == 0
