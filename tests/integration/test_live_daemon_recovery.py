"""The live daemon survives its own ``kill -9``: against a real ``hftmm sim-exchange`` process that keeps
running, ``hftmm live`` trades, is SIGKILLed, and a restart with the same config rebuilds its orders and
positions from the dead run's journals (files and /dev/shm rings), resumes the OUCH session so the
exchange replays what the dead run never read, and goes on: no lost fill, no duplicate order id. After
a clean shutdown, the next run starts flat again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.live.config import ExchangeConfig, LiveConfig
from engine.live.daemon import LiveDaemon, LiveError
from engine.live.journal import (
    KIND_RESPONSE,
    KIND_SENT,
    SCHEMA,
    JournalRing,
    JournalWriter,
    append_nb,
    journal_file_name,
    new_records,
    read_journal,
    read_journals,
    resume_sequence,
    run_files,
)
from engine.live.recovery import process_alive
from engine.runtime import control as CB
from engine.runtime.aeron import AeronConfig
from engine.runtime.metrics import MetricsConfig
from feeds import ouch
from tests.conftest import step_until
from tests.integration.test_live import MAX_POLLS, POLL_S, START_S, STOP_S, hftmm, metric
from tests.integration.test_simexchange import REPO, CliExchange, free_port, free_tcp_port

USER = "MM1"
NODE = "mm-1"


# --- the journal pieces recovery stands on (no processes) -------------------------------------------
def ring_with(records: int) -> JournalRing:
    ring = JournalRing.private(16)
    payload = np.arange(8, dtype=np.uint8)
    for k in range(records):
        assert append_nb(ring.meta, ring.data, ring.ctl, KIND_SENT, 100 + k, 0, payload, k % 4, 3)
    return ring


def test_ring_records_already_in_the_file_are_not_taken_twice() -> None:
    batch, upto = ring_with(5).unread()
    assert upto == 5
    assert new_records(batch, pa.Table.from_batches([batch.slice(0, 3)])).num_rows == 2  # died between the two
    assert new_records(batch, pa.Table.from_batches([batch])).num_rows == 0
    assert new_records(batch, SCHEMA.empty_table()).num_rows == 5
    assert new_records(batch, pa.Table.from_batches([batch.slice(3)])).num_rows == 5  # no overlap at the head


def test_unread_keeps_the_records_until_released() -> None:
    ring = ring_with(3)
    batch, upto = ring.unread()
    assert batch.num_rows == 3 and ring.unread()[0].num_rows == 3
    ring.release(upto)
    assert ring.unread()[0].num_rows == 0


def test_the_writer_drains_a_ring_into_its_file_then_frees_it(tmp_path: Path) -> None:
    ring = ring_with(3)
    writer = JournalWriter(tmp_path / "j.arrow")
    assert writer.drain(ring) == 3 and writer.drain(ring) == 0
    writer.close()
    assert read_journal(tmp_path / "j.arrow").column("ts_ns").to_pylist() == [100, 101, 102]


def test_the_session_resumes_after_the_last_response_held_counting_from_the_first() -> None:
    def table(kinds: list[int], seqs: list[int]) -> pa.Table:
        n = len(kinds)
        return pa.table({"ts_ns": list(range(n)), "kind": pa.array(kinds, pa.uint8()), "seq": seqs,
                         "data": [b""] * n}, schema=SCHEMA)  # fmt: skip

    assert resume_sequence(table([KIND_RESPONSE] * 3, [1, 2, 3])) == 4
    assert resume_sequence(table([KIND_RESPONSE, KIND_SENT, KIND_RESPONSE], [41, 0, 42])) == 43  # after a clean run
    assert resume_sequence(table([KIND_RESPONSE] * 3, [7, 8, 10])) == 9  # a hole: replay from it
    assert resume_sequence(table([KIND_SENT], [0])) == 1


def test_run_files_are_one_nodes_files_of_one_daemon_run_oldest_first(tmp_path: Path) -> None:
    for node, started, pid in (("mm-1", "20260101T000002Z", 7), ("mm-1", "20260101T000001Z", 7),
                               ("mm-1-x", "20260101T000001Z", 7), ("mm-1", "20260101T000001Z", 77)):  # fmt: skip
        (tmp_path / journal_file_name(node, started, pid)).write_bytes(b"")
    got = [p.name for p in run_files(tmp_path, "mm-1", 7)]
    assert got == ["mm-1-20260101T000001Z-7.arrow", "mm-1-20260101T000002Z-7.arrow"]
    (tmp_path / journal_file_name("mm-1", "20260101T000003Z", 7, ring=True)).write_bytes(b"")
    assert run_files(tmp_path, "mm-1", 7)[-1].name == "mm-1-20260101T000003Z-7.ring.arrow"
    assert run_files(tmp_path / "missing", "mm-1", 7) == [] and read_journals([]).num_rows == 0


# --- the marker of a run to recover: live.pid naming a dead process ---------------------------------
def failing_start(tmp_path: Path) -> None:
    """A daemon start against an external exchange that fails early: its metrics port is taken."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = LiveConfig(
            runtime_dir=str(tmp_path),
            exchange=ExchangeConfig(embedded=False),
            aeron=AeronConfig(dir=str(tmp_path / "aeron"), attach=True),
            metrics=MetricsConfig(port=busy.getsockname()[1]),
        )
        daemon = LiveDaemon(config, out=lambda _: None)
        with pytest.raises(LiveError, match=rf"metrics.port {config.metrics.port} .* is already in use"):
            daemon.start()


