"""``hftmm bench t2t``: tick-to-trade of a live trading node against a compiled exchange, stage by stage.

Two processes, each busy-polling on its own CPU::

    harness (CPU A)   the exchange's compiled loop (bench.t2t_exchange_nb): a scripted participant moves
                      the market one tick at a fixed rate through the real matcher, optional background
                      messages that never move the quotes; ITCH 5.0 in MoldUDP64 over UDP to 127.0.0.1
    node    (CPU B)   engine.live.node.TradingNode, exactly as the live daemon runs it (a Ray actor there,
                      a plain process here: the actor is only its host); orders back over Aeron IPC, read,
                      stamped, matched and answered in OUCH by the same compiled loop

Every tick moves the mid by one tick (the participant's bid and ask step together), so a strategy
quoting around the mid re-quotes on every tick it sees. Coordinated omission: each tick has an
intended send time on a fixed schedule and latency counts from it, so a stalled harness or node
shows up as latency instead of as fewer, better-looking samples.

One tick, all on CLOCK_MONOTONIC (shared by the two processes)::

    intended -send-> sent -wire_in-> received -decode-> decoded -dispatch-> step -book-> booked
      -strategy, risk, encode-> stepped -offer-> offered -wire_out-> at the exchange

``internal_ns`` = offered - received (packet in hand to order offered); ``wire_to_wire_ns`` = at the
exchange - intended; ``sent_to_exchange_ns`` = at the exchange - sent, the same without the
exchange's own lateness (the ``send`` stage: matching the move and sending its datagram, plus any
wait behind the node's orders the loop was answering). The node keeps one probe row per
market-data batch that made it send (``engine.live.node_nb.PR_*``); a probe counts for the tick
whose message was the batch's newest. Ticks seen together with a later one in the same batch (the
node fell behind) or whose move cancelled out are reported as ticks without orders.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.machine import machine_info
from bench.report import compare, compare_lines, histogram, latency_table, load_result, summary, write_report
from bench.t2t_exchange import HarnessError, HarnessExchange
from engine.live import layout as NL
from engine.live.builder import NodeBlocks, NodeSpec
from engine.live.config import ExchangeConfig, LiveConfig, NodeConfig
from engine.live.daemon import first_order_id
from engine.live.node import NodeProcess
from engine.runtime import control as CB
from engine.runtime.affinity import affinity_restored, cpu_pair, pin_process, plan_placement
from engine.runtime.agent import idle_strategy
from engine.simexchange.config import SimInstrument
from engine.trading.risk import RiskConfig
from feeds import itch
from feeds.udp import free_udp_port

NAME = "t2t"
SYMBOL, LOCATE, TICK, LOT = "BENCH", 1, 100, 1
FILLER_LOCATE = 2  # messages that only make packets bigger (an instrument the node does not trade)
FILLER_REF = 1 << 40  # their order references, far from the exchange's
PRICE = 1_000_000  # $100.00 in 1e-4 units
PARTICIPANT_LOTS = 100
MAX_RATE = 100_000.0  # ticks per second
MAX_BACKGROUND_RATE = 5_000_000.0  # background messages per second
START_TIMEOUT_S = 600.0  # a cold Numba cache compiles the node's kernels first
LATE_SLACK_S = 10.0  # beyond twice the run's length: how far behind the schedule may fall
PRIMING_MOVES = 4  # market moves (each answered by orders) before the schedule starts
PRIMING_RATE = 20.0  # their rate (per second): each one's orders and acknowledgements settle before the next
SLICE_S = 1.0  # on the schedule, the compiled loop returns to Python this often (progress, time bound)
SERVE_S, SERVE_PAUSE_S = 0.0005, 0.002  # off it (start-up, stop): serve the node briefly, then sleep
STOP_TIMEOUT_S = 15.0
DRAIN_S = 0.05  # after the last tick, time for its orders to arrive
MAX_ARRIVALS = 1 << 22
TARGETS_NS = {"internal_ns": {"p50": 1_000, "p99": 5_000}, "wire_to_wire_ns": {"p50": 8_000, "p99": 50_000}}
HEADLINES = ("internal_ns", "wire_to_wire_ns", "sent_to_exchange_ns")
NODE_FIGURES = ("placement", "md_messages", "md_gaps", "strategy_calls", "duty_cycles", "max_duty_cycle_ns")
STAGES = ("send", "wire_in", *NL.STAGES, "wire_out")
STAGE_HELP = {
    "send": "intended send time -> datagram sent (the harness matching the move and sending it, and its lateness)",
    "wire_in": "packet sent -> packet in the node's hand (kernel UDP over loopback)",
    "decode": "packet in hand -> event rows ready (MoldUDP64 sequencing + ITCH decode, in the node's compiled loop)",
    "dispatch": "rows ready -> step entered (the loop's order-entry poll, heartbeat and timers)",
    "book": "step entered -> responses reconciled and events applied to the L3 book",
    "strategy": "book -> view, strategy, quote plan (with the step's bookkeeping)",
    "risk": "pre-trade checks of the new orders",
    "encode": "OUCH encoding of orders and cancels",
    "offer": "step returned -> first message handed to the Aeron publication (the C client, from the loop)",
    "wire_out": "handed to Aeron -> order read by the harness's compiled loop over Aeron IPC (the offer included)",
}
DEFAULT_PARAMS = {"interval_ns": 0, "order_qty": 1, "max_position": 100, "levels": 1, "grid_ticks": 1,
                  "half_spread_ticks": 3, "skew_ticks_per_unit": 0}  # fmt: skip


@dataclass(frozen=True)
class T2TConfig:
    """The run's controls (``hftmm bench t2t --help``)."""

    duration_s: float = 10.0
    warmup_s: float = 2.0
    rate: float = 10_000.0  # ticks per second
    background: float = 0.0  # messages per second that do not move the quotes, beside the ticks
    size: int = 0  # market-data packet bytes to reach with filler messages (0: the tick's messages only)
    cpus: tuple[int, ...] = ()  # (harness, node); () = the two highest allowed
    idle: str = "spin"  # the node's loop (the harness always spins)
    strategy: str = "grid"
    params: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and self.warmup_s >= 0 and self.rate > 0 and self.size >= 0):
            raise ValueError("need duration > 0, warm-up >= 0, rate > 0 and size >= 0")
        if self.rate > MAX_RATE:
            raise ValueError(f"rate {self.rate:g}/s is beyond the harness's {MAX_RATE:g} ticks/s")
        if not 0 <= self.background <= MAX_BACKGROUND_RATE:
            raise ValueError(f"background {self.background:g}/s must be in 0..{MAX_BACKGROUND_RATE:g} messages/s")
        if len(self.cpus) not in (0, 2):
            raise ValueError("cpus takes two CPUs: the harness's and the node's")
        idle_strategy(self.idle)  # validates the alias


