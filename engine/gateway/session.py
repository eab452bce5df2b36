"""The order-entry session layer over Aeron: packet layouts and the :class:`Port` both ends share.

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

One Aeron channel pair per user (a :class:`Port`: client -> server stream and server -> client
stream). The server (``engine.simexchange.orderentry``) numbers the OUCH messages it sends per user
and keeps them all, so a client (``engine.gateway.client``) that logs in again with
``requested_sequence = last seen + 1`` gets exactly the missed ones. One login per user at a time: the
server refuses another (reason S) until the live session ends, by logout, timeout or its Aeron image
going away. Either side sends a heartbeat after ``heartbeat_interval_ns`` without sending; the server
ends a session after ``timeout_ns`` without hearing from the client, the client reconnects and resumes
after ``timeout_ns`` of silence.
"""

from __future__ import annotations

from pyaeron import IPC_CHANNEL

from engine.core.config import FrozenConfig
from engine.core.units import NS_PER_S
from feeds import ouch

# --- packet types ---------------------------------------------------------------------------------
PKT_LOGIN_REQUEST = ord("L")
PKT_LOGIN_ACCEPTED = ord("A")
PKT_LOGIN_REJECTED = ord("J")
PKT_SEQUENCED = ord("S")
PKT_UNSEQUENCED = ord("U")
PKT_SERVER_HEARTBEAT = ord("H")
PKT_CLIENT_HEARTBEAT = ord("R")
PKT_LOGOUT = ord("O")
PKT_END_OF_SESSION = ord("Z")

# --- field widths and offsets -----------------------------------------------------------------------
USERNAME_LEN, PASSWORD_LEN, SESSION_LEN = 6, 10, 10
LOGIN_USERNAME_OFFSET = 1
LOGIN_PASSWORD_OFFSET = LOGIN_USERNAME_OFFSET + USERNAME_LEN
LOGIN_SESSION_OFFSET = LOGIN_PASSWORD_OFFSET + PASSWORD_LEN
LOGIN_SEQUENCE_OFFSET = LOGIN_SESSION_OFFSET + SESSION_LEN
LOGIN_REQUEST_LEN = LOGIN_SEQUENCE_OFFSET + 8
ACCEPTED_SESSION_OFFSET = 1
ACCEPTED_SEQUENCE_OFFSET = ACCEPTED_SESSION_OFFSET + SESSION_LEN
LOGIN_ACCEPTED_LEN = ACCEPTED_SEQUENCE_OFFSET + 8

# --- reasons --------------------------------------------------------------------------------------
LOGIN_REJECT_NOT_AUTHORIZED = "A"
LOGIN_REJECT_SESSION_UNAVAILABLE = "S"
LOGOUT_PROTOCOL_VIOLATION = "P"
LOGOUT_HEARTBEAT_TIMEOUT = "T"

DEFAULT_HEARTBEAT_INTERVAL_NS = NS_PER_S
DEFAULT_TIMEOUT_NS = 15 * NS_PER_S
DEFAULT_FRAGMENT_LIMIT = 64
POST_ONLY_YES = b"P"  # value of the PostOnly option that makes an order post-only


def alpha_bytes(text: str, width: int) -> bytes:
    """``text`` as a space-padded ASCII field of ``width`` bytes (``feeds.ouch.alpha``, as bytes)."""
    return ouch.alpha(text, width).tobytes()


def encode_login_request(username: str, password: str, session: str = "", sequence: int = 0) -> bytes:
    """A Login Request packet (blank ``session`` = the current one; ``sequence`` 0 = from the next)."""
    return (
        bytes((PKT_LOGIN_REQUEST,))
        + alpha_bytes(username, USERNAME_LEN)
        + alpha_bytes(password, PASSWORD_LEN)
        + alpha_bytes(session, SESSION_LEN)
        + sequence.to_bytes(8, "big")
    )


def encode_login_accepted(session: str, next_sequence: int) -> bytes:
    """A Login Accepted packet."""
    return bytes((PKT_LOGIN_ACCEPTED,)) + alpha_bytes(session, SESSION_LEN) + next_sequence.to_bytes(8, "big")


def text_field(data: bytes, start: int, width: int) -> str:
    """An alpha field of a packet as text, padding stripped."""
    return data[start : start + width].decode("latin-1").rstrip(" ")


class Port(FrozenConfig):
    """One user's order-entry port: credentials and the Aeron channels and streams of its session.

    ``inbound_*`` carry client -> server packets, ``outbound_*`` server -> client packets. The same
    struct is the sim-exchange's ``[[order_entry.users]]`` table and a trading node's session.
    """

    username: str = "TRADER"  # up to 6 ASCII characters
    password: str = "secret"  # up to 10 ASCII characters
    inbound_channel: str = IPC_CHANNEL  # client -> exchange: "aeron:ipc" or "aeron:udp?endpoint=127.0.0.1:PORT"
    inbound_stream_id: int = 1001
    outbound_channel: str = IPC_CHANNEL  # exchange -> client
    outbound_stream_id: int = 1002

    def __post_init__(self) -> None:
        alpha_bytes(self.username, USERNAME_LEN)
        alpha_bytes(self.password, PASSWORD_LEN)
