"""The ``hftmm`` command line: one sub-command per job, each a thin layer over a library call.

Bad input never ends in a traceback: a :class:`feeds.FeedError` (or an unreadable file) is printed
as one line naming the file and the place, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence

from feeds.errors import FeedError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_DEPTH = 10


def _symbols(text: str | None) -> set[str] | None:
    return {s.strip() for s in text.split(",") if s.strip()} if text else None


def _warn(message: str) -> None:
    print(f"hftmm: warning: {message}", file=sys.stderr)


def _report_skips(stats) -> None:
    if stats.skipped_records or stats.skipped_bytes:
        _warn(f"skipped {stats.skipped_records} bad records ({stats.skipped_bytes} bytes); first:")
        for line in stats.errors:
            print(f"  {line}", file=sys.stderr)


# --- replay -------------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    """Decode files into books and report what they held."""
    from engine.replay import replay

    result = replay(args.files, symbols=_symbols(args.symbols), skip_bad=args.skip_bad, progress=_progress(args))
    _report_skips(result.feed.stats)
    for symbol in result.feed.missing_symbols:
        _warn(f"symbol {symbol} does not appear in the input")
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


# --- book ---------------------------------------------------------------------------------------
def _decimals(price_scale: int, tick_size: float) -> int:
    """Decimals worth printing: the tick's, or the fixed-point scale's when the tick is unknown."""
    if tick_size > 0:
        text = f"{tick_size:.9f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0
    return max(0, round(math.log10(price_scale)))


def cmd_book(args: argparse.Namespace) -> int:
    """Print the final book of each symbol."""
    from engine.events import SIDE_ASK, SIDE_BID
    from engine.replay import replay

    wanted = _symbols(args.symbol)
    result = replay(args.files, symbols=wanted, skip_bad=args.skip_bad, progress=_progress(args))
    _report_skips(result.feed.stats)
    if result.feed.missing_symbols:
        raise FeedError(f"symbol {', '.join(result.feed.missing_symbols)} does not appear in the input")
    book, out, decimals = result.book, {}, {}
    for instrument_id in book.instruments():
        inst = result.feed.instrument(instrument_id)
        bids, asks = book.depth(instrument_id, args.depth)
        scale = inst.price_scale
        out[inst.symbol] = {
            "instrument_id": instrument_id,
            "bid_levels": book.level_count(instrument_id, SIDE_BID),
            "ask_levels": book.level_count(instrument_id, SIDE_ASK),
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


# --- convert ------------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    """Write the events of the input files to one event Parquet file."""
    from engine.eventstore import write_events
    from engine.replay import FeedPass, read_feeds

    fp = FeedPass(list(args.files))
    batches = read_feeds(args.files, skip_bad=args.skip_bad, progress=not args.quiet, feed_pass=fp)
    rows = write_events(args.output, batches, fp.instruments, source=",".join(args.files))
    _report_skips(fp.stats)
    print(f"wrote {rows:,} events of {len(fp.instruments):,} instruments to {args.output}")
    return 0


# --- gen-itch -----------------------------------------------------------------------------------
def cmd_gen_itch(args: argparse.Namespace) -> int:
    """Write a synthetic, well-formed ITCH 5.0 day."""
    from feeds.synth import generate_itch

    try:
        summary = generate_itch(
            args.output, messages=args.messages, symbols=args.symbols, seed=args.seed, gzip=args.output.endswith(".gz")
        )
    except ValueError as exc:  # sizes the generator cannot honour
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = "  ".join(f"{k} {v:,}" for k, v in sorted(summary["counts"].items()))
    print(f"wrote {summary['messages']:,} messages ({counts}) for {args.symbols} symbols to {args.output}")
    return 0


# --- bench --------------------------------------------------------------------------------------
def _old_result(args: argparse.Namespace) -> dict | None:
    """The ``--compare`` result, read before a long run so a bad path fails at once (ValueError)."""
    from bench.report import load_result

    return load_result(args.compare) if args.compare else None


def _print_comparison(old: dict | None, result: dict, old_path: str) -> None:
    from bench.report import compare, compare_lines

    if old is not None:
        print("\n".join(["", *compare_lines(compare(old, result), old_path, "this run")]))


def cmd_bench_feed(args: argparse.Namespace) -> int:
    """Decode and book throughput (bench/feed_book.py)."""
    from bench.feed_book import run

    old = _old_result(args)
    result = run(messages=args.messages, symbols=args.symbols, seed=args.seed, repeats=args.repeats, out_dir=args.out)
    _print_comparison(old, result, args.compare)
    return 0


def cmd_bench_backtest(args: argparse.Namespace) -> int:
    """Backtester events/s with touch and GLFT, beside hftbacktest on the same npz (bench/backtest.py)."""
    from bench.backtest import run

    old = _old_result(args)
    result = run(args.npz, args.npz_events, args.messages, args.symbols, args.seed, args.repeats, args.out)
    _print_comparison(old, result, args.compare)
    return 0


def cmd_bench_gateway(args: argparse.Namespace) -> int:
    """Order -> acknowledgement round trips over Aeron IPC, Aeron UDP and kernel UDP (bench/gateway.py)."""
    import contextlib

    from bench.gateway import GatewayBenchConfig, GatewayBenchError, run

    try:
        config = GatewayBenchConfig(
            duration_s=args.duration,
            warmup_s=args.warmup,
            rate=args.rate,
            transports=tuple(args.transports.split(",")),
            cpus=args.cpus,
            idle=args.idle,
            driver_idle=args.driver_idle,
            size=args.size,
        )
        # the report is echoed to stdout as it is written; with --json stdout holds the JSON object alone
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            result = run(config, args.out, args.compare)
    except ValueError as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except GatewayBenchError as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_bench_t2t(args: argparse.Namespace) -> int:
    """Tick-to-trade of a live node against the simulated exchange, stage by stage (bench/t2t.py)."""
    from bench.t2t import BenchError, T2TConfig, bench_params, main
    from engine.backtest import BacktestError
    from engine.config import ConfigError

    try:
        params = bench_params(args.strategy, _strategy_params(args))
        config = T2TConfig(duration_s=args.duration, warmup_s=args.warmup, rate=args.rate, size=args.size,
                           cpus=args.cpus or (), idle=args.idle, strategy=args.strategy, params=params)  # fmt: skip
        return main(config, args.out, args.json, args.compare)
    except (BenchError, BacktestError, ConfigError, ValueError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


# --- sim-exchange -------------------------------------------------------------------------------
SIM_POLL_S = 0.2  # how often the waiting main thread checks the duration and the exchange's health


def cmd_sim_exchange(args: argparse.Namespace) -> int:
    """Run the simulated exchange until Ctrl-C, SIGTERM or the duration; print where it listens and its stats."""
    import gc
    import signal
    import threading
    import time

    from engine.config import ConfigError, load_toml
    from engine.simexchange import SimExchange, SimExchangeConfig

    try:
        config = load_toml(args.config, SimExchangeConfig) if args.config else SimExchangeConfig()
    except ConfigError as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        exchange = SimExchange(config)
    except ValueError as exc:  # settings the components refuse (a bad multicast group, ...)
        print(f"hftmm: error: {args.config or 'config'}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(exchange.describe(), flush=True)
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    failure: RuntimeError | None = None
    try:
        gc.freeze()
        exchange.start()
        while not stop.wait(SIM_POLL_S) and not exchange.failed:
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        try:
            exchange.stop()
        except RuntimeError as exc:
            failure = exc
    if args.report:  # also after a failure: what the exchange did up to it
        with open(args.report, "w") as fh:
            json.dump(exchange.report(), fh, indent=2)
    if failure is not None:
        print(f"hftmm: error: {failure}: {failure.__cause__}", file=sys.stderr)
        return 1
    print(f"ran {time.monotonic() - started:.1f} s")
    for name, value in exchange.stats().items():
        print(f"{name:<24} {value:>14,}")
    return 0


# --- live -----------------------------------------------------------------------------------------
def _live_config(path: str | None):
    """The live config of ``--config`` (the defaults without one); raises ConfigError in one line."""
    from engine.config import load_toml
    from engine.live_config import LiveConfig

    return load_toml(path, LiveConfig) if path else LiveConfig()


def cmd_live(args: argparse.Namespace) -> int:
    """Run the live daemon until Ctrl-C, SIGTERM or the duration; cancel everything; print the report."""
    import signal

    from engine.config import ConfigError
    from engine.live import (
        LiveDaemon,
        LiveError,
        format_recovery,
        format_report,
        install_signals,
        stderr_line,
        terminal_status,
    )
    from engine.metrics import MetricsBlockError

    try:
        config = _live_config(args.config)
    except ConfigError as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tty = sys.stderr.isatty()
    notice = (lambda text: stderr_line(f"\n{text}")) if tty else stderr_line
    daemon = LiveDaemon(config, out=notice, status=terminal_status if tty else None)
    handlers = install_signals(daemon)
    try:
        try:
            daemon.start()
        except (LiveError, MetricsBlockError, ValueError, OSError) as exc:  # a port in use, another daemon, a bad CPU
            print(f"hftmm: error: {args.config or 'live'}: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_BAD_INPUT
        install_signals(daemon)  # again: starting Ray put its own SIGTERM handler in place
        stderr_line(f"hftmm live: {len(config.nodes)} node(s), metrics on {daemon.exporter.url}")
        if daemon.recovery is not None:  # the previous daemon died: what its successor goes on from
            print(format_recovery(daemon.recovery), flush=True)
        daemon.run(args.duration)
        daemon.shutdown()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if tty:
        print(file=sys.stderr)  # end the status line
    report = daemon.report()
    print(format_report(report), flush=True)
    if args.report:
        with open(args.report, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    """Trip the kill switch of the running live daemon (cancel everything, quote no more)."""
    from engine.config import ConfigError
    from engine.live import LiveError, kill_daemon

    try:
        pid = kill_daemon(_live_config(args.config).runtime_dir)
    except (ConfigError, LiveError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"kill switch sent to hftmm live (pid {pid})")
    return 0


# --- backtest -----------------------------------------------------------------------------------
def _strategy_params(args: argparse.Namespace) -> dict[str, float]:
    """Parameters from ``--params FILE.toml`` (top-level keys or a [params] table), then ``--param k=v``."""
    from engine.backtest import BacktestError
    from engine.config import ConfigError, load_toml

    values: dict[str, float] = {}
    if args.params:
        table = load_toml(args.params, dict)
        table = table.get("params", table)
        for name, value in table.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"{args.params}: parameter {name} must be a number, got {value!r}")
            values[name] = float(value)
    for pair in args.param or []:
        name, sep, value = pair.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise BacktestError(f"bad --param {pair!r}: expected NAME=NUMBER")
    return values


def _model_options(args: argparse.Namespace) -> dict:
    """The backtest's instrument, latency, queue, fee and order options, as ``engine.backtest.backtest`` takes them."""
    names = ("symbol", "tick_size", "lot_size", "instruments", "latency", "feed_latency", "queue", "partial_fills",
             "maker_fee", "taker_fee", "time_in_force")  # fmt: skip
    return {name: getattr(args, name) for name in names}