def test_a_start_that_fails_while_recovering_leaves_the_dead_run_to_the_next(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    (tmp_path / "live.pid").write_text(f"{ended.pid}\n")  # a daemon that died without a clean exit
    failing_start(tmp_path)
    assert (tmp_path / "live.pid").read_text().strip() == str(os.getpid())  # dead once this process ends


def test_a_start_that_fails_with_nothing_to_recover_leaves_no_pid_file(tmp_path: Path) -> None:
    failing_start(tmp_path)
    assert not (tmp_path / "live.pid").exists()


# --- end to end: an external exchange, the daemon killed and restarted ----------------------------
def exchange_config(md_port: int, retransmission_port: int, aeron_dir: Path) -> str:
    """The sim-exchange: two instruments, one OUCH user for the node (IPC on its own driver). A node
    that joins later (every one of a restarted daemon) has the market data from the session start
    retransmitted to build its books: the history keeps all of it."""
    return f"""
warm_up_s = 2.0
[market_data]
port = {md_port}
retransmission_port = {retransmission_port}
heartbeat_interval_ms = 100
history_messages = 1048576
[aeron]
dir = "{aeron_dir}"
[[order_entry.users]]
username = "{USER}"
password = "secret"
inbound_stream_id = 1001
outbound_stream_id = 1002
[[instruments]]
locate = 1
symbol = "AAA"
[[instruments]]
locate = 2
symbol = "BBB"
tick = 50
initial_price = 500000
"""


def live_config(tmp: Path, md_port: int, retransmission_port: int, aeron_dir: Path) -> str:
    """The daemon attached to the exchange's driver, one node quoting the touch on both instruments."""
    return f"""
runtime_dir = "{tmp / "run"}"
stop_wait_s = 5.0
[exchange]
embedded = false
md_port = {md_port}
retransmission_port = {retransmission_port}
[aeron]
dir = "{aeron_dir}"
attach = true
[metrics]
port = {free_tcp_port()}
[risk]
max_position = 1000
max_order_qty = 500
[[instruments]]
symbol = "AAA"
[[instruments]]
symbol = "BBB"
tick = 50
[[nodes]]
name = "{NODE}"
strategy = "touch"
symbols = ["AAA", "BBB"]
idle = "backoff"
username = "{USER}"
params = {{ order_qty = 1, max_position = 50, interval_ns = 0 }}
"""


class LiveRun:
    """One ``hftmm live`` process with the shared config (stdout and stderr to files)."""

    def __init__(self, tmp: Path, config: Path, name: str, duration_s: float) -> None:
        self.report_path = tmp / f"{name}.json"
        self.journal_dir = tmp / "run" / "journal"
        self.stdout_path = tmp / f"{name}.out"
        self.stderr_path = tmp / f"{name}.err"
        self.port = int(config.read_text().split("[metrics]\nport = ")[1].split()[0])
        command = hftmm("live", "--config", str(config), "--duration", str(duration_s), "--report",
                        str(self.report_path))  # fmt: skip
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=err, text=True)

    def scrape(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    def wait_for(self, done, wait_s: float = START_S) -> None:
        """Poll until ``done()``, bounded; fails at once if the daemon ended."""

        def check() -> bool:
            assert self.proc.poll() is None, self.stderr_path.read_text()[-3000:]
            return done()

        step_until(lambda: 0, check, wait_s=wait_s, max_cycles=MAX_POLLS, idle_s=POLL_S)

    def control(self) -> np.ndarray:
        """The node's control block (its state and process id)."""
        return np.fromfile(f"/dev/shm/hftmm-control-{self.proc.pid}-{NODE}", np.int64, CB.CT_SLOTS)

    def running(self) -> bool:
        """The node runs and has sent an order in this life: this daemon's own journal file holds one (its
        metrics would not tell: the order counters are rebuilt from the dead run's journal)."""
        path = f"/dev/shm/hftmm-control-{self.proc.pid}-{NODE}"
        return os.path.exists(path) and self.control()[CB.CT_STATE] == CB.ST_RUNNING and self.sent() >= 1

    def sent(self) -> int:
        """OUCH messages this daemon's node journaled as sent so far."""
        files = run_files(self.journal_dir, NODE, self.proc.pid)
        return sum(int((read_journal(f).column("kind").to_numpy() == KIND_SENT).sum()) for f in files)

    def finish(self, sig: int | None = signal.SIGTERM) -> dict:
        """Stop it (``sig``; None: wait for its duration) and return its report ({} without one)."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=STOP_S if sig is not None else START_S)
        return json.loads(self.report_path.read_text()) if self.report_path.exists() else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_S)


@dataclass
class Story:
    """What the three runs and the exchange left behind."""

    pid1: int
    pid2: int
    pid3: int
    left_by_the_kill: dict[str, bool]
    old_node_pid: int
    old_node_alive_after_restart: bool
    run1_report: dict
    run2: tuple[int, str, str, dict]
    run3: tuple[int, str, str, dict]
    exchange: dict
    journals: list[Path]
    runtime_left: list[str]
    shm_left: list[str]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """Exchange up; run 1 trades until fills, kill -9; run 2 recovers, trades, SIGTERM; run 3 (a clean
    previous shutdown) for a moment; exchange SIGTERM with its report."""
    tmp = tmp_path_factory.mktemp("recovery")
    shm = Path(f"/dev/shm/hftmm-test-recovery-{os.getpid()}")
    aeron_dir = shm / "aeron"
    md_port, retransmission_port = free_port(), free_port()
    (tmp / "sim.toml").write_text(exchange_config(md_port, retransmission_port, aeron_dir))
    config = tmp / "live.toml"
    config.write_text(live_config(tmp, md_port, retransmission_port, aeron_dir))
    runs: list[LiveRun] = []
    exchange = None
    try:
        args = ("--duration", str(6 * START_S), "--report", str(tmp / "exchange.json"))  # the last --duration counts
        exchange = CliExchange(tmp / "sim.toml", args=args, wait_s=START_S)
        run1 = LiveRun(tmp, config, "run1", 4 * START_S)
        runs.append(run1)
        run1.wait_for(lambda: metric(run1.scrape(), "hftmm_orders_filled_total") >= 2)
        run1.proc.send_signal(signal.SIGKILL)
        run1.proc.wait(timeout=STOP_S)
        pid1 = run1.proc.pid
        left = {
            "pid_file": (tmp / "run" / "live.pid").read_text().strip() == str(pid1),
            "ring": os.path.exists(f"/dev/shm/hftmm-journal-{pid1}-{NODE}"),
            "journal_file": bool(run_files(tmp / "run" / "journal", NODE, pid1)),
        }
        old_node_pid = int(run1.control()[CB.CT_PID])

        run2 = LiveRun(tmp, config, "run2", 4 * START_S)
        runs.append(run2)
        run2.wait_for(run2.running)
        old_alive = process_alive(old_node_pid)
        report2 = run2.finish()
        run2_out = (run2.proc.returncode, run2.stdout_path.read_text(), run2.stderr_path.read_text(), report2)

        run3 = LiveRun(tmp, config, "run3", 1.0)  # after a clean shutdown: no recovery
        runs.append(run3)
        report3 = run3.finish(None)
        run3_out = (run3.proc.returncode, run3.stdout_path.read_text(), run3.stderr_path.read_text(), report3)

        exchange.stop()
        pids = [r.proc.pid for r in runs]
        yield Story(
            pid1=pid1,
            pid2=pids[1],
            pid3=pids[2],
            left_by_the_kill=left,
            old_node_pid=old_node_pid,
            old_node_alive_after_restart=old_alive,
            run1_report=run1.finish(None),
            run2=run2_out,
            run3=run3_out,
            exchange=json.loads((tmp / "exchange.json").read_text()),
            journals=sorted((tmp / "run" / "journal").glob("*.arrow")),
            runtime_left=sorted(os.listdir(tmp / "run")),
            shm_left=[n for n in os.listdir("/dev/shm") for p in pids if f"-{p}-" in n or n.endswith(f"-{p}")],
        )
    finally:
        for run in runs:
            run.kill()
        if exchange is not None:
            if exchange.proc.poll() not in (None, 0):  # it failed: say why in the test's output
                print(exchange.proc.stderr.read()[-3000:])
            exchange.kill()
        shutil.rmtree(shm, ignore_errors=True)
        for pid in [r.proc.pid for r in runs]:
            for name in os.listdir("/dev/shm"):
                if f"-{pid}-" in name:
                    os.unlink(f"/dev/shm/{name}")


def test_the_killed_daemon_left_its_state_behind(story: Story) -> None:
    assert story.left_by_the_kill == {"pid_file": True, "ring": True, "journal_file": True}
    assert story.run1_report == {}  # it never reported


def test_the_restart_recovers_from_the_dead_runs_journals_and_says_so(story: Story) -> None:
    code, out, err, report = story.run2
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert f"recovered from the live daemon that died (pid {story.pid1})" in out
    recovery = report["recovery"]
    assert recovery["pid"] == story.pid1
    node = recovery["nodes"][NODE]
    assert node["records"] > 0 and node["files"][0].endswith(f"-{story.pid1}.arrow")
    assert all(f"-{story.pid1}." in f for f in node["files"])  # its file, and the records its ring held
    assert node["resume_sequence"] > 1  # the dead run read responses: the session goes on after them


def test_no_node_of_the_dead_daemon_runs_beside_the_new_one(story: Story) -> None:
    assert story.old_node_pid > 0 and not story.old_node_alive_after_restart


def test_no_lost_fill_our_positions_are_the_exchanges_record_of_our_executions(story: Story) -> None:
    report = story.run2[3]
    assert report["unknown_responses"] == 0  # (duplicates may come in any run: a cancel of a rejected order)
    executed = story.exchange["positions"][USER]
    assert story.exchange["stats"]["executions"] > 0 and story.exchange["orders"][USER]["accepted"] > 0
    run3 = story.run3[3]  # started flat after the clean shutdown of run 2: what it traded comes on top
    final = {s: report["position"].get(s, 0) + run3["position"].get(s, 0) for s in ("AAA", "BBB")}
    assert {s: q for s, q in final.items() if q} == {s: q for s, q in executed.items() if q}


def test_no_order_id_was_used_twice(story: Story) -> None:
    assert str(ouch.REJECT_OTHER) not in story.exchange["orders"][USER]["rejected"]  # a repeated or lower id
    sent = []
    for path in story.journals:
        table = read_journal(path)
        kinds = table.column("kind").to_numpy()
        for blob, kind in zip(table.column("data").to_pylist(), kinds, strict=True):
            if kind == KIND_SENT and blob[1] == ord("O"):
                sent.append(int(ouch.decode(ouch.INBOUND, blob[1:])["user_ref_num"]))
    assert len(sent) > 0 and len(set(sent)) == len(sent)


def test_a_clean_shutdown_leaves_nothing_to_recover(story: Story) -> None:
    code, out, err, report = story.run3
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert "recovered" not in out and report["recovery"] is None
    assert "live.pid" not in story.runtime_left and "live.session.json" not in story.runtime_left
    assert story.shm_left == []  # the dead run's blocks and rings were removed, the clean runs removed theirs
