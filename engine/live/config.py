"""The live daemon's configuration (``hftmm live --config``): frozen structs, unknown keys rejected.

Every key with its default and meaning: ``examples/live.toml``. The Kubernetes ConfigMap
(``k8s/base/live.toml``) uses the same shape.
"""

from __future__ import annotations

import msgspec

from engine.core.config import FrozenConfig
from engine.core.units import LOOPBACK
from engine.gateway.session import Port
from engine.live.builder import NodeBlocks, NodeInstrument, NodeSpec
from engine.live.journal import FSYNC_POLICIES
from engine.runtime.aeron import IPC_CHANNEL, AeronConfig
from engine.runtime.affinity import check_cpus
from engine.runtime.agent import idle_strategy
from engine.runtime.metrics import MetricsConfig
from engine.simexchange.config import MarketDataConfig, OrderEntryConfig, SimExchangeConfig, SimInstrument
from engine.trading.risk import RiskConfig
from strategies import get_strategy

FIRST_STREAM_ID = 1001  # node k (0-based) of an embedded exchange: streams 1001 + 2k (in) and 1002 + 2k (out)


class ExchangeConfig(FrozenConfig, kw_only=True):
    """``[exchange]``: the embedded sim-exchange, or where a real one's market data arrives."""

    embedded: bool = True  # start an in-process sim-exchange (false: connect to a running one)
    md_host: str = LOOPBACK  # where MoldUDP64 datagrams arrive (the nodes bind here)
    md_port: int = 26400  # their UDP port
    multicast_group: str = ""  # "" = unicast (then one node per md_port); else the group the nodes join
    retransmission_host: str = LOOPBACK  # MoldUDP64 re-request server
    retransmission_port: int = 26401
    seed: int = 1  # embedded: background flow seed
    warm_up_s: float = 2.0  # embedded: simulated seconds of flow that build the books first
    idle: str = "backoff"  # embedded: the exchange runner's idle strategy (spin | yield | backoff | sleep:N_US)

    def __post_init__(self) -> None:
        idle_strategy(self.idle)
        if not 0 < self.md_port < 1 << 16 or not 0 < self.retransmission_port < 1 << 16:
            raise ValueError("md_port and retransmission_port must be in 1..65535")
        if self.warm_up_s < 0:
            raise ValueError("warm_up_s must be >= 0")


class JournalConfig(FrozenConfig, kw_only=True):
    """``[journal]``: every order sent and response received, per node, as Arrow IPC (engine.live.journal)."""

    dir: str = ""  # "" = <runtime_dir>/journal
    fsync: str = "batch"  # "batch": fsync each drained batch (every 0.1 s); "none": leave it to the OS

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"[journal] fsync must be one of {FSYNC_POLICIES}, not {self.fsync!r}")


class CaptureConfig(FrozenConfig, kw_only=True):
    """``[capture]``: record each node's session for a parity replay (engine.live.capture; off by default)."""

    enabled: bool = False  # true: every node records its datagrams, steps, responses and orders
    dir: str = ""  # "" = <runtime_dir>/capture; one <node>-<start>-<pid>.capture.arrow per node process


class RayConfig(FrozenConfig, kw_only=True):
    """``[ray]``: where the node actors go."""

    address: str = ""  # "" = start a local Ray (shut down at exit); else "auto" or "ray://host:port"
    node_cpus: float = 1.0  # Ray CPUs each node actor reserves
    max_restarts: int = 3  # restarts of a failed node before the daemon gives it up

    def __post_init__(self) -> None:
        if self.node_cpus < 0 or self.max_restarts < 0:
            raise ValueError("node_cpus and max_restarts must be >= 0")


