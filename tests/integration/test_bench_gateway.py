"""``hftmm bench gateway`` as a user runs it: the venv's console script, short runs, ``--json`` on stdout.

No timing is asserted (the machine is shared); what must hold is the shape of the report: every
transport with round trips counted and ordered percentiles, the files written, and a comparison
against an earlier run's JSON when asked for one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cli import assert_verdict, comparison_rows, expected_row

HFTMM = str(Path(sys.executable).parent / "hftmm")
LABELS = {"aeron-ipc-compiled", "aeron-ipc", "aeron-udp", "kernel-udp"}
SHORT_RUN = ("--duration", "0.5", "--warmup", "0.2", "--json")
TIMEOUT_S = 120  # a run takes about 10 s; the echo process's start-up is the slow part on a loaded machine


def run_gateway(*args: str) -> subprocess.CompletedProcess:
    """``hftmm bench gateway ARGS`` in a separate process."""
    command = [HFTMM, "bench", "gateway", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def gateway_json(*args: str) -> dict:
    """The result object of a successful short ``--json`` run: the one line on stdout."""
    proc = run_gateway(*SHORT_RUN, *args)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One short run of every transport and the folder it wrote."""
    out = tmp_path_factory.mktemp("first")
    result = gateway_json("--out", str(out))
    folders = list(out.glob("*-gateway"))
    assert len(folders) == 1, list(out.rglob("*"))
    return result, folders[0]


def test_bench_gateway_reports_every_transport_and_writes_json_md_png(first_run: tuple[dict, Path]) -> None:
    result, folder = first_run
    assert set(result["rtt_ns"]) == LABELS
    for label, row in result["rtt_ns"].items():
        assert row["count"] > 0, label
        assert 0 < row["min"] <= row["p50"] <= row["p99"] <= row["max"], label
    assert set(result["ratios"]) == {"kernel-udp/aeron-ipc-compiled", "kernel-udp/aeron-ipc", "kernel-udp/aeron-udp"}
    assert all(ratio["p50"] > 0 for ratio in result["ratios"].values())
    assert result["config"]["duration_s"] == 0.5 and result["config"]["warmup_s"] == 0.2
    assert result["config"]["transports"] == ["ipc-compiled", "ipc", "udp", "kernel-udp"]
    assert {"cpu", "cores", "python"} <= set(result["machine"])
    assert result["notes"]

    assert json.loads((folder / "gateway.json").read_text()) == result
    md = (folder / "gateway.md").read_text()
    assert all(f"| {label} |" in md for label in LABELS)
    assert (folder / "gateway-rtt.png").stat().st_size > 0


def test_bench_gateway_compare_lists_each_transport_against_the_earlier_run(
    first_run: tuple[dict, Path], tmp_path: Path
) -> None:
    earlier = json.loads((first_run[1] / "gateway.json").read_text())
    for label in ("aeron-ipc", "kernel-udp"):  # an earlier p50 no run can match, whether it measured or not
        earlier["rtt_ns"][label]["p50"] = 1
    old_json = tmp_path / "earlier.json"
    old_json.write_text(json.dumps(earlier))
    result = gateway_json("--transports", "ipc,kernel-udp", "--out", str(tmp_path), "--compare", str(old_json))

    assert set(result["rtt_ns"]) == {"aeron-ipc", "kernel-udp"}
    comparison = result["comparison"]
    assert comparison["against"] == str(old_json)
    lines = comparison["lines"]
    rows = comparison_rows("\n".join(lines))
    for label in ("aeron-ipc", "kernel-udp"):  # "n/a" for a transport starved of samples (a loaded machine)
        assert rows[f"rtt_ns.{label}.p50"] == expected_row(1, result["rtt_ns"][label]["p50"], "REGRESSION"), label
    assert not any("aeron-udp" in line for line in lines)  # a transport this run did not measure is left out
    if any(result["rtt_ns"][label]["p50"] is not None for label in ("aeron-ipc", "kernel-udp")):
        assert_verdict("\n".join(lines), rows)
    md = next(tmp_path.glob("*-gateway/gateway.md")).read_text()
    assert lines[0] in md


def test_bench_gateway_with_an_unreadable_compare_file_fails_before_measuring(tmp_path: Path) -> None:
    proc = run_gateway("--out", str(tmp_path), "--compare", str(tmp_path / "missing.json"))
    assert proc.returncode == 2
    assert "hftmm: error: cannot read result file" in proc.stderr
    assert not list(tmp_path.glob("*-gateway"))
