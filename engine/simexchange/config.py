"""The simulated exchange's configuration (``hftmm sim-exchange --config``): every key with its default in
``examples/sim-exchange.toml``. The live daemon's embedded exchange is built from the same structs."""

from __future__ import annotations

import msgspec

from engine.core.config import FrozenConfig
from engine.core.units import LOOPBACK, NS_PER_MS
from engine.gateway import session as SP
from engine.gateway.session import Port
from engine.runtime.aeron import AeronConfig
from engine.runtime.affinity import check_cpus
from engine.runtime.agent import idle_strategy
from engine.simexchange.flow import FlowConfig, InstrumentFlow
from engine.simexchange.matching import POST_ONLY_MODES, SELF_TRADE_MODES
from engine.simexchange.mdpub import DEFAULT_HISTORY_MESSAGES, DEFAULT_MAX_PACKET_BYTES
from engine.simexchange.orderentry import (
    DEFAULT_MAX_ORDER_NOTIONAL,
    DEFAULT_MAX_ORDER_SHARES,
    DEFAULT_MAX_ORDERS_PER_S,
    DEFAULT_PRICE_BAND_PCT,
    ServerConfig,
)
from engine.simexchange.replayflow import AT_END_MODES


class SimInstrument(InstrumentFlow, kw_only=True):
    """A listed instrument: its symbol plus the background flow fields (locate, tick, lot, rates, ...).

    The live daemon's ``[[instruments]]`` are these too: its embedded exchange lists them as given."""

    symbol: str  # ITCH / OUCH symbol, ASCII, 1..8 characters

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < len(self.symbol) <= 8 or not self.symbol.isascii() or not self.symbol.strip():
            raise ValueError(f"symbol {self.symbol!r} must be 1..8 ASCII characters")


class MarketDataConfig(FrozenConfig):
    """ITCH 5.0 over MoldUDP64: where packets go, their session and size, heartbeats, history."""

    host: str = LOOPBACK  # unicast destination, or the interface multicast leaves by
    port: int = 26400  # destination UDP port
    multicast_group: str = ""  # "" = unicast to host; else e.g. "239.1.1.1" sent via the host interface
    multicast_ttl: int = 0  # 0 keeps multicast on this machine, 1 on the local network
    retransmission_port: int = 26401  # UDP port of the re-request server on 127.0.0.1 (0 = any free port)
    session: str = "HFTMM00001"  # MoldUDP64 session, up to 10 ASCII characters
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES  # UDP payload bound of a packet
    heartbeat_interval_ms: int = 1000  # heartbeat after this long without a packet
    history_messages: int = DEFAULT_HISTORY_MESSAGES  # messages kept for retransmission
    aeron_channel: str = ""  # "" = off; else the same packets on this Aeron channel too, e.g. "aeron:ipc"
    aeron_stream_id: int = 2001  # stream id of those packets

    def __post_init__(self) -> None:
        if self.aeron_channel and not self.aeron_channel.startswith("aeron:"):
            raise ValueError(f"aeron_channel {self.aeron_channel!r} is not an Aeron URI (aeron:ipc, aeron:udp?...)")
        if not 0 < self.port < 1 << 16 or not 0 <= self.retransmission_port < 1 << 16:
            raise ValueError("market data port must be in 1..65535 and retransmission_port in 0..65535")
        if not 0 < len(self.session) <= 10 or not self.session.isascii():
            raise ValueError(f"session {self.session!r} must be 1..10 ASCII characters")
        if self.heartbeat_interval_ms <= 0 or self.history_messages <= 0 or self.multicast_ttl not in (0, 1):
            raise ValueError("heartbeat_interval_ms and history_messages must be positive, multicast_ttl 0 or 1")


class OrderEntryConfig(FrozenConfig):
    """OUCH 5.0 sessions over Aeron."""

    users: tuple[Port, ...] = (Port(),)  # one port per user (owner id = index + 1)
    session: str = "HFTMM00001"  # session name sent in Login Accepted, up to 10 characters
    heartbeat_interval_ms: int = 1000  # server heartbeat after this long without sending
    timeout_ms: int = SP.DEFAULT_TIMEOUT_NS // NS_PER_MS  # end a session after this long without a client packet
    cancel_on_disconnect: bool = True  # cancel a session's resting orders when it ends
    max_order_shares: int = DEFAULT_MAX_ORDER_SHARES  # an Enter or Replace for more shares is rejected
    max_order_notional: int = DEFAULT_MAX_ORDER_NOTIONAL  # dollars (shares x limit price); beyond: rejected
    price_band_pct: float = DEFAULT_PRICE_BAND_PCT  # a buy this far above the reference, a sell below: rejected
    max_orders_per_s: float = DEFAULT_MAX_ORDERS_PER_S  # Enter + Replace per user and instrument (0: off)

    def __post_init__(self) -> None:
        self.server_config()

    def server_config(self, reference_prices: dict[str, int] | None = None) -> ServerConfig:
        """The order-entry server's :class:`ServerConfig` of these settings; ``reference_prices`` (symbol ->
        price) centre the price band while a book lacks a side."""
        return ServerConfig(
            ports=self.users,
            session=self.session,
            heartbeat_interval_ns=self.heartbeat_interval_ms * NS_PER_MS,
            timeout_ns=self.timeout_ms * NS_PER_MS,
            cancel_on_disconnect=self.cancel_on_disconnect,
            max_order_shares=self.max_order_shares,
            max_order_notional=self.max_order_notional,
            price_band_pct=self.price_band_pct,
            max_orders_per_s=self.max_orders_per_s,
            reference_prices=reference_prices or {},
        )