def _model_args(p: argparse.ArgumentParser) -> None:
    """The options of ``backtest`` that ``sweep`` shares: instrument, models, fees, time in force."""
    from engine.backtest import DEFAULT_LATENCY

    p.add_argument("--symbol", metavar="SYM", help="the instrument to trade when the data holds several")
    p.add_argument("--tick-size", type=float, metavar="X", help="price increment (ITCH default 0.01; npz: required)")
    p.add_argument("--lot-size", type=float, metavar="Y", help="size increment (ITCH default 1; npz: required)")
    p.add_argument(
        "--instruments",
        metavar="FILE.toml",
        help="tick and lot per symbol: [[instruments]] symbol, tick_size, lot_size (--tick-size/--lot-size win)",
    )
    p.add_argument(
        "--latency",
        default=DEFAULT_LATENCY,
        metavar="MODEL",
        help="order entry and response latency: constant:ENTRY_NS,RESP_NS (default 10 us each) | "
        "lognormal:ENTRY_MEDIAN_NS,RESP_MEDIAN_NS,SIGMA[,SEED] | table:FILE (time, entry, resp rows)",
    )
    p.add_argument(
        "--feed-latency",
        metavar="MODEL",
        help="data (the files' local timestamps, default) | constant:NS after the exchange timestamp",
    )
    p.add_argument(
        "--queue",
        metavar="MODEL",
        help="queue position on L2 data: risk-averse (default) | power:N | log; L3 data: fifo (exact)",
    )
    p.add_argument("--partial-fills", action="store_true", help="fill part of an order when less trades at it")
    p.add_argument("--maker-fee", type=float, default=0.0, metavar="F", help="fraction of value; negative = rebate")
    p.add_argument("--taker-fee", type=float, default=0.0, metavar="F", help="fraction of traded value")
    p.add_argument(
        "--time-in-force",
        choices=("gtx", "gtc"),
        default="gtx",
        help="gtx: post-only, an order that would cross is rejected (default); gtc: it takes liquidity",
    )


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run one strategy over historical data and report PnL, risk and fill statistics."""
    from engine.backtest import BacktestError, backtest
    from engine.capture import is_capture
    from engine.config import ConfigError

    if any(is_capture(path) for path in args.data):
        return _backtest_capture(args)
    if not args.strategy:
        print("hftmm: error: --strategy is required (only a session capture brings its own)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = backtest(
            args.data, args.strategy, _strategy_params(args), progress=_progress(args), **_model_options(args)
        )
    except (BacktestError, ConfigError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    s = result.stats
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        result.to_parquet(out)
        result.plot(out / "equity.png")
        (out / "report.json").write_text(json.dumps(s, indent=2) + "\n")
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"strategy     {s['strategy']} on {s['symbol']} ({s['data']})  " + " ".join(
        f"{k}={v:g}" for k, v in s["params"].items()))  # fmt: skip
    print(f"events       {s['events']:,} in {s['elapsed_s']:.3f} s ({s['events_per_s']:,.0f} events/s; "
          f"load {s['load_s']:.2f} s, compile {s['compile_s']:.1f} s)")  # fmt: skip
    print(f"orders       {s['orders']:,} sent, {s['cancels']:,} canceled, {s['rejects']:,} rejected, "
          f"{s['filled_orders']:,} filled (fill ratio {s['fill_ratio']:.3f})")  # fmt: skip
    print(f"fills        {s['fills']:,} ({s['taker_fills']:,} taker), volume {s['traded_volume']:,.4g}, "
          f"value {s['traded_value']:,.2f}")  # fmt: skip
    print(f"position     {s['position_units']:,.6g} (mean |position| {s['mean_abs_position']:.4g})")
    print(f"pnl          {s['pnl']:,.2f} net of fees {s['fees']:,.2f}; max drawdown {s['max_drawdown']:,.2f}")
    print(f"ratios       Sharpe {s['sharpe']:.2f}, Sortino {s['sortino']:.2f} (per-second changes, annualised)")
    if args.out:
        print(f"written      {args.out}/fills.parquet, equity.parquet, equity.png, report.json")
    return 0


def _backtest_capture(args: argparse.Namespace) -> int:
    """``backtest --data FILE.capture.arrow``: replay a live session through its own strategy; 1 if it decided
    otherwise than live."""
    from engine.capture import CaptureError, replay_capture, replay_stats

    if len(args.data) != 1:
        print("hftmm: error: a session capture is replayed on its own: give one --data file", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.param or args.params:
        print("hftmm: error: a session capture replays the node's own parameters; drop --param/--params",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    path = args.data[0]
    bar = None
    if _progress(args):
        from tqdm import tqdm

        bar = tqdm(unit="step", unit_scale=True, desc="capture replay", file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        replay = replay_capture(path, progress if bar is not None else None)
        s = replay_stats(replay, path, args.symbol)
    except (CaptureError, OSError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if bar is not None:
            bar.close()
    if args.strategy and args.strategy != s["strategy"]:
        print(f"hftmm: error: {path} was recorded with strategy {s['strategy']}, not {args.strategy}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out:
        from pathlib import Path

        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "report.json").write_text(json.dumps(s, indent=2) + "\n")
    parity = s["parity"]
    if args.json:
        print(json.dumps(s))
    else:
        print(f"capture      {path}: node {s['node']}, strategy {s['strategy']} " + " ".join(
            f"{k}={v:g}" for k, v in s["params"].items()))  # fmt: skip
        print(f"replayed     {parity['steps']:,} steps, {parity['packets']:,} datagrams, {s['events']:,} events "
              f"in {s['elapsed_s']:.3f} s")  # fmt: skip
        for symbol, figures in s["symbols"].items():
            print(f"{symbol:<12} orders {figures['orders']:,}, fills {figures['fills']:,}, position "
                  f"{figures['position']:,}, pnl {figures['pnl']:,.2f}")  # fmt: skip
        verdict = "the same decisions as live" if parity["same_decisions"] else "DIFFERENT decisions from live"
        print(f"parity       {verdict}: {parity['orders_replayed']:,} orders replayed, "
              f"{parity['orders_recorded']:,} recorded; steps that differ: {parity['order_mismatches']:,} in "
              f"orders, {parity['book_mismatches']:,} in the book")  # fmt: skip
        if parity["first_mismatch"]:
            m = parity["first_mismatch"]
            print(f"first        step {m['step']} ({m['what']}): live {m['recorded']} / replay {m['replayed']}")
    return 0 if parity["same_decisions"] else 1


# --- sweep --------------------------------------------------------------------------------------
def cmd_sweep(args: argparse.Namespace) -> int:
    """Backtest every parameter set of the grid on every data file as Ray tasks; rank the sets."""
    from engine.backtest import BacktestError
    from engine.config import ConfigError
    from engine.sweep import SweepError, parse_grid, sweep

    try:
        result = sweep(
            args.data,
            args.strategy,
            parse_grid(args.grid),
            address=args.address,
            fixed_params=_strategy_params(args),
            rank_by=args.rank_by,
            progress=_progress(args),
            **_model_options(args),
        )
    except (SweepError, BacktestError, ConfigError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result.to_parquet(args.out)
    failed = result.failed
    if failed:
        _warn(f"{len(failed)} of {result.runs.num_rows} runs failed:")
        for row in failed:
            params = " ".join(f"{n}={row[n]:g}" for n in result.metadata["grid"])
            print(f"  {row['file']} {params}: {row['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary.to_pylist()))
    else:
        _print_summary(result.summary.to_pylist(), list(result.metadata["grid"]))
        print(f"written      {args.out} ({result.runs.num_rows} runs, {len(failed)} failed)")
    return 0 if len(failed) < result.runs.num_rows else 1


def _print_summary(rows: list[dict], grid_names: list[str]) -> None:
    """The ranked summary as a table: rank, the grid's parameters, runs that succeeded, the aggregates."""
    stats = (("mean_pnl", "mean pnl", ",.2f"), ("mean_sharpe", "mean sharpe", ".2f"),
             ("mean_sortino", "mean sortino", ".2f"), ("worst_drawdown", "worst dd", ",.2f"),
             ("total_fills", "fills", ","))  # fmt: skip
    widths = [max(len(n), 8) for n in grid_names]
    print(f"{'rank':>4}  " + "  ".join(f"{n:>{w}}" for n, w in zip(grid_names, widths, strict=True))
          + f"  {'ok':>5}" + "".join(f"  {title:>12}" for _, title, _ in stats))  # fmt: skip
    for row in rows:
        params = "  ".join(f"{row[n]:>{w}g}" for n, w in zip(grid_names, widths, strict=True))
        values = "".join(f"  {'-':>12}" if row[key] is None else f"  {row[key]:>12{fmt}}" for key, _, fmt in stats)
        print(f"{row['rank']:>4}  {params}  {row['ok']:>2}/{row['runs']:<2}{values}")


