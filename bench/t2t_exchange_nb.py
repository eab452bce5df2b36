"""The tick-to-trade harness's exchange side, compiled: ticks out and orders in without Python.

``run_nb`` plays the exchange of ``hftmm bench t2t`` in one loop that stays in Numba::

    ticks        on a fixed schedule the scripted participant moves its bid and ask one tick (two
                 Replace requests through the real matcher, engine.simexchange.matching_nb.submit_nb);
                 the ITCH records of the change leave at once as MoldUDP64 datagrams (libc send)
    background   optionally, ITCH messages that never move the quotes, at a fixed rate in the same
                 stream: adds deep in the book (4 to 43 ticks behind the participant) and deletes of
                 the oldest, as most messages of a real feed are not the tick that trades
    order entry  the node's session over Aeron's C client (engine.gateway.aeron_c): Login Request ->
                 Login Accepted; every Unsequenced Data packet stamped as the poll returns it, its OUCH
                 Enter / Replace / Cancel matched and answered in Sequenced Data, its ITCH published;
                 a Server Heartbeat, and a MoldUDP64 heartbeat, after ``M_HEARTBEAT_NS`` of silence

It returns to Python (``bench.t2t_exchange``) only when its time slice ends (progress notes, stop
checks) or something is wrong (``RC_*``). It checks what OUCH and the matcher require (increasing
UserRefNums, known orders, symbol, side, time in force, tick, lot) but none of a venue's risk
limits: the node's own risk checks are part of what is measured, the exchange's are not.

The state is one named tuple of arrays (:class:`HarnessState`), borrowed once at the top of the
loop. Order table: one row per live order of the session, row ``UserRefNum & (rows - 1)``; a
UserRefNum whose row is held by another live order is rejected and counted (``M_TABLE_FULL``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from engine.core import events as E
from engine.core.borrow import borrow_all
from engine.core.clock import monotonic_ns
from engine.core.ffi import send_datagram
from engine.gateway import session as SP
from engine.gateway.aeron_c import inbox_clear, inbox_count, inbox_fragment, offer_retry_nb, poll_nb
from engine.simexchange import layout as XL
from engine.simexchange.matching_nb import submit_nb
from feeds import ouch
from feeds.bytes_nb import put_be_nb, u32_nb
from feeds.moldudp64 import COUNT_OFFSET, HEADER_LENGTH, SEQUENCE_OFFSET

# --- owners of the matcher's orders ----------------------------------------------------------------
SESSION_OWNER = 1  # the node's session
BACKGROUND_OWNER = -1  # the background messages' anonymous participants
PARTICIPANT_OWNER = -2  # the scripted participant whose moves are the ticks

# --- meta words (int64; M_LAST_MD_NS: when the last datagram was handed to the kernel) --------------
(M_FD, M_PUBLICATION, M_SUBSCRIPTION, M_HANDLER, M_FRAGMENT_LIMIT, M_SEQ, M_OUT_SEQ, M_LOGGED_IN, M_LOGINS,
 M_LAST_TX_NS, M_HEARTBEAT_NS, M_CLOCK_OFFSET_NS, M_START_NS, M_TICK, M_N_TICKS, M_MID, M_TICK_SIZE, M_LOTS,
 M_LOCATE, M_REF_BID, M_REF_ASK, M_BASE_PRICE, M_BG_SENT, M_BG_LIVE, M_BG_HEAD, M_BG_DEPTH, M_RNG, M_N_ARRIVALS,
 M_LAST_URN, M_DECODE_ERRORS, M_REJECTS, M_OFFER_FAILS, M_SEND_FAILS, M_PROTOCOL_ERRORS, M_SCRIPT_ERRORS,
 M_TABLE_FULL, M_ORDER_MESSAGES, M_LAST_MD_NS, N_META) = range(39)  # fmt: skip
F_TICK_PERIOD_NS, F_BACKGROUND_PERIOD_NS, N_F = range(3)

# --- order table columns --------------------------------------------------------------------------
(OW_URN, OW_REF, OW_HELD, OW_SIDE, OW_TIF, OW_DISPLAY, OW_CAPACITY, OW_ISO, OW_CROSS, OW_ORIG, OW_KIND,
 N_OW) = range(12)  # fmt: skip

# --- return codes ---------------------------------------------------------------------------------
RC_SLICE = 0  # the time slice ended
RC_BOOK_FULL = 1  # the matcher's book tables ran out (sized at start: a harness fault)

MAX_PACKET_BYTES = 1400  # as the simulated exchange's publisher: one Ethernet MTU
MAX_REQUESTS = 64  # requests per match: a tick's two, or a background batch
BACKGROUND_BATCH = 32  # background messages per datagram at most, so a tick is never held long ...
BACKGROUND_HOLD_NS = 20_000  # ... and a datagram waits this long at most for more of them
BACKGROUND_MIN_TICKS = 4  # background orders rest this many ticks or more behind the base price ...
BACKGROUND_SPAN_TICKS = 40  # ... spread over this many levels
OFFER_ATTEMPTS = 64
_K_ENTER, _K_REPLACE, _K_CANCEL = ord("O"), ord("U"), ord("X")
_ORDER_STATE_LIVE = ord(ouch.ORDER_STATE_LIVE)
_CANCEL_USER = ord(ouch.CANCEL_USER_REQUESTED)
_CANCEL_SELF = ord(ouch.CANCEL_SELF_MATCH_PREVENTION)
_CANCEL_IOC = ord(ouch.CANCEL_IOC)


class HarnessState(NamedTuple):
    """Everything the loop reads and writes; Python reads the stamps and counters between slices."""

    meta: np.ndarray  # i8[N_META]
    periods: np.ndarray  # f8[N_F]
    intended: np.ndarray  # i8[ticks]: each tick's scheduled send time (CLOCK_MONOTONIC ns)
    sent: np.ndarray  # i8[ticks]: when the datagram with its newest message left
    first_seq: np.ndarray  # i8[ticks]: MoldUDP64 sequence numbers of its messages: [first_seq, end_seq)
    end_seq: np.ndarray  # i8[ticks]
    arrivals: np.ndarray  # i8[cap]: when each order-entry message from the node was read
    inbox: np.ndarray  # u1: engine.gateway.aeron_c inbox
    requests: np.ndarray  # REQUEST_DTYPE[MAX_REQUESTS]
    reports: np.ndarray  # REPORT_DTYPE
    itch: np.ndarray  # u1: ITCH records of one match ([u16 len][msg])
    filler: np.ndarray  # u1: records that go out before each tick's own, to pad its datagram (may be empty)
    packet: np.ndarray  # u1[MAX_PACKET_BYTES]: a MoldUDP64 datagram, its session preset
    out: np.ndarray  # u1: one outbound session packet
    orders: np.ndarray  # i8[rows, N_OW], rows a power of two
    cl_ord_ids: np.ndarray  # u1[rows + 1, 14]: each order's ClOrdID; the last row stays blank
    symbol: np.ndarray  # u1[8]: the traded instrument's symbol, space padded
    credentials: np.ndarray  # u1[16]: username and password fields of the expected Login Request
    login_accepted: np.ndarray  # u1[19]: Login Accepted, next sequence written at each login
    login_rejected: np.ndarray  # u1[2]
    reject_codes: np.ndarray  # i8[16]: matcher REJ_* -> OUCH reject code
    unknown_codes: np.ndarray  # i8[4]: request kind -> OUCH code for an unknown order
    background: np.ndarray  # i8[depth + BACKGROUND_BATCH]: exchange references of background orders, a ring
    messages: np.ndarray  # ouch.ORDER_MESSAGE_DTYPE[1]: the decoded inbound message


@njit(cache=True, nogil=True, inline="always")
def _send(xs, count, nbytes):
    """Send the packet's ``count`` blocks (``nbytes`` of them) as sequence numbers M_SEQ.. and advance it."""
    meta, packet = xs.meta, xs.packet
    put_be_nb(packet, SEQUENCE_OFFSET, meta[M_SEQ], 8)
    put_be_nb(packet, COUNT_OFFSET, count, 2)
    meta[M_LAST_MD_NS] = monotonic_ns()  # before the call: on loopback the receiver may have it before send returns
    if send_datagram(meta[M_FD], packet.ctypes.data, HEADER_LENGTH + nbytes) < 0:
        meta[M_SEND_FAILS] += 1
    meta[M_SEQ] += count


