"""The replay flow against the real matching engine: recorded events as resting orders, our orders among them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from engine.book import layout as BL
from engine.book.book import Book
from engine.book.replay import replay
from engine.core import events as E
from engine.core.config import ConfigError, decode_toml
from engine.core.events import empty_events
from engine.simexchange import layout as L
from engine.simexchange.config import SimExchangeConfig
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.replayflow import REPLAY_OWNER, ReplayFlow, load_events
from engine.simexchange.replayflow_nb import REF_BASE
from feeds.synth import generate_itch
from tests.conftest import real_file

LOCATE = 1
OWNER = 1  # an order-entry session
T0 = 34_200_000_000_000  # 09:30
PX = 1_000_000  # $100.00
TICK = 100


class Harness:
    """One engine, a replay flow over hand-made events, and everything they published."""

    def __init__(self, events: np.ndarray, at_end: str = "stop") -> None:
        self.engine = MatchingEngine([(LOCATE, "TEST", TICK, 1)])
        self.itch = bytearray(self.engine.session_start_itch(T0))
        self.reports: list[np.ndarray] = []
        self.flow = ReplayFlow(events, self.engine, lambda: T0, self._on_submit, speed=0.0, at_end=at_end)
        self.flow.on_start()

    def _on_submit(self, reports: np.ndarray, itch: np.ndarray) -> None:
        self.reports.append(reports.copy())
        self.itch += itch.tobytes()

    def upto(self, index: int) -> None:
        """Apply the recorded events up to ``events[index]`` (they are one ns apart)."""
        self.flow.run_until(T0 + index, T0)

    def order(self, client_ref: int, side: int, price: int, qty: int, tif: int = L.TIF_DAY) -> None:
        """Our own order, as order entry submits it; its reports and ITCH are kept like the flow's."""
        rq = np.zeros(1, L.REQUEST_DTYPE)
        rq[0] = (OWNER, 0, price, qty, client_ref, LOCATE, L.REQ_NEW, side, tif, 0)
        self._on_submit(*self.engine.submit(rq, T0))

    def our_fills(self) -> list[tuple[int, int, int]]:
        """(client ref, price, qty) of every execution of our orders so far."""
        rows = np.concatenate(self.reports) if self.reports else np.zeros(0, L.REPORT_DTYPE)
        return [
            (int(r["client_ref"]), int(r["price"]), int(r["qty"]))
            for r in rows
            if r["kind"] == L.RPT_EXECUTED and r["owner"] == OWNER
        ]

    def queue(self, side: str, level: int = 0) -> list[tuple[int, int, int]]:
        """(owner, ref, qty) of a price level's queue, best level first."""
        _, orders = self.engine.book_snapshot(LOCATE)[side][level]
        return [(owner, ref, qty) for ref, qty, owner, _ in orders]

    def rebuilt(self) -> Book:
        """The book an ITCH consumer rebuilds from everything published."""
        return book_of_itch(bytes(self.itch))


