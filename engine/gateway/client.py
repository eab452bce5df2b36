"""The trading side of OUCH order entry over Aeron: log in, send orders, decode the answers (an agent).

The session packets are ``engine.gateway.session``'s; the server is the simulated exchange's
(``engine.simexchange.orderentry``), or a real venue's gateway. The client never loads the matching
engine: it only speaks the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyaeron

from engine.core.config import FrozenConfig
from engine.gateway import session as SP
from engine.gateway.session import Port, encode_login_request, text_field
from feeds import ouch

DISCONNECTED, LOGGING_IN, LOGGED_IN, REJECTED, ENDED = "disconnected", "logging_in", "logged_in", "rejected", "ended"
_ENTER_APPLEN_OFFSET = 1 + int(ouch.INBOUND_DTYPES["O"].fields["appendage_length"][1])
_POST_ONLY_APPENDAGE = bytes((1 + len(SP.POST_ONLY_YES), ouch.TAG_POST_ONLY)) + SP.POST_ONLY_YES
_BLANK_CL_ORD_ID = ouch.alpha("", 14)


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
        self._buf[0] = SP.PKT_UNSEQUENCED
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
            self._offer(bytes((SP.PKT_LOGOUT,)))
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
        return self.state == LOGGED_IN and self._offer(bytes((SP.PKT_UNSEQUENCED,)) + message)

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
            work += self._offer(bytes((SP.PKT_CLIENT_HEARTBEAT,)))
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
        elif kind == SP.PKT_LOGIN_ACCEPTED and len(packet) == SP.LOGIN_ACCEPTED_LEN:
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
