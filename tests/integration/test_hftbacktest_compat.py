"""Our backtester against hftbacktest 2.4.4: ``touch`` on real Binance data, configured alike, must agree.

Both engines replay hftbacktest's own event file (Binance USD-M BTCUSDT, 2024-08-08, 120,000 depth,
trade, clear and snapshot events, about 92 s) with a linear asset, constant order latency,
hftbacktest's risk-averse queue model (``RiskAdverseQueueModel``), no partial fills
(``NoPartialFillExchange``), post-only (GTX) limit orders, and fees as fractions of traded value (a
maker rebate and a taker fee). The strategy is ``touch`` (strategies/touch.py) on our side and the
same logic written against hftbacktest's API on theirs (``bench.backtest.hftbacktest_touch``): every
100 ms, bid at the best bid and ask at the best ask with ``order_qty`` while the local position
stays within ``max_position``, keep an order resting at a wanted price, cancel the others. The
first ``elapse`` of the hftbacktest loop puts its wakes on ours (its clock starts at the earliest
exchange timestamp, ours at the first local event).

The tolerance, from first principles. Given the same events and the same rules, the two runs are
deterministic functions of the same input, so they can only part where the rules leave a choice:

* Equal timestamps. hftbacktest orders them local data < order responses < exchange data < order
  arrivals; we order exchange data < order arrivals < order responses < local data < strategy wake.
  At the exchange both take market data before an order of ours arriving at the same nanosecond.
  Locally we apply a response before a market-data event of the same nanosecond and hftbacktest
  after it; but neither reads what the other writes (a fill moves position and cash, a depth event
  moves the local book) and the strategy only acts at a wake, which comes after both in both
  engines. Requests arriving together (a cancel and a new order sent at one wake) do not interact
  either: the queue model estimates the position from market depth only and nothing fills partly.
  So no tie can change a fill here; on this file they are also rare, since Binance stamps exchange
  events in whole milliseconds while local stamps, hence our wakes and arrivals, are in nanoseconds.
* Floating point. hftbacktest keeps sizes in float units (BTC), we keep integer lots; both sum
  cash and fees in float64, in the same order of fills. Over ``n`` fills the rounding of such a sum
  is at most about ``n * 2**-53 * sum(|terms|)`` (the classic bound for recursive summation).

Hence the assertions: the fill counts and the order counts are equal, every fill (side, price,
exchange time) is the same, the final position is the same number of lots, and PnL (balance +
position * mid - fees, at the final local mid) agrees within the summation bound above (about
1e-9 USD here): anything larger is a difference of semantics, not of rounding. A single differing
fill moves the fees by ``order_qty * price * |maker fee|`` (3 cents for 0.01 BTC) and PnL by that
plus ``order_qty * (final mid - fill price)``: seven orders of magnitude above the bound, so the
test cannot pass by accident.

Skips with a reason when hftbacktest (a test-only dependency) or the data file is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.backtest import NPZ_LOT, NPZ_SETTINGS, hftbacktest_touch
from engine.backtest.backtest import backtest
from tests.conftest import real_file

pytest.importorskip("hftbacktest", reason="hftbacktest (test-only dependency) is not installed")

NPZ = "hftbacktest/usdm_btcusdt_20240808_head120k.npz"
UNIT_ROUNDOFF = 2.0**-53
MIN_FILLS = 50  # a comparison over a handful of fills would prove little
# (entry ns, response ns, order_qty BTC, max_position BTC):
CASES = {
    "2ms-2ms": (2_000_000, 2_000_000, 0.01, 0.1),  # the file's feed latency has a 1st percentile of 2.2 ms
    "0.5ms-5ms": (500_000, 5_000_000, 0.01, 0.1),  # asymmetric: a fast gateway, a slow acknowledgement
    "10ms-10ms-0.05": (10_000_000, 10_000_000, 0.05, 0.2),  # a distant venue, bigger quotes hitting the limit
}


def _run_both(npz: Path, entry_ns: int, response_ns: int, qty: float, max_position: float) -> tuple[dict, dict]:
    """Our result (stats and fills) and hftbacktest's, for one configuration."""
    settings = dict(NPZ_SETTINGS, latency=f"constant:{entry_ns},{response_ns}")
    ours = backtest(str(npz), "touch", {"order_qty": qty, "max_position": max_position}, progress=False, **settings)
    with np.load(npz) as f:
        data = f["data"]
    ref = hftbacktest_touch(
        data,
        order_qty=qty,
        max_position=max_position,
        entry_ns=entry_ns,
        response_ns=response_ns,
        maker_fee=settings["maker_fee"],
        taker_fee=settings["taker_fee"],
    )
    return {"stats": ours.stats, "fills": ours.fills.to_pydict()}, ref


