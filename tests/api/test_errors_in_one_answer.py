"""A body its schema refused still has its other fields checked by the ledger's own rules, and
every refusal comes in one answer (bb35 F1: a blank name hid a birth date in the future)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ADMIN_TOKEN, District, bearer

NINE, TEN = "2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00"


def _refused(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["detail"] for e in response.json()["errors"]}


def test_a_registration_names_the_schema_s_and_the_ledger_s_refusals_together(
        district: District) -> None:
    refused = _refused(district.post("/v1/volunteers", {
        "name": "  ", "home_unit_id": district.unit_a, "registered_on": "2017-01-01",
        "birth_date": "2099-01-01", "phone": "not a phone"}))
    assert set(refused) == {"name", "birth_date", "phone"}, refused
    assert "empty" in refused["name"] and "future" in refused["birth_date"]
    # A comparison with a refused field is passed over: no registered_on, no "born after".
    refused = _refused(district.post("/v1/volunteers", {
        "name": "雷\u202e锋", "home_unit_id": district.unit_a, "registered_on": "someday",
        "birth_date": "2016-01-01"}))
    assert set(refused) == {"name", "registered_on"}, refused


def test_a_session_names_its_times_beside_a_refused_source_record_id(
        district: District) -> None:
    refused = _refused(district.post("/v1/service-sessions", {
        "volunteer_id": district.volunteer, "activity_id": district.activity,
        "started_at": TEN, "ended_at": NINE, "source_record_id": ""}))
    assert set(refused) == {"source_record_id", "ended_at"}, refused
    assert "after started_at" in refused["ended_at"]
    refused = _refused(district.post("/v1/service-sessions", {
        "volunteer_id": district.volunteer, "activity_id": district.activity,
        "started_at": "yesterday", "ended_at": "2099-03-05T10:00:00+08:00",
        "source_record_id": "r-1"}))
    assert set(refused) == {"started_at", "ended_at"}, refused
    assert "future" in refused["ended_at"]
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == 0  # nothing was recorded


def test_a_session_in_the_future_names_its_start_beside_a_reversed_end(
        district: District) -> None:
    refused = _refused_unstored(district, "POST", "/v1/service-sessions", {
        "volunteer_id": district.volunteer, "activity_id": district.activity,
        "started_at": "2099-01-01T10:00:00+08:00", "ended_at": "2099-01-01T09:00:00+08:00",
        "source_record_id": "r-f10"})
    assert refused == {"started_at": "lies in the future",
                       "ended_at": "must be after started_at"}, refused


def test_a_batch_and_a_correction_name_a_start_in_the_future_beside_a_reversed_end(
        district: District) -> None:
    later, earlier = "2099-01-01T10:00:00+08:00", "2099-01-01T09:00:00+08:00"
    before = _stored(district)
    batch = district.post("/v1/service-sessions/batch", {"records": [
        {"volunteer_id": district.volunteer, "activity_id": district.activity,
         "started_at": later, "ended_at": earlier, "source_record_id": "b-f10"}]})
    assert batch.status_code == 200 and _stored(district) == before, batch.text
    [rejected] = batch.json()["results"]
    assert {e["field"]: e["detail"] for e in rejected["error"]["errors"]} == {
        "records.0.started_at": "lies in the future",
        "records.0.ended_at": "must be after started_at"}, rejected
    session = district.session(NINE, TEN, "r-f10-c").json()["id"]
    refused = _refused_unstored(district, "POST", f"/v1/service-sessions/{session}/corrections",
                                {"started_at": later, "ended_at": earlier, "reason": "typo"})
    assert refused == {"started_at": "lies in the future",
                       "ended_at": "must be after started_at"}, refused


def test_an_activity_and_a_correction_name_every_refusal(district: District) -> None:
    refused = _refused(district.post("/v1/activities", {
        "program_code": "Z9", "organiser_unit_id": district.unit_a, "title": "植树",
        "starts_at": "2017-07-01T00:00:00+08:00", "ends_at": "2017-06-30T00:00:00+08:00"}))
    assert set(refused) == {"program_code", "ends_at"}, refused
    session = district.session(NINE, TEN, "r-2").json()["id"]
    refused = _refused(district.post(f"/v1/service-sessions/{session}/corrections", {
        "started_at": TEN, "ended_at": NINE, "reason": ""}))
    assert set(refused) == {"reason", "ended_at"}, refused


def test_a_body_refused_only_by_its_schema_names_only_that(district: District) -> None:
    refused = _refused(district.post("/v1/volunteers", {
        "name": "", "home_unit_id": district.unit_a, "registered_on": "2017-01-01"}))
    assert set(refused) == {"name"}, refused
    refused = _refused(district.post("/v1/volunteers", {
        "home_unit_id": district.unit_a, "registered_on": "2017-01-01", "nickname": "x"}))
    assert set(refused) == {"name", "nickname"}, refused


def test_a_unit_and_a_training_name_every_refusal(district: District) -> None:
    refused = _refused(district.post("/v1/units", {"name": "列东\u200b街道", "kind": "city"}))
    assert set(refused) == {"name", "kind"}, refused
    refused = _refused(district.post("/v1/training-completions", {
        "volunteer_id": district.volunteer, "level": "galaxy", "form": "online",
        "audience": "core", "title": "  ", "completed_on": "2099-01-01", "hours": 2}))
    assert set(refused) == {"level", "title", "completed_on"}, refused
    assert "future" in refused["completed_on"]



def _stored(district: District) -> int:
    """The position of the last event in the store: unchanged when nothing was written."""
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    return int(ledger.recorder.max_notification_id() or 0)


def _refused_unstored(district: District, method: str, path: str, body: Any,
                      token: str = ADMIN_TOKEN) -> dict[str, str]:
    before = _stored(district)
    response = district.client.request(method, path, json=body, headers=bearer(token))
    assert _stored(district) == before, "something was stored"
    return _refused(response)


def test_a_transfer_names_a_refused_unit_beside_a_day_in_the_future(
        district: District) -> None:
    refused = _refused_unstored(
        district, "POST", f"/v1/volunteers/{district.volunteer}/transfers",
        {"to_unit_id": "", "effective_on": "2099-01-01"})
    assert set(refused) == {"to_unit_id", "effective_on"}, refused
    assert "future" in refused["effective_on"]


def test_a_volunteer_change_names_the_schema_s_and_the_ledger_s_refusals_together(
        district: District) -> None:
    refused = _refused_unstored(district, "PATCH", f"/v1/volunteers/{district.volunteer}", {
        "phone": "not a phone", "birth_date": "2099-01-01", "name": "林\u200b小梅",
        "gender": None})
    assert set(refused) == {"name", "birth_date", "phone", "gender"}, refused
    assert "future" in refused["birth_date"] and "cleared" in refused["gender"]


def test_a_unit_change_names_a_refused_parent_beside_a_hidden_character(
        district: District) -> None:
    refused = _refused_unstored(district, "PATCH", f"/v1/units/{district.unit_b}", {
        "name": "列西\u200b街道", "parent_id": "no such unit"})
    assert set(refused) == {"name", "parent_id"}, refused


def test_a_unit_closure_names_an_empty_reason_beside_a_day_in_the_future(
        district: District) -> None:
    refused = _refused_unstored(district, "POST", f"/v1/units/{district.unit_b}/closure", {
        "closed_on": "2099-01-01", "reason": "  "})
    assert set(refused) == {"closed_on", "reason"}, refused
    assert "future" in refused["closed_on"]


def test_a_deregistration_names_an_empty_reason_beside_a_day_in_the_future(
        district: District) -> None:
    refused = _refused_unstored(
        district, "POST", f"/v1/volunteers/{district.volunteer}/deregistration",
        {"deregistered_on": "2099-01-01", "reason": ""})
    assert set(refused) == {"deregistered_on", "reason"}, refused


def test_an_insurance_names_a_year_as_text_beside_a_hidden_character(
        district: District) -> None:
    refused = _refused_unstored(
        district, "POST", f"/v1/volunteers/{district.volunteer}/insurance",
        {"year": "2017", "policy_ref": "PA-2017-001", "insurer": "人保\u200b"})
    assert set(refused) == {"year", "insurer"}, refused


def test_an_insurance_names_a_year_decades_ahead_beside_a_hidden_character(
        district: District) -> None:
    refused = _refused_unstored(
        district, "POST", f"/v1/volunteers/{district.volunteer}/insurance",
        {"year": 2099, "policy_ref": "P-1", "insurer": "人保\u200b"})
    assert set(refused) == {"year", "insurer"}, refused
    assert "ahead" in refused["year"]
    refused = _refused_unstored(
        district, "POST", f"/v1/volunteers/{district.volunteer}/insurance",
        {"year": 2099, "policy_ref": "P-1", "insurer": "PICC"})
    assert set(refused) == {"year"}, refused


def test_an_award_grant_names_an_unknown_award_beside_a_year_not_begun(
        district: District) -> None:
    refused = _refused_unstored(district, "POST", "/v1/awards", {
        "award": "nobel", "year": 2099, "recipient_id": district.volunteer,
        "decision_ref": "梅文明\u200b〔2017〕12号"}, district.committee)
    assert set(refused) == {"award", "year", "decision_ref"}, refused
    assert "not begun" in refused["year"]


def test_an_award_revocation_names_an_unknown_field_beside_its_reason(
        district: District) -> None:
    # A body of one field: an unknown field beside it is the schema's refusal.
    refused = _refused_unstored(district, "POST", "/v1/awards/no-such-award/revoke", {
        "reason": "前\u200b后", "why": "x"}, district.committee)
    assert set(refused) == {"reason", "why"}, refused


def test_a_token_names_a_refused_role_or_unit_beside_its_label(district: District) -> None:
    refused = _refused_unstored(district, "POST", "/v1/tokens", {
        "role": "superuser", "unit_id": district.unit_a, "label": "front\ndesk"})
    # The role refused, its unit is not held against it.
    assert set(refused) == {"role", "label"}, refused
    refused = _refused_unstored(district, "POST", "/v1/tokens", {
        "role": "auditor", "unit_id": "a b", "label": "x\u200b"})
    assert set(refused) == {"unit_id", "label"}, refused


def test_a_token_revocation_names_an_unknown_field_beside_its_reason(
        district: District) -> None:
    refused = _refused_unstored(district, "POST", "/v1/tokens/no-such-token/revoke", {
        "reason": "前\u200b后", "why": "x"})
    assert set(refused) == {"reason", "why"}, refused


def test_a_batch_names_each_refused_record_by_its_index(district: District) -> None:
    def record(start: str, end: str, source: str) -> dict[str, str]:
        return {"volunteer_id": district.volunteer, "activity_id": district.activity,
                "started_at": start, "ended_at": end, "source_record_id": source}

    refused = _refused_unstored(district, "POST", "/v1/service-sessions/batch", {"records": [
        record(NINE, TEN, "b-0"),
        record(TEN, NINE, ""),
        record("yesterday", "2099-03-05T10:00:00+08:00", "b-2"),
        record(TEN, NINE, "b-3"),
        "not a record"]})
    assert set(refused) == {"records.1.source_record_id", "records.1.ended_at",
                            "records.2.started_at", "records.2.ended_at",
                            "records.3.ended_at", "records.4"}, refused
    assert refused["records.1.ended_at"] == "must be after started_at"
    assert "future" in refused["records.2.ended_at"]



def test_a_void_names_an_unknown_field_beside_its_reason(district: District) -> None:
    session = district.session(NINE, TEN, "r-void").json()["id"]
    refused = _refused_unstored(district, "POST", f"/v1/service-sessions/{session}/void", {
        "reason": "前\u200b后", "why": "x"})
    assert set(refused) == {"reason", "why"}, refused


def test_a_cancellation_names_an_unknown_field_beside_its_reason(district: District) -> None:
    refused = _refused_unstored(
        district, "POST", f"/v1/activities/{district.activity}/cancellation",
        {"reason": "前\u200b后", "why": "x"})
    assert set(refused) == {"reason", "why"}, refused
