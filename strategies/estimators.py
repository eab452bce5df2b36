"""Online estimates of the model inputs of Avellaneda-Stoikov and GLFT: volatility and trade intensity.

Both models take the mid as a Brownian motion with volatility ``sigma`` and the market orders that
reach a quote at depth ``delta`` from the mid as a Poisson flow of intensity ``lambda(delta) = A exp(-k delta)``
per side. Everything here is in ticks and seconds: ``sigma`` in ticks per sqrt-second, ``A`` in
arrivals per second, ``k`` per tick, depths in ticks.

The estimates live in the strategy's ``state`` (slots ``0 .. EST_STATE_LEN``) and forget the past
exponentially with the time constant ``window_s``: each call multiplies every sum by
``w = exp(-elapsed / window_s)`` and adds what the view reports since the previous call.

* Volatility: ``sigma^2 = sum(w dmid^2) / sum(w dt)``, the decayed realised variance per second; the
  prior until ``MIN_SIGMA_INTERVALS`` (decayed) intervals have been seen.
* Intensity: for the depths ``delta_i = i * depth_step_ticks`` (``i < N_DEPTHS``) it counts the intervals
  (calls) in which the highest aggressive buy (``V_BUY_HIGH``) or the lowest aggressive sell
  (``V_SELL_LOW``) reached ``delta_i`` from the previous mid, where the quotes were resting. A call
  sees only the farthest trade of each side, so the count gives the fraction ``p_i`` of side-intervals
  with at least one arrival beyond ``delta_i``; for Poisson arrivals ``p = 1 - exp(-lambda dt)``, so
  ``lambda_i = -ln(1 - p_i) / dt`` with ``dt`` the mean interval. This stays unbiased when several
  trades fall in one interval (exact for a constant ``interval_ns``; with irregular calls it is exact
  only while ``lambda dt`` is small). Then ``ln lambda_i = ln A - k delta_i`` is fitted by least
  squares, each depth weighted by the inverse variance of its ``ln lambda_i`` (about its count when
  ``p`` is small); depths hit in more than ``MAX_HIT_FRACTION`` of the intervals say little and are left out.
  ``A`` and ``k`` are the priors until ``min_arrivals`` (decayed) trades are seen, and whenever the fit
  is degenerate (fewer than two usable depths, ``k <= 0``).

Calls whose book has no usable mid are skipped.
"""

from __future__ import annotations

import math

from numba import njit

from strategies.api import V_BUY_HIGH, V_ELAPSED_NS, V_SELL_LOW, V_TRADES, Param
from strategies.quoting import P_GAMMA, at_least, inventory, touch_in_ticks

# --- state slots ---------------------------------------------------------------------------------
S_HAVE_MID = 0  # 1 once a mid has been seen
S_MID_TICKS = 1  # mid at the previous call, ticks
S_TIME_S = 2  # decayed observed time, s
S_SQ_TICKS2 = 3  # decayed sum of squared mid changes, ticks^2
S_SIGMA = 4  # latest sigma used, ticks / sqrt(s)
S_A = 5  # latest A used, 1/s
S_K = 6  # latest k used, 1/tick
S_FITTED = 7  # 1 when A and k came from the fit, 0 when from the priors
S_INTERVALS = 8  # decayed number of intervals (calls with elapsed time) seen
S_COUNTS = 9  # N_DEPTHS decayed counts of arrivals beyond delta_i (both sides together)
N_DEPTHS = 16
EST_STATE_LEN = S_COUNTS + N_DEPTHS

