"""DbnReader against Databento's real files and against streams built with databento-dbn itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import databento_dbn as dbn
import numpy as np
import pytest

from engine.core import events as E
from feeds.dbn import DBN_PRICE_SCALE, DbnReader
from feeds.errors import FeedError
from tests.conftest import real_file

ESM4 = "dbn/esm4_mbo/orderbooks_mbo_2024-05-08T00-00-00_2024-05-08T00-00-02.dbn.zst"
ESM4_DEFINITION = "dbn/esm4_mbo/orderbooks_definition.dbn.zst"
XNAS = "dbn/databento_tests/XNAS.ITCH/test_data.{}.dbn.zst"
GLBX = "dbn/databento_tests/GLBX.MDP3/test_data.{}.dbn.zst"

KIND_OF = {
    "A": E.KIND_ADD,
    "C": E.KIND_CANCEL,
    "M": E.KIND_REPLACE,
    "R": E.KIND_CLEAR,
    "T": E.KIND_TRADE,
    "F": E.KIND_NONE,
    "N": E.KIND_NONE,
}
SIDE_OF = {"B": E.SIDE_BID, "A": E.SIDE_ASK, "N": E.SIDE_NONE}


def read_all(reader: DbnReader) -> np.ndarray:
    """Every event of a reader in one array (batches are reused buffers, so copy each)."""
    batches = [b.copy() for b in reader.batches()]
    return np.concatenate(batches) if batches else np.zeros(0, E.EVENT_DTYPE)


def library_records(path: Path) -> list:
    """The MBO records of a file as databento-dbn decodes them (the reference)."""
    decoder = dbn.DBNDecoder(compression=dbn.Compression.ZSTD)
    return [r for r in decoder.write_and_decode(path.read_bytes()) if isinstance(r, dbn.MBOMsg)]


def mbo(
    action: str,
    side: str,
    *,
    order_id: int = 1,
    price: int = 100 * DBN_PRICE_SCALE,
    size: int = 5,
    flags: int = 0,
    seq: int = 0,
    ts: int = 1_000,
    ts_out: int | None = None,
) -> bytes:
    """One MBO record of instrument 7, encoded by databento-dbn."""
    extra = {} if ts_out is None else {"ts_out": ts_out}
    msg = dbn.MBOMsg(
        1, 7, ts, order_id, price, size, dbn.Action(action), dbn.Side(side), ts + 5, flags=flags, sequence=seq, **extra
    )
    return bytes(msg)


def stream(records: list[bytes], *, schema: dbn.Schema | None = dbn.Schema.MBO, ts_out: bool = False) -> bytes:
    """An uncompressed DBN stream: metadata (symbol ABC = instrument 7) then the records."""
    mapping = SimpleNamespace(
        raw_symbol="ABC",
        intervals=[SimpleNamespace(start_date=dt.date(2024, 1, 2), end_date=dt.date(2024, 1, 3), symbol="7")],
    )
    metadata = dbn.Metadata(
        "XNAS.ITCH",
        0,
        dbn.SType.RAW_SYMBOL,
        dbn.SType.INSTRUMENT_ID,
        schema,
        symbols=["ABC"],
        mappings=[mapping],
        ts_out=ts_out,
    )
    return bytes(metadata) + b"".join(records)


def test_esm4_counts_and_instrument(replay_data: Path) -> None:
    reader = DbnReader(str(real_file(replay_data, ESM4)))
    events = read_all(reader)
    assert len(events) == 13_796
    assert reader.stats.counts() == {"R": 1, "A": 13_678, "C": 80, "M": 27, "T": 5, "F": 5}
    assert reader.stats.skipped_records == 0
    assert reader.dbn_version == 1
    assert reader.metadata.dataset == "GLBX.MDP3"
    instrument = reader.instruments[5602]
    assert (instrument.symbol, instrument.price_scale, instrument.tick_size) == ("ESM4", 1_000_000_000, 0.25)
    assert set(reader.instruments) == {5602}
    assert int(events["ts_local_ns"][-1]) == 1715126401995697728
    assert int(events["seq"][-1]) == 11051240
    assert np.all(np.diff(events["ts_local_ns"]) >= 0)
    assert reader.bytes_done == reader.total_bytes


def test_esm4_matches_databento_decoder_field_by_field(replay_data: Path) -> None:
    path = real_file(replay_data, ESM4)
    events = read_all(DbnReader(str(path), chunk_bytes=1_000, batch_rows=333))
    records = library_records(path)
    assert len(records) == len(events)
    undef = dbn.UNDEF_PRICE
    np.testing.assert_array_equal(events["ts_exch_ns"], [r.ts_event for r in records])
    np.testing.assert_array_equal(events["ts_local_ns"], [r.ts_recv for r in records])
    np.testing.assert_array_equal(events["seq"], [r.sequence for r in records])
    np.testing.assert_array_equal(events["order_id"], [r.order_id for r in records])
    np.testing.assert_array_equal(events["price"], [0 if r.price == undef else r.price for r in records])
    np.testing.assert_array_equal(events["qty"], [r.size for r in records])
    np.testing.assert_array_equal(events["instrument"], [r.instrument_id for r in records])
    np.testing.assert_array_equal(events["kind"], [KIND_OF[str(r.action)] for r in records])
    np.testing.assert_array_equal(events["side"], [SIDE_OF[str(r.side)] for r in records])
    np.testing.assert_array_equal(events["src_type"], [ord(str(r.action)) for r in records])
    replace = events["kind"] == E.KIND_REPLACE
    np.testing.assert_array_equal(events["new_order_id"][replace], events["order_id"][replace])
    assert not events["new_order_id"][~replace].any()
    expected_flags = [
        (E.FLAG_LAST if r.flags & dbn.F_LAST else 0) | (E.FLAG_SNAPSHOT if r.flags & dbn.F_SNAPSHOT else 0)
        for r in records
    ]
    np.testing.assert_array_equal(events["flags"], expected_flags)


def test_esm4_first_record_is_a_snapshot_clear(replay_data: Path) -> None:
    events = read_all(DbnReader(str(real_file(replay_data, ESM4))))
    first = events[0]
    assert (first["kind"], first["price"], first["qty"], first["flags"]) == (E.KIND_CLEAR, 0, 0, E.FLAG_SNAPSHOT)


def test_explicit_definitions_give_tick_size(replay_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "esm4.dbn.zst"
    data.write_bytes(real_file(replay_data, ESM4).read_bytes())
    alone = DbnReader(str(data))
    read_all(alone)
    assert alone.instruments[5602].tick_size == 0.0
    given = DbnReader(str(data), definitions=str(real_file(replay_data, ESM4_DEFINITION)))
    read_all(given)
    assert given.instruments[5602].tick_size == 0.25


def test_xnas_itch_mbo_is_four_adds(replay_data: Path) -> None:
    reader = DbnReader(str(real_file(replay_data, XNAS.format("mbo"))))
    events = read_all(reader)
    assert reader.stats.counts() == {"A": 4}
    assert (events["kind"] == E.KIND_ADD).all()
    assert reader.instruments[6155].symbol == "NVDA"
    assert events["price"][0] == 502 * DBN_PRICE_SCALE
    assert events["side"].tolist() == [E.SIDE_BID, E.SIDE_BID, E.SIDE_ASK, E.SIDE_BID]


def test_glbx_mdp3_mbo_decodes(replay_data: Path) -> None:
    reader = DbnReader(str(real_file(replay_data, GLBX.format("mbo"))))
    events = read_all(reader)
    assert len(events) == 4
    assert reader.instruments[5482].symbol == "ESH1"
    assert (events["flags"] == E.FLAG_SNAPSHOT).all()
    assert events["price"][0] == 3_675_750_000_000


@pytest.mark.parametrize("schema", ["mbp-1", "trades"])
def test_other_schemas_are_a_clear_feed_error(replay_data: Path, schema: str) -> None:
    path = real_file(replay_data, XNAS.format(schema))
    with pytest.raises(FeedError) as info:
        DbnReader(str(path))
    assert str(info.value) == f"{path}: schema {schema} is not supported; hftmm reads MBO (and definitions)"


def test_a_definition_file_names_instruments_and_yields_no_events(replay_data: Path, tmp_path: Path) -> None:
    definitions = DbnReader(str(real_file(replay_data, ESM4_DEFINITION)))
    assert read_all(definitions).size == 0 and definitions.stats.messages == 0
    assert definitions.instruments[5602].symbol == "ESM4" and definitions.instruments[5602].tick_size == 0.25
    data = tmp_path / "esm4.dbn.zst"  # away from the definition file: it only knows them from the one before
    data.write_bytes(real_file(replay_data, ESM4).read_bytes())
    after = DbnReader(str(data))
    after.continue_from(definitions)
    read_all(after)
    assert after.instruments[5602].tick_size == 0.25


def test_synthetic_stream_maps_every_action(tmp_path: Path) -> None:
    big_id = 2**63 + 11
    records = [
        mbo("A", "B", order_id=big_id, flags=dbn.F_SNAPSHOT, seq=1),
        mbo("M", "B", order_id=big_id, price=101 * DBN_PRICE_SCALE, size=9, seq=2),
        mbo("C", "A", size=2, flags=dbn.F_LAST | dbn.F_TOB, seq=3),
        mbo("T", "A", seq=4),
        mbo("F", "B", seq=5),
        mbo("N", "N", price=dbn.UNDEF_PRICE, size=dbn.UNDEF_ORDER_SIZE, seq=6),
        mbo("R", "N", price=dbn.UNDEF_PRICE, size=0, seq=7),
    ]
    path = tmp_path / "flow.dbn"
    path.write_bytes(stream(records))
    reader = DbnReader(str(path))
    events = read_all(reader)
    assert events["kind"].tolist() == [
        E.KIND_ADD,
        E.KIND_REPLACE,
        E.KIND_CANCEL,
        E.KIND_TRADE,
        E.KIND_NONE,
        E.KIND_NONE,
        E.KIND_CLEAR,
    ]
    assert events["side"].tolist() == [
        E.SIDE_BID,
        E.SIDE_BID,
        E.SIDE_ASK,
        E.SIDE_ASK,
        E.SIDE_BID,
        E.SIDE_NONE,
        E.SIDE_NONE,
    ]
    assert events["flags"].tolist() == [E.FLAG_SNAPSHOT, 0, E.FLAG_LAST, 0, 0, 0, 0]
    assert int(events["order_id"][0]) == big_id
    assert int(events["new_order_id"][1]) == big_id
    assert (events["price"][1], events["qty"][1]) == (101 * DBN_PRICE_SCALE, 9)
    assert events["price"][5:].tolist() == [0, 0]
    assert events["qty"][5] == 0
    assert events["seq"].tolist() == list(range(1, 8))
    assert events["ts_local_ns"][0] - events["ts_exch_ns"][0] == 5
    assert reader.instruments[7].symbol == "ABC"


def test_non_mbo_records_are_skipped_and_counted(tmp_path: Path) -> None:
    raw = dbn.SType.RAW_SYMBOL
    mapping = bytes(dbn.SymbolMappingMsg(1, 7, 0, raw, "ABC", raw, "ABC", 0, 1))
    path = tmp_path / "mixed.dbn"
    path.write_bytes(stream([mapping, mbo("A", "B"), mapping, mbo("C", "B")], schema=None))
    reader = DbnReader(str(path), chunk_bytes=64)
    events = read_all(reader)
    assert events["kind"].tolist() == [E.KIND_ADD, E.KIND_CANCEL]
    assert reader.stats.skipped_records == 2
    assert reader.skipped_rtypes[int(dbn.RType.SYMBOL_MAPPING.value)] == 2


def test_ts_out_records_decode(tmp_path: Path) -> None:
    path = tmp_path / "ts_out.dbn"
    path.write_bytes(stream([mbo("A", "A", seq=1, ts_out=9), mbo("C", "A", seq=2, ts_out=9)], ts_out=True))
    events = read_all(DbnReader(str(path), chunk_bytes=60))
    assert events["seq"].tolist() == [1, 2]


def test_truncated_record_names_offset_and_index(tmp_path: Path) -> None:
    data = stream([mbo("A", "B"), mbo("A", "B"), mbo("A", "B")])
    path = tmp_path / "cut.dbn"
    path.write_bytes(data[:-20])
    header = len(data) - 3 * 56
    with pytest.raises(FeedError) as info:
        read_all(DbnReader(str(path)))
    assert info.value.offset == header + 2 * 56
    assert "record 2: truncated (36 of 56 bytes)" in str(info.value)
    skipping = DbnReader(str(path), skip_bad=True)
    assert len(read_all(skipping)) == 2
    assert (skipping.stats.skipped_records, skipping.stats.skipped_bytes) == (1, 36)


def test_zero_record_length_is_a_feed_error(tmp_path: Path) -> None:
    bad = bytearray(mbo("A", "B"))
    bad[0] = 0
    path = tmp_path / "zero.dbn"
    path.write_bytes(stream([mbo("A", "B"), bytes(bad)]))
    with pytest.raises(FeedError, match="record 1: bad record length 0"):
        read_all(DbnReader(str(path)))


RECORDS, DAMAGED = 200, 100  # enough records for the zeros inside them to offer false starts


@pytest.mark.parametrize(
    ("words", "reason"), [(0, "record length 0"), (2, "record length 8"), (32, "MBO record length 128")]
)
@pytest.mark.parametrize("chunk_bytes", [64, 1 << 20])
def test_skip_bad_goes_on_at_the_record_after_a_bad_length(
    tmp_path: Path, words: int, reason: str, chunk_bytes: int
) -> None:
    records = [mbo("A", "B", order_id=k, seq=k) for k in range(RECORDS)]
    damaged = bytearray(records[DAMAGED])
    damaged[0] = words  # the length byte counts 4-byte words
    data = stream([*records[:DAMAGED], bytes(damaged), *records[DAMAGED + 1 :]])
    path = tmp_path / "bad_length.dbn"
    path.write_bytes(data)
    offset = len(data) - (RECORDS - DAMAGED) * 56
    with pytest.raises(FeedError, match=f"record {DAMAGED}: bad {reason}") as info:
        read_all(DbnReader(str(path), chunk_bytes=chunk_bytes))
    assert info.value.offset == offset
    skipping = DbnReader(str(path), skip_bad=True, chunk_bytes=chunk_bytes)
    assert read_all(skipping)["seq"].tolist() == [k for k in range(RECORDS) if k != DAMAGED]
    assert (skipping.stats.skipped_records, skipping.stats.skipped_bytes) == (1, 56)
    assert skipping.stats.errors == [str(info.value)]


def test_truncated_zstd_is_a_feed_error(replay_data: Path, tmp_path: Path) -> None:
    raw = real_file(replay_data, ESM4).read_bytes()
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FeedError, match="corrupt zstd stream"):
        read_all(DbnReader(str(path)))


@pytest.mark.parametrize("content", [b"", b"hello, this is not DBN at all", b"DBN\x03\xff\xff\x00\x00abc"])
def test_garbage_is_a_feed_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.dbn"
    path.write_bytes(content)
    with pytest.raises(FeedError) as info:
        DbnReader(str(path))
    assert str(path) in str(info.value)


def with_rtype(record: bytes, rtype: int) -> bytes:
    """``record`` with its header's rtype byte replaced."""
    return record[:1] + bytes((rtype,)) + record[2:]


