"""The trading side of OUCH order entry over Aeron: log in, send orders, decode the answers (an agent).

The session packets are ``engine.gateway.session``'s; the server is the simulated exchange's
(``engine.simexchange.orderentry``), or a real venue's gateway. The client never loads the matching
engine: it only speaks the wire.

It drives Aeron's C client (``engine.gateway.aeron_c``), so that compiled code can use the same
session without Python: :func:`poll_session_nb` takes the server's Sequenced Data and heartbeats,
:func:`offer_session_nb` sends, :func:`heartbeat_nb` keeps the session alive. A trading loop
(``engine.live.loop_nb``) calls them in its own duty cycle and leaves the rare packets (login
answers, logout, end of session) to :meth:`OrderEntryClient.do_work`, which calls the same functions.
The session's numbers live in one int64 array (``CS_*`` words) both sides read and write.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from numba import njit

from engine.core.config import FrozenConfig
from engine.gateway import session as SP
from engine.gateway.aeron_c import (
    INBOX_HANDLER,
    Client,
    inbox_clear,
    inbox_count,
    inbox_fragment,
    make_inbox,
    offer_retry_nb,
    poll_nb,
)
from engine.gateway.session import Port, encode_login_request, text_field
from feeds import ouch

DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED, ENDED = "disconnected", "logging_in", "logged_in", "rejected", "ended"
_ENTER_APPLEN_OFFSET = 1 + int(ouch.INBOUND_DTYPES["O"].fields["appendage_length"][1])
_POST_ONLY_APPENDAGE = bytes((1 + len(SP.POST_ONLY_YES), ouch.TAG_POST_ONLY)) + SP.POST_ONLY_YES
_BLANK_CL_ORD_ID = ouch.alpha("", 14)
OFFER_ATTEMPTS = 64  # offers of one packet while Aeron answers ADMIN_ACTION or BACK_PRESSURED
MAX_PACKET_BYTES = 1376  # one Aeron fragment at the default MTU: every session packet fits
DISCARD_POLLS = 1024  # bound of the polls that drop what the server's stream held before a login

# --- the session's numbers: one int64 array (compiled code and Python share it) --------------------
CS_NEXT_SEQUENCE = 0  # the sequence number of the next Sequenced Data expected
CS_LAST_RX_NS = 1  # when the server was last heard
CS_LAST_TX_NS = 2  # when we last sent
CS_N_RESPONSES = 3  # decoded responses waiting in `responses`
CS_DECODE_ERRORS = 4  # Sequenced Data the OUCH decoder refused
CS_LOGGED_IN = 5  # 1 while LOGGED_IN
CS_PUBLICATION = 6  # aeron_exclusive_publication_t * (0: none)
CS_SUBSCRIPTION = 7  # aeron_subscription_t * (0: none)
CS_HANDLED = 8  # fragments of the inbox already handled
N_CS = 9


@njit(cache=True, nogil=True)
def offer_session_nb(cs, buf, start, length, now_ns):
    """Offer ``buf[start:start+length]`` as one packet; True when Aeron took it."""
    if cs[CS_PUBLICATION] == 0:
        return False
    result, _ = offer_retry_nb(cs[CS_PUBLICATION], buf, start, length, OFFER_ATTEMPTS)
    if result > 0:
        cs[CS_LAST_TX_NS] = now_ns
        return True
    return False


@njit(cache=True, nogil=True)
def heartbeat_nb(cs, heartbeat, interval_ns, now_ns):
    """Send a Client Heartbeat (the one-byte packet ``heartbeat``) when logged in and silent for
    ``interval_ns``; 1 when one went out."""
    if cs[CS_LOGGED_IN] == 0 or now_ns - cs[CS_LAST_TX_NS] < interval_ns:
        return 0
    return 1 if offer_session_nb(cs, heartbeat, 0, 1, now_ns) else 0


@njit(cache=True, nogil=True)
def poll_session_nb(cs, inbox, handler, responses, fragment_limit, now_ns):
    """Poll the server's stream into ``inbox`` (once what it holds is handled) and handle, in order,
    server heartbeats and, while logged in, Sequenced Data (decoded into ``responses``). Stops at any
    other packet, or when ``responses`` is full: ``cs[CS_HANDLED] < inbox_count(inbox)`` then leaves
    the rest to Python. Returns the fragments polled."""
    polled = 0
    if cs[CS_SUBSCRIPTION] == 0:
        return polled
    if cs[CS_HANDLED] >= inbox_count(inbox):
        inbox_clear(inbox)
        cs[CS_HANDLED] = 0
        polled = poll_nb(cs[CS_SUBSCRIPTION], handler, inbox.ctypes.data, fragment_limit)
    count = inbox_count(inbox)
    f = cs[CS_HANDLED]
    while f < count:
        offset, length, _ = inbox_fragment(inbox, f)
        if length > 0:
            kind = inbox[offset]
            if kind == SP.PKT_SEQUENCED and cs[CS_LOGGED_IN] != 0 and cs[CS_N_RESPONSES] < responses.shape[0]:
                cs[CS_NEXT_SEQUENCE] += 1
                if ouch.decode_outbound_nb(inbox, offset + 1, length - 1, responses, cs[CS_N_RESPONSES]) > 0:
                    cs[CS_N_RESPONSES] += 1
                else:
                    cs[CS_DECODE_ERRORS] += 1
            elif kind != SP.PKT_SERVER_HEARTBEAT:
                break
            cs[CS_LAST_RX_NS] = now_ns
        f += 1
    cs[CS_HANDLED] = f
    return polled


def _word(index: int, doc: str) -> property:
    """A read-write int attribute that is word ``index`` of the client's ``cs`` array."""

    def get(self: OrderEntryClient) -> int:
        return int(self.cs[index])

    def put(self: OrderEntryClient, value: int) -> None:
        self.cs[index] = value

    return property(get, put, doc=doc)


