"""``hftmm compile``: every kernel group compiled into Numba's cache before anything is timed or traded.

A fresh install (or a source change) has no compiled kernels; the first backtest, replay or live session
would spend minutes in LLVM, and a live session would spend its clock "starting". ``make run`` runs this
first, so the session that follows loads every kernel from the cache. One line per group on stderr with
the time it took; a second run only loads the cache (a few seconds). The cache folder is the package's
choice (``engine.core.kernel_cache``), shared by ``make`` and direct ``hftmm`` calls.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WARM_MESSAGES = 3000  # a synthetic day just long enough to reach every decode, book and fill path
WARM_SYMBOLS = 1
EXCHANGE_STEPS = 2000  # exchange duty cycles: the background flow submits, matches and publishes


def warm_feeds(work: Path) -> None:
    """ITCH decode and the L3 book: a synthetic day replayed into books."""
    from engine.book.replay import replay

    replay([str(_synthetic_day(work))], progress=False)


def warm_strategies(work: Path) -> None:
    """Every strategy's quote function, at the one signature the backtester and the node call it with (the
    strategies compile it when they are imported)."""
    from strategies import STRATEGIES
    from strategies.api import QUOTE_SIG

    for strategy in STRATEGIES.values():
        strategy.quote.get_compile_result(QUOTE_SIG)


def warm_backtest(work: Path) -> None:
    """The backtest loop (one kernel for every strategy: the strategy is a function pointer)."""
    from engine.backtest.backtest import backtest

    backtest([str(_synthetic_day(work))], "touch", progress=False)


def warm_node(work: Path) -> None:
    """The live trading node's step kernel and compiled loop (one for every strategy), built as the daemon
    builds a node."""
    import os

    from engine.book.layout import new_state
    from engine.live.builder import NodeBlocks, blank_loop_state, build_state, load_kernel, load_loop
    from engine.live.config import LiveConfig

    config = LiveConfig()
    node = config.nodes[0]
    blocks = NodeBlocks.create(node.name, node.symbols, f"compile-{os.getpid()}", journal=False)
    try:
        spec = config.node_spec(0, "", blocks, 1)
        ns, book = build_state(spec, blocks), new_state()
        load_kernel(ns, book)
        load_loop(ns, blank_loop_state(), book)
    finally:
        blocks.close()


def warm_exchange(work: Path) -> None:
    """The simulated exchange: matching, background flow, MoldUDP64 publisher and OUCH server, stepped."""
    from engine.core.config import decode_toml
    from engine.simexchange.config import SimExchangeConfig
    from engine.simexchange.exchange import SimExchange
    from feeds.udp import free_udp_port

    text = f"""warm_up_s = 0.5
[market_data]
port = {free_udp_port()}
retransmission_port = 0
[aeron]
dir = "{work / "aeron"}"
"""
    exchange = SimExchange(decode_toml(text, SimExchangeConfig))
    try:
        for _ in range(EXCHANGE_STEPS):  # on this thread: the agents start at the first step
            exchange.step()
    finally:
        exchange.stop()


def warm_harness(work: Path) -> None:
    """The t2t harness's compiled exchange loop: opened, then ticking with background messages."""
    import socket

    from bench.t2t_exchange import HarnessExchange
    from engine.gateway.session import Port

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        exchange = HarnessExchange(Port(), sink.getsockname()[1], "WARM", (1, "WARM", 100, 1), 1_000_000, 1)
        try:
            exchange.open()
            exchange.schedule(4, 1000.0, 10_000.0, time.monotonic_ns())
            exchange.pump(0.01, ticking=True)
        finally:
            exchange.close()


GROUPS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "strategies": ("strategies' quote functions", warm_strategies),
    "feeds": ("ITCH decode and the L3 book", warm_feeds),
    "backtest": ("backtest loop", warm_backtest),
    "node": ("live trading node step", warm_node),
    "exchange": ("simulated exchange", warm_exchange),
    "harness": ("tick-to-trade harness's exchange loop", warm_harness),
}


def _synthetic_day(work: Path) -> Path:
    """A small synthetic ITCH day in ``work`` (written once, shared by the groups)."""
    from feeds.synth import generate_itch

    path = work / "warm.itch"
    if not path.exists():
        generate_itch(path, messages=WARM_MESSAGES, symbols=WARM_SYMBOLS, seed=1)
    return path


def compile_kernels(names: list[str], say: Callable[[str], None]) -> dict[str, float]:
    """Compile (or load from the cache) the named groups in order; seconds per group. ``say`` gets a line each."""
    from engine.core.jit import CompileWatch

    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="hftmm-compile-") as tmp:
        for name in names:
            title, warm = GROUPS[name]
            say(f"compiling {title} ...")
            watch = CompileWatch()
            started = time.perf_counter()
            with watch.installed():
                warm(Path(tmp))
            seconds[name] = time.perf_counter() - started
            how = f"compiled in {watch.seconds:.1f} s" if watch.seconds >= 0.1 else "from the cache"
            say(f"  {name:<11} {seconds[name]:6.1f} s ({how})")
    return seconds


def _group(name: str) -> str:
    """An argparse type: a kernel group's name."""
    if name not in GROUPS:
        raise argparse.ArgumentTypeError(f"unknown kernel group {name!r} (known: {', '.join(GROUPS)})")
    return name


def cmd_compile(args: argparse.Namespace) -> int:
    """Compile every kernel group (or those named) into the cache, one progress line per group."""
    import os

    names = args.groups or list(GROUPS)
    print(f"hftmm compile: Numba cache {os.environ.get('NUMBA_CACHE_DIR') or '(Numba default)'}", file=sys.stderr)
    started = time.perf_counter()
    compile_kernels(names, lambda line: print(line, file=sys.stderr, flush=True))
    print(f"hftmm compile: {len(names)} kernel groups ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``compile``."""
    p = sub.add_parser(
        "compile",
        help="compile the Numba kernels into the cache (first run after an install or a source change)",
        description="Compile every kernel group into Numba's cache, one progress line per group, so that "
        "later commands (a live session above all) start at once. Groups: "
        + "; ".join(f"{name}: {title}" for name, (title, _) in GROUPS.items()),
    )
    p.add_argument(
        "groups", nargs="*", type=_group, metavar="GROUP", help=f"only these ({', '.join(GROUPS)}; default all)"
    )
    p.set_defaults(func=cmd_compile)
