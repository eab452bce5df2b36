"""Feed + book throughput: ITCH 5.0 decode, L3 book apply, and both, beside a pure-Python baseline.

Run as ``hftmm bench feed`` (or ``python -m bench.feed_book``). Three cases, each an ITCH file generated
once into ``replay_data/generated/`` and read into memory, so the figures are of the decoder and the
book, not of the disk:

- ``shallow``: the synthetic day (``feeds.synth``, fixed seed), a few hundred live orders a stock;
- ``deep``: the same day with books as deep as a real futures book (``feeds.synth`` profile ``deep``:
  the busiest name ~20,000 live orders on ~1,500 levels, calibrated to the ESM4 MBO book);
- ``esm4x64``: real flow, the ESM4 MBO file of ``../shared/replay_data`` re-encoded as ITCH and tiled over
  64 instruments (``feeds.tile``): 870,000 live orders, ~99,000 levels (skipped, with the reason, when
  the file is absent).

Each case times decode alone, the book alone (events decoded beforehand), and decode + book twice: with
a book that starts small and doubles its tables as the day fills it (what ``hftmm replay`` does by
default), and with one sized at start for the day's peak (``hftmm replay --orders N``; the tables the
first run ended with, allocated before the clock starts), which is how a production feed handler runs.

Before anything is timed, the compiled path and the pure-Python baseline process the same prefix and
must end with identical books. Each figure is the best of ``repeats`` runs on one core; the baseline
runs in the same process on the same bytes. Each case also reports the book it ends with: live orders,
levels, and the memory of its tables (all resident) per million live orders.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import struct
import time
from pathlib import Path

import numpy as np

from bench.machine import machine_info, write_results
from engine.book import layout as BL
from engine.book.book import Book
from engine.core import events as E
from feeds.flatfile import BATCH_ROWS  # events per decode call, as the streaming reader uses
from feeds.itch import STATUS_DONE, STATUS_OUT_FULL, decode_flat_nb, new_stock_directory
from feeds.synth import generate_itch
from feeds.tile import tile_itch

BASELINE_MESSAGES = 300_000  # the pure-Python path is ~100x slower: a prefix is enough
GENERATED = Path("replay_data/generated")
REPO = Path(__file__).resolve().parents[1]
ESM4_MBO = (REPO.parent / "shared" / "replay_data" / "dbn" / "esm4_mbo"
            / "orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst")  # fmt: skip
CASES = ("shallow", "deep", "esm4x64")
SIZED = "decode + book, sized at start"


# --- the pure-Python baseline: struct decoding and a dict book -----------------------------------
_U16 = struct.Struct(">H")
_ADD = struct.Struct(">HxxxxxxxxQcI8xI")  # locate, (tracking, timestamp), ref, side, shares, stock, price
_REF_QTY = struct.Struct(">Q I")  # ref, shares (E, C, X)
_REF = struct.Struct(">Q")
_REPLACE = struct.Struct(">QQII")  # old ref, new ref, shares, price
_BODY = 11  # header bytes before a message's own fields


def python_decode_and_book(data: bytes, messages: int) -> tuple[dict, int]:
    """Decode ``messages`` records with ``struct`` and keep a dict book; returns (book, bytes used).

    The book maps (locate, side, price) -> [qty, orders]; orders maps ref -> [key, qty].
    """
    levels: dict[tuple[int, int, int], list[int]] = {}
    orders: dict[int, list] = {}
    pos = 0

    def take(ref: int, qty: int) -> None:
        order = orders.get(ref)
        if order is None:
            return
        qty = min(qty, order[1])
        order[1] -= qty
        level = levels[order[0]]
        level[0] -= qty
        if order[1] == 0:
            level[1] -= 1
            if level[1] == 0:
                del levels[order[0]]
            del orders[ref]

    def add(ref: int, key: tuple[int, int, int], qty: int) -> None:
        orders[ref] = [key, qty]
        level = levels.setdefault(key, [0, 0])
        level[0] += qty
        level[1] += 1

    for _ in range(messages):
        (length,) = _U16.unpack_from(data, pos)
        start = pos + 2
        pos = start + length
        kind = data[start]
        if kind in (0x41, 0x46):  # A, F
            locate, ref, side, shares, price = _ADD.unpack_from(data, start + 1)
            add(ref, (locate, E.SIDE_BID if side == b"B" else E.SIDE_ASK, price), shares)
        elif kind in (0x45, 0x43, 0x58):  # E, C, X
            ref, shares = _REF_QTY.unpack_from(data, start + _BODY)
            take(ref, shares)
        elif kind == 0x44:  # D
            (ref,) = _REF.unpack_from(data, start + _BODY)
            if ref in orders:
                take(ref, orders[ref][1])
        elif kind == 0x55:  # U
            old, new, shares, price = _REPLACE.unpack_from(data, start + _BODY)
            if old in orders:
                key = orders[old][0]
                take(old, orders[old][1])
                add(new, (key[0], key[1], price), shares)
    return levels, pos


# --- the compiled path --------------------------------------------------------------------------
def decode_all(buf: np.ndarray, end: int, out: np.ndarray | None, counts: np.ndarray, book: Book | None) -> int:
    """Decode ``buf[:end]`` in BATCH_ROWS batches; returns the events decoded.

    Batches land in ``out`` when given (to keep them), else in one reused buffer as the streaming
    reader does; each batch is applied to ``book`` when given.
    """
    directory = new_stock_directory()
    batch = np.empty(BATCH_ROWS, E.EVENT_DTYPE)
    pos, seq, n_events = 0, 0, 0
    while True:
        target = batch if out is None else out[n_events : n_events + BATCH_ROWS]
        pos, n, status, _ = decode_flat_nb(buf, pos, end, target, counts, directory, seq, False)
        if book is not None:
            book.apply(target[:n])
        n_events += n
        seq += n
        if status == STATUS_DONE:
            return n_events
        if status != STATUS_OUT_FULL:
            raise RuntimeError(f"decode stopped with status {status} at offset {pos}")


def _levels_of(book: Book) -> dict[tuple[int, int, int], list[int]]:
    out = {}
    for instrument in book.instruments():
        bids, asks = book.depth(instrument, 1 << 20)
        for side, rows in ((E.SIDE_BID, bids), (E.SIDE_ASK, asks)):
            for price, qty, count in rows:
                out[(instrument, side, int(price))] = [int(qty), int(count)]
    return out


def check_against_baseline(buf: np.ndarray, data: bytes, messages: int) -> float:
    """Books from both paths on the same prefix must be identical; returns baseline msgs/s."""
    prefix = min(messages, BASELINE_MESSAGES)
    t0 = time.perf_counter()
    levels, end = python_decode_and_book(data, prefix)
    baseline_rate = prefix / (time.perf_counter() - t0)
    book = Book()
    decode_all(buf, end, None, np.zeros(256, np.int64), book)
    if _levels_of(book) != levels:
        raise SystemExit("bench: compiled and pure-Python books differ on the same input; not timing")
    return baseline_rate


def _timed(repeats: int, func, setup=lambda: None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``func(setup())``, ``setup`` left out of the time."""
    times = []
    for _ in range(repeats):
        arg = setup()
        t0 = time.perf_counter()
        func(arg)
        times.append(time.perf_counter() - t0)
    return times


