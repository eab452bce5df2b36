"""feeds.tile: a feed file's order flow re-encoded as ITCH 5.0, several copies of each instrument."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.book.book import Book
from engine.core import events as E
from engine.core.instruments import Instrument
from feeds.itch import decode_message
from feeds.parquet import write_events
from feeds.read import FeedPass, read_feeds
from feeds.tile import tile_itch
from tests.conftest import real_file

SCALE = 100  # source prices in cents
ESM4 = "dbn/esm4_mbo/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"


def _event(kind: int, order_id: int, *, price: int = 0, qty: int = 0, side: int = E.SIDE_BID, ts: int = 0) -> tuple:
    row = np.zeros(1, E.EVENT_DTYPE)[0]
    row["kind"], row["order_id"], row["new_order_id"], row["price"], row["qty"] = kind, order_id, order_id, price, qty
    row["side"], row["instrument"], row["ts_local_ns"] = side, 7, ts
    return row


def _source(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "source.parquet"
    write_events(path, np.array(rows, E.EVENT_DTYPE), {7: Instrument(7, "ABCD", SCALE, 0.01, 1)})
    return path


def _messages(path: Path) -> list[dict]:
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 2], "big")
        out.append(decode_message(data[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return out


def test_each_source_event_becomes_its_itch_message_once_per_copy(tmp_path: Path) -> None:
    rows = [
        _event(E.KIND_ADD, 11, price=1050, qty=30, ts=5),
        _event(E.KIND_ADD, 12, price=1060, qty=20, side=E.SIDE_ASK, ts=6),
        _event(E.KIND_CANCEL, 11, qty=10, ts=7),  # partial: X
        _event(E.KIND_REPLACE, 12, price=1070, qty=25, side=E.SIDE_ASK, ts=8),  # MBO modify: U, new reference
        _event(E.KIND_CANCEL, 11, qty=20, ts=9),  # what is left: D
        _event(E.KIND_DELETE, 99, ts=10),  # never added: skipped
        _event(E.KIND_CLEAR, 0, ts=11),  # no ITCH order message: skipped
    ]
    summary = tile_itch(_source(tmp_path, rows), tmp_path / "out.itch", 2)
    assert summary["tally"] == {"adds": 2, "cancels": 1, "deletes": 1, "replaces": 1, "executes": 0, "trades": 0,
                                "skipped": 2}  # fmt: skip
    messages = _messages(tmp_path / "out.itch")
    assert summary["messages"] == len(messages) == 1 + 2 + 5 * 2 + 1  # S O, two directories, flow x 2, S C
    assert [m["message_type"] for m in messages] == ["S", "R", "R", *"AAAAXXUUDD", "S"]
    assert [m["stock"].strip() for m in messages[1:3]] == ["ABCD0000", "ABCD0001"]
    adds = messages[3:7]
    assert [(m["stock_locate"], m["price"], m["shares"]) for m in adds] == [
        (1, 105000, 30), (2, 105000, 30), (1, 106000, 20), (2, 106000, 20)]  # fmt: skip
    refs = [m["order_reference_number"] for m in adds]
    assert len(set(refs)) == 4
    replaces = messages[9:11]
    assert [m["original_order_reference_number"] for m in replaces] == refs[2:]
    assert len({m["new_order_reference_number"] for m in replaces} | set(refs)) == 6
    assert [m["cancelled_shares"] for m in messages[7:9]] == [10, 10]
    stamps = [m["timestamp"] for m in messages]
    assert stamps == sorted(stamps)


def test_a_price_itch_cannot_carry_is_an_error_naming_the_event(tmp_path: Path) -> None:
    rows = [_event(E.KIND_ADD, 1, price=1050, qty=1), _event(E.KIND_ADD, 2, price=10**9, qty=1)]
    with pytest.raises(ValueError, match="event 1 price 1e\\+07 does not fit ITCH Price"):
        tile_itch(_source(tmp_path, rows), tmp_path / "out.itch", 1)


def test_esm4_tiled_gives_every_copy_the_real_final_book(replay_data: Path, tmp_path: Path) -> None:
    """The README's ESM4 figures hold for each copy: 976 bid and 571 ask levels, 5214.00 x 28 / 5214.25 x 17,
    13,598 resting orders."""
    out = tmp_path / "esm4x3.itch"
    tile_itch(real_file(replay_data, ESM4), out, 3)
    book, fp = Book(), FeedPass([str(out)])
    for batch in read_feeds([str(out)], feed_pass=fp, progress=False):
        book.apply(batch)
    assert book.counters["unknown_order_refs"] == 0
    assert sorted(fp.instrument(i).symbol for i in book.instruments()) == ["ESM40000", "ESM40001", "ESM40002"]
    for instrument in book.instruments():
        bids, asks = book.depth(instrument, 5000)
        assert (len(bids), len(asks)) == (976, 571)
        assert tuple(bids[0][:2]) == (52_140_000, 28) and tuple(asks[0][:2]) == (52_142_500, 17)
        assert book.order_count(instrument) == 13_598
