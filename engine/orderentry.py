"""OUCH 5.0 order entry over Aeron: the exchange's session server and the trading side's client.

OUCH has no login or sequencing of its own (NASDAQ carries it over SoupBinTCP), so both ends speak a
small session layer modeled on SoupBinTCP's packets. Aeron frames messages, so the SoupBinTCP u16
length is dropped: each Aeron message is one packet, a type byte then its payload. Alpha fields are
ASCII, left-justified, space padded; integers are big-endian.

    L Login Request     0 type 1 username(6) 7 password(10) 17 requested_session(10, blank = current)
                        27 requested_sequence u64 (0 = from the next message) = 35       client -> server
    A Login Accepted    0 type 1 session(10) 11 next_sequence u64 = 19                   server -> client
    J Login Rejected    0 type 1 reason(1: A not authorized, S session unavailable) = 2  server -> client
    S Sequenced Data    0 type 1 OUCH outbound message (numbered 1, 2, ... per user)     server -> client
    U Unsequenced Data  0 type 1 OUCH inbound message                                    client -> server
    H Server Heartbeat  0 type = 1                                                       server -> client
    R Client Heartbeat  0 type = 1                                                       client -> server
    O Logout            0 type = 1 (client request); server: 0 type 1 reason(1) = 2      both ways
                        (server reasons: P protocol violation, T heartbeat timeout)
    Z End of Session    0 type = 1                                                       server -> client

One Aeron channel pair per user (a "port": client -> server stream and server -> client stream, ids
from :class:`Port`). The server numbers the OUCH messages it sends per user and keeps them all, so a
client that logs in again with ``requested_sequence = last seen + 1`` gets exactly the missed ones.
Either side sends a heartbeat after ``heartbeat_interval_ns`` without sending; the server ends a
session after ``timeout_ns`` without hearing from the client (cancelling its resting orders when
``cancel_on_disconnect``), the client reconnects and resumes after ``timeout_ns`` of silence.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pyaeron

from engine.events import SIDE_ASK, SIDE_BID
from engine.matching import (
    LIQ_ADDED,
    PRICE_MAX,
    REJ_BAD_LOT,
    REJ_BAD_PRICE,
    REJ_BAD_QTY,
    REJ_BAD_REQUEST,
    REJ_BAD_TICK,
    REJ_HALTED,
    REJ_POST_ONLY_CROSS,
    REJ_SELF_TRADE,
    REJ_UNKNOWN_INSTRUMENT,
    REJ_UNKNOWN_ORDER,
    REQ_CANCEL,
    REQ_NEW,
    REQ_REPLACE,
    REQUEST_DTYPE,
    RPT_ACCEPTED,
    RPT_CANCELED,
    RPT_EXECUTED,
    RPT_REPLACED,
    TIF_DAY,
    TIF_IOC,
    MatchingEngine,
)
from feeds import ouch
from feeds.errors import FeedError

# --- session packets ------------------------------------------------------------------------------
PKT_LOGIN_REQUEST = ord("L")
PKT_LOGIN_ACCEPTED = ord("A")
PKT_LOGIN_REJECTED = ord("J")
PKT_SEQUENCED = ord("S")
PKT_UNSEQUENCED = ord("U")
PKT_SERVER_HEARTBEAT = ord("H")
PKT_CLIENT_HEARTBEAT = ord("R")
PKT_LOGOUT = ord("O")
PKT_END_OF_SESSION = ord("Z")

USERNAME_LEN, PASSWORD_LEN, SESSION_LEN = 6, 10, 10
LOGIN_USERNAME_OFFSET = 1
LOGIN_PASSWORD_OFFSET = LOGIN_USERNAME_OFFSET + USERNAME_LEN
LOGIN_SESSION_OFFSET = LOGIN_PASSWORD_OFFSET + PASSWORD_LEN
LOGIN_SEQUENCE_OFFSET = LOGIN_SESSION_OFFSET + SESSION_LEN
LOGIN_REQUEST_LEN = LOGIN_SEQUENCE_OFFSET + 8
ACCEPTED_SESSION_OFFSET = 1
ACCEPTED_SEQUENCE_OFFSET = ACCEPTED_SESSION_OFFSET + SESSION_LEN
LOGIN_ACCEPTED_LEN = ACCEPTED_SEQUENCE_OFFSET + 8

LOGIN_REJECT_NOT_AUTHORIZED = "A"
LOGIN_REJECT_SESSION_UNAVAILABLE = "S"
LOGOUT_PROTOCOL_VIOLATION = "P"
LOGOUT_HEARTBEAT_TIMEOUT = "T"

# Cancel reason of orders cancelled because their session ended (cancel-on-disconnect).
CANCEL_ON_DISCONNECT = ouch.CANCEL_SUPERVISORY

DEFAULT_HEARTBEAT_INTERVAL_NS = 1_000_000_000
DEFAULT_TIMEOUT_NS = 15_000_000_000
DEFAULT_FRAGMENT_LIMIT = 64
NS_PER_DAY = 86_400 * 1_000_000_000

# Engine reject reasons -> OUCH Order Rejected codes (REJ_UNKNOWN_ORDER depends on the request).
REJECT_CODES = {
    REJ_BAD_TICK: ouch.REJECT_INVALID_PRICE,
    REJ_BAD_PRICE: ouch.REJECT_INVALID_PRICE,
    REJ_BAD_LOT: ouch.REJECT_INVALID_QUANTITY,
    REJ_BAD_QTY: ouch.REJECT_INVALID_QUANTITY,
    REJ_POST_ONLY_CROSS: ouch.REJECT_CROSSED_MARKET,
    REJ_HALTED: ouch.REJECT_HALTED,
    REJ_UNKNOWN_INSTRUMENT: ouch.REJECT_INVALID_SYMBOL,
    REJ_BAD_REQUEST: ouch.REJECT_OTHER,
}
UNKNOWN_ORDER_CODES = {REQ_CANCEL: ouch.REJECT_CANCEL_NOT_ALLOWED, REQ_REPLACE: ouch.REJECT_REPLACE_NOT_ALLOWED}
POST_ONLY_YES = b"P"  # value of the PostOnly option that makes an order post-only
_TIFS = {ouch.TIF_DAY: TIF_DAY, ouch.TIF_IOC: TIF_IOC}
_SIDES = {ouch.SIDE_BUY: SIDE_BID, ouch.SIDE_SELL: SIDE_ASK, ouch.SIDE_SELL_SHORT: SIDE_ASK}
_SIDES[ouch.SIDE_SELL_SHORT_EXEMPT] = SIDE_ASK


def alpha(text: str, width: int) -> bytes:
    """``text`` as a space-padded ASCII field of ``width`` bytes."""
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{text!r} is longer than {width} characters")
    return raw.ljust(width, b" ")


def encode_login_request(username: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    """A Login Request packet (blank ``session`` = the current one; ``sequence`` 0 = from the next)."""
    return (
        bytes((PKT_LOGIN_REQUEST,))
        + alpha(username, USERNAME_LEN)
        + alpha(password, PASSWORD_LEN)
        + alpha(session, SESSION_LEN)
        + sequence.to_bytes(8, "big")
    )


def encode_login_accepted(session: str, next_sequence: int) -> bytes:
    """A Login Accepted packet."""
    return bytes((PKT_LOGIN_ACCEPTED,)) + alpha(session, SESSION_LEN) + next_sequence.to_bytes(8, "big")


def _field(data: bytes, start: int, width: int) -> str:
    return data[start : start + width].decode("latin-1").rstrip(" ")


# --- server ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    """One user's order entry port: credentials and the Aeron channels and streams of its session.

    ``inbound_*`` carry client -> server packets, ``outbound_*`` server -> client packets.
    """

    username: str
    password: str
    inbound_channel: str
    inbound_stream_id: int
    outbound_channel: str
    outbound_stream_id: int

    def __post_init__(self) -> None:
        alpha(self.username, USERNAME_LEN)
        alpha(self.password, PASSWORD_LEN)


@dataclass(frozen=True)
class ServerConfig:
    """Exchange-side order entry settings; the owner id of ``ports[i]`` in the engine is ``i + 1``."""

    ports: tuple[Port, ...]
    session: str = "HFTMM00001"
    heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    cancel_on_disconnect: bool = True
    fragment_limit: int = DEFAULT_FRAGMENT_LIMIT

    def __post_init__(self) -> None:
        alpha(self.session, SESSION_LEN)
        if len({p.username for p in self.ports}) != len(self.ports):
            raise ValueError("usernames of the ports must be distinct")
        if not 0 < self.heartbeat_interval_ns < self.timeout_ns:
            raise ValueError("need 0 < heartbeat_interval_ns < timeout_ns")


@dataclass
class _Order:
    """What the server remembers of a client's order to answer in OUCH terms."""

    symbol: str
    side: str
    tif: str
    display: str
    capacity: str
    iso: str
    cross: str
    cl_ord_id: str
    order_ref: int = 0
    orig_user_ref_num: int = 0


