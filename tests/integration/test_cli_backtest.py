"""``hftmm backtest`` as a user runs it: a separate process, real files, the JSON contract, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.backtest.backtest import backtest
from engine.backtest.result import ANNUALISE_MIN_S
from feeds.hftbacktest import BUY_EVENT, EXCH_EVENT, HBT_DEPTH, HBT_DTYPE, LOCAL_EVENT, SELL_EVENT
from tests.conftest import real_file
from tests.integration.test_cli import run

HFTBACKTEST_NPZ = "hftbacktest/usdm_btcusdt_20240808_head120k.npz"
# the keys (and types) that tools reading `hftmm backtest --json` rely on
JSON_KEYS = {
    "events": int,
    "elapsed_s": float,
    "events_per_s": float,
    "orders": int,
    "fills": int,
    "position": int,
    "position_lots": int,
    "pnl": float,
    "pnl_gross": float,
    "fees": float,
    "sharpe": float,
    "ratio_period": str,
    "max_drawdown": float,
}


@pytest.fixture(scope="module")
def itch_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated ITCH day (L3, several symbols)."""
    folder = tmp_path_factory.mktemp("bt")
    done = run("gen-itch", "-o", "day.itch.gz", "--messages", 40_000, "--symbols", 3, "--seed", 5, cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "day.itch.gz"


@pytest.fixture(scope="module")
def symbol(itch_day: Path) -> str:
    """The busiest symbol of the day, as the error for a missing --symbol names it."""
    listed = run("backtest", "--data", itch_day, "--strategy", "touch", "--json", cwd=itch_day.parent)
    assert listed.returncode == 2 and "--symbol" in listed.stderr and "Traceback" not in listed.stderr
    symbol = listed.stderr.split("busiest: ")[1].split(",")[0].strip(") \n")
    # compile the backtest loop here, without a subprocess timeout; the CLI processes load it from the cache
    backtest(str(itch_day), "touch", symbol=symbol, progress=False)
    return symbol


def test_backtest_itch_day_json_and_outputs(itch_day: Path, symbol: str, tmp_path: Path) -> None:
    done = run(
        "backtest", "--data", itch_day, "--strategy", "touch", "--symbol", symbol,
        "--param", "order_qty=100", "--param", "max_position=500", "--param", "interval_ns=1000000000",
        "--maker-fee", "-0.0002", "--taker-fee", "0.0003", "--out", "out", "--json", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    for key, kind in JSON_KEYS.items():
        assert isinstance(stats[key], kind), key
    assert stats["events"] > 0 and stats["orders"] > 0 and stats["data"] == "L3"
    assert abs(stats["position"]) <= 500
    fills = pq.read_table(tmp_path / "out" / "fills.parquet")
    assert fills.num_rows == stats["fills"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["fills"] == stats["fills"]
    assert (tmp_path / "out" / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    equity = pq.read_table(tmp_path / "out" / "equity.parquet")
    assert equity.num_rows > 0
    assert stats["position_lots"] == stats["position"]
    assert stats["pnl_gross"] == pytest.approx(stats["pnl"] + stats["fees"]) and stats["fees"] != 0
    span_s = (equity["ts_ns"][-1].as_py() - equity["ts_ns"][0].as_py()) / 1e9
    assert stats["ratio_period"] == ("year" if span_s >= ANNUALISE_MIN_S else "second")


def test_backtest_params_file_and_text_report(itch_day: Path, symbol: str, tmp_path: Path) -> None:
    (tmp_path / "touch.toml").write_text("[params]\norder_qty = 50\nmax_position = 100\n")
    done = run("backtest", "--data", itch_day, "--strategy", "touch", "--symbol", symbol, "--params", "touch.toml",
               "--param", "order_qty=100", "-q", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "order_qty=100" in done.stdout and "max_position=100" in done.stdout
    gross, fees, net = (float(v.replace(",", "")) for v in re.search(
        r"^pnl +(-?[\d,.]+) \(gross\), fees (-?[\d,.]+), net (-?[\d,.]+);", done.stdout, re.M).groups())  # fmt: skip
    assert gross - fees == pytest.approx(net, abs=0.011)
    assert re.search(r"^ratios +Sharpe -?[\d.]+, Sortino -?[\d.]+ (per second \(not annualised|\(per-second changes, "
                     r"annualised\))", done.stdout, re.M), done.stdout  # fmt: skip


def test_backtest_risk_file_and_no_replace(itch_day: Path, symbol: str, tmp_path: Path) -> None:
    (tmp_path / "live.toml").write_text("[risk]\nmax_order_qty = 150\n[other]\nignored = 1\n")
    done = run("backtest", "--data", itch_day, "--strategy", "touch", "--symbol", symbol, "--risk", "live.toml",
               "--no-replace", "--param", "order_qty=200", "--param", "max_position=1000", "-q",
               cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^orders +0 sent, 0 replaced,", done.stdout, re.M), done.stdout
    assert re.search(r"^risk +order_qty [\d,]+ refused by pre-trade risk", done.stdout, re.M), done.stdout
    replacing = run("backtest", "--data", itch_day, "--strategy", "touch", "--symbol", symbol, "--param",
                    "interval_ns=1000000", "--json", "-q", cwd=tmp_path)  # fmt: skip
    assert replacing.returncode == 0, replacing.stderr
    assert json.loads(replacing.stdout)["replaces"] > 0  # the live default: requotes are replaces
    (tmp_path / "bad.toml").write_text("[risk]\nmax_position = -1\n")
    bad = run("backtest", "--data", itch_day, "--strategy", "touch", "--symbol", symbol, "--risk", "bad.toml",
              cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "bad.toml" in bad.stderr and "Traceback" not in bad.stderr


def test_backtest_hftbacktest_npz(replay_data: Path, tmp_path: Path) -> None:
    npz = real_file(replay_data, HFTBACKTEST_NPZ)
    done = run(
        "backtest", "--data", npz, "--strategy", "touch", "--tick-size", "0.1", "--lot-size", "0.001",
        "--param", "order_qty=0.001", "--param", "max_position=0.01", "--queue", "power:2",
        "--latency", "constant:1000000,1000000", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["events"] == 120_000 and stats["data"] == "L2"
    assert stats["fills"] > 0 and abs(stats["position"]) <= 10  # lots of 0.001 within max_position 0.01


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "martingale"], "unknown strategy"),
        (["--strategy", "touch", "--param", "spread=2"], "no parameter spread"),
        (["--strategy", "touch", "--param", "order_qty"], "NAME=NUMBER"),
        (["--strategy", "touch", "--latency", "fast"], "--latency"),
        (["--strategy", "touch", "--queue", "power:2"], "L2 data only"),
        (["--strategy", "touch", "--params", "missing.toml"], "missing.toml"),
        (["--strategy", "touch", "--symbol", "NOPE"], "symbol NOPE"),
    ],
)
def test_backtest_bad_options_are_one_line_errors(
    itch_day: Path, symbol: str, tmp_path: Path, args: list, message: str
) -> None:
    done = run("backtest", "--data", itch_day, "--symbol", symbol, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_backtest_npz_without_tick_size_is_a_clear_error(replay_data: Path, tmp_path: Path) -> None:
    npz = real_file(replay_data, HFTBACKTEST_NPZ)
    done = run("backtest", "--data", npz, "--strategy", "touch", cwd=tmp_path)
    assert done.returncode == 2 and "--tick-size" in done.stderr and "Traceback" not in done.stderr


def test_backtest_npz_ticks_and_lots_from_an_instrument_file(replay_data: Path, tmp_path: Path) -> None:
    npz = real_file(replay_data, HFTBACKTEST_NPZ)
    (tmp_path / "inst.toml").write_text(
        '[[instruments]]\nsymbol = "usdm_btcusdt_20240808_head120k"\ntick_size = 0.1\nlot_size = 0.001\n'
    )
    args = ["backtest", "--data", npz, "--strategy", "touch", "--param", "order_qty=0.001", "--json", "-q"]
    done = run(*args, "--instruments", "inst.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    flags = run(*args, "--tick-size", "0.1", "--lot-size", "0.001", cwd=tmp_path)
    same = ("fills", "orders", "position", "pnl")
    assert {k: json.loads(done.stdout)[k] for k in same} == {k: json.loads(flags.stdout)[k] for k in same}
    (tmp_path / "bad.toml").write_text('[[instruments]]\nsymbol = "X"\ntick = 0.1\n')
    bad = run(*args, "--instruments", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and "bad.toml" in bad.stderr and "Traceback" not in bad.stderr


def test_backtest_runs_a_strategy_module_of_ones_own(itch_day: Path, symbol: str, tmp_path: Path) -> None:
    """No edit to ``strategies``: ``--strategy module:ATTRIBUTE`` of the template package beside the user's data."""
    from tests.unit.strategies.test_plugins import install_template

    install_template(tmp_path)
    done = run("backtest", "--data", itch_day, "--strategy", "my_mm.outside:OUTSIDE", "--symbol", symbol,
               "--param", "order_qty=100", "--param", "max_position=500", "--json", "-q", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["orders"] > 0
    bad = run("backtest", "--data", itch_day, "--strategy", "my_mm.outside:NOPE", "--symbol", symbol, cwd=tmp_path)
    assert bad.returncode == 2 and "has no 'NOPE'" in bad.stderr and "Traceback" not in bad.stderr


def synthetic_npz_rows(n: int = 400) -> np.ndarray:
    """``n`` hftbacktest depth updates around 100.0, alternating bid and ask (tick 0.1, lot 0.001)."""
    rows = np.zeros(n, HBT_DTYPE)
    side = np.where(np.arange(n) % 2 == 0, BUY_EVENT, SELL_EVENT)
    rows["ev"] = EXCH_EVENT | LOCAL_EVENT | side | HBT_DEPTH
    rows["exch_ts"] = rows["local_ts"] = 1_000_000_000 + 1_000_000 * np.arange(n)
    rows["px"] = np.where(side == BUY_EVENT, 99.9, 100.1) - 0.1 * (np.arange(n) % 5)
    rows["qty"] = 0.5
    return rows


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ("corrupt", r"not a readable \.npz file \(Error -3"),
        ("nan", r"offset 640: seq 10: price nan or quantity 0\.5 is not a finite"),
        ("huge", r"offset 640: seq 10: price -1e\+18 or quantity 0\.5 is not a finite"),
    ],
)
def test_backtest_on_a_damaged_npz_is_a_one_line_error(tmp_path: Path, damage: str, pattern: str) -> None:
    rows = synthetic_npz_rows()
    if damage == "nan":
        rows["px"][10] = np.nan
    elif damage == "huge":
        rows["px"][10] = -1e18
    path = tmp_path / f"{damage}.npz"
    np.savez_compressed(path, data=rows)
    if damage == "corrupt":  # overwrite the start of the deflate stream (zlib.error), the zip directory intact
        raw = bytearray(path.read_bytes())
        stream = 30 + int.from_bytes(raw[26:28], "little") + int.from_bytes(raw[28:30], "little")  # after the header
        raw[stream : stream + 32] = b"\xff" * 32
        path.write_bytes(bytes(raw))
    done = run("backtest", "--data", path, "--strategy", "touch", "--tick-size", "0.1", "--lot-size", "0.001",
               cwd=tmp_path)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert path.name in lines[0] and re.search(pattern, lines[0]), lines[0]
