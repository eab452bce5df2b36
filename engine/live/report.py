"""The live session's report: per-symbol figures of a node, latency percentiles, the text a person reads."""

from __future__ import annotations

import numpy as np

from engine.live.builder import NodeSpec
from engine.runtime import metrics as M
from engine.trading import layout as TL


def symbol_reports(spec: NodeSpec, inst: np.ndarray, money: np.ndarray, risk_counts: np.ndarray) -> dict[str, dict]:
    """Per symbol: orders, replaces, fills, fees, position (shares), cash and PnL (net of fees) at the last mid,
    risk rejections."""
    symbols = {}
    for i, instrument in enumerate(spec.instruments):
        lot = int(inst[i, TL.IN_LOT])
        mid = float(money[i, TL.MN_MID])
        position = int(inst[i, TL.IN_POSITION]) * lot
        unrealized = position * (mid - money[i, TL.MN_AVG_PRICE]) if np.isfinite(mid) and position else 0.0
        symbols[instrument.symbol] = {
            "orders": int(inst[i, TL.IN_ORDERS]),
            "accepted": int(inst[i, TL.IN_ACCEPTED]),
            "fills": int(inst[i, TL.IN_FILLS]),
            "cancels_sent": int(inst[i, TL.IN_CANCELS]),
            "canceled": int(inst[i, TL.IN_CANCELED]),
            "exchange_rejects": int(inst[i, TL.IN_REJECTS]),
            "position": position,
            "cash": float(money[i, TL.MN_CASH]),
            "fees": float(money[i, TL.MN_FEES]),
            "replaces": int(inst[i, TL.IN_REPLACES]),
            "realized_pnl": float(money[i, TL.MN_REALIZED]),
            "unrealized_pnl": float(unrealized),
            "pnl": float(money[i, TL.MN_REALIZED] + unrealized),
            "mid": mid if np.isfinite(mid) else None,
            "risk_rejections": {r: int(risk_counts[i, j]) for j, r in enumerate(TL.RISK_REASONS)},
        }
    return symbols


SYMBOL_FIGURES = ("orders", "replaces", "fills", "position", "pnl", "fees")  # the report's per-symbol tables


def symbol_tables(node_symbols: list[dict[str, dict]]) -> dict[str, dict]:
    """The session report's per-symbol tables (``orders``, ``replaces``, ...: ``{symbol: value}`` each) from the
    nodes' :func:`symbol_reports`."""
    tables: dict[str, dict] = {figure: {} for figure in SYMBOL_FIGURES}
    for symbols in node_symbols:
        for symbol, figures in symbols.items():
            for figure in SYMBOL_FIGURES:
                value = figures[figure]
                tables[figure][symbol] = round(value, 6) if isinstance(value, float) else value
    return tables


def bucket_percentile_ns(row: np.ndarray, q: float) -> int | None:
    """The upper bound of the histogram bucket holding the ``q``-th percentile (None when empty or in +Inf)."""
    counts = row[: M.N_BUCKETS]
    total = int(counts.sum())
    if not total:
        return None
    k = int(np.searchsorted(np.cumsum(counts), q / 100 * total))
    return int(M.BUCKET_BOUNDS_NS[k]) if k < len(M.BUCKET_BOUNDS_NS) else None


def percentile_ns(samples: np.ndarray, q: float) -> int | None:
    """The ``q``-th percentile of latency samples, ns (None without samples)."""
    return int(np.percentile(samples, q)) if len(samples) else None


def format_report(report: dict) -> str:
    """The session report as a few human-readable lines: a table per symbol (orders are new orders, replaces
    the requotes of working ones; pnl is net of fees), with the exchange's own record of our position."""
    lines = [f"session {report['duration_s']:.1f} s{' (killed)' if report['killed'] else ''}"]
    record = report["exchange_position"]
    by_symbol = report["risk_rejections"]["by_symbol"]
    header = f"{'symbol':<10}{'orders':>8}{'replaces':>10}{'fills':>8}{'position':>10}"
    header += f"{'exchange':>10}" if record is not None else ""
    lines.append(header + f"{'pnl net':>12}{'fees':>10}{'risk rejects':>14}")
    for symbol in report["orders"]:
        row = (f"{symbol:<10}{report['orders'][symbol]:>8}{report['replaces'][symbol]:>10}{report['fills'][symbol]:>8}"
               f"{report['position'][symbol]:>10}")  # fmt: skip
        row += f"{record.get(symbol, 0):>10}" if record is not None else ""
        lines.append(row + f"{report['pnl'][symbol]:>12.2f}{report['fees'][symbol]:>10.2f}"
                     f"{sum(by_symbol[symbol].values()):>14}")  # fmt: skip
    if record is not None:
        agree = all(record.get(s, 0) == q for s, q in report["position"].items())
        lines.append(f"exchange  its record of our position (shares) {'agrees' if agree else 'DIFFERS'}")
    nonzero = ", ".join(f"{reason} {n}" for reason, n in report["risk_rejections"]["by_reason"].items() if n)
    lines.append(f"risk rejections {report['risk_rejections']['total']}{f' ({nonzero})' if nonzero else ''}")
    p50, p99 = report["t2t_p50_ns"], report["t2t_p99_ns"]
    if p50 is None:
        lines.append("tick-to-trade  no samples")
    else:
        lines.append(
            f"tick-to-trade  p50 {p50 / 1000:.1f} us  p99 {p99 / 1000:.1f} us  ({report['t2t_samples']} samples)"
        )
    lines.append(f"responses      unknown {report['unknown_responses']}  duplicate {report['duplicate_responses']}")
    for name, node in report["nodes"].items():
        if node["capture"]:
            lines.append(f"node {name}: session capture {node['capture']} (hftmm backtest --data FILE checks it)")
        if node["failure"] or node["restarts"]:
            lines.append(f"node {name}: restarts {node['restarts']} {node['failure']}".rstrip())
    return "\n".join(lines)
