"""The trading node's scalars, tick-to-trade probes and state tuple (``node_nb`` is its step), imported as ``L``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.core.clock import CLOCK_WORDS

# --- node scalars: mi[NI_*] -------------------------------------------------------------------
(
    NI_HALT,  # 1 while the feed has a gap (or lost messages): cancel everything, quote nothing
    NI_STOP,  # 1 once shutdown began: cancel everything, quote nothing
    NI_EV_DONE,  # events of the current batch already applied (resume point after the book grew)
    NI_RECV_NS,  # receive time of the newest packet of the batch
    NI_SEQ,  # sequence number of the newest message of the batch
    NI_DECODED_NS,  # written by Python: when the batch's rows were ready (0: no market data)
    NI_STEP_NS,  # when this step began
    NI_RISK_NS,  # time spent in pre-trade checks during this step
    NI_ENCODE_NS,  # time spent encoding OUCH during this step
    NI_PROBE_OPEN,  # 1: the newest probe row waits for its offer time
    NI_OFFER_NS,  # written by Python: when the previous call's packets were offered
    NI_PROBES,  # probe rows completed (the ring keeps the latest)
    NI_MESSAGES,  # OUCH messages written since start
    NI_NEXT_WAKE,  # earliest time a strategy is due
    NI_POST_ONLY,
    NI_REPLACE,  # 1: requotes go out as OUCH Replace Orders (0: cancel + enter, for a venue without replace)
    NI_CLOCK,  # the stamp clock (engine.core.clock.stamp_ns): CLOCK_WORDS words from here
) = range(17)
N_NI = NI_CLOCK + CLOCK_WORDS

# --- tick-to-trade probes: probes[n % P, PR_*], one row per market-data batch that made the node send ---
(
    PR_SEQ,  # sequence number of the newest message of the batch
    PR_RECV_NS,  # its packet was in hand (receive time)
    PR_DECODED_NS,  # the batch's event rows were ready
    PR_STEP_NS,  # the compiled step began
    PR_BOOKED_NS,  # responses reconciled and events applied to the book
    PR_RISK_NS,  # duration of the pre-trade checks
    PR_ENCODE_NS,  # duration of the OUCH encoding
    PR_STEPPED_NS,  # the step returned its messages
    PR_OFFERED_NS,  # its first message was handed to Aeron
    PR_FIRST_MESSAGE,  # index of the step's first message among all the node sent (0-based)
    PR_MESSAGES,  # messages the step wrote
) = range(11)
N_PR = 11
# stages of tick-to-trade (histogram rows 1 + s of the metrics block); they add up to offered - received
STAGES = ("decode", "dispatch", "book", "strategy", "risk", "encode", "offer")
STALE, FRESH = 1, 2  # dirty[i]: market data since the previous call, from an earlier step / from this one
MESSAGE_BYTES = 64  # room per message in ``out`` (Enter Order 47 / Replace Order 40 + appendage 3, Cancel 9, + 1)


class NodeState(NamedTuple):
    """Every array ``step_nb`` reads or writes (built by ``engine.live.builder``); n instruments, R order rows.

    It has every field the trading core reads (``engine.trading.core``), under the core's names."""

    own: np.ndarray  # i8[n, R, TL.N_OW]
    oc: np.ndarray  # i8[TL.N_OC]
    inst: np.ndarray  # i8[n, TL.N_IN]
    money: np.ndarray  # f8[n, TL.N_MN]
    flow: np.ndarray  # f8[n, TL.N_FS]
    symbols: np.ndarray  # u1[n, 8] space-padded OUCH symbols
    cl_ord_id: np.ndarray  # u1[14] (blank)
    limits: np.ndarray  # f8[TL.N_LIMITS]
    rstate: np.ndarray  # f8[TL.N_RS]
    rlog: np.ndarray  # i8[TL.LOG_ROWS, TL.N_LG]
    mi: np.ndarray  # i8[N_NI]
    next_call: np.ndarray  # i8[n]
    last_call: np.ndarray  # i8[n]  (-1: never called)
    dirty: np.ndarray  # i8[n]  0, STALE or FRESH: market data since the strategy's previous call
    scratch: np.ndarray  # f8[3, n] positions, working buys, working sells (units), for risk
    sview: np.ndarray  # f8[VIEW_LEN] what the strategy sees
    params: np.ndarray  # f8[P]
    sstate: np.ndarray  # f8[n, state size]
    quotes: np.ndarray  # f8[MAX_LEVELS, 4]
    depth: np.ndarray  # i8[DEPTH, 3]
    actions: np.ndarray  # i8[R + 2 MAX_LEVELS, N_AC]
    out: np.ndarray  # u1[K * MESSAGE_BYTES]
    out_off: np.ndarray  # i8[K + 1]
    probes: np.ndarray  # i8[P, N_PR] ring of tick-to-trade probes
    jmeta: np.ndarray  # journal ring (engine.live.journal): i8[capacity, N_META]
    jdata: np.ndarray  # u1[capacity, RECORD_BYTES]
    jctl: np.ndarray  # i8[N_CTL]
    node: np.ndarray  # metrics block: i8[N_NODE_SLOTS]
    counters: np.ndarray  # metrics block: i8[n, N_INSTRUMENT_COUNTERS]
    gauges: np.ndarray  # metrics block: f8[n, N_INSTRUMENT_GAUGES]
    risk_counts: np.ndarray  # metrics block: i8[n, len(RISK_REASONS)]
    hist: np.ndarray  # metrics block: i8[1 + stages, HIST_WIDTH]
    control: np.ndarray  # control block: i8[CT_SLOTS] (engine.runtime.control)
    control_next_id: np.ndarray  # i8[1] view of the control block slot that mirrors the next client id
    sends: np.ndarray  # i8[K, TL.N_SD] what a wake of the trading core sends (engine.trading.core)