@njit(cache=True, nogil=True, inline="always")
def _publish(xs, n_itch):
    """Send ``itch[:n_itch]`` (whole records) in as few datagrams as fit ``MAX_PACKET_BYTES``."""
    itch, packet = xs.itch, xs.packet
    room = packet.shape[0] - HEADER_LENGTH
    pos = 0
    used = 0
    count = 0
    while pos < n_itch:
        size = 2 + ((np.int64(itch[pos]) << 8) | np.int64(itch[pos + 1]))
        if used + size > room:
            _send(xs, count, used)
            used = 0
            count = 0
        packet[HEADER_LENGTH + used : HEADER_LENGTH + used + size] = itch[pos : pos + size]
        used += size
        count += 1
        pos += size
    if count:
        _send(xs, count, used)


@njit(cache=True, nogil=True, inline="always")
def _offer(xs, length, now, sequenced):
    """Offer ``out[:length]`` to the node; a Sequenced Data packet takes the next outbound number."""
    meta = xs.meta
    result, _ = offer_retry_nb(meta[M_PUBLICATION], xs.out, 0, length, OFFER_ATTEMPTS)
    if result > 0:
        meta[M_LAST_TX_NS] = now
        if sequenced:
            meta[M_OUT_SEQ] += 1
    else:
        meta[M_OFFER_FAILS] += 1


