"""Compiled kernels of the background order flow (``engine.simexchange.flow`` is the Python face).

The flow is a Gillespie simulation of competing Poisson processes per instrument ``b``: limit orders
at ``limit_rate`` (side by a fair coin, distance ``d`` in 1..depth ticks from the opposite side's
reference by the cumulative profile ``cdf[b]``), market orders (IOC) at ``market_rate`` and
cancels at ``cancel_rate`` per acknowledged resting background order. The fair value ``fv[b]``
(ticks, float) is a Brownian motion updated at each of the instrument's events. Tables:

    fp     f8[B, 4]  limit, market, cancel rate (1/s), fair-value volatility (ticks per sqrt(s))
    ip     i8[B, 5]  locate, tick (price units), lot (shares), depth (ticks), highest price (ticks)
    sizep  f8[B]     geometric size parameter (1 / mean size in lots)
    slots  i8[N, 6]  one row per background order: state, exchange ref, book, side, price (ticks),
                     position in its book's live list (-1: not listed)
    free   i8[N]     stack of free slot rows (``meta[MT_FREE]`` of them)
    live   i8[B, N]  acknowledged, cancelable slots of each book (``n_live[b]`` of them)
    bounds i8[B, 2]  highest background bid, lowest background ask (ticks): a limit order reaching
                     the other side's bound may trade against a background order
    meta   i8[4]     clock (ns), free count, dirty flag, book of a cancel due now (or -1)

A cancel may only target an order still resting, so once a request that can trade against a
background order (any market order, or a limit order reaching the contra bound) is in the batch,
the next cancel waits (status ``WAIT_REPORTS``) until the engine's reports have been applied.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.borrow import borrow
from engine.core.units import NS_PER_S
from engine.simexchange import layout as L

IOC_CLIENT = 0xFFFFFFFF  # client_ref of market orders: they never rest, so no slot tracks them

# statuses of generate_nb
DONE, OUT_FULL, NEED_SLOTS, WAIT_REPORTS = 0, 1, 2, 3

FP_LIMIT, FP_MARKET, FP_CANCEL, FP_VOL = range(4)
IP_LOCATE, IP_TICK, IP_LOT, IP_DEPTH, IP_MAX_TICKS = range(5)
SL_STATE, SL_REF, SL_BOOK, SL_SIDE, SL_PRICE, SL_POS = range(6)
ST_FREE, ST_PENDING, ST_LIVE, ST_CANCELING = range(4)
BD_BID, BD_ASK = range(2)
MT_NOW, MT_FREE, MT_DIRTY, MT_CANCEL_BOOK = range(4)
NO_BID, NO_ASK = -(1 << 62), 1 << 62


@njit(cache=True, nogil=True, inline="always")
def _write_nb(out, n, owner, ref, price, qty, client_ref, locate, kind, side, tif):
    r = out[n]
    r.owner = owner
    r.order_ref = ref
    r.price = price
    r.qty = qty
    r.client_ref = client_ref
    r.instrument = locate
    r.kind = kind
    r.side = side
    r.tif = tif
    r.post_only = 0


@njit(cache=True, nogil=True)
def generate_nb(rng, fp, ip, cdf, sizep, fv, fv_ns, slots, free, live, n_live, bounds, meta, owner, until_ns, out):
    """Write the requests due up to ``until_ns`` into ``out``; returns ``(count, status)``.

    DONE: the clock reached ``until_ns``. OUT_FULL / NEED_SLOTS: grow ``out`` / the slot tables and
    call again. WAIT_REPORTS: a cancel is due but the batch may have traded; apply reports first.
    """
    fp, ip, cdf, sizep, fv, fv_ns = borrow(fp), borrow(ip), borrow(cdf), borrow(sizep), borrow(fv), borrow(fv_ns)
    slots, free, live, n_live = borrow(slots), borrow(free), borrow(live), borrow(n_live)
    bounds, meta, out = borrow(bounds), borrow(meta), borrow(out)
    n_books = fp.shape[0]
    n = 0
    while True:
        if n == out.shape[0]:
            return n, OUT_FULL
        b = meta[MT_CANCEL_BOOK]
        if b >= 0:
            if meta[MT_DIRTY]:
                return n, WAIT_REPORTS
            meta[MT_CANCEL_BOOK] = -1
            if n_live[b] > 0:
                s = live[b, int(rng.random() * n_live[b])]
                _unlist_nb(slots, live, n_live, s)
                slots[s, SL_STATE] = ST_CANCELING
                _write_nb(out, n, owner, slots[s, SL_REF], 0, 0, s, ip[b, IP_LOCATE], L.REQ_CANCEL, 0, L.TIF_DAY)
                n += 1
            continue
        if meta[MT_FREE] == 0:
            return n, NEED_SLOTS
        total = 0.0
        for k in range(n_books):
            total += fp[k, FP_LIMIT] + fp[k, FP_MARKET] + fp[k, FP_CANCEL] * n_live[k]
        if total <= 0.0:
            meta[MT_NOW] = until_ns
            return n, DONE
        t = meta[MT_NOW] + np.int64(rng.exponential(1.0 / total) * NS_PER_S)
        if t > until_ns:  # memoryless: drop the draw, the next call draws again from until_ns
            meta[MT_NOW] = until_ns
            return n, DONE
        meta[MT_NOW] = t
        u = rng.random() * total
        b = 0
        kind = 0
        while True:
            if u < fp[b, FP_LIMIT]:
                kind = 0
                break
            u -= fp[b, FP_LIMIT]
            if u < fp[b, FP_MARKET]:
                kind = 1
                break
            u -= fp[b, FP_MARKET]
            c = fp[b, FP_CANCEL] * n_live[b]
            if u < c or b == n_books - 1:
                kind = 2
                break
            u -= c
            b += 1
        fv[b] += fp[b, FP_VOL] * math.sqrt((t - fv_ns[b]) / NS_PER_S) * rng.normal()
        fv_ns[b] = t
        if kind == 2:
            meta[MT_CANCEL_BOOK] = b
            continue
        bid = rng.random() < 0.5
        lots = np.int64(rng.geometric(sizep[b]))
        tick, top = ip[b, IP_TICK], ip[b, IP_MAX_TICKS]
        if kind == 1:
            depth = ip[b, IP_DEPTH]
            price = math.ceil(fv[b]) + depth - 1 if bid else math.floor(fv[b]) - depth + 1
            price = min(max(np.int64(price), 1), top)
            meta[MT_DIRTY] = 1
            _write_nb(
                out, n, owner, 0, price * tick, lots * ip[b, IP_LOT], IOC_CLIENT, ip[b, IP_LOCATE], L.REQ_NEW,
                E.SIDE_BID if bid else E.SIDE_ASK, L.TIF_IOC,
            )  # fmt: skip
            n += 1
            continue
        d = np.int64(np.searchsorted(cdf[b], rng.random(), side="right")) + 1
        price = math.floor(fv[b]) + 1 - d if bid else math.ceil(fv[b]) - 1 + d
        price = min(max(np.int64(price), 1), top)
        if bid:
            if price >= bounds[b, BD_ASK]:
                meta[MT_DIRTY] = 1
            bounds[b, BD_BID] = max(bounds[b, BD_BID], price)
        else:
            if price <= bounds[b, BD_BID]:
                meta[MT_DIRTY] = 1
            bounds[b, BD_ASK] = min(bounds[b, BD_ASK], price)
        meta[MT_FREE] -= 1
        s = free[meta[MT_FREE]]
        slots[s, SL_STATE] = ST_PENDING
        slots[s, SL_REF] = 0
        slots[s, SL_BOOK] = b
        slots[s, SL_SIDE] = E.SIDE_BID if bid else E.SIDE_ASK
        slots[s, SL_PRICE] = price
        slots[s, SL_POS] = -1
        _write_nb(
            out, n, owner, 0, price * tick, lots * ip[b, IP_LOT], s, ip[b, IP_LOCATE], L.REQ_NEW,
            E.SIDE_BID if bid else E.SIDE_ASK, L.TIF_DAY,
        )  # fmt: skip
        n += 1


@njit(cache=True, nogil=True, inline="always")
def _unlist_nb(slots, live, n_live, s):
    """Take slot ``s`` out of its book's live list (swap with the last)."""
    b, p = slots[s, SL_BOOK], slots[s, SL_POS]
    last = live[b, n_live[b] - 1]
    live[b, p] = last
    slots[last, SL_POS] = p
    n_live[b] -= 1
    slots[s, SL_POS] = -1