def bench_params(strategy: str, overrides: dict[str, float]) -> dict[str, float]:
    """The bench's parameters of ``strategy`` (those of ``DEFAULT_PARAMS`` it has), then ``overrides``.

    Raises ``ValueError`` for an unknown strategy or a parameter it does not have."""
    from strategies import get_strategy

    known = get_strategy(strategy)
    params = {name: value for name, value in DEFAULT_PARAMS.items() if name in known.names} | overrides
    known.param_array(params)
    return params


class BenchError(RuntimeError):
    """The harness could not run (one line saying why)."""


def _filler(size: int) -> bytes:
    """Add + Delete pairs of one order on the filler instrument, about ``size`` bytes of ITCH (framed)."""
    add = itch.encode("A", stock_locate=FILLER_LOCATE, order_reference_number=FILLER_REF, buy_sell_indicator="B",
                      shares=100, stock="FILLER", price=PRICE)  # fmt: skip
    delete = itch.encode("D", stock_locate=FILLER_LOCATE, order_reference_number=FILLER_REF)
    pair = itch.frame([add, delete])
    return pair * (size // len(pair))


@dataclass
class Timeline:
    """Harness-side stamps of the ticks (index = tick number) and of the orders' arrivals (index = message)."""

    intended: np.ndarray
    sent: np.ndarray
    first_seq: np.ndarray  # MoldUDP64 sequence numbers of a tick's messages: [first_seq, end_seq)
    end_seq: np.ndarray
    arrivals: np.ndarray = field(default_factory=lambda: np.zeros(MAX_ARRIVALS, np.int64))
    n_ticks: int = 0
    n_arrivals: int = 0

    @classmethod
    def of(cls, exchange: HarnessExchange) -> Timeline:
        """The stamps the harness's exchange took since its last schedule."""
        s = exchange.state
        return cls(s.intended, s.sent, s.first_seq, s.end_seq, s.arrivals, exchange.ticks_sent, exchange.arrivals)


@dataclass
class Harness:
    """The exchange, the node process and their shared blocks for one run."""

    config: T2TConfig
    exchange: HarnessExchange
    spec: NodeSpec
    blocks: NodeBlocks
    process: mp.process.BaseProcess
    conn: object  # multiprocessing Connection: the node's report arrives here


def _node_main(spec: NodeSpec, conn) -> None:  # pragma: no cover - runs in the node process
    """The node process: run the node until stopped, send its report (or the error) back."""
    try:
        conn.send(NodeProcess(spec).run())
    except BaseException as exc:  # the harness reports it; nothing else would
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def live_config(config: T2TConfig, node_cpu: int) -> LiveConfig:
    """The harness as a live config: one node quoting ``SYMBOL`` on ``node_cpu``, its exchange on free ports."""
    return LiveConfig(
        exchange=ExchangeConfig(md_port=free_udp_port(), retransmission_port=free_udp_port(), warm_up_s=0.0),
        risk=RiskConfig(max_orders_per_s=max(200.0, 8 * config.rate)),  # live and checked, never binding here
        instruments=(SimInstrument(symbol=SYMBOL, locate=LOCATE, tick=TICK, lot=LOT, initial_price=PRICE),),
        nodes=(
            NodeConfig(name="t2t", strategy=config.strategy, params=dict(config.params), symbols=(SYMBOL,),
                       cpu=node_cpu, idle=config.idle, username="BENCH", password="bench"),
        ),
    )  # fmt: skip


def _start(config: T2TConfig, node_cpu: int, say: Callable[[str], None]) -> Harness:
    live = live_config(config, node_cpu)
    filler = _filler(max(0, config.size - 64))
    exchange = HarnessExchange(
        live.ports()[0], live.exchange.md_port, live.embedded_exchange().market_data.session,
        (LOCATE, SYMBOL, TICK, LOT), PRICE, PARTICIPANT_LOTS, filler=filler, max_arrivals=MAX_ARRIVALS,
    )  # fmt: skip
    try:
        blocks = NodeBlocks.create("t2t", [SYMBOL], f"{os.getpid()}-t2t", journal=False)
    except BaseException:
        exchange.close()
        raise
    spec = live.node_spec(0, exchange.aeron_dir, blocks, first_order_id())
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_node_main, args=(spec, child), name="hftmm-t2t-node", daemon=True)
    process.start()
    child.close()
    say(f"node process {process.pid} on CPU {node_cpu}")
    return Harness(config, exchange, spec, blocks, process, parent)