@njit(cache=True, nogil=True, inline="always")
def _reject(xs, urn, code, row, now, ts):
    """Answer an Order Rejected (``row`` of the order table for its ClOrdID, -1 for a blank one)."""
    out = xs.out
    out[0] = SP.PKT_SEQUENCED
    n = ouch.encode_rejected_nb(out, 1, ts, urn, code, xs.cl_ord_ids[row])  # row -1: the blank one
    xs.meta[M_REJECTS] += 1
    _offer(xs, 1 + n, now, True)


@njit(cache=True, nogil=True, inline="always")
def _answer(xs, rp, now, ts):
    """The OUCH answer to one report about the session's order."""
    orders, out = xs.orders, xs.out
    mask = orders.shape[0] - 1
    urn = np.int64(rp.client_ref)
    s = urn & mask
    o = orders[s]
    kind = rp.kind
    out[0] = SP.PKT_SEQUENCED
    if kind == XL.RPT_ACCEPTED or kind == XL.RPT_REPLACED:
        o[OW_REF] = rp.order_ref
        if kind == XL.RPT_ACCEPTED:
            n = ouch.encode_accepted_nb(out, 1, ts, urn, o[OW_SIDE], rp.qty, xs.symbol, rp.price, o[OW_TIF],
                                        o[OW_DISPLAY], rp.order_ref, o[OW_CAPACITY], o[OW_ISO], o[OW_CROSS],
                                        _ORDER_STATE_LIVE, xs.cl_ord_ids[s])  # fmt: skip
        else:
            old = orders[o[OW_ORIG] & mask]
            if old[OW_URN] == o[OW_ORIG]:
                old[OW_HELD] = 0
            n = ouch.encode_replaced_nb(out, 1, ts, o[OW_ORIG], urn, o[OW_SIDE], rp.qty, xs.symbol, rp.price,
                                        o[OW_TIF], o[OW_DISPLAY], rp.order_ref, o[OW_CAPACITY], o[OW_ISO],
                                        o[OW_CROSS], _ORDER_STATE_LIVE, xs.cl_ord_ids[s])  # fmt: skip
    elif kind == XL.RPT_EXECUTED:
        liquidity = ord("A") if rp.liquidity == XL.LIQ_ADDED else ord("R")
        n = ouch.encode_executed_nb(out, 1, ts, urn, rp.qty, rp.price, liquidity, rp.match_number)
    elif kind == XL.RPT_CANCELED:
        why = _CANCEL_IOC
        if rp.reason == XL.REJ_SELF_TRADE:
            why = _CANCEL_SELF
        elif o[OW_KIND] == XL.REQ_CANCEL:
            why = _CANCEL_USER
        n = ouch.encode_canceled_nb(out, 1, ts, urn, rp.qty, why)
    else:
        code = xs.reject_codes[rp.reason]
        if rp.reason == XL.REJ_UNKNOWN_ORDER:
            code = xs.unknown_codes[o[OW_KIND]]
        o[OW_HELD] = 0  # a rejected Enter or Replace never rests; a rejected Cancel leaves no order either
        _reject(xs, urn, code, s, now, ts)
        return
    if (kind == XL.RPT_EXECUTED or kind == XL.RPT_CANCELED) and rp.leaves == 0:
        o[OW_HELD] = 0
    _offer(xs, 1 + n, now, True)


