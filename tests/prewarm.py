"""Compile the trading node's step, the simulated exchange's and the t2t harness's kernels into Numba's
cache, on the CPU the suite leaves idle.

``tests/conftest.py`` starts this in the background when the session starts. The suite runs one test at
a time; its first integration tests compile the backtest loop on one CPU while this compiles what the
live, latency and exchange tests need next on the other, so a cold cache costs minutes less. A kernel
this process has not finished when a test needs it is compiled by the test as before (the cache tolerates
both), so nothing depends on it: it only saves time. The groups are ``hftmm compile``'s own.
"""

from __future__ import annotations

import sys

from engine.cli.kernels import compile_kernels

if __name__ == "__main__":
    compile_kernels(["node", "exchange", "harness"], lambda line: print(line, file=sys.stderr))
