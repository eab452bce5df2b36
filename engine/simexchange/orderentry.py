"""The exchange side of OUCH 5.0 order entry over Aeron: the session server in front of the matching engine.

The packets are ``engine.gateway.session``'s. One Aeron channel pair per user (a ``Port``); the server
numbers the OUCH messages it sends per user and keeps them all, so a client that logs in again with
``requested_sequence = last seen + 1`` gets exactly the missed ones. It heartbeats after
``heartbeat_interval_ns`` without sending and ends a session after ``timeout_ns`` without hearing from
the client (cancelling its resting orders when ``cancel_on_disconnect``). A login binds the session to
the Aeron image it came from, by its session id and its source identity (UDP: the sender's address):
packets from any other image on that stream are dropped and counted, and a second login while the
session is live is refused (Login Rejected, session unavailable). The session ends when its image goes
away (the client closed its publication, or its process died and the media driver let go of it); a
new login is accepted from then on.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import msgspec
import numpy as np
import pyaeron

from engine.core import events as E
from engine.core.config import FrozenConfig
from engine.core.units import NS_PER_DAY, NS_PER_S
from engine.gateway import session as SP
from engine.gateway.session import Port, alpha_bytes, encode_login_accepted, text_field
from engine.simexchange import layout as L
from engine.simexchange.matching import MatchingEngine
from feeds import ouch
from feeds.errors import FeedError

# Cancel reason of orders cancelled because their session ended (cancel-on-disconnect).
CANCEL_ON_DISCONNECT = ouch.CANCEL_SUPERVISORY


# Exchange-side limits of one order (an Enter or a Replace), as a venue's fat-finger checks: shares, and
# notional in dollars (shares x limit price); beyond them the order is rejected with REJECT_SHARES_EXCEED_
# THRESHOLD or REJECT_EXCEEDS_MAX_NOTIONAL_VALUE.
DEFAULT_MAX_ORDER_SHARES = 1_000_000
DEFAULT_MAX_ORDER_NOTIONAL = 50_000_000
_PRICE_PER_DOLLAR = 10_000  # OUCH prices are in 1e-4 dollars

# The price band (limit order price protection): a buy priced more than ``price_band_pct`` percent above
# the instrument's reference price, or a sell priced that far below it, is rejected with REJECT_FAT_FINGER
# (the venue's own price check; REJECT_INVALID_PRICE means a price off the tick or out of range). An order
# priced away from the market on its passive side is no danger to anyone (a stub quote) and passes. The
# reference is the midpoint of the touch when both sides rest, else the instrument's configured
# reference price; with neither, the band does not apply.
DEFAULT_PRICE_BAND_PCT = 10.0
# The order rate limit: ``max_orders_per_s`` Enter and Replace Orders per user and instrument, a token
# bucket on the server's clock that holds one second's worth (at least one order); an order past it is
# rejected with REJECT_RISK_SYMBOL_MESSAGE_RATE, the spec's reason for a rate per symbol. Cancels pass.
DEFAULT_MAX_ORDERS_PER_S = 1000.0


# Engine reject reasons -> OUCH Order Rejected codes (REJ_UNKNOWN_ORDER depends on the request).
REJECT_CODES = {
    L.REJ_BAD_TICK: ouch.REJECT_INVALID_PRICE,
    L.REJ_BAD_PRICE: ouch.REJECT_INVALID_PRICE,
    L.REJ_BAD_LOT: ouch.REJECT_INVALID_QUANTITY,
    L.REJ_BAD_QTY: ouch.REJECT_INVALID_QUANTITY,
    L.REJ_POST_ONLY_CROSS: ouch.REJECT_CROSSED_MARKET,
    L.REJ_HALTED: ouch.REJECT_HALTED,
    L.REJ_UNKNOWN_INSTRUMENT: ouch.REJECT_INVALID_SYMBOL,
    L.REJ_BAD_REQUEST: ouch.REJECT_OTHER,
}
UNKNOWN_ORDER_CODES = {L.REQ_CANCEL: ouch.REJECT_CANCEL_NOT_ALLOWED, L.REQ_REPLACE: ouch.REJECT_REPLACE_NOT_ALLOWED}
_TIFS = {ouch.TIF_DAY: L.TIF_DAY, ouch.TIF_IOC: L.TIF_IOC}
_SIDES = {ouch.SIDE_BUY: E.SIDE_BID, ouch.SIDE_SELL: E.SIDE_ASK, ouch.SIDE_SELL_SHORT: E.SIDE_ASK}
_SIDES[ouch.SIDE_SELL_SHORT_EXEMPT] = E.SIDE_ASK


def _track_images(images: dict[int, str]) -> tuple[Callable[..., None], Callable[..., None]]:
    """Aeron's available / unavailable image handlers of a subscription, keeping ``images`` (session id ->
    source identity) current. Aeron's client conductor thread calls them once the image can be polled
    (a fragment may come first: see ``_source_of``) and once it no longer can; they only set and pop
    (atomic under the GIL), and the server reads ``images`` on its own thread."""

    def available(_subscription: pyaeron.Subscription, image: pyaeron.Image) -> None:
        images[image.session_id] = image.source_identity

    def unavailable(_subscription: pyaeron.Subscription, image: pyaeron.Image) -> None:
        images.pop(image.session_id, None)

    return available, unavailable


def _user_ref_num_of(message: bytes) -> int:
    """The UserRefNum an inbound message carries (a Replace's new one), 0 when it has none or is too short."""
    dtype = ouch.INBOUND_DTYPES.get(chr(message[0])) if message else None
    if dtype is None:
        return 0
    offset = dtype.fields["user_ref_num"][1]
    return int.from_bytes(message[offset : offset + 4], "big") if len(message) >= offset + 4 else 0


# --- server ---------------------------------------------------------------------------------------


class ServerConfig(FrozenConfig):
    """Exchange-side order entry settings; the owner id of ``ports[i]`` in the engine is ``i + 1``."""

    ports: tuple[Port, ...]
    session: str = "HFTMM00001"
    heartbeat_interval_ns: int = SP.DEFAULT_HEARTBEAT_INTERVAL_NS
    timeout_ns: int = SP.DEFAULT_TIMEOUT_NS
    cancel_on_disconnect: bool = True
    fragment_limit: int = SP.DEFAULT_FRAGMENT_LIMIT
    max_order_shares: int = DEFAULT_MAX_ORDER_SHARES
    max_order_notional: int = DEFAULT_MAX_ORDER_NOTIONAL
    price_band_pct: float = DEFAULT_PRICE_BAND_PCT  # 0: off
    max_orders_per_s: float = DEFAULT_MAX_ORDERS_PER_S  # per user and instrument; 0: off
    reference_prices: dict[str, int] = msgspec.field(default_factory=dict)  # symbol -> price (1e-4 dollars)

    def __post_init__(self) -> None:
        alpha_bytes(self.session, SP.SESSION_LEN)
        if not 0 < self.max_order_shares < 1 << 32 or self.max_order_notional <= 0:
            raise ValueError("max_order_shares must be in 1..4294967295 and max_order_notional positive")
        for name in ("price_band_pct", "max_orders_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (0: off), not {value}")
        if any(price <= 0 for price in self.reference_prices.values()):
            raise ValueError("reference_prices must be positive")
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
    images: dict[int, str]  # the subscription's images: session id -> source identity (see _track_images)
    logged_in: bool = False
    image: int = 0  # Aeron session id of the image the live login came from (its packets only count) ...
    source: str = ""  # ... and that image's source identity ("aeron:ipc", or a UDP sender's "ip:port")
    last_rx_ns: int = 0
    last_tx_ns: int = 0
    sent: list[bytes] = field(default_factory=list)  # outbound OUCH messages, sequence = index + 1
    delivered: int = 0  # how many of ``sent`` the current login has been offered
    control: deque[bytes] = field(default_factory=deque)  # unsequenced packets waiting to be offered
    last_user_ref_num: int = 0
    orders: dict[int, _Order] = field(default_factory=dict)  # live orders by UserRefNum
    pending: dict[int, _Order] = field(default_factory=dict)  # enters / replaces of the current batch
    buckets: dict[int, list[float]] = field(default_factory=dict)  # order rate by locate: [tokens, last ns]
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
        self._requests = np.zeros(256, L.REQUEST_DTYPE)
        self._n_requests = 0
        self._handlers: list[Callable[[pyaeron.BufferView, pyaeron.Header], None]] = []
        self.protocol_violations = 0  # sessions logged out for a packet the session layer does not allow
        self.foreign_packets = 0  # packets on a logged-in user's stream from another image, dropped
        self.refused_logins = 0  # Login Requests with the user's credentials while its session was live
        self.images_lost = 0  # sessions ended because the image they were bound to went away
        self.malformed_messages = 0  # OUCH messages rejected because their bytes do not decode
        self.handler_errors = 0  # sessions ended because handling one of their packets failed
        self.last_handler_error = ""  # the last such failure, one line

    # --- agent ----------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Open every port's publication and subscription."""
        for i, port in enumerate(self.config.ports):
            images: dict[int, str] = {}
            available, unavailable = _track_images(images)
            session = _Session(
                port=port,
                owner=i + 1,
                publication=self.aeron.add_exclusive_publication(port.outbound_channel, port.outbound_stream_id),
                subscription=self.aeron.add_subscription(
                    port.inbound_channel,
                    port.inbound_stream_id,
                    available_image=available,
                    unavailable_image=unavailable,
                ),
                images=images,
            )
            self.sessions.append(session)
            self._by_owner[session.owner] = session
            self._handlers.append(self._handler(session))

    def do_work(self) -> int:
        """Poll the ports, match the batch, run timers, flush outbound packets; returns the work count."""
        now = self.clock_ns()
        work = 0
        for session, handler in zip(self.sessions, self._handlers, strict=True):
            if session.logged_in and not self._is_bound(session, session.image):
                self.images_lost += 1  # the client's publication is gone: so is its session
                self._end_session(session, "")
                work += 1
            work += session.subscription.poll(handler, self.config.fragment_limit)
            if session.logged_in and now - session.last_rx_ns > self.config.timeout_ns:
                self._end_session(session, SP.LOGOUT_HEARTBEAT_TIMEOUT)
                work += 1
        if self._n_requests:
            work += self._submit()
        for session in self.sessions:
            idle_ns = now - session.last_tx_ns
            if session.logged_in and not session.control and idle_ns >= self.config.heartbeat_interval_ns:
                session.control.append(bytes((SP.PKT_SERVER_HEARTBEAT,)))
            work += self._flush(session, now)
        return work

    def on_close(self) -> None:
        """Tell logged-in clients the session is over, then close the ports."""
        for session in self.sessions:
            if session.logged_in:
                self._offer(session, bytes((SP.PKT_END_OF_SESSION,)), self.clock_ns())
            session.publication.close()
            session.subscription.close()

    # --- inbound --------------------------------------------------------------------------------
    def _handler(self, session: _Session) -> Callable[[pyaeron.BufferView, pyaeron.Header], None]:
        def on_fragment(view: pyaeron.BufferView, header: pyaeron.Header) -> None:
            packet = view.tobytes()
            batched = self._n_requests
            try:
                self._on_packet(session, packet, header.session_id)
            except Exception as exc:  # one client's bytes must not end every session
                self.handler_errors += 1
                self.last_handler_error = f"{session.port.username}: {type(exc).__name__}: {exc}"
                self._n_requests = batched  # drop what the failed packet may have half added
                self._end_session(session, SP.LOGOUT_PROTOCOL_VIOLATION)

        return on_fragment

    def _on_packet(self, session: _Session, packet: bytes, image: int) -> None:
        kind = packet[0] if packet else 0
        if session.logged_in and not self._is_bound(session, image) and not self._is_valid_login(session, packet):
            self.foreign_packets += 1  # not the logged-in client's image, and no credentials: no answer either
            return
        if kind == SP.PKT_LOGIN_REQUEST:
            self._on_login(session, packet, image)
            return
        if not session.logged_in:
            return  # anything but a login from a client without a session is ignored
        session.last_rx_ns = self.clock_ns()
        if kind == SP.PKT_UNSEQUENCED:
            self._on_ouch(session, packet[1:])
        elif kind == SP.PKT_LOGOUT and len(packet) == 1:
            self._end_session(session, "")
        elif kind != SP.PKT_CLIENT_HEARTBEAT or len(packet) != 1:
            self.protocol_violations += 1
            self._end_session(session, SP.LOGOUT_PROTOCOL_VIOLATION)

    @staticmethod
    def _is_bound(session: _Session, image: int) -> bool:
        """Whether ``image`` is the live image the session is bound to: its session id and its source."""
        return image == session.image and session.images.get(image) == session.source

    def _is_valid_login(self, session: _Session, packet: bytes) -> bool:
        """Whether ``packet`` is a Login Request with the port's credentials."""
        return (
            len(packet) == SP.LOGIN_REQUEST_LEN
            and packet[0] == SP.PKT_LOGIN_REQUEST
            and text_field(packet, SP.LOGIN_USERNAME_OFFSET, SP.USERNAME_LEN) == session.port.username
            and text_field(packet, SP.LOGIN_PASSWORD_OFFSET, SP.PASSWORD_LEN) == session.port.password
        )

    def _on_login(self, session: _Session, packet: bytes, image: int) -> None:
        """Log the session in and bind it to ``image``, the Aeron session id of the login's image, and that
        image's source identity; refuse it while the session is live (whichever image the login came from)."""
        if not self._is_valid_login(session, packet):
            self._refuse_login(session, SP.LOGIN_REJECT_NOT_AUTHORIZED)
            return
        if session.logged_in:
            self.refused_logins += 1
            self._refuse_login(session, SP.LOGIN_REJECT_SESSION_UNAVAILABLE)
            return
        if text_field(packet, SP.LOGIN_SESSION_OFFSET, SP.SESSION_LEN) not in ("", self.config.session):
            self._refuse_login(session, SP.LOGIN_REJECT_SESSION_UNAVAILABLE)
            return
        source = self._source_of(session, image)
        if source is None:
            return  # its image went away meanwhile: nobody to answer
        sequence = int.from_bytes(packet[SP.LOGIN_SEQUENCE_OFFSET : SP.LOGIN_REQUEST_LEN], "big")
        next_sequence = len(session.sent) + 1
        if 0 < sequence < next_sequence:
            next_sequence = sequence
        session.logged_in = True
        session.image = image
        session.source = source
        session.last_rx_ns = self.clock_ns()
        session.delivered = next_sequence - 1
        session.control.clear()
        session.control.append(encode_login_accepted(self.config.session, next_sequence))

    @staticmethod
    def _refuse_login(session: _Session, reason: str) -> None:
        session.control.append(bytes((SP.PKT_LOGIN_REJECTED,)) + reason.encode())

    @staticmethod
    def _source_of(session: _Session, image: int) -> str | None:
        """The source identity of ``image`` (None when it is gone). Its fragments can be polled before
        Aeron has called the available-image handler, so an image not yet in ``images`` is looked up."""
        source = session.images.get(image)
        if source is None:
            found = session.subscription.image_by_session_id(image)
            if found is None:
                return None
            source = session.images.setdefault(image, found.source_identity)
        return source

    def _end_session(self, session: _Session, reason: str) -> None:
        """Log the session out (telling the client why, if ``reason``) and cancel its orders if so configured."""
        session.logged_in = False
        session.control.clear()
        if reason:
            session.control.append(bytes((SP.PKT_LOGOUT,)) + reason.encode())
        if self.config.cancel_on_disconnect:
            self._submit()
            for order in session.orders.values():
                row = self._next_request(session, L.REQ_CANCEL, 0)
                row["order_ref"] = order.order_ref
            self._submit(CANCEL_ON_DISCONNECT)

    def _next_request(self, session: _Session, kind: int, user_ref_num: int) -> np.ndarray:
        if self._n_requests == len(self._requests):
            grown = np.zeros(2 * len(self._requests), L.REQUEST_DTYPE)
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
            self.malformed_messages += 1
            self._reject(session, _user_ref_num_of(message), ouch.REJECT_OTHER)
            return
        msg_type = chr(message[0])
        urn = int(fields["user_ref_num"])
        target = int(fields["orig_user_ref_num"]) if msg_type == "U" else urn
        if msg_type in "UX" and target in session.pending:
            self._submit()  # the order it names is in this batch: match the batch first, in arrival order
        if msg_type == "O":
            self._on_enter(session, urn, fields)
        elif msg_type == "U":
            self._on_replace(session, urn, fields)
        elif msg_type == "X":
            order = session.orders.get(urn)
            row = self._next_request(session, L.REQ_CANCEL, urn)
            row["order_ref"] = order.order_ref if order is not None else 0
            row["qty"] = int(fields["quantity"])
            session.batch_kinds[urn] = L.REQ_CANCEL
        else:
            self._reject(session, urn, ouch.REJECT_OTHER)

    def _limit_code(self, shares: int, price: int) -> int:
        """The OUCH reject code of an order beyond the exchange-side limits, 0 within them."""
        if shares > self.config.max_order_shares:
            return ouch.REJECT_SHARES_EXCEED_THRESHOLD
        if shares * price > self.config.max_order_notional * _PRICE_PER_DOLLAR:
            return ouch.REJECT_EXCEEDS_MAX_NOTIONAL_VALUE
        return 0

    def _order_code(self, session: _Session, locate: int, side: int, shares: int, price: int) -> int:
        """The OUCH reject code of an Enter or Replace Order of a listed instrument beyond the exchange-side
        limits, price band or order rate; 0 when it passes them all (and then it has used up a token)."""
        code = self._limit_code(shares, price) or self._band_code(locate, side, price)
        if code or self._take_token(session, locate):
            return code
        return ouch.REJECT_RISK_SYMBOL_MESSAGE_RATE

    def _band_code(self, locate: int, side: int, price: int) -> int:
        """REJECT_FAT_FINGER for a buy above the band or a sell below it, 0 otherwise (see DEFAULT_PRICE_BAND_PCT)."""
        band = self.config.price_band_pct
        if not band:
            return 0
        bid, ask = self.engine.touch(locate)
        reference = (bid + ask) / 2 if bid and ask else self.config.reference_prices.get(self.engine.symbols[locate])
        if reference is None or side * (price - reference) * 100 <= band * reference:
            return 0
        return ouch.REJECT_FAT_FINGER

    def _take_token(self, session: _Session, locate: int) -> bool:
        """Take one order from the session's token bucket of ``locate``; False when it is empty."""
        rate = self.config.max_orders_per_s
        if not rate:
            return True
        now = self.clock_ns()
        capacity = max(rate, 1.0)
        bucket = session.buckets.setdefault(locate, [capacity, now])
        tokens = min(capacity, bucket[0] + (now - bucket[1]) * rate / NS_PER_S)
        bucket[1] = now
        bucket[0] = tokens - 1 if tokens >= 1 else tokens
        return tokens >= 1

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
            else self._order_code(session, locate, side, int(fields["quantity"]), int(fields["price"]))
        )
        if code:
            self._reject(session, urn, code, order.cl_ord_id)
            return
        row = self._next_request(session, L.REQ_NEW, urn)
        row["instrument"] = locate
        row["side"] = side
        row["tif"] = tif
        row["price"] = min(int(fields["price"]), L.PRICE_MAX + 1)  # beyond PRICE_MAX: the engine's bad price
        row["qty"] = int(fields["quantity"])
        row["post_only"] = (ouch.TAG_POST_ONLY, SP.POST_ONLY_YES) in fields["appendage"]
        session.pending[urn] = order
        session.batch_kinds[urn] = L.REQ_NEW

    def _on_replace(self, session: _Session, urn: int, fields: dict) -> None:
        cl_ord_id = str(fields["cl_ord_id"])
        if not self._new_user_ref_num(session, urn, cl_ord_id):
            return
        orig = int(fields["orig_user_ref_num"])
        old = session.orders.get(orig)
        quantity, price = int(fields["quantity"]), int(fields["price"])
        code = (
            self._limit_code(quantity, price)  # an unknown order: the engine rejects it
            if old is None
            else self._order_code(session, self.locates[old.symbol], _SIDES[old.side], quantity, price)
        )
        if code:
            self._reject(session, urn, code, cl_ord_id)
            return
        row = self._next_request(session, L.REQ_REPLACE, urn)
        row["price"] = min(int(fields["price"]), L.PRICE_MAX + 1)
        row["qty"] = int(fields["quantity"])
        row["post_only"] = (ouch.TAG_POST_ONLY, SP.POST_ONLY_YES) in fields["appendage"]  # as on an Enter Order
        session.batch_kinds[urn] = L.REQ_REPLACE
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
        if kind in (L.RPT_ACCEPTED, L.RPT_REPLACED):
            order = session.pending.get(urn) or session.orders[urn]
            order.order_ref = int(report["order_ref"])
            if kind == L.RPT_REPLACED:
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
            if kind == L.RPT_ACCEPTED:
                message = ouch.encode(ouch.OUTBOUND, "A", **common)
            else:
                message = ouch.encode(ouch.OUTBOUND, "U", orig_user_ref_num=order.orig_user_ref_num, **common)
        elif kind == L.RPT_EXECUTED:
            message = ouch.encode(
                ouch.OUTBOUND,
                "E",
                timestamp=now,
                user_ref_num=urn,
                quantity=int(report["qty"]),
                price=int(report["price"]),
                liquidity_flag="A" if int(report["liquidity"]) == L.LIQ_ADDED else "R",
                match_number=int(report["match_number"]),
            )
        elif kind == L.RPT_CANCELED:
            if int(report["reason"]) == L.REJ_SELF_TRADE:
                why = ouch.CANCEL_SELF_MATCH_PREVENTION
            elif session.batch_kinds.get(urn) == L.REQ_CANCEL:
                why = ouch.CANCEL_USER_REQUESTED
            else:
                why = cancel_reason
            message = ouch.encode(
                ouch.OUTBOUND, "C", timestamp=now, user_ref_num=urn, quantity=int(report["qty"]), reason=why
            )
        else:
            reason = int(report["reason"])
            request_kind = session.batch_kinds.get(urn, L.REQ_NEW)
            code = (
                UNKNOWN_ORDER_CODES.get(request_kind, ouch.REJECT_OTHER)
                if reason == L.REJ_UNKNOWN_ORDER
                else REJECT_CODES.get(reason, ouch.REJECT_OTHER)
            )
            pending = session.pending.get(urn)
            self._reject(session, urn, code, pending.cl_ord_id if pending is not None else "")
            return
        if kind in (L.RPT_EXECUTED, L.RPT_CANCELED) and int(report["leaves"]) == 0:
            session.orders.pop(urn, None)
        self._sequenced(session, message)

    def _sequenced(self, session: _Session, message: bytes) -> None:
        session.sent.append(bytes((SP.PKT_SEQUENCED,)) + message)

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