# --- the estimator's parameters, a block starting at index p0 of the strategy's params -----------
E_SIGMA, E_A, E_K, E_FIT_SIGMA, E_FIT_INTENSITY, E_WINDOW_S, E_DEPTH_STEP, E_MIN_ARRIVALS = range(8)
ESTIMATOR_PARAMS = (
    Param("sigma_ticks", 1.0, "volatility of the mid, ticks per sqrt-second (fixed value, or prior when estimated)", 0),
    Param("A_per_s", 1.0, "trade intensity at the mid, market orders per second per side (fixed value or prior)", 0),
    Param("k_per_tick", 0.5, "decay of the trade intensity with depth, per tick (fixed value or prior)", 0),
    Param("estimate_sigma", 1.0, "1: estimate sigma online from the mid; 0: always use sigma_ticks", 0),
    Param("estimate_intensity", 1.0, "1: fit A and k online from trades; 0: always use A_per_s and k_per_tick", 0),
    Param("window_s", 60.0, "time constant of the estimators' exponential forgetting, seconds", 0, exclusive=True),
    Param(
        "depth_step_ticks",
        1.0,
        f"spacing of the {N_DEPTHS} depths at which arrivals are counted, ticks",
        0,
        exclusive=True,
    ),
    Param("min_arrivals", 50.0, "trades seen (decayed; one a side a call) before A and k leave their priors", 0),
)

MIN_A_PER_S = 1e-12  # floors that keep the models' divisions finite whatever the parameters say
MIN_K_PER_TICK = 1e-12
MIN_WINDOW_S = 1e-3
MIN_DEPTH_STEP_TICKS = 1e-3
MIN_SIGMA_INTERVALS = 100.0  # intervals to see before sigma is estimated (about 7 % sampling error)
MIN_POINT_COUNT = 1.0  # a depth enters the fit once its decayed count reaches this ...
MAX_HIT_FRACTION = 0.95  # ... and while it is reached in at most this fraction of the side-intervals
MAX_SQ_TICKS2 = 1e200  # larger squared moves are dropped and the sum is capped here, so the state stays finite


@njit(cache=True, nogil=True)
def _window_s(params, p0):
    return at_least(params[p0 + E_WINDOW_S], MIN_WINDOW_S)


@njit(cache=True, nogil=True)
def _depth_step(params, p0):
    step = params[p0 + E_DEPTH_STEP]
    return step if step > MIN_DEPTH_STEP_TICKS and math.isfinite(step) else 1.0


@njit(cache=True, nogil=True)
def _count_arrival(state, depth_ticks, step_ticks):
    """One arrival at every grid depth up to ``depth_ticks`` (nothing for a negative or NaN depth)."""
    if not depth_ticks >= 0.0:
        return
    reach = depth_ticks / step_ticks
    n = N_DEPTHS if reach >= N_DEPTHS - 1 else int(reach) + 1
    for i in range(n):
        state[S_COUNTS + i] += 1.0


@njit(cache=True, nogil=True)
def observe(view, state, params, p0, tick, mid_ticks):
    """Fold the view's news since the previous call into the decayed sums (``tick > 0``, finite mid)."""
    dt = view[V_ELAPSED_NS] * 1e-9
    if not (dt > 0.0 and math.isfinite(dt)):
        dt = 0.0
    if state[S_HAVE_MID] == 1.0:
        w = math.exp(-dt / _window_s(params, p0))
        prev = state[S_MID_TICKS]
        state[S_TIME_S] = state[S_TIME_S] * w + dt
        state[S_INTERVALS] = state[S_INTERVALS] * w + (1.0 if dt > 0.0 else 0.0)
        move = mid_ticks - prev
        sq = state[S_SQ_TICKS2] * w
        if move * move < MAX_SQ_TICKS2:
            sq += move * move
        state[S_SQ_TICKS2] = min(sq, MAX_SQ_TICKS2)
        for i in range(N_DEPTHS):
            state[S_COUNTS + i] *= w
        if view[V_TRADES] > 0.0:
            step = _depth_step(params, p0)
            _count_arrival(state, view[V_BUY_HIGH] / tick - prev, step)
            _count_arrival(state, prev - view[V_SELL_LOW] / tick, step)
    state[S_MID_TICKS] = mid_ticks
    state[S_HAVE_MID] = 1.0


