"""Backtester throughput: events/s of ``engine.backtest.backtest`` beside hftbacktest 2.4.4 on the same data.

Run as ``hftmm bench backtest`` (or ``python -m bench.backtest``). Rows:

* ours, ``touch`` and ``glft``, on hftbacktest's own event file (Binance USD-M BTCUSDT, L2 depth
  and trades, ../shared/replay_data/hftbacktest/...npz) with the settings of the compatibility test
  (:data:`NPZ_SETTINGS`: constant order latency, risk-averse queue, no partial fills, post-only,
  maker rebate and taker fee, a requote every 100 ms);
* hftbacktest with the same ``touch`` logic (:func:`hftbacktest_touch`) and the same settings on
  the same file, in the same process, so that the ratio of the two is measured on one machine state;
* ours, ``touch`` and ``glft``, on a generated ITCH 5.0 day (``feeds.synth``, fixed seed; the
  busiest symbol, exact FIFO queue on L3 data).

Before anything is timed, ours and hftbacktest run ``touch`` once on the npz file and their fill
counts and final positions are written beside the timings (tests/integration/test_hftbacktest_compat.py
holds the justified tolerance). A figure is events per second of the replay loop only: our load
(file -> events) and compile time, and hftbacktest's construction, are outside the clock; both take
the data from memory (hftbacktest gets the array, not the file). Best and median of ``repeats`` runs,
over wall time and over the replay thread's CPU time (which other processes on a shared machine
inflate less).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import machine_info, write_results

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = REPO.parent / "shared" / "replay_data" / "hftbacktest" / "usdm_btcusdt_20240808_head120k.npz"
GENERATED = Path("replay_data/generated")

# --- settings shared with the compatibility test -------------------------------------------------
NPZ_TICK = 0.1  # BTCUSDT perpetual on Binance USD-M
NPZ_LOT = 0.001
ENTRY_NS = 2_000_000  # order entry latency: the file's own feed latency has a 1st percentile of 2.2 ms
RESPONSE_NS = 2_000_000
MAKER_FEE = -0.00005  # a maker rebate of 0.5 bp (negative fee)
TAKER_FEE = 0.0007  # 7 bp; no taker fill can happen with post-only orders, but it is configured alike
INTERVAL_NS = 100_000_000  # requote every 100 ms
NPZ_PARAMS = {"interval_ns": INTERVAL_NS, "order_qty": 0.01, "max_position": 0.1}  # 0.01 BTC a quote
ITCH_PARAMS = {"interval_ns": INTERVAL_NS, "order_qty": 100.0, "max_position": 1000.0}  # a round lot a quote
# the comparison is of the exchange simulation: the trading core's risk checks are wide open (the position
# limit cannot be switched off) and requotes are cancel + new, as in hftbacktest_touch
WIDE_RISK = {"max_position": 1e12, "max_order_qty": 0, "price_collar_bps": 0, "max_open_orders": 0,
             "max_orders_per_s": 0}  # fmt: skip
NPZ_SETTINGS = {
    "tick_size": NPZ_TICK,
    "lot_size": NPZ_LOT,
    "latency": f"constant:{ENTRY_NS},{RESPONSE_NS}",
    "queue": "risk-averse",
    "partial_fills": False,
    "maker_fee": MAKER_FEE,
    "taker_fee": TAKER_FEE,
    "time_in_force": "gtx",
    "risk": WIDE_RISK,
    "replace": False,
}
ITCH_SETTINGS = {
    "latency": f"constant:{ENTRY_NS},{RESPONSE_NS}",
    "partial_fills": False,
    "maker_fee": MAKER_FEE,
    "taker_fee": TAKER_FEE,
    "time_in_force": "gtx",
    "risk": WIDE_RISK,
    "replace": False,
}
HBT_EXCH_EVENT = 1 << 31
HBT_LOCAL_EVENT = 1 << 30
TRACE_ROWS = 1 << 20  # per-wake rows hftbacktest_touch can record (a 100 ms wake: 29 hours)


# --- hftbacktest: the same touch logic over its Python API ---------------------------------------
@functools.cache
def _hbt_touch_loop() -> Callable:
    """The jitted ``touch`` loop for an hftbacktest backtester (built once; imports hftbacktest)."""
    from hftbacktest import BUY, FILLED, GTX, LIMIT, NEW, NONE
    from numba import njit

    invalid = 1 << 62  # hftbacktest's empty side: best tick i64::MIN (bids) or i64::MAX (asks)

    @njit
    def loop(hbt, offset_ns, interval_ns, qty, max_position, lot, trace, fills):  # pragma: no cover - jitted
        """touch in hftbacktest: strategies/touch.py + engine.trading.plan.plan_nb, order by order.

        Every ``interval_ns`` (after a first ``offset_ns`` that puts the wakes where ours are): bid at
        the best bid and ask at the best ask, ``qty`` each, while the local position allows it; an
        order resting at a wanted price stays, any other live one is canceled. Writes one row per wake
        into ``trace`` (time, position, balance, fee, fills, mid) and each fill it sees into ``fills``
        (order id, side, price tick, exchange time, local send time); returns (wakes, fills, orders).
        """
        limit = max_position + 0.5 * lot
        next_id = 1
        n_wake = 0
        n_fill = 0
        if offset_ns > 0:
            hbt.elapse(offset_ns)
        while hbt.elapse(interval_ns) == 0 and n_wake < trace.shape[0]:
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                if o.status == FILLED and n_fill < fills.shape[0]:
                    fills[n_fill, 0] = o.order_id
                    fills[n_fill, 1] = o.side
                    fills[n_fill, 2] = o.price_tick
                    fills[n_fill, 3] = o.exch_timestamp
                    fills[n_fill, 4] = o.local_timestamp
                    n_fill += 1
            hbt.clear_inactive_orders(0)
            depth = hbt.depth(0)
            bid_tick = depth.best_bid_tick
            ask_tick = depth.best_ask_tick
            valid = bid_tick > -invalid and ask_tick < invalid
            position = hbt.position(0)
            want_bid = valid and position + qty <= limit
            want_ask = valid and position - qty >= -limit
            have_bid = False
            have_ask = False
            values = hbt.orders(0).values()
            while values.has_next():
                o = values.get()
                pending_new = o.req == NEW
                live = o.status == NEW and o.req == NONE
                if not (pending_new or live):
                    continue  # done, or a cancel on its way
                if o.side == BUY:
                    if want_bid and o.price_tick == bid_tick:
                        have_bid = True
                    elif live:
                        hbt.cancel(0, o.order_id, False)
                elif want_ask and o.price_tick == ask_tick:
                    have_ask = True
                elif live:
                    hbt.cancel(0, o.order_id, False)
            if want_bid and not have_bid:
                hbt.submit_buy_order(0, next_id, bid_tick * depth.tick_size, qty, GTX, LIMIT, False)
                next_id += 1
            if want_ask and not have_ask:
                hbt.submit_sell_order(0, next_id, ask_tick * depth.tick_size, qty, GTX, LIMIT, False)
                next_id += 1
            sv = hbt.state_values(0)
            trace[n_wake, 0] = hbt.current_timestamp
            trace[n_wake, 1] = position
            trace[n_wake, 2] = sv.balance
            trace[n_wake, 3] = sv.fee
            trace[n_wake, 4] = sv.num_trades
            trace[n_wake, 5] = (bid_tick + ask_tick) * 0.5 * depth.tick_size if valid else np.nan
            n_wake += 1
        return n_wake, n_fill, next_id - 1

    return loop


def hbt_start_offset_ns(data: np.ndarray) -> int:
    """How far hftbacktest's clock must move before its first interval so that its wakes fall on ours.

    hftbacktest starts its clock at the earliest event of either timeline (an exchange timestamp);
    ours starts at the first event our feed handler sees (a local timestamp) and wakes ``interval``
    after it. One first ``elapse`` of the difference aligns the two grids exactly.
    """
    ev = data["ev"]
    first_local = int(data["local_ts"][(ev & HBT_LOCAL_EVENT) != 0][0])
    first_exch = int(data["exch_ts"][(ev & HBT_EXCH_EVENT) != 0][0])
    return first_local - min(first_local, first_exch)


def hftbacktest_touch(
    data: np.ndarray,
    *,
    order_qty: float,
    max_position: float,
    interval_ns: int = INTERVAL_NS,
    entry_ns: int = ENTRY_NS,
    response_ns: int = RESPONSE_NS,
    maker_fee: float = MAKER_FEE,
    taker_fee: float = TAKER_FEE,
    tick_size: float = NPZ_TICK,
    lot_size: float = NPZ_LOT,
) -> dict:
    """Run ``touch`` in hftbacktest over the event array ``data`` (linear asset, constant order
    latency, risk-averse queue, no partial fills, trading-value fees) and report like ours does.

    Returns fills (its ``num_trades``), position, balance, fee, mid (of the final local book), pnl
    (balance + position * mid - fee), orders, wakes, elapsed_s (the loop alone), and the ``trace``
    (one row a wake) and ``fill_log`` arrays for diagnostics.
    """
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    loop = _hbt_touch_loop()
    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(entry_ns, response_ns)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(maker_fee, taker_fee)
        .tick_size(tick_size)
        .lot_size(lot_size)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    trace = np.zeros((TRACE_ROWS, 6), np.float64)
    fill_log = np.zeros((TRACE_ROWS // 4, 5), np.int64)
    try:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        n_wake, n_fill, orders = loop(
            hbt, hbt_start_offset_ns(data), interval_ns, order_qty, max_position, lot_size, trace, fill_log
        )
        elapsed, cpu_s = time.perf_counter() - t0, time.thread_time() - cpu0
        depth = hbt.depth(0)
        values = hbt.state_values(0)
        position = float(hbt.position(0))
        mid = 0.5 * (depth.best_bid + depth.best_ask)
        out = {
            "fills": int(values.num_trades),
            "position": position,
            "balance": float(values.balance),
            "fee": float(values.fee),
            "mid": float(mid),
            "pnl": float(values.balance + position * mid - values.fee),
            "orders": int(orders),
            "wakes": int(n_wake),
            "events": len(data),
            "elapsed_s": elapsed,
            "events_per_s": len(data) / elapsed if elapsed > 0 else 0.0,
            "cpu_s": cpu_s,
        }
    finally:
        hbt.close()
    out["trace"] = trace[:n_wake]
    out["fill_log"] = fill_log[:n_fill]
    return out


# --- the runs -----------------------------------------------------------------------------------
def _head_npz(npz: Path, events: int) -> Path:
    """``npz`` itself, or a copy of its first ``events`` rows under replay_data/generated/."""
    with np.load(npz) as f:
        n = len(f["data"])
        if events <= 0 or events >= n:
            return npz
        GENERATED.mkdir(parents=True, exist_ok=True)
        path = GENERATED / f"{npz.stem}_head{events}.npz"
        if not path.exists():
            np.savez_compressed(path, data=f["data"][:events])
    return path


def _itch_day(messages: int, symbols: int, seed: int) -> tuple[Path, str]:
    """The generated ITCH day (made once, named as bench/feed_book.py names it) and its busiest symbol."""
    from feeds.read import FeedPass, read_feeds
    from feeds.synth import generate_itch

    GENERATED.mkdir(parents=True, exist_ok=True)
    path = GENERATED / f"bench-{messages}-{symbols}-{seed}.itch"
    if not path.exists():
        print(f"generating {messages:,} messages over {symbols} symbols -> {path}")
        generate_itch(str(path), messages=messages, symbols=symbols, seed=seed)
    fp = FeedPass([str(path)])
    counts: dict[int, int] = {}
    for batch in read_feeds([str(path)], progress=False, feed_pass=fp):
        ids, n = np.unique(batch["instrument"][batch["kind"] != 0], return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            counts[i] = counts.get(i, 0) + c
    listed = {i: c for i, c in counts.items() if i in fp.instruments}  # not the market-wide messages
    return path, fp.instruments[max(listed, key=listed.__getitem__)].symbol


def _ours(data: Path, strategy: str, params: dict, settings: dict, symbol: str | None = None) -> dict:
    from engine.backtest.backtest import backtest

    return backtest([str(data)], strategy, params, symbol=symbol, progress=False, **settings).stats


def _row(runs: list[dict], **extra: object) -> dict:
    rates = [r["events_per_s"] for r in runs]
    cpu_rates = [r["events"] / r["cpu_s"] for r in runs if r["cpu_s"] > 0] or [0.0]
    return {
        "events": runs[0]["events"],
        "events_per_s": round(max(rates)),
        "median_events_per_s": round(statistics.median(rates)),
        "ns_per_event": round(1e9 / max(rates), 1),
        "runs_events_per_s": [round(x) for x in rates],
        "cpu_events_per_s": round(max(cpu_rates)),
        "median_cpu_events_per_s": round(statistics.median(cpu_rates)),
        "fills": runs[0]["fills"],
        **extra,
    }


def run(
    npz: str | None,
    npz_events: int,
    messages: int,
    symbols: int,
    seed: int,
    repeats: int,
    out_dir: str,
    strategies: tuple[str, ...] = ("touch", "glft"),
) -> dict:
    """Check, time, and write JSON + Markdown under ``out_dir``; returns the result."""
    from strategies import STRATEGIES

    load_at_start = list(os.getloadavg())
    notes = []
    strategies = tuple(s for s in strategies if s in STRATEGIES)
    if "glft" not in strategies:
        notes.append("glft is not registered in strategies/__init__.py: touch only")
    try:
        import hftbacktest

        hbt_version = hftbacktest.__version__
    except ImportError:
        hbt_version = None
        notes.append("hftbacktest is not installed: no reference row")
    if hbt_version:
        notes.append(
            "hftbacktest runs touch only (our GLFT and its online estimators are not rewritten over its API): "
            "the glft ratio sets our glft beside hftbacktest's touch"
        )
    rows: dict[str, dict] = {}
    check: dict[str, object] = {}
    inputs: dict[str, object] = {}

    npz_path = Path(npz) if npz else DEFAULT_NPZ
    if npz_path.is_file():
        data_path = _head_npz(npz_path, npz_events)
        with np.load(data_path) as f:
            data = np.ascontiguousarray(f["data"])
        inputs["npz"] = {"file": str(data_path), "events": len(data), "tick_size": NPZ_TICK, "lot_size": NPZ_LOT}
        params = {"touch": NPZ_PARAMS, "glft": NPZ_PARAMS}
        first = {s: _ours(data_path, s, params[s], NPZ_SETTINGS) for s in strategies}  # compile / warm the caches
        if hbt_version:
            ref = hftbacktest_touch(data, order_qty=NPZ_PARAMS["order_qty"], max_position=NPZ_PARAMS["max_position"])
            check = {
                "ours_fills": first["touch"]["fills"],
                "hftbacktest_fills": ref["fills"],
                "ours_position": first["touch"]["position_units"],
                "hftbacktest_position": ref["position"],
                "ours_pnl": round(first["touch"]["pnl"], 6),
                "hftbacktest_pnl": round(ref["pnl"], 6),
            }
        for s in strategies:
            runs = [_ours(data_path, s, params[s], NPZ_SETTINGS) for _ in range(repeats)]
            rows[f"ours {s}, npz (L2)"] = _row(runs, load_s=round(statistics.median(r["load_s"] for r in runs), 4))
        if hbt_version:
            runs = [
                hftbacktest_touch(data, order_qty=NPZ_PARAMS["order_qty"], max_position=NPZ_PARAMS["max_position"])
                for _ in range(repeats)
            ]
            rows["hftbacktest touch, npz (L2)"] = _row(runs)
    else:
        notes.append(f"{npz_path} is absent: no npz rows")

    itch, symbol = _itch_day(messages, symbols, seed)
    inputs["itch"] = {"file": str(itch), "messages": messages, "symbols": symbols, "seed": seed, "symbol": symbol}
    for s in strategies:
        _ours(itch, s, ITCH_PARAMS, ITCH_SETTINGS, symbol)  # warm-up: the first load also fills the OS cache
        runs = [_ours(itch, s, ITCH_PARAMS, ITCH_SETTINGS, symbol) for _ in range(repeats)]
        rows[f"ours {s}, ITCH day (L3)"] = _row(runs, load_s=round(statistics.median(r["load_s"] for r in runs), 4))

    ratio = {}
    ref_row = rows.get("hftbacktest touch, npz (L2)")
    if ref_row:
        for s in strategies:
            mine = rows[f"ours {s}, npz (L2)"]
            ratio[s] = {
                "best": round(mine["events_per_s"] / ref_row["events_per_s"], 2),
                "median": round(mine["median_events_per_s"] / ref_row["median_events_per_s"], 2),
            }
    result = {
        "benchmark": "backtest",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine_info(),
            "hftbacktest": hbt_version,
            "load_average_at_start": load_at_start,
            "load_average": list(os.getloadavg()),
        },
        "settings": {"npz": NPZ_SETTINGS, "npz_params": NPZ_PARAMS, "itch": ITCH_SETTINGS, "itch_params": ITCH_PARAMS},
        "input": inputs,
        "repeats": repeats,
        "check": check,
        "results": rows,
        "ours_over_hftbacktest": ratio,
        "notes": notes,
    }
    _write(result, out_dir)
    return result


def _write(result: dict, out_dir: str) -> None:
    m = result["machine"]
    lines = [
        f"# Backtester throughput ({result['date'][:10]})",
        "",
        f"Replay loop only (load and compile excluded; both engines read from memory), one core, "
        f"best and median of {result['repeats']} runs, in one process. Requote every "
        f"{INTERVAL_NS // 1_000_000} ms, order latency {ENTRY_NS / 1e6:g} ms + {RESPONSE_NS / 1e6:g} ms, "
        f"post-only, no partial fills, fees {MAKER_FEE:g} / {TAKER_FEE:g} of value. CPU events/s: over the "
        f"replay thread's CPU time rather than wall time.",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared; load average {m['load_average_at_start'][0]:.1f} at the "
        f"start, {m['load_average'][0]:.1f} at the end), "
        f"{m['memory_gib']} GiB, Python {m['python']}, numba {m['numba']}, hftbacktest {m['hftbacktest']}.",
        "",
    ]
    for name, spec in result["input"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in spec.items()))
    lines += [
        "",
        "| run | events | events/s (best) | ns/event (best) | events/s (median) | CPU events/s (best) | "
        "CPU events/s (median) | fills |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["results"].items():
        lines.append(
            f"| {name} | {r['events']:,} | {r['events_per_s']:,} | {r['ns_per_event']} | "
            f"{r['median_events_per_s']:,} | {r['cpu_events_per_s']:,} | {r['median_cpu_events_per_s']:,} | "
            f"{r['fills']:,} |"
        )
    if result["ours_over_hftbacktest"]:
        lines.append("")
        for s, r in result["ours_over_hftbacktest"].items():
            lines.append(f"ours {s} / hftbacktest touch on the npz file: {r['best']}x (best), {r['median']}x (median).")
    if result["check"]:
        c = result["check"]
        lines += [
            "",
            f"Check before timing (touch, npz): fills {c['ours_fills']} ours vs {c['hftbacktest_fills']} hftbacktest, "
            f"final position {c['ours_position']:g} vs {c['hftbacktest_position']:g}, "
            f"PnL {c['ours_pnl']:.4f} vs {c['hftbacktest_pnl']:.4f}.",
        ]
    lines += [f"Note: {n}." for n in result["notes"]]
    write_results(result, "backtest", lines, out_dir)


def main() -> None:
    """``python -m bench.backtest``: same options as ``hftmm bench backtest``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", default=None)
    p.add_argument("--npz-events", type=int, default=0)
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join("bench", "results"))
    a = p.parse_args()
    run(a.npz, a.npz_events, a.messages, a.symbols, a.seed, a.repeats, a.out)


if __name__ == "__main__":
    main()
