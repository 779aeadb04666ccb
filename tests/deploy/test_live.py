"""Against a running deployment (tests/deploy/conftest.py): every metric the dashboards and alerts name is one the
services export, and a real Prometheus scraping them reads back the rates of cases driven end to end."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.devinfra import wait_for
from tests.deploy.artifacts import (
    QUANZU_JOBS,
    dashboard_exprs,
    exported_names,
    grafana_variables,
    load_dashboards,
    metric_names,
    recorded_names,
    rule_exprs,
    substitute,
)
from tests.deploy.conftest import PASSWORD, STATIONS, Deployment, Prometheus
from tests.factories import warning_record

#: (area, call result, then the visit's result if the call brings a visit at once) per warning.
CALLS = [
    ("370202-012", "connected", "dissuaded", None),
    ("370202-012", "connected", "not_dissuaded", "not_dissuaded"),  # not dissuaded by phone: a visit
    ("370202-012", "no_answer", None, None),
    ("370202-012", "busy", None, "dissuaded"),  # busy: the subject may be on the line with the fraudster
    ("370202-012", "powered_off", None, None),
    ("370202-013", "no_answer", None, None),
    ("370202-021", "connected", "dissuaded", None),
]


async def test_every_metric_in_the_dashboards_and_rules_is_exported_by_a_service(deployment: Deployment) -> None:
    exported: dict[str, set[str]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for job in QUANZU_JOBS:
            response = await client.get(f"{deployment.url(job)}/metrics")
            assert response.status_code == 200
            exported[job] = exported_names(response.text)
    for job in ("intake", "dispatch", "feedback"):
        assert {"quanzu_outbox_pending", "quanzu_consumer_lag", "quanzu_dlq_messages_total"} <= exported[job], job
    everything = set().union(*exported.values()) | {"up"} | recorded_names()
    used = [(where, name) for where, expr in rule_exprs() + _all_dashboard_exprs() for name in metric_names(expr)]
    assert used
    unknown = sorted({f"{name} (in {where})" for where, name in used if name not in everything})
    assert not unknown, "not exported by any service: " + "; ".join(unknown)


def _all_dashboard_exprs() -> list[tuple[str, str]]:
    return [pair for dashboard in load_dashboards().values() for pair in dashboard_exprs(dashboard)]


async def test_prometheus_scrapes_every_process(prometheus: Prometheus, deployment: Deployment) -> None:
    expected = {(job, url.removeprefix("http://")) for job in QUANZU_JOBS for url in deployment.urls[job]}

    async def all_up() -> bool:
        targets = (await prometheus.get("/api/v1/targets"))["activeTargets"]
        up = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"}
        return expected <= up

    await wait_for(all_up, timeout=30, interval=0.2, message="every target up")


@dataclass
class Driven:
    calls: Counter[tuple[str, str]]  # (area, call_result) -> finished call attempts
    visits: Counter[tuple[str, str]]  # (area, dissuasion_result) -> finished visits


async def _login(client: httpx.AsyncClient, dispatch: str, username: str) -> dict[str, str]:
    response = await client.post(
        f"{dispatch}/v1/auth/token", data={"grant_type": "password", "username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _one_task(
    client: httpx.AsyncClient, dispatch: str, headers: dict[str, str], warning_id: str, tier: str
) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        query = {"warning_id": warning_id, "tier": tier, "status": "open"}
        items = (await client.get(f"{dispatch}/v1/tasks", params=query, headers=headers)).json()["items"]
        return items[0] if len(items) == 1 else None

    task: dict[str, Any] = await wait_for(found, timeout=30, interval=0.1, message=f"an open {tier} task")
    return task


async def _record(client: httpx.AsyncClient, feedback: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    """POST /v1/outcomes, once feedback has learnt the task from dispatch.events (404 until then)."""

    async def post() -> httpx.Response | None:
        response = await client.post(f"{feedback}/v1/outcomes", json=body, headers=headers)
        return None if response.status_code == 404 else response

    response = await wait_for(post, timeout=30, interval=0.1, message="feedback to know the task")
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
async def driven(deployment: Deployment, prometheus: Prometheus) -> Driven:
    """The cases of CALLS, driven over HTTP as upstream systems, operators and officers do."""
    dispatch, feedback, intake = deployment.url("dispatch"), deployment.url("feedback"), deployment.url("intake")
    calls: Counter[tuple[str, str]] = Counter()
    visits: Counter[tuple[str, str]] = Counter()
    async with httpx.AsyncClient(timeout=10) as client:
        logins = {s: await _login(client, dispatch, user) for s, user in deployment.operators.items()}
        operators = {area: logins[station] for area, station in STATIONS.items()}
        officer = await _login(client, deployment.urls["dispatch"][1], "officer012")  # the other replica
        for area, call_result, dissuasion, visit_result in CALLS:
            subject = warning_record()["subject"] | {"residency": "unknown"}
            record = warning_record(area_code=area, subject=subject)
            posted = await client.post(
                f"{intake}/v1/warnings", json=record, headers={"Authorization": f"Bearer {deployment.source_key}"}
            )
            assert posted.status_code == 202, posted.text
            warning_id = posted.json()["id"]
            call = await _one_task(client, dispatch, operators[area], warning_id, "call")
            body = {"task_id": call["id"], "kind": "call", "call_result": call_result}
            if dissuasion:
                body["dissuasion_result"] = dissuasion
            await _record(client, feedback, operators[area], body)
            calls[area, call_result] += 1
            if visit_result:
                visit = await _one_task(client, dispatch, officer, warning_id, "visit")
                body = {"task_id": visit["id"], "kind": "visit", "dissuasion_result": visit_result}
                await _record(client, feedback, officer, body)
                visits[area, visit_result] += 1

    async def scraped() -> bool:
        seen_calls = await prometheus.query("sum(quanzu_calls_total)")
        seen_visits = await prometheus.query("sum(quanzu_visits_total)")
        return _scalar(seen_calls) == calls.total() and _scalar(seen_visits) == visits.total()

    await wait_for(scraped, timeout=30, interval=0.25, message="Prometheus to see every call and visit")
    return Driven(calls, visits)


def _scalar(data: dict[str, Any]) -> float | None:
    result = data["result"]
    return float(result[0]["value"][1]) if result else None


def _by_area(data: dict[str, Any]) -> dict[str, float]:
    return {r["metric"]["area"]: float(r["value"][1]) for r in data["result"]}


async def test_prometheus_reads_back_the_connected_and_dissuasion_rates(
    driven: Driven, prometheus: Prometheus, deployment: Deployment
) -> None:
    connected = await prometheus.query(
        '(sum by (area) (quanzu_calls_total{call_result="connected"}) or 0 * sum by (area) (quanzu_calls_total))'
        " / sum by (area) (quanzu_calls_total)"
    )
    areas = {area for area, _ in driven.calls}
    expected = {
        area: driven.calls[area, "connected"] / sum(n for (a, _), n in driven.calls.items() if a == area)
        for area in areas
    }
    assert _by_area(connected) == pytest.approx(expected)
    assert expected == {"370202-012": 0.4, "370202-013": 0.0, "370202-021": 1.0}

    dissuasion = await prometheus.query(
        'sum by (area) (quanzu_visits_total{dissuasion_result="dissuaded"})'
        ' / sum by (area) (quanzu_visits_total{dissuasion_result!="false_positive"})'
    )
    assert _by_area(dissuasion) == pytest.approx({"370202-012": 0.5})

    # The same figures as feedback's rates API computes them from its own records (contract §5).
    async with httpx.AsyncClient(timeout=10) as client:
        admin = await _login(client, deployment.url("dispatch"), "chief")
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        window = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=2)), "group_by": "area"}

        async def rates() -> dict[str, dict[str, Any]] | None:
            response = await client.get(f"{deployment.url('feedback')}/v1/stats/rates", params=window, headers=admin)
            assert response.status_code == 200, response.text
            groups = {g["key"]["area"]: g["counts"] for g in response.json()["groups"]}
            finished = {a: c["call_attempt_connected_rate"]["denominator"] for a, c in groups.items()}
            wanted = {a: sum(n for (b, _), n in driven.calls.items() if b == a) for a in areas}
            return groups if all(finished.get(a) == n for a, n in wanted.items()) else None

        counts = await wait_for(rates, timeout=30, interval=0.2, message="feedback's rates")
    for area in areas:
        attempts = counts[area]["call_attempt_connected_rate"]
        assert attempts["numerator"] / attempts["denominator"] == pytest.approx(expected[area]), area
    visits = counts["370202-012"]["dissuasion_rate"]
    assert visits["numerator"] / visits["denominator"] == pytest.approx(0.5)


async def test_every_dashboard_query_runs_on_the_live_data(driven: Driven, prometheus: Prometheus) -> None:
    for dashboard in load_dashboards().values():
        values = grafana_variables(dashboard) | {"window": "1h"}
        for where, expr in dashboard_exprs(dashboard):
            data = await prometheus.query(substitute(expr, values))
            assert data["resultType"] in ("vector", "scalar", "matrix"), where
    # The outcomes board's connected rate by area has one series per area that had calls, even with none connected.
    outcomes = load_dashboards()["quanzu-outcomes"]
    [(_, by_area)] = [
        (w, e) for w, e in dashboard_exprs(outcomes) if "Call connected rate by area (A)" in w and "or 0 *" in e
    ]
    data = await prometheus.query(substitute(by_area, grafana_variables(outcomes) | {"window": "1h"}))
    assert set(_by_area(data)) == {area for area, _ in driven.calls}
    assert all(0 <= v <= 1 or math.isnan(v) for v in _by_area(data).values())


async def test_every_rule_evaluates_cleanly_and_a_healthy_deployment_pages_no_one(
    driven: Driven, prometheus: Prometheus
) -> None:
    names = {name for name, _ in rule_exprs()}

    async def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in (await prometheus.get("/api/v1/rules"))["groups"] for r in g["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
        return rules if done and {r["name"] for r in rules} == names else None

    rules = await wait_for(evaluated, timeout=30, interval=0.2, message="every rule evaluated")
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken
    firing = [a for a in (await prometheus.get("/api/v1/alerts"))["alerts"] if a["state"] == "firing"]
    assert not firing, firing