@njit(cache=True, nogil=True)
def current_sigma(state, params, p0):
    """Volatility, ticks per sqrt-second: the decayed realised estimate once warm, else the parameter."""
    if params[p0 + E_FIT_SIGMA] > 0.5 and state[S_INTERVALS] >= MIN_SIGMA_INTERVALS and state[S_TIME_S] > 0.0:
        return math.sqrt(state[S_SQ_TICKS2] / state[S_TIME_S])
    return params[p0 + E_SIGMA]


@njit(cache=True, nogil=True)
def fit_intensity(state, params, p0):
    """``(A, k, fitted)``: the weighted least-squares fit of ``ln lambda(delta)``, or the priors and False."""
    prior_a = params[p0 + E_A]
    prior_k = params[p0 + E_K]
    trials = 2.0 * state[S_INTERVALS]  # side-intervals: each interval is a trial for the buys and for the sells
    time_s = state[S_TIME_S]
    enough = state[S_COUNTS] >= params[p0 + E_MIN_ARRIVALS] and trials > 0.0 and time_s > 0.0
    if not (params[p0 + E_FIT_INTENSITY] > 0.5 and enough):
        return prior_a, prior_k, False
    mean_dt = 2.0 * time_s / trials
    step = _depth_step(params, p0)
    sw = swx = swy = swxx = swxy = 0.0
    points = 0
    for i in range(N_DEPTHS):
        count = state[S_COUNTS + i]
        hit = count / trials
        if count >= MIN_POINT_COUNT and hit <= MAX_HIT_FRACTION:
            rate_dt = -math.log1p(-hit)  # lambda_i * dt
            weight = (1.0 - hit) * trials * rate_dt * rate_dt / hit  # 1 / Var(ln lambda_i), delta method
            x = i * step
            y = math.log(rate_dt / mean_dt)
            sw += weight
            swx += weight * x
            swy += weight * y
            swxx += weight * x * x
            swxy += weight * x * y
            points += 1
    if points < 2:
        return prior_a, prior_k, False
    k = -(sw * swxy - swx * swy) / (sw * swxx - swx * swx)
    a = math.exp((swy + k * swx) / sw)
    if not (k > 0.0 and math.isfinite(k) and a > 0.0 and math.isfinite(a)):
        return prior_a, prior_k, False
    return a, k, True


@njit(cache=True, nogil=True)
def estimate(view, state, params, p0, tick, mid_ticks):
    """Update the estimators with this call's view and return ``(sigma, A, k)``, also kept in ``state``.

    The values are floored (``sigma >= 0``, ``A``, ``k`` > 0; NaN parameters count as the floor) so
    that the models downstream always get numbers they can divide by.
    """
    observe(view, state, params, p0, tick, mid_ticks)
    sigma = at_least(current_sigma(state, params, p0), 0.0)
    a, k, fitted = fit_intensity(state, params, p0)
    a = at_least(a, MIN_A_PER_S)
    k = at_least(k, MIN_K_PER_TICK)
    state[S_SIGMA] = sigma
    state[S_A] = a
    state[S_K] = k
    state[S_FITTED] = 1.0 if fitted else 0.0
    return sigma, a, k


@njit(cache=True, nogil=True)
def model_inputs(view, params, state, quotes, p0):
    """``(ok, tick, mid_ticks, q, gamma, sigma, A, k)`` for a strategy with ``MODEL_PARAMS`` and estimators at ``p0``.

    Updates the estimators, then reads the inventory (``q`` in orders, see :func:`strategies.quoting.inventory`)
    and the risk aversion (``gamma >= 0``); ``ok`` is False when the book, the size, the position,
    ``state`` or ``quotes`` cannot be used.
    """
    tick, mid_ticks = touch_in_ticks(view)
    if tick == 0.0 or state.shape[0] < EST_STATE_LEN or quotes.shape[0] < 1:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    sigma, a, k = estimate(view, state, params, p0, tick, mid_ticks)
    ok, _, _, _, q = inventory(view, params)
    return ok, tick, mid_ticks, q, at_least(params[P_GAMMA], 0.0), sigma, a, k
