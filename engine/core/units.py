"""Units and addresses every part of hftmm shares, declared once.

Time is int64 nanoseconds everywhere (``*_ns`` names); ``NEVER`` is a time later than any real one
(about 146 years), which compiled loops use as "no deadline". Nothing listens beyond ``LOOPBACK``
unless a config says so. Shared-memory files (metrics and control blocks, journal rings, Aeron's
directory) live in ``SHM_DIR``.
"""

from __future__ import annotations

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
NEVER = 2**62
LOOPBACK = "127.0.0.1"
SHM_DIR = "/dev/shm"
