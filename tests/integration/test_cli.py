"""The ``hftmm`` command line as a user runs it: a separate process, real files, exit codes and output.

Every test starts ``python -m engine.cli.main`` (or the ``hftmm`` console script) with a timeout, in a
temporary folder, and reads only what the process printed and wrote. Real market data comes from
../shared/replay_data (tests skip when it is absent); everything else is generated here, small.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import real_file

CLI = [sys.executable, "-m", "engine.cli.main"]
CONSOLE_SCRIPT = Path(sys.executable).with_name("hftmm")
TIMEOUT_S = 180

ITCH_SAMPLE = "itch/real/nasdaq_itch50_first1000.itch"
ESM4_MBO = "dbn/esm4_mbo/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
PCAP_DIR = "itch/moldudp64_pcap"
REPLAY_KEYS = {
    "messages": int,
    "counts": dict,
    "instruments": int,
    "unknown_order_refs": int,
    "gaps": int,
    "missing_messages": int,
    "elapsed_s": float,
    "msgs_per_s": int,
}
GEN_MESSAGES = 30_000
GEN_SYMBOLS = 5
GEN_SEED = 3
PCAP_HEADER = 24  # classic pcap file header
PCAP_RECORD_HEADER = 16
MOLD_HEADER = 20  # session(10) seq(8) count(2)
DEEP = "100000"  # a --depth that takes every level of the generated books


# --- running the CLI -----------------------------------------------------------------------------
def run(*args: object, cwd: Path, command: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``hftmm ARGS`` in ``cwd`` and capture its output (never raises on a non-zero exit)."""
    return subprocess.run(
        [*(command or CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def run_many(*calls: tuple[object, ...], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run several independent ``hftmm`` calls at once (each one is mostly start-up time)."""
    procs = [
        subprocess.Popen([*CLI, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in calls
    ]
    done = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def run_ok(*args: object, cwd: Path, command: list[str] | None = None) -> str:
    """stdout of a run that must succeed without a traceback."""
    proc = run(*args, cwd=cwd, command=command)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.stdout


def ok_many(*calls: tuple[object, ...], cwd: Path) -> list[str]:
    """stdouts of several independent calls run at once, each of which must succeed."""
    outs = []
    for proc in run_many(*calls, cwd=cwd):
        assert proc.returncode == 0, f"{proc.args}: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr + proc.stdout
        outs.append(proc.stdout)
    return outs


def json_many(*calls: tuple[object, ...], cwd: Path) -> list[dict]:
    """The JSON objects of several independent ``--json`` calls run at once."""
    return [json.loads(out) for out in ok_many(*((*call, "--json") for call in calls), cwd=cwd)]


def run_json(*args: object, cwd: Path) -> dict:
    """The single JSON object a ``--json`` run prints."""
    return json.loads(run_ok(*args, "--json", cwd=cwd))


def assert_one_line_error(proc: subprocess.CompletedProcess, path: Path, *patterns: str) -> str:
    """Exit 2, and stderr is one ``hftmm: error:`` line naming ``path`` and matching ``patterns``."""
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("hftmm: error:"), line
    assert path.name in line, line
    for pattern in patterns:
        assert re.search(pattern, line), f"{pattern!r} not in {line!r}"
    return line


# --- flat ITCH helpers ---------------------------------------------------------------------------
def record_starts(body: bytes) -> list[int]:
    """Offsets of every ``[u16 length][message]`` record of a flat ITCH body, and the end offset."""
    starts, pos = [], 0
    while pos < len(body):
        starts.append(pos)
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    assert pos == len(body), "the body does not end on a record boundary"
    return [*starts, pos]


def type_counts(body: bytes) -> dict[str, int]:
    """Message type letter -> count, walking the records in plain Python."""
    counts: dict[str, int] = {}
    starts = record_starts(body)
    for start in starts[:-1]:
        letter = chr(body[start + 2])
        counts[letter] = counts.get(letter, 0) + 1
    return counts


def printed_counts(line: str) -> tuple[int, dict[str, int]]:
    """Messages and type counts of gen-itch's ``wrote N messages (A n  C n ...)`` line."""
    match = re.search(r"wrote ([\d,]+) messages \(([^)]*)\)", line)
    assert match, line
    pairs = re.findall(r"([A-Z]) ([\d,]+)", match.group(2))
    return int(match.group(1).replace(",", "")), {k: int(v.replace(",", "")) for k, v in pairs}


def assert_ladders_sorted(book: dict) -> None:
    for symbol, b in book.items():
        bid_prices = [p for p, _, _ in b["bids"]]
        ask_prices = [p for p, _, _ in b["asks"]]
        assert bid_prices == sorted(bid_prices, reverse=True), symbol
        assert len(set(bid_prices)) == len(bid_prices), symbol
        assert ask_prices == sorted(ask_prices), symbol
        assert len(set(ask_prices)) == len(ask_prices), symbol
        for _, qty, orders in b["bids"] + b["asks"]:
            assert qty > 0 and 1 <= orders <= qty, symbol


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small synthetic ITCH day written by ``hftmm gen-itch``: path, printed line and bytes."""
    folder = tmp_path_factory.mktemp("generated")
    path = folder / "day.itch"
    sizes = ["--messages", GEN_MESSAGES, "--symbols", GEN_SYMBOLS, "--seed", GEN_SEED]
    out = run_ok("gen-itch", "-o", path, *sizes, cwd=folder)
    return {"path": path, "printed": out.strip(), "body": path.read_bytes(), "folder": folder}


@pytest.fixture(scope="session")
def generated_results(generated: dict) -> tuple[dict, dict]:
    """``replay --json`` and ``book --json`` (every level) of the generated day."""
    path = generated["path"]
    replay, book = json_many(("replay", path), ("book", path, "--depth", DEEP), cwd=generated["folder"])
    return replay, book


@pytest.fixture(scope="session")
def generated_replay(generated_results: tuple[dict, dict]) -> dict:
    return generated_results[0]


@pytest.fixture(scope="session")
def generated_book(generated_results: tuple[dict, dict]) -> dict:
    return generated_results[1]


@pytest.fixture(scope="session")
def pcap_files(replay_data: Path) -> list[Path]:
    files = sorted((replay_data / PCAP_DIR).glob("*.pcap"))
    if not files:
        pytest.skip(f"no real pcap in {replay_data / PCAP_DIR}")
    return files


# --- replay and book on real data ----------------------------------------------------------------
def test_replay_json_on_real_itch_sample_gives_exact_counts(replay_data: Path, tmp_path: Path) -> None:
    sample = real_file(replay_data, ITCH_SAMPLE)
    summary = run_json("replay", sample, cwd=tmp_path)
    for key, kind in REPLAY_KEYS.items():
        assert key in summary, key
        assert type(summary[key]) is kind, (key, summary[key])
    assert summary["messages"] == 1000
    assert summary["counts"] == {"S": 1, "R": 993, "H": 3, "Y": 3}
    assert summary["instruments"] == 993
    assert summary["unknown_order_refs"] == 0
    assert summary["gaps"] == 0
    assert summary["missing_messages"] == 0
    assert summary["skipped_records"] == 0
    assert summary["first_event_ts_ns"] == 11072057543747  # the first message, S 'O'
    assert summary["elapsed_s"] >= 0 and summary["msgs_per_s"] >= 0


def test_replay_text_on_real_itch_sample_mentions_the_counts(replay_data: Path, tmp_path: Path) -> None:
    sample = real_file(replay_data, ITCH_SAMPLE)
    if not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"console script {CONSOLE_SCRIPT} is not installed")
    out = run_ok("replay", sample, cwd=tmp_path, command=[str(CONSOLE_SCRIPT)])
    assert re.search(r"messages\s+1,000\b", out), out
    for part in ("H 3", "R 993", "S 1", "Y 3"):
        assert part in out, part
    assert re.search(r"instruments\s+993\b", out), out
    assert "0 unknown order refs" in out
    assert "0 gaps, 0 missing messages" in out


def test_book_json_on_real_esm4_dbn_rebuilds_the_known_book(replay_data: Path, tmp_path: Path) -> None:
    mbo = real_file(replay_data, ESM4_MBO)
    default, three = run_many(("book", mbo, "--json"), ("book", mbo, "--json", "--depth", "3"), cwd=tmp_path)
    for proc in (default, three):
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert default.stderr == ""  # no notice or progress bar: a reader that merges the streams still gets JSON
    book = json.loads(default.stdout)
    assert list(book) == ["ESM4"]
    esm4 = book["ESM4"]
    assert esm4["instrument_id"] == 5602
    assert (esm4["bid_levels"], esm4["ask_levels"], esm4["orders"]) == (976, 571, 13598)
    assert esm4["bids"][0][:2] == [5214.0, 28]
    assert esm4["asks"][0][:2] == [5214.25, 17]
    assert len(esm4["bids"]) == len(esm4["asks"]) == 10
    assert_ladders_sorted(book)
    assert esm4["bids"][0][0] < esm4["asks"][0][0]

    shallow = json.loads(three.stdout)["ESM4"]
    assert len(shallow["bids"]) == len(shallow["asks"]) == 3
    assert shallow["bids"] == esm4["bids"][:3] and shallow["asks"] == esm4["asks"][:3]

    whole_folder = run("book", *sorted(mbo.parent.glob("*.dbn.zst")), "--json", cwd=tmp_path)  # definition first
    assert whole_folder.returncode == 0, whole_folder.stderr
    assert json.loads(whole_folder.stdout) == book
    the_folder = run("book", mbo.parent, "--json", cwd=tmp_path)  # the folder itself: its files, sorted
    assert the_folder.returncode == 0 and the_folder.stderr == "", the_folder.stderr
    assert json.loads(the_folder.stdout) == book


def test_book_text_on_real_esm4_dbn_prints_a_ladder(replay_data: Path, tmp_path: Path) -> None:
    mbo = real_file(replay_data, ESM4_MBO)
    out = run_ok("book", mbo, "--depth", "2", cwd=tmp_path)
    assert "ESM4 (instrument 5602): 13,598 orders, 976 bid levels, 571 ask levels" in out
    assert "5214.00" in out and "5214.25" in out


def test_replay_json_over_all_real_pcaps_counts_unknown_refs(pcap_files: list[Path], tmp_path: Path) -> None:
    referring = [f for f in pcap_files if re.search(r"Order(Delete|Executed|Replace)Message", f.name)]
    assert referring, "the capture folder should hold delete/execute/replace captures"
    summary = run_json("replay", *pcap_files, cwd=tmp_path)
    assert summary["messages"] == len(pcap_files) == 10
    assert summary["packets"] == len(pcap_files)
    assert summary["unknown_order_refs"] == len(referring) == 5
    assert summary["gaps"] == 0 and summary["missing_messages"] == 0
    assert summary["skipped_records"] == 0
    assert sum(summary["counts"].values()) == summary["messages"]


# --- gen-itch ------------------------------------------------------------------------------------
def test_gen_itch_then_replay_counts_equal_what_gen_itch_wrote(generated: dict, generated_replay: dict) -> None:
    messages, printed = printed_counts(generated["printed"])
    walked = type_counts(generated["body"])
    assert messages == GEN_MESSAGES == sum(walked.values())
    assert printed == walked
    assert generated_replay["messages"] == GEN_MESSAGES
    assert generated_replay["counts"] == walked
    assert generated_replay["instruments"] == GEN_SYMBOLS
    assert generated_replay["unknown_order_refs"] == 0
    assert generated_replay["crossed_books"] == 0
    assert generated_replay["skipped_records"] == 0


def test_gen_itch_same_seed_gives_same_bytes_and_gz_holds_them(generated: dict, tmp_path: Path) -> None:
    common = ["--messages", GEN_MESSAGES, "--symbols", GEN_SYMBOLS]
    _, _, out = ok_many(
        ("gen-itch", "-o", "again.itch", *common, "--seed", GEN_SEED),
        ("gen-itch", "-o", "other.itch", *common, "--seed", GEN_SEED + 1),
        ("gen-itch", "-o", "day.itch.gz", *common, "--seed", GEN_SEED),
        cwd=tmp_path,
    )
    assert (tmp_path / "again.itch").read_bytes() == generated["body"]
    assert (tmp_path / "other.itch").read_bytes() != generated["body"]
    assert printed_counts(out) == printed_counts(generated["printed"])
    gz = tmp_path / "day.itch.gz"
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(gz.read_bytes()) == generated["body"]


def test_replay_of_gen_itch_gz_equals_replay_of_flat_file(
    generated: dict, generated_replay: dict, tmp_path: Path
) -> None:
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(generated["body"]))
    summary = run_json("replay", gz, cwd=tmp_path)
    for key in ("messages", "counts", "instruments", "events", "unknown_order_refs", "resting_orders"):
        assert summary[key] == generated_replay[key], key


def test_replay_and_book_sized_at_start_end_with_the_same_books_as_grown_ones(
    generated: dict, generated_replay: dict, generated_book: dict, tmp_path: Path
) -> None:
    path = generated["path"]
    roomy, tight, book = json_many(
        ("replay", path, "--orders", 1_000_000),  # never grows
        ("replay", path, "--orders", 16),  # grows from a tiny start
        ("book", path, "--depth", DEEP, "--orders", 1_000_000),
        cwd=tmp_path,
    )
    for summary in (roomy, tight):
        for key in ("messages", "counts", "instruments", "events", "unknown_order_refs", "resting_orders"):
            assert summary[key] == generated_replay[key], key
    assert book == generated_book
    bad = run("replay", path, "--orders", "0", cwd=tmp_path)
    assert bad.returncode == 2 and "--orders: must be at least 1" in bad.stderr, bad.stderr


def test_gen_itch_deep_writes_books_far_deeper_than_the_shallow_day(generated_book: dict, tmp_path: Path) -> None:
    sizes = ["--messages", GEN_MESSAGES * 4, "--symbols", 2, "--seed", GEN_SEED]
    out = run_ok("gen-itch", "-o", "deep.itch", *sizes, "--depth", "deep", cwd=tmp_path)
    assert "(deep books)" in out
    replay, book = json_many(("replay", "deep.itch"), ("book", "deep.itch", "--depth", DEEP), cwd=tmp_path)
    assert replay["unknown_order_refs"] == 0 and replay["crossed_books"] == 0
    deepest = max(b["orders"] for b in book.values())
    assert deepest > 10 * max(b["orders"] for b in generated_book.values())
    assert max(b["bid_levels"] + b["ask_levels"] for b in book.values()) >= 300
    assert_ladders_sorted(book)


def test_gen_itch_from_a_real_file_tiles_its_books(replay_data: Path, tmp_path: Path) -> None:
    """ESM4 MBO re-encoded as ITCH, three copies: each copy's book is the real one (README figures)."""
    source = real_file(replay_data, "dbn/esm4_mbo/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst")
    out = run_ok("gen-itch", "--from", source, "--copies", 3, "-o", "esm4.itch", cwd=tmp_path)
    assert "ESM4 x 3 copies" in out and "skipped 6" in out
    book = run_json("book", "esm4.itch", "--depth", DEEP, cwd=tmp_path)
    assert sorted(book) == ["ESM40000", "ESM40001", "ESM40002"]
    for b in book.values():
        assert (b["bid_levels"], b["ask_levels"], b["orders"]) == (976, 571, 13_598)
        assert b["bids"][0][:2] == [5214.0, 28] and b["asks"][0][:2] == [5214.25, 17]


# --- several files in order = one file -----------------------------------------------------------
def test_split_itch_files_in_order_give_the_whole_files_book_and_counts(
    generated: dict, generated_replay: dict, generated_book: dict, tmp_path: Path
) -> None:
    body = generated["body"]
    starts = record_starts(body)
    cut = starts[len(starts) // 2]
    assert 0 < cut < len(body)
    first, second = tmp_path / "part1.itch", tmp_path / "part2.itch"
    first.write_bytes(body[:cut])
    second.write_bytes(body[cut:])

    book, summary, second_alone = json_many(
        ("book", first, second, "--depth", DEEP), ("replay", first, second), ("replay", second), cwd=tmp_path
    )
    assert book == generated_book
    for key in ("messages", "counts", "instruments", "events", "unknown_order_refs", "resting_orders"):
        assert summary[key] == generated_replay[key], key
    assert summary["unknown_order_refs"] == 0
    # The second half alone refers to orders of the first half: the split is a real one.
    assert second_alone["unknown_order_refs"] > 0


# --- convert -------------------------------------------------------------------------------------
def test_convert_itch_to_parquet_then_book_and_replay_match_the_itch(
    generated: dict, generated_replay: dict, generated_book: dict, tmp_path: Path
) -> None:
    parquet = tmp_path / "day.parquet"
    out = run_ok("convert", generated["path"], "-o", parquet, cwd=tmp_path)
    assert parquet.is_file() and parquet.read_bytes()[:4] == b"PAR1"
    assert f"wrote {generated_replay['events']:,} events of {GEN_SYMBOLS} instruments" in out

    book, summary = json_many(("book", parquet, "--depth", DEEP), ("replay", parquet), cwd=tmp_path)
    assert book == generated_book
    for key in ("events", "instruments", "unknown_order_refs", "crossed_books", "resting_orders"):
        assert summary[key] == generated_replay[key], key


def test_convert_real_esm4_dbn_to_parquet_reproduces_the_esm4_book(replay_data: Path, tmp_path: Path) -> None:
    mbo = real_file(replay_data, ESM4_MBO)
    parquet = tmp_path / "esm4.parquet"
    out, of_dbn = ok_many(("convert", mbo, "-o", parquet), ("book", mbo, "--json"), cwd=tmp_path)
    assert "wrote 13,796 events of 1 instruments" in out
    book = run_json("book", parquet, cwd=tmp_path)
    assert book == json.loads(of_dbn)
    esm4 = book["ESM4"]
    assert (esm4["bid_levels"], esm4["ask_levels"], esm4["orders"]) == (976, 571, 13598)
    assert esm4["bids"][0][:2] == [5214.0, 28] and esm4["asks"][0][:2] == [5214.25, 17]


# --- symbol filters ------------------------------------------------------------------------------
def test_book_symbol_filters_to_that_symbol(generated: dict, generated_book: dict, tmp_path: Path) -> None:
    symbols = sorted(generated_book)
    assert len(symbols) == GEN_SYMBOLS
    one, two = json_many(
        ("book", generated["path"], "--symbol", symbols[0], "--depth", DEEP),
        ("book", generated["path"], "--symbol", ",".join(symbols[1:3]), "--depth", DEEP),
        cwd=tmp_path,
    )
    assert one == {symbols[0]: generated_book[symbols[0]]}
    assert two == {s: generated_book[s] for s in symbols[1:3]}


def test_book_unknown_symbol_exits_2_with_one_line(generated: dict, tmp_path: Path) -> None:
    proc = run("book", generated["path"], "--symbol", "NOSUCH", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hftmm: error:") and "NOSUCH" in lines[0], proc.stderr
    assert proc.stdout == ""


# --- bad input -----------------------------------------------------------------------------------
BAD_ITCH_CUT_RECORD = 100  # the bad record goes in front of this record of the generated day


def _insert_bad_record(body: bytes, bad: bytes) -> tuple[bytes, int]:
    cut = record_starts(body)[BAD_ITCH_CUT_RECORD]
    return body[:cut] + bad + body[cut:], cut


def _pcap_records(data: bytes) -> list[bytes]:
    """The records (16-byte header and frame) of a little-endian classic pcap file."""
    records, pos = [], PCAP_HEADER
    while pos < len(data):
        caplen = int.from_bytes(data[pos + 8 : pos + 12], "little")
        records.append(data[pos : pos + PCAP_RECORD_HEADER + caplen])
        pos += PCAP_RECORD_HEADER + caplen
    assert pos == len(data)
    return records


def _pcap_capture(pcap_files: list[Path]) -> tuple[bytes, list[bytes]]:
    """File header and records of all real captures (they share one header)."""
    datas = [f.read_bytes() for f in pcap_files]
    assert len({d[:PCAP_HEADER] for d in datas}) == 1, "the real captures should share their header"
    assert datas[0][:4] == b"\x4d\x3c\xb2\xa1", "expected little-endian nanosecond pcap"
    return datas[0][:PCAP_HEADER], [r for d in datas for r in _pcap_records(d)]


def make_bad_input(name: str, folder: Path, body: bytes, request: pytest.FixtureRequest) -> dict:
    """A bad file of kind ``name``: its path, the patterns its error line must match, and, when
    known, how many messages ``--skip-bad`` must still decode."""
    path = folder / f"{name}.itch"
    if name == "unknown_type":
        data, cut = _insert_bad_record(body, b"\x00\x05Zabcd")
        patterns, messages = ([rf"offset {cut}\b", rf"seq {BAD_ITCH_CUT_RECORD}\b", "unknown message type 'Z'"], 30_000)
    elif name == "wrong_length":  # an S message (12 bytes) framed as 15
        s_message = b"S" + bytes(10) + b"O"
        data, cut = _insert_bad_record(body, (15).to_bytes(2, "big") + s_message + b"xyz")
        patterns, messages = [rf"offset {cut}\b", rf"seq {BAD_ITCH_CUT_RECORD}\b", r"length 15 .*'S'"], 30_000
    elif name == "zero_length":
        data, cut = _insert_bad_record(body, b"\x00\x00")
        patterns, messages = [rf"offset {cut}\b", rf"seq {BAD_ITCH_CUT_RECORD}\b", "zero-length"], 30_000
    elif name == "truncated_final":
        starts = record_starts(body)
        data = body[:-5]
        patterns = [rf"offset {starts[-2]}\b", rf"seq {len(starts) - 2}\b", "truncated"]
        messages = GEN_MESSAGES - 1
    elif name == "random_garbage":
        data = random.Random(20240508).randbytes(5000)
        patterns, messages = [r"offset 0\b", "not an ITCH, pcap, DBN, Parquet or npz file"], None
    elif name == "text_file":
        data = b"symbol,price\nAAPL,101.5\n" * 100
        patterns, messages = [r"offset 0\b", r"not an ITCH, pcap, DBN, Parquet or npz file \(first bytes"], None
    elif name in ("gzip_truncated", "gzip_flipped"):
        path = folder / f"{name}.itch.gz"
        gz = gzip.compress(body)
        middle = len(gz) // 2
        if name == "gzip_truncated":
            data = gz[:middle]
        else:
            data = gz[:middle] + bytes(b ^ 0xFF for b in gz[middle : middle + 64]) + gz[middle + 64 :]
        patterns, messages = [r"offset \d+", "gzip"], None
    else:  # pcaps, built from the real captures
        header, records = _pcap_capture(request.getfixturevalue("pcap_files"))
        path = folder / f"{name}.pcap"
        if name == "pcap_bad_magic":
            data = b"\xde\xad\xbe\xef" + header[4:] + b"".join(records)
            patterns, messages = [r"offset \d+"], None
        elif name == "pcap_truncated_record":
            data = header + b"".join(records)[:-5]
            last = len(header) + sum(len(r) for r in records[:-1])
            patterns = [rf"offset {last}\b", rf"packet {len(records)}\b", "truncated"]
            messages = None
        elif name == "pcap_bad_itch_message":  # 2nd packet: its ITCH message gets an unknown type
            bad = bytearray(records[1])
            payload = bytes(bad).find(b"00001005")  # the MoldUDP64 session, "000010059B"/"...D"
            assert payload > 0
            seq = int.from_bytes(bad[payload + 10 : payload + 18], "big")
            bad[payload + MOLD_HEADER + 2] = ord("z")
            data = header + records[0] + bytes(bad) + b"".join(records[2:])
            offset = len(header) + len(records[0]) + payload
            patterns = [rf"offset {offset}\b", r"packet 2\b", rf"seq {seq}\b", "unknown message type 'z'"]
            messages = None
        elif name == "pcap_bad_record_length":  # 2nd record claims a 2 GB frame
            bad = bytearray(records[1])
            bad[8:12] = (0x7FFFFFFF).to_bytes(4, "little")
            data = header + records[0] + bytes(bad) + b"".join(records[2:])
            patterns = [rf"offset {len(header) + len(records[0])}\b", r"packet 2\b", "record length"]
            messages = None
        else:
            raise AssertionError(name)
    path.write_bytes(data)
    return {"path": path, "patterns": patterns, "messages": messages}


BAD_INPUTS = [
    "unknown_type",
    "wrong_length",
    "zero_length",
    "truncated_final",
    "random_garbage",
    "text_file",
    "gzip_truncated",
    "gzip_flipped",
    "pcap_bad_magic",
    "pcap_truncated_record",
    "pcap_bad_itch_message",
    "pcap_bad_record_length",
]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line_naming_file_and_offset_and_skip_bad_goes_on(
    name: str, generated: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bad = make_bad_input(name, tmp_path, generated["body"], request)
    proc, skipped = run_many(
        ("replay", bad["path"], "--json"), ("replay", bad["path"], "--json", "--skip-bad"), cwd=tmp_path
    )
    assert_one_line_error(proc, bad["path"], *bad["patterns"])
    assert proc.stdout == ""

    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr + skipped.stdout
    summary = json.loads(skipped.stdout)
    assert summary["skipped_records"] > 0
    assert "hftmm: warning: skipped" in skipped.stderr
    if bad["messages"] is not None:
        assert summary["messages"] == bad["messages"]
        assert summary["unknown_order_refs"] == 0


def test_book_on_bad_input_also_exits_2_with_one_line(
    generated: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bad = make_bad_input("unknown_type", tmp_path, generated["body"], request)
    book, convert = run_many(
        ("book", bad["path"]), ("convert", bad["path"], "-o", tmp_path / "out.parquet"), cwd=tmp_path
    )
    assert_one_line_error(book, bad["path"], *bad["patterns"])
    assert_one_line_error(convert, bad["path"], *bad["patterns"])


def test_skip_bad_after_a_corrupt_gzip_goes_on_with_the_next_file(
    generated: dict, generated_replay: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bad = make_bad_input("gzip_truncated", tmp_path, generated["body"], request)
    proc = run("replay", bad["path"], generated["path"], "--json", "--skip-bad", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["skipped_records"] > 0
    assert summary["messages"] >= generated_replay["messages"]
    assert bad["path"].name in proc.stderr


def test_event_parquet_with_bad_metadata_or_columns_exits_2_with_a_short_line(generated: dict, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "day.parquet"
    run_ok("convert", generated["path"], "-o", parquet, cwd=tmp_path)
    table = pq.read_table(parquet)
    meta = dict(pq.ParquetFile(parquet).metadata.metadata)
    key = next(k for k in meta if b"instruments" in k)
    scale_zero = tmp_path / "scale_zero.parquet"
    instruments = [dict(i, price_scale=0) for i in json.loads(meta[key])]
    pq.write_table(table.replace_schema_metadata({**meta, key: json.dumps(instruments).encode()}), scale_zero)
    wrong_columns = tmp_path / "wrong_columns.parquet"
    renamed = table.drop_columns(["price"]).append_column("px", pa.array([1.0] * len(table)))
    pq.write_table(renamed.replace_schema_metadata(meta), wrong_columns)
    scale, columns = run_many(("book", scale_zero), ("replay", wrong_columns), cwd=tmp_path)
    assert_one_line_error(scale, scale_zero, "bad instrument metadata", "price_scale 0 must be positive and finite")
    line = assert_one_line_error(columns, wrong_columns, "missing price; unexpected px")
    assert len(line) < 200


def test_dbn_record_of_unknown_rtype_exits_2_and_skip_bad_names_it(tmp_path: Path) -> None:
    from tests.unit.feeds.test_dbn import mbo, stream, with_rtype

    path = tmp_path / "unknown_rtype.dbn"
    path.write_bytes(stream([mbo("A", "B"), with_rtype(mbo("A", "B"), 0xEE), mbo("C", "B")]))
    proc, skipped = run_many(("replay", path, "--json"), ("replay", path, "--json", "--skip-bad"), cwd=tmp_path)
    assert_one_line_error(proc, path, r"offset \d+", "record 1: unknown rtype 0xee")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["skipped_records"] == 1
    warning = skipped.stderr.strip().splitlines()
    assert warning == [
        f"hftmm: warning: skipped 1 bad records (56 bytes); first: {proc.stderr.strip().removeprefix('hftmm: error: ')}"
    ]
    assert "unknown rtype 0xee" in warning[0]


MOLD_PER_PACKET = 20  # ITCH messages per MoldUDP64 packet of the capture made from the generated day
DAMAGED_PACKET = 700  # the packet (0-based) whose record or message length gets corrupted
DAMAGED_RECORD = 100  # the flat ITCH record (and the DBN record) whose length gets corrupted


def _day_capture(body: bytes) -> tuple[bytes, list[int]]:
    """The generated day sent as MoldUDP64 packets of MOLD_PER_PACKET messages, captured in a classic pcap; the
    capture and the offset of every record."""
    from feeds.moldudp64 import encode_packet
    from tests.unit.feeds.test_pcap import BASE_TS_NS, ethernet, ipv4_udp

    starts = record_starts(body)
    messages = [body[a + 2 : b] for a, b in itertools.pairwise(starts)]
    packets = [
        encode_packet("GENERATED", 1 + k, messages[k : k + MOLD_PER_PACKET])
        for k in range(0, len(messages), MOLD_PER_PACKET)
    ]
    data = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
    offsets = []
    for i, packet in enumerate(packets):
        frame = ethernet(ipv4_udp(packet))
        offsets.append(len(data))
        data += struct.pack("<IIII", *divmod(BASE_TS_NS + 1000 * i, 10**9), len(frame), len(frame)) + frame
    return bytes(data), offsets


def damaged_file(kind: str, body: bytes, folder: Path) -> tuple[Path, int, int]:
    """A valid file made from the generated day with one length corrupted in the middle: its path, the offset
    of the damaged record or packet, and how many messages are in it (lost to ``--skip-bad``)."""
    if kind == "itch":
        offset = record_starts(body)[DAMAGED_RECORD]
        data, lost = body[:offset] + b"\x68\x65" + body[offset + 2 :], 1  # a length of 26,725
    elif kind == "dbn":
        from tests.unit.feeds.test_dbn import mbo, stream

        records = [mbo("A", "B", order_id=k + 1, seq=k) for k in range(2 * DAMAGED_RECORD)]
        records[DAMAGED_RECORD] = b"\x02" + records[DAMAGED_RECORD][1:]  # 8 bytes: shorter than a record header
        data, lost = stream(records), 1
        offset = len(data) - 56 * DAMAGED_RECORD
    else:
        data, offsets = _day_capture(body)
        data, lost, offset = bytearray(data), MOLD_PER_PACKET, offsets[DAMAGED_PACKET]
        if kind == "pcap_record":
            data[offset + 8 : offset + 12] = struct.pack("<I", 300_000)  # beyond the snapshot length
        else:  # a MoldUDP64 message length running past the packet: the payload starts after 42 bytes of headers
            offset += PCAP_RECORD_HEADER + 14 + 20 + 8
            first_message = offset + MOLD_HEADER
            data[first_message : first_message + 2] = b"\xff\xf0"
    path = folder / f"damaged_{kind}.{'pcap' if kind.startswith('pcap') else kind}"
    path.write_bytes(bytes(data))
    return path, offset, lost


@pytest.mark.parametrize("kind", ["itch", "dbn", "pcap_record", "pcap_mold_message"])
def test_skip_bad_reads_on_after_one_corrupt_length_and_names_its_offset(
    kind: str, generated: dict, generated_replay: dict, tmp_path: Path
) -> None:
    path, offset, lost = damaged_file(kind, generated["body"], tmp_path)
    proc, skipped = run_many(("replay", path, "--json"), ("replay", path, "--json", "--skip-bad"), cwd=tmp_path)
    assert_one_line_error(proc, path, rf"offset {offset}\b")
    assert skipped.returncode == 0 and "Traceback" not in skipped.stderr, skipped.stderr
    messages = 2 * DAMAGED_RECORD if kind == "dbn" else generated_replay["messages"]
    assert json.loads(skipped.stdout)["messages"] == messages - lost
    warning = skipped.stderr.strip().splitlines()[0]
    assert re.fullmatch(rf"hftmm: warning: skipped 1 bad records \(\d+ bytes\); first: {path}: offset {offset}\b.+",
                        warning), warning  # fmt: skip


def test_missing_file_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_file.itch"
    for proc in run_many(("replay", missing), ("book", missing), cwd=tmp_path):
        assert_one_line_error(proc, missing, "cannot open")


# --- bench ---------------------------------------------------------------------------------------
def comparison_rows(output: str) -> dict[str, list[str]]:
    """The ``--compare`` table a benchmark printed: figure -> [earlier, this run, change, flag]."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| figure |")) + 2
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[start:] if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows}


def _figure_text(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.6g}"


def expected_row(old: float | None, new: float | None, flag: str) -> list[str]:
    """A figure's row: both values, the change in % and ``flag``; "n/a" where a run lacks the figure."""
    change = "n/a" if old is None or new is None else f"{(new / old - 1) * 100:+.1f}%"
    return [_figure_text(old), _figure_text(new), change, flag if change != "n/a" else ""]


def assert_verdict(output: str, rows: dict[str, list[str]]) -> None:
    """The last line under the table counts the rows flagged as regressions (at least one here)."""
    flagged = sum(row[-1] == "REGRESSION" for row in rows.values())
    assert flagged >= 1
    assert f"{flagged} regression{'' if flagged == 1 else 's'} beyond 10%" in output.splitlines()


def _check_bench_output(out_dir: Path, messages: dict[str, int]) -> None:
    jsons = list(out_dir.glob("*/feed.json"))
    assert len(jsons) == 1, list(out_dir.rglob("*"))
    assert (jsons[0].parent / "feed.md").is_file()
    result = json.loads(jsons[0].read_text())
    assert {"cases", "machine", "skipped"} <= set(result)
    for case, figures in result["cases"].items():
        assert figures["input"]["messages"] == messages[case], case
        for row in ("decode", "book (pre-decoded)", "decode + book", "decode + book, sized at start"):
            assert figures["results"][row]["msgs_per_s"] > 0, (case, row)
        book = figures["book"]
        assert book["live_orders"] > 0 and book["levels"] > 0 and book["mib_per_million_live_orders"] > 0
    assert result["machine"]
    md = (jsons[0].parent / "feed.md").read_text()
    assert all(f"| {case} |" in md for case in result["cases"]) and "| decode + book |" in md


def test_bench_feed_with_tiny_sizes_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_ok("bench", "feed", "--messages", "30000", "--repeats", "1", "--cases", "shallow", "--out", out, cwd=tmp_path)
    _check_bench_output(out, {"shallow": 30_000})
    [first] = out.glob("*-feed/feed.json")
    earlier = json.loads(first.read_text())
    figures = earlier["cases"]["shallow"]["results"]
    figures["decode + book"]["msgs_per_s"] = 10**15  # a rate this run cannot reach: a regression
    figures["decode"]["ns_per_msg"] = 10**9  # a time it must beat: never flagged
    del figures["decode"]["msgs_per_s"]  # a figure the earlier run lacks
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    again = run_ok("bench", "feed", "--messages", "30000", "--repeats", "1", "--cases", "shallow", "--out",
                   tmp_path / "again", "--compare", tmp_path / "earlier.json", cwd=tmp_path)  # fmt: skip
    [written] = (tmp_path / "again").glob("*-feed/feed.json")
    now = json.loads(written.read_text())["cases"]["shallow"]["results"]
    rows = comparison_rows(again)
    row = "cases.shallow.results."
    assert rows[f"{row}decode + book.msgs_per_s"] == expected_row(10**15, now["decode + book"]["msgs_per_s"],
                                                                  "REGRESSION")  # fmt: skip
    assert rows[f"{row}decode.ns_per_msg"] == expected_row(10**9, now["decode"]["ns_per_msg"], "")
    assert rows[f"{row}decode.msgs_per_s"] == expected_row(None, now["decode"]["msgs_per_s"], "")
    assert_verdict(again, rows)


def test_bench_feed_deep_and_real_flow_cases_report_their_books(replay_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_ok("bench", "feed", "--messages", "30000", "--repeats", "1", "--cases", "deep,esm4x64", "--copies", "2",
           "--out", out, cwd=tmp_path)  # fmt: skip
    _check_bench_output(out, {"deep": 30_000, "esm4x64": 1 + 2 + 13_790 * 2 + 1})
    [path] = out.glob("*-feed/feed.json")
    result = json.loads(path.read_text())
    assert result["cases"]["esm4x64"]["book"]["live_orders"] == 2 * 13_598 and result["skipped"] == {}
    missing = run_ok("bench", "feed", "--repeats", "1", "--cases", "esm4x64", "--real", tmp_path / "absent.dbn.zst",
                     "--out", tmp_path / "none", cwd=tmp_path)  # fmt: skip
    assert "skipping esm4x64: real data file" in missing and "absent.dbn.zst" in missing
    bad = run("bench", "feed", "--cases", "shallow,bogus", cwd=tmp_path)
    assert bad.returncode == 2 and "bogus" in bad.stderr and "Traceback" not in bad.stderr


# --- argument errors that must not end in a traceback -------------------------
def test_book_negative_depth_is_a_usage_error_not_a_traceback(generated: dict, tmp_path: Path) -> None:
    proc = run("book", generated["path"], "--depth", "-1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_gen_itch_too_few_messages_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    proc = run("gen-itch", "-o", "tiny.itch", "--messages", "5", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_truncated_gzip_reports_where_it_broke_and_keeps_what_came_before(
    generated: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    bad = make_bad_input("gzip_truncated", tmp_path, generated["body"], request)
    line = assert_one_line_error(run("replay", bad["path"], cwd=tmp_path), bad["path"])
    assert int(re.search(r"offset (\d+)", line).group(1)) > 0
    summary = run_json("replay", bad["path"], "--skip-bad", cwd=tmp_path)
    assert summary["messages"] > 0


# --- help ----------------------------------------------------------------------------------------
HELP = {
    (): ["replay", "book", "convert", "gen-itch", "bench", "compile", "--version"],
    ("compile",): ["GROUP", "feeds", "strategies", "backtest", "node", "exchange", "harness"],
    ("replay",): ["--json", "--skip-bad", "--symbols", "--quiet", "FILE"],
    ("book",): ["--json", "--skip-bad", "--symbol", "--depth", "FILE"],
    ("convert",): ["--output", "--skip-bad", "FILE"],
    ("gen-itch",): ["--output", "--messages", "--symbols", "--seed", "--depth", "--from", "--copies"],
    ("bench",): ["feed", "backtest", "t2t", "gateway"],
    ("bench", "feed"): ["--messages", "--symbols", "--seed", "--repeats", "--cases", "--real", "--copies", "--out"],
    ("bench", "t2t"): ["--duration", "--warmup", "--rate", "--size", "--cpus", "--idle", "--json", "--compare"],
    ("bench", "gateway"): ["--duration", "--transports", "--rate", "--size", "--cpus", "--driver-idle", "--json"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "hftmm")
def test_help_of_every_command_exits_0_and_describes_the_options(command: tuple[str, ...], tmp_path: Path) -> None:
    out = run_ok(*command, "--help", cwd=tmp_path)
    assert out.startswith(f"usage: hftmm {' '.join(command)}".rstrip())
    for word in HELP[command]:
        assert word in out, word


KERNEL_MODULES = ("numba", "strategies", "engine.book.book_nb", "engine.backtest.backtest_nb")
IMPORTED_BY = """
import sys
from engine.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
print("imported:", " ".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_kernel(flag: str, tmp_path: Path) -> None:
    """They answer at once on a cold cache: nothing that compiles, not even numba itself, is imported."""
    proc = subprocess.run([sys.executable, "-c", IMPORTED_BY.format(argv=[flag])], cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)  # fmt: skip
    imported = proc.stderr.split("imported:")[1].split()
    assert "engine.cli.main" in imported
    loaded = [m for m in imported if m.endswith("_nb") or m.split(".")[0] in KERNEL_MODULES or m in KERNEL_MODULES]
    assert loaded == [], f"hftmm {flag} imported {loaded}"


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert run_ok("--version", cwd=tmp_path).strip() == f"hftmm {version('hftmm')}"


def test_backtest_help_still_lists_every_strategy_and_its_parameters(tmp_path: Path) -> None:
    from strategies import STRATEGIES

    out = run_ok("backtest", "--help", cwd=tmp_path)
    for strategy in STRATEGIES.values():
        assert f"{strategy.name}: " in out
        assert all(p.name in out for p in strategy.params)


def test_compile_prints_a_line_per_kernel_group_with_its_time(tmp_path: Path) -> None:
    proc = run("compile", "strategies", "feeds", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for group in ("strategies", "feeds"):
        assert re.search(rf"^  {group} +\d+\.\d s \((compiled in \d+\.\d s|from the cache)\)$", proc.stderr, re.M)
    assert "2 kernel groups ready in" in proc.stderr
    assert proc.stdout == ""


def test_compile_of_an_unknown_group_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("compile", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown kernel group 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage: hftmm" in proc.stderr and "Traceback" not in proc.stderr
