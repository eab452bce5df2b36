"""Metrics: hot-path counters in shared memory, sampled by a Prometheus exporter at scrape time.

A trading node (its own process, a Numba loop) never calls prometheus-client. It writes plain int64 /
float64 slots of a :class:`MetricsBlock`, a named POSIX shared-memory segment (``/dev/shm/<name>``),
through numpy views handed to its jitted kernels. The daemon attaches every node's block by name and
registers it with a :class:`MetricsExporter`, whose collector copies the arrays when Prometheus
scrapes and turns them into ``hftmm_*`` families. Node supervision state that the daemon itself owns
(kill switch, node up, restarts) lives in a :class:`DaemonMetrics` in the daemon process.

The metric catalog (counters end in ``_total`` on the wire; latencies in seconds) is in
``docs/metrics.md``; the declarations below (``NODE_METRICS``, ``INSTRUMENT_COUNTERS``, ...) are the
single source of names and help texts.

Block layout (version 1; every section starts on a 64-byte boundary; all numbers native-endian)::

    header      int64[8]     magic "HFTMMET1", version, n_instruments, n_stages, n_reasons,
                             n_buckets, meta_bytes, reserved
    meta        utf-8 JSON   {"node", "instruments", "stages", "reasons"}: the labels
    node        int64[N_NODE_SLOTS]                             slots N_* (see NODE_METRICS)
    counters    int64[n_instruments, N_INSTRUMENT_COUNTERS]     slots I_* (see INSTRUMENT_COUNTERS)
    gauges      float64[n_instruments, N_INSTRUMENT_GAUGES]     slots G_* (see INSTRUMENT_GAUGES)
    risk        int64[n_instruments, n_reasons]                 risk rejections by instrument and reason
    histograms  int64[1 + n_stages, HIST_WIDTH]                 row 0 tick-to-trade, row 1 + s stage s

A histogram row holds N_BUCKETS per-bucket (not cumulative) counts, bucket ``i`` counting values
``<= BUCKET_BOUNDS_NS[i]`` and above the previous bound, the last one +Inf, then the sum of the
observed values in ns at ``HIST_SUM``. The observation count is the total of the buckets, so the
+Inf bucket and ``_count`` always agree.

Concurrency: one writer per block (the node's single-threaded loop) with plain stores, no lock;
the exporter reads concurrently. Every slot is an aligned 8-byte word, so a single value is never
torn on x86-64, but a scrape may see a histogram's buckets and sum, or two related counters, from
slightly different moments. That is acceptable for monitoring; nothing reads these for trading.

>>> block = MetricsBlock.create("mm-1", ["AAPL", "MSFT"], ["decode", "book", "strategy"], ["position"])
>>> exporter = MetricsExporter(port=9108, daemon=DaemonMetrics())
>>> exporter.add(block)
>>> exporter.start()
>>> # in the node's process: nb = MetricsBlock.attach("hftmm-metrics-mm-1")
>>> #   nb.node[N_MD_MESSAGES] += n; observe_nb(nb.histograms[HIST_TICK_TO_TRADE], t_out - t_in)
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import re
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import NamedTuple, Self

import numpy as np
from numba import njit
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from engine.core.config import FrozenConfig
from engine.core.units import LOOPBACK, NS_PER_S, SHM_DIR

DEFAULT_PORT = 9108
BLOCK_PREFIX = "hftmm-metrics-"

COUNTER = "counter"
GAUGE = "gauge"

# --- node slots (int64): written by the node's loop ----------------------------------------------------
N_MD_MESSAGES = 0  # market-data messages decoded
N_MD_PACKETS = 1  # market-data packets received
N_MD_GAPS = 2  # sequence gaps detected
N_MD_MISSING = 3  # gauge: messages missing and not yet recovered (0 when the feed is whole)
N_AERON_BACK_PRESSURE = 4  # Aeron offers refused (back pressured, not connected, admin action)
N_DUTY_CYCLES = 5  # duty cycles of the node's loop
N_MAX_DUTY_CYCLE_NS = 6  # gauge: the longest duty cycle, ns
N_NODE_SLOTS = 7

NODE_METRICS = (  # slot, name, type, help (labels: node)
    (N_MD_MESSAGES, "hftmm_md_messages", COUNTER, "Market-data messages decoded."),
    (N_MD_PACKETS, "hftmm_md_packets", COUNTER, "Market-data packets received."),
    (N_MD_GAPS, "hftmm_md_gaps", COUNTER, "Market-data sequence gaps detected."),
    (N_MD_MISSING, "hftmm_md_missing_messages", GAUGE, "Market-data messages missing and not yet recovered."),
    (N_AERON_BACK_PRESSURE, "hftmm_aeron_back_pressure", COUNTER, "Aeron offers refused by back pressure."),
    (N_DUTY_CYCLES, "hftmm_duty_cycles", COUNTER, "Duty cycles of the node's loop."),
    (N_MAX_DUTY_CYCLE_NS, "hftmm_max_duty_cycle_seconds", GAUGE, "Longest duty cycle of the node's loop."),
)
_NODE_SECONDS = frozenset({N_MAX_DUTY_CYCLE_NS})  # slots kept in ns, exported in seconds

# --- per-instrument counters (int64) --------------------------------------------------------------------
I_BOOK_UPDATES = 0
I_ORDERS_SENT = 1
I_ORDERS_ACCEPTED = 2
I_ORDERS_REJECTED = 3  # rejected by the exchange (risk rejections are counted apart, by reason)
I_ORDERS_CANCELED = 4
I_ORDERS_FILLED = 5  # fills (an order filled in three parts counts three)
N_INSTRUMENT_COUNTERS = 6

INSTRUMENT_COUNTERS = (  # slot, name, help (type counter; labels: node, instrument)
    (I_BOOK_UPDATES, "hftmm_book_updates", "Order book events applied."),
    (I_ORDERS_SENT, "hftmm_orders_sent", "Orders sent to the exchange."),
    (I_ORDERS_ACCEPTED, "hftmm_orders_accepted", "Orders accepted by the exchange."),
    (I_ORDERS_REJECTED, "hftmm_orders_rejected", "Orders rejected by the exchange."),
    (I_ORDERS_CANCELED, "hftmm_orders_canceled", "Orders canceled."),
    (I_ORDERS_FILLED, "hftmm_orders_filled", "Fills received (partial fills count each)."),
)

# --- per-instrument gauges (float64) --------------------------------------------------------------------
G_POSITION = 0  # signed quantity held
G_PNL = 1  # profit and loss, realized + marked to market, in currency units
G_QUOTED_SPREAD_TICKS = 2  # our ask minus our bid, in ticks (NaN when not quoting both sides)
N_INSTRUMENT_GAUGES = 3

INSTRUMENT_GAUGES = (  # slot, name, help (type gauge; labels: node, instrument)
    (G_POSITION, "hftmm_position", "Signed position, in shares or contracts."),
    (G_PNL, "hftmm_pnl", "Profit and loss (realized plus marked to market, net of fees), in currency units."),
    (G_QUOTED_SPREAD_TICKS, "hftmm_quoted_spread_ticks", "Our quoted spread (ask minus bid), in ticks."),
)

RISK_REJECTIONS = ("hftmm_risk_rejections", "Orders stopped by the pre-trade risk checks.")  # node, instrument, reason
TICK_TO_TRADE = ("hftmm_tick_to_trade_seconds", "Market-data receive to order send.")  # labels: node
STAGE_LATENCY = ("hftmm_stage_latency_seconds", "Time spent in one stage of the node's loop.")  # node, stage
KILL_SWITCH = ("hftmm_kill_switch_engaged", "1 while the kill switch is engaged (no new orders).")  # no labels
NODE_UP = ("hftmm_node_up", "1 while the daemon sees the node running.")  # labels: node
NODE_RESTARTS = ("hftmm_node_restarts", "Times the daemon restarted the node.")  # labels: node


# --- latency histograms ----------------------------------------------------------------------------------
# Renard's R5 series (1, 1.6, 2.5, 4, 6.3: five log-spaced steps a decade) from 100 ns up to 1 s.
R5_NS = np.array([100, 160, 250, 400, 630], dtype=np.int64)
BUCKET_BOUNDS_NS = np.append(np.concatenate([R5_NS * 10**k for k in range(7)]), np.int64(1_000_000_000))
N_BOUNDS = len(BUCKET_BOUNDS_NS)
N_BUCKETS = N_BOUNDS + 1  # the last bucket is +Inf
HIST_SUM = N_BUCKETS  # sum of the observed values, ns
HIST_WIDTH = N_BUCKETS + 1
HIST_TICK_TO_TRADE = 0  # histogram row of tick-to-trade; stage s is row 1 + s

# --- layout -------------------------------------------------------------------------------------------
MAGIC = int.from_bytes(b"HFTMMET1", "little")
LAYOUT_VERSION = 1
ALIGN = 64
HEADER_SLOTS = 8
H_MAGIC, H_VERSION, H_INSTRUMENTS, H_STAGES, H_REASONS, H_BUCKETS, H_META_BYTES = range(7)
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


class MetricsBlockError(ValueError):
    """A metrics block that cannot be created or attached (one line saying why)."""


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _sections(n_instruments: int, n_stages: int, n_reasons: int, meta_bytes: int) -> dict[str, tuple[int, tuple]]:
    """Byte offset and shape of every array section, in layout order."""
    shapes = {
        "node": (N_NODE_SLOTS,),
        "instrument_counters": (n_instruments, N_INSTRUMENT_COUNTERS),
        "instrument_gauges": (n_instruments, N_INSTRUMENT_GAUGES),
        "risk_rejections": (n_instruments, n_reasons),
        "histograms": (1 + n_stages, HIST_WIDTH),
    }
    offset = _aligned(HEADER_SLOTS * 8 + meta_bytes)
    sections = {}
    for key, shape in shapes.items():
        sections[key] = (offset, shape)
        offset = _aligned(offset + 8 * int(np.prod(shape)))
    sections["end"] = (offset, ())
    return sections


def _check_labels(kind: str, values: Sequence[str]) -> list[str]:
    values = list(values)
    if any(not isinstance(v, str) or not v for v in values) or len(set(values)) != len(values):
        raise MetricsBlockError(f"{kind} must be distinct non-empty strings, got {values!r}")
    return values


@njit(cache=True, nogil=True)
def bucket_index_nb(value_ns):
    """The histogram bucket of ``value_ns``: the first bound >= it, or the +Inf bucket (binary search)."""
    lo = 0
    hi = N_BOUNDS
    while lo < hi:
        mid = (lo + hi) >> 1
        if BUCKET_BOUNDS_NS[mid] < value_ns:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def observe_nb(hist, value_ns):
    """Record one latency in a histogram row (``int64[HIST_WIDTH]``); negative values count as 0."""
    if value_ns < 0:
        value_ns = 0
    hist[bucket_index_nb(value_ns)] += 1
    hist[HIST_SUM] += value_ns


class MetricsBlock:
    """One trading node's metrics: a named shared-memory segment with the layout of the module doc.

    Create it with :meth:`create` (the owner, who unlinks it) and open it elsewhere with :meth:`attach`.
    The arrays (``node``, ``instrument_counters``, ``instrument_gauges``, ``risk_rejections``,
    ``histograms``) are views of the shared memory: write them from the hot path, pass them to jitted
    kernels, and drop them before :meth:`close`.
    """

    def __init__(self, name: str, mapping: mmap.mmap, owner: bool) -> None:
        self.name = name
        self.owner = owner
        self._mmap = mapping
        header = np.frombuffer(mapping, np.int64, HEADER_SLOTS).copy()
        if header[H_MAGIC] != MAGIC or header[H_VERSION] != LAYOUT_VERSION:
            raise MetricsBlockError(f"shared memory {name!r} is not an hftmm metrics block (layout v{LAYOUT_VERSION})")
        n_inst, n_stages, n_reasons, n_buckets, meta_bytes = (
            int(header[i]) for i in range(H_INSTRUMENTS, H_META_BYTES + 1)
        )
        if n_buckets != N_BUCKETS:
            raise MetricsBlockError(f"metrics block {name!r} has {n_buckets} latency buckets, this build {N_BUCKETS}")
        start = HEADER_SLOTS * 8
        meta = json.loads(bytes(mapping[start : start + meta_bytes]))
        self.node: np.ndarray  # int64[N_NODE_SLOTS]
        self.instrument_counters: np.ndarray  # int64[n_instruments, N_INSTRUMENT_COUNTERS]
        self.instrument_gauges: np.ndarray  # float64[n_instruments, N_INSTRUMENT_GAUGES]
        self.risk_rejections: np.ndarray  # int64[n_instruments, n_reasons]
        self.histograms: np.ndarray  # int64[1 + n_stages, HIST_WIDTH]
        self.node_name: str = meta["node"]
        self.instruments: list[str] = meta["instruments"]
        self.stages: list[str] = meta["stages"]
        self.reasons: list[str] = meta["reasons"]
        sections = _sections(n_inst, n_stages, n_reasons, meta_bytes)
        if len(mapping) < sections["end"][0]:
            raise MetricsBlockError(f"metrics block {name!r} is truncated ({len(mapping)} bytes)")
        for key in ("node", "instrument_counters", "instrument_gauges", "risk_rejections", "histograms"):
            offset, shape = sections[key]
            dtype = np.float64 if key == "instrument_gauges" else np.int64
            setattr(self, key, np.ndarray(shape, dtype, buffer=mapping, offset=offset))

    @classmethod
    def create(
        cls,
        node: str,
        instruments: Sequence[str],
        stages: Sequence[str],
        reasons: Sequence[str],
        *,
        name: str | None = None,
        replace: bool = False,
    ) -> Self:
        """Create the zeroed block of ``node`` (default name ``hftmm-metrics-<node>``).

        ``replace`` unlinks a block of the same name first (one left behind by a crashed daemon);
        without it an existing block is an error."""
        name = name or BLOCK_PREFIX + node
        if not _NAME_RE.fullmatch(node) or not _NAME_RE.fullmatch(name):
            raise MetricsBlockError(f"node and block names must match {_NAME_RE.pattern}: {node!r}, {name!r}")
        meta = {
            "node": node,
            "instruments": _check_labels("instruments", instruments),
            "stages": _check_labels("stages", stages),
            "reasons": _check_labels("reasons", reasons),
        }
        meta_json = json.dumps(meta).encode()
        sections = _sections(len(meta["instruments"]), len(meta["stages"]), len(meta["reasons"]), len(meta_json))
        path = os.path.join(SHM_DIR, name)
        if replace and os.path.exists(path):
            os.unlink(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise MetricsBlockError(f"metrics block {name!r} already exists ({path}); pass replace=True") from None
        try:
            os.ftruncate(fd, sections["end"][0])
            mapping = mmap.mmap(fd, sections["end"][0])
        finally:
            os.close(fd)
        start = HEADER_SLOTS * 8
        mapping[start : start + len(meta_json)] = meta_json
        header = np.frombuffer(mapping, np.int64, HEADER_SLOTS)
        header[H_VERSION] = LAYOUT_VERSION
        header[H_INSTRUMENTS] = len(meta["instruments"])
        header[H_STAGES] = len(meta["stages"])
        header[H_REASONS] = len(meta["reasons"])
        header[H_BUCKETS] = N_BUCKETS
        header[H_META_BYTES] = len(meta_json)
        header[H_MAGIC] = MAGIC  # last: a block is valid once its magic is there
        del header
        return cls(name, mapping, owner=True)

    @classmethod
    def attach(cls, name: str) -> Self:
        """Open the existing block ``name`` (from any process); raises :class:`MetricsBlockError` when absent."""
        if not _NAME_RE.fullmatch(name):
            raise MetricsBlockError(f"block names must match {_NAME_RE.pattern}: {name!r}")
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise MetricsBlockError(f"no metrics block named {name!r} ({path} does not exist)") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SLOTS * 8:
                raise MetricsBlockError(f"shared memory {name!r} is not an hftmm metrics block ({size} bytes)")
            mapping = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        try:
            return cls(name, mapping, owner=False)
        except MetricsBlockError:
            mapping.close()
            raise

    def stage_row(self, stage: str) -> int:
        """The histogram row of ``stage``."""
        try:
            return 1 + self.stages.index(stage)
        except ValueError:
            raise MetricsBlockError(f"node {self.node_name!r} has no stage {stage!r} ({self.stages})") from None

    def close(self) -> None:
        """Unmap the block (the owner also unlinks it). Views taken from it must be dropped first."""
        for key in ("node", "instrument_counters", "instrument_gauges", "risk_rejections", "histograms"):
            self.__dict__.pop(key, None)
        if not self._mmap.closed:
            self._mmap.close()
        if self.owner:
            self.owner = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def catalog() -> list[tuple[str, str, tuple[str, ...], str]]:
    """Every exported family as (name on the wire, type, labels, help); counters carry their ``_total``."""
    out = [(n + "_total" if k == COUNTER else n, k, ("node",), h) for _slot, n, k, h in NODE_METRICS]
    out += [(n + "_total", COUNTER, ("node", "instrument"), h) for _slot, n, h in INSTRUMENT_COUNTERS]
    out += [(n, GAUGE, ("node", "instrument"), h) for _slot, n, h in INSTRUMENT_GAUGES]
    out.append((RISK_REJECTIONS[0] + "_total", COUNTER, ("node", "instrument", "reason"), RISK_REJECTIONS[1]))
    out.append((TICK_TO_TRADE[0], "histogram", ("node",), TICK_TO_TRADE[1]))
    out.append((STAGE_LATENCY[0], "histogram", ("node", "stage"), STAGE_LATENCY[1]))
    out.append((KILL_SWITCH[0], GAUGE, (), KILL_SWITCH[1]))
    out.append((NODE_UP[0], GAUGE, ("node",), NODE_UP[1]))
    out.append((NODE_RESTARTS[0] + "_total", COUNTER, ("node",), NODE_RESTARTS[1]))
    return out


class DaemonMetrics:
    """State the daemon owns and the exporter reports: the kill switch, and each node's up flag and restarts."""

    def __init__(self) -> None:
        self.kill_switch_engaged = False
        self._lock = threading.Lock()
        self._up: dict[str, bool] = {}
        self._restarts: dict[str, int] = {}

    def set_kill_switch(self, engaged: bool) -> None:
        """Record the kill switch state."""
        self.kill_switch_engaged = bool(engaged)

    def set_node_up(self, node: str, up: bool) -> None:
        """Record whether ``node`` runs (the first call makes the node known, with 0 restarts)."""
        with self._lock:
            self._up[node] = bool(up)
            self._restarts.setdefault(node, 0)

    def node_restarted(self, node: str) -> None:
        """Count one restart of ``node``."""
        with self._lock:
            self._restarts[node] = self._restarts.get(node, 0) + 1
            self._up.setdefault(node, False)

    def snapshot(self) -> tuple[bool, dict[str, bool], dict[str, int]]:
        """Kill switch, up flags and restart counts, copied."""
        with self._lock:
            return self.kill_switch_engaged, dict(self._up), dict(self._restarts)