@njit(cache=True, nogil=True, inline="always")
def _settle(xs, n_rep, now, ts):
    """Act on a match's reports: the participant's and background references, the session's answers."""
    meta = xs.meta
    for i in range(n_rep):
        rp = xs.reports[i]
        if rp.owner == SESSION_OWNER:
            _answer(xs, rp, now, ts)
        elif rp.owner == PARTICIPANT_OWNER:
            if rp.kind == XL.RPT_ACCEPTED or rp.kind == XL.RPT_REPLACED:
                meta[M_REF_BID + np.int64(rp.client_ref)] = rp.order_ref
            elif rp.kind != XL.RPT_CANCELED:
                meta[M_SCRIPT_ERRORS] += 1
        elif rp.kind == XL.RPT_ACCEPTED:  # background
            ring = xs.background
            ring[(meta[M_BG_HEAD] + meta[M_BG_LIVE]) % ring.shape[0]] = rp.order_ref
            meta[M_BG_LIVE] += 1


@njit(cache=True, nogil=True, inline="always")
def _match(xs, st, ms, n_req, itch_start, now):
    """Match ``requests[:n_req]``, answer and publish (``itch[:itch_start]`` goes out first); False when
    the matcher's book tables ran out."""
    ts = now + xs.meta[M_CLOCK_OFFSET_NS]
    requests = xs.requests[:n_req]
    i = 0
    n_itch = itch_start
    while i < n_req:
        i, n_rep, n_itch, status = submit_nb(st, ms, requests, i, ts, xs.reports, 0, xs.itch, n_itch)
        _settle(xs, n_rep, now, ts)
        _publish(xs, n_itch)
        if status == XL.NEED_STATE or (status != XL.DONE and n_rep == 0 and n_itch == 0):
            return False
        n_itch = 0
    return True


@njit(cache=True, nogil=True, inline="always")
def _request(xs, k, owner, kind, client_ref, order_ref, side, price, qty):
    rq = xs.requests[k]
    rq.owner = owner
    rq.kind = kind
    rq.client_ref = client_ref
    rq.order_ref = order_ref
    rq.instrument = xs.meta[M_LOCATE]
    rq.side = side
    rq.price = price
    rq.qty = qty
    rq.tif = XL.TIF_DAY
    rq.post_only = 0


@njit(cache=True, nogil=True, inline="always")
def _tick(xs, st, ms, now):
    """Send tick ``M_TICK``: the participant's bid and ask one tick up (even ticks) or down (odd), the side
    in the direction of the move first so that the book never crosses; stamp it."""
    meta = xs.meta
    t = meta[M_TICK]
    step = meta[M_TICK_SIZE]
    up = t % 2 == 0
    mid = meta[M_MID] + (step if up else -step)
    meta[M_MID] = mid
    for k in range(2):
        ask = (k == 0) == up
        side = 1 if ask else 0
        price = mid + (step if ask else -step)
        _request(xs, k, PARTICIPANT_OWNER, XL.REQ_REPLACE, side, meta[M_REF_BID + side],
                 E.SIDE_ASK if ask else E.SIDE_BID, price, meta[M_LOTS])  # fmt: skip
    filler = xs.filler.shape[0]
    xs.itch[:filler] = xs.filler
    first = meta[M_SEQ]
    ok = _match(xs, st, ms, 2, filler, now)
    xs.sent[t] = meta[M_LAST_MD_NS]  # the datagram with the tick's newest message was the match's last
    xs.intended[t] = meta[M_START_NS] + np.int64(t * xs.periods[F_TICK_PERIOD_NS])
    xs.first_seq[t] = first
    xs.end_seq[t] = meta[M_SEQ]
    meta[M_TICK] = t + 1
    return ok