class ClientConfig(FrozenConfig):
    """Trading-side order entry settings: credentials, the port's channels and streams, timers."""

    port: Port
    session: str = ""  # blank: whatever session the server runs
    heartbeat_interval_ns: int = SP.DEFAULT_HEARTBEAT_INTERVAL_NS
    timeout_ns: int = SP.DEFAULT_TIMEOUT_NS
    fragment_limit: int = SP.DEFAULT_FRAGMENT_LIMIT
    responses: int = 4096  # capacity of the response rows between two drains


class OrderEntryClient:
    """Trading side: logs in, sends OUCH orders, decodes the answers into ``RESPONSE_DTYPE`` rows (an agent).

    Call :meth:`connect` once; the agent then logs in, heartbeats, and on ``timeout_ns`` of server
    silence reconnects and resumes from the last sequence it saw. A login refused as session unavailable
    (the user's session is live elsewhere: a predecessor's, until the server sees it gone) is asked again
    every ``heartbeat_interval_ns``; one refused as not authorized is final. :meth:`drain` hands the decoded
    responses to the OMS. ``state`` is one of DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED, ENDED.
    The client has its own Aeron C client of the driver at ``aeron_dir``, closed by :meth:`on_close`.
    """

    role_name = "ouch-client"

    next_sequence = _word(CS_NEXT_SEQUENCE, "The sequence number of the next Sequenced Data expected.")
    n_responses = _word(CS_N_RESPONSES, "Decoded responses waiting in ``responses``.")
    decode_errors = _word(CS_DECODE_ERRORS, "Sequenced Data the OUCH decoder refused.")

    def __init__(self, aeron_dir: str, config: ClientConfig, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.aeron = Client(aeron_dir)
        self.config = config
        self.clock_ns = clock_ns
        self.cs = np.zeros(N_CS, np.int64)
        self._state = DISCONNECTED
        self.session = ""
        self.next_sequence = 1
        self.login_reject_reason = ""
        self.logout_reason = ""
        self.responses = ouch.empty_responses(config.responses)
        self.inbox = make_inbox(config.fragment_limit, config.fragment_limit * MAX_PACKET_BYTES)
        self.heartbeat = np.array([SP.PKT_CLIENT_HEARTBEAT], np.uint8)
        self._buf = np.zeros(MAX_PACKET_BYTES, np.uint8)
        self._buf[0] = SP.PKT_UNSEQUENCED
        self._tx = np.zeros(MAX_PACKET_BYTES, np.uint8)
        self._login_sent = False
        # load (or compile) the session kernels now, not at the first packet
        poll_session_nb(self.cs, self.inbox, INBOX_HANDLER.address, self.responses, 0, 0)
        offer_session_nb(self.cs, self._tx, 0, 1, 0)
        heartbeat_nb(self.cs, self.heartbeat, 0, 0)

    @property
    def state(self) -> str:
        """DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED or ENDED."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self.cs[CS_LOGGED_IN] = value == LOGGED_IN

    # --- session --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the port's Aeron pair and log in (resuming at ``next_sequence``) on the next duty cycles."""
        self._close_transport()
        port = self.config.port
        self.cs[CS_SUBSCRIPTION] = self.aeron.add_subscription(port.outbound_channel, port.outbound_stream_id)
        self.cs[CS_PUBLICATION] = self.aeron.add_exclusive_publication(port.inbound_channel, port.inbound_stream_id)
        self.state = LOGGING_IN
        self._login_sent = False
        self.cs[CS_LAST_RX_NS] = self.clock_ns()

    def logout(self) -> None:
        """Ask the server to end the session (best effort) and close the transport."""
        if self.state == LOGGED_IN:
            self._offer(bytes((SP.PKT_LOGOUT,)))
        self._close_transport()
        self.state = DISCONNECTED

    def drop(self) -> None:
        """Vanish without a logout (a crash or a cut link, as the server sees it)."""
        self._close_transport()
        self.state = DISCONNECTED

    def _close_transport(self) -> None:
        if self.cs[CS_PUBLICATION]:
            self.aeron.close_publication(int(self.cs[CS_PUBLICATION]))
        if self.cs[CS_SUBSCRIPTION]:
            self.aeron.close_subscription(int(self.cs[CS_SUBSCRIPTION]))
        self.cs[CS_PUBLICATION] = self.cs[CS_SUBSCRIPTION] = 0
        self.cs[CS_HANDLED] = inbox_count(self.inbox)  # what the old subscription brought is dropped

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
        return self.state == LOGGED_IN and self._offer(bytes((SP.PKT_UNSEQUENCED,)) + message)

    def offer_packet(self, packet: memoryview) -> bool:
        """Offer a complete Unsequenced Data packet (type byte included) built elsewhere, e.g. by a
        compiled gateway; False when not logged in or it could not be offered now."""
        return self.state == LOGGED_IN and self._offer(packet)

    def _offer_buf(self, length: int) -> bool:
        """Offer the packet encoded in ``_buf`` as it is (no copy into ``_tx``)."""
        return self.state == LOGGED_IN and bool(offer_session_nb(self.cs, self._buf, 0, length, self.clock_ns()))

    def _offer(self, packet: bytes | memoryview) -> bool:
        n = len(packet)
        self._tx[:n] = np.frombuffer(packet, np.uint8)
        return bool(offer_session_nb(self.cs, self._tx, 0, n, self.clock_ns()))

    # --- agent ----------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Nothing to open before :meth:`connect`."""

    def do_work(self) -> int:
        """Log in, poll responses, heartbeat, reconnect on silence; returns the work count."""
        if not self.cs[CS_SUBSCRIPTION]:
            return 0
        now = self.clock_ns()
        work = 0
        if self._may_ask_again(now):
            self.state = LOGGING_IN  # the session was live elsewhere (a predecessor's, until the server drops it)
            self._login_sent = False
        if self.state == LOGGING_IN and not self._login_sent and self._discard_backlog():
            login = encode_login_request(
                self.config.port.username, self.config.port.password, self.config.session, self.next_sequence
            )
            if self._offer(login):
                self._login_sent = True
                work += 1
        work += poll_session_nb(self.cs, self.inbox, INBOX_HANDLER.address, self.responses, self.config.fragment_limit,
                                now)  # fmt: skip
        work += self.take_rest(now)
        last_rx = self.cs[CS_LAST_RX_NS]
        if self.state in (LOGGING_IN, LOGGED_IN) and now - last_rx > self.config.timeout_ns:
            self.connect()
            return work + 1
        if self.state == DISCONNECTED and now - last_rx >= self.config.heartbeat_interval_ns:
            self.connect()  # the server logged us out: after a pause, log in again where the session stood
            return work + 1
        return work + heartbeat_nb(self.cs, self.heartbeat, self.config.heartbeat_interval_ns, now)

    def _discard_backlog(self) -> bool:
        """Whether the login may go: the server's stream is connected and what it held is dropped. The stream
        is the user's, not this client's: a subscription that joins it may first read what went out before
        (over IPC from the slowest reader's position), such as the Login Accepted of a session still live."""
        subscription = int(self.cs[CS_SUBSCRIPTION])
        if not self.aeron.is_connected(subscription):
            return False
        for _ in range(DISCARD_POLLS):
            inbox_clear(self.inbox)
            if not poll_nb(subscription, INBOX_HANDLER.address, self.inbox.ctypes.data, self.config.fragment_limit):
                break
        inbox_clear(self.inbox)
        self.cs[CS_HANDLED] = 0
        return True

    def _may_ask_again(self, now_ns: int) -> bool:
        """Whether to send the login again: it was refused as session unavailable a heartbeat interval ago."""
        return (
            self.state == REJECTED
            and self.login_reject_reason == SP.LOGIN_REJECT_SESSION_UNAVAILABLE
            and now_ns - self.cs[CS_LAST_TX_NS] >= self.config.heartbeat_interval_ns
        )

    def take_rest(self, now_ns: int) -> int:
        """Handle the inbox's fragments compiled code left (session packets, or responses past the
        capacity of ``responses``); returns how many."""
        count = inbox_count(self.inbox)
        first = int(self.cs[CS_HANDLED])
        for f in range(first, count):
            offset, length, _ = inbox_fragment(self.inbox, f)
            self._on_packet(self.inbox[offset : offset + length], now_ns)
        self.cs[CS_HANDLED] = count
        return max(0, count - first)

    def on_close(self) -> None:
        """Log out, close the transport and the Aeron client."""
        self.logout()
        self.aeron.close()

    def _on_packet(self, packet: np.ndarray, now_ns: int) -> None:
        if not len(packet):
            return
        self.cs[CS_LAST_RX_NS] = now_ns
        kind = int(packet[0])
        if kind == SP.PKT_SEQUENCED and self.state == LOGGED_IN:
            self.next_sequence += 1
            if self.n_responses == len(self.responses):
                grown = ouch.empty_responses(2 * len(self.responses))
                grown[: self.n_responses] = self.responses
                self.responses = grown
            if ouch.decode_outbound_nb(packet, 1, len(packet) - 1, self.responses, self.n_responses) > 0:
                self.n_responses += 1
            else:
                self.decode_errors += 1
        elif kind == SP.PKT_LOGIN_ACCEPTED and len(packet) == SP.LOGIN_ACCEPTED_LEN and self.state == LOGGING_IN:
            raw = packet.tobytes()
            self.session = text_field(raw, SP.ACCEPTED_SESSION_OFFSET, SP.SESSION_LEN)
            self.next_sequence = int.from_bytes(raw[SP.ACCEPTED_SEQUENCE_OFFSET :], "big")
            self.state = LOGGED_IN
        elif kind == SP.PKT_LOGIN_REJECTED and self.state == LOGGING_IN:
            self.login_reject_reason = chr(packet[1]) if len(packet) > 1 else ""
            self.state = REJECTED
        elif kind == SP.PKT_LOGOUT:
            self.logout_reason = chr(packet[1]) if len(packet) > 1 else ""
            self.state = DISCONNECTED
        elif kind == SP.PKT_END_OF_SESSION:
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