def _seconds_buckets(row: np.ndarray) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs in seconds and the sum in seconds of one histogram row."""
    cumulative = np.cumsum(row[:N_BUCKETS])
    bounds = zip(BUCKET_BOUNDS_NS, cumulative[:N_BOUNDS], strict=True)
    buckets = [(floatToGoString(bound / NS_PER_S), float(count)) for bound, count in bounds]
    buckets.append(("+Inf", float(cumulative[-1])))
    return buckets, row[HIST_SUM] / NS_PER_S


class _Sample(NamedTuple):
    """Copies of one block's labels and arrays, taken at scrape time."""

    node: str
    instruments: list[str]
    stages: list[str]
    reasons: list[str]
    node_slots: np.ndarray
    counters: np.ndarray
    gauges: np.ndarray
    risk: np.ndarray
    histograms: np.ndarray

    @classmethod
    def of(cls, b: MetricsBlock) -> _Sample:
        return cls(
            b.node_name,
            b.instruments,
            b.stages,
            b.reasons,
            b.node.copy(),
            b.instrument_counters.copy(),
            b.instrument_gauges.copy(),
            b.risk_rejections.copy(),
            b.histograms.copy(),
        )


class BlockCollector(Collector):
    """Prometheus collector over the registered blocks and the daemon's state, sampled at scrape time."""

    def __init__(self, daemon: DaemonMetrics | None = None) -> None:
        self.daemon = daemon
        self._blocks: list[MetricsBlock] = []
        self._lock = threading.Lock()

    def add(self, block: MetricsBlock) -> None:
        """Report ``block`` from the next scrape on."""
        with self._lock:
            self._blocks.append(block)

    def remove(self, block: MetricsBlock) -> None:
        """Stop reporting ``block`` (before closing it)."""
        with self._lock:
            self._blocks.remove(block)

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the blocks registered at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every ``hftmm_*`` family, from copies of the blocks taken now."""
        with self._lock:
            samples = [_Sample.of(block) for block in self._blocks]
        for slot, name, kind, help_text in NODE_METRICS:
            family = (CounterMetricFamily if kind == COUNTER else GaugeMetricFamily)(name, help_text, labels=["node"])
            scale = NS_PER_S if slot in _NODE_SECONDS else 1.0
            for s in samples:
                family.add_metric([s.node], s.node_slots[slot] / scale)
            yield family
        for slot, name, help_text in INSTRUMENT_COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=["node", "instrument"])
            for s in samples:
                for i, symbol in enumerate(s.instruments):
                    family.add_metric([s.node, symbol], float(s.counters[i, slot]))
            yield family
        for slot, name, help_text in INSTRUMENT_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["node", "instrument"])
            for s in samples:
                for i, symbol in enumerate(s.instruments):
                    family.add_metric([s.node, symbol], float(s.gauges[i, slot]))
            yield family
        family = CounterMetricFamily(*RISK_REJECTIONS, labels=["node", "instrument", "reason"])
        for s in samples:
            for i, symbol in enumerate(s.instruments):
                for r, reason in enumerate(s.reasons):
                    family.add_metric([s.node, symbol, reason], float(s.risk[i, r]))
        yield family
        tick_to_trade = HistogramMetricFamily(*TICK_TO_TRADE, labels=["node"])
        stage_latency = HistogramMetricFamily(*STAGE_LATENCY, labels=["node", "stage"])
        for s in samples:
            tick_to_trade.add_metric([s.node], *_seconds_buckets(s.histograms[HIST_TICK_TO_TRADE]))
            for k, stage in enumerate(s.stages):
                stage_latency.add_metric([s.node, stage], *_seconds_buckets(s.histograms[1 + k]))
        yield tick_to_trade
        yield stage_latency
        if self.daemon is not None:
            engaged, up, restarts = self.daemon.snapshot()
            yield GaugeMetricFamily(*KILL_SWITCH, value=float(engaged))
            up_family = GaugeMetricFamily(*NODE_UP, labels=["node"])
            restart_family = CounterMetricFamily(*NODE_RESTARTS, labels=["node"])
            for node in sorted(restarts):
                up_family.add_metric([node], float(up[node]))
                restart_family.add_metric([node], float(restarts[node]))
            yield up_family
            yield restart_family


class MetricsConfig(FrozenConfig, kw_only=True):
    """Where the exporter listens (the ``[metrics]`` table of a daemon config)."""

    host: str = LOOPBACK  # interface to bind; 0.0.0.0 only inside a container
    port: int = DEFAULT_PORT  # TCP port of /metrics (0 = an ephemeral port, see MetricsExporter.port)

    def __post_init__(self) -> None:
        if not self.host or not 0 <= self.port < 1 << 16:
            raise ValueError("metrics host must be set and port in 0..65535")


class MetricsExporter:
    """The Prometheus HTTP endpoint of the daemon: a :class:`BlockCollector` served on ``host:port``."""

    def __init__(self, host: str = LOOPBACK, port: int = DEFAULT_PORT, daemon: DaemonMetrics | None = None) -> None:
        self.host = host
        self.port = port
        self.collector = BlockCollector(daemon)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        self._server = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: MetricsConfig, daemon: DaemonMetrics | None = None) -> Self:
        """An exporter for ``config``."""
        return cls(config.host, config.port, daemon)

    def add(self, block: MetricsBlock) -> None:
        """Report ``block`` from the next scrape on."""
        self.collector.add(block)

    def remove(self, block: MetricsBlock) -> None:
        """Stop reporting ``block``."""
        self.collector.remove(block)

    def start(self) -> None:
        """Serve ``/metrics`` on a background thread; ``port`` becomes the bound port (when 0 was asked)."""
        if self._server is not None:
            return
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self.host}:{self.port}/metrics"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
