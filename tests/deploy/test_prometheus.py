"""Prometheus's configuration and alert rules, checked by promtool (Debian's `prometheus` package): the configuration
and rules load, and every alert has unit tests in which it fires and in which it does not."""

from __future__ import annotations

import subprocess

from tests.deploy.artifacts import PROMETHEUS_CONFIG, RULE_FILES, RULE_TESTS, alerts, load_yaml, metric_names

#: What issue 6 asks to be paged or ticketed for, and the alert that does it.
REQUIRED_ALERTS = {
    "QuanzuSlaBreachRateHigh": "SLA breach rate per area above a threshold",
    "QuanzuConsumerLagGrowing": "consumer lag growing for 5 minutes",
    "QuanzuDeadLetters": "DLQ growth",
    "QuanzuOutboxBacklog": "outbox backlog",
    "QuanzuServiceDown": "a service down",
    "QuanzuSmsProviderFailing": "SMS provider failing",
}


def _promtool(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_checks_the_configuration_and_its_rule_files(promtool: str) -> None:
    out = _promtool(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert f"{len(RULE_FILES)} rule files found" in out
    _promtool(promtool, "check", "rules", *map(str, RULE_FILES))


def test_the_configuration_loads_every_rule_file() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["rules/*.yml"]
    assert RULE_FILES, "no rule files under deploy/prometheus/rules"


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str) -> None:
    assert RULE_TESTS
    out = _promtool(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out


def test_the_issues_alerts_exist_and_each_is_tested_firing_and_quiet() -> None:
    defined = alerts()
    assert set(REQUIRED_ALERTS) <= set(defined)
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        spec = load_yaml(path)
        assert {str((path.parent / f).resolve()) for f in spec["rule_files"]} <= {str(p) for p in RULE_FILES}
        for test in spec["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(defined) - firing == set(), "alerts without a test in which they fire"
    assert set(defined) - quiet == set(), "alerts without a test in which they must not fire"


def test_every_alert_is_actionable() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        assert metric_names(rule["expr"]), name
