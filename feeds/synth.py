"""A synthetic but well-formed NASDAQ TotalView-ITCH 5.0 day, as a flat ``[u16 BE length][message]`` file.

The model. ``K`` made-up stocks (locates 1..K, sorted 4-letter tickers, round lot 100), each with a
fair price drawn log-uniform in $10-$500 that random-walks in half-tick steps. The day runs like a
real one: system events O and S, a stock directory (R) and a trading action (H 'T') per stock,
market open (S 'Q') with an opening cross (Q) per stock, the order flow from 09:30 to 16:00, then
closing crosses and the end-of-day events M, E, C. Each flow message picks a stock (Zipf-like
activity, so a few names dominate) and an action from a mix close to a real day: adds (A, some F
with an MPID) a geometric number of ticks behind the touch the fair price implies, deletes (D),
replaces (U: new reference, re-priced), partial cancels (X), executions (E, some C with a price)
against the oldest order at the best price of the side the fair price has moved through (so the
book follows the price), and non-displayed trades (P). Live orders are tracked per stock in
preallocated arrays, so every reference is valid, nothing over-executes, adds never cross the
opposite touch, references and match numbers only increase and timestamps never decrease.

Two depth profiles (:data:`PROFILES`). ``shallow`` keeps at most a few hundred live orders a stock.
``deep`` gives the busy names books as deep as a real futures or large-cap book: the ESM4 MBO book of
``../shared/replay_data`` holds about 13,600 orders on 1,550 levels, every tick within ~400 of the
touch occupied, ~9 orders a level, resting orders a median 124-170 ticks from the touch with quantiles
close to an exponential of mean ~210 ticks (10%: 18-25, 90%: 330-550). So a deep day first seeds each
stock's book (the top name to ``live_max`` orders, the others in proportion to their activity) at
exponentially distributed distances of that mean, then runs the same flow mix with most deletes
taking one of the newest orders (churn near the touch; deep orders live long), as on a real day. The
NASDAQ sample files carry no order flow to calibrate from (directory, trading-action and single
messages); the flow mix stays the published NASDAQ day shares above.

The order flow is one jitted call per output chunk writing straight into a reused byte buffer with
the Numba encoders of ``feeds.itch``; the few fixed messages around it go through
:func:`feeds.itch.encode`. One seed gives the same bytes.
"""

from __future__ import annotations

import gzip as gzip_module
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from engine.core.units import NS_PER_S
from feeds.itch import (
    MESSAGE_LENGTHS,
    encode,
    encode_add_nb,
    encode_cancel_nb,
    encode_delete_nb,
    encode_executed_nb,
    encode_replace_nb,
    encode_stock_directory,
    encode_trade_nb,
    frame,
)

# --- day timeline (ns since midnight) -------------------------------------------------------------
NS_PER_HOUR = 3600 * NS_PER_S
START_OF_MESSAGES_NS = 3 * NS_PER_HOUR  # S 'O', then the stock directory
START_OF_SYSTEM_HOURS_NS = 4 * NS_PER_HOUR  # S 'S', then the trading actions
START_OF_MARKET_HOURS_NS = 9 * NS_PER_HOUR + 30 * 60 * NS_PER_S  # S 'Q', then opening crosses
END_OF_MARKET_HOURS_NS = 16 * NS_PER_HOUR  # closing crosses, then S 'M'
END_OF_SYSTEM_HOURS_NS = 20 * NS_PER_HOUR  # S 'E'
END_OF_MESSAGES_NS = END_OF_SYSTEM_HOURS_NS + 5 * 60 * NS_PER_S  # S 'C', the last message
SPACING_NS = 1_000  # between consecutive fixed messages (R, H, crosses) of one batch
FLOW_START_NS = START_OF_MARKET_HOURS_NS + NS_PER_S // 10  # after up to 65535 opening crosses
FLOW_END_NS = END_OF_MARKET_HOURS_NS - NS_PER_S // 10  # flow timestamps never pass this

