"""docker/prometheus: promtool accepts the config and the rules, and every alert's unit tests pass."""

from __future__ import annotations

import subprocess

import yaml

from tests.monitoring.harness import PROMETHEUS_CONFIG, RULE_TESTS, RULES_DIR

PROMTOOL_WAIT_S = 60


def _promtool(promtool: str, *args: str) -> str:
    done = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=PROMTOOL_WAIT_S, cwd=RULE_TESTS.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _alert_names() -> set[str]:
    names = set()
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names.update(rule["alert"] for rule in group["rules"] if "alert" in rule)
    return names


def test_promtool_checks_the_config_and_finds_the_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert "SUCCESS" in out and "1 rule files found" in out


def test_promtool_checks_the_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert f"SUCCESS: {len(_alert_names()) + 1} rules found" in out  # the alerts and one recording rule


def test_rule_unit_tests_pass(promtool: str) -> None:
    out = _promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    expected = {
        "HftmmMarketDataStale",
        "HftmmFeedGapNotRecovered",
        "HftmmTickToTradeP99High",
        "HftmmRiskRejectionsSpiking",
        "HftmmKillSwitchEngaged",
        "HftmmDrawdownOverLimit",
        "HftmmNodeRestarting",
        "HftmmNodeDown",
        "HftmmExporterDown",
    }
    assert _alert_names() == expected
    assert firing == expected and quiet == expected