def _case_file(case: str, messages: int, symbols: int, seed: int, real: Path, copies: int) -> tuple[Path, dict]:
    """The ITCH file of ``case`` (generated on first use) and what it holds."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    if case == "esm4x64":
        path = GENERATED / f"bench-{real.name.split('.')[0]}-x{copies}.itch"
        about = {"source": str(real), "copies": copies}
        if not path.exists():
            print(f"re-encoding {real.name} as ITCH over {copies} instruments -> {path}")
            tile_itch(real, path, copies)
        return path, about
    depth = "deep" if case == "deep" else "shallow"
    suffix = "" if depth == "shallow" else "-deep"
    path = GENERATED / f"bench-{messages}-{symbols}-{seed}{suffix}.itch"
    if not path.exists():
        print(f"generating {messages:,} messages over {symbols} symbols ({depth} books) -> {path}")
        generate_itch(str(path), messages=messages, symbols=symbols, seed=seed, depth=depth)
    return path, {"symbols": symbols, "seed": seed, "depth": depth}


def _grown_book(buf: np.ndarray) -> Book:
    """The book a whole file leaves, grown from empty: its tables are the ones the day's peak needed."""
    book = Book()
    decode_all(buf, len(buf), None, np.zeros(256, np.int64), book)
    return book


def _book_figures(book: Book) -> dict:
    """Live orders, levels, and the memory the book's tables hold, per million live orders. Every page of
    the tables is written when they are allocated (free lists, empty hash slots), so this is their resident
    size; a book sized for its peak at start never holds more."""
    orders = book.total_orders
    table_mib = sum(a.nbytes for a in book.state) / 2**20
    return {
        "live_orders": orders,
        "levels": int(book.state.meta[BL.M_LEVELS]),
        "instruments": len(book.instruments()),
        "table_mib": round(table_mib, 1),
        "mib_per_million_live_orders": round(table_mib * 1e6 / orders, 1) if orders else None,
    }