def _wait_running(h: Harness, say: Callable[[str], None]) -> None:
    """Serve the node's session until it logs in; open the market (its market-data socket is bound by then:
    the node binds it before it logs in), wait for its first orders, then move the market a few times:
    every kernel on both sides is loaded (or compiled) before the schedule starts."""
    deadline = time.monotonic() + START_TIMEOUT_S
    _pump_until(h, lambda: h.exchange.logged_in, deadline, "logged in", say)
    h.exchange.open()
    _pump_until(h, lambda: h.blocks.control.slots[CB.CT_STATE] == CB.ST_RUNNING, deadline, "running", say)
    _pump_until(h, lambda: h.exchange.arrivals > 0, deadline, "quoting", say)
    h.exchange.schedule(PRIMING_MOVES, PRIMING_RATE, 0.0, time.monotonic_ns())  # even: the mid ends where it began
    _pump_until(h, lambda: h.exchange.ticks_sent == PRIMING_MOVES, deadline, "quoting", say, ticking=True)
    settled = time.monotonic() + 1.0 / PRIMING_RATE  # the last move's orders and acknowledgements
    _pump_until(h, lambda: time.monotonic() > settled, deadline, "quoting", say)


def _serve(h: Harness, ticking: bool) -> None:
    """Serve the node for a moment off the measured schedule, leaving the CPU mostly free: the node may be
    compiling on it."""
    h.exchange.pump(SERVE_S, ticking)
    time.sleep(SERVE_PAUSE_S)


