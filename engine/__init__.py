"""hftmm's engine, by concern; each package imports only the ones below it (``lint-imports`` holds it)::

cli          the command line: one module per command group (the only importer of bench/)
live         the live daemon: config, the one node builder, the node and its compiled step, journal,
             capture and parity replay, recovery, report
backtest     the backtester: face, compiled loop, latency / queue / fee models, statistics, sweeps
simexchange  the simulated exchange: matching, background and replay flow, ITCH publisher, OUCH server
trading      what live and backtest share: OMS, risk, quote plan, the strategy's view
gateway      OUCH order entry over Aeron: the session layer both ends speak, the client
runtime      agents and idle strategies, CPU placement, Aeron set-up, metrics and control blocks
book         the L3 / L2 order book: face, layout, kernels, dense depth, file replay
core         events, instruments, units, config base, owner-less views, the kernels' clock
"""

from engine.core.kernel_cache import use_kernel_cache
from engine.core.numba_inline import install_on_import

use_kernel_cache()  # before any kernel module: every entry point (CLI, notebook, Ray worker) shares one cache
install_on_import()  # Numba's inliner without its redundant IR copies: half the cold compile time
