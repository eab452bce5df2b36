"""Aeron set-up: an embedded media driver with explicit idle strategies, clients, channel URIs.

Aeron IPC needs no driver thread on the data path (publisher and subscriber share the log buffers),
so the driver runs in ``"shared"`` threading mode (one thread for conductor, sender and receiver)
with a *sleeping* idle strategy: on a 2-core machine a spinning driver would steal a core from the
trading loop. UDP channels do go through that thread, so their latency is bounded below by the
sleep; pick ``"backoff"`` or ``"yield"`` when UDP latency matters more than a core (measured on 2 cores with
both ends spinning, ``"sleeping:1us"`` did best: a driver that never sleeps waits for a time slice).

The C driver reads its idle strategies only from ``AERON_*_IDLE_STRATEGY`` variables (pyaeron's
``MediaDriver`` has no argument for them), so :class:`EmbeddedDriver` sets them for the duration of
the driver's construction and restores the previous values right after.

The ``[aeron]`` table of the live daemon and of the sim-exchange is one :class:`AeronConfig`:
:func:`open_driver` starts the embedded driver it describes, or attaches to one already running.

>>> with EmbeddedDriver(DriverConfig(dir="/dev/shm/hftmm-test/aeron")) as driver:
...     aeron = driver.connect()
...     pub = aeron.add_exclusive_publication(IPC_CHANNEL, 10)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyaeron

from engine.core.config import FrozenConfig
from engine.core.units import LOOPBACK, SHM_DIR

IPC_CHANNEL = pyaeron.IPC_CHANNEL
DEFAULT_TERM_LENGTH = 64 * 1024  # the smallest Aeron allows; keeps /dev/shm usage low
DEFAULT_DRIVER_IDLE = "sleeping:1ms"
DEFAULT_CLIENT_SLEEP_NS = 1_000_000  # the client conductor thread's sleep between duty cycles
DEFAULT_AWAIT_SLEEP_NS = 100_000  # pyaeron's wait loops (add_publication, ...) park this long
THREADING_MODES = ("shared", "shared_network", "dedicated")
DRIVER_IDLE_NAMES = ("sleeping", "yield", "backoff", "noop", "spin")  # the C driver's names
_DRIVER_AGENTS = ("CONDUCTOR", "SENDER", "RECEIVER", "SHARED", "SHAREDNETWORK")


def udp_channel(port: int, host: str = LOOPBACK) -> str:
    """A unicast UDP channel URI: ``aeron:udp?endpoint=host:port``."""
    if not 0 < port < 1 << 16:
        raise ValueError(f"UDP port {port} out of range")
    return f"aeron:udp?endpoint={host}:{port}"


class DriverConfig(FrozenConfig, kw_only=True):
    """Embedded media driver settings.

    ``dir``: the Aeron directory (put it under /dev/shm or a tmp dir; deleted on start and close).
    ``idle``: ``"name"`` or ``"name:args"`` with an Aeron idle strategy name (``DRIVER_IDLE_NAMES``)
    and its init arguments (``"sleeping:1ms"``), applied to every driver agent.
    ``term_length`` / ``ipc_term_length``: log term sizes in bytes (power of two, >= 64 KiB).
    ``client_sleep_ns``: the client conductor's sleep; ``await_sleep_ns``: pyaeron's wait loops.
    """

    dir: str
    threading: str = "shared"
    idle: str = DEFAULT_DRIVER_IDLE
    term_length: int = DEFAULT_TERM_LENGTH
    ipc_term_length: int = DEFAULT_TERM_LENGTH
    client_sleep_ns: int = DEFAULT_CLIENT_SLEEP_NS
    await_sleep_ns: int = DEFAULT_AWAIT_SLEEP_NS

    def __post_init__(self) -> None:
        if self.threading not in THREADING_MODES:
            raise ValueError(f"threading must be one of {THREADING_MODES}, not {self.threading!r}")
        if self.idle.partition(":")[0] not in DRIVER_IDLE_NAMES:
            raise ValueError(f"driver idle strategy must be one of {DRIVER_IDLE_NAMES}, not {self.idle!r}")
        for name in ("term_length", "ipc_term_length"):
            length = getattr(self, name)
            if length < DEFAULT_TERM_LENGTH or length & (length - 1):
                raise ValueError(f"{name} must be a power of two >= {DEFAULT_TERM_LENGTH}, not {length}")
        if self.client_sleep_ns <= 0 or self.await_sleep_ns <= 0:
            raise ValueError("client_sleep_ns and await_sleep_ns must be positive")


class AeronConfig(FrozenConfig, kw_only=True):
    """``[aeron]``: the media driver order entry goes through (the live daemon's and the sim-exchange's)."""

    dir: str = ""  # Aeron directory ("" = a fresh embedded driver's, under /dev/shm; deleted at start and exit)
    attach: bool = False  # true: a driver already runs in `dir`; attach to it instead of starting one
    driver_idle: str = DEFAULT_DRIVER_IDLE  # idle strategy of a driver we start ("sleeping:1ms", "backoff", ...)

    def __post_init__(self) -> None:
        DriverConfig(dir=self.dir or SHM_DIR, idle=self.driver_idle)
        if self.attach and not self.dir:
            raise ValueError("[aeron] attach needs the dir of the running driver")


def connect(
    aeron_dir: str, client_sleep_ns: int = DEFAULT_CLIENT_SLEEP_NS, await_sleep_ns: int = DEFAULT_AWAIT_SLEEP_NS
) -> pyaeron.Aeron:
    """A client of the running media driver whose directory is ``aeron_dir`` (any process; close it yourself).

    The client conductor's sleep is the state of the idle strategy ``aeron_context_init`` builds from
    ``AERON_CLIENT_IDLE_SLEEP_DURATION`` (16 ms unless set); the context's ``idle_sleep_duration_ns``
    does not change it, so the variable is set while the context is made. Log buffers are mapped
    with every page present (``AERON_CLIENT_PRE_TOUCH_MAPPED_MEMORY``): no page fault on the hot path.
    """
    env = {"AERON_CLIENT_IDLE_SLEEP_DURATION": f"{client_sleep_ns}ns", "AERON_CLIENT_PRE_TOUCH_MAPPED_MEMORY": "true"}
    with environment(env):
        context = pyaeron.Context(dir=aeron_dir, idle_sleep_duration_ns=client_sleep_ns)
    return pyaeron.Aeron(context=context, idle=pyaeron.IdleStrategy.sleeping(await_sleep_ns))


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the ``with`` block (the Aeron C code reads its settings there)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _idle_environment(idle: str) -> dict[str, str]:
    """The ``AERON_*_IDLE_STRATEGY[_INIT_ARGS]`` variables that give every driver agent ``idle``."""
    name, _, args = idle.partition(":")
    env: dict[str, str] = {}
    for agent in _DRIVER_AGENTS:
        env[f"AERON_{agent}_IDLE_STRATEGY"] = name
        if args:
            env[f"AERON_{agent}_IDLE_STRATEGY_INIT_ARGS"] = args
    return env


def close_clients(clients: list[pyaeron.Aeron]) -> None:
    """Close (and forget) every client of ``clients`` still open."""
    while clients:
        client = clients.pop()
        if not client.is_closed:
            client.close()


@dataclass
class EmbeddedDriver:
    """An in-process Aeron media driver and the clients connected to it; :meth:`close` tears all down."""

    config: DriverConfig
    clients: list[pyaeron.Aeron] = field(default_factory=list)
    driver: pyaeron.MediaDriver | None = None

    def __post_init__(self) -> None:
        with environment(_idle_environment(self.config.idle)):
            self.driver = pyaeron.MediaDriver(
                dir=self.config.dir,
                threading=self.config.threading,
                term_buffer_length=self.config.term_length,
                ipc_term_buffer_length=self.config.ipc_term_length,
                dir_delete_on_start=True,
                dir_delete_on_shutdown=True,
            )

    @property
    def dir(self) -> str:
        """The Aeron directory clients connect to."""
        return self.config.dir

    def connect(self) -> pyaeron.Aeron:
        """A new client of this driver (closed with the driver)."""
        if self.driver is None:
            raise RuntimeError("the driver is closed")
        client = connect(self.config.dir, self.config.client_sleep_ns, self.config.await_sleep_ns)
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Close the clients, then the driver, then remove the Aeron directory (idempotent)."""
        close_clients(self.clients)
        if self.driver is not None:
            self.driver.close()
            self.driver = None
        shutil.rmtree(self.config.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class AttachedDriver:
    """A media driver someone else runs in ``dir``: the clients connected to it; :meth:`close` closes those."""

    dir: str
    clients: list[pyaeron.Aeron] = field(default_factory=list)

    def connect(self) -> pyaeron.Aeron:
        """A new client of the driver (closed by :meth:`close`)."""
        client = connect(self.dir)
        self.clients.append(client)
        return client

    def close(self) -> None:
        """Close the clients (the driver and its directory are its owner's)."""
        close_clients(self.clients)


def open_driver(config: AeronConfig, default_dir: str) -> EmbeddedDriver | AttachedDriver:
    """The driver ``config`` describes: attached in ``config.dir``, or embedded there (``default_dir`` when blank)."""
    if config.attach:
        return AttachedDriver(config.dir)
    return EmbeddedDriver(DriverConfig(dir=config.dir or default_dir, idle=config.driver_idle))
