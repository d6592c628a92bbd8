"""The ledger's own checks name every bad field of a body in one 422, in the body's field
order, and store nothing (bb29 F5: only the first was named, and each fix revealed the next)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, T0, District, bearer
from tests.factories import resident_id

HIDDEN = "\u202e"  # a right-to-left override: refused by the ledger, not by the schema
FAR = "2099-01-01"  # a day in the future
SEEN_AT = ("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00")


def head(district: District) -> int:
    position: int = district.client.app.state.services.ledger.head()  # type: ignore[attr-defined]
    return position


def refused(district: District, response: Any, before: int) -> list[str]:
    """The fields a 422 names, once it is known that nothing was stored."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert head(district) == before
    fields = [e["field"] for e in response.json()["errors"]]
    kind = "invalid-fields" if len(fields) > 1 else "invalid-field"
    assert response.json()["type"].endswith("/" + kind), response.json()["type"]
    return fields


def test_a_registration_names_its_hidden_name_its_id_number_and_its_skill_at_once(
        district: District) -> None:
    before = head(district)
    response = district.post("/v1/volunteers", {
        "name": f"林{HIDDEN}小梅", "home_unit_id": district.unit_a, "registered_on": "2017-01-10",
        "birth_date": "1990-01-01", "id_number": resident_id("19850615"),
        "skills": ["急救", f"翻{HIDDEN}译"]})
    assert refused(district, response, before) == ["name", "id_number", "skills.1"]
    errors = {e["field"]: e["detail"] for e in response.json()["errors"]}
    assert errors["id_number"] == ("holds the date of birth 1985-06-15, but birth_date is "
                                   "1990-01-01")
    assert response.json()["detail"].startswith("name must not hold invisible")


def test_a_registration_dated_ahead_is_named_beside_a_birth_date_that_is_too(
        district: District) -> None:
    before = head(district)
    response = district.post("/v1/volunteers", {
        "name": "林小梅", "home_unit_id": district.unit_a, "registered_on": FAR,
        "birth_date": "2098-01-01", "id_number": resident_id("19850615")})
    # Each field's own rule is named; the birth dates are not compared with a day refused.
    assert refused(district, response, before) == ["registered_on", "birth_date"]


def test_a_volunteers_patch_names_its_own_fields_and_those_the_record_refuses_at_once(
        district: District) -> None:
    before = head(district)
    response = district.client.patch(f"/v1/volunteers/{district.volunteer}", json={
        "name": f"林{HIDDEN}小梅", "gender": None, "birth_date": "1991-01-01"},
        headers=bearer(ADMIN_TOKEN))
    # The id number on record holds 1990-01-01: the birth date given disagrees with it.
    assert refused(district, response, before) == ["name", "birth_date", "gender"]


def test_a_unit_closure_names_its_day_and_its_reason_at_once(district: District) -> None:
    before = head(district)
    response = district.post(f"/v1/units/{district.unit_b}/closure",
                             {"closed_on": FAR, "reason": f"撤{HIDDEN}并"})
    assert refused(district, response, before) == ["closed_on", "reason"]


def test_an_activity_names_its_title_times_and_place_at_once(district: District) -> None:
    before = head(district)
    response = district.post("/v1/activities", {
        "program_code": "B5", "organiser_unit_id": district.unit_a, "title": f"学{HIDDEN}雷锋",
        "starts_at": "2017-03-05T08:00:00+15:00", "ends_at": "3000-01-01T00:00:00+08:00",
        "place": f"广场{HIDDEN}"})
    assert refused(district, response, before) == ["title", "starts_at", "ends_at", "place"]


def test_a_session_names_its_times_and_its_source_record_id_at_once(district: District) -> None:
    before = head(district)
    response = district.session("2017-03-05T09:00:00+15:00", "2099-03-05T10:00:00+08:00",
                                f"src{HIDDEN}-1")
    assert refused(district, response, before) == ["started_at", "ended_at", "source_record_id"]


def test_a_correction_names_its_times_and_its_reason_at_once(district: District) -> None:
    session = district.session(*SEEN_AT, "c-1").json()["id"]
    before = head(district)
    response = district.post(f"/v1/service-sessions/{session}/corrections", {
        "started_at": "1899-12-31T09:00:00+08:00", "ended_at": "2099-01-01T10:00:00+08:00",
        "reason": f"记{HIDDEN}错"})
    assert refused(district, response, before) == ["started_at", "ended_at", "reason"]