@njit(cache=True, nogil=True, inline="always")
def _random(meta):
    """xorshift64: the next pseudo-random 64-bit number of the background's stream."""
    x = meta[M_RNG]
    x ^= x << 13
    x ^= (x >> 7) & 0x01FFFFFFFFFFFFFF
    x ^= x << 17
    meta[M_RNG] = x
    return x & 0x7FFFFFFFFFFFFFFF


@njit(cache=True, nogil=True, inline="always")
def _background(xs, st, ms, now):
    """Send the background messages due by ``now`` in one datagram once BACKGROUND_BATCH are due or the
    first has waited BACKGROUND_HOLD_NS: an add deep in the book while fewer than M_BG_DEPTH rest, else a
    delete of the oldest. 0 when none was sent, -1 when the book is full."""
    meta, period = xs.meta, xs.periods[F_BACKGROUND_PERIOD_NS]
    if period <= 0:
        return 0
    ring = xs.background
    sent = meta[M_BG_SENT]
    first_due = meta[M_START_NS] + np.int64(sent * period)
    if now < first_due:
        return 0
    due = min(BACKGROUND_BATCH, max(1, np.int64((now - meta[M_START_NS]) / period) + 1 - sent))
    if due < BACKGROUND_BATCH and now - first_due < BACKGROUND_HOLD_NS:
        return 0  # wait for a fuller datagram, as a feed handler's packets carry several messages
    resting = meta[M_BG_LIVE]  # acknowledged, and added in this batch
    for k in range(due):
        if resting < meta[M_BG_DEPTH] or meta[M_BG_LIVE] == 0:
            resting += 1
            r = _random(meta)
            ask = r & 1
            ticks = BACKGROUND_MIN_TICKS + (r >> 1) % BACKGROUND_SPAN_TICKS
            offset = (ticks + ask) * meta[M_TICK_SIZE]  # the ask side also clears the mid's one-tick swing
            price = meta[M_BASE_PRICE] + offset if ask else meta[M_BASE_PRICE] - offset
            lots = 1 + (r >> 8) % 10
            _request(xs, k, BACKGROUND_OWNER, XL.REQ_NEW, 0, 0, E.SIDE_ASK if ask else E.SIDE_BID, price,
                     lots * meta[M_LOTS])  # fmt: skip
        else:
            _request(xs, k, BACKGROUND_OWNER, XL.REQ_CANCEL, 0, ring[meta[M_BG_HEAD]], 0, 0, 0)
            meta[M_BG_HEAD] = (meta[M_BG_HEAD] + 1) % ring.shape[0]
            meta[M_BG_LIVE] -= 1
            resting -= 1
    meta[M_BG_SENT] = sent + due
    return 1 if _match(xs, st, ms, due, 0, now) else -1


@njit(cache=True, nogil=True, inline="always")
def _hold(xs, urn, now, ts):
    """The order table row for a new UserRefNum, or -1 (answered) when another live order holds it."""
    orders = xs.orders
    s = urn & (orders.shape[0] - 1)
    if orders[s, OW_HELD] and orders[s, OW_URN] != urn:
        xs.meta[M_TABLE_FULL] += 1
        _reject(xs, urn, ouch.REJECT_OTHER, -1, now, ts)
        return -1
    return s


@njit(cache=True, nogil=True, inline="always")
def _held(xs, urn):
    """The order table row of the live order ``urn``, or -1."""
    s = urn & (xs.orders.shape[0] - 1)
    return s if xs.orders[s, OW_HELD] and xs.orders[s, OW_URN] == urn else -1