FLOW_MODES = ("synthetic", "replay")


class FlowSource(FrozenConfig):
    """Where the background flow comes from: the seeded synthetic flow, or a replay of recorded files."""

    mode: str = "synthetic"  # "synthetic" (the [[instruments]] rates) or "replay" (the keys below)
    files: tuple[str, ...] = ()  # replay: ITCH 5.0 / DBN MBO files, read in order as one session
    speed: float = 1.0  # replay: 1.0 real time, 10.0 ten times faster, 0 as fast as possible
    start_s: float = 0.0  # replay: the recorded seconds applied at once when the session opens
    at_end: str = "stop"  # replay: "stop" (the book stays) or "loop" (recorded orders deleted, again)
    symbols: dict[str, str] = msgspec.field(default_factory=dict)  # replay: recorded -> listed symbol

    def __post_init__(self) -> None:
        if self.mode not in FLOW_MODES:
            raise ValueError(f"flow mode must be one of {FLOW_MODES}, not {self.mode!r}")
        if self.at_end not in AT_END_MODES:
            raise ValueError(f"flow at_end must be one of {AT_END_MODES}, not {self.at_end!r}")
        if self.speed < 0 or self.start_s < 0:
            raise ValueError("flow speed and start_s must be >= 0")
        if self.mode == "replay" and not self.files:
            raise ValueError('flow mode "replay" needs files')

    def locates(self, instruments: tuple[SimInstrument, ...]) -> dict[str, int]:
        """Recorded symbol -> locate of the listed instrument it feeds: ``symbols``, and every other
        listed instrument from the recorded symbol of its own name."""
        locate = {i.symbol: i.locate for i in instruments}
        unknown = sorted(set(self.symbols.values()) - set(locate))
        if unknown:
            raise ValueError(f"flow symbols map to unlisted instruments {', '.join(unknown)}")
        mapped = set(self.symbols.values())
        own = {symbol: loc for symbol, loc in locate.items() if symbol not in mapped}
        return {**own, **{recorded: locate[listed] for recorded, listed in self.symbols.items()}}


class SimExchangeConfig(FrozenConfig):
    """Everything ``hftmm sim-exchange`` runs with (see examples/sim-exchange.toml)."""

    instruments: tuple[SimInstrument, ...] = (SimInstrument(locate=1, symbol="HFTA"),)
    seed: int = 1  # background flow seed: the same seed gives the same flow requests
    warm_up_s: float = 10.0  # simulated seconds of flow that build the books before the clock starts
    post_only: str = "reject"  # a post-only order that would take: "reject" or "reprice"
    self_trade: str = "cancel-resting"  # an order meeting its own session's resting order: see SELF_TRADE_MODES
    idle: str = "backoff"  # runner idle strategy: "spin", "yield", "backoff", "sleep:N_US"
    cpu_affinity: tuple[int, ...] = ()  # CPUs the runner thread is pinned to (empty = no pinning)
    metrics_port: int = 0  # Prometheus exporter on 127.0.0.1 (0 = off)
    market_data: MarketDataConfig = MarketDataConfig()
    order_entry: OrderEntryConfig = OrderEntryConfig()
    aeron: AeronConfig = AeronConfig()
    flow: FlowSource = FlowSource()

    def __post_init__(self) -> None:
        FlowConfig(instruments=self.listed(), seed=self.seed)  # distinct locates
        self.flow.locates(self.listed())
        if len({i.symbol for i in self.instruments}) != len(self.instruments):
            raise ValueError("instrument symbols must be distinct")
        if self.post_only not in POST_ONLY_MODES:
            raise ValueError(f"post_only must be one of {sorted(POST_ONLY_MODES)}, not {self.post_only!r}")
        if self.self_trade not in SELF_TRADE_MODES:
            raise ValueError(f"self_trade must be one of {sorted(SELF_TRADE_MODES)}, not {self.self_trade!r}")
        idle_strategy(self.idle)
        if self.warm_up_s < 0 or not 0 <= self.metrics_port < 1 << 16:
            raise ValueError("warm_up_s must be >= 0 and metrics_port in 0..65535")
        check_cpus(self.cpu_affinity, "cpu_affinity")

    def listed(self) -> tuple[SimInstrument, ...]:
        """The instruments with their locates: as given, or (0) their position in the list + 1."""
        return tuple(
            i if i.locate else msgspec.structs.replace(i, locate=k + 1) for k, i in enumerate(self.instruments)
        )