def book_of_itch(data: bytes) -> Book:
    """Our ITCH decoder's L3 book of a flat ``[u16 len][msg]`` stream (written to a file it replays)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.itch"
        path.write_bytes(data)
        return replay([str(path)], progress=False).book


def events(*rows: tuple) -> np.ndarray:
    """Event rows of (kind, order_id, side, price, qty[, new_order_id]), one ns apart from T0."""
    out = empty_events(len(rows))
    for i, row in enumerate(rows):
        kind, order_id, side, price, qty, *new = row
        out[i]["ts_exch_ns"] = out[i]["ts_local_ns"] = T0 + i
        out[i]["instrument"] = LOCATE
        out[i]["kind"] = kind
        out[i]["order_id"] = order_id
        out[i]["new_order_id"] = new[0] if new else 0
        out[i]["side"] = side
        out[i]["price"] = price
        out[i]["qty"] = qty
    return out


def l3(book: Book, locate: int, ref_base: int = 0, price_div: int = 1) -> dict[int, tuple[int, int, int, int]]:
    """Every resting order of ``locate``: recorded id -> (side, price, qty, orders ahead)."""
    out = {}
    for oid in np.unique(book.state.orders[:, BL.OR_ID]).tolist():
        got = book.order(oid)
        if got is not None and got["instrument"] == locate:
            out[oid - ref_base] = (got["side"], got["price"] // price_div, got["qty"], got["orders_ahead"])
    return out


# --- the recorded book, rebuilt ----------------------------------------------------------------------------
def test_replay_without_our_orders_rebuilds_exactly_the_recorded_book(tmp_path: Path) -> None:
    path = tmp_path / "day.itch"
    summary = generate_itch(path, messages=20_000, symbols=3, seed=5)
    tickers = summary["tickers"]
    engine = MatchingEngine([(locate, t, TICK, 1) for locate, t in enumerate(tickers, 1)])
    out = bytearray(engine.session_start_itch(T0))
    recorded = load_events([str(path)], {t: locate for locate, t in enumerate(tickers, 1)})
    flow = ReplayFlow(recorded, engine, on_submit=lambda _r, itch: out.extend(itch.tobytes()), speed=0.0)
    assert flow.open() == 0  # start_s = 0: nothing before the start
    assert flow.run_until(np.iinfo(np.int64).max, T0) == len(recorded)

    expected = replay([str(path)], progress=False).book
    got = book_of_itch(bytes(out))
    stats = flow.stats()
    assert stats["adds"] > 1000 and stats["executions"] > 100 and stats["replaces"] > 100 and stats["trades"] > 10
    for key in ("missing_orders", "clamped", "dropped", "crossed_adds", "our_fills"):
        assert stats[key] == 0, key
    for locate in range(1, len(tickers) + 1):
        want = l3(expected, locate)
        assert want
        assert l3(got, locate, int(REF_BASE)) == want
        assert [a.tolist() for a in got.depth(locate, 1000)] == [a.tolist() for a in expected.depth(locate, 1000)]
    assert got.total_orders == expected.total_orders > 30
    assert got.counters["unknown_order_refs"] == 0 and got.counters["crossed_books"] == 0


def test_replay_of_real_dbn_mbo_rebuilds_the_recorded_book(replay_data: Path, tmp_path: Path) -> None:
    path = str(real_file(replay_data, "dbn/esm4_mbo/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"))
    engine = MatchingEngine([(LOCATE, "ESM4", 2500, 1)])  # 0.25 index points in 1e-4 units
    out = bytearray(engine.session_start_itch(T0))
    flow = ReplayFlow(
        load_events([path], {"ESM4": LOCATE}), engine, on_submit=lambda _r, itch: out.extend(itch.tobytes())
    )
    flow.run_until(np.iinfo(np.int64).max, T0)
    stats = flow.stats()
    assert stats["adds"] == 13_678 and stats["dropped"] == 0 and stats["missing_orders"] == 0
    expected = replay([path], progress=False).book
    (instrument,) = expected.instruments()
    got = book_of_itch(bytes(out))
    want = l3(expected, instrument, price_div=100_000)  # DBN prices are 1e-9
    assert len(want) == 13_598
    assert l3(got, LOCATE, int(REF_BASE)) == want


# --- our orders among the recorded ones ------------------------------------------------------------------
def test_our_order_ahead_in_the_queue_is_filled_by_a_recorded_execution_first() -> None:
    h = Harness(
        events(
            (E.KIND_ADD, 7, E.SIDE_BID, PX, 100),
            (E.KIND_EXECUTE, 7, E.SIDE_BID, 0, 60),
            (E.KIND_EXECUTE, 7, E.SIDE_BID, 0, 40),  # the rest of its recorded life
        )
    )
    h.order(11, E.SIDE_BID, PX + TICK, 5)  # better priced
    h.order(12, E.SIDE_BID, PX, 50)  # ahead of the recorded order at its price
    h.upto(0)
    h.order(13, E.SIDE_BID, PX, 20)  # behind it: a recorded execution never reaches it
    h.upto(1)
    x = int(REF_BASE) + 7

    # the recorded aggressor of 60 fills ours first (5 better priced, then 50 ahead), then 5 of the recorded order
    assert h.our_fills() == [(11, PX + TICK, 5), (12, PX, 50)]
    assert h.queue("bids") == [(REPLAY_OWNER, x, 95), (OWNER, 3, 20)]
    stats = h.flow.stats()
    assert (stats["our_fills"], stats["our_filled_qty"], stats["clamped"]) == (2, 55, 0)
    h.upto(2)
    assert h.queue("bids") == [(OWNER, 3, 20)]  # 40 executed, then its recorded life is over: the rest leaves
    assert h.flow.stats()["clamped"] == 1
    assert l3(h.rebuilt(), LOCATE) == {3: (E.SIDE_BID, PX, 20, 0)}


def test_a_recorded_cancel_of_an_order_our_aggressor_consumed_is_clamped_and_counted() -> None:
    h = Harness(
        events(
            (E.KIND_ADD, 7, E.SIDE_ASK, PX, 30),
            (E.KIND_ADD, 8, E.SIDE_ASK, PX + TICK, 30),
            (E.KIND_CANCEL, 7, E.SIDE_ASK, 0, 10),  # 7 is gone
            (E.KIND_DELETE, 7, E.SIDE_ASK, 0, 0),
            (E.KIND_CANCEL, 8, E.SIDE_ASK, 0, 15),  # 8 has 10 left: cut short at 10, gone
        )
    )
    h.upto(1)
    h.order(1, E.SIDE_BID, PX + TICK, 50, L.TIF_IOC)  # takes all of 7 and 20 of 8
    assert [r["qty"] for r in h.reports[-1] if r["kind"] == L.RPT_EXECUTED and r["owner"] == OWNER] == [30, 20]
    h.upto(4)
    stats = h.flow.stats()
    assert (stats["missing_orders"], stats["clamped"], stats["cancels"]) == (2, 1, 1)
    assert h.engine.book_snapshot(LOCATE) == {"bids": [], "asks": []}
    assert l3(h.rebuilt(), LOCATE) == {}


def test_a_recorded_add_crossing_our_order_trades_with_it_and_rests_the_rest() -> None:
    h = Harness(events((E.KIND_ADD, 7, E.SIDE_ASK, PX, 30), (E.KIND_CANCEL, 7, E.SIDE_ASK, 0, 25)))
    h.order(1, E.SIDE_BID, PX + TICK, 10)
    h.upto(0)
    assert h.our_fills() == [(1, PX + TICK, 10)]
    assert h.queue("asks") == [(REPLAY_OWNER, int(REF_BASE) + 7, 20)]
    h.upto(1)  # a cancel of 25 is more than the 20 it has left: cut short, it leaves
    assert h.engine.book_snapshot(LOCATE)["asks"] == []
    assert h.flow.stats()["clamped"] == 1


def test_a_recorded_replace_keeps_what_our_orders_took() -> None:
    h = Harness(events((E.KIND_ADD, 7, E.SIDE_ASK, PX, 30), (E.KIND_REPLACE, 7, E.SIDE_ASK, PX + TICK, 50, 9)))
    h.upto(0)
    h.order(1, E.SIDE_BID, PX, 12, L.TIF_IOC)
    h.upto(1)
    assert h.queue("asks") == [(REPLAY_OWNER, int(REF_BASE) + 9, 38)]
    assert l3(h.rebuilt(), LOCATE) == {int(REF_BASE) + 9: (E.SIDE_ASK, PX + TICK, 38, 0)}


def test_a_hidden_trade_fills_our_orders_at_its_price_or_better_and_nothing_recorded() -> None:
    h = Harness(
        events(
            (E.KIND_ADD, 7, E.SIDE_ASK, PX + 2 * TICK, 30),
            (E.KIND_TRADE, 0, E.SIDE_BID, PX + TICK, 25),  # a buyer met a hidden sell at PX + TICK
            (E.KIND_STATUS, 0, 0, 0, 0),
        )
    )
    h.order(1, E.SIDE_ASK, PX, 10)
    h.order(2, E.SIDE_ASK, PX + TICK, 10)
    h.order(3, E.SIDE_ASK, PX + 2 * TICK, 10)  # worse than the print: not filled
    h.upto(2)
    assert h.our_fills() == [(1, PX, 10), (2, PX + TICK, 10)]
    assert h.queue("asks") == [(OWNER, 3, 10), (REPLAY_OWNER, int(REF_BASE) + 7, 30)]
    stats = h.flow.stats()
    assert (stats["trades"], stats["ignored"], stats["events"]) == (1, 1, 3)


def test_loop_deletes_the_recorded_orders_and_replays_again() -> None:
    h = Harness(events((E.KIND_ADD, 7, E.SIDE_BID, PX, 30)), at_end="loop")
    h.order(1, E.SIDE_BID, PX - TICK, 10)
    for _ in range(3):
        h.flow.do_work()  # the add, then at the end of the data every recorded order is deleted
    stats = h.flow.stats()
    assert (h.flow.loops, stats["adds"], stats["dropped"]) == (3, 3, 0)  # never a duplicate of a looped id
    assert h.queue("bids") == [(OWNER, 1, 10)]
    assert l3(h.rebuilt(), LOCATE) == l3_of_engine(h.engine)


def l3_of_engine(engine: MatchingEngine) -> dict[int, tuple[int, int, int, int]]:
    """The engine's own book of LOCATE in the form of ``l3``."""
    out = {}
    for name, side in (("bids", E.SIDE_BID), ("asks", E.SIDE_ASK)):
        for price, queue in engine.book_snapshot(LOCATE)[name]:
            for ahead, (ref, qty, _, _) in enumerate(queue):
                out[ref] = (side, price, qty, ahead)
    return out