@njit(cache=True, nogil=True, inline="always")
def _order_message(xs, st, ms, data, off, length, now):
    """One OUCH inbound message from the node: decode, check, match, answer, publish. False: book full."""
    meta, orders = xs.meta, xs.orders
    ts = now + meta[M_CLOCK_OFFSET_NS]
    meta[M_ORDER_MESSAGES] += 1
    if ouch.decode_inbound_nb(data, off, length, xs.messages, 0) < 0:
        meta[M_DECODE_ERRORS] += 1
        _reject(xs, u32_nb(data, off + 1) if length >= 5 else 0, ouch.REJECT_OTHER, -1, now, ts)
        return True
    m = xs.messages[0]
    urn = np.int64(m.user_ref_num)
    kind = m.kind
    if kind in (_K_ENTER, _K_REPLACE):
        if urn <= meta[M_LAST_URN]:
            _reject(xs, urn, ouch.REJECT_OTHER, -1, now, ts)
            return True
        meta[M_LAST_URN] = urn
    if kind == _K_ENTER:
        side = E.SIDE_BID if m.side == ord(ouch.SIDE_BUY) else E.SIDE_NONE
        if m.side == ord(ouch.SIDE_SELL) or m.side == ord(ouch.SIDE_SELL_SHORT):
            side = E.SIDE_ASK
        if m.side == ord(ouch.SIDE_SELL_SHORT_EXEMPT):
            side = E.SIDE_ASK
        tif = XL.TIF_DAY if m.time_in_force == ord(ouch.TIF_DAY) else -1
        if m.time_in_force == ord(ouch.TIF_IOC):
            tif = XL.TIF_IOC
        code = 0
        for k in range(8):
            if m.symbol[k] != xs.symbol[k]:
                code = ouch.REJECT_INVALID_SYMBOL
        if code == 0 and side == E.SIDE_NONE:
            code = ouch.REJECT_INVALID_SIDE
        if code == 0 and tif < 0:
            code = ouch.REJECT_OTHER
        if code:
            _reject(xs, urn, code, -1, now, ts)
            return True
        s = _hold(xs, urn, now, ts)
        if s < 0:
            return True
        o = orders[s]
        o[OW_SIDE], o[OW_CAPACITY], o[OW_CROSS] = m.side, m.capacity, m.cross_type
        o[OW_ORIG] = 0
        _request(xs, 0, SESSION_OWNER, XL.REQ_NEW, urn, 0, side, min(m.price, XL.PRICE_MAX + 1), m.quantity)
        xs.requests[0].tif = tif
        request = XL.REQ_NEW
    elif kind == _K_REPLACE:
        old = _held(xs, m.orig_user_ref_num)
        if old < 0:
            _reject(xs, urn, xs.unknown_codes[XL.REQ_REPLACE], -1, now, ts)
            return True
        s = _hold(xs, urn, now, ts)
        if s < 0:
            return True
        o = orders[s]
        o[OW_SIDE], o[OW_CAPACITY], o[OW_CROSS] = orders[old, OW_SIDE], orders[old, OW_CAPACITY], orders[old, OW_CROSS]
        o[OW_ORIG] = m.orig_user_ref_num
        _request(xs, 0, SESSION_OWNER, XL.REQ_REPLACE, urn, orders[old, OW_REF], 0,
                 min(m.price, XL.PRICE_MAX + 1), m.quantity)  # fmt: skip
        request = XL.REQ_REPLACE
    elif kind == _K_CANCEL:
        s = _held(xs, urn)
        if s < 0:
            _reject(xs, urn, xs.unknown_codes[XL.REQ_CANCEL], -1, now, ts)
            return True
        orders[s, OW_KIND] = XL.REQ_CANCEL
        _request(xs, 0, SESSION_OWNER, XL.REQ_CANCEL, urn, orders[s, OW_REF], 0, 0, m.quantity)
        return _match(xs, st, ms, 1, 0, now)
    else:
        _reject(xs, urn, ouch.REJECT_OTHER, -1, now, ts)
        return True
    o = orders[s]
    o[OW_URN], o[OW_HELD], o[OW_KIND], o[OW_REF] = urn, 1, request, 0
    o[OW_TIF], o[OW_DISPLAY], o[OW_ISO] = m.time_in_force, m.display, m.iso
    xs.cl_ord_ids[s, :] = m.cl_ord_id
    xs.requests[0].post_only = m.post_only
    return _match(xs, st, ms, 1, 0, now)