@njit(cache=True, nogil=True, inline="always")
def _release_nb(slots, free, live, n_live, meta, s):
    if slots[s, SL_POS] >= 0:
        _unlist_nb(slots, live, n_live, s)
    slots[s, SL_STATE] = ST_FREE
    free[meta[MT_FREE]] = s
    meta[MT_FREE] += 1


@njit(cache=True, nogil=True)
def apply_reports_nb(reports, owner, slots, free, live, n_live, bounds, meta):
    """Track the background orders through the engine's reports (others' rows are skipped), then
    recompute the bounds and clear the dirty flag. Returns the number of rejected background requests."""
    reports, slots, free = borrow(reports), borrow(slots), borrow(free)
    live, n_live, bounds, meta = borrow(live), borrow(n_live), borrow(bounds), borrow(meta)
    rejected = 0
    for i in range(reports.shape[0]):
        r = reports[i]
        if r.owner != owner:
            continue
        if r.kind == L.RPT_REJECTED:
            rejected += 1
        s = np.int64(r.client_ref)
        if r.client_ref == IOC_CLIENT or s >= slots.shape[0] or slots[s, SL_STATE] == ST_FREE:
            continue
        if r.kind == L.RPT_ACCEPTED:
            slots[s, SL_REF] = np.int64(r.order_ref)
            if slots[s, SL_STATE] == ST_PENDING:
                b = slots[s, SL_BOOK]
                slots[s, SL_STATE] = ST_LIVE
                slots[s, SL_POS] = n_live[b]
                live[b, n_live[b]] = s
                n_live[b] += 1
        if r.kind == L.RPT_REJECTED or r.leaves == 0:
            _release_nb(slots, free, live, n_live, meta, s)
    bounds[:, BD_BID] = NO_BID
    bounds[:, BD_ASK] = NO_ASK
    for s in range(slots.shape[0]):
        if slots[s, SL_STATE] != ST_FREE:
            b, price = slots[s, SL_BOOK], slots[s, SL_PRICE]
            if slots[s, SL_SIDE] == E.SIDE_BID:
                bounds[b, BD_BID] = max(bounds[b, BD_BID], price)
            else:
                bounds[b, BD_ASK] = min(bounds[b, BD_ASK], price)
    meta[MT_DIRTY] = 0
    return rejected
