"""Grafana's provisioning and dashboards (Grafana is not in Debian's registry, so its files are checked as data):
valid dashboard models on the provisioned data source, every query valid PromQL for promtool, and the panels the
issue asks each board to answer."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.artifacts import (
    COMPOSE_FILE,
    DASHBOARD_FILES,
    DASHBOARD_PROVIDERS_FILE,
    DATASOURCES_FILE,
    GRAFANA_BUILTINS,
    VARIABLE,
    dashboard_exprs,
    grafana_variables,
    load_dashboards,
    load_yaml,
    metric_names,
    panels,
    substitute,
)

PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "gauge", "table", "heatmap", "text", "barchart", "piechart"}


def _datasource() -> dict[str, Any]:
    config = load_yaml(DATASOURCES_FILE)
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    return dict(source)


def test_the_datasource_is_the_compose_files_prometheus() -> None:
    source = _datasource()
    assert source["type"] == "prometheus"
    assert source["access"] == "proxy"
    assert source["uid"]
    prometheus = load_yaml(COMPOSE_FILE)["services"]["prometheus"]
    assert "--web.listen-address=:9090" in prometheus["command"]
    assert source["url"] == "http://prometheus:9090"


def test_the_dashboards_are_provisioned_from_where_compose_mounts_them() -> None:
    [provider] = load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"]
    assert provider["type"] == "file"
    grafana = load_yaml(COMPOSE_FILE)["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"] if volume.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(provider["options"]["path"])
    assert Path(home).name in {p.name for p in DASHBOARD_FILES}


def test_each_dashboard_is_a_valid_grafana_model_on_the_provisioned_datasource() -> None:
    uid = _datasource()["uid"]
    dashboards = load_dashboards()
    assert len(dashboards) == 3
    assert len({d["uid"] for d in dashboards.values()}) == len({d["title"] for d in dashboards.values()}) == 3
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == name and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
        assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
        assert dashboard["title"] and dashboard["time"]["from"] and dashboard["time"]["to"]
        assert "quanzu" in dashboard["tags"]
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        boxes = []
        for panel in panels(dashboard):
            where = f"{name}: {panel.get('title')}"
            assert panel["type"] in PANEL_TYPES, where
            pos = panel["gridPos"]
            assert pos["h"] >= 1 and pos["w"] >= 1 and pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, where
            boxes.append((where, pos))
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel.get("description"), where
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target["expr"].strip(), where
        for i, (a, p) in enumerate(boxes):
            for b, q in boxes[i + 1 :]:
                overlap_x = p["x"] < q["x"] + q["w"] and q["x"] < p["x"] + p["w"]
                overlap_y = p["y"] < q["y"] + q["h"] and q["y"] < p["y"] + p["h"]
                assert not (overlap_x and overlap_y), f"{a} and {b} overlap"
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"] == {"type": "prometheus", "uid": uid}, name


def test_every_variable_a_query_uses_is_defined() -> None:
    for dashboard in load_dashboards().values():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | set(GRAFANA_BUILTINS)
        for where, expr in dashboard_exprs(dashboard):
            used = {m.group(1) or m.group(2) for m in VARIABLE.finditer(expr)}
            assert used <= defined, f"{where}: {used - defined}"


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each query as Grafana sends it (variables substituted), as a recording rule: promtool parses its PromQL."""
    rules = []
    for dashboard in load_dashboards().values():
        values = grafana_variables(dashboard)
        for n, (_, expr) in enumerate(dashboard_exprs(dashboard)):
            rules.append(
                {"record": f"dashboard:{dashboard['uid'].replace('-', '_')}:{n}", "expr": substitute(expr, values)}
            )
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, allow_unicode=True))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def _exprs(uid: str) -> str:
    return "\n".join(expr for _, expr in dashboard_exprs(load_dashboards()[uid]))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


QUANTILE = r"histogram_quantile\({q}, sum by \(tier, le\) \(rate\(quanzu_time_to_first_contact_seconds_bucket"
RATIO = (
    r"sum by \(area\) \(increase\({metric}\{{[^}}]*{numerator}\}}.*"
    r" / sum by \(area\) \(increase\({metric}\{{{denominator}"
)


@pytest.mark.parametrize(
    ("uid", "question", "pattern"),
    [
        ("quanzu-sla", "open cases by area and state", r"by \(area, state\) \(quanzu_cases_open\{"),
        ("quanzu-sla", "time to first contact p50", QUANTILE.format(q=r"0\.5")),
        ("quanzu-sla", "time to first contact p90", QUANTILE.format(q=r"0\.9")),
        ("quanzu-sla", "SLA breaches by area and tier", r"sum by \(area, tier\) \(increase\(quanzu_sla_breaches_total"),
        ("quanzu-sla", "escalations by reason", r"sum by \(reason\) \(increase\(quanzu_escalations_total"),
        (
            "quanzu-outcomes",
            "call connected rate by area",
            RATIO.format(metric="quanzu_calls_total", numerator='call_result="connected"', denominator=""),
        ),
        (
            "quanzu-outcomes",
            "dissuasion rate by area",
            RATIO.format(
                metric="quanzu_visits_total",
                numerator='dissuasion_result="dissuaded"',
                denominator='[^}]*dissuasion_result!="false_positive"',
            ),
        ),
        ("quanzu-pipeline", "intake request rate", r"rate\(quanzu_intake_request_seconds_count"),
        ("quanzu-pipeline", "dispatch request rate", r"rate\(quanzu_dispatch_request_seconds_count"),
        ("quanzu-pipeline", "feedback request rate", r"rate\(quanzu_feedback_request_seconds_count"),
        (
            "quanzu-pipeline",
            "request latency",
            r"histogram_quantile\(0\.9, sum by \(le\) \(rate\(quanzu_\w+_request_seconds_bucket",
        ),
        ("quanzu-pipeline", "consumer lag", r"sum by \(topic, group\) \(quanzu_consumer_lag\)"),
        ("quanzu-pipeline", "outbox backlog", r"max by \(service\) \(quanzu_outbox_pending\)"),
        ("quanzu-pipeline", "DLQ growth", r"increase\(quanzu_dlq_messages_total\["),
        ("quanzu-pipeline", "SMS provider errors", r'quanzu_sms_sent_total\{result=~"retrying\|failed"\}'),
    ],
)
def test_each_board_answers_its_questions(uid: str, question: str, pattern: str) -> None:
    exprs = "\n".join(_squash(e) for e in _exprs(uid).split("\n"))
    assert re.search(pattern, exprs), f"{uid} does not show {question}"


def test_rates_are_ratios_of_counters_over_the_same_window() -> None:
    """A ratio's numerator and denominator must cover the same range, or the rate drifts with the window."""
    for uid in ("quanzu-outcomes",):
        for where, expr in dashboard_exprs(load_dashboards()[uid]):
            ranges = set(re.findall(r"\[([^\]]+)\]", expr))
            assert len(ranges) <= 1, f"{where}: {ranges}"
            if " / " in expr:
                assert metric_names(expr) <= {"quanzu_calls_total", "quanzu_visits_total"}, where
