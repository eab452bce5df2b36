"""What every command group shares: exit codes, argument types and groups, warnings, strategy parameters."""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2


EXIT_INTERRUPTED = 130


def symbol_set(text: str | None) -> set[str] | None:
    return {s.strip() for s in text.split(",") if s.strip()} if text else None


def warn(message: str) -> None:
    print(f"hftmm: warning: {message}", file=sys.stderr)


def report_skips(stats) -> None:
    """What ``--skip-bad`` skipped (a ``feeds.FeedStats``): a warning naming the first reason, then the others."""
    lines = stats.skip_report()
    if lines:
        warn(lines[0])
    for line in lines[1:]:
        print(line, file=sys.stderr)


def strategy_params(args: argparse.Namespace) -> dict[str, float]:
    """Parameters from ``--params FILE.toml`` (top-level keys or a [params] table), then ``--param k=v``."""
    from engine.backtest.models import BacktestError
    from engine.core.config import ConfigError, load_toml

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


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def cpu_pair_arg(text: str) -> tuple[int, int]:
    """An argparse type: two CPU numbers, ``A,B``."""
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two CPU numbers A,B, got {text!r}") from None
    return first, second


def strategies_epilog() -> str:
    """The strategies and their parameters, for the epilog of a command that takes ``--strategy``."""
    from strategies import STRATEGIES

    built_in = "\n".join(s.describe() for s in STRATEGIES.values())
    plugins = ("your own: --strategy module:ATTRIBUTE (a strategies.api.Strategy), or a name an installed package "
               "registers in the entry point group hftmm.strategies")  # fmt: skip
    return f"strategies and their parameters (defaults):\n{built_in}\n{plugins}"


class VersionAction(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked for (it costs tens of ms)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"{parser.prog} {version('hftmm')}")
        parser.exit()


class Parser(argparse.ArgumentParser):
    """An argument parser whose epilog may be a function, called only when the help is printed: listing the
    strategies loads their kernels, which ``hftmm --help`` must not wait for."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def progress_wanted(args: argparse.Namespace) -> bool:
    """Progress bars and notices on stderr, unless --quiet, or --json (whose reader may merge the streams)."""
    return not (args.quiet or args.json)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def input_args(p: argparse.ArgumentParser) -> None:
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
