"""``hftmm bench feed|backtest|gateway|t2t``: the only importer of ``bench/``, when a benchmark runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.cli.args import EXIT_BAD_INPUT, cpu_pair_arg, positive, seconds, strategy_params

GATEWAY_TRANSPORTS = "ipc-compiled,ipc,udp,kernel-udp"  # bench.gateway.TRANSPORTS (bench loads when a command runs)
FEED_CASES = ("shallow", "deep", "esm4x64")  # bench.feed_book.CASES


def _feed_cases(text: str) -> tuple[str, ...]:
    cases = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in cases if c not in FEED_CASES]
    if unknown or not cases:
        raise argparse.ArgumentTypeError(f"cases are {', '.join(FEED_CASES)}; not {', '.join(unknown) or 'none'}")
    return cases


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
    result = run(messages=args.messages, symbols=args.symbols, seed=args.seed, repeats=args.repeats, out_dir=args.out,
                 cases=args.cases, real=args.real, copies=args.copies)  # fmt: skip
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
    """Order -> acknowledgement round trips over Aeron IPC (compiled and Python), Aeron UDP and kernel UDP
    (bench/gateway.py)."""
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
    from engine.backtest.models import BacktestError
    from engine.core.config import ConfigError

    try:
        params = bench_params(args.strategy, strategy_params(args))
        config = T2TConfig(duration_s=args.duration, warmup_s=args.warmup, rate=args.rate, background=args.background,
                           size=args.size, cpus=args.cpus or (), idle=args.idle, strategy=args.strategy,
                           params=params)  # fmt: skip
        return main(config, args.out, args.json, args.compare)
    except (BenchError, BacktestError, ConfigError, ValueError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _bench_results_args(b: argparse.ArgumentParser, with_json: bool = False) -> None:
    """The options every benchmark shares: where results go, --compare, and --json where it has one."""
    b.add_argument("--out", default="bench/results", metavar="DIR", help="results folder (bench/results)")
    b.add_argument("--compare", metavar="OLD.json", help="print the change of every figure against an earlier run")
    if with_json:
        b.add_argument("--json", action="store_true", help="print the result as one JSON object (the rest to stderr)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``bench feed|backtest|gateway|t2t``."""
    p = sub.add_parser("bench", help="benchmarks; results land in bench/results/")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("feed", help="ITCH decode + book throughput beside a pure-Python baseline")
    b.add_argument("--messages", type=positive, default=5_000_000, metavar="N", help="messages (5,000,000)")
    b.add_argument("--symbols", type=positive, default=50, metavar="K", help="instruments (50)")
    b.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (1)")
    b.add_argument("--repeats", type=positive, default=5, metavar="R", help="timed runs; the best is kept (5)")
    b.add_argument("--cases", type=_feed_cases, default=FEED_CASES, metavar="C,...",
                   help=f"inputs: synthetic shallow and deep days, ESM4 tiled ({','.join(FEED_CASES)})")  # fmt: skip
    b.add_argument("--real", type=Path, metavar="FILE",
                   help="the real file the esm4x64 case tiles (../shared/replay_data/dbn/esm4_mbo/...mbo)")  # fmt: skip
    b.add_argument("--copies", type=positive, default=64, metavar="N", help="instruments it is tiled over (64)")
    _bench_results_args(b)
    b.set_defaults(func=cmd_bench_feed)
    b = bench.add_parser("backtest", help="backtester events/s (touch, glft) beside hftbacktest on the same npz")
    b.add_argument("--npz", metavar="FILE", help="hftbacktest event file (../shared/replay_data/hftbacktest/...)")
    b.add_argument("--npz-events", type=int, default=0, metavar="N", help="only its first N events (0: all)")
    b.add_argument("--messages", type=positive, default=5_000_000, metavar="N", help="ITCH day messages (5,000,000)")
    b.add_argument("--symbols", type=positive, default=50, metavar="K", help="ITCH day instruments (50)")
    b.add_argument("--seed", type=int, default=1, metavar="S", help="random seed of the ITCH day (1)")
    b.add_argument("--repeats", type=positive, default=5, metavar="R", help="timed runs each; best and median (5)")
    _bench_results_args(b)
    b.set_defaults(func=cmd_bench_backtest)
    b = bench.add_parser("gateway", help="order -> acknowledgement round trip: Aeron IPC, Aeron UDP, kernel UDP")
    b.add_argument("--duration", type=seconds, default=5.0, metavar="S", help="measured seconds per transport (5)")
    b.add_argument("--warmup", type=float, default=1.0, metavar="S", help="discarded seconds before each (1)")
    b.add_argument("--rate", type=float, default=0.0, metavar="R", help="round trips/s (0: back-to-back)")
    b.add_argument("--transports", default=GATEWAY_TRANSPORTS, metavar="T,...",
                   help=f"subset of {GATEWAY_TRANSPORTS} (ipc-compiled: both ends in Numba loops)")  # fmt: skip
    b.add_argument("--cpus", type=cpu_pair_arg, metavar="A,B", help="caller and echo CPUs (the two highest allowed)")
    b.add_argument("--idle", default="spin", metavar="ALIAS", help="both sides: spin|yield|backoff|sleep:N_US")
    b.add_argument("--driver-idle", default="sleeping:1us", metavar="NAME[:ARGS]", help="Aeron driver idle for UDP")
    b.add_argument("--size", type=int, default=0, metavar="N", help="raw ping-pong of N bytes instead of OUCH orders")
    _bench_results_args(b, with_json=True)
    b.set_defaults(func=cmd_bench_gateway)
    b = bench.add_parser(
        "t2t",
        help="tick-to-trade: exchange ticks at a fixed rate -> live node -> orders back, stage by stage",
        description="Tick-to-trade of a live trading node. A compiled exchange loop moves the market one tick at a "
        "fixed rate through the simulated exchange's matcher (latency counts from each tick's intended send time, "
        "so stalls are not hidden), optionally with background messages that never move the quotes; the node "
        "(the live daemon's, in its own pinned process) re-quotes over Aeron IPC. Reports engine-internal "
        "latency (packet in hand -> order offered), wire to wire (intended send -> order read by the exchange) "
        "and every stage between, as HdrHistogram percentiles, in bench/results/<date>-t2t/.",
    )
    b.add_argument("--duration", type=seconds, default=10.0, metavar="S", help="measured seconds (10)")
    b.add_argument("--warmup", type=float, default=2.0, metavar="S", help="seconds sent but not measured (2)")
    b.add_argument("--rate", type=seconds, default=10_000.0, metavar="R", help="ticks per second (10000)")
    b.add_argument(
        "--background",
        type=float,
        default=0.0,
        metavar="RATE",
        help="ITCH messages per second beside the ticks that do not move the quotes: adds 4-43 ticks behind the "
        "touch and deletes of the oldest, keeping about 200 resting (0: none)",
    )
    b.add_argument(
        "--size",
        type=int,
        default=0,
        metavar="BYTES",
        help="pad each market-data packet to about this size with other instruments' messages (0: none)",
    )
    b.add_argument("--cpus", type=cpu_pair_arg, metavar="A,B", help="harness CPU, node CPU (the two highest allowed)")
    b.add_argument(
        "--idle",
        default="spin",
        metavar="ALIAS",
        help="idle strategy of the node's loop: spin | yield | backoff | sleep:N_US (spin; the harness spins)",
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
