"""``hftmm replay``, ``book``, ``convert`` and ``gen-itch``: feed files into books, Parquet, synthetic days."""

from __future__ import annotations

import argparse
import json
import math
import sys

from engine.cli.args import EXIT_BAD_INPUT, input_args, positive, progress_wanted, report_skips, symbol_set, warn
from feeds.errors import FeedError

DEFAULT_DEPTH = 10


def cmd_replay(args: argparse.Namespace) -> int:
    """Decode files into books and report what they held."""
    from engine.book.replay import replay

    result = replay(
        args.files,
        symbols=symbol_set(args.symbols),
        skip_bad=args.skip_bad,
        progress=progress_wanted(args),
        orders=args.orders,
    )
    report_skips(result.feed.stats)
    for symbol in result.feed.missing_symbols:
        warn(f"symbol {symbol} does not appear in the input")
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    counts = "  ".join(f"{k} {v:,}" for k, v in sorted(summary["counts"].items()))
    print(f"files        {len(summary['files'])}")
    print(f"messages     {summary['messages']:,}  ({counts})")
    print(f"instruments  {summary['instruments']:,}")
    print(
        f"book         {summary['resting_orders']:,} resting orders, "
        f"{summary['unknown_order_refs']:,} unknown order refs, {summary['crossed_books']:,} crossed"
    )
    gap_note = f" (first missing seq {summary['first_missing_seq']})" if summary["gaps"] else ""
    print(f"sequence     {summary['gaps']:,} gaps, {summary['missing_messages']:,} missing messages{gap_note}")
    if summary["first_event_ts_ns"] is not None:
        first, last = _clock(summary["first_event_ts_ns"]), _clock(summary["last_event_ts_ns"])
        print(f"time         {first} .. {last} (events)")
    print(f"elapsed      {summary['elapsed_s']:.3f} s  ({summary['msgs_per_s']:,} msgs/s)")
    return 0


