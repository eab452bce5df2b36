"""The ``hftmm`` command line: one sub-command per job, each a thin layer over a library call.

Each command group lives in a module of its own (``feeds``, ``backtest``, ``live``, ``bench``) that
adds its parsers and imports what its commands need only when they run, so ``hftmm --help`` loads no
kernel and the benchmarks (``bench/``) are imported by ``hftmm bench`` alone. Bad input never ends in a
traceback: a :class:`feeds.FeedError` (or an unreadable file) is printed as one line naming the file
and the place, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from engine.cli import backtest, bench, feeds, kernels, live
from engine.cli.args import EXIT_BAD_INPUT, EXIT_INTERRUPTED, Parser, VersionAction
from feeds.errors import FeedError


def build_parser() -> Parser:
    """The argument parser of every sub-command (each command group adds its own)."""
    parser = Parser(
        prog="hftmm", description="Low-latency market-making engine: feeds, L3 books, backtests and live trading."
    )
    parser.add_argument("--version", action=VersionAction, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in (feeds, bench, backtest, live, kernels):
        group.add_parsers(sub)
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