# --- the compiled duty cycle (loop_nb.run_nb): its scalars ls[LS_*] and why it returned ----------------
(
    LS_FD,  # the market-data socket's descriptor
    LS_HANDLER,  # address of the Aeron fragment handler (engine.gateway.aeron_c.INBOX_HANDLER)
    LS_FRAGMENT_LIMIT,  # fragments one order-entry poll takes
    LS_HEARTBEAT_NS,  # the session's heartbeat interval
    LS_TIMEOUT_NS,  # server silence after which Python reconnects
    LS_DUE_NS,  # return for housekeeping at this time (feed counters, logs, capture, stop)
    LS_IDLE_LIMIT,  # return after this many cycles without work (0: never; the node spins)
    LS_JOURNAL,  # 1: the journal ring is drained by the daemon (0: the loop empties it)
    LS_KILL_SEEN,  # 1 once Python has seen the kill switch
    LS_RISK_LOGGED,  # risk rejections Python has logged
    LS_LENGTH,  # RC_DATAGRAM: bytes of the datagram left in `slot`
    LS_TS_NS,  # RC_DATAGRAM: its receive time
    LS_ROWS,  # RC_GROW: event rows of the step to resume
    LS_BACKLOG,  # RC_BACKLOG: the first message Aeron did not take
    LS_COUNT,  # RC_BACKLOG: messages of that step
    LS_CYCLES,  # duty cycles run
    LS_MAX_CYCLE_NS,  # the longest
    LS_BACK_PRESSURE,  # steps whose messages Aeron did not all take
) = range(18)
N_LS = 18
(
    RC_HOUSEKEEPING,  # LS_DUE_NS passed
    RC_DATAGRAM,  # a datagram not in order (gap, retransmission, other session, end): Python sequences it
    RC_FEED_ERROR,  # the ITCH decoder rejected a message of that datagram: Python reports it
    RC_SESSION,  # an order-entry packet for Python (login answer, logout, end of session) or server silence
    RC_GROW,  # the book must grow; call again to resume the step
    RC_CONTROL,  # the daemon set stop or kill
    RC_BACKLOG,  # Aeron did not take every message of a step
    RC_LOG,  # risk rejections to log
    RC_STEPPED,  # a step ran while stopping (Python checks whether the node is done)
    RC_IDLE,  # LS_IDLE_LIMIT cycles without work (the runner's idle strategy takes over)
) = range(10)
RC_NONE = -1  # (inside the loop) keep going


class LoopState(NamedTuple):
    """What the compiled duty cycle needs besides the node's own arrays (built by ``engine.live.node``)."""

    ls: np.ndarray  # i8[N_LS]
    slot: np.ndarray  # u1[MAX_DATAGRAM_BYTES] the datagram being read
    rx: np.ndarray  # feeds.udp's MoldStream state (shared with the Python receiver)
    events: np.ndarray  # engine.core.events rows of one datagram
    counts: np.ndarray  # the receiver's ITCH message counts
    directory: np.ndarray  # its stock directory
    tracker: np.ndarray  # its MoldUDP64 sequence tracker
    cs: np.ndarray  # engine.gateway.client session words (shared with the Python client)
    inbox: np.ndarray  # the client's Aeron inbox
    responses: np.ndarray  # the client's decoded responses
    responses_raw: np.ndarray  # u1[rows, itemsize] the same memory, for the journal
    heartbeat: np.ndarray  # u1[1] the Client Heartbeat packet
