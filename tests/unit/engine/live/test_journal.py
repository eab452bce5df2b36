"""The order journal: the shared-memory ring, the Arrow file, and rebuilding a node's tables from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine.gateway.session import Port
from engine.live.builder import NodeInstrument, NodeSpec, fresh_tables
from engine.live.journal import (
    J_FULL,
    J_READ,
    J_WRITE,
    KIND_RESPONSE,
    KIND_SENT,
    JournalRing,
    JournalWriter,
    append_nb,
    read_journal,
    rebuild,
)
from engine.trading import layout as TL
from engine.trading.oms import find_order_nb, working_count_nb
from engine.trading.risk import RiskConfig
from feeds import ouch
from tests.unit.engine.trading.test_oms import response

LOT = 100


def _spec(maker_fee: float = 0.0, taker_fee: float = 0.0) -> NodeSpec:
    return NodeSpec(
        name="j", strategy="touch", params={}, instruments=(NodeInstrument("AAA", 1, 100, LOT),),
        md_bind=("127.0.0.1", 0), multicast_group="", retransmit=("127.0.0.1", 9), aeron_dir="",
        port=Port("T", "p", "aeron:ipc", 1, "aeron:ipc", 2), risk=RiskConfig(), metrics_block="m", control_block="c",
        first_order_id=500, maker_fee=maker_fee, taker_fee=taker_fee,
    )  # fmt: skip


def _enter(urn: int, side: str, shares: int, price: int) -> bytes:
    message = ouch.encode(ouch.INBOUND, "O", user_ref_num=urn, side=side, quantity=shares, symbol="AAA", price=price,
                          time_in_force="0", display="Y", capacity="P", intermarket_sweep_eligibility="N",
                          cross_type="N", cl_ord_id="")  # fmt: skip
    return b"U" + message


def _replace(orig: int, urn: int, shares: int, price: int) -> bytes:
    message = ouch.encode(ouch.INBOUND, "U", orig_user_ref_num=orig, user_ref_num=urn, quantity=shares, price=price,
                          time_in_force="0", display="Y", intermarket_sweep_eligibility="N", cl_ord_id="",
                          appendage=[(ouch.TAG_POST_ONLY, b"P")])  # fmt: skip
    return b"U" + message


def _cancel(urn: int) -> bytes:
    return b"U" + ouch.encode(ouch.INBOUND, "X", user_ref_num=urn, quantity=0)


def _sent(ring: JournalRing, packet: bytes) -> None:
    src = np.frombuffer(packet, np.uint8)
    assert append_nb(ring.meta, ring.data, ring.ctl, KIND_SENT, 1, 0, src, 0, len(src))


def test_the_ring_hands_over_records_in_order_across_its_end_and_refuses_when_full() -> None:
    ring = JournalRing.private(capacity=4)
    for urn in range(1, 4):
        _sent(ring, _cancel(urn))
    assert ring.drain().num_rows == 3
    for urn in range(4, 8):  # wraps around
        _sent(ring, _cancel(urn))
    src = np.frombuffer(_cancel(99), np.uint8)
    assert not append_nb(ring.meta, ring.data, ring.ctl, KIND_SENT, 1, 0, src, 0, len(src))
    assert ring.ctl[J_FULL] == 1
    batch = ring.drain()
    urns = [ouch.decode(ouch.INBOUND, blob[1:])["user_ref_num"] for blob in batch.column("data").to_pylist()]
    assert urns == [4, 5, 6, 7] and ring.ctl[J_READ] == ring.ctl[J_WRITE] == 7


def test_responses_keep_their_sequence_numbers_and_what_does_not_fit_is_counted() -> None:
    ring = JournalRing.private(capacity=3)
    rows = np.concatenate([response("A", 1, 100, 5000), response("A", 2, 100, 5000), response("C", 1, 100)])
    assert ring.append_responses(rows[:2], first_seq=10, ts_ns=7) == 2
    assert ring.append_responses(rows, first_seq=12, ts_ns=8) == 1 and ring.ctl[J_FULL] == 1
    batch = ring.drain()
    assert batch.column("seq").to_pylist() == [10, 11, 12]
    assert batch.column("kind").to_pylist() == [KIND_RESPONSE] * 3
    back = np.frombuffer(batch.column("data")[2].as_py(), ouch.RESPONSE_DTYPE)
    assert back[0] == rows[0]


def test_a_shared_ring_outlives_its_writer_and_the_file_survives_a_torn_tail(tmp_path: Path) -> None:
    name = f"hftmm-journal-test-{os.getpid()}"
    owner = JournalRing.create(name, capacity=8)
    try:
        node_side = JournalRing.attach(name, capacity=8)
        _sent(node_side, _cancel(3))
        node_side.close()  # the node is gone; what it wrote is not
        writer = JournalWriter(tmp_path / "j.arrow")
        writer.write(owner.drain())
        writer.write(owner.drain())  # empty: nothing appended
        writer.flush()
        assert read_journal(writer.path).num_rows == 1  # readable while the stream is still open
        writer.close()
    finally:
        owner.close()
    assert not os.path.exists(f"/dev/shm/{name}")
    torn = tmp_path / "torn.arrow"
    torn.write_bytes((tmp_path / "j.arrow").read_bytes()[:-20])
    assert read_journal(torn).num_rows <= 1  # whatever whole batches remain, no error


def test_bad_fsync_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        JournalWriter(tmp_path / "x.arrow", fsync="sometimes")


def test_rebuild_replays_orders_cancels_and_fills_and_resumes_after_the_last_contiguous_response() -> None:
    ring = JournalRing.private(capacity=64)
    _sent(ring, _enter(500, "B", 2 * LOT, 999_900))
    _sent(ring, _enter(501, "S", LOT, 1_000_100))
    accepted = np.concatenate([response("A", 500, 2 * LOT, 999_900), response("A", 501, LOT, 1_000_100)])
    ring.append_responses(accepted, first_seq=1, ts_ns=2)
    ring.append_responses(response("E", 500, LOT, 999_900, match=77), first_seq=3, ts_ns=3)
    _sent(ring, _cancel(501))
    ring.append_responses(response("C", 501, LOT), first_seq=5, ts_ns=4)  # 4 never reached the journal
    own, oc, inst, money = fresh_tables(_spec())
    got = rebuild(pa.Table.from_batches([ring.drain()]), own, oc, inst, money, ["AAA"])
    assert got.next_sequence == 4  # the exchange replays from 4 on (5 again too: a duplicate, recognised)
    assert got.highest_id == 501 and got.oc[TL.OC_NEXT_ID] == 502
    assert got.inst[0, TL.IN_POSITION] == 1 and got.inst[0, TL.IN_FILLS] == 1  # one lot bought
    assert got.inst[0, TL.IN_ORDERS] == 2 and got.inst[0, TL.IN_CANCELS] == 1
    i, r = find_order_nb(got.own, np.int64(500))
    assert got.own[i, r, TL.OW_STATE] == TL.LS_LIVE  # half filled, still working
    i, r = find_order_nb(got.own, np.int64(501))
    assert got.own[i, r, TL.OW_STATE] not in (TL.LS_LIVE, TL.LS_PENDING_CANCEL)  # canceled
    assert working_count_nb(got.own) == 1


def test_rebuild_keeps_a_later_first_id_than_the_journal_holds() -> None:
    ring = JournalRing.private(capacity=8)
    _sent(ring, _enter(7, "B", LOT, 999_900))
    own, oc, inst, money = fresh_tables(_spec())  # first_order_id 500
    got = rebuild(pa.Table.from_batches([ring.drain()]), own, oc, inst, money, ["AAA"])
    assert got.oc[TL.OC_NEXT_ID] == 500 and working_count_nb(got.own) == 1


def _state(got, urn: int) -> int:
    i, r = find_order_nb(got.own, np.int64(urn))
    return int(got.own[i, r, TL.OW_ORDER_STATE])


def test_rebuild_replays_replaces_and_charges_the_fees_again() -> None:
    maker, taker = -0.0002, 0.0003
    ring = JournalRing.private(capacity=64)
    _sent(ring, _enter(500, "B", 2 * LOT, 999_900))
    _sent(ring, _enter(501, "S", LOT, 1_000_100))
    ring.append_responses(np.concatenate([response("A", 500, 2 * LOT, 999_900), response("A", 501, LOT, 1_000_100)]),
                          first_seq=1, ts_ns=2)  # fmt: skip
    _sent(ring, _replace(500, 502, 2 * LOT, 1_000_000))  # the bid requoted a cent higher
    _sent(ring, _replace(501, 503, LOT, 1_000_200))  # the ask too; its answer never reached the journal
    answers = [response("U", 502, 2 * LOT, 1_000_000, orig=500), response("E", 502, LOT, 1_000_000, match=1),
               response("E", 502, LOT, 1_000_000, match=2, liquidity="R")]  # fmt: skip
    ring.append_responses(np.concatenate(answers), first_seq=3, ts_ns=3)
    own, oc, inst, money = fresh_tables(_spec(maker, taker))
    got = rebuild(pa.Table.from_batches([ring.drain()]), own, oc, inst, money, ["AAA"])
    assert got.inst[0, TL.IN_REPLACES] == 2 and got.inst[0, TL.IN_ORDERS] == 2 and got.oc[TL.OC_NEXT_ID] == 504
    assert _state(got, 500) == TL.OS_REPLACED and _state(got, 501) == TL.OS_PENDING_REPLACE
    assert _state(got, 503) == TL.OS_PENDING_NEW and working_count_nb(got.own) == 2  # 501 or 503 may still trade
    assert (
        got.inst[0, TL.IN_POSITION] == 2 and got.inst[0, TL.IN_FILLS] == 2
    )  # the replacement filled, maker then taker
    value = LOT * 100.0
    assert got.money[0, TL.MN_FEES] == pytest.approx(value * maker + value * taker)
    assert got.money[0, TL.MN_CASH] == pytest.approx(-2 * value - got.money[0, TL.MN_FEES])
    assert got.money[0, TL.MN_REALIZED] == pytest.approx(-got.money[0, TL.MN_FEES])
    assert got.next_sequence == 6