@dataclass
class _Session:
    """Server state of one port: its Aeron pair, login state, numbered outbound messages, orders."""

    port: Port
    owner: int
    publication: pyaeron.ExclusivePublication
    subscription: pyaeron.Subscription
    logged_in: bool = False
    last_rx_ns: int = 0
    last_tx_ns: int = 0
    sent: list[bytes] = field(default_factory=list)  # outbound OUCH messages, sequence = index + 1
    delivered: int = 0  # how many of ``sent`` the current login has been offered
    control: deque[bytes] = field(default_factory=deque)  # unsequenced packets waiting to be offered
    last_user_ref_num: int = 0
    orders: dict[int, _Order] = field(default_factory=dict)  # live orders by UserRefNum
    pending: dict[int, _Order] = field(default_factory=dict)  # enters / replaces of the current batch
    batch_kinds: dict[int, int] = field(default_factory=dict)  # request kind by UserRefNum, this batch


class OrderEntryServer:
    """Exchange side: OUCH sessions over Aeron in front of a :class:`MatchingEngine` (an agent).

    Each duty cycle polls every port, turns the inbound OUCH messages into one batch of requests,
    submits it, and answers with sequenced OUCH messages; ITCH bytes of the batch go to ``on_itch``.
    ``clock_ns`` drives heartbeats and timeouts; ``timestamp_ns`` stamps messages (ns since midnight).
    """

    role_name = "ouch-server"

    def __init__(
        self,
        aeron: pyaeron.Aeron,
        engine: MatchingEngine,
        config: ServerConfig,
        on_itch: Callable[[np.ndarray], None] | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        timestamp_ns: Callable[[], int] = lambda: time.time_ns() % NS_PER_DAY,
    ) -> None:
        self.aeron = aeron
        self.engine = engine
        self.config = config
        self.on_itch = on_itch
        self.clock_ns = clock_ns
        self.timestamp_ns = timestamp_ns
        self.locates = {symbol: locate for locate, symbol in engine.symbols.items()}
        self.sessions: list[_Session] = []
        self._by_owner: dict[int, _Session] = {}
        self._requests = np.zeros(256, REQUEST_DTYPE)
        self._n_requests = 0
        self._handlers: list[Callable[[pyaeron.BufferView, pyaeron.Header], None]] = []
        self.protocol_violations = 0
        self.tap: Callable[[bytes], None] | None = None  # sees every inbound packet first (latency harness)

    # --- agent ----------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Open every port's publication and subscription."""
        for i, port in enumerate(self.config.ports):
            session = _Session(
                port=port,
                owner=i + 1,
                publication=self.aeron.add_exclusive_publication(port.outbound_channel, port.outbound_stream_id),
                subscription=self.aeron.add_subscription(port.inbound_channel, port.inbound_stream_id),
            )
            self.sessions.append(session)
            self._by_owner[session.owner] = session
            self._handlers.append(self._handler(session))

    def do_work(self) -> int:
        """Poll the ports, match the batch, run timers, flush outbound packets; returns the work count."""
        now = self.clock_ns()
        work = 0
        for session, handler in zip(self.sessions, self._handlers, strict=True):
            work += session.subscription.poll(handler, self.config.fragment_limit)
            if session.logged_in and now - session.last_rx_ns > self.config.timeout_ns:
                self._end_session(session, LOGOUT_HEARTBEAT_TIMEOUT)
                work += 1
        if self._n_requests:
            work += self._submit()
        for session in self.sessions:
            idle_ns = now - session.last_tx_ns
            if session.logged_in and not session.control and idle_ns >= self.config.heartbeat_interval_ns:
                session.control.append(bytes((PKT_SERVER_HEARTBEAT,)))
            work += self._flush(session, now)
        return work

    def on_close(self) -> None:
        """Tell logged-in clients the session is over, then close the ports."""
        for session in self.sessions:
            if session.logged_in:
                self._offer(session, bytes((PKT_END_OF_SESSION,)), self.clock_ns())
            session.publication.close()
            session.subscription.close()

    # --- inbound --------------------------------------------------------------------------------
    def _handler(self, session: _Session) -> Callable[[pyaeron.BufferView, pyaeron.Header], None]:
        def on_fragment(view: pyaeron.BufferView, header: pyaeron.Header) -> None:
            packet = view.tobytes()
            if self.tap is not None:
                self.tap(packet)
            self._on_packet(session, packet)

        return on_fragment

    def _on_packet(self, session: _Session, packet: bytes) -> None:
        kind = packet[0] if packet else 0
        if kind == PKT_LOGIN_REQUEST:
            self._on_login(session, packet)
            return
        if not session.logged_in:
            return  # anything but a login from a client without a session is ignored
        session.last_rx_ns = self.clock_ns()
        if kind == PKT_UNSEQUENCED:
            self._on_ouch(session, packet[1:])
        elif kind == PKT_LOGOUT and len(packet) == 1:
            self._end_session(session, "")
        elif kind != PKT_CLIENT_HEARTBEAT or len(packet) != 1:
            self.protocol_violations += 1
            self._end_session(session, LOGOUT_PROTOCOL_VIOLATION)

    def _on_login(self, session: _Session, packet: bytes) -> None:
        port = session.port
        if len(packet) != LOGIN_REQUEST_LEN:
            session.control.append(bytes((PKT_LOGIN_REJECTED,)) + LOGIN_REJECT_NOT_AUTHORIZED.encode())
            return
        username = _field(packet, LOGIN_USERNAME_OFFSET, USERNAME_LEN)
        password = _field(packet, LOGIN_PASSWORD_OFFSET, PASSWORD_LEN)
        requested = _field(packet, LOGIN_SESSION_OFFSET, SESSION_LEN)
        if username != port.username or password != port.password:
            reason = LOGIN_REJECT_NOT_AUTHORIZED
        elif requested not in ("", self.config.session):
            reason = LOGIN_REJECT_SESSION_UNAVAILABLE
        else:
            sequence = int.from_bytes(packet[LOGIN_SEQUENCE_OFFSET:LOGIN_REQUEST_LEN], "big")
            next_sequence = len(session.sent) + 1
            if 0 < sequence < next_sequence:
                next_sequence = sequence
            session.logged_in = True
            session.last_rx_ns = self.clock_ns()
            session.delivered = next_sequence - 1
            session.control.clear()
            session.control.append(encode_login_accepted(self.config.session, next_sequence))
            return
        session.control.append(bytes((PKT_LOGIN_REJECTED,)) + reason.encode())

    def _end_session(self, session: _Session, reason: str) -> None:
        """Log the session out (telling the client why, if ``reason``) and cancel its orders if so configured."""
        session.logged_in = False
        session.control.clear()
        if reason:
            session.control.append(bytes((PKT_LOGOUT,)) + reason.encode())
        if self.config.cancel_on_disconnect:
            self._submit()
            for order in session.orders.values():
                row = self._next_request(session, REQ_CANCEL, 0)
                row["order_ref"] = order.order_ref
            self._submit(CANCEL_ON_DISCONNECT)

    def _next_request(self, session: _Session, kind: int, user_ref_num: int) -> np.ndarray:
        if self._n_requests == len(self._requests):
            grown = np.zeros(2 * len(self._requests), REQUEST_DTYPE)
            grown[: self._n_requests] = self._requests
            self._requests = grown
        row = self._requests[self._n_requests : self._n_requests + 1]
        row[0] = 0
        row["owner"] = session.owner
        row["kind"] = kind
        row["client_ref"] = user_ref_num
        self._n_requests += 1
        return row

    def _reject(self, session: _Session, user_ref_num: int, code: int, cl_ord_id: str = "") -> None:
        self._sequenced(
            session,
            ouch.encode(
                ouch.OUTBOUND,
                "J",
                timestamp=self.timestamp_ns(),
                user_ref_num=user_ref_num,
                reason=code,
                cl_ord_id=cl_ord_id,
            ),
        )

    def _on_ouch(self, session: _Session, message: bytes) -> None:
        """Turn one inbound OUCH message into a request row, or answer it with a Rejected."""
        try:
            fields = ouch.decode(ouch.INBOUND, message)
        except FeedError:
            urn = int.from_bytes(message[1:5], "big") if len(message) >= 5 else 0
            self._reject(session, urn, ouch.REJECT_OTHER)
            return
        msg_type = chr(message[0])
        urn = int(fields["user_ref_num"])
        if msg_type == "O":
            self._on_enter(session, urn, fields)
        elif msg_type == "U":
            self._on_replace(session, urn, fields)
        elif msg_type == "X":
            order = session.orders.get(urn)
            row = self._next_request(session, REQ_CANCEL, urn)
            row["order_ref"] = order.order_ref if order is not None else 0
            row["qty"] = int(fields["quantity"])
            session.batch_kinds[urn] = REQ_CANCEL
        else:
            self._reject(session, urn, ouch.REJECT_OTHER)

    def _new_user_ref_num(self, session: _Session, urn: int, cl_ord_id: str) -> bool:
        """UserRefNums must strictly increase per session; reject (and return False) otherwise."""
        if urn <= session.last_user_ref_num:
            self._reject(session, urn, ouch.REJECT_OTHER, cl_ord_id)
            return False
        session.last_user_ref_num = urn
        return True

    def _on_enter(self, session: _Session, urn: int, fields: dict) -> None:
        order = _Order(
            symbol=str(fields["symbol"]),
            side=str(fields["side"]),
            tif=str(fields["time_in_force"]),
            display=str(fields["display"]),
            capacity=str(fields["capacity"]),
            iso=str(fields["intermarket_sweep_eligibility"]),
            cross=str(fields["cross_type"]),
            cl_ord_id=str(fields["cl_ord_id"]),
        )
        if not self._new_user_ref_num(session, urn, order.cl_ord_id):
            return
        locate = self.locates.get(order.symbol)
        side = _SIDES.get(order.side)
        tif = _TIFS.get(order.tif)
        code = (
            ouch.REJECT_INVALID_SYMBOL
            if locate is None
            else ouch.REJECT_INVALID_SIDE
            if side is None
            else ouch.REJECT_OTHER
            if tif is None
            else 0
        )
        if code:
            self._reject(session, urn, code, order.cl_ord_id)
            return
        row = self._next_request(session, REQ_NEW, urn)
        row["instrument"] = locate
        row["side"] = side
        row["tif"] = tif
        row["price"] = min(int(fields["price"]), PRICE_MAX + 1)  # beyond PRICE_MAX: the engine's bad price
        row["qty"] = int(fields["quantity"])
        row["post_only"] = (ouch.TAG_POST_ONLY, POST_ONLY_YES) in fields["appendage"]
        session.pending[urn] = order
        session.batch_kinds[urn] = REQ_NEW

    def _on_replace(self, session: _Session, urn: int, fields: dict) -> None:
        cl_ord_id = str(fields["cl_ord_id"])
        if not self._new_user_ref_num(session, urn, cl_ord_id):
            return
        orig = int(fields["orig_user_ref_num"])
        old = session.orders.get(orig)
        row = self._next_request(session, REQ_REPLACE, urn)
        row["price"] = min(int(fields["price"]), PRICE_MAX + 1)
        row["qty"] = int(fields["quantity"])
        row["post_only"] = (ouch.TAG_POST_ONLY, POST_ONLY_YES) in fields["appendage"]  # as on an Enter Order
        session.batch_kinds[urn] = REQ_REPLACE
        if old is None:
            session.pending[urn] = _Order("", "", "", "", "", "", "", cl_ord_id, orig_user_ref_num=orig)
            return
        row["order_ref"] = old.order_ref
        session.pending[urn] = replace(
            old,
            tif=str(fields["time_in_force"]),
            display=str(fields["display"]),
            iso=str(fields["intermarket_sweep_eligibility"]),
            cl_ord_id=cl_ord_id,
            orig_user_ref_num=orig,
        )

    # --- matching and outbound ------------------------------------------------------------------
    def _submit(self, cancel_reason: str = ouch.CANCEL_IOC) -> int:
        """Submit the batch and answer every report; ``cancel_reason`` for cancels nobody asked for."""
        n = self._n_requests
        self._n_requests = 0
        if not n:
            return 0
        reports, itch = self.engine.submit(self._requests[:n], self.timestamp_ns())
        self.on_reports(reports, cancel_reason)
        for session in self.sessions:
            session.pending.clear()
            session.batch_kinds.clear()
        if self.on_itch is not None and len(itch):
            self.on_itch(itch)
        return n

    def on_reports(self, reports: np.ndarray, cancel_reason: str = ouch.CANCEL_IOC) -> None:
        """Answer every engine report about a session's order, including those another submitter caused
        (the background flow's market order executing a resting order); ``cancel_reason`` for cancels
        nobody asked for."""
        for report in reports:
            session = self._by_owner.get(int(report["owner"]))
            if session is not None:
                self._on_report(session, report, cancel_reason)

    def _on_report(self, session: _Session, report: np.void, cancel_reason: str) -> None:
        kind = int(report["kind"])
        urn = int(report["client_ref"])
        now = self.timestamp_ns()
        if kind in (RPT_ACCEPTED, RPT_REPLACED):
            order = session.pending.get(urn) or session.orders[urn]
            order.order_ref = int(report["order_ref"])
            if kind == RPT_REPLACED:
                session.orders.pop(order.orig_user_ref_num, None)
            session.orders[urn] = order
            common = dict(
                timestamp=now,
                user_ref_num=urn,
                side=order.side,
                quantity=int(report["qty"]),
                symbol=order.symbol,
                price=int(report["price"]),
                time_in_force=order.tif,
                display=order.display,
                order_reference_number=order.order_ref,
                capacity=order.capacity,
                intermarket_sweep_eligibility=order.iso,
                cross_type=order.cross,
                order_state=ouch.ORDER_STATE_LIVE,
                cl_ord_id=order.cl_ord_id,
            )
            if kind == RPT_ACCEPTED:
                message = ouch.encode(ouch.OUTBOUND, "A", **common)
            else:
                message = ouch.encode(ouch.OUTBOUND, "U", orig_user_ref_num=order.orig_user_ref_num, **common)
        elif kind == RPT_EXECUTED:
            message = ouch.encode(
                ouch.OUTBOUND,
                "E",
                timestamp=now,
                user_ref_num=urn,
                quantity=int(report["qty"]),
                price=int(report["price"]),
                liquidity_flag="A" if int(report["liquidity"]) == LIQ_ADDED else "R",
                match_number=int(report["match_number"]),
            )
        elif kind == RPT_CANCELED:
            if int(report["reason"]) == REJ_SELF_TRADE:
                why = ouch.CANCEL_SELF_MATCH_PREVENTION
            elif session.batch_kinds.get(urn) == REQ_CANCEL:
                why = ouch.CANCEL_USER_REQUESTED
            else:
                why = cancel_reason
            message = ouch.encode(
                ouch.OUTBOUND, "C", timestamp=now, user_ref_num=urn, quantity=int(report["qty"]), reason=why
            )
        else:
            reason = int(report["reason"])
            request_kind = session.batch_kinds.get(urn, REQ_NEW)
            code = (
                UNKNOWN_ORDER_CODES.get(request_kind, ouch.REJECT_OTHER)
                if reason == REJ_UNKNOWN_ORDER
                else REJECT_CODES.get(reason, ouch.REJECT_OTHER)
            )
            pending = session.pending.get(urn)
            self._reject(session, urn, code, pending.cl_ord_id if pending is not None else "")
            return
        if kind in (RPT_EXECUTED, RPT_CANCELED) and int(report["leaves"]) == 0:
            session.orders.pop(urn, None)
        self._sequenced(session, message)

    def _sequenced(self, session: _Session, message: bytes) -> None:
        session.sent.append(bytes((PKT_SEQUENCED,)) + message)

    def _offer(self, session: _Session, packet: bytes, now: int) -> bool:
        if session.publication.offer(packet):
            session.last_tx_ns = now
            return True
        return False

    def _flush(self, session: _Session, now: int) -> int:
        """Offer waiting control packets, then (when logged in) the sequenced messages not yet offered."""
        work = 0
        while session.control and self._offer(session, session.control[0], now):
            session.control.popleft()
            work += 1
        if session.control or not session.logged_in:
            return work
        while session.delivered < len(session.sent) and self._offer(session, session.sent[session.delivered], now):
            session.delivered += 1
            work += 1
        return work

    def next_sequence(self, username: str) -> int:
        """The sequence number the next outbound message of ``username`` will get."""
        return next(len(s.sent) + 1 for s in self.sessions if s.port.username == username)

    def is_logged_in(self, username: str) -> bool:
        """Whether ``username`` has a live session."""
        return next(s.logged_in for s in self.sessions if s.port.username == username)


