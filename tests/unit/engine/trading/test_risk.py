"""Pre-trade risk: every rule rejects, counts by reason and logs; a passing order consumes a rate token."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.config import ConfigError, decode_toml
from engine.trading import layout as TL
from engine.trading.risk import RiskConfig, check_order_nb, new_risk_log, new_risk_state

MID = 100.0
BASE = RiskConfig(
    max_position=1000, max_total_position=1500, max_order_qty=500, max_order_notional=40_000,
    price_collar_bps=100, max_open_orders=4, max_orders_per_s=10, max_loss=1000,
)  # fmt: skip


class Desk:
    """Two instruments' risk inputs around a call of ``check_order_nb``."""

    def __init__(self, config: RiskConfig = BASE) -> None:
        self.limits = config.limits()
        self.state = new_risk_state(self.limits)
        self.counts = np.zeros((2, len(TL.RISK_REASONS)), np.int64)
        self.log = new_risk_log()
        self.positions = np.zeros(2)
        self.open_buy = np.zeros(2)
        self.open_sell = np.zeros(2)

    def check(
        self, side: int = 1, price: float = MID, qty: float = 100.0, *, i: int = 0, mid: float = MID,
        open_orders: int = 0, pnl: float = 0.0, now_ns: int = 0,
    ) -> int:  # fmt: skip
        return check_order_nb(
            self.limits, self.state, self.counts, self.log, self.positions, self.open_buy, self.open_sell, i, side,
            price, qty, mid, open_orders, pnl, now_ns, int(price * 10_000), int(qty),
        )  # fmt: skip


def test_an_order_inside_every_limit_passes_and_costs_one_rate_token() -> None:
    desk = Desk()
    assert desk.check() == TL.RISK_OK
    assert desk.state[TL.RS_TOKENS] == 9.0 and desk.counts.sum() == 0 and desk.state[TL.RS_LOGGED] == 0


@pytest.mark.parametrize(
    "setup, call, reason",
    [
        (lambda d: d.state.__setitem__(TL.RS_KILLED, 1.0), {}, TL.R_KILL_SWITCH),
        (None, {"pnl": -1000.5}, TL.R_MAX_LOSS),
        (None, {"qty": 501.0}, TL.R_ORDER_QTY),
        (None, {"qty": 0.0}, TL.R_ORDER_QTY),
        (None, {"qty": 450.0, "price": 99.5}, TL.R_ORDER_NOTIONAL),
        (None, {"mid": float("nan")}, TL.R_NO_REFERENCE),
        (None, {"price": 101.01}, TL.R_PRICE_COLLAR),
        (None, {"price": 98.99, "side": -1}, TL.R_PRICE_COLLAR),
        (lambda d: d.positions.__setitem__(0, 950.0), {}, TL.R_POSITION),
        (lambda d: d.open_buy.__setitem__(0, 901.0), {}, TL.R_POSITION),
        (lambda d: d.open_sell.__setitem__(0, 950.0), {"side": -1}, TL.R_POSITION),
        (lambda d: d.positions.__setitem__(1, -1450.0), {}, TL.R_TOTAL_POSITION),
        (None, {"open_orders": 4}, TL.R_OPEN_ORDERS),
    ],
)
def test_every_rule_rejects_counts_and_logs(setup, call: dict, reason: int) -> None:
    desk = Desk()
    if setup is not None:
        setup(desk)
    assert desk.check(**call) == reason
    assert desk.counts[0, reason] == 1 and desk.counts.sum() == 1
    assert desk.state[TL.RS_LOGGED] == 1 and desk.log[0, TL.LG_REASON] == reason and desk.log[0, TL.LG_INSTRUMENT] == 0
    assert desk.log[0, TL.LG_LOTS] == int(call.get("qty", 100.0)) and desk.log[0, TL.LG_PRICE] > 0
    assert desk.state[TL.RS_TOKENS] == 10.0  # a rejected order takes no rate token


def test_the_loss_limit_trips_the_kill_switch_for_every_later_order() -> None:
    desk = Desk()
    assert desk.check(pnl=-2000.0) == TL.R_MAX_LOSS
    assert desk.state[TL.RS_KILLED] == 1.0
    assert desk.check(pnl=0.0) == TL.R_KILL_SWITCH
    assert desk.counts[0, TL.R_MAX_LOSS] == 1 and desk.counts[0, TL.R_KILL_SWITCH] == 1


def test_the_order_rate_throttle_refills_with_time() -> None:
    desk = Desk()
    results = [desk.check(now_ns=0) for _ in range(12)]
    assert results.count(TL.RISK_OK) == 10 and results[10:] == [TL.R_ORDER_RATE, TL.R_ORDER_RATE]
    assert desk.check(now_ns=100_000_000) == TL.RISK_OK  # 0.1 s later: one more token
    assert desk.check(now_ns=100_000_000) == TL.R_ORDER_RATE
    assert desk.counts[0, TL.R_ORDER_RATE] == 3


def test_zero_limits_switch_the_optional_checks_off_but_never_the_position_limit() -> None:
    desk = Desk(RiskConfig(max_position=100, max_order_qty=0, price_collar_bps=0, max_open_orders=0,
                           max_orders_per_s=0))  # fmt: skip
    assert desk.check(qty=100.0, mid=float("nan"), open_orders=10_000, price=1e6) == TL.RISK_OK
    assert desk.check(qty=101.0) == TL.R_POSITION


def test_rejections_are_counted_per_instrument_and_the_log_is_a_ring() -> None:
    desk = Desk()
    for _ in range(300):
        desk.check(i=1, qty=1000.0)
    assert desk.counts[1, TL.R_ORDER_QTY] == 300 and desk.counts[0].sum() == 0
    assert desk.state[TL.RS_LOGGED] == 300 and (desk.log[:, TL.LG_INSTRUMENT] == 1).all()


def test_config_rejects_negative_limits_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="risk limits"):
        decode_toml("max_position = -1", RiskConfig)
    with pytest.raises(ConfigError, match="max_pos"):
        decode_toml("max_pos = 1", RiskConfig)
