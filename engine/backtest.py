"""Historical replay backtests: events -> book -> strategy -> simulated exchange -> fills -> positions.

The Python face of ``engine.backtest_nb``: it reads the data (ITCH, DBN MBO, event Parquet,
hftbacktest npz), picks the instrument, parses the latency and queue models, runs the compiled
loop (growing its tables when it asks), and turns what came out into a :class:`BacktestResult`
with the statistics, the fills and the equity curve. ``hftmm backtest`` is a thin layer over
:func:`backtest`; notebooks call it directly::

    from engine.backtest import backtest
    result = backtest(["day.itch.gz"], "touch", {"order_qty": 100}, symbol="AAPL")
    result.stats["pnl"], result.fills.to_pandas(), result.plot("aapl.png")
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import typeof
from tqdm import tqdm

from engine import backtest_nb as k
from engine.book_nb import EMPTY, grow_state, new_state
from engine.config import ConfigError, load_toml
from engine.depth_nb import new_depth
from engine.events import (
    ALL_INSTRUMENTS,
    EVENT_DTYPE,
    KIND_ADD,
    KIND_CANCEL,
    KIND_CLEAR_SIDE,
    KIND_DELETE,
    KIND_EXECUTE,
    KIND_EXECUTE_PRICE,
    KIND_LEVEL,
    KIND_NONE,
    KIND_REPLACE,
    SIDE_BID,
)
from engine.instruments import Instrument
from engine.jit import CompileWatch, tell_compiling
from engine.quoting_nb import new_actions
from engine.replay import FeedPass, read_feeds
from engine.view_nb import new_flow
from strategies import get_strategy
from strategies.api import DEPTH, QUOTE_FN, Strategy, new_quotes, new_view

DEFAULT_LATENCY = "constant:10000,10000"  # 10 us each way: a co-located gateway
DEFAULT_ITCH_TICK = 0.01  # US equities at or above $1 (Reg NMS)
SAMPLE_NS = 100_000_000  # equity curve resolution
TRADING_SECONDS_PER_YEAR = 252 * 23_400  # Sharpe/Sortino annualisation: 252 sessions of 6.5 hours
CHUNK_EVENTS = 1 << 20  # events per compiled call (the progress bar moves between calls)
ORDER_SLOTS = 32
L3_KINDS = (KIND_ADD, KIND_EXECUTE, KIND_EXECUTE_PRICE, KIND_CANCEL, KIND_DELETE, KIND_REPLACE)


class BacktestError(ValueError):
    """A backtest that cannot run as asked (bad model spec, no such symbol, missing tick size)."""


# --- models -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Latency:
    """Order entry and response latency: ``constant``, ``table`` (interpolated) or ``lognormal``."""

    mode: int
    entry_ns: int
    response_ns: int
    table: np.ndarray = field(default_factory=lambda: np.zeros((1, 3), np.int64))
    sigma: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> Latency:
        """``constant:ENTRY_NS,RESP_NS`` | ``lognormal:ENTRY_MEDIAN_NS,RESP_MEDIAN_NS,SIGMA[,SEED]`` |
        ``table:FILE`` (a .npy/.npz/.csv of rows: local time ns, entry ns, response ns)."""
        name, _, arg = spec.partition(":")
        try:
            if name == "constant":
                entry, resp = (int(float(x)) for x in arg.split(","))
                if entry < 0 or resp < 0:
                    raise ValueError("negative latency")
                return cls(k.LAT_CONSTANT, entry, resp)
            if name == "lognormal":
                parts = arg.split(",")
                entry, resp, sigma = int(float(parts[0])), int(float(parts[1])), float(parts[2])
                seed = int(parts[3]) if len(parts) > 3 else 0
                if entry <= 0 or resp <= 0 or sigma < 0:
                    raise ValueError("medians must be positive and sigma non-negative")
                return cls(k.LAT_LOGNORMAL, entry, resp, sigma=sigma, seed=seed)
            if name == "table":
                table = _latency_table(arg)
                return cls(k.LAT_TABLE, int(table[0, 1]), int(table[0, 2]), table=table)
        except (ValueError, IndexError, OSError) as exc:
            raise BacktestError(f"bad --latency {spec!r}: {exc}") from None
        raise BacktestError(f"bad --latency {spec!r}: expected constant:E,R | lognormal:E,R,SIGMA[,SEED] | table:FILE")


def _latency_table(path: str) -> np.ndarray:
    if path.endswith(".csv"):
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        loaded = np.load(path)
        table = loaded[loaded.files[0]] if hasattr(loaded, "files") else loaded
    table = np.asarray(table, np.float64)
    if table.ndim != 2 or table.shape[1] < 3 or len(table) == 0:
        raise ValueError(f"{path}: expected rows of (time ns, entry ns, response ns)")
    table = table[np.argsort(table[:, 0], kind="stable"), :3]
    if (table[:, 1:] < 0).any():
        raise ValueError(f"{path}: negative latency")
    return np.ascontiguousarray(table.astype(np.int64))


QUEUE_MODELS = {"fifo": k.QM_FIFO, "risk-averse": k.QM_RISK_AVERSE, "power": k.QM_POWER, "log": k.QM_LOG}


def parse_queue(spec: str) -> tuple[int, float]:
    """``fifo`` | ``risk-averse`` | ``power:N`` | ``log`` -> (model code, N)."""
    name, _, arg = spec.partition(":")
    if name not in QUEUE_MODELS or (name == "power") != bool(arg):
        raise BacktestError(f"bad --queue {spec!r}: expected fifo | risk-averse | power:N | log")
    try:
        n = float(arg) if arg else 0.0
    except ValueError:
        raise BacktestError(f"bad --queue {spec!r}: N must be a number") from None
    if name == "power" and n <= 0:
        raise BacktestError(f"bad --queue {spec!r}: N must be positive")
    return QUEUE_MODELS[name], n


def parse_feed_latency(spec: str | None) -> int:
    """``data`` (the files' local timestamps; the default) or ``constant:NS`` -> the kernel's CF_FEED_NS."""
    if spec in (None, "data"):
        return -1
    name, _, arg = spec.partition(":")
    if name == "constant":
        try:
            ns = int(float(arg))
        except ValueError:
            ns = -1
        if ns >= 0:
            return ns
    raise BacktestError(f"bad --feed-latency {spec!r}: expected data | constant:NS")


# --- instruments --------------------------------------------------------------------------------
class InstrumentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Tick and lot of one symbol, for data that does not carry them (or to override what it says)."""

    symbol: str
    tick_size: float = 0.0  # price increment in currency (0: keep the data's)
    lot_size: float = 0.0  # size increment in the instrument's units (0: keep the data's)


class InstrumentFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``--instruments FILE.toml``: ``[[instruments]]`` tables of symbol, tick_size, lot_size."""

    instruments: list[InstrumentSpec] = []


def read_instruments(path: str) -> dict[str, InstrumentSpec]:
    """The instrument file as symbol -> spec; a ConfigError names the file and the problem."""
    specs = load_toml(path, InstrumentFile).instruments
    for spec in specs:
        if spec.tick_size < 0 or spec.lot_size < 0:
            raise ConfigError(f"{path}: {spec.symbol}: tick_size and lot_size must not be negative")
    return {spec.symbol: spec for spec in specs}


def _spec_for(specs: dict[str, InstrumentSpec], symbol: str | None, path: str) -> InstrumentSpec | None:
    """The spec of ``symbol``, else of the file's name (an npz is named after its symbol), else the only one."""
    stem = Path(path).name.removesuffix(".gz").removesuffix(".npz")
    for key in (symbol, stem):
        if key in specs:
            return specs[key]
    return next(iter(specs.values())) if len(specs) == 1 and symbol is None else None


# --- results ------------------------------------------------------------------------------------
@dataclass
class BacktestResult:
    """What a backtest produced: ``stats`` (the report), ``fills`` and ``equity`` (pyarrow tables)."""

    stats: dict
    fills: pa.Table
    equity: pa.Table

    def to_parquet(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``fills.parquet`` and ``equity.parquet`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.fills, out / "fills.parquet")
        pq.write_table(self.equity, out / "equity.parquet")
        return out / "fills.parquet", out / "equity.parquet"

    def plot(self, path: str | Path | None = None):
        """Equity and position over time (a matplotlib Figure; saved as PNG when ``path`` is given)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ts = self.equity["ts_ns"].to_numpy()
        t = (ts - ts[0]) / 1e9 if len(ts) else ts
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(2, 1))
        top.plot(t, self.equity["equity"].to_numpy(), lw=1, color="tab:blue")
        top.set_ylabel("equity (net of fees)")
        top.set_title(
            f"{self.stats['strategy']} on {self.stats['symbol']}: pnl {self.stats['pnl']:.2f}, "
            f"{self.stats['fills']} fills, max drawdown {self.stats['max_drawdown']:.2f}"
        )
        top.grid(alpha=0.3)
        bottom.step(t, self.equity["position"].to_numpy(), where="post", lw=1, color="tab:orange")
        bottom.set_ylabel("position")
        bottom.set_xlabel("seconds from start")
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig


# --- the run ------------------------------------------------------------------------------------
def load_events(
    paths: list[str],
    *,
    symbol: str | None = None,
    tick_size: float | None = None,
    lot_size: float | None = None,
    instruments: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, Instrument, FeedPass]:
    """The events of one instrument from ``paths`` (read in order), its description, and the pass stats.

    Tick and lot: the command line's, else the instrument file's, else what the data says.
    """
    specs = read_instruments(instruments) if instruments else {}
    guess = _spec_for(specs, symbol, paths[0]) if specs and paths else None
    if guess is not None:  # formats without tick and lot (hftbacktest npz) need them to read the file
        tick_size = tick_size or guess.tick_size or None
        lot_size = lot_size or guess.lot_size or None
    fp = FeedPass(list(paths))
    symbols = {symbol} if symbol else None
    batches = [
        b.copy()
        for b in read_feeds(
            paths, symbols=symbols, progress=progress, feed_pass=fp, tick_size=tick_size, lot_size=lot_size
        )
    ]
    events = np.concatenate(batches) if batches else np.zeros(0, EVENT_DTYPE)
    if fp.missing_symbols:
        raise BacktestError(f"symbol {symbol} is not in {', '.join(paths)}")
    market = (events["kind"] != KIND_NONE) & (events["instrument"] != ALL_INSTRUMENTS)  # not system events
    ids, counts = np.unique(events["instrument"][market], return_counts=True)
    if symbol is None and len(ids) > 1:
        top = ", ".join(fp.instrument(int(i)).symbol for i in ids[np.argsort(-counts)][:8])
        raise BacktestError(f"the data holds {len(ids)} instruments: choose one with --symbol (busiest: {top})")
    if len(ids) == 0:
        raise BacktestError(f"no market events in {', '.join(paths)}")
    inst = fp.instrument(int(ids[0]))
    spec = specs.get(inst.symbol)
    tick = tick_size or (spec and spec.tick_size) or inst.tick_size or DEFAULT_ITCH_TICK
    lot = lot_size or (spec and spec.lot_size) or inst.lot_size or 1.0
    inst = Instrument(inst.instrument_id, inst.symbol, inst.price_scale, tick, lot)
    return events, inst, fp


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
    progress: bool = True,
) -> BacktestResult:
    """Run ``strategy`` over ``data`` and return the result (see the module docstring).

    Fees are fractions of traded value (negative: a rebate). ``queue`` defaults to ``fifo`` on L3
    data and ``risk-averse`` on L2 data; ``time_in_force`` ``gtx`` (post-only, the default) rejects
    an order that would cross on arrival, ``gtc`` lets it take liquidity at the touch. ``instruments``
    is a TOML file of ``[[instruments]]`` symbol, tick_size, lot_size (the arguments win over it).
    """
    paths = [data] if isinstance(data, str) else list(data)
    try:
        spec = get_strategy(strategy) if isinstance(strategy, str) else strategy
        param_array = spec.param_array(params)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    lat = latency if isinstance(latency, Latency) else Latency.parse(latency)
    feed_ns = parse_feed_latency(feed_latency)
    if time_in_force not in ("gtx", "gtc"):
        raise BacktestError(f"bad time in force {time_in_force!r}: expected gtx (post-only) or gtc")

    t_load = time.perf_counter()
    events, inst, fp = load_events(
        paths, symbol=symbol, tick_size=tick_size, lot_size=lot_size, instruments=instruments, progress=progress
    )
    load_s = time.perf_counter() - t_load
    l2 = bool(np.isin(events["kind"], (KIND_LEVEL, KIND_CLEAR_SIDE)).any())
    model, power_n = parse_queue(queue or ("risk-averse" if l2 else "fifo"))
    if l2 and model == k.QM_FIFO:
        raise BacktestError("--queue fifo needs order-by-order (L3) data; this is L2: use risk-averse, power:N or log")
    if not l2 and model != k.QM_FIFO:
        raise BacktestError("L3 data gives the exact FIFO queue position: --queue applies to L2 data only")

    unit = 1.0 / inst.price_scale
    tick_units = max(1, round(inst.tick_size * inst.price_scale))
    prices = _depth_prices(events, inst.instrument_id) if l2 else None
    bt = _new_state(param_array, spec.state_size, lat, events, prices)
    bt.cf[:] = [
        inst.instrument_id,
        tick_units,
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
    ]
    bt.cff[:] = [unit, inst.lot_size, maker_fee, taker_fee, power_n, lat.sigma]
    k.seed_nb(lat.seed)

    xs, ls = new_state(1 << 12, 1 << 10, 4), new_state(1 << 12, 1 << 10, 4)
    watch = CompileWatch(tell_compiling if progress else None)
    with watch.installed():
        _compile(bt, xs, ls, events)
    t_run, cpu_run = time.perf_counter(), time.thread_time()
    bar = tqdm(total=len(events), unit="ev", unit_scale=True, desc="backtest", file=sys.stderr,
               disable=not progress or len(events) < 4 * CHUNK_EVENTS, leave=False)  # fmt: skip
    with bar:
        for stop in range(CHUNK_EVENTS, len(events) + CHUNK_EVENTS, CHUNK_EVENTS):
            chunk = events[: min(stop, len(events))]
            while (rc := k.run_nb(bt, xs, ls, chunk, spec.quote)) != k.RC_DONE:
                bt, xs, ls = _grow(rc, bt, xs, ls)
            bar.update(len(chunk) - bar.n)
    elapsed, cpu_s = time.perf_counter() - t_run, time.thread_time() - cpu_run
    while k.final_sample_nb(bt, ls) != k.RC_DONE:
        bt, xs, ls = _grow(k.RC_EQUITY_FULL, bt, xs, ls)
    return _result(bt, events, inst, spec, fp, (elapsed, cpu_s), load_s, watch.seconds, l2)


def _depth_prices(events: np.ndarray, instrument: int) -> np.ndarray | None:
    """The sorted distinct level prices of ``instrument``: the rows of its books in ``engine.depth_nb``;
    None when the data also has order-by-order events (then the books are ``engine.book_nb``'s)."""
    mine = events[events["instrument"] == instrument]
    if np.isin(mine["kind"], L3_KINDS).any():
        return None
    prices = np.unique(mine["price"][mine["kind"] == KIND_LEVEL])
    return prices if len(prices) else None


def _depth_ranks(events: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Each event's row in a depth over ``prices`` (EMPTY when its price is not one of them)."""
    rank = np.searchsorted(prices, events["price"])
    found = prices[np.minimum(rank, len(prices) - 1)] == events["price"]
    return np.where(found, rank, EMPTY).astype(np.int64)


def _new_state(
    params: np.ndarray, state_size: int, lat: Latency, events: np.ndarray, prices: np.ndarray | None
) -> k.BacktestState:
    """The kernel's state; with level ``prices`` (L2 data), dense depth for both books over them."""
    own = np.zeros((ORDER_SLOTS, k.N_OW), np.int64)
    own[:, k.OW_ROW] = -1
    mi = np.zeros(k.N_MI, np.int64)
    mi[k.MI_NEXT_WAKE] = k.NEVER
    mi[k.MI_LAST_SAMPLE] = -k.NEVER
    mi[[k.MI_BID_LO, k.MI_ASK_LO]] = k.NEVER
    mi[[k.MI_BID_HI, k.MI_ASK_HI]] = -k.NEVER
    mf = np.zeros(k.N_MF, np.float64)
    dprice = np.zeros(1, np.int64) if prices is None else prices.astype(np.int64)
    xd, xdm = new_depth(dprice)
    ld, ldm = new_depth(dprice)
    return k.BacktestState(
        own=own,
        queue=np.zeros((ORDER_SLOTS, 2), np.float64),
        req=np.zeros((256, k.N_MS), np.int64),
        rsp=np.zeros((256, k.N_MS), np.int64),
        fills=np.zeros((1 << 12, k.N_FL), np.int64),
        fill_fee=np.zeros(1 << 12, np.float64),
        eq_ts=np.zeros(1 << 12, np.int64),
        eq=np.zeros((1 << 12, k.N_EQ), np.float64),
        cf=np.zeros(k.N_CF, np.int64),
        cff=np.zeros(k.N_CFF, np.float64),
        lat=np.ascontiguousarray(lat.table, np.int64),
        mi=mi,
        mf=mf,
        sview=new_view(),
        params=params,
        sstate=np.zeros(state_size, np.float64),
        quotes=new_quotes(),
        depth=np.zeros((DEPTH, 3), np.int64),
        actions=new_actions(ORDER_SLOTS),
        flow=new_flow(1)[0],
        xd=xd,
        xdm=xdm,
        ld=ld,
        ldm=ldm,
        vev=np.zeros(1, EVENT_DTYPE),
        dprice=dprice,
        erank=np.zeros(1, np.int64) if prices is None else _depth_ranks(events, dprice),
    )


def _compile(bt: k.BacktestState, xs, ls, events: np.ndarray) -> None:
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


def _grow(rc: int, bt: k.BacktestState, xs, ls):
    """Double the table ``run_nb`` ran out of (off the hot path)."""
    if rc == k.RC_GROW_EXCH:
        xs = grow_state(xs)
    elif rc == k.RC_GROW_LOCAL:
        ls = grow_state(ls)
    elif rc == k.RC_FILLS_FULL:
        bt = bt._replace(fills=_doubled(bt.fills), fill_fee=_doubled(bt.fill_fee))
    elif rc == k.RC_EQUITY_FULL:
        bt = bt._replace(eq_ts=_doubled(bt.eq_ts), eq=_doubled(bt.eq))
    elif rc == k.RC_MESSAGES_FULL:
        bt = bt._replace(req=_doubled(bt.req), rsp=_doubled(bt.rsp))
    else:
        raise RuntimeError(f"backtest kernel returned unknown code {rc}")
    return bt, xs, ls


def _result(bt, events, inst, spec, fp, times, load_s, compile_s, l2) -> BacktestResult:
    elapsed, cpu_s = times
    unit, lot = bt.cff[k.CFF_UNIT], bt.cff[k.CFF_LOT]
    nf = int(bt.mi[k.MI_NFILL])
    f = bt.fills[:nf]
    fills = pa.table(
        {
            "ts_local_ns": f[:, k.FL_LOCAL_NS],
            "ts_exch_ns": f[:, k.FL_EXCH_NS],
            "order_id": f[:, k.FL_ORDER],
            "side": np.where(f[:, k.FL_SIDE] == SIDE_BID, "buy", "sell"),
            "price": f[:, k.FL_PRICE] * unit,
            "qty": f[:, k.FL_QTY] * lot,
            "maker": f[:, k.FL_MAKER].astype(bool),
            "fee": bt.fill_fee[:nf],
        }
    )
    ne = int(bt.mi[k.MI_NEQ])
    eq = bt.eq[:ne]
    equity = pa.table(
        {
            "ts_ns": bt.eq_ts[:ne],
            "equity": eq[:, k.EQ_EQUITY],
            "position": eq[:, k.EQ_POSITION],
            "mid": eq[:, k.EQ_MID],
            "fees": eq[:, k.EQ_FEES],
            "cash": eq[:, k.EQ_CASH],
        }
    )
    stats = {
        "strategy": spec.name,
        "params": dict(zip(spec.names, map(float, bt.params), strict=True)),
        "symbol": inst.symbol,
        "data": "L2" if l2 else "L3",
        "dense_depth": bool(bt.cf[k.CF_DENSE]),  # L2 books in engine.depth_nb (else engine.book_nb)
        "events": len(events),
        "elapsed_s": elapsed,
        "events_per_s": len(events) / elapsed if elapsed > 0 else 0.0,
        "cpu_s": cpu_s,  # CPU time of the replay loop's thread: what a busy machine inflates less
        "load_s": load_s,
        "compile_s": compile_s,
        "orders": int(bt.mi[k.MI_ORDERS]),
        "cancels": int(bt.mi[k.MI_CANCELS]),
        "rejects": int(bt.mi[k.MI_REJECTS]),
        "fills": nf,
        "filled_orders": len(np.unique(f[:, k.FL_ORDER])),
        "taker_fills": int((f[:, k.FL_MAKER] == 0).sum()),
        "strategy_calls": int(bt.mi[k.MI_CALLS]),
        "order_slots_full": int(bt.mi[k.MI_FULL_TABLE]),
        "position": int(bt.mi[k.MI_POSITION]),
        "position_units": float(bt.mi[k.MI_POSITION] * lot),
        "pnl": float(eq[-1, k.EQ_EQUITY]) if ne else 0.0,
        "fees": float(bt.mf[k.MF_FEES]),
        "traded_volume": float(bt.mf[k.MF_VOLUME]),
        "traded_value": float(bt.mf[k.MF_VALUE]),
        "feed_messages": fp.stats.messages,
    }
    stats["fill_ratio"] = stats["filled_orders"] / stats["orders"] if stats["orders"] else 0.0
    stats.update(equity_stats(bt.eq_ts[:ne], eq[:, k.EQ_EQUITY], eq[:, k.EQ_POSITION]))
    stats["per_day"] = per_day(bt.eq_ts[:ne], eq[:, k.EQ_EQUITY], f[:, k.FL_LOCAL_NS], f[:, k.FL_QTY] * lot)
    return BacktestResult(stats, fills, equity)


DAY_NS = 86_400 * 1_000_000_000
EPOCH_TS_MIN = 10 * DAY_NS  # smaller timestamps count from midnight (ITCH files), not from 1970


def per_day(ts: np.ndarray, equity: np.ndarray, fill_ts: np.ndarray, fill_qty: np.ndarray) -> list[dict]:
    """PnL, max drawdown, fills and volume of each UTC day of the equity curve."""
    days = []
    if len(ts) == 0:
        return days
    day_of = ts // DAY_NS
    start_equity = 0.0
    for day in np.unique(day_of):
        sel = day_of == day
        curve = equity[sel]
        in_day = (fill_ts // DAY_NS) == day
        label = np.datetime64(int(day), "D").astype(str) if ts[0] >= EPOCH_TS_MIN else f"session {int(day)}"
        days.append(
            {
                "day": label,
                "pnl": float(curve[-1] - start_equity),
                "max_drawdown": float((np.maximum.accumulate(curve) - curve).max()),
                "fills": int(in_day.sum()),
                "volume": float(fill_qty[in_day].sum()),
            }
        )
        start_equity = float(curve[-1])
    return days


def equity_stats(ts: np.ndarray, equity: np.ndarray, position: np.ndarray) -> dict:
    """Sharpe, Sortino (per-second equity changes, annualised), max drawdown, time-weighted position."""
    out = {"sharpe": 0.0, "sortino": 0.0, "max_drawdown": 0.0, "mean_abs_position": 0.0, "position_quantiles": {}}
    if len(ts) == 0:
        return out
    peak = np.maximum.accumulate(equity)
    out["max_drawdown"] = float((peak - equity).max())
    seconds = (ts - ts[0]) // 1_000_000_000
    last = np.flatnonzero(np.r_[seconds[1:] != seconds[:-1], True])  # last sample of each second
    grid = np.arange(seconds[0], seconds[-1] + 1)
    per_second = equity[last][np.searchsorted(seconds[last], grid, side="right") - 1]
    returns = np.diff(per_second)
    scale = math.sqrt(TRADING_SECONDS_PER_YEAR)
    if len(returns) > 1 and returns.std() > 0:
        out["sharpe"] = float(returns.mean() / returns.std() * scale)
        downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
        out["sortino"] = float(returns.mean() / downside * scale) if downside > 0 else 0.0
    held = np.diff(ts, append=ts[-1]).astype(np.float64)  # each sample's position holds until the next
    if held.sum() > 0:
        out["mean_abs_position"] = float(np.average(np.abs(position), weights=held))
        order = np.argsort(position, kind="stable")
        cum = np.cumsum(held[order]) / held.sum()
        out["position_quantiles"] = {
            f"p{q}": float(position[order][min(len(order) - 1, np.searchsorted(cum, q / 100))])
            for q in (1, 5, 25, 50, 75, 95, 99)
        }
    return out