# --- market model ----------------------------------------------------------------------------------
PRICE_SCALE = 10_000  # ITCH Price(4): 1e-4 dollars
TICK = 100  # $0.01 in price units; every displayed price is on this grid
HALF_TICK = TICK // 2
ROUND_LOT = 100
MIN_PRICE_DOLLARS, MAX_PRICE_DOLLARS = 10.0, 500.0  # initial fair prices, log-uniform
MIN_FAIR_HALF_TICKS = 2 * 100  # the walk never goes below $1.00 ...
MAX_FAIR_HALF_TICKS = 2 * 10_000_000  # ... nor above $100,000 (Price(4) tops out near $429,496)
P_FAIR_MOVE = 0.04  # chance that a flow message moves its stock's fair price
HALF_TICKS_PER_STEP = 20_000  # a move is 1 + fair // this half ticks: bigger for dearer stocks
ACTIVITY_EXPONENT = 0.8  # the stock of activity rank r is picked with weight r ** -this
P_SAME_TIMESTAMP = 0.3  # chance that a flow message shares the previous timestamp
P_DEPTH_GEOMETRIC = 0.4  # an add sits geometric(this) - 1 ticks behind the touch ...
P_DEEP_ADD = 0.08  # ... or, with this chance, uniform 0..DEEP_ADD_TICKS behind it
DEEP_ADD_TICKS = 50
P_ODD_LOT = 0.12  # an order is an odd lot 1..99, else ROUND_LOT * geometric(P_LOTS_GEOMETRIC)
P_LOTS_GEOMETRIC = 0.45
P_FULL_EXECUTION = 0.6  # an execution takes the whole remaining order, else part of it
P_NON_PRINTABLE = 0.15  # C executions marked printable 'N'
CROSS_LOTS_MAX = 100  # a cross prints ROUND_LOT * uniform(1, this) shares
LIVE_ORDERS_MIN, LIVE_ORDERS_MAX = 16, 256  # per stock; at the cap an add becomes a delete
FLOW_PER_LIVE_ORDER = 20  # the cap is flow messages per stock / this, within the bounds above
# The order-flow mix: letter and share of the flow (D also takes the adds refused at the cap).
FLOW_MIX = (("A", 0.425), ("F", 0.012), ("D", 0.395), ("U", 0.075), ("X", 0.02), ("E", 0.05), ("C", 0.003), ("P", 0.02))
MPIDS = ("ALFA", "BRVO", "CHLY", "DLTX", "ECHM", "FXTR")  # made-up attributions of F adds


@dataclass(frozen=True)
class DepthProfile:
    """How deep the books of a day run (see the module docstring for the calibration of ``deep``)."""

    live_max: int  # live orders a stock may hold (the busiest; others in proportion when seeded)
    seed: bool  # build each book to its depth before the flow starts
    deep_mean_ticks: float  # deep adds: exponential distance of this mean; 0 = uniform 0..DEEP_ADD_TICKS
    p_deep_add: float  # share of flow adds placed deep
    p_newest_delete: float  # share of deletes and replaces taking one of the newest orders
    newest_mean: float  # ... the k-th newest, k geometric of this mean


PROFILES = {
    "shallow": DepthProfile(LIVE_ORDERS_MAX, False, 0.0, P_DEEP_ADD, 0.0, 1.0),
    "deep": DepthProfile(20_000, True, 210.0, 0.15, 0.9, 20.0),
}
# the profile as the jitted flow reads it: prm[PR_*]
PR_DEEP_MEAN, PR_P_DEEP, PR_P_NEWEST, PR_NEWEST_MEAN, PR_SIZE = range(5)
FIRST_REF = 1_000  # order references and match numbers start here and only increase
CHUNK_BYTES = 4 << 20  # the reused output buffer
GZIP_LEVEL = 1  # favour speed

