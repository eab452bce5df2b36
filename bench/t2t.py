"""``hftmm bench t2t``: tick-to-trade of a live trading node against the simulated exchange, stage by stage.

Two processes, each busy-polling on its own CPU::

    harness (CPU A)   SimExchange stepped on this thread; a scripted participant moves the market
                      one tick up or down at a fixed rate; ITCH 5.0 in MoldUDP64 over UDP to 127.0.0.1
    node    (CPU B)   engine.live.node.TradingNode, exactly as the live daemon runs it (a Ray actor there,
                      a plain process here: the actor is only its host); orders back over Aeron IPC

Every tick moves the mid by one tick (the participant's bid and ask step together), so a strategy
quoting around the mid re-quotes on every tick it sees. Coordinated omission: each tick has an
intended send time on a fixed schedule and latency counts from it, so a stalled harness or node
shows up as latency instead of as fewer, better-looking samples.

One tick, all on CLOCK_MONOTONIC (shared by the two processes)::

    intended -send-> sent -wire_in-> received -decode-> decoded -dispatch-> step -book-> booked
      -strategy, risk, encode-> stepped -offer-> offered -wire_out-> at the exchange

``internal_ns`` = offered - received (packet in hand to order offered); ``wire_to_wire_ns`` = at the
exchange - intended; ``sent_to_exchange_ns`` = at the exchange - sent, the same without the
exchange's own lateness (the ``send`` stage: it matches, publishes and answers the node's orders
in Python, about 0.2 ms a tick here, which is what bounds the rate). The node keeps one probe row
per market-data batch that made it send (``engine.live.node_nb.PR_*``); a probe counts for the tick
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
from msgspec.structs import replace

from bench.machine import machine_info
from bench.report import compare, compare_lines, histogram, latency_table, load_result, summary, write_report
from engine.core import events as E
from engine.core.units import NS_PER_S
from engine.gateway import session as SP
from engine.live import layout as NL
from engine.live.builder import NodeBlocks, NodeSpec
from engine.live.config import ExchangeConfig, LiveConfig, NodeConfig
from engine.live.daemon import first_order_id
from engine.live.node import NodeProcess
from engine.runtime import control as CB
from engine.runtime.affinity import affinity_restored, cpu_pair, pin_process, plan_placement
from engine.runtime.agent import idle_strategy
from engine.simexchange import layout as XL
from engine.simexchange.config import SimInstrument
from engine.simexchange.exchange import SimExchange
from engine.trading.risk import RiskConfig
from feeds import itch
from feeds.udp import free_udp_port

NAME = "t2t"
SYMBOL, LOCATE, TICK, LOT = "BENCH", 1, 100, 1
FILLER_LOCATE = 2  # messages that only make packets bigger (an instrument the node does not trade)
FILLER_REF = 1 << 40  # their order references, far from the exchange's
PRICE = 1_000_000  # $100.00 in 1e-4 units
PARTICIPANT = -2  # owner id of the scripted participant (sessions are >= 1, the background flow -1)
PARTICIPANT_LOTS = 100
START_TIMEOUT_S = 600.0  # a cold Numba cache compiles the node's kernels first
LATE_SLACK_NS = 10_000_000_000  # beyond twice the run's length: how far behind the schedule may fall
PRIMING_MOVES = 4  # market moves (each answered by orders) before the schedule starts
PRIMING_SETTLE_S = 0.05
STOP_TIMEOUT_S = 15.0
DRAIN_S = 0.05  # after the last tick, time for its orders to arrive
MAX_ARRIVALS = 1 << 22
TARGETS_NS = {"internal_ns": {"p50": 1_000, "p99": 5_000}, "wire_to_wire_ns": {"p50": 8_000, "p99": 30_000}}
HEADLINES = ("internal_ns", "wire_to_wire_ns", "sent_to_exchange_ns")
NODE_FIGURES = ("placement", "md_messages", "md_gaps", "strategy_calls", "duty_cycles", "max_duty_cycle_ns")
STAGES = ("send", "wire_in", *NL.STAGES, "wire_out")
STAGE_HELP = {
    "send": "intended send time -> packet sent (the exchange's matching, publishing, and its lateness)",
    "wire_in": "packet sent -> packet in the node's hand (kernel UDP over loopback)",
    "decode": "packet in hand -> event rows ready (MoldUDP64 sequencing + ITCH decode, in the node's compiled loop)",
    "dispatch": "rows ready -> step entered (the loop's order-entry poll, heartbeat and timers)",
    "book": "step entered -> responses reconciled and events applied to the L3 book",
    "strategy": "book -> view, strategy, quote plan (with the step's bookkeeping)",
    "risk": "pre-trade checks of the new orders",
    "encode": "OUCH encoding of orders and cancels",
    "offer": "step returned -> first message handed to the Aeron publication (the C client, from the loop)",
    "wire_out": "handed to Aeron -> order read by the exchange over Aeron IPC (the offer call included)",
}
DEFAULT_PARAMS = {"interval_ns": 0, "order_qty": 1, "max_position": 100, "levels": 1, "grid_ticks": 1,
                  "half_spread_ticks": 3, "skew_ticks_per_unit": 0}  # fmt: skip


@dataclass(frozen=True)
class T2TConfig:
    """The run's controls (``hftmm bench t2t --help``)."""

    duration_s: float = 10.0
    warmup_s: float = 2.0
    rate: float = 500.0  # ticks per second (the simulated exchange, Python, keeps up to about 1000 here)
    size: int = 0  # market-data packet bytes to reach with filler messages (0: the tick's messages only)
    cpus: tuple[int, ...] = ()  # (harness, node); () = the two highest allowed
    idle: str = "spin"  # both loops
    strategy: str = "grid"
    params: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and self.warmup_s >= 0 and self.rate > 0 and self.size >= 0):
            raise ValueError("need duration > 0, warm-up >= 0, rate > 0 and size >= 0")
        if self.rate > 100_000:
            raise ValueError(f"rate {self.rate:g}/s is beyond what one scripted participant can schedule")
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


