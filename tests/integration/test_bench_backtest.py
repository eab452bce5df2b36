"""``hftmm bench backtest`` as a user runs it: a separate process, tiny sizes, the files and keys it writes.

No timing is asserted (the machine is shared); what must hold is the shape of the results: one
folder with backtest.json and backtest.md, a row per engine, strategy and data set with positive
rates, the machine, and the ours/hftbacktest ratio when hftbacktest is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

from tests.conftest import real_file
from tests.integration.test_cli import CLI

NPZ = "hftbacktest/usdm_btcusdt_20240808_head120k.npz"
NPZ_EVENTS = 20_000  # about 15 s of Binance BTCUSDT: enough for fills, small enough to be quick
MESSAGES = 30_000
SYMBOLS = 5
BENCH_TIMEOUT_S = 900  # hftbacktest's strategy loop compiles in the child process (minutes on a loaded machine)
ROW_KEYS = {"events", "events_per_s", "median_events_per_s", "ns_per_event", "runs_events_per_s", "fills"}


def test_bench_backtest_with_tiny_sizes_writes_json_and_markdown(replay_data: Path, tmp_path: Path) -> None:
    npz = real_file(replay_data, NPZ)
    out = tmp_path / "results"
    args = ("bench", "backtest", "--npz", npz, "--npz-events", NPZ_EVENTS, "--messages", MESSAGES,
            "--symbols", SYMBOLS, "--repeats", "1", "--out", out)  # fmt: skip
    proc = subprocess.run([*CLI, *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=BENCH_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout

    jsons = list(out.glob("*-backtest/backtest.json"))
    assert len(jsons) == 1, list(out.rglob("*"))
    md = (jsons[0].parent / "backtest.md").read_text()
    result = json.loads(jsons[0].read_text())
    assert result["benchmark"] == "backtest" and result["repeats"] == 1
    assert {"cpu", "cores", "python", "numba", "hftbacktest"} <= set(result["machine"])
    assert result["input"]["npz"]["events"] == NPZ_EVENTS
    assert result["input"]["itch"]["messages"] == MESSAGES and result["input"]["itch"]["symbol"]

    with_hbt = importlib.util.find_spec("hftbacktest") is not None
    expected = ["ours touch, npz (L2)", "ours glft, npz (L2)", "ours touch, ITCH day (L3)", "ours glft, ITCH day (L3)"]
    if with_hbt:
        expected.append("hftbacktest touch, npz (L2)")
    assert set(result["results"]) == set(expected)
    for name, row in result["results"].items():
        assert set(row) >= ROW_KEYS, name
        assert row["events"] > 0 and row["events_per_s"] > 0 and row["median_events_per_s"] > 0, name
        assert len(row["runs_events_per_s"]) == 1, name
        assert f"| {name} |" in md, name
    assert result["results"]["ours touch, npz (L2)"]["events"] == NPZ_EVENTS
    if with_hbt:
        assert set(result["ours_over_hftbacktest"]) == {"touch", "glft"}
        assert result["ours_over_hftbacktest"]["touch"]["best"] > 0
        assert {"ours_fills", "hftbacktest_fills", "ours_position", "hftbacktest_position"} <= set(result["check"])
        assert "hftbacktest touch on the npz file" in md
