"""Per-area policies through `quanzu policy` and the admin REST: validated, versioned, resolved per risk."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from shared.devinfra import Broker
from tests.conftest import AppClient, Member
from tests.integration.test_cli import quanzu


async def test_policy_set_versions_and_show_resolves_per_risk(
    dispatch: AppClient, admin_member: Member, demo_areas: set[str]
) -> None:
    area = "370202-013"
    first = await dispatch.put(
        f"/v1/admin/policies/{area}",
        json={"visit_arrive_within_s": 7200, "by_risk": {"critical": {"visit_arrive_within_s": 1800}}},
        headers=admin_member.headers,
    )
    assert first.status_code == 200, first.text
    again = await dispatch.put(
        f"/v1/admin/policies/{area}",
        json={"visit_arrive_within_s": 7200, "by_risk": {"critical": {"visit_arrive_within_s": 1800}}},
        headers=admin_member.headers,
    )
    assert again.json() == {**first.json(), "changed": False}
    changed = await dispatch.put(
        f"/v1/admin/policies/{area}", json={"visit_arrive_within_s": 5400}, headers=admin_member.headers
    )
    assert changed.json()["version"] == first.json()["version"] + 1

    shown = (await dispatch.get(f"/v1/admin/policies/{area}", headers=admin_member.headers)).json()
    assert shown["area"]["version"] == changed.json()["version"]
    assert shown["effective"]["critical"]["visit_arrive_within_s"] == 5400  # a new file replaces the old whole
    assert shown["effective"]["high"]["visit_arrive_within_s"] == 5400
    assert shown["effective"]["high"]["call_attempts"] == 3  # inherited


async def test_an_absurd_policy_is_refused_naming_the_field(
    dispatch: AppClient, admin_member: Member, demo_areas: set[str]
) -> None:
    for body, field in (
        ({"ack_within_s": -1}, "ack_within_s"),
        ({"visit_arrive_within_s": 10**9}, "visit_arrive_within_s"),
        ({"sms_only_risk": ["critical"]}, "sms_only_risk"),
        ({"nonsense": True}, "nonsense"),
    ):
        response = await dispatch.put("/v1/admin/policies/370202-013", json=body, headers=admin_member.headers)
        assert response.status_code == 422, response.text
        assert field in json.dumps(response.json()["errors"]), response.text
    unknown = await dispatch.put("/v1/admin/policies/999999-999", json={}, headers=admin_member.headers)
    assert unknown.status_code == 404


async def test_the_policy_command_sets_and_shows(database_url: str, broker: Broker, tmp_path: Path) -> None:
    file = tmp_path / "policy.json"
    file.write_text(json.dumps({"visit_for_residency": ["resident", "worker", "transit"], "ack_within_s": 90}))
    code, out, err = await quanzu(database_url, broker, "policy", "set", "370202-021", str(file))
    assert code == 0, err
    assert out.startswith("policy of 370202-021: version ")
    code, out, _ = await quanzu(database_url, broker, "policy", "show", "370202-021")
    shown = json.loads(out)
    assert shown["effective"]["medium"]["visit_for_residency"] == ["resident", "worker", "transit"]
    assert shown["effective"]["medium"]["ack_within_s"] == 90

    bad = tmp_path / "bad.json"
    bad.write_text('{"call_attempts": 0}')
    code, _, err = await quanzu(database_url, broker, "policy", "set", "370202-021", str(bad))
    assert code == 1
    assert "call_attempts" in err
    bad.write_text("{not json")
    code, _, err = await quanzu(database_url, broker, "policy", "set", "default", str(bad))
    assert (code, "not valid JSON" in err) == (1, True)
    code, _, err = await quanzu(database_url, broker, "policy", "show", f"nowhere-{uuid.uuid4().hex[:4]}")
    assert code == 1
    assert "no area" in err
