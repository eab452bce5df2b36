"""``hftmm live`` refuses what it cannot run with one line on stderr and exit status 2, before any node
starts: strategy parameters out of range, a CPU the process may not use, a port in use (metrics, market data,
the embedded exchange's re-requests)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_live import REPO, STOP_S, config_text, hftmm


def refused(tmp_path: Path, text: str) -> str:
    """Run ``hftmm live`` on ``text``; the one stderr line it exits 2 with."""
    path = tmp_path / "live.toml"
    path.write_text(text)
    done = subprocess.run(hftmm("live", "--config", str(path), "--duration", "5"), cwd=REPO, capture_output=True,
                          text=True, timeout=STOP_S)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(path) in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("order_qty = 1,", "order_qty = -100,", "order_qty = -100 must be > 0"),
        ('strategy = "touch"', f'strategy = "touch"\ncpu = {os.cpu_count()}', f"cpu {os.cpu_count()} is not one"),
    ],
    ids=["negative_order_qty", "cpu_out_of_range"],
)
def test_values_out_of_range_are_refused(tmp_path: Path, old: str, new: str, reason: str) -> None:
    text = config_text(tmp_path)
    assert old in text
    assert reason in refused(tmp_path, text.replace(old, new))


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("metrics.port", socket.SOCK_STREAM),
        ("exchange.md_port", socket.SOCK_DGRAM),
        ("exchange.retransmission_port", socket.SOCK_DGRAM),
    ],
)
def test_a_port_in_use_is_refused_naming_its_config_key_and_the_port(tmp_path: Path, key: str, kind: int) -> None:
    text = config_text(tmp_path)
    section, name = key.split(".")
    port = int(re.search(rf"\[{section}\][^\[]*?\b{name} = (\d+)", text).group(1))
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        line = refused(tmp_path, text)
    assert f"{key} {port} " in line and f"127.0.0.1:{port}) is already in use" in line, line


def test_a_daemon_whose_node_cannot_start_exits_non_zero_with_the_nodes_error(tmp_path: Path) -> None:
    text = config_text(tmp_path).replace("[capture]\nenabled = true", '[capture]\nenabled = true\ndir = "/proc/hftmm"')
    text += "\n[ray]\nmax_restarts = 1\n"
    path = tmp_path / "live.toml"
    path.write_text(text)
    done = subprocess.run(hftmm("live", "--config", str(path), "--duration", "60"), cwd=REPO, capture_output=True,
                          text=True, timeout=STOP_S)  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hftmm: error: node mm-1") and "/proc/hftmm" in last and "Traceback" not in last


def test_without_a_config_the_default_node_quotes_a_market_as_busy_as_the_examples() -> None:
    """``hftmm live`` alone: the default node quotes on every book change, with the example's size, on the
    example's busy flow, not on the quiet default (on which a 60 s session measured 1 to 10 tick-to-trade)."""
    from engine.cli.live import _live_config
    from engine.core.config import load_toml
    from engine.live.config import BUSY_FLOW, DEFAULT_PARAMS, DEFAULT_SYMBOLS, LiveConfig

    config = _live_config(None)
    [node] = config.nodes
    listed = {i.symbol: i for i in config.listed_instruments()}
    assert set(listed) == set(node.symbols) == set(DEFAULT_SYMBOLS) and len(DEFAULT_SYMBOLS) == 2
    example = load_toml(str(REPO / "examples" / "live.toml"), LiveConfig)
    flow = example.listed_instruments()[0]
    for symbol in node.symbols:
        for key, value in BUSY_FLOW.items():
            assert getattr(listed[symbol], key) == value == getattr(flow, key), key
    assert node.params == DEFAULT_PARAMS == example.nodes[0].params