# --- wire layout: the records come from feeds.itch's encoders --------------------------------------
MAX_FLOW_RECORD = 2 + max(int(MESSAGE_LENGTHS[ord(t)]) for t, _ in FLOW_MIX)  # [u16 length][message]

# --- jitted state layout --------------------------------------------------------------------------
# st: int64 scalars carried between chunk calls
ST_DONE, ST_TS, ST_NEXT_REF, ST_NEXT_MATCH, ST_MEAN_GAP_NS, ST_SEED_LEFT, ST_SEED_STOCK, ST_SIZE = range(8)
# orders[stock, slot, :]: the live orders of each stock in slots 0..live-1 (order of slots is arbitrary)
O_REF, O_QTY, O_PX, O_SIDE, O_SIZE = range(5)
# stocks[stock, :]: fair price in half ticks, live orders, cached best bid / ask, is the cache valid,
# most live orders, orders still to seed
K_FAIR2, K_LIVE, K_BID, K_ASK, K_BEST_OK, K_CAP, K_SEED, K_SIZE = range(8)
NO_ASK = 1 << 62  # best ask of a stock without asks

_A, _F, _D, _U, _X, _E, _C, _P = (ord(c) for c in "AFDUXECP")
_FLOW_LETTERS = tuple(ord(letter) for letter, _ in FLOW_MIX)
_YES, _NO = ord("Y"), ord("N")
_MPID_BYTES = np.frombuffer("".join(MPIDS).encode("ascii"), np.uint8).reshape(-1, 4).copy()


# --- the live book of each stock ----------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _order_shares_nb(rng):
    """An order size: mostly whole round lots (a geometric count), sometimes an odd lot."""
    if rng.random() < P_ODD_LOT:
        return rng.integers(1, ROUND_LOT)
    return ROUND_LOT * rng.geometric(P_LOTS_GEOMETRIC)


@njit(cache=True, nogil=True)
def _refresh_best_nb(orders, stocks, s):
    """Rebuild stock ``s``'s cached best bid and ask when a removal invalidated them."""
    if stocks[s, K_BEST_OK]:
        return
    bid, ask = 0, NO_ASK
    for i in range(stocks[s, K_LIVE]):
        if orders[s, i, O_SIDE] > 0:
            bid = max(bid, orders[s, i, O_PX])
        else:
            ask = min(ask, orders[s, i, O_PX])
    stocks[s, K_BID], stocks[s, K_ASK], stocks[s, K_BEST_OK] = bid, ask, 1


@njit(cache=True, nogil=True)
def _append_order_nb(orders, stocks, s, ref, side, qty, px):
    """Add an order to stock ``s``'s live set, keeping a valid best-price cache current."""
    i = stocks[s, K_LIVE]
    orders[s, i, O_REF], orders[s, i, O_QTY], orders[s, i, O_PX], orders[s, i, O_SIDE] = ref, qty, px, side
    stocks[s, K_LIVE] = i + 1
    if side > 0:
        stocks[s, K_BID] = max(stocks[s, K_BID], px)
    else:
        stocks[s, K_ASK] = min(stocks[s, K_ASK], px)


@njit(cache=True, nogil=True)
def remove_order_nb(orders, stocks, s, i):
    """Drop slot ``i`` of stock ``s`` (the last live slot moves into it)."""
    side, px = orders[s, i, O_SIDE], orders[s, i, O_PX]
    if px == (stocks[s, K_BID] if side > 0 else stocks[s, K_ASK]):
        stocks[s, K_BEST_OK] = 0
    last = stocks[s, K_LIVE] - 1
    orders[s, i, :] = orders[s, last, :]
    stocks[s, K_LIVE] = last


@njit(cache=True, nogil=True)
def _deep_ticks_nb(rng, prm):
    """Ticks behind the touch of a deep order."""
    if prm[PR_DEEP_MEAN] > 0:
        return np.int64(rng.exponential(prm[PR_DEEP_MEAN]))
    return rng.integers(0, DEEP_ADD_TICKS + 1)


