"""The trading node's duty cycle, compiled: packet in hand to order offered without Python.

``run_nb`` busy-polls and stays in compiled code for every ordinary tick::

    recv(MSG_DONTWAIT)          the market-data socket (engine.core.ffi)
    take_datagram_nb            MoldUDP64 sequencing + ITCH decode of the in-order datagram (feeds.udp)
    poll_session_nb             the order-entry subscription: Sequenced Data -> responses (engine.gateway.client)
    append_responses_nb         responses into the journal ring, before the OMS sees them
    node_nb.step_nb             responses -> book -> strategy -> plan -> risk -> OUCH bytes (journaled)
    offer_session_nb            each message onto the Aeron publication (engine.gateway.aeron_c)

and returns to Python (``engine.live.node``) only for what is rare or slow by nature, with an
``RC_*`` code (``engine.live.layout``): a datagram that is not the in-order case (a gap, a
retransmission, another session, end of session: the Python receiver buffers, re-requests and
gives up), a session packet (login answer, logout, end of session) or server silence, the book to
grow, the daemon's stop or kill, messages Aeron would not take, risk rejections to log, and, every
``LS_DUE_NS``, housekeeping (feed counters into the metrics block, capture flush, stop checks).
The state it works on is the node's (``NodeState``) and the receiver's and client's arrays
(``LoopState``); Python reads and writes the same arrays, so either side can take over at any
return. Entering costs one call per return, not per tick.

Everything on the tick's path is inlined into ``run_nb`` (``_step``, ``node_nb.step_nb`` and its helpers):
a call between Numba functions pays, at run time, a reference-count call for every array of the state it
is passed (these states hold dozens), which cost more than the work of the step itself.
"""

from __future__ import annotations

from numba import njit

from engine.core.borrow import borrow_all
from engine.core.clock import stamp_ns
from engine.core.ffi import recv_dontwait
from engine.gateway.aeron_c import inbox_count
from engine.gateway.client import (
    CS_HANDLED,
    CS_LAST_RX_NS,
    CS_LOGGED_IN,
    CS_N_RESPONSES,
    CS_NEXT_SEQUENCE,
    heartbeat_nb,
    offer_session_nb,
    poll_session_nb,
)
from engine.live import layout as L
from engine.live.journal import J_READ, J_WRITE, append_responses_nb
from engine.live.node_nb import step_nb
from engine.runtime import control as CB
from engine.trading import layout as TL
from feeds.udp import TAKE_SLOW, take_datagram_nb


@njit(cache=True, nogil=True, inline="always")
def _offer_all(ns, lp, count, now_ns):
    """Offer the step's ``count`` messages in order; RC_BACKLOG (with LS_BACKLOG/LS_COUNT) when Aeron
    or a session that is not logged in does not take one, else RC_NONE."""
    ls, cs = lp.ls, lp.cs
    for j in range(count):
        start = ns.out_off[j]
        if j == 0:  # tick-to-trade ends as the first order is handed to Aeron
            ns.mi[L.NI_OFFER_NS] = stamp_ns(ns.mi, L.NI_CLOCK)
        if cs[CS_LOGGED_IN] == 0 or not offer_session_nb(cs, ns.out, start, ns.out_off[j + 1] - start, now_ns):
            ls[L.LS_BACKLOG] = j
            ls[L.LS_COUNT] = count
            ls[L.LS_BACK_PRESSURE] += 1
            return L.RC_BACKLOG
    return L.RC_NONE


