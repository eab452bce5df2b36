"""Big-endian integers in byte buffers, for the Numba codecs of every wire protocol here.

ITCH, MoldUDP64 and OUCH are all big-endian; these are inlined at Numba IR level, so a field read
or write costs what the shifts cost, with no call and no array reference counting.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def u16_nb(buf, p):
    """The unsigned 16-bit big-endian integer at buf[p] (as int64)."""
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@njit(cache=True, nogil=True, inline="always")
def u32_nb(buf, p):
    """The unsigned 32-bit big-endian integer at buf[p] (as int64)."""
    return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])


@njit(cache=True, nogil=True, inline="always")
def u48_nb(buf, p):
    """The unsigned 48-bit big-endian integer at buf[p] (ITCH timestamps), as int64."""
    return (u16_nb(buf, p) << 32) | u32_nb(buf, p + 2)


@njit(cache=True, nogil=True, inline="always")
def u64_nb(buf, p):
    """The unsigned 64-bit big-endian integer at buf[p], as uint64."""
    return (np.uint64(u32_nb(buf, p)) << np.uint64(32)) | np.uint64(u32_nb(buf, p + 4))


@njit(cache=True, nogil=True, inline="always")
def put_be_nb(buf, p, value, nbytes):
    """Write the low ``nbytes`` bytes of ``value`` big-endian at buf[p]."""
    for i in range(nbytes):
        buf[p + nbytes - 1 - i] = (value >> (8 * i)) & 0xFF


@njit(cache=True, nogil=True, inline="always")
def put_bytes_nb(buf, p, src):
    """Copy a short byte row (a symbol, an MPID, a client order id) to buf[p]."""
    for i in range(src.size):
        buf[p + i] = src[i]
