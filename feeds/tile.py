"""Real order flow re-encoded as ITCH 5.0 and tiled over many instruments: deep books from real files.

A file of one real book (the ESM4 MBO day, say) makes a benchmark of one book; real venues run
thousands at once, each with its own cache footprint. :func:`tile_itch` reads any feed file the
project reads, re-encodes its order events as ITCH 5.0 (prices as Price(4), sizes as shares) and
writes ``copies`` copies of every instrument, interleaved message by message, so the books grow and
churn side by side as on a real day. Copy ``c`` of source instrument ``i`` is stock locate
``c * instruments + i + 1`` named after the source symbol and the copy number; order references are
dense and distinct across copies.

The mapping follows each event's meaning on the book. Add -> A. A partial cancel -> X, or D when it
takes what is left. A modify (DBN M: same id, new price or size) -> U with a new reference (ITCH
loses priority on every replace; a same-price size cut that keeps priority in MBO is the one
difference in queue order; levels and sizes stay exact). Execute -> E, execute at a price -> C,
trade -> P. Clears, snapshot markers and status events, and references to orders the file never
added, have no ITCH order message and are counted as skipped. Timestamps are the receive times
modulo a day (the exchange times of a snapshot's adds predate the session), never decreasing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.units import NS_PER_DAY
from feeds.itch import (
    MESSAGE_LENGTHS,
    encode,
    encode_add_nb,
    encode_cancel_nb,
    encode_delete_nb,
    encode_executed_nb,
    encode_replace_nb,
    encode_stock_directory,
    encode_trade_nb,
    frame,
)
from feeds.read import FeedPass, read_feeds

ITCH_PRICE_SCALE = 10_000  # Price(4)
MAX_ITCH_PRICE = 0xFFFFFFFF
MAX_COPIES = 0xFFFF
CHUNK_EVENTS = 1 << 14  # source events encoded (times copies) per jitted call
_MAX_RECORD = 2 + max(int(MESSAGE_LENGTHS[ord(t)]) for t in "AXDUECP")
_NO_MPID = np.zeros((1, 4), np.uint8)
# what each source event became: tally columns
T_ADD, T_CANCEL, T_DELETE, T_REPLACE, T_EXECUTE, T_TRADE, T_SKIPPED, T_SIZE = range(8)
TALLY_NAMES = ("adds", "cancels", "deletes", "replaces", "executes", "trades", "skipped")


@njit(cache=True, nogil=True)
def _encode_chunk_nb(buf, ev, dense, slot, copies, instruments, stocks, ref, left, st, tally):
    """Encode ``ev`` (with each order's dense index and each instrument's slot) ``copies`` times each;
    returns the bytes written. ``ref[d]`` is order ``d``'s current base reference (0: not live), ``left[d]``
    its shares; ``st`` = (last timestamp, next base reference, next match number)."""
    pos = 0
    for k in range(ev.shape[0]):
        e = ev[k]
        d = dense[k]
        ts = max(st[0], (e.ts_local_ns if e.ts_local_ns > 0 else e.ts_exch_ns) % NS_PER_DAY)
        st[0] = ts
        kind = e.kind
        live = ref[d] != 0
        if kind == E.KIND_ADD and not live and e.qty > 0:
            ref[d] = st[1]
            st[1] += 1
            left[d] = e.qty
            tally[T_ADD] += 1
        elif kind in (E.KIND_CANCEL, E.KIND_DELETE) and live:
            tally[T_CANCEL if kind == E.KIND_CANCEL and e.qty < left[d] else T_DELETE] += 1
        elif kind == E.KIND_REPLACE and live:
            tally[T_REPLACE if e.qty > 0 else T_DELETE] += 1
        elif kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE) and live and e.qty > 0:
            tally[T_EXECUTE] += 1
        elif kind == E.KIND_TRADE and e.qty > 0:
            tally[T_TRADE] += 1
        else:
            tally[T_SKIPPED] += 1
            continue
        old = ref[d]
        new = st[1]
        match = st[2]
        for c in range(copies):
            locate = c * instruments + slot[k] + 1
            r = old * copies + c + 1
            if kind == E.KIND_ADD:
                pos = encode_add_nb(buf, pos, ts, locate, r, e.side, e.qty, stocks[locate - 1], e.price, _NO_MPID, -1)
            elif kind == E.KIND_DELETE or (kind == E.KIND_CANCEL and e.qty >= left[d]):
                pos = encode_delete_nb(buf, pos, ts, locate, r)
            elif kind == E.KIND_CANCEL:
                pos = encode_cancel_nb(buf, pos, ts, locate, r, e.qty)
            elif kind == E.KIND_REPLACE and e.qty == 0:
                pos = encode_delete_nb(buf, pos, ts, locate, r)
            elif kind == E.KIND_REPLACE:
                pos = encode_replace_nb(buf, pos, ts, locate, r, new * copies + c + 1, e.qty, e.price)
            elif kind == E.KIND_TRADE:
                pos = encode_trade_nb(buf, pos, ts, locate, e.side, e.qty, stocks[locate - 1], e.price, match + c)
            else:
                price = e.price if kind == E.KIND_EXECUTE_PRICE else 0
                pos = encode_executed_nb(buf, pos, ts, locate, r, min(e.qty, left[d]), match + c, ord("Y"), price)
        if kind in (E.KIND_EXECUTE, E.KIND_EXECUTE_PRICE, E.KIND_TRADE):
            st[2] += copies
        if kind == E.KIND_DELETE or (kind == E.KIND_REPLACE and e.qty == 0):
            ref[d] = 0
        elif kind == E.KIND_REPLACE:
            ref[d] = new
            st[1] += 1
            left[d] = e.qty
        elif kind != E.KIND_ADD and kind != E.KIND_TRADE:
            left[d] -= min(e.qty, left[d])
            if left[d] == 0:
                ref[d] = 0
    return pos


def _itch_prices(events: np.ndarray, scales: np.ndarray, slot: np.ndarray, path: str) -> np.ndarray:
    """Prices as ITCH Price(4); a price that does not fit in four bytes is an error naming the event."""
    prices = events["price"].astype(np.float64) * (ITCH_PRICE_SCALE / scales[slot])
    priced = np.isin(events["kind"], (E.KIND_ADD, E.KIND_REPLACE, E.KIND_EXECUTE_PRICE, E.KIND_TRADE))
    bad = priced & ((prices < 0) | (prices > MAX_ITCH_PRICE))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{path}: event {i} price {prices[i] / ITCH_PRICE_SCALE:g} does not fit ITCH Price(4)")
    return np.round(prices).astype(np.int64)


def tile_itch(source: str | Path, output: str | Path, copies: int) -> dict[str, object]:
    """Write ``source``'s order flow as a flat ITCH 5.0 file with ``copies`` copies of each instrument.

    Returns a summary: output, source, copies, instruments (source symbols), messages, bytes and what
    the source events became (``tally``: adds, cancels, deletes, replaces, executes, trades, skipped).
    """
    if not 1 <= copies <= MAX_COPIES:
        raise ValueError(f"copies must be in 1..{MAX_COPIES}, got {copies}")
    fp = FeedPass([str(source)])
    batches = list(read_feeds([str(source)], feed_pass=fp, progress=False))
    events = np.concatenate(batches) if batches else np.zeros(0, E.EVENT_DTYPE)
    ids = sorted(fp.instruments) or sorted({int(i) for i in np.unique(events["instrument"])})
    if len(ids) * copies > MAX_COPIES:
        raise ValueError(f"{len(ids)} instruments x {copies} copies exceed the {MAX_COPIES} stock locates")
    slot = np.searchsorted(ids, events["instrument"]).astype(np.int64)
    infos = [fp.instrument(i) for i in ids]
    scales = np.array([info.price_scale for info in infos], np.float64)
    tiled = events.copy()
    tiled["price"] = _itch_prices(events, scales, slot, str(source))
    tiled["qty"] = np.clip(events["qty"], 0, 0xFFFFFFFF)
    keys = events["order_id"].astype(np.uint64) ^ (events["instrument"].astype(np.uint64) << np.uint64(40))
    _, dense = np.unique(keys, return_inverse=True)
    n_orders = int(dense.max()) + 1 if len(dense) else 0
    names = [f"{info.symbol[:4]}{c:04d}" for c in range(copies) for info in infos]
    stocks = np.frombuffer("".join(f"{n:<8}"[:8] for n in names).encode("ascii"), np.uint8).reshape(-1, 8).copy()
    ref, left = np.zeros(n_orders, np.int64), np.zeros(n_orders, np.int64)
    st = np.array([0, 1, 1], np.int64)
    tally = np.zeros(T_SIZE, np.int64)
    first_ts = int(tiled["ts_local_ns"][0] or tiled["ts_exch_ns"][0]) % NS_PER_DAY if len(tiled) else 0
    opening = [encode("S", timestamp=first_ts, event_code="O")]
    opening += [encode_stock_directory(i + 1, first_ts, n, 1) for i, n in enumerate(names)]
    buf = np.empty(CHUNK_EVENTS * copies * _MAX_RECORD, np.uint8)
    with open(output, "wb") as out:
        written = out.write(frame(opening))
        for start in range(0, len(tiled), CHUNK_EVENTS):
            part = slice(start, start + CHUNK_EVENTS)
            n = _encode_chunk_nb(buf, tiled[part], dense[part], slot[part], copies, len(ids), stocks, ref, left, st,
                                 tally)  # fmt: skip
            written += out.write(memoryview(buf)[:n])
        written += out.write(frame([encode("S", timestamp=int(st[0]), event_code="C")]))
    encoded = int(tally[:T_SKIPPED].sum())
    return {
        "output": str(output),
        "source": str(source),
        "copies": copies,
        "instruments": [info.symbol for info in infos],
        "messages": len(opening) + 1 + encoded * copies,
        "bytes": written,
        "tally": dict(zip(TALLY_NAMES, (int(x) for x in tally), strict=True)),
    }
