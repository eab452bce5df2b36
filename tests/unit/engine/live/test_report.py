"""The live session report: per-symbol tables (replaces included) and the text a person reads."""

from __future__ import annotations

from engine.live.report import SYMBOL_FIGURES, format_report, symbol_tables
from engine.trading import layout as TL


def _figures(orders: int, replaces: int, fills: int, position: int, pnl: float) -> dict:
    return {"orders": orders, "replaces": replaces, "fills": fills, "position": position, "pnl": pnl, "fees": 0.25,
            "cash": 0.0, "risk_rejections": {r: 0 for r in TL.RISK_REASONS}}  # fmt: skip


def _report(record: dict[str, int] | None) -> dict:
    nodes = [{"AAPL": _figures(5, 160, 172, 100, -12.3)}, {"MSFT": _figures(3, 40, 9, -20, 4.0000001)}]
    reasons = {r: 0 for r in TL.RISK_REASONS} | {TL.RISK_REASONS[0]: 2}
    return {
        "duration_s": 60.0, "killed": False, **symbol_tables(nodes),
        "risk_rejections": {"total": 2, "by_reason": reasons,
                            "by_symbol": {s: {r: 0 for r in TL.RISK_REASONS} for s in ("AAPL", "MSFT")}},
        "t2t_p50_ns": 1500, "t2t_p99_ns": 9000, "t2t_samples": 10, "unknown_responses": 0, "duplicate_responses": 0,
        "exchange_position": record, "nodes": {"mm-1": {"capture": None, "failure": None, "restarts": 0}},
    }  # fmt: skip


def test_symbol_tables_hold_replaces_per_symbol_across_nodes() -> None:
    tables = symbol_tables([{"AAPL": _figures(5, 160, 172, 100, -12.3)}, {"MSFT": _figures(3, 40, 9, -20, 4.0)}])
    assert set(tables) == set(SYMBOL_FIGURES)
    assert tables["replaces"] == {"AAPL": 160, "MSFT": 40}
    assert tables["orders"] == {"AAPL": 5, "MSFT": 3}
    assert tables["pnl"] == {"AAPL": -12.3, "MSFT": 4.0}


def test_text_report_is_a_table_with_replaces_and_the_exchange_record_and_no_dict() -> None:
    text = format_report(_report({"AAPL": 100, "MSFT": -20}))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("symbol"))
    assert header.split() == ["symbol", "orders", "replaces", "fills", "position", "exchange", "pnl", "net", "fees",
                              "risk", "rejects"]  # fmt: skip
    assert next(line for line in lines if line.startswith("AAPL")).split() == ["AAPL", "5", "160", "172", "100", "100",
                                                                               "-12.30", "0.25", "0"]  # fmt: skip
    assert "record of our position (shares) agrees" in text
    assert f"risk rejections 2 ({TL.RISK_REASONS[0]} 2)" in text
    assert "{" not in text and "}" not in text


def test_text_report_says_when_the_exchange_record_differs() -> None:
    assert "DIFFERS" in format_report(_report({"AAPL": 100, "MSFT": 0}))


def test_text_report_without_an_exchange_record_has_no_exchange_column() -> None:
    header = next(line for line in format_report(_report(None)).splitlines() if line.startswith("symbol"))
    assert "exchange" not in header