def test_a_batch_item_names_each_of_its_bad_fields_under_its_index(district: District) -> None:
    good = {"volunteer_id": district.volunteer, "activity_id": district.activity,
            "started_at": SEEN_AT[0], "ended_at": SEEN_AT[1], "source_record_id": "b-1"}
    bad = {**good, "started_at": "2017-03-05T11:00:00+15:00", "source_record_id": f"b{HIDDEN}2"}
    response = district.post("/v1/service-sessions/batch", {"records": [good, bad]})
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert (first["status"], second["status"]) == ("accepted", "rejected")
    error = second["error"]
    assert error["status"] == 422 and error["type"].endswith("/invalid-fields")
    assert [e["field"] for e in error["errors"]] == ["records.1.started_at",
                                                     "records.1.source_record_id"]
    assert error["field"] == "started_at"  # the first, as a one-field rejection names it
    alone = district.post("/v1/service-sessions", bad)
    assert [e["field"] for e in alone.json()["errors"]] == ["started_at", "source_record_id"]


def test_a_training_names_its_title_day_and_hours_at_once(district: District) -> None:
    before = head(district)
    response = district.post("/v1/training-completions", {
        "volunteer_id": district.volunteer, "level": "district", "form": "centralised",
        "audience": "core", "title": f"培{HIDDEN}训", "completed_on": FAR, "hours": 0.001})
    assert refused(district, response, before) == ["title", "completed_on", "hours"]


def test_an_insurance_names_its_policy_and_its_insurer_at_once(district: District) -> None:
    before = head(district)
    response = district.post(f"/v1/volunteers/{district.volunteer}/insurance", {
        "year": 2017, "policy_ref": f"P{HIDDEN}1", "insurer": f"人{HIDDEN}保"})
    assert refused(district, response, before) == ["policy_ref", "insurer"]


def test_a_deregistration_names_its_day_and_its_reason_at_once(district: District) -> None:
    before = head(district)
    response = district.post(f"/v1/volunteers/{district.volunteer}/deregistration",
                             {"deregistered_on": FAR, "reason": f"搬{HIDDEN}家"})
    assert refused(district, response, before) == ["deregistered_on", "reason"]


def test_a_grant_names_its_year_and_its_decision_at_once(district: District) -> None:
    before = head(district)
    response = district.post("/v1/awards", {
        "award": "most_beautiful_volunteer", "year": 2099, "recipient_id": district.volunteer,
        "decision_ref": f"梅{HIDDEN}文"}, token=district.committee)
    assert refused(district, response, before) == ["year", "decision_ref"]


def test_a_token_names_its_unit_and_its_label_at_once(district: District) -> None:
    before = head(district)
    response = district.post("/v1/tokens", {"role": "recorder", "label": f"a{HIDDEN}b"})
    assert refused(district, response, before) == ["unit_id", "label"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/volunteers", {"name": f"林{HIDDEN}小梅", "registered_on": "2017-01-10"}, "name"),
    ("/v1/units", {"name": f"列{HIDDEN}东", "kind": "town"}, "name"),
    ("/v1/activities", {"program_code": "B5", "title": "学雷锋", "starts_at": T0,
                        "ends_at": "2017-03-05T18:00:00+15:00"}, "ends_at"),
    ("/v1/service-sessions", {"started_at": SEEN_AT[0], "ended_at": "2099-01-01T00:00:00Z",
                              "source_record_id": "one-1"}, "ended_at"),
], ids=["volunteer", "unit", "activity", "session"])
def test_one_bad_field_is_named_alone(district: District, path: str, body: dict[str, Any],
                                      field: str) -> None:
    refers = {"/v1/volunteers": {"home_unit_id": district.unit_a},
              "/v1/activities": {"organiser_unit_id": district.unit_a},
              "/v1/service-sessions": {"volunteer_id": district.volunteer,
                                       "activity_id": district.activity}}
    before = head(district)
    response = district.post(path, {**refers.get(path, {}), **body})
    assert refused(district, response, before) == [field]
    [error] = response.json()["errors"]
    assert not error["detail"].startswith(field)  # the rule, beside the field's name


def test_a_dependent_check_waits_for_the_body_to_pass_its_own(district: District) -> None:
    """An unknown unit is looked up only once the body is right on its own."""
    before = head(district)
    response = district.post("/v1/volunteers", {
        "name": f"林{HIDDEN}小梅", "home_unit_id": "unit-nothing", "registered_on": FAR})
    assert refused(district, response, before) == ["name", "registered_on"]
    response = district.post("/v1/volunteers", {
        "name": "林小梅", "home_unit_id": "unit-nothing", "registered_on": "2017-01-10"})
    assert response.status_code == 422
    assert response.json()["type"].endswith("/unknown-reference")


def test_a_flood_of_refused_criteria_answers_the_first_hundred(district: District) -> None:
    response = district.client.put(
        "/v1/award-rules/most_beautiful_volunteer/2017", json={f"k{i}": 1 for i in range(150)},
        headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 422, response.text
    found = response.json()
    assert len(found["errors"]) == 100 and "150 errors" in found["detail"]
    assert found["errors"][0]["field"] == "k0" and found["errors"][-1]["field"] == "k99"

