"""Bad input gets a problem+json answer naming the field and the rule, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import District


def test_a_missing_field_is_named(district: District) -> None:
    response = district.post("/v1/volunteers", {"name": "x", "home_unit_id": district.unit_a})
    assert response.status_code == 422
    body = response.json()
    assert body["status"] == 422 and body["type"] and body["title"]
    assert [e["field"] for e in body["errors"]] == ["registered_on"]


def test_an_unknown_field_is_refused_rather_than_ignored(district: District) -> None:
    response = district.post("/v1/units", {"name": "x", "kind": "town", "colour": "red"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "colour"


def test_a_bad_program_code_is_named(district: District) -> None:
    response = district.post("/v1/activities", {
        "program_code": "D9", "organiser_unit_id": district.unit_a, "title": "x",
        "starts_at": "2017-03-05T08:00:00+08:00", "ends_at": "2017-03-05T09:00:00+08:00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "program_code"


def test_an_unknown_unit_in_the_body_is_a_422_naming_it(district: District) -> None:
    response = district.post("/v1/volunteers", {"name": "x", "home_unit_id": "unit-nope",
                                                "registered_on": "2017-01-01"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "home_unit_id"


def test_an_unknown_id_in_the_path_is_a_404(district: District) -> None:
    assert district.get("/v1/volunteers/vol-nobody/hours").status_code == 404
    assert district.post("/v1/volunteers/vol-nobody/transfers", {
        "to_unit_id": district.unit_b, "effective_on": "2017-06-01"}).status_code == 404


@pytest.mark.parametrize("path", [
    "/v1/volunteers/%00/hours", "/v1/volunteers/a%00b/hours", "/v1/volunteers/a%00b/history",
    "/v1/eligibility/most_beautiful_volunteer/2017/%00", "/v1/units/%00"])
def test_a_nul_in_the_path_names_nothing_on_either_store(district: District, path: str) -> None:
    """PostgreSQL refuses to compare text holding a NUL; no stored id holds one anyway."""
    response = district.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_nul_in_a_query_parameter_or_a_body_id_is_a_422_naming_it(district: District) -> None:
    response = district.get("/v1/rankings/units", kind="town", basis="members\x00")
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["basis"]
    response = district.get("/v1/events", cursor="a\x00b", token=district.auditor)
    assert response.status_code == 422, response.text
    response = district.post(f"/v1/volunteers/{district.volunteer}/transfers",
                             {"to_unit_id": "unit-\x00", "effective_on": "2017-06-01"})
    assert response.status_code == 422, response.text
    response = district.post("/v1/service-sessions", {
        "volunteer_id": "vol-\x00", "activity_id": district.activity,
        "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T10:00:00+08:00",
        "source_record_id": "nul-1"})
    assert response.status_code == 422, response.text
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").status_code == 200


def test_a_body_that_is_not_json_is_a_422(district: District) -> None:
    response = district.client.post(
        "/v1/units", content=b"{not json",
        headers={"Authorization": "Bearer test-admin-token-0123456789",
                 "Content-Type": "application/json"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body"]
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_body_that_names_a_member_twice_is_a_422_and_records_nothing(
        district: District) -> None:
    """bb9 F4: the last of two `volunteer_id`s was recorded; a gateway reading the first
    would have seen another record. Every route that reads a body holds to it."""
    headers = {"Authorization": "Bearer test-admin-token-0123456789",
               "Content-Type": "application/json"}
    body = ('{"volunteer_id": "vol-nope", "activity_id": "' + district.activity + '", '
            '"started_at": "2017-03-05T09:00:00+08:00", '
            '"ended_at": "2017-03-05T10:00:00+08:00", '
            '"source_record_id": "twice-1", "volunteer_id": "' + district.volunteer + '"}')
    response = district.client.post("/v1/service-sessions", content=body.encode(),
                                    headers=headers)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["body"]
    assert '"volunteer_id" appears twice' in response.json()["detail"]
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["total_minutes"] == 0
    nested = district.client.put(
        "/v1/award-rules/most_beautiful_volunteer/2017", headers=headers,
        content=b'{"min_hours_in_year": 1, "min_hours_in_year": 2}')
    assert nested.status_code == 422 and "appears twice" in nested.json()["detail"]
    once = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "twice-1")
    assert once.status_code == 201, once.text  # the same record, each name once


def test_a_session_longer_than_24_hours_is_a_422(district: District) -> None:
    long_activity = district.post("/v1/activities", {
        "program_code": "B4", "organiser_unit_id": district.unit_a, "title": "马拉松",
        "starts_at": "2017-04-01T00:00:00+08:00", "ends_at": "2017-04-03T00:00:00+08:00"})
    activity = long_activity.json()["id"]
    exactly = district.session("2017-04-01T00:00:00+08:00", "2017-04-02T00:00:00+08:00", "d-1",
                               activity=activity)
    longer = district.session("2017-04-02T00:00:00+08:00", "2017-04-03T00:00:01+08:00", "d-2",
                              activity=activity)
    assert exactly.status_code == 201
    assert longer.status_code == 422 and longer.json()["errors"][0]["field"] == "ended_at"


def test_a_session_in_the_future_is_a_422(district: District) -> None:
    future = district.post("/v1/activities", {
        "program_code": "B4", "organiser_unit_id": district.unit_a, "title": "明年",
        "starts_at": "2099-01-01T08:00:00+08:00", "ends_at": "2099-01-01T18:00:00+08:00"})
    response = district.session("2099-01-01T09:00:00+08:00", "2099-01-01T10:00:00+08:00", "f-1",
                                activity=future.json()["id"])
    assert response.status_code == 422


def test_a_recorder_of_another_unit_is_a_403(district: District) -> None:
    response = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "o-1",
                                token=district.recorder_b)
    assert response.status_code == 403


@pytest.mark.parametrize(("field", "value"), [
    ("started_at", 1504483200),  # seconds since 1970: not RFC 3339
    ("started_at", "1504483200"),
    ("started_at", "2017-03-05"),  # a date is not a time
    ("started_at", "2017-03-05T09:00:00"),  # no offset
    ("ended_at", "2017-03-05 10:00:00+08:00"),
])
def test_a_time_that_is_not_rfc_3339_text_is_a_422_naming_it(district: District, field: str,
                                                             value: Any) -> None:
    body = {"volunteer_id": district.volunteer, "activity_id": district.activity,
            "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T10:00:00+08:00",
            "source_record_id": "fmt-1", field: value}
    response = district.post("/v1/service-sessions", body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert "RFC 3339" in response.json()["errors"][0]["detail"]


@pytest.mark.parametrize("value", [1485907200, "2017-02-01T00:00:00+08:00", "20170201"])
def test_a_date_that_is_not_yyyy_mm_dd_text_is_a_422_naming_it(district: District,
                                                               value: Any) -> None:
    response = district.post("/v1/volunteers", {
        "name": "王芳", "home_unit_id": district.unit_a, "registered_on": value})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "registered_on"


def test_a_whole_number_parameter_is_digits_only(district: District) -> None:
    """bb10 F6: "1.0" and " 1" were read as 1. Every whole-number parameter in a path or a
    query is digits, or a 422 naming it; the schema still says integer."""
    for path, params, field in (
            ("/v1/audit/consistency", {"first": "1.0", "second": "2"}, "first"),
            ("/v1/audit/inclusion", {"position": " 1"}, "position"),
            ("/v1/events", {"after": "+0"}, "after"),
            ("/v1/rankings/units", {"kind": "town", "year": "2017.0"}, "year"),
            ("/v1/bulletins/2017/1", {"limit": "1e1"}, "limit"),
            ("/v1/bulletins/2017.0/1", {}, "year"),
            (f"/v1/volunteers/{district.volunteer}/hours", {"min_position": "0x1"},
             "min_position"),
            ):
        response = district.get(path, token=district.auditor, **params)
        assert response.status_code == 422, (path, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], path
        assert "whole number written in digits" in response.json()["errors"][0]["detail"]
    # bb15 F8: -1 is a whole number, below the bound; bb34 F6: the bound is the route's own
    # (a position is zero or more, a limit one or more), and the answer names it.
    for path, params, field, bound in (
            (f"/v1/volunteers/{district.volunteer}/hours", {"min_position": "-1"},
             "min_position", "greater than or equal to 0"),
            ("/v1/bulletins/2017/1", {"limit": "-1"}, "limit", "greater than or equal to 1"),
            ("/v1/events", {"limit": "-5"}, "limit", "greater than or equal to 1")):
        response = district.get(path, token=district.auditor, **params)
        assert response.status_code == 422, (path, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], path
        assert bound in response.json()["errors"][0]["detail"], response.text
    assert district.get("/v1/rankings/units", kind="town", year="2017").status_code == 200
    parameters = district.client.get("/openapi.json").json()["paths"][
        "/v1/audit/consistency"]["get"]["parameters"]
    assert {p["name"]: p["schema"]["type"] for p in parameters} == {
        "first": "integer", "second": "integer"}


def test_every_problem_type_is_named_and_listed_in_the_openapi_document(
        district: District) -> None:
    """bb15 F5: an unknown path was `problems/404` and an unknown id `problems/not-found`; a
    missing token `problems/401`; and no list of types existed. Every type is now a name,
    and the document lists them all."""
    import pathlib
    import re

    from api.errors import TYPE_BASE, problem_kinds

    answers = [
        district.client.get("/v1/nothing"),  # no route
        district.get("/v1/units/nope"),  # an unknown id
        district.get(f"/v1/volunteers/{district.volunteer}/hours", token=None),
        district.get("/v1/events", token=district.recorder_a),
        district.client.delete("/healthz"),
        district.post("/v1/units", {"name": ""}),
    ]
    kinds = [a.json()["type"].removeprefix(TYPE_BASE) for a in answers]
    assert kinds == ["not-found", "not-found", "unauthorized", "forbidden",
                     "method-not-allowed", "validation-error"]
    listed = problem_kinds()
    assert set(kinds) <= set(listed)
    described = district.client.get("/openapi.json").json()[
        "components"]["schemas"]["Problem"]["properties"]["type"]["description"]
    assert all(kind in described for kind in listed)
    # Every kind the code names is listed.
    named = set()
    for path in (pathlib.Path(__file__).resolve().parents[2] / "api").rglob("*.py"):
        named |= set(re.findall(r'kind="([a-z-]+)"', path.read_text()))
    assert named and named <= set(listed)


def test_a_time_finer_than_a_microsecond_is_a_422_naming_it(district: District) -> None:
    """bb16 F2: digits past the microsecond were dropped in silence, so 9 min 59.9999991 s
    counted 10 minutes and 24 h + 100 ns passed as 24 h."""
    body = {"volunteer_id": district.volunteer, "activity_id": district.activity,
            "started_at": "2017-03-05T09:00:00.0000009+08:00",
            "ended_at": "2017-03-05T09:10:00+08:00", "source_record_id": "fine-1"}
    response = district.post("/v1/service-sessions", body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{
        "field": "started_at", "detail": "must not be more precise than a microsecond (at "
        "most 6 digits after the seconds)"}]
    history = district.get(f"/v1/volunteers/{district.volunteer}/history",
                           token=district.auditor, as_of="2017-03-05T09:00:00.1234567Z")
    assert history.status_code == 422 and history.json()["errors"][0]["field"] == "as_of"
    body.update(started_at="2017-03-05T09:00:00.000001+08:00", source_record_id="fine-2")
    accepted = district.post("/v1/service-sessions", body)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["minutes"] == 9


def test_a_kek_lost_while_serving_is_a_503_naming_it(district: District,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """bb38 F5: with the KEK file gone before a running server first needed it, writes of a
    phone or an id number answered a bare 500; the clear message was in the log alone."""
    from ledger.keks import KekMissing

    services = district.client.app.state.services  # type: ignore[attr-defined]
    head = services.ledger.head()

    def missing() -> str:
        raise KekMissing("the KEK file /srv/ledger.kek does not hold KEK 968d3040bcb7eafd")

    monkeypatch.setattr(services.ledger.recorder.ring, "current", missing)
    response = district.post("/v1/volunteers", {
        "name": "雷锋", "home_unit_id": district.unit_a, "registered_on": "2017-01-01",
        "phone": "13812345678"})
    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("/misconfigured")
    assert "968d3040bcb7eafd" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert services.ledger.head() == head