def _pump_until(h: Harness, done: Callable[[], bool], deadline: float, what: str, say: Callable[[str], None],
                ticking: bool = False) -> None:  # fmt: skip
    told = time.monotonic() + 5.0
    while not done():
        _serve(h, ticking)
        if not h.process.is_alive():
            raise BenchError(f"the node process ended during start-up: {_report(h, 1.0).get('error', 'no report')}")
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"the node was not {what} {START_TIMEOUT_S:.0f} s after it started")
        if now > told:
            say(f"waiting for the node to be {what} (the first run compiles its kernels: minutes)")
            told = now + 30.0


def _drive(h: Harness, say: Callable[[str], None]) -> None:
    """Send the ticks (and the background) on their fixed schedule; bounded in count and time."""
    cfg = h.config
    n = int((cfg.warmup_s + cfg.duration_s) * cfg.rate)
    h.exchange.schedule(n, cfg.rate, cfg.background, time.monotonic_ns() + 1_000_000)
    hard_stop = time.monotonic() + 2 * (cfg.warmup_s + cfg.duration_s) + LATE_SLACK_S
    next_note = time.monotonic() + 5.0
    while h.exchange.ticks_sent < n:
        h.exchange.pump(SLICE_S, ticking=True)
        now = time.monotonic()
        if now > hard_stop:
            say(f"stopped after {h.exchange.ticks_sent} of {n} ticks: the time bound passed")
            break
        if now > next_note:
            say(f"{h.exchange.ticks_sent}/{n} ticks, {h.exchange.arrivals} orders at the exchange")
            next_note += 5.0
    h.exchange.pump(DRAIN_S, ticking=False)


def _stop(h: Harness) -> dict:
    """Stop the node (it cancels its orders, the exchange keeps answering) and collect its report."""
    h.blocks.control.slots[CB.CT_STOP] = 1
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while h.blocks.control.slots[CB.CT_STATE] != CB.ST_DONE and h.process.is_alive() and time.monotonic() < deadline:
        _serve(h, ticking=False)
    return _report(h, STOP_TIMEOUT_S)


def _report(h: Harness, timeout_s: float) -> dict:
    if h.conn.poll(timeout_s):
        with contextlib.suppress(EOFError):
            return h.conn.recv()
    return {"error": "the node sent no report"}


def _close(h: Harness) -> None:
    h.process.join(5.0)
    if h.process.is_alive():
        h.process.kill()
        h.process.join(5.0)
    h.exchange.close()
    h.blocks.close()