class NodeConfig(FrozenConfig, kw_only=True):
    """``[[nodes]]``: one trading node (one pinned busy-polling process) and its OUCH session."""

    name: str
    strategy: str = "touch"
    symbols: tuple[str, ...] = ()
    cpu: int = -1  # -1: pick one of the process's allowed CPUs
    idle: str = "spin"  # the node loop's idle strategy: spin | yield | backoff | sleep:N_US
    params: dict[str, float] = msgspec.field(default_factory=dict)  # strategy parameters (see hftmm backtest --help)
    post_only: bool = True  # orders never take liquidity (as the backtester's default gtx)
    lock_memory: bool = False  # mlockall the node process after start-up, where permitted (production: true)
    order_rows: int = 32  # order slots per instrument
    username: str = ""  # OUCH user ("" = MM<k>, k = position in [[nodes]] + 1; embedded sets up the port)
    password: str = "secret"
    inbound_channel: str = IPC_CHANNEL  # node -> exchange (external exchange: its channel, e.g. aeron:udp?...)
    inbound_stream_id: int = 0  # 0: 1001 + 2 x position in [[nodes]]
    outbound_channel: str = IPC_CHANNEL  # exchange -> node
    outbound_stream_id: int = 0  # 0: 1002 + 2 x position in [[nodes]]
    maker_fee: float = 0.0  # fraction of traded value per execution that added liquidity (negative: a rebate)
    taker_fee: float = 0.0  # fraction of traded value per execution that took liquidity
    replace: bool = True  # requote with OUCH Replace Order (false: cancel + enter, a venue without replace)

    def __post_init__(self) -> None:
        get_strategy(self.strategy).param_array(self.params)
        if not (abs(self.maker_fee) < 1 and abs(self.taker_fee) < 1):
            raise ValueError(f"node {self.name!r}: maker_fee and taker_fee are fractions of traded value in (-1, 1)")
        idle_strategy(self.idle)
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"node {self.name!r} needs distinct symbols")
        if self.order_rows < 2 or self.cpu < -1:
            raise ValueError(f"node {self.name!r}: order_rows must be >= 2 and cpu >= -1")
        if self.cpu != -1:
            check_cpus((self.cpu,), f"node {self.name!r}")


# ``hftmm live`` without --config: examples/live.toml's session with its own symbols. Node mm-1 quotes two
# symbols with touch on every book change, on embedded flows as busy as the example's (the touch moves
# several times a second), so a minute re-quotes and measures tick-to-trade throughout; on the quiet default
# flow, quoting every 100 ms, a 60 s session measured 1 to 10 tick-to-trade samples.
DEFAULT_SYMBOLS = ("HFTA", "HFTB")
BUSY_FLOW = {"limit_rate": 1500.0, "market_rate": 60.0, "cancel_rate": 2.0, "volatility_ticks": 8.0}
DEFAULT_PARAMS = {"order_qty": 100.0, "max_position": 1000.0, "interval_ns": 0.0}


