"""The backtester on small hand-made event files whose right answer is known event by event."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numba import njit

from engine.backtest.backtest import backtest
from engine.backtest.models import BacktestError, Latency, parse_queue
from engine.backtest.result import equity_stats
from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.parquet import write_events
from strategies.api import QUOTE_SIG, V_FILLED_BUY, V_FILLED_SELL, V_FILLS, Strategy
from strategies.touch import TOUCH as TOUCH_STRATEGY
from strategies.touch import touch_quote

INSTR = 7
MS = 1_000_000
# prices in 1e-4 dollars (ITCH); tick 0.01 = 100 units
BID, ASK = 100_000, 100_100  # 10.00 / 10.01
TOUCH = {"interval_ns": 1 * MS, "order_qty": 100, "max_position": 1000}


def ev(t_ms: float, kind: int, order_id: int = 0, side: int = 0, price: int = 0, qty: int = 0) -> tuple:
    t = int(t_ms * MS)
    return (t, t, 0, order_id, 0, price, qty, INSTR, kind, side, 0, 0)


def write(tmp_path: Path, rows: list[tuple], name: str = "day.parquet") -> str:
    events = np.array(rows, dtype=E.EVENT_DTYPE)
    events["seq"] = np.arange(1, len(events) + 1)
    path = tmp_path / name
    write_events(path, events, {INSTR: Instrument(INSTR, "TEST", 10_000, 0.01, 1.0)})
    return str(path)


def run(path: str, params: dict | None = None, **kw):
    kw.setdefault("latency", "constant:1000,1000")  # 1 us each way
    return backtest(path, "touch", {**TOUCH, **(params or {})}, progress=False, **kw)


def book_rows() -> list[tuple]:
    """Two resting orders: the touch is 10.00 x 10.01."""
    return [ev(0, E.KIND_ADD, 1, E.SIDE_BID, BID, 300), ev(0, E.KIND_ADD, 2, E.SIDE_ASK, ASK, 300)]


def test_l3_fills_only_when_an_order_behind_ours_executes(tmp_path: Path) -> None:
    # we join both sides at t=1 ms (arriving 1 us later); order 3 joins the bid behind us
    rows = [
        *book_rows(),
        ev(1.5, E.KIND_ADD, 3, E.SIDE_BID, BID, 200),
        ev(1.6, E.KIND_EXECUTE, 1, qty=100),  # ahead of us: our queue moves up, no fill
        ev(1.7, E.KIND_CANCEL, 1, qty=100),
        ev(1.8, E.KIND_EXECUTE, 3, qty=50),  # behind us: we would have traded first
        ev(50, E.KIND_ADD, 99, E.SIDE_BID, BID - 100, 1),
    ]
    r = run(write(tmp_path, rows))
    fills = r.fills.to_pylist()
    assert [(f["side"], f["price"], f["qty"], f["maker"]) for f in fills] == [("buy", 10.0, 100.0, True)]
    assert fills[0]["ts_exch_ns"] == int(1.8 * MS)
    assert fills[0]["ts_local_ns"] == int(1.8 * MS) + 1000  # the response latency
    assert r.stats["position"] == 100


def test_l3_no_fill_from_executions_of_orders_ahead(tmp_path: Path) -> None:
    rows = [*book_rows(), ev(1.6, E.KIND_EXECUTE, 1, qty=200), ev(1.7, E.KIND_EXECUTE, 1, qty=100), ev(9, E.KIND_TRADE)]
    r = run(write(tmp_path, rows))
    assert r.stats["fills"] == 0
    assert r.stats["orders"] == 2


def test_l3_trade_print_fills_only_beyond_the_queue_ahead(tmp_path: Path) -> None:
    rows = [
        *book_rows(),  # 300 lots ahead of our ask
        ev(2, E.KIND_TRADE, side=E.SIDE_BID, price=ASK, qty=300),  # buyers took exactly what was ahead: no fill
        ev(4, E.KIND_TRADE, side=E.SIDE_BID, price=ASK, qty=310),  # 10 beyond the queue ahead: ours
        ev(9, E.KIND_TRADE),
    ]
    r = run(write(tmp_path, rows))
    assert [(f["side"], f["price"], f["ts_exch_ns"]) for f in r.fills.to_pylist()] == [("sell", 10.01, 4 * MS)]
    with_partial = run(write(tmp_path, rows, "p.parquet"), partial_fills=True)
    assert [f["qty"] for f in with_partial.fills.to_pylist()] == [10.0]


def test_l3_trade_through_our_price_fills(tmp_path: Path) -> None:
    rows = [*book_rows(), ev(2, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1), ev(9, E.KIND_TRADE)]
    r = run(write(tmp_path, rows))
    assert [(f["side"], f["price"]) for f in r.fills.to_pylist()] == [("buy", 10.0)]


def test_orders_reach_the_exchange_only_after_the_entry_latency(tmp_path: Path) -> None:
    rows = [*book_rows(), ev(1.5, E.KIND_ADD, 3, E.SIDE_BID, BID, 200), ev(1.8, E.KIND_EXECUTE, 3, qty=50), ev(9, 0)]
    slow = run(write(tmp_path, rows), latency="constant:1000000,1000")  # arrives at 2 ms: after the execution
    assert slow.stats["fills"] == 0
    fast = run(write(tmp_path, rows, "f.parquet"))
    assert fast.stats["fills"] == 1


def test_post_only_order_that_would_cross_is_rejected_and_gtc_takes(tmp_path: Path) -> None:
    # the ask drops onto the bid just as our bid travels: by arrival it would cross
    rows = [
        *book_rows(),
        ev(1.0005, E.KIND_DELETE, 2),
        ev(1.0005, E.KIND_ADD, 4, E.SIDE_ASK, BID, 50),
        ev(1.0006, E.KIND_DELETE, 4),
        ev(1.0006, E.KIND_ADD, 5, E.SIDE_ASK, ASK, 50),
        ev(1.5, E.KIND_TRADE),
    ]
    gtx = run(write(tmp_path, rows), latency="constant:550,1000")  # arrives at 1.00055 ms, into the crossed ask
    assert gtx.stats["rejects"] == 1 and gtx.stats["fills"] == 0
    gtc = run(write(tmp_path, rows, "g.parquet"), latency="constant:550,1000", time_in_force="gtc", taker_fee=0.001)
    taker = [f for f in gtc.fills.to_pylist() if not f["maker"]]
    assert [(f["side"], f["price"], f["qty"]) for f in taker] == [("buy", 10.0, 100.0)]
    assert taker[0]["fee"] == pytest.approx(10.0 * 100 * 0.001)


def test_pnl_cash_and_fees_of_a_round_trip(tmp_path: Path) -> None:
    rows = [
        *book_rows(),
        ev(1.5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1),  # sellers through our bid: we buy 100 @ 10.00
        ev(1.6, E.KIND_TRADE, side=E.SIDE_BID, price=ASK + 100, qty=1),  # buyers through our ask: we sell 100 @ 10.01
        ev(30, E.KIND_TRADE),
    ]
    r = run(write(tmp_path, rows), maker_fee=-0.0002)  # a rebate
    assert r.stats["fills"] == 2 and r.stats["position"] == 0
    rebate = -0.0002 * (10.0 + 10.01) * 100
    assert r.stats["fees"] == pytest.approx(rebate)
    assert r.stats["pnl"] == pytest.approx(1.0 - rebate)
    assert r.equity["equity"].to_pylist()[-1] == pytest.approx(r.stats["pnl"])


def test_touch_respects_max_position(tmp_path: Path) -> None:
    rows = [*book_rows()]
    for i in range(20):  # sellers keep trading through our bid
        rows.append(ev(1.5 + 2 * i, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1))
    rows.append(ev(100, E.KIND_TRADE))
    r = run(write(tmp_path, rows), params={"max_position": 300})
    assert r.stats["position"] == 300
    assert max(r.equity["position"].to_pylist()) == 300


def requote_rows() -> list[tuple]:
    """A book 10.00 x 10.03; a better bid (10.01) arrives, our bid follows it behind order 3, then order 4
    joins behind us and executes: we fill only if our order took its place in the queue at 10.01."""
    return [
        ev(0, E.KIND_ADD, 1, E.SIDE_BID, BID, 300),
        ev(0, E.KIND_ADD, 2, E.SIDE_ASK, BID + 300, 300),
        ev(2.5, E.KIND_ADD, 3, E.SIDE_BID, BID + 100, 200),
        ev(4.5, E.KIND_ADD, 4, E.SIDE_BID, BID + 100, 50),
        ev(4.6, E.KIND_EXECUTE, 4, qty=50),
        ev(9, E.KIND_TRADE),
    ]


def test_a_requote_goes_out_as_one_replace_and_queues_like_cancel_and_new(tmp_path: Path) -> None:
    path = write(tmp_path, requote_rows())
    replaced = run(path)  # the live node's default: replaces
    separate = run(path, replace=False)
    assert (replaced.stats["replaces"], replaced.stats["cancels"]) == (1, 0)
    assert (separate.stats["replaces"], separate.stats["cancels"]) == (0, 1)
    assert replaced.stats["orders"] + 1 == separate.stats["orders"]  # the replace is the cancel's new order
    fills = replaced.fills.to_pylist()
    assert [(f["side"], f["price"], f["qty"], f["ts_exch_ns"]) for f in fills] == [("buy", 10.01, 100.0, int(4.6 * MS))]
    assert fills == separate.fills.to_pylist()


def test_pre_trade_risk_refuses_orders_as_it_would_live(tmp_path: Path) -> None:
    path = write(tmp_path, requote_rows())
    small = run(path, risk={"max_order_qty": 50})  # touch quotes 100
    assert small.stats["orders"] == 0 and small.stats["risk_rejections"]["order_qty"] > 0
    one_side = run(path, risk={"max_position": 100, "max_order_qty": 0})  # a bid and an ask each fit ...
    refused = {reason: n for reason, n in one_side.stats["risk_rejections"].items() if n}
    assert one_side.stats["orders"] == 2 and one_side.stats["position"] == 100
    assert list(refused) == ["position"]  # ... but no bid once the bid filled: long 100 is the limit
    throttled = run(path, risk={"max_orders_per_s": 1})  # a burst of one order
    assert throttled.stats["orders"] == 1 and throttled.stats["risk_rejections"]["order_rate"] > 0
    with pytest.raises(BacktestError, match="risk"):
        run(path, risk={"max_position": -1})


def test_the_loss_limit_trips_the_kill_switch_and_cancels_everything(tmp_path: Path) -> None:
    rows = [
        *book_rows(),
        ev(1.5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1),  # sellers through our bid: long 100 @ 10.00
        ev(2.5, E.KIND_DELETE, 1),
        ev(2.5, E.KIND_ADD, 3, E.SIDE_BID, BID - 1000, 300),  # the bid falls to 9.90: mid 9.955, 4.50 under water
        ev(9, E.KIND_TRADE),
    ]
    path = write(tmp_path, rows)
    free = run(path, risk={"max_loss": 10.0})
    killed = run(path, risk={"max_loss": 1.0})
    assert free.stats["risk_rejections"]["max_loss"] == 0 and free.stats["replaces"] == 1
    # at 2 ms a new bid at 10.00 replaced the filled one; the 3 ms wake's replace down to 9.90 found the loss
    assert killed.stats["risk_rejections"]["max_loss"] == 1 and killed.stats["replaces"] == 0
    assert killed.stats["orders"] == 3 and killed.stats["cancels"] == 2  # the bid, then the ask: nothing left
    assert killed.stats["strategy_calls"] == 3 < free.stats["strategy_calls"]  # and the strategy is not called
    last = killed.equity.to_pylist()[-1]
    assert math.isnan(last["our_bid"]) and math.isnan(last["our_ask"])


@njit(QUOTE_SIG, cache=True)
def _quote_until_the_first_buy_is_seen(now_ns, view, params, state, quotes):  # pragma: no cover - jitted
    """touch's quotes, until the view's flow has reported exactly one fill of ours, a buy of 100 units."""
    if view[V_FILLS] == 1.0 and view[V_FILLED_BUY] == 100.0 and view[V_FILLED_SELL] == 0.0:
        state[0] = 1.0
    if state[0] != 0.0:
        return 0
    return touch_quote(now_ns, view, params, state, quotes)


def test_our_fills_reach_the_strategy_through_the_view_once(tmp_path: Path) -> None:
    rows = [*book_rows(), ev(1.5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1), ev(9, E.KIND_TRADE)]
    watcher = Strategy("fill-watcher", _quote_until_the_first_buy_is_seen, TOUCH_STRATEGY.params, "test", state_size=1)
    r = backtest(write(tmp_path, rows), watcher, TOUCH, latency="constant:1000,1000", progress=False)
    assert r.stats["fills"] == 1 and r.stats["position"] == 100
    assert (r.stats["orders"], r.stats["cancels"]) == (2, 1)  # it stopped quoting: its ask was canceled, no new bid


def test_l2_risk_averse_queue(tmp_path: Path) -> None:
    rows = [
        ev(0, E.KIND_LEVEL, 0, E.SIDE_BID, BID, 300),
        ev(0, E.KIND_LEVEL, 0, E.SIDE_ASK, ASK, 300),
        ev(2, E.KIND_TRADE, side=E.SIDE_ASK, price=BID, qty=200),  # 100 left ahead of us
        ev(3, E.KIND_LEVEL, 0, E.SIDE_BID, BID, 150),  # the level shrinks: risk-averse keeps 100 ahead
        ev(4, E.KIND_TRADE, side=E.SIDE_ASK, price=BID, qty=100),  # exactly what was ahead: not yet (needs < 0)
        ev(5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID, qty=1),
        ev(9, E.KIND_TRADE),
    ]
    r = run(write(tmp_path, rows), queue="risk-averse")
    assert [(f["side"], f["ts_exch_ns"]) for f in r.fills.to_pylist()] == [("buy", 5 * MS)]
    with pytest.raises(BacktestError, match="L3"):
        run(write(tmp_path, rows, "x.parquet"), queue="fifo")


def test_l2_probabilistic_queue_moves_ahead_on_cancels(tmp_path: Path) -> None:
    rows = [
        ev(0, E.KIND_LEVEL, 0, E.SIDE_BID, BID, 300),
        ev(0, E.KIND_LEVEL, 0, E.SIDE_ASK, ASK, 300),
        ev(2, E.KIND_LEVEL, 0, E.SIDE_BID, BID, 1300),  # 1000 join behind us
        ev(3, E.KIND_LEVEL, 0, E.SIDE_BID, BID, 400),  # 900 cancel: mostly from behind, some from ahead
        ev(4, E.KIND_TRADE, side=E.SIDE_ASK, price=BID, qty=290),
        ev(9, E.KIND_TRADE),
    ]
    # power:1: of 900 canceled with 300 ahead and 1000 behind, 300/1300 comes from ahead -> 92.3 left ahead
    assert run(write(tmp_path, rows), queue="power:1").stats["fills"] == 1
    assert run(write(tmp_path, rows, "r.parquet"), queue="risk-averse").stats["fills"] == 0


def test_lognormal_and_table_latency_parse_and_run(tmp_path: Path) -> None:
    rows = [*book_rows(), ev(1.5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1), ev(9, E.KIND_TRADE)]
    path = write(tmp_path, rows)
    table = tmp_path / "lat.csv"
    table.write_text("0,1000,1000\n10000000,3000,3000\n")
    for spec in ("lognormal:1000,1000,0.5,7", f"table:{table}"):
        assert run(path, latency=spec).stats["fills"] == 1
    for bad in ("constant:1", "lognormal:1,2", "table:/nonexistent.csv", "fast", "constant:-1,5"):
        with pytest.raises(BacktestError, match="--latency"):
            Latency.parse(bad)
    for bad in ("power", "power:0", "lifo", "log:2"):
        with pytest.raises(BacktestError, match="--queue"):
            parse_queue(bad)


def test_unknown_parameter_and_symbol_are_clear_errors(tmp_path: Path) -> None:
    path = write(tmp_path, book_rows())
    with pytest.raises(BacktestError, match="no parameter spread"):
        backtest(path, "touch", {"spread": 1}, progress=False)
    with pytest.raises(BacktestError, match="symbol NOPE"):
        backtest(path, "touch", symbol="NOPE", progress=False)
    with pytest.raises(BacktestError, match="unknown strategy"):
        backtest(path, "martingale", progress=False)


def test_equity_stats_on_a_known_curve() -> None:
    ts = np.arange(0, 11) * 1_000_000_000
    equity = np.array([0, 1, 2, 1, 0, -1, 0, 1, 2, 3, 4], np.float64)
    position = np.array([0, 1, 1, 1, -1, -1, 0, 0, 0, 0, 0], np.float64)
    s = equity_stats(ts, equity, position)
    assert s["max_drawdown"] == 3.0
    returns = np.diff(equity)
    assert s["ratio_period"] == "second"  # 10 s of data: not annualised
    assert s["sharpe"] == pytest.approx(returns.mean() / returns.std())
    assert s["mean_abs_position"] == pytest.approx(5 / 10)  # the last sample holds for no time


def test_sharpe_and_sortino_are_annualised_from_one_whole_session_of_data_on() -> None:
    rng = np.random.default_rng(7)
    for seconds, period, scale in ((23_399, "second", 1.0), (23_400, "year", np.sqrt(252 * 23_400))):
        ts = np.arange(seconds + 1, dtype=np.int64) * 1_000_000_000
        equity = np.cumsum(rng.normal(0.01, 1.0, seconds + 1))
        s = equity_stats(ts, equity, np.zeros(seconds + 1))
        returns = np.diff(equity)
        assert s["ratio_period"] == period
        assert s["sharpe"] == pytest.approx(returns.mean() / returns.std() * scale)
        downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
        assert s["sortino"] == pytest.approx(returns.mean() / downside * scale)


def test_per_day_splits_pnl_and_fills_by_utc_day() -> None:
    from engine.backtest.result import per_day
    from engine.core.units import NS_PER_DAY as DAY_NS

    base = 20_000 * DAY_NS  # 2024-10-04
    ts = np.array([base, base + DAY_NS // 2, base + DAY_NS, base + DAY_NS + 5])
    equity = np.array([0.0, 2.0, 1.5, 4.0])
    days = per_day(ts, equity, np.array([base + 1, base + DAY_NS + 1]), np.array([3.0, 4.0]))
    assert [d["day"] for d in days] == ["2024-10-04", "2024-10-05"]
    assert [d["pnl"] for d in days] == [2.0, 2.0]
    assert [(d["fills"], d["volume"]) for d in days] == [(1, 3.0), (1, 4.0)]
    assert per_day(np.array([5, 6]), np.array([0.0, 1.0]), np.array([5]), np.array([1.0]))[0]["day"] == "session 0"


def test_system_events_for_every_instrument_do_not_count_as_an_instrument(tmp_path: Path) -> None:

    system = (0, 0, 0, 0, 0, 0, 0, E.ALL_INSTRUMENTS, E.KIND_STATUS, 0, ord("O"), ord("S"))
    rows = [system, *book_rows(), ev(1.5, E.KIND_TRADE, side=E.SIDE_ASK, price=BID - 100, qty=1), ev(9, E.KIND_TRADE)]
    assert run(write(tmp_path, rows)).stats["fills"] == 1  # no --symbol needed: one instrument


def drifting_l2_rows(seed: int, quarters: int = 1600) -> list[tuple]:
    """An L2 book that drifts: level updates (many removals) up to 40 ticks from the touch every 0.25 ms,
    prints at and through the touch."""
    rng = np.random.default_rng(seed)
    mid = 0  # ticks the touch has moved
    rows = []
    for q in range(quarters):
        t = q / 4
        if rng.random() < 0.05:
            mid += int(rng.integers(-1, 2))
        for _ in range(3):
            side = E.SIDE_BID if rng.random() < 0.5 else E.SIDE_ASK
            away = int(rng.integers(0, 40))
            price = BID + 100 * (mid - away) if side == E.SIDE_BID else ASK + 100 * (mid + away)
            qty = 0 if rng.random() < 0.4 else int(rng.integers(1, 500))
            rows.append(ev(t, E.KIND_LEVEL, int(rng.integers(1, 5)), side, price, qty))
        if rng.random() < 0.3:
            through = 100 * int(rng.integers(0, 2))
            if rng.random() < 0.5:
                rows.append(
                    ev(t, E.KIND_TRADE, side=E.SIDE_ASK, price=BID + 100 * mid - through, qty=int(rng.integers(1, 400)))
                )
            else:
                rows.append(
                    ev(t, E.KIND_TRADE, side=E.SIDE_BID, price=ASK + 100 * mid + through, qty=int(rng.integers(1, 400)))
                )
    rows.append(ev(quarters / 4 + 10, E.KIND_TRADE))
    return rows


@pytest.mark.parametrize(
    "settings",
    [
        {"queue": "risk-averse"},
        {"queue": "power:2", "partial_fills": True, "time_in_force": "gtc", "feed_latency": "constant:300000"},
    ],
)
def test_l2_dense_depth_replays_like_the_sorted_book(tmp_path: Path, monkeypatch, settings: dict) -> None:
    path = write(tmp_path, drifting_l2_rows(11))
    dense = run(path, **settings)
    monkeypatch.setattr("engine.backtest.backtest._depth_prices", lambda events, instrument: None)  # book_nb's books
    sorted_book = run(path, **settings)
    assert (dense.stats["dense_depth"], sorted_book.stats["dense_depth"]) == (True, False)
    assert dense.stats["fills"] > 20 and dense.stats["cancels"] + dense.stats["replaces"] > 20
    assert dense.fills.to_pylist() == sorted_book.fills.to_pylist()
    pd.testing.assert_frame_equal(dense.to_pandas(), sorted_book.to_pandas(), check_exact=True)  # NaN: no quote
    for key in ("orders", "replaces", "cancels", "rejects", "taker_fills", "strategy_calls", "position", "pnl"):
        assert dense.stats[key] == sorted_book.stats[key]
