"""``hftmm backtest`` (files, or a live session capture) and ``hftmm sweep`` (a parameter grid on Ray)."""

from __future__ import annotations

import argparse
import json
import sys

from engine.cli.args import EXIT_BAD_INPUT, progress_wanted, strategies_epilog, strategy_params, warn


def model_options(args: argparse.Namespace) -> dict:
    """The backtest's instrument, latency, queue, fee and order options, as ``engine.backtest.backtest`` takes them."""
    names = ("symbol", "tick_size", "lot_size", "instruments", "latency", "feed_latency", "queue", "partial_fills",
             "maker_fee", "taker_fee", "time_in_force")  # fmt: skip
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}  # None: the default
    if args.risk is not None:
        from engine.trading.risk import load_risk

        options["risk"] = load_risk(args.risk)
    if args.no_replace:
        options["replace"] = False
    return options


def model_args(p: argparse.ArgumentParser) -> None:
    """The options of ``backtest`` that ``sweep`` shares: instrument, models, fees, time in force, risk."""
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
    p.add_argument(
        "--risk",
        metavar="FILE.toml",
        help="pre-trade limits: the [risk] table of this file (a live config will do); default: the live "
        "node's default limits, which the orders pass exactly as they would live",
    )
    p.add_argument(
        "--no-replace",
        action="store_true",
        help="requote with cancel + new order instead of a replace (as a live node with replace = false)",
    )


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run one strategy over historical data and report PnL, risk and fill statistics."""
    from engine.backtest.backtest import backtest
    from engine.backtest.models import BacktestError
    from engine.core.config import ConfigError
    from engine.live.capture import is_capture

    if any(is_capture(path) for path in args.data):
        return _backtest_capture(args)
    if not args.strategy:
        print("hftmm: error: --strategy is required (only a session capture brings its own)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = backtest(
            args.data, args.strategy, strategy_params(args), progress=progress_wanted(args), **model_options(args)
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
    print(f"orders       {s['orders']:,} sent, {s['replaces']:,} replaced, {s['cancels']:,} canceled, "
          f"{s['rejects']:,} rejected, {s['filled_orders']:,} filled (fill ratio {s['fill_ratio']:.3f})")  # fmt: skip
    refused = {reason: n for reason, n in s["risk_rejections"].items() if n}
    if refused:
        listed = ", ".join(f"{reason} {n:,}" for reason, n in refused.items())
        print(f"risk         {listed} refused by pre-trade risk")
    print(f"fills        {s['fills']:,} ({s['taker_fills']:,} taker), volume {s['traded_volume']:,.4g}, "
          f"value {s['traded_value']:,.2f}")  # fmt: skip
    print(f"position     {s['position_units']:,.6g} (mean |position| {s['mean_abs_position']:.4g})")
    print(f"pnl          {s['pnl_gross']:,.2f} (gross), fees {s['fees']:,.2f}, net {s['pnl']:,.2f}; "
          f"max drawdown {s['max_drawdown']:,.2f}")  # fmt: skip
    print(f"ratios       {ratios_line(s)}")
    if args.out:
        print(f"written      {args.out}/fills.parquet, equity.parquet, equity.png, report.json")
    return 0


def ratios_line(s: dict) -> str:
    """Sharpe and Sortino with the period they are over (annualised only over a whole session of data or more)."""
    from engine.backtest.result import ANNUALISE_MIN_S

    ratios = f"Sharpe {s['sharpe']:.2f}, Sortino {s['sortino']:.2f}"
    if s["ratio_period"] == "year":
        return f"{ratios} (per-second changes, annualised)"
    return f"{ratios} per second (not annualised: under {ANNUALISE_MIN_S / 3600:g} h of data)"


def _backtest_capture(args: argparse.Namespace) -> int:
    """``backtest --data FILE.capture.arrow``: replay a live session through its own strategy; 1 if it decided
    otherwise than live."""
    from engine.live.capture import CaptureError
    from engine.live.parity import replay_capture, replay_stats

    if len(args.data) != 1:
        print("hftmm: error: a session capture is replayed on its own: give one --data file", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.param or args.params:
        print("hftmm: error: a session capture replays the node's own parameters; drop --param/--params",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    path = args.data[0]
    bar = None
    if progress_wanted(args):
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


def cmd_sweep(args: argparse.Namespace) -> int:
    """Backtest every parameter set of the grid on every data file as Ray tasks; rank the sets."""
    from engine.backtest.models import BacktestError
    from engine.backtest.sweep import SweepError, parse_grid, sweep
    from engine.core.config import ConfigError

    try:
        result = sweep(
            args.data,
            args.strategy,
            parse_grid(args.grid),
            address=args.address,
            fixed_params=strategy_params(args),
            rank_by=args.rank_by,
            progress=progress_wanted(args),
            **model_options(args),
        )
    except (SweepError, BacktestError, ConfigError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result.to_parquet(args.out)
    failed = result.failed
    if failed:
        warn(f"{len(failed)} of {result.runs.num_rows} runs failed:")
        for row in failed:
            params = " ".join(f"{n}={row[n]:g}" for n in result.metadata["grid"])
            print(f"  {row['file']} {params}: {row['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary.to_pylist()))
    else:
        print_sweep_summary(result.summary.to_pylist(), list(result.metadata["grid"]))
        print(f"written      {args.out} ({result.runs.num_rows} runs, {len(failed)} failed)")
    return 0 if len(failed) < result.runs.num_rows else 1


def print_sweep_summary(rows: list[dict], grid_names: list[str]) -> None:
    """The ranked summary as a table: rank, the grid's parameters, runs that succeeded, the aggregates."""
    stats = (("mean_pnl", "mean pnl", ",.2f"), ("mean_sharpe", "mean sharpe", ".2f"),
             ("mean_sortino", "mean sortino", ".2f"), ("ratio_period", "ratios per", ""),
             ("worst_drawdown", "worst dd", ",.2f"),
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
    from engine.backtest.ranking import RANK_KEYS

    p = sub.add_parser(
        "sweep",
        help="backtest a grid of strategy parameters over data files, in parallel on Ray",
        description="Run a backtest for every (parameter set, data file) pair as a Ray task, on a local Ray "
        "(default) or an existing cluster; write one Parquet row per run and print the parameter sets "
        "ranked. A run that fails is reported with its parameters and the others go on; the exit status "
        "is 1 only when every run failed.",
        epilog=strategies_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="data files; each one is a run")
    p.add_argument("--strategy", required=True, metavar="NAME", help="a strategy listed below")
    p.add_argument(
        "--grid", action="append", required=True, metavar="NAME=V1,V2,...", help="values to try (repeatable)"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter fixed for every run")
    p.add_argument("--params", metavar="FILE.toml", help="fixed parameters from TOML (--param wins)")
    model_args(p)
    p.add_argument(
        "--address", metavar="ADDR", help="an existing Ray cluster: auto | ray://HOST:PORT (default: a local Ray)"
    )
    p.add_argument("--out", default="sweep.parquet", metavar="FILE.parquet", help="one row per run (sweep.parquet)")
    p.add_argument("--rank-by", choices=list(RANK_KEYS), default="sharpe", help="rank the parameter sets by (sharpe)")
    p.add_argument("--json", action="store_true", help="print the ranked summary as a JSON list")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``backtest`` and ``sweep``."""
    p = sub.add_parser(
        "backtest",
        help="replay historical data through a strategy and a simulated exchange",
        description="Replay market data through book -> strategy -> the live node's trading core (plan, "
        "pre-trade risk, order table) -> simulated exchange (latency, queue position, fees) -> fills -> "
        "positions, and report PnL, Sharpe, drawdown and fill statistics.",
        epilog=strategies_epilog,
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
    model_args(p)
    p.add_argument("--out", metavar="DIR", help="write fills.parquet, equity.parquet, equity.png and report.json")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_backtest)

    _add_sweep_parser(sub)