def attribute(line: Timeline, probes: np.ndarray, warm_ticks: int) -> dict[str, np.ndarray]:
    """Join the node's probes with the harness's stamps: one row per measured tick that made the node send.

    A probe belongs to tick ``t`` when the newest message of its batch is one of ``t``'s; the first
    probe of a tick wins. Returns the stamps and durations (ns) of those ticks, keyed by name."""
    n = line.n_ticks
    seq = probes[:, NL.PR_SEQ]
    tick = np.searchsorted(line.first_seq[:n], seq, side="right") - 1
    ok = (tick >= warm_ticks) & (tick < n)
    ok[ok] &= seq[ok] < line.end_seq[tick[ok]]
    ok &= probes[:, NL.PR_FIRST_MESSAGE] < line.n_arrivals
    ok &= probes[:, NL.PR_OFFERED_NS] > 0
    index = np.flatnonzero(ok)
    _, first = np.unique(tick[index], return_index=True)
    index = index[first]
    p = probes[index]
    t = tick[index]
    exchange_ns = line.arrivals[p[:, NL.PR_FIRST_MESSAGE]]
    columns = {"received": NL.PR_RECV_NS, "decoded": NL.PR_DECODED_NS, "step": NL.PR_STEP_NS,
               "booked": NL.PR_BOOKED_NS, "stepped": NL.PR_STEPPED_NS, "offered": NL.PR_OFFERED_NS}  # fmt: skip
    stamps = {"intended": line.intended[t], "sent": line.sent[t], **{k: p[:, c] for k, c in columns.items()},
              "exchange": exchange_ns}  # fmt: skip
    risk, encode = p[:, NL.PR_RISK_NS], p[:, NL.PR_ENCODE_NS]
    return {
        "tick": t,
        "internal_ns": stamps["offered"] - stamps["received"],
        "wire_to_wire_ns": stamps["exchange"] - stamps["intended"],
        "sent_to_exchange_ns": stamps["exchange"] - stamps["sent"],
        "send": stamps["sent"] - stamps["intended"],
        "wire_in": stamps["received"] - stamps["sent"],
        "decode": stamps["decoded"] - stamps["received"],
        "dispatch": stamps["step"] - stamps["decoded"],
        "book": stamps["booked"] - stamps["step"],
        "strategy": stamps["stepped"] - stamps["booked"] - risk - encode,
        "risk": risk,
        "encode": encode,
        "offer": stamps["offered"] - stamps["stepped"],
        "wire_out": stamps["exchange"] - stamps["offered"],
    }


def _targets(result: dict) -> list[dict]:
    rows = []
    for figure, limits in TARGETS_NS.items():
        for q, target in limits.items():
            value = result[figure][q]
            rows.append({"figure": f"{figure}.{q}", "target_ns": target, "measured_ns": value,
                         "met": value is not None and value <= target})  # fmt: skip
    return rows


def _where_the_time_goes(stages: dict[str, dict], total_p50: int | None) -> list[dict]:
    rows = [{"stage": s, "p50_ns": stages[s]["p50"], "p99_ns": stages[s]["p99"], "what": STAGE_HELP[s]} for s in STAGES]
    for row in rows:
        row["share_of_wire_to_wire_p50"] = round(row["p50_ns"] / total_p50, 3) if total_p50 and row["p50_ns"] else None
    return sorted(rows, key=lambda r: -(r["p50_ns"] or 0))


def run(config: T2TConfig, say: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Run the harness; returns the result (JSON-ready) and the histograms for the plots."""
    node_cpu, harness_cpu = cpu_pair((config.cpus[1], config.cpus[0]) if config.cpus else None)
    with affinity_restored():  # the harness pins this process; a test or notebook gets its CPUs back
        return _run_pinned(config, node_cpu, harness_cpu, say)


def _run_pinned(config: T2TConfig, node_cpu: int, harness_cpu: int, say: Callable[[str], None]) -> tuple[dict, dict]:
    """``run`` with the harness pinned to ``harness_cpu`` and the node's hot thread to ``node_cpu``."""
    h = _start(config, node_cpu, say)
    try:
        pin_process(plan_placement(harness_cpu))
        _wait_running(h, say)
        say(f"running {config.warmup_s:g} s warm-up + {config.duration_s:g} s at {config.rate:g} ticks/s"
            + (f" and {config.background:g} background messages/s" if config.background else ""))  # fmt: skip
        _drive(h, say)
        line = Timeline.of(h.exchange)
        report = _stop(h)
        exchange = h.exchange.counters()
    except HarnessError as exc:
        raise BenchError(str(exc)) from None
    finally:
        _close(h)
    if "error" in report:
        raise BenchError(f"the node failed: {report['error']}")
    warm_ticks = min(line.n_ticks, int(config.warmup_s * config.rate))
    joined = attribute(line, report["probes"], warm_ticks)
    hists = {name: histogram(joined[name]) for name in (*HEADLINES, *STAGES)}
    stages = {s: summary(hists[s]) for s in STAGES}
    measured = line.n_ticks - warm_ticks
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            **asdict(config),
            "cpus": [harness_cpu, node_cpu],
            "transport_in": "udp 127.0.0.1",
            "transport_out": "aeron:ipc",
        },
        "internal_ns": summary(hists["internal_ns"]),
        "wire_to_wire_ns": summary(hists["wire_to_wire_ns"]),
        "sent_to_exchange_ns": summary(hists["sent_to_exchange_ns"]),
        "stages": stages,
        "ticks": {
            "sent": line.n_ticks,
            "measured": measured,
            "with_orders": len(joined["tick"]),
            "without_orders": measured - len(joined["tick"]),
            "orders_at_exchange": line.n_arrivals,
        },
        "node": {key: report.get(key) for key in NODE_FIGURES},
        "exchange": exchange,
    }
    result["targets"] = _targets(result)
    result["where_the_time_goes"] = _where_the_time_goes(stages, result["wire_to_wire_ns"]["p50"])
    curves = {
        "tick-to-trade": {
            "internal": hists["internal_ns"],
            "wire to wire": hists["wire_to_wire_ns"],
            "sent -> at the exchange": hists["sent_to_exchange_ns"],
        },
        "stages": {s: hists[s] for s in STAGES},
    }
    return result, curves