@njit(cache=True, nogil=True, inline="always")
def _session_packet(xs, st, ms, data, off, length, now):
    """One packet from the node's session: login, heartbeat, logout or an OUCH message. False: book full."""
    meta = xs.meta
    kind = data[off]
    if kind == SP.PKT_LOGIN_REQUEST:
        credentials = xs.credentials
        good = length == SP.LOGIN_REQUEST_LEN
        for k in range(credentials.shape[0]):
            if good and data[off + SP.LOGIN_USERNAME_OFFSET + k] != credentials[k]:
                good = False
        answer = xs.login_accepted if good else xs.login_rejected
        if good:
            put_be_nb(answer, SP.ACCEPTED_SEQUENCE_OFFSET, meta[M_OUT_SEQ], 8)
            meta[M_LOGGED_IN] = 1
            meta[M_LOGINS] += 1
        xs.out[: answer.shape[0]] = answer
        _offer(xs, answer.shape[0], now, False)
        return True
    if meta[M_LOGGED_IN] == 0:
        meta[M_PROTOCOL_ERRORS] += 1
        return True
    if kind == SP.PKT_UNSEQUENCED:
        return _order_message(xs, st, ms, data, off + 1, length - 1, now)
    if kind == SP.PKT_LOGOUT:
        meta[M_LOGGED_IN] = 0
    elif kind != SP.PKT_CLIENT_HEARTBEAT:
        meta[M_PROTOCOL_ERRORS] += 1
    return True


@njit(cache=True, nogil=True)
def run_nb(xs, st, ms, until_ns, ticking):
    """Duty cycles until ``until_ns`` (RC_SLICE) or a fault (RC_*): ticks and background while ``ticking``,
    the node's session always. ``st``, ``ms``: the matcher's book and tables (engine.simexchange.matching)."""
    xs = borrow_all(xs)
    meta, inbox = xs.meta, xs.inbox
    inbox_address = inbox.ctypes.data
    while True:
        now = monotonic_ns()
        if now >= until_ns:
            return RC_SLICE
        t = meta[M_TICK]
        if ticking and t < meta[M_N_TICKS] and now >= meta[M_START_NS] + np.int64(t * xs.periods[F_TICK_PERIOD_NS]):
            if not _tick(xs, st, ms, now):
                return RC_BOOK_FULL
        elif ticking and _background(xs, st, ms, now) < 0:
            return RC_BOOK_FULL
        if poll_nb(meta[M_SUBSCRIPTION], meta[M_HANDLER], inbox_address, meta[M_FRAGMENT_LIMIT]) > 0:
            read = monotonic_ns()
            count = inbox_count(inbox)
            for f in range(count):  # stamp every order before handling any
                off, length, _ = inbox_fragment(inbox, f)
                if length > 0 and inbox[off] == SP.PKT_UNSEQUENCED and meta[M_N_ARRIVALS] < xs.arrivals.shape[0]:
                    xs.arrivals[meta[M_N_ARRIVALS]] = read
                    meta[M_N_ARRIVALS] += 1
            for f in range(count):
                off, length, _ = inbox_fragment(inbox, f)
                if length > 0 and not _session_packet(xs, st, ms, inbox, off, length, read):
                    inbox_clear(inbox)
                    return RC_BOOK_FULL
            inbox_clear(inbox)
        else:
            if meta[M_LOGGED_IN] and now - meta[M_LAST_TX_NS] >= meta[M_HEARTBEAT_NS]:
                xs.out[0] = SP.PKT_SERVER_HEARTBEAT
                _offer(xs, 1, now, False)
            if meta[M_LAST_MD_NS] and now - meta[M_LAST_MD_NS] >= meta[M_HEARTBEAT_NS]:  # once the feed is open
                _send(xs, 0, 0)  # a MoldUDP64 heartbeat: the next sequence number, no message


@njit(cache=True, nogil=True)
def match_nb(xs, st, ms, n_req, now):
    """Match, answer and publish ``requests[:n_req]`` outside the loop (the session's opening); False: book full."""
    return _match(borrow_all(xs), st, ms, n_req, 0, now)


@njit(cache=True, nogil=True)
def publish_nb(xs, records):
    """Send framed ITCH ``records`` (the session's opening messages) in MoldUDP64 datagrams."""
    xs = borrow_all(xs)
    xs.itch[: records.shape[0]] = records
    _publish(xs, records.shape[0])