class TickScript:
    """The scripted participant: a bid and an ask one tick either side of the mid, moved together."""

    def __init__(self, exchange: SimExchange, filler: bytes) -> None:
        self.exchange = exchange
        self.filler = filler
        self.refs = [0, 0]  # exchange references of the bid and the ask
        self.mid = PRICE
        self.requests = np.zeros(2, XL.REQUEST_DTYPE)
        self.requests["owner"] = PARTICIPANT
        self.requests["instrument"] = LOCATE
        self.requests["qty"] = PARTICIPANT_LOTS * LOT
        self.requests["client_ref"] = [0, 1]

    def open(self) -> None:
        """Rest the bid and the ask."""
        self.requests["kind"] = XL.REQ_NEW
        self.requests["side"] = [E.SIDE_BID, E.SIDE_ASK]
        self.requests["tif"] = XL.TIF_DAY
        self._submit()

    def move(self, up: bool) -> None:
        """Move the mid one tick: the side in the direction of the move first, so the book never crosses."""
        self.mid += TICK if up else -TICK
        self.requests["kind"] = XL.REQ_REPLACE
        order = (1, 0) if up else (0, 1)
        self.requests["client_ref"] = order
        if self.filler:
            self.exchange.publisher.publish_flat(self.filler)
        self._submit()

    def _submit(self) -> None:
        for row, side in enumerate(self.requests["client_ref"]):
            self.requests[row]["order_ref"] = self.refs[side]
            self.requests[row]["price"] = self.mid + (TICK if side else -TICK)
        for report in self.exchange.submit(self.requests):
            if report["owner"] == PARTICIPANT and report["kind"] in (XL.RPT_ACCEPTED, XL.RPT_REPLACED):
                self.refs[int(report["client_ref"])] = int(report["order_ref"])
            elif report["owner"] == PARTICIPANT:
                raise BenchError(f"the exchange answered the scripted participant with report kind {report['kind']}")


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

    def on_inbound(self, packet: bytes) -> None:
        """The exchange's tap: stamp every OUCH message from the node as it is read."""
        if packet[:1] == _UNSEQUENCED and self.n_arrivals < MAX_ARRIVALS:
            self.arrivals[self.n_arrivals] = time.monotonic_ns()
            self.n_arrivals += 1


_UNSEQUENCED = bytes((SP.PKT_UNSEQUENCED,))


@dataclass
class Harness:
    """The exchange, the node process and their shared blocks for one run."""

    config: T2TConfig
    exchange: SimExchange
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
    sim = live.embedded_exchange()  # its order rate limit off: like the node's, never binding here
    exchange = SimExchange(replace(sim, order_entry=replace(sim.order_entry, max_orders_per_s=0.0)))
    exchange.pause_flow()  # only the scripted participant trades
    blocks = NodeBlocks.create("t2t", [SYMBOL], f"{os.getpid()}-t2t", journal=False)
    spec = live.node_spec(0, exchange.driver.dir, blocks, first_order_id())
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_node_main, args=(spec, child), name="hftmm-t2t-node", daemon=True)
    process.start()
    child.close()
    say(f"node process {process.pid} on CPU {node_cpu}")
    return Harness(config, exchange, spec, blocks, process, parent)