def test_the_events_before_start_s_are_applied_at_open_stamped_with_their_recorded_times() -> None:
    engine = MatchingEngine([(LOCATE, "TEST", TICK, 1)])
    out = bytearray(engine.session_start_itch(T0))
    recorded = events(
        (E.KIND_ADD, 7, E.SIDE_BID, PX, 10), (E.KIND_ADD, 8, E.SIDE_BID, PX, 20), (E.KIND_ADD, 9, E.SIDE_BID, PX, 30)
    )
    flow = ReplayFlow(recorded, engine, on_submit=lambda _r, itch: out.extend(itch.tobytes()), start_s=2e-9)
    assert (flow.first_ns, flow.now_ns) == (T0, T0 + 2)  # the session opens at the first event, the clock at start
    assert flow.open() == 2
    assert [ref - int(REF_BASE) for ref, *_ in engine.book_snapshot(LOCATE)["bids"][0][1]] == [7, 8]
    assert flow.stats()["events_left"] == 1


def test_events_fall_due_at_their_recorded_time_times_speed() -> None:
    now = [T0 + 5_000]
    recorded = events(*[(E.KIND_ADD, i, E.SIDE_BID, PX - i * TICK, 10) for i in range(1, 11)])  # T0 .. T0 + 9
    flow = ReplayFlow(recorded, MatchingEngine([(LOCATE, "TEST", TICK, 1)]), lambda: now[0], speed=2.0)
    flow.on_start()  # the first recorded event is due now
    assert flow.do_work() == 1
    now[0] += 2  # two exchange ns are four recorded ns
    assert flow.do_work() == 4
    assert not flow.finished
    now[0] += 100
    assert flow.do_work() == 5 and flow.finished and flow.do_work() == 0


@pytest.mark.parametrize(
    "text, key",
    [
        ('[flow]\nmode = "replay"', "needs files"),
        ('[flow]\nmode = "recorded"', "flow mode"),
        ('[flow]\nat_end = "rewind"', "at_end"),
        ("[flow]\nspeed = -1.0", "speed"),
        ('[flow]\nsymbols = { "AAPL" = "NOPE" }', "unlisted instruments NOPE"),
        ('[flow]\nfile = "day.itch"', "file"),
    ],
)
def test_config_rejects_a_bad_flow_section_in_one_line(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key) as info:
        decode_toml(text, SimExchangeConfig)
    assert "\n" not in str(info.value)


def test_a_bad_file_is_a_one_line_error_with_its_name_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "day.itch"
    generate_itch(path, messages=200, symbols=1, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the last record cut short
    with pytest.raises(ValueError, match=r"day\.itch.*offset \d+") as info:
        load_events([str(path)], {"X": 1})
    assert "\n" not in str(info.value)
    path.write_bytes(data)
    with pytest.raises(ValueError, match="no symbol NOPE"):
        load_events([str(path)], {"NOPE": 1})
