"""Pre-trade risk: the checks every new order of a trading node passes before it is encoded.

The node's compiled loop calls :func:`check_order_nb` for each order the strategy wants (a new one, or
the replacement of a working one) and encodes only the orders it passes; there is no other way to an
OUCH Enter Order or Replace Order (``engine.live.node_nb`` encodes inside the same function, after the
check; a replacement is checked with the quantity of the order it replaces out of the working orders).
Cancels are never stopped: they only reduce risk.

Checks, in order (the first that fails names the rejection; ``RISK_REASONS`` holds the names the
metrics block exports):

    kill_switch      the kill switch is engaged (``hftmm kill``, a signal, or the loss limit)
    max_loss         realized + unrealized PnL of the node is below -max_loss: trips the kill switch
    order_qty        the order is larger than max_order_qty (instrument units)
    order_notional   price x quantity is above max_order_notional (currency)
    no_reference     no mid price to check the price against (a side of the book is empty)
    price_collar     the price is more than price_collar_bps away from the mid
    position         position + every working order on that side + this order exceeds max_position
    total_position   the sum over instruments of the worst-case |position| exceeds max_total_position
    open_orders      the node already has max_open_orders working orders
    order_rate       more than max_orders_per_s (token bucket, burst = one second's worth)

Every rejection adds one to ``counts[instrument, reason]`` (the node's metrics block) and one row
to ``log`` (a ring the node's Python side prints off the hot path). Limits of 0 switch a check off,
except the kill switch and position limits, which always apply.

The checks are ``inline="always"``: they run inside the node's compiled loop, where a call between Numba
functions pays a reference-count call for every array it is passed (engine.live.loop_nb); inlined, the
risk stage of ``bench t2t`` went from 0.42-0.47 us to 0.28-0.32 us at p50.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
from numba import njit

from engine.core.config import FrozenConfig, load_toml
from engine.core.units import NS_PER_S
from engine.trading import layout as L

BPS = 1e-4


class RiskConfig(FrozenConfig, kw_only=True):
    """The ``[risk]`` table: limits per node (quantities in instrument units, money in currency)."""

    max_position: float = 1000.0  # |position + working orders of one side| per instrument
    max_total_position: float = 0.0  # sum over the node's instruments of the worst-case |position| (0: off)
    max_order_qty: float = 500.0  # one order's size
    max_order_notional: float = 0.0  # one order's price x size (0: off)
    price_collar_bps: float = 100.0  # farthest an order may be priced from the mid, basis points (0: off)
    max_open_orders: int = 20  # working orders of the node (0: off)
    max_orders_per_s: float = 200.0  # new orders per second, burst one second's worth (0: off)
    max_loss: float = 0.0  # realized + unrealized loss of the node that trips the kill switch (0: off)

    def __post_init__(self) -> None:
        values = (self.max_position, self.max_total_position, self.max_order_qty, self.max_order_notional)
        values += (self.price_collar_bps, self.max_open_orders, self.max_orders_per_s, self.max_loss)
        if any(not v >= 0 for v in values):
            raise ValueError("risk limits must be >= 0")

    def limits(self) -> np.ndarray:
        """The limits as the float64 array the compiled checks read."""
        out = np.zeros(L.N_LIMITS, np.float64)
        out[L.LM_MAX_POSITION] = self.max_position
        out[L.LM_MAX_TOTAL_POSITION] = self.max_total_position
        out[L.LM_MAX_ORDER_QTY] = self.max_order_qty
        out[L.LM_MAX_ORDER_NOTIONAL] = self.max_order_notional
        out[L.LM_PRICE_COLLAR_BPS] = self.price_collar_bps
        out[L.LM_MAX_OPEN_ORDERS] = self.max_open_orders
        out[L.LM_MAX_ORDERS_PER_S] = self.max_orders_per_s
        out[L.LM_MAX_LOSS] = self.max_loss
        return out


class _RiskTable(msgspec.Struct, frozen=True):
    """A TOML file's ``[risk]`` table; its other tables (a whole live config, say) are not read here."""

    risk: RiskConfig = RiskConfig()


def load_risk(path: str | Path) -> RiskConfig:
    """The ``[risk]`` table of a TOML file (a live config, or a file with only that table); ConfigError when bad."""
    return load_toml(path, _RiskTable).risk


def new_risk_state(limits: np.ndarray) -> np.ndarray:
    """A fresh risk state: kill switch off, a full token bucket."""
    state = np.zeros(L.N_RS, np.float64)
    state[L.RS_TOKENS] = limits[L.LM_MAX_ORDERS_PER_S]
    state[L.RS_LAST_NS] = -1.0
    return state


