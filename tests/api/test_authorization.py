"""Every route called with every role, no token, a revoked token and another unit's recorder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, District, bearer

ALL = {"admin", "recorder_a", "recorder_b", "committee", "auditor"}
PUBLIC = ALL | {"none"}
HOURS = {"admin", "recorder_a", "recorder_b", "committee", "auditor"}
ELIGIBILITY = {"admin", "committee", "auditor"}
AUDIT = {"admin", "auditor"}
UNIT_A = {"admin", "recorder_a"}
# The volunteers of unit A: everyone who reads hours but another unit's recorder.
VOLUNTEERS_OF_A = {"admin", "recorder_a", "committee", "auditor"}
ADMIN = {"admin"}
COMMITTEE = {"admin", "committee"}

S0, S1 = "2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00"


def _session(d: District) -> str:
    response = d.session(S0, S1, "authz-session")
    assert response.status_code in (200, 201), response.text
    sid: str = response.json()["id"]
    return sid


def _rules(d: District) -> None:
    response = d.client.put("/v1/award-rules/most_beautiful_volunteer/2017",
                            json={"min_hours_in_year": 1}, headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200, response.text


def _with_rules(d: District, path: str, body: Any) -> tuple[str, Any]:
    _rules(d)
    return path, body


def _award(d: District) -> str:
    _rules(d)
    response = d.post("/v1/awards", {"award": "most_beautiful_volunteer", "year": 2017,
                                     "recipient_id": d.volunteer, "decision_ref": "x"})
    assert response.status_code in (201, 409), response.text
    return f"award-2017-most_beautiful_volunteer-{d.volunteer}"


Route = tuple[str, str, Callable[[District], tuple[str, Any]], set[str]]
ROUTES: list[Route] = [
    ("GET", "healthz", lambda d: ("/healthz", None), PUBLIC),
    ("GET", "openapi", lambda d: ("/openapi.json", None), PUBLIC),
    ("GET", "docs", lambda d: ("/docs", None), PUBLIC),
    ("GET", "redoc", lambda d: ("/redoc", None), PUBLIC),
    ("GET", "programs", lambda d: ("/v1/programs", None), PUBLIC),
    ("GET", "rankings", lambda d: ("/v1/rankings/units?kind=subdistrict&year=2017", None), PUBLIC),
    ("GET", "bulletin", lambda d: ("/v1/bulletins/2017/1", None), PUBLIC),
    ("GET", "checkpoint", lambda d: ("/v1/audit/checkpoint", None), PUBLIC),
    ("GET", "unit", lambda d: (f"/v1/units/{d.unit_a}", None), PUBLIC),
    ("GET", "activity", lambda d: (f"/v1/activities/{d.activity}", None), PUBLIC),
    ("GET", "hours", lambda d: (f"/v1/volunteers/{d.volunteer}/hours", None), HOURS),
    ("GET", "volunteer", lambda d: (f"/v1/volunteers/{d.volunteer}", None), HOURS),
    # A recorder lists its own unit's volunteers (by default); another unit's is a 403.
    ("GET", "volunteers", lambda d: ("/v1/volunteers", None), HOURS),
    ("GET", "volunteers of a unit", lambda d: (f"/v1/volunteers?current_unit_id={d.unit_a}", None),
     VOLUNTEERS_OF_A),
    ("GET", "units", lambda d: ("/v1/units?kind=subdistrict", None), PUBLIC),
    # Activities are public facts, as their GET is (bb36 F6); awards as GET one of them is.
    ("GET", "activities", lambda d: (f"/v1/activities?organiser_unit_id={d.unit_a}", None),
     PUBLIC),
    ("GET", "award", lambda d: (f"/v1/awards/{_award(d)}", None), ELIGIBILITY),
    ("GET", "awards", lambda d: (_award(d) and "/v1/awards?year=2017", None), ELIGIBILITY),
    ("GET", "session", lambda d: (f"/v1/service-sessions/{_session(d)}", None), HOURS),
    ("GET", "eligibility", lambda d: _with_rules(d, "/v1/eligibility/most_beautiful_volunteer/2017",
                                                  None), ELIGIBILITY),
    ("GET", "history", lambda d: (f"/v1/volunteers/{d.volunteer}/history", None), AUDIT),
    ("GET", "events", lambda d: ("/v1/events?after=0&limit=5", None), AUDIT),
    ("GET", "inclusion", lambda d: ("/v1/audit/inclusion?position=1&tree_size=2", None), AUDIT),
    ("GET", "consistency", lambda d: ("/v1/audit/consistency?first=1&second=2", None), AUDIT),
    ("POST", "unit", lambda d: ("/v1/units", {"name": "新社区", "kind": "community",
                                              "parent_id": d.unit_a}), ADMIN),
    ("POST", "volunteer", lambda d: ("/v1/volunteers", {
        "name": "王芳", "home_unit_id": d.unit_a, "registered_on": "2017-02-01"}), UNIT_A),
    ("POST", "transfer", lambda d: (f"/v1/volunteers/{d.volunteer}/transfers", {
        "to_unit_id": d.unit_b, "effective_on": "2017-06-01"}), UNIT_A),
    ("POST", "activity", lambda d: ("/v1/activities", {
        "program_code": "C1", "organiser_unit_id": d.unit_a, "title": "植树",
        "starts_at": "2017-03-12T08:00:00+08:00", "ends_at": "2017-03-12T12:00:00+08:00"}),
     UNIT_A),
    ("POST", "session", lambda d: ("/v1/service-sessions", {
        "volunteer_id": d.volunteer, "activity_id": d.activity, "started_at": S0,
        "ended_at": S1, "source_record_id": "authz-1"}), UNIT_A),
    ("POST", "correction", lambda d: (f"/v1/service-sessions/{_session(d)}/corrections", {
        "started_at": S0, "ended_at": "2017-03-05T09:30:00+08:00", "reason": "typo"}), UNIT_A),
    ("POST", "void", lambda d: (f"/v1/service-sessions/{_session(d)}/void", {"reason": "dup"}),
     UNIT_A),
    ("POST", "training", lambda d: ("/v1/training-completions", {
        "volunteer_id": d.volunteer, "level": "district", "form": "online",
        "audience": "general", "title": "培训", "completed_on": "2017-04-01", "hours": 2}),
     UNIT_A),
    ("PUT", "rules", lambda d: ("/v1/award-rules/most_beautiful_volunteer/2017",
                                {"min_hours_in_year": 10}), ADMIN),
    ("POST", "award", lambda d: _with_rules(d, "/v1/awards", {
        "award": "most_beautiful_volunteer", "year": 2017, "recipient_id": d.volunteer,
        "decision_ref": "梅文明〔2017〕12号"}), COMMITTEE),
    ("POST", "revoke", lambda d: (f"/v1/awards/{_award(d)}/revoke", {"reason": "x"}), COMMITTEE),
    ("POST", "token", lambda d: ("/v1/tokens", {"role": "auditor"}), ADMIN),
    ("GET", "tokens", lambda d: ("/v1/tokens", None), AUDIT),
]


def _token(d: District, who: str) -> str | None:
    return {"admin": ADMIN_TOKEN, "recorder_a": d.recorder_a, "recorder_b": d.recorder_b,
            "committee": d.committee, "auditor": d.auditor, "revoked": d.revoked,
            "none": None}[who]


@pytest.mark.parametrize("method,name,build,allowed", ROUTES,
                         ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_each_role_gets_exactly_what_api_md_allows(
    district: District, method: str, name: str, build: Callable[[District], tuple[str, Any]],
    allowed: set[str],
) -> None:
    for who in ["none", "revoked", "recorder_b", "committee", "auditor", "recorder_a", "admin"]:
        path, body = build(district)
        response = district.client.request(method, path, json=body,
                                           headers=bearer(_token(district, who)))
        code = response.status_code
        assert code < 500, (who, response.text)
        if who == "revoked":
            assert code == 401, (who, code, response.text)
        elif who in allowed:
            assert code not in (401, 403), (who, code, response.text)
        elif who == "none":
            assert code == 401, (who, code, response.text)
        else:
            assert code == 403, (who, code, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")


def test_a_malformed_authorization_header_is_a_401(district: District) -> None:
    response = district.client.get("/v1/rankings/units?kind=town",
                                   headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
