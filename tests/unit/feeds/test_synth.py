"""The synthetic ITCH day: decodable, internally consistent (every reference valid), deterministic."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from engine.core import events as E
from feeds import synth
from feeds.flatfile import FlatItchReader
from feeds.itch import MESSAGE_LENGTHS, decode_message
from feeds.synth import fixed_messages, generate_itch

MESSAGES = 200_000
SYMBOLS = 20
SEED = 11


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One generated day shared by the read-only tests."""
    return generate_itch(tmp_path_factory.mktemp("synth") / "day.itch", messages=MESSAGES, symbols=SYMBOLS, seed=SEED)


@pytest.fixture(scope="module")
def events(day: dict) -> tuple[np.ndarray, dict[str, int], FlatItchReader]:
    """The day decoded by the production reader: all rows, its counts, the reader."""
    reader = FlatItchReader(day["path"])
    rows = np.concatenate([batch.copy() for batch in reader.batches()])
    return rows, reader.stats.counts(), reader


def _records(data: bytes) -> list[bytes]:
    """Split a flat ``[u16 length][message]`` stream into its messages."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 2], "big")
        out.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert pos == len(data)
    return out


class _Replay:
    """A deliberately plain order book in dicts: fails on anything a real feed handler would reject."""

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  # ref -> [instrument, side, price, shares]
        self.levels: dict[tuple[int, int], dict[int, int]] = {}  # (instrument, side) -> price -> orders
        self.last_ref = 0
        self.crossed = 0

    def _level(self, instrument: int, side: int) -> dict[int, int]:
        return self.levels.setdefault((instrument, side), {})

    def _rest(self, ref: int, instrument: int, side: int, price: int, shares: int) -> None:
        assert ref not in self.live, f"duplicate reference {ref}"
        assert ref > self.last_ref, f"reference {ref} after {self.last_ref}"
        assert shares > 0 and price > 0 and price % synth.TICK == 0
        self.last_ref = ref
        opposite = self._level(instrument, -side)
        if opposite and (price >= min(opposite) if side == E.SIDE_BID else price <= max(opposite)):
            self.crossed += 1
        self.live[ref] = [instrument, side, price, shares]
        level = self._level(instrument, side)
        level[price] = level.get(price, 0) + 1

    def _order(self, ref: int, instrument: int) -> list[int]:
        assert ref in self.live, f"unknown reference {ref}"
        order = self.live[ref]
        assert order[0] == instrument, f"reference {ref} used on instrument {instrument}, not {order[0]}"
        return order

    def _drop(self, ref: int) -> None:
        instrument, side, price, _ = self.live.pop(ref)
        level = self._level(instrument, side)
        level[price] -= 1
        if not level[price]:
            del level[price]

    def apply(self, kind: int, instrument: int, ref: int, new_ref: int, price: int, qty: int, side: int) -> None:
        """Apply the fields of one event row."""
        if kind == E.KIND_ADD:
            assert side in (E.SIDE_BID, E.SIDE_ASK)
            self._rest(ref, instrument, side, price, qty)
        elif kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE):
            order = self._order(ref, instrument)
            assert 0 < qty <= order[3], f"over-execution of {ref}: {qty} of {order[3]}"
            same_side = self._level(instrument, order[1])
            touch = max(same_side) if order[1] == E.SIDE_BID else min(same_side)
            assert order[2] == touch, f"execution of {ref} at {order[2]} away from the touch {touch}"
            if kind == E.KIND_EXECUTE_PRICE:
                assert price == order[2]
            order[3] -= qty
            if order[3] == 0:
                self._drop(ref)
        elif kind == E.KIND_CANCEL:
            order = self._order(ref, instrument)
            assert 0 < qty < order[3], f"cancel of {qty} from {ref} holding {order[3]}"
            order[3] -= qty
        elif kind == E.KIND_DELETE:
            self._order(ref, instrument)
            self._drop(ref)
        elif kind == E.KIND_REPLACE:
            side = self._order(ref, instrument)[1]
            self._drop(ref)
            self._rest(new_ref, instrument, side, price, qty)


def test_reader_decodes_the_counts_the_generator_returned(day: dict, events: tuple) -> None:
    _, counts, reader = events
    assert counts == day["counts"]
    assert day["messages"] == MESSAGES == sum(counts.values())
    assert reader.stats.skipped_records == 0 and reader.stats.errors == []
    assert len(reader.instruments) == SYMBOLS
    assert [reader.instruments[i].symbol for i in range(1, SYMBOLS + 1)] == day["tickers"]
    assert day["bytes"] == day["file_bytes"] == Path(day["path"]).stat().st_size


def test_every_reference_is_valid_and_no_order_over_executes(events: tuple) -> None:
    rows = events[0]
    replay = _Replay()
    columns = ("kind", "instrument", "order_id", "new_order_id", "price", "qty", "side")
    for row in zip(*(rows[c].tolist() for c in columns), strict=True):
        replay.apply(*row)
    assert replay.crossed == 0
    assert replay.live, "a day ends with orders still resting"


def test_timestamps_never_decrease_and_span_the_day(day: dict, events: tuple) -> None:
    rows = events[0]
    ts = rows["ts_exch_ns"].astype(np.int64)
    assert (np.diff(ts) >= 0).all()
    assert ts[0] == day["first_ts_ns"] == synth.START_OF_MESSAGES_NS
    assert ts[-1] == day["last_ts_ns"] == synth.END_OF_MESSAGES_NS
    flow = ts[np.isin(rows["src_type"], np.frombuffer(b"AFDUXECP", np.uint8))]
    assert flow.min() >= synth.FLOW_START_NS and flow.max() <= synth.FLOW_END_NS
    assert flow.max() - flow.min() > 5 * synth.NS_PER_HOUR, "the flow fills the trading session"


def test_messages_decode_with_the_itch_codec(day: dict) -> None:
    messages = _records(Path(day["path"]).read_bytes())
    assert len(messages) == MESSAGES
    assert all(len(m) == MESSAGE_LENGTHS[m[0]] for m in messages)
    head = [decode_message(m) for m in messages[: 3 * SYMBOLS + 3]]
    tail = [decode_message(m) for m in messages[-(SYMBOLS + 3) :]]
    events = [m["event_code"] for m in head + tail if m["message_type"] == "S"]
    assert events == ["O", "S", "Q", "M", "E", "C"]
    directory = [m for m in head if m["message_type"] == "R"]
    assert [m["stock_locate"] for m in directory] == list(range(1, SYMBOLS + 1))
    assert [m["stock"] for m in directory] == day["tickers"] == sorted(day["tickers"])
    assert all(len(t) == 4 and t.isalpha() and t.isupper() for t in day["tickers"])
    assert {m["round_lot_size"] for m in directory} == {synth.ROUND_LOT}
    assert [m["trading_state"] for m in head if m["message_type"] == "H"] == ["T"] * SYMBOLS
    crosses = [m for m in head + tail if m["message_type"] == "Q"]
    assert [m["cross_type"] for m in crosses] == ["O"] * SYMBOLS + ["C"] * SYMBOLS
    flow = [decode_message(m) for m in messages[3 * SYMBOLS + 3 : -(SYMBOLS + 3) : 97]]
    for m in flow:
        assert 1 <= m["stock_locate"] <= SYMBOLS
        ticker = day["tickers"][m["stock_locate"] - 1]
        if m["message_type"] in "AFP":
            assert m["stock"] == ticker and m["buy_sell_indicator"] in "BS"
        if m["message_type"] in "AFUP":
            assert m["price"] > 0 and m["price"] % synth.TICK == 0
        if m["message_type"] == "F":
            assert m["attribution"] in synth.MPIDS
    assert {m["message_type"] for m in flow} >= {"A", "F", "D", "U", "X", "E", "P"}


def test_mix_is_close_to_a_real_day(day: dict) -> None:
    counts = day["counts"]
    n_flow = MESSAGES - fixed_messages(SYMBOLS)
    share = {letter: counts.get(letter, 0) / n_flow for letter in "AFDUXECP"}
    assert 0.38 < share["A"] < 0.46 and 0.36 < share["D"] < 0.45
    assert share["A"] > share["U"] > share["E"] > share["X"] > share["C"] > 0
    assert 0 < share["F"] < 0.03 and 0 < share["P"] < 0.04
    assert counts["R"] == counts["H"] == SYMBOLS and counts["Q"] == 2 * SYMBOLS and counts["S"] == 6


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.itch" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        generate_itch(path, messages=20_000, symbols=7, seed=seed)
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


def test_bytes_do_not_depend_on_the_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = generate_itch(tmp_path / "big.itch", messages=20_000, symbols=7, seed=3)
    monkeypatch.setattr(synth, "CHUNK_BYTES", 4096)
    calls: list[tuple[int, int]] = []
    small = generate_itch(
        tmp_path / "small.itch",
        messages=20_000,
        symbols=7,
        seed=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert Path(big["path"]).read_bytes() == Path(small["path"]).read_bytes()
    assert len(calls) > 100, "one progress call per chunk"
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1] == (20_000, 20_000)


def test_gzip_output_reads_the_same(tmp_path: Path) -> None:
    plain = generate_itch(tmp_path / "day.itch", messages=30_000, symbols=9, seed=8)
    packed = generate_itch(tmp_path / "day.itch.gz", messages=30_000, symbols=9, seed=8, gzip=True)
    raw = Path(plain["path"]).read_bytes()
    assert gzip.decompress(Path(packed["path"]).read_bytes()) == raw
    assert packed["bytes"] == len(raw) and packed["file_bytes"] < len(raw)
    reader = FlatItchReader(packed["path"])
    rows = sum(len(batch) for batch in reader.batches())
    assert reader.stats.counts() == plain["counts"] == packed["counts"]
    assert rows == 30_000 - plain["counts"]["R"]  # R fills the directory and yields no event row


def test_a_day_needs_room_for_its_fixed_messages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        generate_itch(tmp_path / "x.itch", messages=fixed_messages(10) - 1, symbols=10, seed=1)
    with pytest.raises(ValueError, match="symbols"):
        generate_itch(tmp_path / "x.itch", messages=1_000, symbols=0, seed=1)
    only_fixed = generate_itch(tmp_path / "y.itch", messages=fixed_messages(3), symbols=3, seed=1)
    assert set(only_fixed["counts"]) == {"S", "R", "H", "Q"}


def _resting_profile(path: Path) -> tuple[int, int, float]:
    """Of the day's final books, the busiest one's (resting orders, levels on both sides, median ticks from
    the touch of its resting orders)."""
    from engine.book.book import Book

    book = Book()
    for batch in FlatItchReader(str(path)).batches():
        book.apply(batch)
    busiest = max(book.instruments(), key=book.order_count)
    bids, asks = book.depth(busiest, 1 << 20)
    ticks = np.concatenate([np.repeat((bids[0, 0] - bids[:, 0]) // synth.TICK, bids[:, 2]),
                            np.repeat((asks[:, 0] - asks[0, 0]) // synth.TICK, asks[:, 2])])  # fmt: skip
    return book.order_count(busiest), len(bids) + len(asks), float(np.median(ticks))


def test_deep_books_are_as_deep_as_the_real_esm4_book_and_the_shallow_day_is_unchanged(tmp_path: Path) -> None:
    """The deep profile's busiest book holds thousands of orders on hundreds of levels, resting a median of
    tens to hundreds of ticks from the touch (ESM4: 13,598 orders, 1,547 levels, median 124-170 ticks);
    the shallow day of the same seed keeps its few hundred orders near the touch."""
    sizes = {"messages": 400_000, "symbols": 4, "seed": 2}
    deep = generate_itch(tmp_path / "deep.itch", depth="deep", **sizes)
    shallow = generate_itch(tmp_path / "shallow.itch", **sizes)
    assert deep["depth"] == "deep" and shallow["depth"] == "shallow"
    orders, levels, median_ticks = _resting_profile(tmp_path / "deep.itch")
    assert 5_000 <= orders <= synth.PROFILES["deep"].live_max and levels >= 500 and 30 <= median_ticks <= 400
    shallow_orders, _, shallow_ticks = _resting_profile(tmp_path / "shallow.itch")
    assert shallow_orders <= synth.LIVE_ORDERS_MAX and shallow_ticks < 10
    with pytest.raises(ValueError, match="depth must be one of"):
        generate_itch(tmp_path / "x.itch", depth="bottomless", **sizes)
