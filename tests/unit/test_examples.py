"""The example configs the README and ``make run`` use are valid as shipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.config import load_toml
from engine.live.config import LiveConfig
from engine.simexchange.config import SimExchangeConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


CONFIGS = [("live.toml", LiveConfig), ("sim-exchange.toml", SimExchangeConfig),
           ("sim-exchange-replay.toml", SimExchangeConfig)]  # fmt: skip


@pytest.mark.parametrize(("name", "config_type"), CONFIGS)
def test_each_example_config_loads(name: str, config_type: type) -> None:
    assert isinstance(load_toml(EXAMPLES / name, config_type), config_type)


def test_make_runs_node_quotes_a_busy_book() -> None:
    """``make run`` must show the node trading: its instruments' background flow is far above the defaults."""
    config = load_toml(EXAMPLES / "live.toml", LiveConfig)
    listed = {i.symbol: i for i in config.listed_instruments()}
    for symbol in config.nodes[0].symbols:
        assert listed[symbol].limit_rate >= 1000 and listed[symbol].volatility_ticks >= 1