def markdown(result: dict) -> list[str]:
    """The report's tables: the two headline figures, the stages, the targets."""
    cfg = result["config"]
    m = result["machine"]
    ticks = result["ticks"]
    lines = [
        f"# Tick-to-trade, {result['date']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}; harness CPU {cfg['cpus'][0]}, node CPU "
        f"{cfg['cpus'][1]}, idle {cfg['idle']}; {cfg['rate']:g} ticks/s for {cfg['duration_s']:g} s after "
        f"{cfg['warmup_s']:g} s warm-up; strategy {cfg['strategy']}; packets "
        f"{'of the tick alone' if not cfg['size'] else f'~{cfg['size']} bytes'}.",
        f"Ticks measured {ticks['measured']}, with orders {ticks['with_orders']}, without {ticks['without_orders']}.",
        "",
        *latency_table({"internal (packet in hand -> order offered)": result["internal_ns"],
                        "wire to wire (intended send -> order at the exchange)": result["wire_to_wire_ns"],
                        "packet actually sent -> order at the exchange": result["sent_to_exchange_ns"]}),
        "",
        *latency_table(result["stages"], title="Stages"),
        "",
        "| target | limit | measured | met |",
        "|---|---:|---:|:-:|",
    ]  # fmt: skip
    for row in result["targets"]:
        measured = "–" if row["measured_ns"] is None else f"{row['measured_ns'] / 1000:.2f} us"
        lines.append(
            f"| {row['figure']} | {row['target_ns'] / 1000:g} us | {measured} | {'yes' if row['met'] else 'NO'} |"
        )
    if not all(row["met"] for row in result["targets"]):
        lines += ["", "Where the time goes (p50, largest first):", ""]
        for row in result["where_the_time_goes"][:5]:
            p50 = "–" if row["p50_ns"] is None else f"{row['p50_ns'] / 1000:.2f} us"
            lines.append(f"- {row['stage']}: {p50} — {row['what']}")
    return lines


def main(config: T2TConfig, out_dir: str, as_json: bool, compare_to: str | None) -> int:
    """Run, write bench/results/<date>-t2t/, print the tables (or the JSON) and the comparison."""
    import json
    import sys

    say = (lambda text: print(text, file=sys.stderr)) if as_json else print
    old = load_result(compare_to) if compare_to else None
    result, curves = run(config, say)
    lines = markdown(result)
    if old is not None:
        lines += ["", *compare_lines(compare(old, result), str(compare_to), "this run")]
    if as_json:
        with contextlib.redirect_stdout(sys.stderr):
            folder = write_report(result, NAME, lines, out_dir, curves)
        print(json.dumps(result))
    else:
        folder = write_report(result, NAME, lines, out_dir, curves)
    say(f"report: {Path(folder) / (NAME + '.md')}")
    return 0
