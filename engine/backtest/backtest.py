"""Historical replay backtests: events -> book -> strategy -> simulated exchange -> fills -> positions.

The Python face of ``engine.backtest.backtest_nb``: it reads the data (ITCH, DBN MBO, event Parquet,
hftbacktest npz), picks the instrument, parses the latency and queue models, runs the compiled
loop (growing its tables when it asks), and turns what came out into a :class:`BacktestResult`
with the statistics, the fills and the equity curve. ``hftmm backtest`` is a thin layer over
:func:`backtest`; notebooks call it directly::

    from engine.backtest.backtest import backtest
    result = backtest(["day.itch.gz"], "touch", {"order_qty": 100}, symbol="AAPL")
    result.stats["pnl"], result.fills.to_pandas(), result.plot("aapl.png")
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

import msgspec
import numpy as np
import pyarrow as pa
from numba import typeof
from tqdm import tqdm

from engine.backtest import backtest_nb as k
from engine.backtest import layout as L
from engine.backtest.data import load_events
from engine.backtest.models import DEFAULT_LATENCY, BacktestError, Latency, parse_feed_latency, parse_queue
from engine.backtest.result import BacktestResult, equity_stats, per_day
from engine.book import layout as BL
from engine.book.book_nb import grow_state
from engine.book.depth import new_depth
from engine.book.layout import new_state
from engine.core import events as E
from engine.core.jit import CompileWatch, tell_compiling
from engine.trading import layout as TL
from engine.trading.core import core_tables
from engine.trading.oms import new_counters, new_orders
from engine.trading.risk import RiskConfig
from feeds.ouch import empty_responses
from strategies import get_strategy
from strategies.api import QUOTE_FN, Strategy

SAMPLE_NS = 100_000_000  # equity curve resolution
CHUNK_EVENTS = 1 << 20  # events per compiled call (the progress bar moves between calls)
ORDER_SLOTS = 32
MAX_PRESIZED_ORDERS = 1 << 22  # about 400 MiB a book: beyond it the books grow as they fill
L3_KINDS = (E.KIND_ADD, E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE, E.KIND_CANCEL, E.KIND_DELETE, E.KIND_REPLACE)


# --- the run ------------------------------------------------------------------------------------


def backtest(
    data: list[str] | str,
    strategy: str | Strategy,
    params: Mapping[str, float] | None = None,
    *,
    symbol: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
    latency: str | Latency = DEFAULT_LATENCY,
    feed_latency: str | None = None,
    queue: str | None = None,
    partial_fills: bool = False,
    maker_fee: float = 0.0,
    taker_fee: float = 0.0,
    time_in_force: str = "gtx",
    instruments: str | None = None,
    risk: RiskConfig | Mapping[str, float] | None = None,
    replace: bool = True,
    progress: bool = True,
) -> BacktestResult:
    """Run ``strategy`` over ``data`` and return the result (see the module docstring).

    Fees are fractions of traded value (negative: a rebate). ``queue`` defaults to ``fifo`` on L3
    data and ``risk-averse`` on L2 data; ``time_in_force`` ``gtx`` (post-only, the default) rejects
    an order that would cross on arrival, ``gtc`` lets it take liquidity at the touch. ``instruments``
    is a TOML file of ``[[instruments]]`` symbol, tick_size, lot_size (the arguments win over it).

    The orders go through the live node's trading core (``engine.trading.core``): its pre-trade checks with
    ``risk`` (a ``RiskConfig`` or its fields; the live node's defaults when None) and, with ``replace``,
    requotes as Replace requests.
    """
    paths = [data] if isinstance(data, str) else list(data)
    try:
        spec = get_strategy(strategy) if isinstance(strategy, str) else strategy
        param_array = spec.param_array(params)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    lat = latency if isinstance(latency, Latency) else Latency.parse(latency)
    limits = _risk_config(risk)
    feed_ns = parse_feed_latency(feed_latency)
    if time_in_force not in ("gtx", "gtc"):
        raise BacktestError(f"bad time in force {time_in_force!r}: expected gtx (post-only) or gtc")

    t_load = time.perf_counter()
    events, inst, fp = load_events(
        paths, symbol=symbol, tick_size=tick_size, lot_size=lot_size, instruments=instruments, progress=progress
    )
    load_s = time.perf_counter() - t_load
    l2 = bool(np.isin(events["kind"], (E.KIND_LEVEL, E.KIND_CLEAR_SIDE)).any())
    model, power_n = parse_queue(queue or ("risk-averse" if l2 else "fifo"))
    if l2 and model == L.QM_FIFO:
        raise BacktestError("--queue fifo needs order-by-order (L3) data; this is L2: use risk-averse, power:N or log")
    if not l2 and model != L.QM_FIFO:
        raise BacktestError("L3 data gives the exact FIFO queue position: --queue applies to L2 data only")

    unit = 1.0 / inst.price_scale
    tick_units = max(1, round(inst.tick_size * inst.price_scale))
    prices = _depth_prices(events, inst.instrument_id) if l2 else None
    bt = _new_state(spec, param_array, limits, lat, events, prices)
    bt.inst[0, TL.IN_LOCATE], bt.inst[0, TL.IN_TICK], bt.inst[0, TL.IN_LOT] = inst.instrument_id, tick_units, 1
    bt.money[0, TL.MN_UNIT], bt.money[0, TL.MN_LOT] = unit, inst.lot_size
    bt.money[0, TL.MN_MAKER_FEE], bt.money[0, TL.MN_TAKER_FEE] = maker_fee, taker_fee
    bt.cf[:] = [
        inst.instrument_id,
        0 if l2 else 1,
        model,
        int(partial_fills),
        int(time_in_force == "gtc"),
        lat.mode,
        lat.entry_ns,
        lat.response_ns,
        feed_ns,
        SAMPLE_NS,
        int(prices is not None),
        int(replace),
    ]
    bt.cff[:] = [power_n, lat.sigma]
    k.seed_nb(lat.seed)

    orders, levels = (1 << 12, 1 << 10) if prices is not None else _book_rows(events, inst.instrument_id)
    xs, ls = new_state(orders, levels, 4), new_state(orders, levels, 4)
    watch = CompileWatch(tell_compiling if progress else None)
    with watch.installed():
        _compile(bt, xs, ls, events)
    t_run, cpu_run = time.perf_counter(), time.thread_time()
    bar = tqdm(total=len(events), unit="ev", unit_scale=True, desc="backtest", file=sys.stderr,
               disable=not progress or len(events) < 4 * CHUNK_EVENTS, leave=False)  # fmt: skip
    with bar:
        for stop in range(CHUNK_EVENTS, len(events) + CHUNK_EVENTS, CHUNK_EVENTS):
            chunk = events[: min(stop, len(events))]
            while (rc := k.run_nb(bt, xs, ls, chunk, spec.quote)) != L.RC_DONE:
                bt, xs, ls = _grow(rc, bt, xs, ls)
            bar.update(len(chunk) - bar.n)
    elapsed, cpu_s = time.perf_counter() - t_run, time.thread_time() - cpu_run
    while k.final_sample_nb(bt, ls) != L.RC_DONE:
        bt, xs, ls = _grow(L.RC_EQUITY_FULL, bt, xs, ls)
    return _result(bt, events, inst, spec, fp, (elapsed, cpu_s), load_s, watch.seconds, l2)


def _risk_config(risk: RiskConfig | Mapping[str, float] | None) -> RiskConfig:
    if risk is None or isinstance(risk, RiskConfig):
        return risk or RiskConfig()
    try:
        return msgspec.convert(dict(risk), RiskConfig)
    except (msgspec.ValidationError, ValueError) as exc:
        raise BacktestError(f"bad risk limits: {exc}") from None


def _book_rows(events: np.ndarray, instrument: int) -> tuple[int, int]:
    """Order and level rows for the books of ``instrument``: twice the peak of live orders the data implies
    (adds less deletes and executions, so partial fills make it low) and a level for every price it adds at,
    plus our own orders. A sized book does not grow mid-run, where a doubling costs a return to Python, a
    copy of the tables and, the first time in a process, loading the growth kernels (12 ms of a 15 ms
    backtest of the ESM4 MBO file); sized for every add instead, a long day's tables (330,000 adds, under
    100 live) left the cache and ran 30% slower. Growth still covers a peak above the estimate."""
    mine = events[events["instrument"] == instrument]
    kind = mine["kind"]
    adds = kind == E.KIND_ADD
    live = np.cumsum(adds.astype(np.int64) - np.isin(kind, (E.KIND_DELETE, E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE)))
    peak = int(live.max()) if len(live) else 0
    orders = min(2 * peak + ORDER_SLOTS, MAX_PRESIZED_ORDERS)
    levels = min(len(np.unique(mine["price"][adds])) + ORDER_SLOTS, orders)
    return max(orders, 1 << 12), max(levels, 1 << 10)


def _depth_prices(events: np.ndarray, instrument: int) -> np.ndarray | None:
    """The sorted distinct level prices of ``instrument``: the rows of its books in ``engine.book.depth``;
    None when the data also has order-by-order events (then the books are ``engine.book.book_nb``'s)."""
    mine = events[events["instrument"] == instrument]
    if np.isin(mine["kind"], L3_KINDS).any():
        return None
    prices = np.unique(mine["price"][mine["kind"] == E.KIND_LEVEL])
    return prices if len(prices) else None


def _depth_ranks(events: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Each event's row in a depth over ``prices`` (EMPTY when its price is not one of them)."""
    rank = np.searchsorted(prices, events["price"])
    found = prices[np.minimum(rank, len(prices) - 1)] == events["price"]
    return np.where(found, rank, BL.EMPTY).astype(np.int64)


def _new_state(
    spec: Strategy, params: np.ndarray, risk: RiskConfig, lat: Latency, events: np.ndarray, prices: np.ndarray | None
) -> L.BacktestState:
    """The kernel's state: the trading core's tables for one instrument, the exchange's, the message queues;
    with level ``prices`` (L2 data), dense depth for both books over them."""
    mi = np.zeros(L.N_MI, np.int64)
    mi[L.MI_NEXT_WAKE] = k.NEVER
    mi[L.MI_LAST_SAMPLE] = -k.NEVER
    mi[[L.MI_BID_LO, L.MI_ASK_LO]] = k.NEVER
    mi[[L.MI_BID_HI, L.MI_ASK_HI]] = -k.NEVER
    money = np.zeros((1, TL.N_MN), np.float64)
    money[0, TL.MN_MID] = np.nan
    dprice = np.zeros(1, np.int64) if prices is None else prices.astype(np.int64)
    xd, xdm = new_depth(dprice)
    ld, ldm = new_depth(dprice)
    xo = np.zeros((ORDER_SLOTS, L.N_XO), np.int64)
    xo[:, L.XO_ROW] = BL.EMPTY
    return L.BacktestState(
        own=new_orders(1, ORDER_SLOTS),
        oc=new_counters(),
        inst=np.zeros((1, TL.N_IN), np.int64),
        money=money,
        risk_counts=np.zeros((1, len(TL.RISK_REASONS)), np.int64),
        **core_tables(1, ORDER_SLOTS, spec, params, risk),
        xo=xo,
        queue=np.zeros((ORDER_SLOTS, 2), np.float64),
        req=np.zeros((256, L.N_MS), np.int64),
        rsp=np.zeros((256, L.N_MS), np.int64),
        record=empty_responses(1),
        fills=np.zeros((1 << 12, L.N_FL), np.int64),
        fill_fee=np.zeros(1 << 12, np.float64),
        eq_ts=np.zeros(1 << 12, np.int64),
        eq=np.zeros((1 << 12, L.N_EQ), np.float64),
        cf=np.zeros(L.N_CF, np.int64),
        cff=np.zeros(L.N_CFF, np.float64),
        lat=np.ascontiguousarray(lat.table, np.int64),
        mi=mi,
        mf=np.zeros(L.N_MF, np.float64),
        xd=xd,
        xdm=xdm,
        ld=ld,
        ldm=ldm,
        vev=np.zeros(1, E.EVENT_DTYPE),
        dprice=dprice,
        erank=np.zeros(1, np.int64) if prices is None else _depth_ranks(events, dprice),
    )


def _compile(bt: L.BacktestState, xs, ls, events: np.ndarray) -> None:
    """Compile (or load from cache) the kernels every strategy shares: the strategy is a function pointer."""
    if not k.run_nb.overloads:
        k.run_nb.compile((typeof(bt), typeof(xs), typeof(ls), typeof(events), QUOTE_FN))
    if not k.final_sample_nb.overloads:
        k.final_sample_nb.compile((typeof(bt), typeof(ls)))
    k.run_nb.disable_compile()  # a strategy's dispatcher now converts to the function pointer instead of specialising


def _doubled(a: np.ndarray) -> np.ndarray:
    out = np.zeros((2 * len(a), *a.shape[1:]), a.dtype)
    out[: len(a)] = a
    return out


def _grow(rc: int, bt: L.BacktestState, xs, ls):
    """Double the table ``run_nb`` ran out of (off the hot path)."""
    if rc == L.RC_GROW_EXCH:
        xs = grow_state(xs)
    elif rc == L.RC_GROW_LOCAL:
        ls = grow_state(ls)
    elif rc == L.RC_FILLS_FULL:
        bt = bt._replace(fills=_doubled(bt.fills), fill_fee=_doubled(bt.fill_fee))
    elif rc == L.RC_EQUITY_FULL:
        bt = bt._replace(eq_ts=_doubled(bt.eq_ts), eq=_doubled(bt.eq))
    elif rc == L.RC_MESSAGES_FULL:
        bt = bt._replace(req=_doubled(bt.req), rsp=_doubled(bt.rsp))
    else:
        raise RuntimeError(f"backtest kernel returned unknown code {rc}")
    return bt, xs, ls


def _result(bt, events, inst, spec, fp, times, load_s, compile_s, l2) -> BacktestResult:
    elapsed, cpu_s = times
    unit, lot = bt.money[0, TL.MN_UNIT], bt.money[0, TL.MN_LOT]
    ours, oc = bt.inst[0], bt.oc
    nf = int(bt.mi[L.MI_NFILL])
    f = bt.fills[:nf]
    fills = pa.table(
        {
            "ts_local_ns": f[:, L.FL_LOCAL_NS],
            "ts_exch_ns": f[:, L.FL_EXCH_NS],
            "order_id": f[:, L.FL_ORDER],
            "side": np.where(f[:, L.FL_SIDE] == E.SIDE_BID, "buy", "sell"),
            "price": f[:, L.FL_PRICE] * unit,
            "qty": f[:, L.FL_QTY] * lot,
            "maker": f[:, L.FL_MAKER].astype(bool),
            "fee": bt.fill_fee[:nf],
        }
    )
    ne = int(bt.mi[L.MI_NEQ])
    eq = bt.eq[:ne]
    equity = pa.table(
        {
            "ts_ns": bt.eq_ts[:ne],
            "equity": eq[:, L.EQ_EQUITY],
            "position": eq[:, L.EQ_POSITION],
            "mid": eq[:, L.EQ_MID],
            "fees": eq[:, L.EQ_FEES],
            "cash": eq[:, L.EQ_CASH],
            "our_bid": eq[:, L.EQ_BID],
            "our_ask": eq[:, L.EQ_ASK],
        }
    )
    stats = {
        "strategy": spec.name,
        "params": dict(zip(spec.names, map(float, bt.params), strict=True)),
        "symbol": inst.symbol,
        "data": "L2" if l2 else "L3",
        "dense_depth": bool(bt.cf[L.CF_DENSE]),  # L2 books in engine.book.depth (else engine.book.book_nb)
        "events": len(events),
        "elapsed_s": elapsed,
        "events_per_s": len(events) / elapsed if elapsed > 0 else 0.0,
        "cpu_s": cpu_s,  # CPU time of the replay loop's thread: what a busy machine inflates less
        "load_s": load_s,
        "compile_s": compile_s,
        "orders": int(ours[TL.IN_ORDERS]),  # Enter Orders (a replace is counted in "replaces")
        "replaces": int(ours[TL.IN_REPLACES]),
        "cancels": int(ours[TL.IN_CANCELED]),
        "rejects": int(ours[TL.IN_REJECTS]),
        "risk_rejections": dict(zip(TL.RISK_REASONS, map(int, bt.risk_counts[0]), strict=True)),
        "fills": nf,
        "filled_orders": len(np.unique(f[:, L.FL_ORDER])),
        "taker_fills": int((f[:, L.FL_MAKER] == 0).sum()),
        "strategy_calls": int(oc[TL.OC_CALLS]),
        "order_slots_full": int(oc[TL.OC_FULL_TABLE]),
        "position": int(ours[TL.IN_POSITION]),  # lots (documented name)
        "position_lots": int(ours[TL.IN_POSITION]),
        "position_units": float(ours[TL.IN_POSITION] * lot),
        "pnl": float(eq[-1, L.EQ_EQUITY]) if ne else 0.0,  # net of fees, marked at the last mid
        "fees": float(bt.money[0, TL.MN_FEES]),
        "traded_volume": float(bt.mf[L.MF_VOLUME]),
        "traded_value": float(bt.mf[L.MF_VALUE]),
        "feed_messages": fp.stats.messages,
    }
    stats["pnl_gross"] = stats["pnl"] + stats["fees"]  # before fees (a rebate is a negative fee)
    sent = stats["orders"] + stats["replaces"]
    stats["fill_ratio"] = stats["filled_orders"] / sent if sent else 0.0
    stats.update(equity_stats(bt.eq_ts[:ne], eq[:, L.EQ_EQUITY], eq[:, L.EQ_POSITION]))
    stats["per_day"] = per_day(bt.eq_ts[:ne], eq[:, L.EQ_EQUITY], f[:, L.FL_LOCAL_NS], f[:, L.FL_QTY] * lot)
    return BacktestResult(stats, fills, equity)
