"""Config loading: one-line errors, NaN and infinities refused wherever a float is."""

from __future__ import annotations

import pytest

from engine.core.config import ConfigError, decode_toml
from engine.live.config import LiveConfig
from engine.simexchange.config import SimExchangeConfig


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[instruments]]\nsymbol = "AAA"\nvolatility_ticks = nan\n', "instruments[0].volatility_ticks = nan"),
        ("warm_up_s = inf\n", "warm_up_s = inf"),
        ('[[instruments]]\nsymbol = "AAA"\nprofile = [1.0, inf]\ndepth_ticks = 2\n', "instruments[0].profile[1] = inf"),
    ],
)
def test_non_finite_floats_are_refused_in_one_line_naming_the_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as raised:
        decode_toml(text, SimExchangeConfig, source="x.toml")
    assert str(raised.value) == f"x.toml: {where} is not a finite number"


NODE = '[[instruments]]\nsymbol = "AAA"\n[[nodes]]\nname = "mm"\nstrategy = "touch"\nsymbols = ["AAA"]\n'


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("params = { order_qty = -100 }", "order_qty = -100 must be > 0"),
        ("params = { order_qty = 0 }", "order_qty = 0 must be > 0"),
        ("params = { max_position = -1 }", "max_position = -1 must be >= 0"),
        ("params = { interval_ns = nan }", "interval_ns = nan"),
        ("cpu = 4096", "cpu 4096 is not one this process may run on"),
    ],
)
def test_node_values_out_of_range_are_refused_in_one_line(extra: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        decode_toml(NODE + extra + "\n", LiveConfig, source="live.toml")
    assert reason in str(raised.value) and "\n" not in str(raised.value)
