"""The tick-to-trade harness's exchange: set-up in Python, every tick and order in ``bench.t2t_exchange_nb``.

:class:`HarnessExchange` owns what the node talks to: an embedded Aeron media driver with the
node's order-entry port on it (Aeron's C client, for the compiled loop), a UDP socket connected to
the node's market-data port on 127.0.0.1, and a matching engine (``engine.simexchange.matching``)
with the traded instrument (``filler``: framed ITCH records sent ahead of each tick's own, unmatched,
to make its datagram bigger). :meth:`open` sends
the session's opening ITCH and rests the scripted participant's bid and ask; :meth:`pump` runs the
compiled loop for a time slice; :meth:`schedule` arms the ticks and the background messages.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time

import numpy as np

from bench import t2t_exchange_nb as X
from bench.t2t_exchange_nb import HarnessState
from engine.core import events as E
from engine.core.units import LOOPBACK, NS_PER_S, SHM_DIR
from engine.gateway import session as SP
from engine.gateway.aeron_c import INBOX_HANDLER, Client, make_inbox
from engine.gateway.session import Port
from engine.runtime.aeron import DriverConfig, EmbeddedDriver
from engine.simexchange import layout as XL
from engine.simexchange.flow import SESSION_START_NS
from engine.simexchange.matching import MatchingEngine
from engine.simexchange.orderentry import REJECT_CODES, UNKNOWN_ORDER_CODES
from feeds import ouch
from feeds.moldudp64 import encode_heartbeat

ORDER_ROWS = 1 << 16  # the session's order table (live orders of the node at once, at most)
BOOK_ORDERS = 1 << 14  # the matcher's order rows: participant, background depth, the node's orders
FRAGMENT_LIMIT = 64
INBOX_BYTES = FRAGMENT_LIMIT * 1408
SEND_BUFFER_BYTES = 4 << 20
HEARTBEAT_NS = SP.DEFAULT_HEARTBEAT_INTERVAL_NS
SEED = 0x9E3779B97F4A7C15 & 0x7FFFFFFFFFFFFFFF  # the background's pseudo-random stream: the same every run
LISTENER_PROBE_S = 0.005
STAMPS = ("intended", "sent", "first_seq", "end_seq")  # per tick, sized by schedule()


class HarnessError(RuntimeError):
    """The harness exchange could not go on (one line saying why)."""


class HarnessExchange:
    """The exchange of ``bench t2t``: one instrument, one participant moving it, one node's session."""

    def __init__(self, port: Port, md_port: int, session: str, instrument: tuple[int, str, int, int],
                 price: int, lots: int, filler: bytes = b"", max_arrivals: int = 1 << 22,
                 background_depth: int = 200) -> None:  # fmt: skip
        locate, symbol, tick, lot = instrument
        self.engine = MatchingEngine([instrument], orders=BOOK_ORDERS)
        self._root = tempfile.mkdtemp(prefix="hftmm-t2t-", dir=SHM_DIR if os.path.isdir(SHM_DIR) else None)
        self.driver = EmbeddedDriver(DriverConfig(dir=os.path.join(self._root, "aeron")))
        self.client: Client | None = None
        self.sock: socket.socket | None = None
        try:
            self.client = Client(self.driver.dir, idle_sleep_ns=1_000_000)
            publication = self.client.add_exclusive_publication(port.outbound_channel, port.outbound_stream_id)
            subscription = self.client.add_subscription(port.inbound_channel, port.inbound_stream_id)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            self.sock.connect((LOOPBACK, md_port))
        except BaseException:
            self.close()
            raise
        self.session = session
        self.state = _new_state(port, session, symbol, filler, max_arrivals, background_depth)
        meta = self.state.meta
        meta[X.M_FD] = self.sock.fileno()
        meta[X.M_PUBLICATION] = publication
        meta[X.M_SUBSCRIPTION] = subscription
        meta[X.M_HANDLER] = INBOX_HANDLER.address
        meta[X.M_FRAGMENT_LIMIT] = FRAGMENT_LIMIT
        meta[X.M_HEARTBEAT_NS] = HEARTBEAT_NS
        meta[X.M_CLOCK_OFFSET_NS] = SESSION_START_NS - time.monotonic_ns()
        meta[X.M_MID] = meta[X.M_BASE_PRICE] = price
        meta[X.M_TICK_SIZE] = tick
        meta[X.M_LOTS] = lots * lot
        meta[X.M_LOCATE] = locate
        meta[X.M_BG_DEPTH] = background_depth

    @property
    def aeron_dir(self) -> str:
        """Where the node's Aeron client connects."""
        return self.driver.dir

    def open(self, timeout_s: float = 10.0) -> None:
        """Once the node's market-data socket is bound, send the session's opening ITCH (stock directory,
        trading states) and rest the participant's bid and ask one tick either side of the price."""
        self._await_listener(timeout_s)
        X.publish_nb(self.state, np.frombuffer(self.engine.session_start_itch(self._clock_ns()), np.uint8))
        meta, rq = self.state.meta, self.state.requests
        rq[:2] = 0
        rq["owner"][:2] = X.PARTICIPANT_OWNER
        rq["kind"][:2] = XL.REQ_NEW
        rq["client_ref"][:2] = [0, 1]
        rq["instrument"][:2] = meta[X.M_LOCATE]
        rq["side"][:2] = [E.SIDE_BID, E.SIDE_ASK]
        rq["price"][:2] = [meta[X.M_MID] - meta[X.M_TICK_SIZE], meta[X.M_MID] + meta[X.M_TICK_SIZE]]
        rq["qty"][:2] = meta[X.M_LOTS]
        rq["tif"][:2] = XL.TIF_DAY
        self._check(X.match_nb(self.state, self.engine.state, self.engine.match, 2, time.monotonic_ns()))

    def _await_listener(self, timeout_s: float) -> None:
        """Probe the market-data port with MoldUDP64 heartbeats until something listens there: on loopback a
        datagram to an unbound port makes the next send on the connected socket fail with ECONNREFUSED.
        There is no retransmission server behind this feed, so the opening must not be lost."""
        assert self.sock is not None
        heartbeat = encode_heartbeat(self.session, int(self.state.meta[X.M_SEQ]))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.sock.send(heartbeat)
                time.sleep(LISTENER_PROBE_S)
                self.sock.send(heartbeat)
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"nothing listens on the market-data port after {timeout_s:g} s") from None
                time.sleep(LISTENER_PROBE_S)

    def schedule(self, ticks: int, rate: float, background_rate: float, start_ns: int) -> None:
        """Arm ``ticks`` ticks at ``rate`` per second and background messages at ``background_rate`` per
        second, both from ``start_ns`` (CLOCK_MONOTONIC); the tick stamps start over. The arrivals go on
        from the session's first order: the node numbers its messages the same way."""
        s = self.state = self.state._replace(**{name: np.zeros(ticks, np.int64) for name in STAMPS})
        s.meta[X.M_TICK] = 0
        s.meta[X.M_N_TICKS] = ticks
        s.meta[X.M_START_NS] = start_ns
        s.meta[X.M_BG_SENT] = 0
        s.periods[X.F_TICK_PERIOD_NS] = NS_PER_S / rate
        s.periods[X.F_BACKGROUND_PERIOD_NS] = NS_PER_S / background_rate if background_rate > 0 else 0.0

    def pump(self, seconds: float, ticking: bool) -> None:
        """Run the compiled loop for ``seconds``: the node's session always, ticks and background if ``ticking``."""
        until = time.monotonic_ns() + int(seconds * NS_PER_S)
        self._check(X.run_nb(self.state, self.engine.state, self.engine.match, until, ticking) == X.RC_SLICE)

    def _check(self, ok: bool) -> None:
        if not ok:
            raise HarnessError(f"the harness's book ran out of its {BOOK_ORDERS} order rows")
        if self.state.meta[X.M_SCRIPT_ERRORS]:
            raise HarnessError("the matcher refused a move of the scripted participant (the node traded with it?)")

    def _clock_ns(self) -> int:
        return int(self.state.meta[X.M_CLOCK_OFFSET_NS]) + time.monotonic_ns()

    @property
    def ticks_sent(self) -> int:
        """Ticks sent since :meth:`schedule`."""
        return int(self.state.meta[X.M_TICK])

    @property
    def arrivals(self) -> int:
        """Order-entry messages read from the node since its session began."""
        return int(self.state.meta[X.M_N_ARRIVALS])

    @property
    def logged_in(self) -> bool:
        """Whether the node's session is logged in."""
        return bool(self.state.meta[X.M_LOGGED_IN])

    def counters(self) -> dict[str, int]:
        """What the exchange counted: messages, answers and every fault."""
        m = self.state.meta
        names = {"order_messages": X.M_ORDER_MESSAGES, "rejects": X.M_REJECTS, "decode_errors": X.M_DECODE_ERRORS,
                 "protocol_errors": X.M_PROTOCOL_ERRORS, "offer_failures": X.M_OFFER_FAILS,
                 "send_failures": X.M_SEND_FAILS, "order_table_full": X.M_TABLE_FULL, "logins": X.M_LOGINS,
                 "background_messages": X.M_BG_SENT, "md_messages": X.M_SEQ}  # fmt: skip
        out = {name: int(m[i]) for name, i in names.items()}
        out["md_messages"] -= 1  # sequence numbers start at 1
        return out

    def close(self) -> None:
        """Close the socket, the client, then the driver and its directory (idempotent)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.client is not None:
            self.client.close()
            self.client = None
        self.driver.close()
        with contextlib.suppress(OSError):
            os.rmdir(self._root)


def _alpha(text: str, width: int) -> np.ndarray:
    return ouch.alpha(text, width).astype(np.uint8)


def _new_state(port: Port, session: str, symbol: str, filler: bytes, max_arrivals: int, depth: int) -> HarnessState:
    """The loop's arrays, sized for ``max_arrivals`` orders (ticks: see :meth:`HarnessExchange.schedule`)."""
    if depth < X.BACKGROUND_BATCH:
        raise ValueError(f"background depth must be at least {X.BACKGROUND_BATCH}")
    meta = np.zeros(X.N_META, np.int64)
    meta[X.M_SEQ] = 1
    meta[X.M_OUT_SEQ] = 1
    meta[X.M_RNG] = SEED
    packet = np.zeros(X.MAX_PACKET_BYTES, np.uint8)
    packet[:10] = np.frombuffer(session.encode("ascii").ljust(10), np.uint8)
    reject_codes = np.full(16, ouch.REJECT_OTHER, np.int64)
    for reason, code in REJECT_CODES.items():
        reject_codes[reason] = code
    unknown_codes = np.full(4, ouch.REJECT_OTHER, np.int64)
    for kind, code in UNKNOWN_ORDER_CODES.items():
        unknown_codes[kind] = code
    cl_ord_ids = np.full((ORDER_ROWS + 1, 14), ord(" "), np.uint8)
    credentials = np.frombuffer(SP.alpha_bytes(port.username, SP.USERNAME_LEN) +
                                SP.alpha_bytes(port.password, SP.PASSWORD_LEN), np.uint8)  # fmt: skip
    return HarnessState(
        meta=meta,
        periods=np.zeros(X.N_F, np.float64),
        **{name: np.zeros(0, np.int64) for name in STAMPS},
        arrivals=np.zeros(max_arrivals, np.int64),
        inbox=make_inbox(FRAGMENT_LIMIT, INBOX_BYTES),
        requests=np.zeros(X.MAX_REQUESTS, XL.REQUEST_DTYPE),
        reports=np.zeros(1 << 12, XL.REPORT_DTYPE),
        itch=np.zeros(1 << 16, np.uint8),
        filler=np.frombuffer(filler, np.uint8).copy(),
        packet=packet,
        out=np.zeros(256, np.uint8),
        orders=np.zeros((ORDER_ROWS, X.N_OW), np.int64),
        cl_ord_ids=cl_ord_ids,
        symbol=_alpha(symbol, 8),
        credentials=credentials.copy(),
        login_accepted=np.frombuffer(SP.encode_login_accepted(session, 1), np.uint8).copy(),
        login_rejected=np.array([SP.PKT_LOGIN_REJECTED, ord(SP.LOGIN_REJECT_NOT_AUTHORIZED)], np.uint8),
        reject_codes=reject_codes,
        unknown_codes=unknown_codes,
        background=np.zeros(depth + X.BACKGROUND_BATCH, np.int64),
        messages=ouch.new_order_messages(1),
    )
