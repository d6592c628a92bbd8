"""Registering volunteers, their masked record, transfers and hours."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from ledger import Actor, Ledger, Origin, Role
from tests.api.conftest import ADMIN_TOKEN, District, bearer


def test_registration_answers_a_volunteer_number(district: District) -> None:
    response = district.post("/v1/volunteers", {
        "name": "陈建国", "home_unit_id": district.unit_a, "registered_on": "2017-02-01",
        "political_status": "party_member", "skills": ["急救"]}, token=district.recorder_a)
    assert response.status_code == 201
    body = response.json()
    assert body["volunteer_number"].startswith("MLV") and body["position"] > 0


def test_phone_and_id_number_are_never_shown_in_full(district: District) -> None:
    record = district.get(f"/v1/volunteers/{district.volunteer}").json()
    assert record["personal"]["phone"] == "138****1234"
    assert "199001" not in record["personal"]["id_number"]
    feed = district.get("/v1/events", token=district.auditor, limit=1000).json()
    assert "13805981234" not in str(district.get(f"/v1/volunteers/{district.volunteer}").json())
    assert feed["events"]


def test_hours_show_stars_categories_programs_and_years(district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T11:00:00+08:00", "v-1")
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["total_minutes"] == 120 and hours["total_hours"] == 2
    assert hours["star_level"] == 0
    assert hours["by_category"]["B"] == 120 and hours["by_program"]["B5"] == 120
    assert hours["by_year"] == {"2017": 120}


def test_a_back_dated_transfer_moves_members_credit(district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T11:00:00+08:00", "t-1")
    response = district.post(f"/v1/volunteers/{district.volunteer}/transfers",
                             {"to_unit_id": district.unit_b, "effective_on": "2017-03-01"},
                             token=district.recorder_a)
    assert response.status_code == 201
    body = district.get("/v1/rankings/units", token=None, kind="subdistrict", year=2017,
                        min_position=response.json()["position"]).json()
    minutes = {i["unit_id"]: i["total_minutes"] for i in body["items"]}
    assert minutes[district.unit_b] == 120 and minutes[district.unit_a] == 0


def test_hours_of_a_volunteer_another_process_registered_are_there_at_once(
        district: District) -> None:
    # Another process (a CLI import, another worker) writes; this app's views have not read it.
    services = district.client.app.state.services  # type: ignore[attr-defined]
    other = Ledger(services.settings)
    try:
        written, _ = other.register_volunteer(
            Origin(Actor(id="other-process", role=Role.admin), source="cli"), "郑晓岚",
            district.unit_a, date(2017, 2, 1))
    finally:
        other.close()
    hours = district.get(f"/v1/volunteers/{written.id}/hours")
    assert hours.status_code == 200, hours.text
    assert hours.json()["total_minutes"] == 0 and hours.json()["position"] >= written.position
    missing = district.get("/v1/volunteers/no-such-volunteer/hours")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("id_number", "rule"), [
    ("350402199013011234", "date of birth"),  # month 13
    ("350402199001011235", "check character must be 4"),
    ("350402901301123", "date of birth"),  # the 15-digit form: 1990-13-01
], ids=["month-13", "check-character", "fifteen-digits"])
def test_an_id_number_with_no_real_birth_date_or_a_wrong_check_character_is_a_422(
        district: District, id_number: str, rule: str) -> None:
    response = district.post("/v1/volunteers", {
        "name": "王五", "home_unit_id": district.unit_a, "registered_on": "2017-03-01",
        "id_number": id_number})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "id_number" and rule in error["detail"]


def test_a_valid_id_number_ending_in_x_is_accepted(district: District) -> None:
    response = district.post("/v1/volunteers", {
        "name": "赵六", "home_unit_id": district.unit_a, "registered_on": "2017-03-01",
        "id_number": "11010519491231002x"})
    assert response.status_code == 201, response.text


def patch(district: District, volunteer_id: str, body: Any) -> Any:
    return district.client.patch(f"/v1/volunteers/{volunteer_id}", json=body,
                                 headers=bearer(ADMIN_TOKEN))


def test_a_phone_given_as_null_is_cleared_and_one_left_out_is_kept(district: District) -> None:
    path = f"/v1/volunteers/{district.volunteer}"
    renamed = patch(district, district.volunteer, {"name": "林晓梅"})
    assert renamed.status_code == 200, renamed.text
    assert district.get(path).json()["personal"]["phone"] == "138****1234"
    cleared = patch(district, district.volunteer, {"phone": None})
    assert cleared.status_code == 200, cleared.text
    record = district.get(path).json()
    assert "phone" not in record["personal"] and "138" not in str(record["personal"])
    assert record["personal"]["id_number"] == "3****************4"  # only the phone went
    assert record["name"] == "林晓梅"
    history = district.get(f"{path}/history", token=district.auditor).json()["events"]
    assert history[-1]["type"] == "Volunteer.PersonalDataUpdated"
    assert history[-1]["data"]["changes"] == {"phone": None}
    hours = district.get(f"{path}/hours", min_position=cleared.json()["position"])
    assert hours.status_code == 200, hours.text
    again = patch(district, district.volunteer, {"phone": "0598-8221234"})
    assert again.status_code == 200, again.text
    # The hyphen stays where it is, not counted as a digit.
    assert district.get(path).json()["personal"]["phone"] == "059*-***1234"


def test_an_id_number_given_as_null_is_withdrawn(district: District) -> None:
    path = f"/v1/volunteers/{district.volunteer}"
    cleared = patch(district, district.volunteer, {"id_number": None})
    assert cleared.status_code == 200, cleared.text
    personal = district.get(path).json()["personal"]
    assert "id_number" not in personal and personal["phone"] == "138****1234"


@pytest.mark.parametrize("field", ["name", "gender", "birth_date"])
def test_a_field_other_than_the_phone_or_id_number_given_as_null_is_a_422_naming_it(
        district: District, field: str) -> None:
    before = district.get(f"/v1/volunteers/{district.volunteer}").json()
    refused = patch(district, district.volunteer, {field: None})
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert district.get(f"/v1/volunteers/{district.volunteer}").json() == before


def test_an_empty_patch_is_a_422_naming_the_body_and_writes_nothing(district: District) -> None:
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    head = ledger.head()
    refused = patch(district, district.volunteer, {})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["field"] == "body" and "no field to change" in error["detail"]
    assert ledger.head() == head


def test_a_recorder_sees_personal_data_of_its_own_units_volunteers_only(
        district: District) -> None:
    """bb14 F2: the clerk of any unit read every volunteer's gender, political status and
    masked phone and id number. A recorder of another unit still learns who the volunteer is
    (to record their service at its activities), not their personal data."""
    path = f"/v1/volunteers/{district.volunteer}"
    own = district.get(path, token=district.recorder_a).json()
    other = district.get(path, token=district.recorder_b).json()
    assert own["personal"]["phone"] == "138****1234"
    assert other["personal"] is None
    assert other["name"] == own["name"] and other["current_unit_id"] == district.unit_a
    for reader in (ADMIN_TOKEN, district.committee, district.auditor):
        assert district.get(path, token=reader).json()["personal"]["phone"] == "138****1234"
    # After a transfer to unit B, it is B's recorder that sees them.
    moved = district.post(f"{path}/transfers", {"to_unit_id": district.unit_b,
                                                "effective_on": "2017-03-01"})
    assert moved.status_code == 201, moved.text
    assert district.get(path, token=district.recorder_b).json()["personal"] is not None
    assert district.get(path, token=district.recorder_a).json()["personal"] is None


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "/v1/volunteers/{id}", {"name": "改名"}),
    ("POST", "/v1/volunteers/{id}/transfers", {"to_unit_id": "UNIT", "effective_on": "2017-06-01"}),
    ("POST", "/v1/volunteers/{id}/deregistration",
     {"deregistered_on": "2017-06-01", "reason": "搬走"}),
    ("POST", "/v1/volunteers/{id}/insurance",
     {"year": 2017, "policy_ref": "P-1", "insurer": "人保"}),
    ("POST", "/v1/service-sessions/{id}/corrections",
     {"started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T10:00:00+08:00",
      "reason": "改"}),
    ("POST", "/v1/service-sessions/{id}/void", {"reason": "重复"}),
    ("POST", "/v1/activities/{id}/cancellation", {"reason": "下雨"}),
    ("PATCH", "/v1/units/{id}", {"name": "改名"}),
    ("POST", "/v1/units/{id}/closure", {"closed_on": "2017-06-01", "reason": "合并"}),
    ("POST", "/v1/awards/{id}/revoke", {"reason": "撤销"}),
    ("POST", "/v1/tokens/{id}/revoke", {"reason": "撤销"}),
])
def test_an_unknown_id_in_the_path_of_a_write_is_a_404(district: District, method: str,
                                                      path: str, body: dict[str, Any]) -> None:
    # API.md: 404 for an unknown id in the path; a 422 names a field of the body (bb24 F1:
    # insurance answered 422 naming a `volunteer_id` the body does not have).
    body = {k: district.unit_b if v == "UNIT" else v for k, v in body.items()}
    response = district.client.request(method, path.format(id="no-such-id"), json=body,
                                       headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_volunteers_patch_honours_if_match_from_its_etag(district: District) -> None:
    # bb32 F3: a stale If-Match was ignored and the change stored over one the client never saw.
    path = f"/v1/volunteers/{district.volunteer}"
    first = district.get(path)
    tag = first.headers["etag"]
    assert tag == f'"{first.json()["version"]}"'
    held = district.client.get(path, headers={**bearer(ADMIN_TOKEN), "If-None-Match": tag})
    assert held.status_code == 304
    changed = district.client.patch(path, json={"name": "林晓梅"},
                                    headers={**bearer(ADMIN_TOKEN), "If-Match": tag})
    assert changed.status_code == 200, changed.text
    stale = district.client.patch(path, json={"name": "林小梅"},
                                  headers={**bearer(ADMIN_TOKEN), "If-Match": tag})
    assert stale.status_code == 412, stale.text
    assert stale.json()["errors"][0]["field"] == "If-Match"
    assert district.get(path).json()["name"] == "林晓梅"
    # Without If-Match a change goes through, sessions recorded meanwhile or not.
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "etag-1")
    assert district.client.patch(path, json={"name": "林小梅"},
                                 headers=bearer(ADMIN_TOKEN)).status_code == 200