def new_risk_log() -> np.ndarray:
    """An empty rejection ring."""
    return np.zeros((L.LOG_ROWS, L.N_LG), np.int64)


@njit(cache=True, nogil=True, inline="always")
def _reason_nb(limits, state, positions, open_buy, open_sell, i, side, price, qty, mid, open_orders, pnl, now_ns):
    """The first failing check (R_*) or RISK_OK; quantities in units, prices in currency."""
    if state[L.RS_KILLED] != 0.0:
        return L.R_KILL_SWITCH
    if limits[L.LM_MAX_LOSS] > 0.0 and pnl < -limits[L.LM_MAX_LOSS]:
        state[L.RS_KILLED] = 1.0
        return L.R_MAX_LOSS
    if (limits[L.LM_MAX_ORDER_QTY] > 0.0 and qty > limits[L.LM_MAX_ORDER_QTY]) or not qty > 0.0:
        return L.R_ORDER_QTY
    if limits[L.LM_MAX_ORDER_NOTIONAL] > 0.0 and price * qty > limits[L.LM_MAX_ORDER_NOTIONAL]:
        return L.R_ORDER_NOTIONAL
    if limits[L.LM_PRICE_COLLAR_BPS] > 0.0:
        if not mid > 0.0:
            return L.R_NO_REFERENCE
        if abs(price - mid) > limits[L.LM_PRICE_COLLAR_BPS] * BPS * mid:
            return L.R_PRICE_COLLAR
    limit = limits[L.LM_MAX_POSITION]
    buy = side > 0
    if (buy and positions[i] + open_buy[i] + qty > limit) or (not buy and positions[i] - open_sell[i] - qty < -limit):
        return L.R_POSITION
    if limits[L.LM_MAX_TOTAL_POSITION] > 0.0:
        total = 0.0
        for j in range(positions.shape[0]):
            long_side = positions[j] + open_buy[j] + (qty if j == i and buy else 0.0)
            short_side = positions[j] - open_sell[j] - (qty if j == i and not buy else 0.0)
            total += max(abs(long_side), abs(short_side))
        if total > limits[L.LM_MAX_TOTAL_POSITION]:
            return L.R_TOTAL_POSITION
    if limits[L.LM_MAX_OPEN_ORDERS] > 0.0 and open_orders >= limits[L.LM_MAX_OPEN_ORDERS]:
        return L.R_OPEN_ORDERS
    rate = limits[L.LM_MAX_ORDERS_PER_S]
    if rate > 0.0:
        if state[L.RS_LAST_NS] >= 0.0:
            state[L.RS_TOKENS] = min(rate, state[L.RS_TOKENS] + (now_ns - state[L.RS_LAST_NS]) * rate / NS_PER_S)
        state[L.RS_LAST_NS] = now_ns
        if state[L.RS_TOKENS] < 1.0:
            return L.R_ORDER_RATE
        state[L.RS_TOKENS] -= 1.0
    return L.RISK_OK


@njit(cache=True, nogil=True, inline="always")
def check_order_nb(
    limits, state, counts, log, positions, open_buy, open_sell, i, side, price, qty, mid, open_orders, pnl, now_ns,
    price_units, lots,
):  # fmt: skip
    """Check one new order; returns RISK_OK or the reason, which is then counted and logged.

    ``positions``, ``open_buy``, ``open_sell``: float64 per instrument, units (working buy / sell
    orders); ``i`` the instrument index; ``side`` +1 buy / -1 sell; ``price`` and ``mid`` currency,
    ``qty`` units; ``open_orders`` the node's working orders; ``pnl`` the node's realized +
    unrealized PnL. ``price_units`` and ``lots`` only go to the log.
    """
    reason = _reason_nb(limits, state, positions, open_buy, open_sell, i, side, price, qty, mid, open_orders, pnl,
                        now_ns)  # fmt: skip
    if reason == L.RISK_OK:
        return L.RISK_OK
    counts[i, reason] += 1
    row = np.int64(state[L.RS_LOGGED]) % log.shape[0]
    log[row, L.LG_NS] = now_ns
    log[row, L.LG_INSTRUMENT] = i
    log[row, L.LG_REASON] = reason
    log[row, L.LG_SIDE] = side
    log[row, L.LG_PRICE] = price_units
    log[row, L.LG_LOTS] = lots
    state[L.RS_LOGGED] += 1.0
    return reason
