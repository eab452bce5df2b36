"""The example notebooks run top to bottom in a real kernel of this environment (nbclient), as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from feeds.udp import free_udp_port
from tests.conftest import real_file
from tests.integration.test_cli import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CELL_TIMEOUT_S = 600  # a cold Numba cache compiles the backtest loop in the first cell that runs it


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run ``examples/<name>`` in a fresh kernel (its folder as the working directory); the executed notebook."""
    book = nbformat.read(EXAMPLES / name, as_version=4)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel process inherits this environment
    try:
        NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(EXAMPLES)}}).execute()  # fmt: skip
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return book


def outputs(book: nbformat.NotebookNode) -> str:
    """Every text output of the executed notebook, joined."""
    texts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + json.dumps(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def test_backtest_walkthrough(replay_data: Path) -> None:
    real_file(replay_data, "hftbacktest/usdm_btcusdt_20240808_head120k.npz")
    book = execute("01-backtest-walkthrough.ipynb", {"HFTMM_REPLAY_DATA": str(replay_data)})
    text = outputs(book)
    assert "BacktestResult" in text and "fills" in text
    images = [out for cell in book.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert len(images) >= 2  # the L2 and the L3 plot


def test_sweep_heatmap() -> None:
    book = execute("02-sweep-heatmap.ipynb", {})
    assert "pnl" in outputs(book)
    assert any("image/png" in out.get("data", {}) for out in book.cells[-1].outputs)


def test_live_session_notebook_reads_a_real_sessions_journal_and_capture(tmp_path: Path) -> None:
    config = tmp_path / "live.toml"
    text = (EXAMPLES / "live.toml").read_text()
    text = text.replace('runtime_dir = "/tmp/hftmm"', f'runtime_dir = "{tmp_path / "run"}"')
    for old, new in (("md_port = 26400", f"md_port = {free_udp_port()}"), ("port = 9108", "port = 0"),
                     ("retransmission_port = 26401", f"retransmission_port = {free_udp_port()}"),
                     ("enabled = false               # true: datagrams", "enabled = true  # datagrams")):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    done = run("live", "--config", config, "--duration", "15", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    book = execute("03-live-session.ipynb", {"HFTMM_SESSION_DIR": str(tmp_path / "run")})
    text = outputs(book)
    assert "sent" in text and "response" in text and "datagrams" in text