def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """The ``sweep`` sub-command: the backtest options that apply to every run, plus the grid."""
    from engine.sweep import RANK_KEYS

    p = sub.add_parser(
        "sweep",
        help="backtest a grid of strategy parameters over data files, in parallel on Ray",
        description="Run a backtest for every (parameter set, data file) pair as a Ray task, on a local Ray "
        "(default) or an existing cluster; write one Parquet row per run and print the parameter sets "
        "ranked. A run that fails is reported with its parameters and the others go on; the exit status "
        "is 1 only when every run failed.",
        epilog=_strategies_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="data files; each one is a run")
    p.add_argument("--strategy", required=True, metavar="NAME", help="a strategy listed below")
    p.add_argument(
        "--grid", action="append", required=True, metavar="NAME=V1,V2,...", help="values to try (repeatable)"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter fixed for every run")
    p.add_argument("--params", metavar="FILE.toml", help="fixed parameters from TOML (--param wins)")
    _model_args(p)
    p.add_argument(
        "--address", metavar="ADDR", help="an existing Ray cluster: auto | ray://HOST:PORT (default: a local Ray)"
    )
    p.add_argument("--out", default="sweep.parquet", metavar="FILE.parquet", help="one row per run (sweep.parquet)")
    p.add_argument("--rank-by", choices=list(RANK_KEYS), default="sharpe", help="rank the parameter sets by (sharpe)")
    p.add_argument("--json", action="store_true", help="print the ranked summary as a JSON list")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _cpu_pair(text: str) -> tuple[int, int]:
    """An argparse type: two CPU numbers, ``A,B``."""
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two CPU numbers A,B, got {text!r}") from None
    return first, second


def _bench_results_args(b: argparse.ArgumentParser, with_json: bool = False) -> None:
    """The options every benchmark shares: where results go, --compare, and --json where it has one."""
    b.add_argument("--out", default="bench/results", metavar="DIR", help="results folder (bench/results)")
    b.add_argument("--compare", metavar="OLD.json", help="print the change of every figure against an earlier run")
    if with_json:
        b.add_argument("--json", action="store_true", help="print the result as one JSON object (the rest to stderr)")


# --- parser -------------------------------------------------------------------------------------
def _strategies_epilog() -> str:
    from strategies import STRATEGIES

    return "strategies and their parameters (defaults):\n" + "\n".join(s.describe() for s in STRATEGIES.values())


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars and notices on stderr, unless --quiet, or --json (whose reader may merge the streams)."""
    return not (args.quiet or args.json)


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="feed files applied in order to the same books: flat ITCH (.itch, .gz), pcap/pcapng of "
        "MoldUDP64, Databento DBN MBO (.dbn, .dbn.zst), or event Parquet; the format is read from the bytes",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad records (unknown type, wrong length, truncated), count them and go on",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="hftmm", description="Low-latency market-making engine: feeds, L3 books, backtests and live trading."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="decode feed files into books and count what they hold")
    _input_args(p)
    p.add_argument("--symbols", metavar="S,...", help="keep only these symbols (comma separated)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("book", help="print the final order book of each symbol")
    _input_args(p)
    p.add_argument("--symbol", metavar="SYM", help="only this symbol (or a comma-separated list)")
    p.add_argument("--depth", type=_positive, default=DEFAULT_DEPTH, metavar="N", help="levels per side (10)")
    p.add_argument("--json", action="store_true", help="print {symbol: {bid_levels, ask_levels, orders, bids, asks}}")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("convert", help="convert ITCH or DBN MBO files to event Parquet")
    _input_args(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet", help="the Parquet file to write")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("gen-itch", help="write a synthetic but well-formed ITCH 5.0 day")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="flat ITCH file (.gz compresses)")
    p.add_argument("--messages", type=_positive, default=1_000_000, metavar="N", help="messages (1,000,000)")
    p.add_argument("--symbols", type=_positive, default=50, metavar="K", help="instruments (50)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (1)")
    p.set_defaults(func=cmd_gen_itch)

    p = sub.add_parser("bench", help="benchmarks; results land in bench/results/")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("feed", help="ITCH decode + book throughput beside a pure-Python baseline")
    b.add_argument("--messages", type=_positive, default=5_000_000, metavar="N", help="messages (5,000,000)")
    b.add_argument("--symbols", type=_positive, default=50, metavar="K", help="instruments (50)")
    b.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (1)")
    b.add_argument("--repeats", type=_positive, default=5, metavar="R", help="timed runs; the best is kept (5)")
    _bench_results_args(b)
    b.set_defaults(func=cmd_bench_feed)
    b = bench.add_parser("backtest", help="backtester events/s (touch, glft) beside hftbacktest on the same npz")
    b.add_argument("--npz", metavar="FILE", help="hftbacktest event file (../shared/replay_data/hftbacktest/...)")
    b.add_argument("--npz-events", type=int, default=0, metavar="N", help="only its first N events (0: all)")
    b.add_argument("--messages", type=_positive, default=5_000_000, metavar="N", help="ITCH day messages (5,000,000)")
    b.add_argument("--symbols", type=_positive, default=50, metavar="K", help="ITCH day instruments (50)")
    b.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the ITCH day (1)")
    b.add_argument("--repeats", type=_positive, default=5, metavar="R", help="timed runs each; best and median (5)")
    _bench_results_args(b)
    b.set_defaults(func=cmd_bench_backtest)
    b = bench.add_parser("gateway", help="order -> acknowledgement round trip: Aeron IPC, Aeron UDP, kernel UDP")
    b.add_argument("--duration", type=_seconds, default=5.0, metavar="S", help="measured seconds per transport (5)")
    b.add_argument("--warmup", type=float, default=1.0, metavar="S", help="discarded seconds before each (1)")
    b.add_argument("--rate", type=float, default=0.0, metavar="R", help="round trips/s (0: back-to-back)")
    b.add_argument("--transports", default="ipc,udp,kernel-udp", metavar="T,...", help="subset of ipc,udp,kernel-udp")
    b.add_argument("--cpus", type=_cpu_pair, metavar="A,B", help="caller and echo CPUs (the two highest allowed)")
    b.add_argument("--idle", default="spin", metavar="ALIAS", help="both sides: spin|yield|backoff|sleep:N_US")
    b.add_argument("--driver-idle", default="sleeping:1us", metavar="NAME[:ARGS]", help="Aeron driver idle for UDP")
    b.add_argument("--size", type=int, default=0, metavar="N", help="raw ping-pong of N bytes instead of OUCH orders")
    _bench_results_args(b, with_json=True)
    b.set_defaults(func=cmd_bench_gateway)
    b = bench.add_parser(
        "t2t",
        help="tick-to-trade: sim-exchange ticks at a fixed rate -> live node -> orders back, stage by stage",
        description="Tick-to-trade of a live trading node. The simulated exchange moves the market one tick at a "
        "fixed rate (latency counts from each tick's intended send time, so stalls are not hidden); the node "
        "(the live daemon's, in its own pinned process) re-quotes over Aeron IPC. Reports engine-internal "
        "latency (packet in hand -> order offered), wire to wire (intended send -> order read by the exchange) "
        "and every stage between, as HdrHistogram percentiles, in bench/results/<date>-t2t/.",
    )
    b.add_argument("--duration", type=_seconds, default=10.0, metavar="S", help="measured seconds (10)")
    b.add_argument("--warmup", type=float, default=2.0, metavar="S", help="seconds sent but not measured (2)")
    b.add_argument("--rate", type=_seconds, default=500.0, metavar="R", help="ticks per second (500)")
    b.add_argument(
        "--size",
        type=int,
        default=0,
        metavar="BYTES",
        help="pad each market-data packet to about this size with other instruments' messages (0: none)",
    )
    b.add_argument("--cpus", type=_cpu_pair, metavar="A,B", help="harness CPU, node CPU (the two highest allowed)")
    b.add_argument(
        "--idle",
        default="spin",
        metavar="ALIAS",
        help="idle strategy of both loops: spin | yield | backoff | sleep:N_US (spin)",
    )
    b.add_argument(
        "--strategy",
        default="grid",
        metavar="NAME",
        help="the node's strategy; it must quote around the mid to re-quote on every tick (grid)",
    )
    b.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a strategy parameter (repeatable; the bench's defaults: one level 3 ticks either side of the mid)",
    )
    b.add_argument("--params", metavar="FILE.toml", help="strategy parameters from TOML (--param wins)")
    _bench_results_args(b, with_json=True)
    b.set_defaults(func=cmd_bench_t2t)

    p = sub.add_parser(
        "backtest",
        help="replay historical data through a strategy and a simulated exchange",
        description="Replay market data through book -> strategy -> simulated exchange (latency, queue "
        "position, fees) -> fills -> positions, and report PnL, Sharpe, drawdown and fill statistics.",
        epilog=_strategies_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="FILE",
        help="ITCH (flat, .gz, pcap), DBN MBO, event Parquet or hftbacktest .npz files, in order; or one "
        "session capture of a live node (*.capture.arrow, [capture] in the live config): its datagrams, "
        "responses and clock replayed through the same step and strategy, exit status 1 if any decision differs",
    )
    p.add_argument("--strategy", metavar="NAME", help="a strategy listed below (a session capture replays its own)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable)")
    p.add_argument("--params", metavar="FILE.toml", help="strategy parameters from TOML (--param wins)")
    _model_args(p)
    p.add_argument("--out", metavar="DIR", help="write fills.parquet, equity.parquet, equity.png and report.json")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_backtest)

    _add_sweep_parser(sub)

    p = sub.add_parser("sim-exchange", help="run the simulated exchange (ITCH over MoldUDP64, OUCH over Aeron)")
    p.add_argument("--config", metavar="FILE", help="TOML config (see examples/sim-exchange.toml); defaults without")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--report", metavar="FILE.json", help="at exit, write the stats and per OUCH user the net "
                   "executed shares per symbol and the orders accepted and rejected")  # fmt: skip
    p.set_defaults(func=cmd_sim_exchange)

    p = sub.add_parser("live", help="run the live trading daemon (nodes, risk, OUCH gateway, metrics)")
    p.add_argument("--config", metavar="FILE", help="TOML config (every key with its default: examples/live.toml)")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--report", metavar="FILE.json", help="also write the session report as JSON")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("kill", help="trip the kill switch of the running live daemon")
    p.add_argument("--config", metavar="FILE", help="the daemon's config (for its runtime_dir; default /tmp/hftmm)")
    p.set_defaults(func=cmd_kill)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hftmm`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FeedError as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hftmm: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("hftmm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