def _wait_running(h: Harness, script: TickScript, line: Timeline, say: Callable[[str], None]) -> None:
    """Step the exchange until the node runs and its first orders are in, then move the market a few
    times: every kernel on both sides is loaded (or compiled) before the schedule starts."""
    script.open()
    deadline = time.monotonic() + START_TIMEOUT_S
    _step_until(h, lambda: h.blocks.control.slots[CB.CT_STATE] == CB.ST_RUNNING, deadline, "running", say)
    _step_until(h, lambda: line.n_arrivals > 0, deadline, "quoting", say)
    for move in range(PRIMING_MOVES):  # an even count: the mid ends where the schedule expects it
        script.move(up=move % 2 == 0)
        settle = time.monotonic() + PRIMING_SETTLE_S  # the orders it brings, and their acknowledgements
        _step_until(h, lambda settle=settle: time.monotonic() > settle, deadline, "quoting", say)


def _step_until(h: Harness, done: Callable[[], bool], deadline: float, what: str, say: Callable[[str], None]) -> None:
    told = time.monotonic() + 5.0
    while not done():
        h.exchange.step()
        if not h.process.is_alive():
            raise BenchError(f"the node process ended during start-up: {_report(h, 1.0).get('error', 'no report')}")
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"the node was not {what} {START_TIMEOUT_S:.0f} s after it started")
        if now > told:
            say(f"waiting for the node to be {what} (the first run compiles its kernels: minutes)")
            told = now + 30.0
        time.sleep(0.0005)


def _drive(h: Harness, script: TickScript, line: Timeline, say: Callable[[str], None]) -> None:
    """Send the ticks on their fixed schedule while stepping the exchange; bounded in count and time."""
    cfg = h.config
    n = len(line.intended)
    period_ns = NS_PER_S / cfg.rate
    publisher = h.exchange.publisher
    idle = idle_strategy(cfg.idle)
    step = h.exchange.step
    start = time.monotonic_ns() + 1_000_000
    hard_stop = start + int((cfg.warmup_s + cfg.duration_s) * NS_PER_S * 2) + LATE_SLACK_NS
    next_note = time.monotonic() + 5.0
    t = 0
    while t < n:
        due = start + int(t * period_ns)
        now = time.monotonic_ns()
        if now > hard_stop:
            say(f"stopped after {t} of {n} ticks: the time bound passed")
            break
        if now >= due:
            _send_all(publisher)  # what the sessions' orders made leaves first, so a tick's sequence range is its own
            first = publisher.next_seq
            script.move(up=t % 2 == 0)
            _send_all(publisher)
            line.sent[t] = publisher.last_data_send_ns  # the packet that carries the tick's newest message
            line.intended[t] = due
            line.first_seq[t], line.end_seq[t] = first, publisher.next_seq
            t += 1
            line.n_ticks = t
        idle.idle(step())
        if time.monotonic() > next_note:
            say(f"{t}/{n} ticks, {line.n_arrivals} orders at the exchange")
            next_note += 5.0
    drain_until = time.monotonic_ns() + int(DRAIN_S * NS_PER_S)
    while time.monotonic_ns() < drain_until:
        idle.idle(step())


def _send_all(publisher) -> None:
    for _ in range(64):  # bounded: a tick is a handful of packets at most
        if not publisher.do_work():
            return


def _stop(h: Harness) -> dict:
    """Stop the node (it cancels its orders, the exchange keeps answering) and collect its report."""
    h.blocks.control.slots[CB.CT_STOP] = 1
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while h.blocks.control.slots[CB.CT_STATE] != CB.ST_DONE and h.process.is_alive() and time.monotonic() < deadline:
        h.exchange.step()
        time.sleep(0.0005)
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
    h.exchange.stop()
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
        script = TickScript(h.exchange, _filler(max(0, config.size - 64)))
        n = int((config.warmup_s + config.duration_s) * config.rate)
        line = Timeline(*(np.zeros(n, np.int64) for _ in range(4)))
        h.exchange.order_entry.tap = line.on_inbound  # from the first order on: the node counts them all
        _wait_running(h, script, line, say)
        say(f"running {config.warmup_s:g} s warm-up + {config.duration_s:g} s at {config.rate:g} ticks/s")
        _drive(h, script, line, say)
        report = _stop(h)
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
