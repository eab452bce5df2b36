"""``hftmm bench t2t`` as a user runs it: a real node process, a real Aeron driver, UDP on 127.0.0.1.

No timing is asserted (the machine is shared); what must hold is the report: the JSON contract
(``internal_ns``, ``wire_to_wire_ns``, ``stages`` with p50/p90/p99/p999/max/count), ordered
percentiles, stages that account for the whole tick, the files, and ``--compare`` against a run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.t2t import STAGES
from tests.integration.test_cli import CLI, assert_verdict, comparison_rows, expected_row

RUN_TIMEOUT_S = 900  # bounded; the kernels are compiled before (see first_run)
COMPILE_TIMEOUT_S = 1800  # a cold Numba cache on a busy 2-core machine
SHORT = ("--duration", "1", "--warmup", "0.5", "--rate", "400")
CONTRACT = ("p50", "p90", "p99", "p999", "max", "count")


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, "bench", "t2t", *SHORT, "--out", str(out), *extra], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("t2t")
    # as a user sets up before a benchmark: on a cold cache the node would compile its loop inside the
    # harness's quoting deadline, on the CPU the harness busy-polls beside (the suite's prewarm too)
    compiled = subprocess.run([*CLI, "compile", "node", "harness"], capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S, check=False)  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    proc = _run(out, "--json")
    return json.loads(proc.stdout), out


def _ordered(figures: dict) -> None:
    assert set(CONTRACT) <= set(figures)
    assert figures["count"] > 0
    assert 0 <= figures["p50"] <= figures["p90"] <= figures["p99"] <= figures["p999"] <= figures["max"]


def test_json_holds_the_contract_keys_with_ordered_percentiles(first_run: tuple[dict, Path]) -> None:
    result, _ = first_run
    _ordered(result["internal_ns"])
    _ordered(result["wire_to_wire_ns"])
    _ordered(result["sent_to_exchange_ns"])
    assert set(result["stages"]) == set(STAGES)
    for name in STAGES:
        _ordered(result["stages"][name])
    ticks = result["ticks"]
    assert 0 < ticks["with_orders"] <= ticks["measured"] <= 400  # fewer only if the time bound cut the run short
    assert result["internal_ns"]["count"] == result["wire_to_wire_ns"]["count"] == ticks["with_orders"]
    assert result["internal_ns"]["max"] <= result["wire_to_wire_ns"]["max"]
    assert {row["figure"] for row in result["targets"]} == {
        "internal_ns.p50", "internal_ns.p99", "wire_to_wire_ns.p50", "wire_to_wire_ns.p99"
    }  # fmt: skip
    assert result["machine"]["cores"] and result["config"]["rate"] == 400


def test_the_stages_of_a_tick_add_up_to_wire_to_wire(first_run: tuple[dict, Path]) -> None:
    result, _ = first_run
    stage_means = sum(result["stages"][name]["mean"] for name in STAGES)
    total = result["wire_to_wire_ns"]["mean"]
    assert abs(stage_means - total) <= 0.01 * total + len(STAGES)  # HdrHistogram rounds each mean a little


def test_report_files_are_written(first_run: tuple[dict, Path]) -> None:
    _, out = first_run
    [folder] = list(out.glob("*-t2t"))
    assert json.loads((folder / "t2t.json").read_text())["stages"]
    md = (folder / "t2t.md").read_text()
    assert "internal (packet in hand -> order offered)" in md and "| target |" in md
    for plot in ("t2t-tick-to-trade.png", "t2t-stages.png"):
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({plot})" in md


def test_compare_prints_every_figure_against_an_earlier_run(first_run: tuple[dict, Path], tmp_path: Path) -> None:
    earlier, _ = first_run
    earlier = json.loads(json.dumps(earlier))
    earlier["internal_ns"]["p50"] = 1  # an earlier run this one cannot match: a regression
    earlier["wire_to_wire_ns"]["p99"] = 10**12  # one it must beat: never flagged
    for name in STAGES:  # a known figure for every stage, however many samples either run had
        earlier["stages"][name]["p50"] = 1000
    del earlier["stages"]["decode"]["p50"]  # a figure the earlier run lacks
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    proc = _run(tmp_path / "out", "--compare", str(path), "--background", "50000")
    [written] = list((tmp_path / "out").glob("*-t2t/t2t.json"))
    result = json.loads(written.read_text())
    rows = comparison_rows(proc.stdout)
    assert rows["internal_ns.p50"] == expected_row(1, result["internal_ns"]["p50"], "REGRESSION")
    assert rows["wire_to_wire_ns.p99"] == expected_row(10**12, result["wire_to_wire_ns"]["p99"], "")
    for name in STAGES:
        new = result["stages"][name]["p50"]
        old = None if name == "decode" else 1000
        assert rows[f"stages.{name}.p50"] == expected_row(old, new, "REGRESSION" if new and new > 1100 else ""), name
    assert_verdict(proc.stdout, rows)
    assert result["config"]["background"] == 50000
    assert result["exchange"]["background_messages"] > 0 and result["exchange"]["send_failures"] == 0


def test_a_bad_compare_file_is_a_clear_error_before_the_run(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "bench", "t2t", "--compare", str(tmp_path / "nope.json")], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and "nope.json" in proc.stderr and "Traceback" not in proc.stderr