def _clock(ts_ns: int) -> str:
    """HH:MM:SS.nnnnnnnnn of a timestamp's time of day (ITCH stamps are ns since midnight)."""
    day_ns = ts_ns % 86_400_000_000_000
    seconds, ns = divmod(day_ns, 1_000_000_000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{ns:09d}"


def _decimals(price_scale: int, tick_size: float) -> int:
    """Decimals worth printing: the tick's, or the fixed-point scale's when the tick is unknown."""
    if tick_size > 0:
        text = f"{tick_size:.9f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0
    return max(0, round(math.log10(price_scale)))


def cmd_book(args: argparse.Namespace) -> int:
    """Print the final book of each symbol."""
    from engine.book.replay import replay
    from engine.core import events as E

    wanted = symbol_set(args.symbol)
    result = replay(
        args.files, symbols=wanted, skip_bad=args.skip_bad, progress=progress_wanted(args), orders=args.orders
    )
    report_skips(result.feed.stats)
    if result.feed.missing_symbols:
        raise FeedError(f"symbol {', '.join(result.feed.missing_symbols)} does not appear in the input")
    book, out, decimals = result.book, {}, {}
    for instrument_id in book.instruments():
        inst = result.feed.instrument(instrument_id)
        bids, asks = book.depth(instrument_id, args.depth)
        scale = inst.price_scale
        out[inst.symbol] = {
            "instrument_id": instrument_id,
            "bid_levels": book.level_count(instrument_id, E.SIDE_BID),
            "ask_levels": book.level_count(instrument_id, E.SIDE_ASK),
            "orders": book.order_count(instrument_id),
            "bids": [[p / scale, int(q), int(n)] for p, q, n in bids],
            "asks": [[p / scale, int(q), int(n)] for p, q, n in asks],
        }
        decimals[inst.symbol] = _decimals(scale, inst.tick_size)
    if args.json:
        print(json.dumps(out))
        return 0
    for symbol, b in out.items():
        _print_ladder(symbol, b, decimals[symbol])
    if not out:
        print("no books: the input holds no orders")
    return 0


def _print_ladder(symbol: str, b: dict, d: int) -> None:
    print(
        f"{symbol} (instrument {b['instrument_id']}): {b['orders']:,} orders, "
        f"{b['bid_levels']:,} bid levels, {b['ask_levels']:,} ask levels"
    )
    print(f"  {'orders':>7} {'bid qty':>12} {'bid':>14} | {'ask':<14} {'ask qty':>12} {'orders':>7}")
    for i in range(max(len(b["bids"]), len(b["asks"]))):
        left = right = ""
        if i < len(b["bids"]):
            p, q, n = b["bids"][i]
            left = f"{n:>7,} {q:>12,} {p:>14.{d}f}"
        if i < len(b["asks"]):
            p, q, n = b["asks"][i]
            right = f"{p:<14.{d}f} {q:>12,} {n:>7,}"
        print(f"  {left:>35} | {right}")
    print()


def cmd_convert(args: argparse.Namespace) -> int:
    """Write the events of the input files to one event Parquet file."""
    from feeds.parquet import write_events
    from feeds.read import FeedPass, read_feeds

    fp = FeedPass(list(args.files))
    batches = read_feeds(args.files, skip_bad=args.skip_bad, progress=not args.quiet, feed_pass=fp)
    rows = write_events(args.output, batches, fp.instruments, source=",".join(args.files))
    report_skips(fp.stats)
    print(f"wrote {rows:,} events of {len(fp.instruments):,} instruments to {args.output}")
    return 0


def cmd_gen_itch(args: argparse.Namespace) -> int:
    """Write a synthetic, well-formed ITCH 5.0 day, or a real file's flow re-encoded as ITCH and tiled."""
    from feeds.synth import generate_itch
    from feeds.tile import tile_itch

    try:
        if args.source:
            summary = tile_itch(args.source, args.output, args.copies)
        else:
            summary = generate_itch(args.output, messages=args.messages, symbols=args.symbols, seed=args.seed,
                                    depth=args.depth, gzip=args.output.endswith(".gz"))  # fmt: skip
    except ValueError as exc:  # sizes the generator cannot honour, prices ITCH cannot carry
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.source:
        tally = "  ".join(f"{k} {v:,}" for k, v in summary["tally"].items())
        names = ", ".join(summary["instruments"])
        print(f"wrote {summary['messages']:,} messages: {names} x {args.copies} copies to {args.output}")
        print(f"source events became ({tally}), each {args.copies} times")
        return 0
    counts = "  ".join(f"{k} {v:,}" for k, v in sorted(summary["counts"].items()))
    print(f"wrote {summary['messages']:,} messages ({counts}) for {args.symbols} symbols ({args.depth} books) "
          f"to {args.output}")  # fmt: skip
    return 0


def orders_arg(p: argparse.ArgumentParser) -> None:
    """``--orders N``: the books sized at start for the day's peak of live orders."""
    p.add_argument(
        "--orders",
        type=positive,
        metavar="N",
        help="size the books for N live orders before the clock starts, as a feed handler sized for the day's "
        "peak (about 100 MiB per million); default: start small and double the tables as they fill",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``replay``, ``book``, ``convert`` and ``gen-itch``."""
    p = sub.add_parser("replay", help="decode feed files into books and count what they hold")
    input_args(p)
    p.add_argument("--symbols", metavar="S,...", help="keep only these symbols (comma separated)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    orders_arg(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("book", help="print the final order book of each symbol")
    input_args(p)
    p.add_argument("--symbol", metavar="SYM", help="only this symbol (or a comma-separated list)")
    p.add_argument("--depth", type=positive, default=DEFAULT_DEPTH, metavar="N", help="levels per side (10)")
    p.add_argument("--json", action="store_true", help="print {symbol: {bid_levels, ask_levels, orders, bids, asks}}")
    orders_arg(p)
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("convert", help="convert ITCH or DBN MBO files to event Parquet")
    input_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet", help="the Parquet file to write")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("gen-itch", help="write a synthetic ITCH 5.0 day, or a real file's flow as ITCH, tiled",
                       description="Write a synthetic but well-formed ITCH 5.0 day (shallow or deep books), or, with "
                       "--from, a real feed file's order flow re-encoded as ITCH with --copies copies of each "
                       "instrument interleaved (deep real books for benchmarks).")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="flat ITCH file (.gz compresses)")
    p.add_argument("--messages", type=positive, default=1_000_000, metavar="N", help="messages (1,000,000)")
    p.add_argument("--symbols", type=positive, default=50, metavar="K", help="instruments (50)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (1)")
    p.add_argument("--depth", choices=("shallow", "deep"), default="shallow",
                   help="book depth: shallow (a few hundred orders a stock) or deep (the busiest ~20,000 orders "
                   "on ~1,500 levels, calibrated to the ESM4 MBO book) (shallow)")  # fmt: skip
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="re-encode this feed file (DBN MBO, ITCH, pcap, Parquet) instead of generating")  # fmt: skip
    p.add_argument("--copies", type=positive, default=1, metavar="N", help="with --from: copies of each instrument (1)")
    p.set_defaults(func=cmd_gen_itch)