def run_case(path: Path, repeats: int) -> dict:
    """Check one ITCH file against the baseline, then time decode, book and both; the case's figures."""
    data = path.read_bytes()
    buf = np.frombuffer(data, np.uint8)
    counts = np.zeros(256, np.int64)
    events = np.empty(decode_all(buf, len(buf), None, np.zeros(256, np.int64), None), E.EVENT_DTYPE)
    n_events = decode_all(buf, len(buf), events, counts, None)  # warm-up, compile, and the input of book-only
    n_msgs = int(counts.sum())
    baseline = check_against_baseline(buf, data, n_msgs)
    grown = _grown_book(buf)
    st = grown.state

    def sized() -> Book:
        return Book(orders=len(st.orders), levels=len(st.levels), instruments=len(st.books))

    rows = {
        "decode": _timed(repeats, lambda _: decode_all(buf, len(buf), None, np.zeros(256, np.int64), None)),
        "book (pre-decoded)": _timed(repeats, lambda _: Book().apply(events)),
        "decode + book": _timed(repeats, lambda _: decode_all(buf, len(buf), None, np.zeros(256, np.int64), Book())),
        SIZED: _timed(repeats, lambda book: decode_all(buf, len(buf), None, np.zeros(256, np.int64), book), sized),
    }
    return {
        "input": {"file": str(path), "bytes": len(data), "messages": n_msgs, "events": n_events},
        "results": {
            name: {
                "seconds": round(min(times), 4),
                "msgs_per_s": round(n_msgs / min(times)),
                "ns_per_msg": round(min(times) * 1e9 / n_msgs, 1),
                "median_msgs_per_s": round(n_msgs / statistics.median(times)),
            }
            for name, times in rows.items()
        },
        "book": _book_figures(grown),
        "baseline_python_msgs_per_s": round(baseline),
        "speedup_vs_python": round(n_msgs / min(rows["decode + book"]) / baseline, 1),
    }


def run(
    messages: int,
    symbols: int,
    seed: int,
    repeats: int,
    out_dir: str,
    cases: tuple[str, ...] = CASES,
    real: Path | None = None,
    copies: int = 64,
) -> dict:
    """Generate (once), check, time each case, and write JSON + Markdown under ``out_dir``; the result.

    ``real`` is the file the esm4x64 case tiles ``copies`` times (default: the ESM4 MBO file)."""
    real = ESM4_MBO if real is None else real
    unknown = set(cases) - set(CASES)
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(sorted(unknown))}; the cases are {', '.join(CASES)}")
    done: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for case in cases:
        if case == "esm4x64" and not real.is_file():
            skipped[case] = f"real data file {real} is absent"
            print(f"skipping {case}: {skipped[case]}")
            continue
        path, about = _case_file(case, messages, symbols, seed, real, copies)
        print(f"timing {case} ({path.name}, best of {repeats})")
        figures = run_case(path, repeats)
        figures["input"].update(about)
        done[case] = figures
    result = {
        "benchmark": "feed_book",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "repeats": repeats,
        "cases": done,
        "skipped": skipped,
    }
    _write(result, out_dir)
    return result


def _write(result: dict, out_dir: str) -> None:
    m = result["machine"]
    lines = [
        f"# Feed + book throughput ({result['date'][:10]})",
        "",
        f"ITCH 5.0 files in memory, one core, best of {result['repeats']}. "
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, numba {m['numba']}.",
        "",
        "| case | messages | live orders at the end | path | msgs/s (best) | ns/msg (best) | msgs/s (median) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for case, c in result["cases"].items():
        for name, r in c["results"].items():
            lines.append(f"| {case} | {c['input']['messages']:,} | {c['book']['live_orders']:,} | {name} | "
                         f"{r['msgs_per_s']:,} | {r['ns_per_msg']} | {r['median_msgs_per_s']:,} |")  # fmt: skip
    lines += ["", "| case | levels | book tables (MiB) | MiB per million live orders | pure-Python baseline msgs/s "
              "| decode + book vs baseline |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for case, c in result["cases"].items():
        b = c["book"]
        lines.append(f"| {case} | {b['levels']:,} | {b['table_mib']} | {b['mib_per_million_live_orders']} | "
                     f"{c['baseline_python_msgs_per_s']:,} | {c['speedup_vs_python']}x |")  # fmt: skip
    for case, reason in result["skipped"].items():
        lines.append(f"\n{case}: skipped, {reason}.")
    write_results(result, "feed", lines, out_dir)


def main() -> None:
    """``python -m bench.feed_book``: same options as ``hftmm bench feed``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join("bench", "results"))
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--real", type=Path)
    p.add_argument("--copies", type=int, default=64)
    a = p.parse_args()
    run(a.messages, a.symbols, a.seed, a.repeats, a.out, tuple(a.cases.split(",")), a.real, a.copies)


if __name__ == "__main__":
    main()