# --- client ---------------------------------------------------------------------------------------
DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED, ENDED = "disconnected", "logging_in", "logged_in", "rejected", "ended"
_ENTER_APPLEN_OFFSET = 1 + int(ouch.INBOUND_DTYPES["O"].fields["appendage_length"][1])
_POST_ONLY_APPENDAGE = bytes((1 + len(POST_ONLY_YES), ouch.TAG_POST_ONLY)) + POST_ONLY_YES
_BLANK_CL_ORD_ID = ouch.alpha("", 14)


@dataclass(frozen=True)
class ClientConfig:
    """Trading-side order entry settings: credentials, the port's channels and streams, timers."""

    port: Port
    session: str = ""  # blank: whatever session the server runs
    heartbeat_interval_ns: int = DEFAULT_HEARTBEAT_INTERVAL_NS
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    fragment_limit: int = DEFAULT_FRAGMENT_LIMIT
    responses: int = 4096  # capacity of the response rows between two drains


class OrderEntryClient:
    """Trading side: logs in, sends OUCH orders, decodes the answers into ``RESPONSE_DTYPE`` rows (an agent).

    Call :meth:`connect` once; the agent then logs in, heartbeats, and on ``timeout_ns`` of server
    silence reconnects and resumes from the last sequence it saw. :meth:`drain` hands the decoded
    responses to the OMS. ``state`` is one of DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED, ENDED.
    """

    role_name = "ouch-client"

    def __init__(
        self, aeron: pyaeron.Aeron, config: ClientConfig, clock_ns: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self.aeron = aeron
        self.config = config
        self.clock_ns = clock_ns
        self.state = DISCONNECTED
        self.session = ""
        self.next_sequence = 1  # the sequence number of the next Sequenced Data expected
        self.login_reject_reason = ""
        self.logout_reason = ""
        self.decode_errors = 0
        self.responses = ouch.empty_responses(config.responses)
        self.n_responses = 0
        self._buf = np.zeros(256, np.uint8)
        self._buf[0] = PKT_UNSEQUENCED
        # load (or compile) the decoder now, not at the first response: with the read-only type fragments have
        ouch.decode_outbound_nb(np.frombuffer(bytes(1), np.uint8), 1, 0, self.responses, 0)
        self._publication: pyaeron.ExclusivePublication | None = None
        self._subscription: pyaeron.Subscription | None = None
        self._login_sent = False
        self._last_rx_ns = 0
        self._last_tx_ns = 0

    # --- session --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the port's Aeron pair and log in (resuming at ``next_sequence``) on the next duty cycles."""
        self._close_transport()
        port = self.config.port
        self._subscription = self.aeron.add_subscription(port.outbound_channel, port.outbound_stream_id)
        self._publication = self.aeron.add_exclusive_publication(port.inbound_channel, port.inbound_stream_id)
        self.state = LOGGING_IN
        self._login_sent = False
        self._last_rx_ns = self.clock_ns()

    def logout(self) -> None:
        """Ask the server to end the session (best effort) and close the transport."""
        if self.state == LOGGED_IN:
            self._offer(bytes((PKT_LOGOUT,)))
        self._close_transport()
        self.state = DISCONNECTED

    def drop(self) -> None:
        """Vanish without a logout (a crash or a cut link, as the server sees it)."""
        self._close_transport()
        self.state = DISCONNECTED

    def _close_transport(self) -> None:
        for resource in (self._publication, self._subscription):
            if resource is not None and not resource.is_closed:
                resource.close()
        self._publication = self._subscription = None

    # --- orders ---------------------------------------------------------------------------------
    def enter(
        self,
        user_ref_num: int,
        side: str,
        quantity: int,
        symbol: str,
        price: int,
        time_in_force: str = ouch.TIF_DAY,
        post_only: bool = False,
        cl_ord_id: str = "",
        display: str = ouch.DISPLAY_VISIBLE,
        capacity: str = ouch.CAPACITY_PRINCIPAL,
    ) -> bool:
        """Send an Enter Order (price in 1e-4 units); False when it could not be offered now."""
        n = ouch.encode_enter_order_nb(
            self._buf,
            1,
            user_ref_num,
            ord(side),
            quantity,
            ouch.alpha(symbol, 8),
            price,
            ord(time_in_force),
            ord(display),
            ord(capacity),
            ord(ouch.ISO_NOT_ELIGIBLE),
            ord(ouch.CROSS_CONTINUOUS),
            ouch.alpha(cl_ord_id, 14) if cl_ord_id else _BLANK_CL_ORD_ID,
        )
        end = 1 + n
        if post_only:
            self._buf[end : end + len(_POST_ONLY_APPENDAGE)] = np.frombuffer(_POST_ONLY_APPENDAGE, np.uint8)
            self._buf[_ENTER_APPLEN_OFFSET + 1] = len(_POST_ONLY_APPENDAGE)
            end += len(_POST_ONLY_APPENDAGE)
        return self._offer_buf(end)

    def replace(
        self,
        orig_user_ref_num: int,
        user_ref_num: int,
        quantity: int,
        price: int,
        time_in_force: str = ouch.TIF_DAY,
        cl_ord_id: str = "",
        display: str = ouch.DISPLAY_VISIBLE,
    ) -> bool:
        """Send a Replace Order (new total quantity and price); False when it could not be offered now."""
        n = ouch.encode_replace_nb(
            self._buf,
            1,
            orig_user_ref_num,
            user_ref_num,
            quantity,
            price,
            ord(time_in_force),
            ord(display),
            ord(ouch.ISO_NOT_ELIGIBLE),
            ouch.alpha(cl_ord_id, 14) if cl_ord_id else _BLANK_CL_ORD_ID,
        )
        return self._offer_buf(1 + n)

    def cancel(self, user_ref_num: int, quantity: int = 0) -> bool:
        """Send a Cancel Order (``quantity`` = shares to leave); False when it could not be offered now."""
        return self._offer_buf(1 + ouch.encode_cancel_nb(self._buf, 1, user_ref_num, quantity))

    def send_unsequenced(self, message: bytes) -> bool:
        """Send any inbound OUCH message as Unsequenced Data; False when it could not be offered now."""
        return self.state == LOGGED_IN and self._offer(bytes((PKT_UNSEQUENCED,)) + message)

    def offer_packet(self, packet: memoryview) -> bool:
        """Offer a complete Unsequenced Data packet (type byte included) built elsewhere, e.g. by a
        compiled gateway; False when not logged in or it could not be offered now."""
        if self.state != LOGGED_IN or self._publication is None:
            return False
        if self._publication.offer(packet):
            self._last_tx_ns = self.clock_ns()
            return True
        return False

    def _offer_buf(self, length: int) -> bool:
        return self.offer_packet(memoryview(self._buf)[:length])

    def _offer(self, packet: bytes) -> bool:
        if self._publication is not None and self._publication.offer(packet):
            self._last_tx_ns = self.clock_ns()
            return True
        return False

    # --- agent ----------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Nothing to open before :meth:`connect`."""

    def do_work(self) -> int:
        """Log in, poll responses, heartbeat, reconnect on silence; returns the work count."""
        if self._subscription is None:
            return 0
        now = self.clock_ns()
        work = 0
        if self.state == LOGGING_IN and not self._login_sent:
            login = encode_login_request(
                self.config.port.username, self.config.port.password, self.config.session, self.next_sequence
            )
            if self._offer(login):
                self._login_sent = True
                work += 1
        work += self._subscription.poll(self._on_fragment, self.config.fragment_limit)
        if self.state in (LOGGING_IN, LOGGED_IN) and now - self._last_rx_ns > self.config.timeout_ns:
            self.connect()
            return work + 1
        if self.state == DISCONNECTED and now - self._last_rx_ns >= self.config.heartbeat_interval_ns:
            self.connect()  # the server logged us out: after a pause, log in again where the session stood
            return work + 1
        if self.state == LOGGED_IN and now - self._last_tx_ns >= self.config.heartbeat_interval_ns:
            work += self._offer(bytes((PKT_CLIENT_HEARTBEAT,)))
        return work

    def on_close(self) -> None:
        """Log out and close the transport."""
        self.logout()

    def _on_fragment(self, view: pyaeron.BufferView, header: pyaeron.Header) -> None:
        packet = np.frombuffer(view, np.uint8)
        if not len(packet):
            return
        self._last_rx_ns = self.clock_ns()
        kind = int(packet[0])
        if kind == PKT_SEQUENCED and self.state == LOGGED_IN:
            self.next_sequence += 1
            if self.n_responses == len(self.responses):
                grown = ouch.empty_responses(2 * len(self.responses))
                grown[: self.n_responses] = self.responses
                self.responses = grown
            if ouch.decode_outbound_nb(packet, 1, len(packet) - 1, self.responses, self.n_responses) > 0:
                self.n_responses += 1
            else:
                self.decode_errors += 1
        elif kind == PKT_LOGIN_ACCEPTED and len(packet) == LOGIN_ACCEPTED_LEN:
            raw = packet.tobytes()
            self.session = _field(raw, ACCEPTED_SESSION_OFFSET, SESSION_LEN)
            self.next_sequence = int.from_bytes(raw[ACCEPTED_SEQUENCE_OFFSET:], "big")
            self.state = LOGGED_IN
        elif kind == PKT_LOGIN_REJECTED and self.state == LOGGING_IN:
            self.login_reject_reason = chr(packet[1]) if len(packet) > 1 else ""
            self.state = REJECTED
        elif kind == PKT_LOGOUT:
            self.logout_reason = chr(packet[1]) if len(packet) > 1 else ""
            self.state = DISCONNECTED
        elif kind == PKT_END_OF_SESSION:
            self.state = ENDED

    def drain(self) -> np.ndarray:
        """The responses decoded since the last drain (a copy), oldest first."""
        out = self.responses[: self.n_responses].copy()
        self.n_responses = 0
        return out

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last Sequenced Data received (0 before any)."""
        return self.next_sequence - 1
