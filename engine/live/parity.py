"""Live/backtest parity: replay a node's session capture through the same compiled step and strategy.

:func:`replay_capture` (``hftmm backtest --data FILE.capture.arrow``) feeds the recorded datagrams
through the same MoldUDP64 sequencing and ITCH decoder, the recorded responses and times through the
same step kernel and strategy, and compares, step by step, the book the strategy saw and the orders it
wrote with what the live node recorded (``engine.live.capture`` holds the file format). The exchange
side is not simulated: the recorded responses are the exchange. So the replay proves that the live
decisions were those of the strategy code on that data, and its report (orders, fills, position, PnL)
is the live session's, recomputed.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from engine.live import layout as L
from engine.live.capture import (
    FL_KILLED,
    FL_STOPPING,
    K_ORDER,
    K_PACKET,
    K_RESPONSE,
    K_STEP,
    TOP_COLUMNS,
    Capture,
    CaptureError,
    read_capture,
    top_of_book_nb,
)
from engine.trading import layout as TL


@dataclass
class StepMismatch:
    """The first step where the replay and the live node parted."""

    step: int
    ts_ns: int
    what: str  # "book" or "orders"
    recorded: list
    replayed: list


@dataclass
class CaptureReplay:
    """The outcome of :func:`replay_capture`: the node's report, recomputed, and the parity check."""

    report: dict
    steps: int
    packets: int
    events: int
    orders_recorded: int
    orders_replayed: int
    book_mismatches: int
    order_mismatches: int
    first_mismatch: StepMismatch | None
    elapsed_s: float
    equity_ts: np.ndarray
    equity: np.ndarray
    position: np.ndarray  # shares of the node's first instrument
    lots: dict[str, int]  # shares per lot, by symbol

    @property
    def same_decisions(self) -> bool:
        """True when every step saw the same book and wrote the same orders as the live node."""
        return not self.book_mismatches and not self.order_mismatches and self.orders_replayed == self.orders_recorded


def replay_stats(replay: CaptureReplay, path: str | Path, symbol: str | None = None) -> dict:
    """The replay as ``hftmm backtest --json`` reports it: the backtest keys for ``symbol`` (default: the node's
    first), every symbol's figures, and the parity check."""
    from engine.backtest.result import equity_stats

    symbols = replay.report["symbols"]
    symbol = symbol or next(iter(symbols))
    if symbol not in symbols:
        raise CaptureError(f"{path}: symbol {symbol} was not traded by node {replay.report['node']} "
                           f"(it traded {', '.join(symbols)})")  # fmt: skip
    mine = symbols[symbol]
    ratios = equity_stats(replay.equity_ts, replay.equity, replay.position)
    mismatch = replay.first_mismatch
    return {
        "data": str(path),
        "mode": "capture",
        "node": replay.report["node"],
        "strategy": replay.report["strategy"],
        "params": replay.report["params"],
        "symbol": symbol,
        "events": replay.events,
        "elapsed_s": replay.elapsed_s,
        "events_per_s": replay.events / replay.elapsed_s if replay.elapsed_s > 0 else 0.0,
        "orders": mine["orders"],
        "fills": mine["fills"],
        "position": mine["position"] // replay.lots[symbol],
        "pnl": mine["pnl"],
        "fees": mine["fees"],
        "sharpe": ratios["sharpe"],
        "sortino": ratios["sortino"],
        "ratio_period": ratios["ratio_period"],
        "max_drawdown": ratios["max_drawdown"],
        "symbols": symbols,
        "parity": {
            "same_decisions": replay.same_decisions,
            "steps": replay.steps,
            "packets": replay.packets,
            "orders_recorded": replay.orders_recorded,
            "orders_replayed": replay.orders_replayed,
            "book_mismatches": replay.book_mismatches,
            "order_mismatches": replay.order_mismatches,
            "first_mismatch": dataclasses.asdict(mismatch) if mismatch else None,
        },
    }


def replay_capture(path: str | Path, progress: Callable[[int, int], None] | None = None) -> CaptureReplay:
    """Replay a capture through the node's own sequencing, decoder, step kernel and strategy (module doc).

    ``progress(done, total)`` is called every few thousand steps."""
    cap = read_capture(path)
    if not (cap.kind == K_STEP).any():
        raise CaptureError(f"{cap.path}: the capture holds no step (the node never ran)")
    return _Replayer(cap).run(progress)


def node_spec(cap: Capture):
    """The ``engine.live.node.NodeSpec`` a capture was recorded with (its starting tables are ``cap.tables``)."""
    from engine.live.builder import NodeSpec

    raw = cap.spec
    hints = typing.get_type_hints(NodeSpec)
    try:
        values = {f.name: msgspec.convert(raw[f.name], hints[f.name]) for f in dataclasses.fields(NodeSpec)
                  if f.name in raw and f.name != "recovered"}  # fmt: skip
        return NodeSpec(**values)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise CaptureError(f"{cap.path}: the recorded node spec does not fit this version ({exc})") from None


