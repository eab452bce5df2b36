"""The stamp clock: CLOCK_MONOTONIC nanoseconds from the CPU's counter, re-anchored on the real clock."""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from engine.core.clock import CK_MULT, CK_NS, CK_SPAN, CLOCK_WORDS, monotonic_ns, stamp_ns, start_stamp_clock

AT = 3  # the clock sits inside a caller's scalars, not at their start


@njit(cache=True)
def _bracketed(clock, at, n):
    """n stamps, each between two real readings: (before, stamp, after) rows."""
    out = np.empty((n, 3), np.int64)
    for k in range(n):
        out[k, 0] = monotonic_ns()
        out[k, 1] = stamp_ns(clock, at)
        out[k, 2] = monotonic_ns()
    return out


def _clock() -> np.ndarray:
    words = np.zeros(AT + CLOCK_WORDS + 2, np.int64)
    start_stamp_clock(words, AT)
    return words


def test_stamps_fall_between_real_readings_taken_around_them() -> None:
    clock = _clock()
    assert clock[AT + CK_MULT] > 0 and clock[AT + CK_SPAN] > 0  # this machine has a running counter
    rows = _bracketed(clock, AT, 200_000)  # ~10 ms: several re-anchors
    slack = 1_000  # ns: the anchor's error and the rate's over one span, generously
    assert (rows[:, 1] >= rows[:, 0] - slack).all() and (rows[:, 1] <= rows[:, 2] + slack).all()
    assert (np.diff(rows[:, 1]) > -slack).all()


def test_an_anchor_older_than_its_span_is_taken_again() -> None:
    clock = _clock()
    stamp_ns(clock, AT)
    first = clock[AT + CK_NS]
    time.sleep(0.005)  # five spans
    before = time.monotonic_ns()
    stamp_ns(clock, AT)
    assert clock[AT + CK_NS] >= before > first


def test_without_a_rate_every_stamp_is_a_real_reading() -> None:
    clock = np.zeros(AT + CLOCK_WORDS, np.int64)
    rows = _bracketed(clock, AT, 1000)
    assert (rows[:, 0] <= rows[:, 1]).all() and (rows[:, 1] <= rows[:, 2]).all()
    assert clock[AT + CK_NS] >= rows[-1, 1]