@njit(cache=True, nogil=True, inline="always")
def _step(ns, lp, book, rows, now_ns, quote):
    """Journal the responses, run the step over ``rows`` events, offer what it wrote; an RC_* or RC_NONE."""
    ls, cs, mi = lp.ls, lp.cs, ns.mi
    n = cs[CS_N_RESPONSES]
    if n and mi[L.NI_EV_DONE] == 0:
        append_responses_nb(ns.jmeta, ns.jdata, ns.jctl, lp.responses_raw, n, cs[CS_NEXT_SEQUENCE] - n, now_ns)
    count = step_nb(ns, book, lp.events[:rows], lp.responses, n, now_ns, quote)
    cs[CS_N_RESPONSES] = 0
    if count < 0:
        ls[L.LS_ROWS] = rows
        return L.RC_GROW
    if ls[L.LS_JOURNAL] == 0:
        ns.jctl[J_READ] = ns.jctl[J_WRITE]
    rc = _offer_all(ns, lp, count, now_ns)
    if rc != L.RC_NONE:
        return rc
    if ns.rstate[TL.RS_LOGGED] > ls[L.LS_RISK_LOGGED]:
        return L.RC_LOG
    return L.RC_STEPPED if mi[L.NI_STOP] else L.RC_NONE


@njit(cache=True, nogil=True)
def run_nb(ns, lp, book, quote):
    """Run duty cycles until something needs Python (see the module doc); the RC_* code saying what."""
    ns = borrow_all(ns)  # the caller holds the arrays: no reference counting in the helpers below
    lp = borrow_all(lp)
    ls, cs, mi, control = lp.ls, lp.cs, ns.mi, ns.control
    slot_address = lp.slot.ctypes.data
    resume = mi[L.NI_EV_DONE] != 0  # the book grew mid-step: the first cycle finishes that step, reading nothing
    idle = 0
    while True:
        now = stamp_ns(mi, L.NI_CLOCK)
        work = 0
        rows = ls[L.LS_ROWS] if resume else 0
        if not resume:
            if now >= ls[L.LS_DUE_NS]:
                return L.RC_HOUSEKEEPING
            if (control[CB.CT_KILL] != 0 and ls[L.LS_KILL_SEEN] == 0) or (
                control[CB.CT_STOP] != 0 and mi[L.NI_STOP] == 0
            ):
                return L.RC_CONTROL
            got = recv_dontwait(ls[L.LS_FD], slot_address, lp.slot.shape[0])
            if got >= 0:
                received = stamp_ns(mi, L.NI_CLOCK)
                rows = take_datagram_nb(lp.rx, lp.slot, got, received, lp.events, lp.counts, lp.directory, lp.tracker)
                if rows < 0:
                    ls[L.LS_LENGTH] = got
                    ls[L.LS_TS_NS] = received
                    return L.RC_DATAGRAM if rows == TAKE_SLOW else L.RC_FEED_ERROR
                work += 1
                if rows > 0:
                    mi[L.NI_DECODED_NS] = stamp_ns(mi, L.NI_CLOCK)
            work += poll_session_nb(cs, lp.inbox, ls[L.LS_HANDLER], lp.responses, ls[L.LS_FRAGMENT_LIMIT], now)
            silent = cs[CS_LOGGED_IN] != 0 and now - cs[CS_LAST_RX_NS] > ls[L.LS_TIMEOUT_NS]
            if silent or cs[CS_HANDLED] < inbox_count(lp.inbox):
                return L.RC_SESSION
            work += heartbeat_nb(cs, lp.heartbeat, ls[L.LS_HEARTBEAT_NS], now)
        if resume or rows > 0 or cs[CS_N_RESPONSES] > 0 or now >= mi[L.NI_NEXT_WAKE]:
            resume = False
            work += 1
            rc = _step(ns, lp, book, rows, now, quote)  # the one call site: the whole step is inlined here
            if rc != L.RC_NONE:
                return rc
        ls[L.LS_CYCLES] += 1
        ls[L.LS_MAX_CYCLE_NS] = max(ls[L.LS_MAX_CYCLE_NS], stamp_ns(mi, L.NI_CLOCK) - now)
        if work:
            idle = 0
        else:
            idle += 1
            if ls[L.LS_IDLE_LIMIT] and idle >= ls[L.LS_IDLE_LIMIT]:
                return L.RC_IDLE