def test_an_unknown_rtype_is_a_feed_error_and_skip_bad_skips_that_record_only(tmp_path: Path) -> None:
    data = stream([mbo("A", "B"), with_rtype(mbo("A", "B"), 0xEE), mbo("C", "B")])
    header = len(data) - 3 * 56
    path = tmp_path / "unknown.dbn"
    path.write_bytes(data)
    with pytest.raises(FeedError) as info:
        read_all(DbnReader(str(path)))
    assert info.value.offset == header + 56 and "record 1: unknown rtype 0xee" in str(info.value)
    skipping = DbnReader(str(path), skip_bad=True, chunk_bytes=64)
    assert read_all(skipping)["kind"].tolist() == [E.KIND_ADD, E.KIND_CANCEL]  # the record after it is read
    assert (skipping.stats.skipped_records, skipping.stats.skipped_bytes) == (1, 56)
    assert skipping.stats.errors and "unknown rtype 0xee" in skipping.stats.errors[0]


def test_skipped_records_of_other_known_rtypes_are_named(tmp_path: Path) -> None:
    raw = dbn.SType.RAW_SYMBOL
    mapping = bytes(dbn.SymbolMappingMsg(1, 7, 0, raw, "ABC", raw, "ABC", 0, 1))
    path = tmp_path / "mixed.dbn"
    path.write_bytes(stream([mapping, mbo("A", "B")], schema=None))
    reader = DbnReader(str(path))
    read_all(reader)
    assert reader.stats.skipped_bytes == len(mapping)
    assert reader.stats.errors and "rtype 0x16 (SYMBOL_MAPPING), not MBO" in reader.stats.errors[0]