class LiveConfig(FrozenConfig, kw_only=True):
    """Everything ``hftmm live`` runs with (every key and its default: examples/live.toml)."""

    runtime_dir: str = "/tmp/hftmm"  # live.pid goes here (what `hftmm kill` reads)
    status_interval_s: float = 1.0  # the status line's refresh (0: no status line)
    stop_wait_s: float = 5.0  # how long a node waits for its cancels to be acknowledged at shutdown
    exchange: ExchangeConfig = ExchangeConfig()
    aeron: AeronConfig = AeronConfig()
    metrics: MetricsConfig = MetricsConfig()
    risk: RiskConfig = RiskConfig()
    journal: JournalConfig = JournalConfig()
    capture: CaptureConfig = CaptureConfig()
    ray: RayConfig = RayConfig()
    instruments: tuple[SimInstrument, ...] = ()  # the embedded exchange lists these (flow keys included)
    nodes: tuple[NodeConfig, ...] = (NodeConfig(name="mm-1", symbols=("HFTA",)),)

    @classmethod
    def default_session(cls) -> LiveConfig:
        """What ``hftmm live`` runs without a config: ``DEFAULT_SYMBOLS`` on ``BUSY_FLOW``, quoted by node mm-1
        with ``DEFAULT_PARAMS``; every other key at its default."""
        return cls(
            instruments=tuple(SimInstrument(symbol=s, **BUSY_FLOW) for s in DEFAULT_SYMBOLS),
            nodes=(NodeConfig(name="mm-1", symbols=DEFAULT_SYMBOLS, params=dict(DEFAULT_PARAMS)),),
        )

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("at least one [[nodes]] entry is needed")
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError("node names must be distinct")
        symbols = [s for n in self.nodes for s in n.symbols]
        if len(set(symbols)) != len(symbols):
            raise ValueError("a symbol may belong to one node only")
        if len(self.nodes) > 1 and not self.exchange.multicast_group:
            raise ValueError("several nodes need [exchange] multicast_group (unicast market data reaches one)")
        if self.stop_wait_s <= 0 or self.status_interval_s < 0:
            raise ValueError("stop_wait_s must be > 0 and status_interval_s >= 0")
        self.resolved_instruments()

    def listed_instruments(self) -> tuple[SimInstrument, ...]:
        """Every traded symbol as listed: the ``[[instruments]]``, then the nodes' other symbols with the
        defaults; a locate of 0 becomes the position in that list + 1 (as the embedded exchange numbers them)."""
        listed = {i.symbol: i for i in self.instruments}
        order = [i.symbol for i in self.instruments] + [s for n in self.nodes for s in n.symbols if s not in listed]
        out = []
        for k, symbol in enumerate(order):
            spec = listed.get(symbol, SimInstrument(symbol=symbol))
            out.append(spec if spec.locate else msgspec.structs.replace(spec, locate=k + 1))
        if len({i.locate for i in out}) != len(out):
            raise ValueError("instrument locates must be distinct")
        return tuple(out)

    def resolved_instruments(self) -> dict[str, NodeInstrument]:
        """What a node needs of each traded symbol: locate, tick, lot."""
        return {i.symbol: NodeInstrument(i.symbol, i.locate, i.tick, i.lot) for i in self.listed_instruments()}

    def ports(self) -> tuple[Port, ...]:
        """Each node's OUCH port: its configured user and channels, or the embedded exchange's defaults."""
        return tuple(
            Port(
                node.username or f"MM{k + 1}",
                node.password,
                node.inbound_channel,
                node.inbound_stream_id or FIRST_STREAM_ID + 2 * k,
                node.outbound_channel,
                node.outbound_stream_id or FIRST_STREAM_ID + 2 * k + 1,
            )
            for k, node in enumerate(self.nodes)
        )

    def embedded_exchange(self) -> SimExchangeConfig:
        """The sim-exchange ``[exchange] embedded = true`` starts: our listing, our nodes' ports, our driver."""
        ex = self.exchange
        return SimExchangeConfig(
            instruments=self.listed_instruments(),
            seed=ex.seed,
            warm_up_s=ex.warm_up_s,
            idle=ex.idle,
            market_data=MarketDataConfig(
                host=ex.md_host,
                port=ex.md_port,
                multicast_group=ex.multicast_group,
                retransmission_port=ex.retransmission_port,
            ),
            order_entry=OrderEntryConfig(users=self.ports()),
            aeron=self.aeron,
        )

    def node_spec(self, k: int, aeron_dir: str, blocks: NodeBlocks, first_order_id: int, capture: str = "") -> NodeSpec:
        """The spec of node ``k``: its strategy, instruments, feed and session, limits, and ``blocks``' names."""
        node, ex = self.nodes[k], self.exchange
        instruments = self.resolved_instruments()
        return NodeSpec(
            name=node.name,
            strategy=node.strategy,
            params=dict(node.params),
            instruments=tuple(instruments[s] for s in node.symbols),
            md_bind=(ex.md_host, ex.md_port),
            multicast_group=ex.multicast_group,
            retransmit=(ex.retransmission_host, ex.retransmission_port),
            aeron_dir=aeron_dir,
            port=self.ports()[k],
            risk=self.risk,
            metrics_block=blocks.metrics.name,
            control_block=blocks.control.name,
            cpu=node.cpu,
            idle=node.idle,
            post_only=node.post_only,
            maker_fee=node.maker_fee,
            taker_fee=node.taker_fee,
            replace=node.replace,
            lock_memory=node.lock_memory,
            order_rows=node.order_rows,
            first_order_id=first_order_id,
            stop_wait_s=self.stop_wait_s,
            journal=blocks.journal.name,
            capture=capture,
        )