@njit(cache=True, nogil=True)
def _quote_price_nb(rng, prm, stocks, s, side):
    """A passive price for a new order: some ticks behind the fair touch, never crossing the book."""
    depth = _deep_ticks_nb(rng, prm) if rng.random() < prm[PR_P_DEEP] else rng.geometric(P_DEPTH_GEOMETRIC) - 1
    return _price_behind_nb(stocks, s, side, depth)


@njit(cache=True, nogil=True)
def _price_behind_nb(stocks, s, side, depth):
    """The price ``depth`` ticks behind the fair touch of ``side``, never crossing the book."""
    fair2 = stocks[s, K_FAIR2]
    if side > 0:  # bid touch: the tick at or below fair minus half a tick
        price = ((fair2 - 1) // 2 - depth) * TICK
        if stocks[s, K_ASK] != NO_ASK:
            price = min(price, stocks[s, K_ASK] - TICK)
        return max(price, TICK)
    price = ((fair2 + 2) // 2 + depth) * TICK
    return max(price, stocks[s, K_BID] + TICK)


@njit(cache=True, nogil=True)
def _touch_order_nb(orders, stocks, s, side):
    """The slot of the oldest order at the best price of ``side`` (price-time priority)."""
    target = stocks[s, K_BID] if side > 0 else stocks[s, K_ASK]
    found, oldest = -1, NO_ASK
    for i in range(stocks[s, K_LIVE]):
        if orders[s, i, O_SIDE] == side and orders[s, i, O_PX] == target and orders[s, i, O_REF] < oldest:
            found, oldest = i, orders[s, i, O_REF]
    return found


@njit(cache=True, nogil=True)
def _aggressed_side_nb(rng, stocks, s):
    """The resting side an execution takes from: the one the fair price moved through, else either."""
    if stocks[s, K_BID] == 0:
        return -1
    if stocks[s, K_ASK] == NO_ASK:
        return 1
    fair_px = stocks[s, K_FAIR2] * HALF_TICK
    if fair_px < stocks[s, K_BID]:
        return 1
    if fair_px > stocks[s, K_ASK]:
        return -1
    return 1 if rng.random() < 0.5 else -1


@njit(cache=True, nogil=True)
def _next_id_nb(st, slot):
    """Hand out the next order reference or match number (both only increase)."""
    value = st[slot]
    st[slot] = value + 1
    return value


@njit(cache=True, nogil=True)
def _acted_on_nb(rng, prm, live):
    """The slot a delete, replace or partial cancel acts on: often one of the newest (deep profile)."""
    if prm[PR_P_NEWEST] > 0 and rng.random() < prm[PR_P_NEWEST]:
        return max(0, live - rng.geometric(1.0 / prm[PR_NEWEST_MEAN]))
    return rng.integers(0, live)


# --- the order flow --------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _next_ts_nb(rng, st):
    """The next message's timestamp: the same as the last one or an exponential gap later."""
    if rng.random() >= P_SAME_TIMESTAMP:
        st[ST_TS] = min(st[ST_TS] + np.int64(rng.exponential(np.float64(st[ST_MEAN_GAP_NS]))), FLOW_END_NS)
    return st[ST_TS]


@njit(cache=True, nogil=True)
def _seed_message_nb(buf, pos, rng, prm, st, counts, orders, stocks, tickers):
    """One add of the pre-flow book build: stocks take turns until each holds its seed depth."""
    ts = _next_ts_nb(rng, st)
    s = st[ST_SEED_STOCK]
    while stocks[s, K_SEED] == 0:
        s = (s + 1) % stocks.shape[0]
    st[ST_SEED_STOCK] = (s + 1) % stocks.shape[0]
    stocks[s, K_SEED] -= 1
    st[ST_SEED_LEFT] -= 1
    side = 1 if stocks[s, K_SEED] % 2 == 0 else -1
    _refresh_best_nb(orders, stocks, s)
    px = _price_behind_nb(stocks, s, side, _deep_ticks_nb(rng, prm))
    qty = _order_shares_nb(rng)
    ref = _next_id_nb(st, ST_NEXT_REF)
    _append_order_nb(orders, stocks, s, ref, side, qty, px)
    counts[_A] += 1
    return encode_add_nb(buf, pos, ts, s + 1, ref, side, qty, tickers[s], px, _MPID_BYTES, -1)


@njit(cache=True, nogil=True)
def _flow_message_nb(buf, pos, rng, prm, st, counts, orders, stocks, tickers, cum_weight, mix_cum):
    """Draw one order-flow message, apply it to the live book and write it; return the new position."""
    if st[ST_SEED_LEFT] > 0:
        return _seed_message_nb(buf, pos, rng, prm, st, counts, orders, stocks, tickers)
    ts = _next_ts_nb(rng, st)
    s = min(np.searchsorted(cum_weight, rng.random(), side="right"), cum_weight.size - 1)
    locate = s + 1
    if rng.random() < P_FAIR_MOVE:
        step = 1 + stocks[s, K_FAIR2] // HALF_TICKS_PER_STEP
        moved = stocks[s, K_FAIR2] + (step if rng.random() < 0.5 else -step)
        stocks[s, K_FAIR2] = min(max(moved, MIN_FAIR_HALF_TICKS), MAX_FAIR_HALF_TICKS)
    letter = _FLOW_LETTERS[np.searchsorted(mix_cum, rng.random(), side="right")]
    live = stocks[s, K_LIVE]
    if letter in (_A, _F) and live >= stocks[s, K_CAP]:
        letter = _D
    elif letter in (_D, _U, _X, _E, _C) and live == 0:
        letter = _A
    i = _acted_on_nb(rng, prm, live) if letter in (_D, _U, _X) else 0  # the order a D, U or X acts on
    if letter == _X and orders[s, i, O_QTY] < 2:
        letter = _D  # a partial cancel must leave a share behind
    _refresh_best_nb(orders, stocks, s)

    if letter in (_A, _F):
        has_bids, has_asks = stocks[s, K_BID] > 0, stocks[s, K_ASK] != NO_ASK
        side = (-1 if has_bids else 1) if has_bids != has_asks else (1 if rng.random() < 0.5 else -1)
        px = _quote_price_nb(rng, prm, stocks, s, side)
        qty = _order_shares_nb(rng)
        ref = _next_id_nb(st, ST_NEXT_REF)
        _append_order_nb(orders, stocks, s, ref, side, qty, px)
        mpid_index = rng.integers(0, _MPID_BYTES.shape[0]) if letter == _F else -1
        pos = encode_add_nb(buf, pos, ts, locate, ref, side, qty, tickers[s], px, _MPID_BYTES, mpid_index)
    elif letter in (_D, _U):
        ref, side = orders[s, i, O_REF], orders[s, i, O_SIDE]
        remove_order_nb(orders, stocks, s, i)
        if letter == _D:
            pos = encode_delete_nb(buf, pos, ts, locate, ref)
        else:  # the order comes back re-priced and re-sized under a new reference, same side
            _refresh_best_nb(orders, stocks, s)
            px = _quote_price_nb(rng, prm, stocks, s, side)
            qty = _order_shares_nb(rng)
            new_ref = _next_id_nb(st, ST_NEXT_REF)
            _append_order_nb(orders, stocks, s, new_ref, side, qty, px)
            pos = encode_replace_nb(buf, pos, ts, locate, ref, new_ref, qty, px)
    elif letter == _X:
        cut = rng.integers(1, orders[s, i, O_QTY])
        orders[s, i, O_QTY] -= cut
        pos = encode_cancel_nb(buf, pos, ts, locate, orders[s, i, O_REF], cut)
    elif letter in (_E, _C):
        i = _touch_order_nb(orders, stocks, s, _aggressed_side_nb(rng, stocks, s))
        ref, rest, px = orders[s, i, O_REF], orders[s, i, O_QTY], orders[s, i, O_PX]
        qty = rest if rest == 1 or rng.random() < P_FULL_EXECUTION else rng.integers(1, rest)
        match = _next_id_nb(st, ST_NEXT_MATCH)
        if letter == _C:
            printable = _NO if rng.random() < P_NON_PRINTABLE else _YES
            pos = encode_executed_nb(buf, pos, ts, locate, ref, qty, match, printable, px)
        else:
            pos = encode_executed_nb(buf, pos, ts, locate, ref, qty, match, 0, 0)
        if qty == rest:
            remove_order_nb(orders, stocks, s, i)
        else:
            orders[s, i, O_QTY] = rest - qty
    else:  # P: a non-displayed order trades at the fair price, inside the touch; the book is untouched
        px = ((stocks[s, K_FAIR2] + 1) // 2) * TICK
        if stocks[s, K_BID] > 0:
            px = max(px, stocks[s, K_BID])
        if stocks[s, K_ASK] != NO_ASK:
            px = min(px, stocks[s, K_ASK])
        side = 1 if rng.random() < 0.5 else -1
        match = _next_id_nb(st, ST_NEXT_MATCH)
        pos = encode_trade_nb(buf, pos, ts, locate, side, _order_shares_nb(rng), tickers[s], px, match)
    counts[letter] += 1
    return pos


@njit(cache=True, nogil=True)
def fill_flow_nb(buf, rng, prm, st, n_flow, counts, orders, stocks, tickers, cum_weight, mix_cum):
    """Write order-flow messages into ``buf`` until it is full or ``n_flow`` are done; return the bytes.

    All state (``st``, ``orders``, ``stocks``, the rng) carries over between calls, so the bytes do
    not depend on where chunks split.
    """
    pos = 0
    while st[ST_DONE] < n_flow and pos + MAX_FLOW_RECORD <= buf.size:
        pos = _flow_message_nb(buf, pos, rng, prm, st, counts, orders, stocks, tickers, cum_weight, mix_cum)
        st[ST_DONE] += 1
    return pos


# --- Python-facing wrapper ------------------------------------------------------------------------------
def fixed_messages(symbols: int) -> int:
    """Messages of a day that are not order flow: six system events, then R, H and two crosses a stock."""
    return 6 + 4 * symbols


def make_tickers(symbols: int, rng: np.random.Generator) -> list[str]:
    """``symbols`` distinct made-up 4-letter tickers in alphabetical (stock locate) order."""
    names: set[str] = set()
    while len(names) < symbols:
        letters = (rng.integers(0, 26, size=(symbols, 4)) + ord("A")).astype(np.uint8)
        names.update(row.tobytes().decode("ascii") for row in letters)
    return sorted(names)[:symbols]


def _opening_messages(tickers: list[str], prices: np.ndarray, rng: np.random.Generator) -> list[bytes]:
    """System start events, stock directory, trading actions, market open and opening crosses."""
    out = [encode("S", timestamp=START_OF_MESSAGES_NS, event_code="O")]
    for locate, ticker in enumerate(tickers, 1):
        out.append(encode_stock_directory(locate, START_OF_MESSAGES_NS + locate * SPACING_NS, ticker, ROUND_LOT))
    out.append(encode("S", timestamp=START_OF_SYSTEM_HOURS_NS, event_code="S"))
    for locate, ticker in enumerate(tickers, 1):
        out.append(
            encode(
                "H",
                stock_locate=locate,
                timestamp=START_OF_SYSTEM_HOURS_NS + locate * SPACING_NS,
                stock=ticker,
                trading_state="T",
            )
        )
    out.append(encode("S", timestamp=START_OF_MARKET_HOURS_NS, event_code="Q"))
    out += _crosses(tickers, prices, rng, START_OF_MARKET_HOURS_NS, "O", FIRST_REF)
    return out


def _crosses(
    tickers: list[str], prices: np.ndarray, rng: np.random.Generator, ts_ns: int, cross_type: str, first_match: int
) -> list[bytes]:
    """One cross trade (Q) per stock at its fair price, spaced after ``ts_ns``."""
    lots = rng.integers(1, CROSS_LOTS_MAX + 1, size=len(tickers))
    return [
        encode(
            "Q",
            stock_locate=locate,
            timestamp=ts_ns + locate * SPACING_NS,
            shares=int(lots[locate - 1]) * ROUND_LOT,
            stock=ticker,
            cross_price=int(prices[locate - 1]),
            match_number=first_match + locate - 1,
            cross_type=cross_type,
        )
        for locate, ticker in enumerate(tickers, 1)
    ]


def _closing_messages(
    tickers: list[str], prices: np.ndarray, rng: np.random.Generator, first_match: int
) -> list[bytes]:
    """Closing crosses and the end-of-day system events."""
    out = _crosses(tickers, prices, rng, END_OF_MARKET_HOURS_NS, "C", first_match)
    end_crosses = END_OF_MARKET_HOURS_NS + (len(tickers) + 1) * SPACING_NS
    for ts, code in ((end_crosses, "M"), (END_OF_SYSTEM_HOURS_NS, "E"), (END_OF_MESSAGES_NS, "C")):
        out.append(encode("S", timestamp=ts, event_code=code))
    return out


def _count_types(messages: list[bytes], counts: np.ndarray) -> None:
    """Count the fixed messages by type letter, as the jitted flow counts its own."""
    for message in messages:
        counts[message[0]] += 1


def _set_depths(stocks: np.ndarray, profile: DepthProfile, activity: np.ndarray, n_flow: int) -> None:
    """Each stock's most live orders (K_CAP) and the orders to seed its book with (K_SEED).

    Shallow: one cap for all, flow messages per stock / FLOW_PER_LIVE_ORDER within bounds. Deep: the
    busiest stock gets ``live_max``, the others in proportion to their activity; seeding (nine tenths
    of the cap) takes at most half the flow, scaled down on a short day.
    """
    symbols = len(stocks)
    if not profile.seed:
        stocks[:, K_CAP] = np.clip(n_flow // symbols // FLOW_PER_LIVE_ORDER, LIVE_ORDERS_MIN, profile.live_max)
        return
    caps = profile.live_max * activity / activity.max()
    caps *= min(1.0, n_flow / 2 / (caps.sum() * 0.9))
    stocks[:, K_CAP] = np.maximum(np.round(caps), LIVE_ORDERS_MIN)
    stocks[:, K_SEED] = stocks[:, K_CAP] - stocks[:, K_CAP] // 10


def generate_itch(
    path: str | Path,
    *,
    messages: int,
    symbols: int,
    seed: int,
    depth: str = "shallow",
    gzip: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write a synthetic ITCH 5.0 day of exactly ``messages`` messages over ``symbols`` stocks, with books
    of the ``depth`` profile (a key of :data:`PROFILES`).

    The file is a flat ``[u16 BE length][message]`` stream (gzip-compressed when ``gzip``), written
    chunk by chunk with bounded memory; ``progress(done, total)`` is called after each chunk.
    Returns a summary: path, seed, messages, symbols, tickers, counts (per type letter), bytes (of
    the uncompressed stream), file_bytes, first_ts_ns and last_ts_ns.
    """
    if depth not in PROFILES:
        raise ValueError(f"depth must be one of {', '.join(PROFILES)}, got {depth!r}")
    profile = PROFILES[depth]
    if not 1 <= symbols <= 0xFFFF:
        raise ValueError(f"symbols must be in 1..65535 (the stock locate is a u16), got {symbols}")
    n_flow = messages - fixed_messages(symbols)
    if n_flow < 0:
        least = fixed_messages(symbols)
        raise ValueError(f"{symbols} symbols take at least {least} messages, not {messages}")
    rng = np.random.default_rng(seed)
    tickers = make_tickers(symbols, rng)
    ticker_bytes = np.frombuffer("".join(f"{t:<8}" for t in tickers).encode("ascii"), np.uint8).reshape(-1, 8)
    dollars = np.exp(rng.uniform(np.log(MIN_PRICE_DOLLARS), np.log(MAX_PRICE_DOLLARS), symbols))
    activity = rng.permutation(np.arange(1, symbols + 1, dtype=np.float64)) ** -ACTIVITY_EXPONENT
    cum_weight = np.cumsum(activity) / activity.sum()
    mix_cum = np.cumsum([share for _, share in FLOW_MIX])
    mix_cum /= mix_cum[-1]

    stocks = np.zeros((symbols, K_SIZE), np.int64)
    stocks[:, K_FAIR2] = np.round(dollars * PRICE_SCALE / HALF_TICK)
    stocks[:, K_ASK] = NO_ASK
    stocks[:, K_BEST_OK] = 1
    _set_depths(stocks, profile, activity, n_flow)
    orders = np.zeros((symbols, int(stocks[:, K_CAP].max()), O_SIZE), np.int64)
    prm = np.zeros(PR_SIZE, np.float64)
    prm[PR_DEEP_MEAN], prm[PR_P_DEEP] = profile.deep_mean_ticks, profile.p_deep_add
    prm[PR_P_NEWEST], prm[PR_NEWEST_MEAN] = profile.p_newest_delete, profile.newest_mean
    st = np.zeros(ST_SIZE, np.int64)
    st[ST_TS] = FLOW_START_NS
    st[ST_NEXT_REF] = FIRST_REF
    st[ST_NEXT_MATCH] = FIRST_REF + symbols  # after the opening crosses
    st[ST_SEED_LEFT] = stocks[:, K_SEED].sum()
    st[ST_MEAN_GAP_NS] = (FLOW_END_NS - FLOW_START_NS) / max(n_flow, 1) / (1.0 - P_SAME_TIMESTAMP)
    counts = np.zeros(256, np.int64)
    buf = np.empty(CHUNK_BYTES, np.uint8)

    def fair_prices() -> np.ndarray:
        return (stocks[:, K_FAIR2] + 1) // 2 * TICK

    opening = _opening_messages(tickers, fair_prices(), rng)
    _count_types(opening, counts)
    done = len(opening)
    # mtime=0 keeps a seed's .gz bytes reproducible
    sink = gzip_module.GzipFile(path, "wb", compresslevel=GZIP_LEVEL, mtime=0) if gzip else open(path, "wb")  # noqa: SIM115
    with sink as out:
        total_bytes = out.write(frame(opening))
        while st[ST_DONE] < n_flow:
            n = fill_flow_nb(buf, rng, prm, st, n_flow, counts, orders, stocks, ticker_bytes, cum_weight, mix_cum)
            total_bytes += out.write(memoryview(buf)[:n])
            if progress is not None:
                progress(done + int(st[ST_DONE]), messages)
        closing = _closing_messages(tickers, fair_prices(), rng, int(st[ST_NEXT_MATCH]))
        _count_types(closing, counts)
        total_bytes += out.write(frame(closing))
    if progress is not None:
        progress(messages, messages)
    return {
        "path": str(path),
        "seed": seed,
        "depth": depth,
        "messages": int(counts.sum()),
        "symbols": symbols,
        "tickers": tickers,
        "counts": {chr(t): int(c) for t, c in enumerate(counts) if c},
        "bytes": total_bytes,
        "file_bytes": Path(path).stat().st_size,
        "first_ts_ns": START_OF_MESSAGES_NS,
        "last_ts_ns": END_OF_MESSAGES_NS,
    }
