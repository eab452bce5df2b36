"""Compile the trading node's step and the simulated exchange's kernels into Numba's cache, on the CPU the
suite leaves idle.

``tests/conftest.py`` starts this in the background when the session starts. The suite runs one test at
a time; its first integration tests compile the backtest loop on one CPU while this compiles what the
live, latency and exchange tests need next on the other, so a cold cache costs minutes less. A kernel
this process has not finished when a test needs it is compiled by the test as before (the cache tolerates
both), so nothing depends on it: it only saves time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from engine.core.config import decode_toml
from engine.simexchange.config import SimExchangeConfig
from engine.simexchange.exchange import SimExchange
from engine.trading.risk import RiskConfig
from feeds.udp import free_udp_port
from tests.unit.engine.live.test_node import Harness, touch_events

EXCHANGE_STEPS = 2000


def warm_node() -> None:
    """Load the node's step kernel (the entry point every trading node calls) and step it once."""
    harness = Harness(RiskConfig())
    try:
        harness.step(touch_events())
    finally:
        harness.close()


def warm_exchange() -> None:
    """Start the simulated exchange (matching, background flow, MoldUDP64 and OUCH kernels) and step it."""
    with tempfile.TemporaryDirectory(prefix="hftmm-prewarm-") as tmp:
        text = f"""
warm_up_s = 0.5
[market_data]
port = {free_udp_port()}
retransmission_port = 0
[aeron]
dir = "{Path(tmp) / "aeron"}"
"""
        exchange = SimExchange(decode_toml(text, SimExchangeConfig))
        try:
            for _ in range(EXCHANGE_STEPS):  # stepped on this thread: the agents start at the first
                exchange.step()
        finally:
            exchange.stop()


if __name__ == "__main__":
    warm_node()
    warm_exchange()