class _Replayer:
    """The replay's state: a node's arrays built as the live node built them, fed from the records."""

    def __init__(self, cap: Capture) -> None:
        from engine.book.layout import new_state
        from engine.live.builder import NodeBlocks, QuoteAddress, build_state, load_kernel
        from feeds.udp import MoldStream
        from strategies import get_strategy

        self.cap = cap
        self.spec = spec = node_spec(cap)
        tag = f"replay-{os.getpid()}-{spec.name}"
        self.blocks = NodeBlocks.create(spec.name, [i.symbol for i in spec.instruments], tag, journal=False)
        self.journal = self.blocks.journal
        self.ns = build_state(spec, self.blocks)
        for name, table in cap.tables.items():  # the live node's starting tables (recovered ones included)
            target = getattr(self.ns, name)
            if target.shape != table.shape:
                raise CaptureError(f"{cap.path}: recorded table {name} has shape {table.shape}, not {target.shape}")
            target[...] = table
        self.book = new_state()
        self.step_nb = load_kernel(self.ns, self.book)
        self.quote = QuoteAddress(get_strategy(spec.strategy).quote)
        self.rows: np.ndarray | None = None
        self.stream = MoldStream(self._on_rows)
        self.locates = self.ns.inst[:, 0].copy()

    def _on_rows(self, rows: np.ndarray) -> None:
        self.rows = rows

    def run(self, progress: Callable[[int, int], None] | None) -> CaptureReplay:
        from engine.core.events import empty_events
        from engine.live.builder import run_step
        from engine.live.report import symbol_reports
        from engine.trading.oms import pnl_nb
        from feeds.ouch import RESPONSE_DTYPE, empty_responses

        cap, ns, stream = self.cap, self.ns, self.stream
        kind = cap.kind
        records = len(kind)
        steps = cap.steps()
        top = np.zeros((len(self.locates), TOP_COLUMNS), np.int64)
        no_rows = empty_events(0)
        responses = empty_responses(64)
        equity = np.zeros(len(steps))
        position = np.zeros(len(steps))
        lot = float(ns.inst[0, TL.IN_LOT])
        counts = {"packets": 0, "events": 0, "orders_recorded": 0, "orders_replayed": 0, "book": 0, "orders": 0}
        first: StepMismatch | None = None
        r = 0
        started = time.perf_counter()
        try:
            for s, at in enumerate(steps):
                for q in range(r, at):  # what came before this step: its datagrams
                    if kind[q] == K_PACKET:
                        stream.on_packet(cap.payload(q), int(cap.ts_ns[q]))
                        counts["packets"] += 1
                r = at + 1
                for _ in range(records):  # messages the live receiver gave up on by this step
                    if stream.stats.lost_messages >= cap.c[at] or not stream.gap_open:
                        break
                    stream.give_up()
                self.rows = None
                stream.flush()
                rows = self.rows if self.rows is not None else no_rows
                if len(rows) != cap.b[at]:
                    raise CaptureError(f"{cap.path}: step {s} applied {cap.b[at]} event rows live but "
                                       f"{len(rows)} in the replay: the datagrams are incomplete")  # fmt: skip
                counts["events"] += len(rows)
                flags = int(cap.a[at])
                ns.mi[L.NI_HALT] = flags & 1
                if flags & FL_STOPPING:
                    ns.mi[L.NI_STOP] = 1
                if flags & FL_KILLED:
                    ns.rstate[TL.RS_KILLED] = 1.0
                n = 0
                recorded_orders = []
                while r < records and kind[r] in (K_RESPONSE, K_ORDER):
                    if kind[r] == K_RESPONSE:
                        if n == len(responses):
                            responses = np.concatenate((responses, empty_responses(len(responses))))
                        responses[n] = np.frombuffer(cap.payload(r), RESPONSE_DTYPE)[0]
                        n += 1
                    else:
                        recorded_orders.append(bytes(cap.payload(r)))
                    r += 1
                now = int(cap.ts_ns[at])
                count, self.book = run_step(self.step_nb, ns, self.book, rows, responses, n, now, self.quote)
                self.journal.discard()
                replayed = [bytes(ns.out[ns.out_off[j] : ns.out_off[j + 1]]) for j in range(count)]
                counts["orders_recorded"] += len(recorded_orders)
                counts["orders_replayed"] += count
                top_of_book_nb(self.book, self.locates, top)
                recorded_top = np.frombuffer(cap.payload(at), np.int64).reshape(top.shape)
                if not np.array_equal(top, recorded_top):
                    counts["book"] += 1
                    first = first or StepMismatch(s, now, "book", recorded_top.tolist(), top.tolist())
                if replayed != recorded_orders:
                    counts["orders"] += 1
                    first = first or StepMismatch(s, now, "orders", _described(recorded_orders),
                                                  _described(replayed))  # fmt: skip
                equity[s] = pnl_nb(ns.inst, ns.money)
                position[s] = ns.inst[0, TL.IN_POSITION] * lot
                if progress is not None and s % 4096 == 0:
                    progress(s, len(steps))
            elapsed = time.perf_counter() - started
            report = {
                "node": self.spec.name,
                "strategy": self.spec.strategy,
                "params": dict(self.spec.params),
                "symbols": symbol_reports(self.spec, ns.inst, ns.money, ns.risk_counts),
            }
        finally:
            self.ns = None  # its metrics views go with the block
            self.blocks.close()
        if progress is not None:
            progress(len(steps), len(steps))
        return CaptureReplay(
            report=report, steps=len(steps), packets=counts["packets"], events=counts["events"],
            orders_recorded=counts["orders_recorded"], orders_replayed=counts["orders_replayed"],
            book_mismatches=counts["book"], order_mismatches=counts["orders"], first_mismatch=first,
            elapsed_s=elapsed, equity_ts=cap.ts_ns[steps].copy(), equity=equity, position=position,
            lots={i.symbol: i.lot for i in self.spec.instruments},
        )  # fmt: skip


def _described(messages: list[bytes]) -> list[str]:
    """OUCH messages a node wrote, one readable line each (for a mismatch report)."""
    from feeds import ouch

    out = []
    for message in messages:
        try:
            fields = ouch.decode(ouch.INBOUND, message[1:])
            out.append(" ".join(f"{k}={v}" for k, v in fields.items()))
        except (ValueError, KeyError, IndexError):
            out.append(message.hex())
    return out
