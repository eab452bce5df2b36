"""engine.core.borrow: views without an owner, one array or every array of a state tuple."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from numba import njit

from engine.core.borrow import borrow_all


class State(NamedTuple):
    counts: np.ndarray
    prices: np.ndarray
    scale: float


@njit(cache=True)
def _bump(st):
    st = borrow_all(st)
    st.counts[0] += 1
    st.prices[1] = st.prices[0] * st.scale
    return st.counts.sum() + st.prices.shape[0]


def test_borrowed_members_write_through_to_the_callers_arrays() -> None:
    state = State(np.array([1, 2], np.int64), np.array([2.0, 0.0]), 1.5)
    assert _bump(state) == 4 + 2
    assert state.counts.tolist() == [2, 2] and state.prices.tolist() == [2.0, 3.0]


@njit
def _borrow_a_tuple_with_a_string(t):
    return borrow_all(t)


def test_a_member_that_is_neither_array_nor_number_is_refused() -> None:
    with pytest.raises(TypeError, match="borrow_all takes a tuple of arrays"):
        _borrow_a_tuple_with_a_string((np.zeros(1), "x"))
