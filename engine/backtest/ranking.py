"""How a sweep ranks its parameter sets: ``--rank-by NAME`` -> (summary column, best first is descending).

A module of its own, importing nothing, so ``hftmm sweep --help`` (and ``hftmm --help``) can list the
names without loading the backtester.
"""

from __future__ import annotations

RANK_KEYS: dict[str, tuple[str, bool]] = {
    "pnl": ("mean_pnl", True),
    "sharpe": ("mean_sharpe", True),
    "sortino": ("mean_sortino", True),
    "max_drawdown": ("worst_drawdown", False),
    "fills": ("total_fills", True),
}
