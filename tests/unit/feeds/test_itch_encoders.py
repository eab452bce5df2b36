"""The Numba ITCH order-message encoders write the same bytes as the dtype-based Python codec."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core import events as E
from feeds import itch

TS_NS = (1 << 48) - 7  # every byte of the 48-bit timestamp in use
LOCATE = 0xABCD
REF, NEW_REF, MATCH = (1 << 64) - 3, 1 << 40, (1 << 63) + 5
SHARES, PRICE = 0xFFFFFFF0, 1_234_500
STOCK = np.frombuffer(b"HFTA    ", np.uint8)
MPIDS = np.frombuffer(b"ALFABRVO", np.uint8).reshape(2, 4)
HEADER = {"timestamp": TS_NS, "stock_locate": LOCATE}

CASES = [
    (
        lambda b: itch.encode_add_nb(b, 3, TS_NS, LOCATE, REF, E.SIDE_BID, SHARES, STOCK, PRICE, MPIDS, -1),
        ("A", {"order_reference_number": REF, "buy_sell_indicator": "B", "shares": SHARES, "stock": "HFTA",
               "price": PRICE}),
    ),
    (
        lambda b: itch.encode_add_nb(b, 3, TS_NS, LOCATE, REF, E.SIDE_ASK, SHARES, STOCK, PRICE, MPIDS, 1),
        ("F", {"order_reference_number": REF, "buy_sell_indicator": "S", "shares": SHARES, "stock": "HFTA",
               "price": PRICE, "attribution": "BRVO"}),
    ),
    (
        lambda b: itch.encode_executed_nb(b, 3, TS_NS, LOCATE, REF, SHARES, MATCH, 0, 0),
        ("E", {"order_reference_number": REF, "executed_shares": SHARES, "match_number": MATCH}),
    ),
    (
        lambda b: itch.encode_executed_nb(b, 3, TS_NS, LOCATE, REF, SHARES, MATCH, ord("N"), PRICE),
        ("C", {"order_reference_number": REF, "executed_shares": SHARES, "match_number": MATCH, "printable": "N",
               "execution_price": PRICE}),
    ),
    (
        lambda b: itch.encode_cancel_nb(b, 3, TS_NS, LOCATE, REF, SHARES),
        ("X", {"order_reference_number": REF, "cancelled_shares": SHARES}),
    ),
    (lambda b: itch.encode_delete_nb(b, 3, TS_NS, LOCATE, REF), ("D", {"order_reference_number": REF})),
    (
        lambda b: itch.encode_replace_nb(b, 3, TS_NS, LOCATE, REF, NEW_REF, SHARES, PRICE),
        ("U", {"original_order_reference_number": REF, "new_order_reference_number": NEW_REF, "shares": SHARES,
               "price": PRICE}),
    ),
    (
        lambda b: itch.encode_trade_nb(b, 3, TS_NS, LOCATE, E.SIDE_ASK, SHARES, STOCK, PRICE, MATCH),
        ("P", {"order_reference_number": 0, "buy_sell_indicator": "S", "shares": SHARES, "stock": "HFTA",
               "price": PRICE, "match_number": MATCH}),
    ),
]  # fmt: skip


@pytest.mark.parametrize("write, expected", CASES, ids=[msg_type for _, (msg_type, _) in CASES])
def test_numba_encoder_writes_the_record_the_codec_encodes(write, expected) -> None:
    msg_type, fields = expected
    record = itch.frame([itch.encode(msg_type, **HEADER, **fields)])
    buf = np.full(3 + len(record) + 4, 0xEE, np.uint8)  # records start mid-buffer; the rest stays untouched
    end = write(buf)
    assert end == 3 + len(record)
    assert buf[3:end].tobytes() == record
    assert (buf[:3] == 0xEE).all() and (buf[end:] == 0xEE).all()
