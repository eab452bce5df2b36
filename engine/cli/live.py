"""``hftmm sim-exchange``, ``hftmm live`` and ``hftmm kill``: the simulated exchange and the live daemon."""

from __future__ import annotations

import argparse
import json
import sys

from engine.cli.args import EXIT_BAD_INPUT, seconds

SIM_POLL_S = 0.2  # how often the waiting main thread checks the duration and the exchange's health


def cmd_sim_exchange(args: argparse.Namespace) -> int:
    """Run the simulated exchange until Ctrl-C, SIGTERM or the duration; print where it listens and its stats."""
    import gc
    import signal
    import threading
    import time

    from engine.core.config import ConfigError, load_toml
    from engine.simexchange.config import SimExchangeConfig
    from engine.simexchange.exchange import SimExchange

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


def _live_config(path: str | None):
    """The live config of ``--config``, else ``LiveConfig.default_session()``; raises ConfigError in one line."""
    from engine.core.config import load_toml
    from engine.live.config import LiveConfig

    return load_toml(path, LiveConfig) if path else LiveConfig.default_session()


def cmd_live(args: argparse.Namespace) -> int:
    """Run the live daemon until Ctrl-C, SIGTERM or the duration; cancel everything; print the report."""
    import signal

    from engine.core.config import ConfigError
    from engine.live.daemon import LiveDaemon, LiveError, install_signals, stderr_line, terminal_status
    from engine.live.recovery import format_recovery
    from engine.live.report import format_report
    from engine.runtime.metrics import MetricsBlockError

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
    failed = daemon.failed_nodes()
    if failed:  # a node that could not run: the session did not do what the config asked
        print(f"hftmm: error: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    """Trip the kill switch of the running live daemon (cancel everything, quote no more)."""
    from engine.core.config import ConfigError
    from engine.live.daemon import LiveError, kill_daemon

    try:
        pid = kill_daemon(_live_config(args.config).runtime_dir)
    except (ConfigError, LiveError) as exc:
        print(f"hftmm: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"kill switch sent to hftmm live (pid {pid})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``sim-exchange``, ``live`` and ``kill``."""
    p = sub.add_parser("sim-exchange", help="run the simulated exchange (ITCH over MoldUDP64, OUCH over Aeron)")
    p.add_argument("--config", metavar="FILE", help="TOML config (see examples/sim-exchange.toml); defaults without")
    p.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--report", metavar="FILE.json", help="at exit, write the stats and per OUCH user the net "
                   "executed shares per symbol and the orders accepted and rejected")  # fmt: skip
    p.set_defaults(func=cmd_sim_exchange)

    p = sub.add_parser("live", help="run the live trading daemon (nodes, risk, OUCH gateway, metrics)")
    p.add_argument("--config", metavar="FILE", help="TOML config (every key with its default: examples/live.toml); "
                   "without one, node mm-1 quotes HFTA and HFTB with touch on a busy embedded market")
    p.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--report", metavar="FILE.json", help="also write the session report as JSON")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("kill", help="trip the kill switch of the running live daemon")
    p.add_argument("--config", metavar="FILE", help="the daemon's config (for its runtime_dir; default /tmp/hftmm)")
    p.set_defaults(func=cmd_kill)