@pytest.fixture(scope="module", params=list(CASES))
def runs(request: pytest.FixtureRequest, replay_data: Path) -> tuple[dict, dict, tuple]:
    """Both engines on the npz file for one of :data:`CASES`."""
    npz = real_file(replay_data, NPZ)
    case = CASES[request.param]
    ours, ref = _run_both(npz, *case)
    return ours, ref, case


def test_both_runs_trade_enough_to_compare(runs: tuple[dict, dict, tuple]) -> None:
    ours, ref, _ = runs
    assert ours["stats"]["fills"] >= MIN_FILLS and ref["fills"] >= MIN_FILLS
    assert set(ours["fills"]["side"]) == {"buy", "sell"}
    assert ours["stats"]["taker_fills"] == 0  # post-only: every fill is a maker fill on both sides


def test_fill_and_order_counts_agree(runs: tuple[dict, dict, tuple]) -> None:
    ours, ref, _ = runs
    assert ours["stats"]["fills"] == ref["fills"]
    assert ours["stats"]["orders"] == ref["orders"]


def test_every_fill_is_the_same_side_price_and_exchange_time(runs: tuple[dict, dict, tuple]) -> None:
    ours, ref, _ = runs
    trace, log = ref["trace"], ref["fill_log"]
    last_wake = int(trace[-1, 0])  # hftbacktest's fills are read at wakes: those after the last one are not logged
    f = ours["fills"]
    mine = sorted(
        (int(ts), 1 if side == "buy" else -1, round(price / NPZ_SETTINGS["tick_size"]))
        for ts, side, price, local in zip(f["ts_exch_ns"], f["side"], f["price"], f["ts_local_ns"], strict=True)
        if local <= last_wake
    )
    theirs = sorted((int(ts), int(side), int(tick)) for _, side, tick, ts, _ in log)
    assert len(theirs) >= ref["fills"] - 2  # at most one fill a side can land after the last wake
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        assert a == b, f"fill {i} differs: ours (exch ns, side, tick) {a}, hftbacktest {b}"
    assert len(mine) == len(theirs)


def test_final_position_agrees_to_the_lot(runs: tuple[dict, dict, tuple]) -> None:
    ours, ref, _ = runs
    assert ours["stats"]["position"] == round(ref["position"] / NPZ_LOT)


def test_pnl_and_fees_agree_within_float_summation_error(runs: tuple[dict, dict, tuple]) -> None:
    ours, ref, (_, _, qty, _) = runs
    s = ours["stats"]
    n = s["fills"] + 2
    terms = s["traded_value"] + abs(s["position_units"]) * ref["mid"] + abs(s["fees"])
    bound = n * UNIT_ROUNDOFF * terms
    one_fill = qty * ref["mid"] * abs(NPZ_SETTINGS["maker_fee"])  # what one differing fill does to the fees
    assert bound < one_fill / 1000  # the bound is far below anything a semantic difference would produce
    assert s["fees"] == pytest.approx(ref["fee"], abs=bound)
    assert s["pnl"] == pytest.approx(ref["pnl"], abs=bound)
