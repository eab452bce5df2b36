"""Session capture files: what the writer records reads back record for record, a torn tail keeps what came
before it, and a file that is not a capture is refused in one line (the live round trip: test_live.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.book.book import Book
from engine.core import events as E
from engine.core.events import empty_events
from engine.live.capture import (
    FL_KILLED,
    K_ORDER,
    K_PACKET,
    K_RESPONSE,
    K_STEP,
    TOP_COLUMNS,
    CaptureError,
    CaptureWriter,
    read_capture,
)
from feeds.ouch import RESPONSE_DTYPE, empty_responses

REPO = Path(__file__).resolve().parents[3]
LOCATES = np.array([7, 9], np.int64)


def resting(orders: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """Add rows: (instrument, order id, side, price, qty)."""
    rows = empty_events(len(orders))
    for row, (instrument, order_id, side, price, qty) in zip(rows, orders, strict=True):
        row["kind"], row["instrument"], row["order_id"] = E.KIND_ADD, instrument, order_id
        row["side"], row["price"], row["qty"] = side, price, qty
    return rows


def write_session(path: Path, capacity_bytes: int = 1 << 16, capacity_records: int = 1 << 10) -> list[bytes]:
    """Three steps: datagrams before each, responses and orders in the second; returns the datagrams."""
    book = Book()
    tables = {"own": np.arange(6, dtype=np.int64).reshape(1, 2, 3), "money": np.full((2, 5), 0.5)}
    writer = CaptureWriter(path, b'{"name": "mm-1"}', tables, LOCATES, capacity_bytes, capacity_records)
    packets = [bytes([k]) * (20 + k) for k in range(40)]
    responses = empty_responses(2)
    responses["user_ref_num"] = (11, 12)
    out = np.frombuffer(b"UO-one" + b"UX-two", np.uint8)
    offsets = np.array([0, 6, 12], np.int64)
    for step in range(3):
        for k in range(step * 10, step * 10 + 10):
            writer.packet(memoryview(packets[k]), 1000 + k)
        if step == 1:
            book.apply(resting([(7, 1, E.SIDE_BID, 990, 5), (7, 2, E.SIDE_ASK, 1010, 3), (9, 3, E.SIDE_ASK, 50, 1)]))
        n = 2 if step == 1 else 0
        writer.step(5000 + step, FL_KILLED * (step == 2), 10 * step, step, responses[:n], 40, book.state, out,
                    offsets, 2 * (step == 1))  # fmt: skip
    writer.close()
    return packets


def test_what_the_writer_records_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.capture.arrow"
    packets = write_session(path, capacity_bytes=256, capacity_records=7)  # many small batches
    cap = read_capture(path)
    assert cap.spec == {"name": "mm-1"}
    assert cap.tables["own"].tolist() == np.arange(6).reshape(1, 2, 3).tolist()
    kinds = "".join(chr(k) for k in cap.kind)
    assert kinds == "P" * 10 + "S" + "P" * 10 + "SRROO" + "P" * 10 + "S"
    got = [bytes(cap.payload(r)) for r in np.flatnonzero(cap.kind == K_PACKET)]
    assert got == packets[:30]
    assert cap.ts_ns[cap.kind == K_PACKET].tolist() == list(range(1000, 1030))
    assert cap.step[cap.kind == K_PACKET].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    steps = cap.steps()
    assert cap.ts_ns[steps].tolist() == [5000, 5001, 5002]
    assert cap.a[steps].tolist() == [0, 0, FL_KILLED]
    assert (cap.b[steps].tolist(), cap.c[steps].tolist()) == ([0, 10, 20], [0, 1, 2])
    top = np.frombuffer(cap.payload(steps[1]), np.int64).reshape(len(LOCATES), TOP_COLUMNS)
    assert top.tolist() == [[990, 5, 1010, 3], [0, 0, 50, 1]]
    assert not np.frombuffer(cap.payload(steps[0]), np.int64).any()
    rsp = [np.frombuffer(cap.payload(r), RESPONSE_DTYPE)[0] for r in np.flatnonzero(cap.kind == K_RESPONSE)]
    assert [int(r["user_ref_num"]) for r in rsp] == [11, 12]
    assert cap.a[cap.kind == K_RESPONSE].tolist() == [40, 41]
    assert [bytes(cap.payload(r)) for r in np.flatnonzero(cap.kind == K_ORDER)] == [b"UO-one", b"UX-two"]
    assert cap.step[cap.kind == K_STEP].tolist() == [0, 1, 2]


def test_a_torn_tail_keeps_the_batches_before_it(tmp_path: Path) -> None:
    path = tmp_path / "s.capture.arrow"
    write_session(path, capacity_bytes=256, capacity_records=7)
    whole = read_capture(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 150])  # as a node killed mid-write leaves it
    torn = read_capture(path)
    assert 0 < len(torn.kind) < len(whole.kind)
    assert (torn.kind == whole.kind[: len(torn.kind)]).all()


@pytest.mark.parametrize("content", [b"", b"not arrow at all", None])
def test_a_file_that_is_not_a_capture_is_refused_in_one_line(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.capture.arrow"
    if content is None:  # an Arrow stream of something else
        import pyarrow as pa

        with pa.ipc.new_stream(str(path), pa.schema([("x", pa.int64())])) as writer:
            writer.write_batch(pa.record_batch([pa.array([1])], names=["x"]))
    else:
        path.write_bytes(content)
    with pytest.raises(CaptureError, match=str(path)):
        read_capture(path)


def test_backtest_on_a_bad_capture_says_so_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.capture.arrow"
    path.write_bytes(b"garbage")
    done = subprocess.run([sys.executable, "-m", "engine.cli.main", "backtest", "--data", str(path), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(path) in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
