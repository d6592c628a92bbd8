"""Recording, repeating, correcting and voiding sessions over HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, District, bearer


def test_recording_a_session_answers_201_with_its_minutes_and_position(district: District) -> None:
    response = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T11:30:59+08:00", "r-1")
    assert response.status_code == 201
    body = response.json()
    assert body["minutes"] == 150
    assert body["position"] > 0


def test_the_same_record_again_answers_200_with_the_same_id(district: District) -> None:
    first = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    again = district.session("2017-03-05T01:00:00Z", "2017-03-05T02:00:00Z", "r-1")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["total_minutes"] == 60


def test_a_reused_source_record_id_with_other_content_is_a_409(district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    response = district.session("2017-03-05T12:00:00+08:00", "2017-03-05T13:00:00+08:00", "r-1")
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_an_overlapping_session_is_a_409_and_touching_is_fine(district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    overlap = district.session("2017-03-05T09:30:00+08:00", "2017-03-05T10:30:00+08:00", "r-2")
    touch = district.session("2017-03-05T10:00:00+08:00", "2017-03-05T11:00:00+08:00", "r-3")
    assert overlap.status_code == 409
    assert touch.status_code == 201


def test_end_before_start_is_a_422_naming_ended_at(district: District) -> None:
    response = district.session("2017-03-05T10:00:00+08:00", "2017-03-05T09:00:00+08:00", "r-1")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "ended_at"


def test_a_time_without_offset_is_a_422_naming_the_field(district: District) -> None:
    response = district.session("2017-03-05T10:00:00", "2017-03-05T11:00:00+08:00", "r-1")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["started_at"]


def test_an_offset_no_civil_time_uses_is_a_422_naming_the_field(district: District) -> None:
    """+15:00 fits RFC 3339's grammar, but no zone uses it: a typo that would move the service
    date. The offsets in use (-12:00 to +14:00) are taken, the same instant either way."""
    refused = district.session("2017-03-05T16:00:00+15:00", "2017-03-05T11:00:00+08:00", "r-1")
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["started_at"]
    assert "+15:00" in refused.json()["errors"][0]["detail"]
    refused = district.session("2017-03-05T09:00:00+08:00", "2017-03-04T14:00:00-13:00", "r-1")
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["ended_at"]
    taken = district.session("2017-03-05T15:00:00+14:00", "2017-03-04T14:00:00-12:00", "r-1")
    assert taken.status_code == 201, taken.text
    assert taken.json()["minutes"] == 60


def test_outside_the_activity_window_is_a_422(district: District) -> None:
    response = district.session("2017-03-05T07:00:00+08:00", "2017-03-05T09:00:00+08:00", "r-1")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "started_at"


def test_an_unknown_volunteer_in_the_body_is_a_422_naming_it(district: District) -> None:
    response = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1",
                                volunteer="vol-nobody")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "volunteer_id"


def test_a_correction_moves_the_minutes_and_a_void_removes_them(district: District) -> None:
    sid = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                           "r-1").json()["id"]
    corrected = district.post(f"/v1/service-sessions/{sid}/corrections", {
        "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T09:45:00+08:00",
        "reason": "left early"})
    assert corrected.status_code == 200
    assert corrected.json()["minutes"] == 45
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["total_minutes"] == 45
    voided = district.post(f"/v1/service-sessions/{sid}/void", {"reason": "duplicate sheet"})
    assert voided.status_code == 200
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["total_minutes"] == 0


def test_a_resend_answers_the_session_as_it_stands_with_the_position_of_that(
        district: District) -> None:
    """The same record sent again after a correction or a void answers 200 with the minutes
    the session counts now, and the position of its last event: a read at that position
    shows those minutes (bb9 F3: the first answer's position beside today's minutes)."""
    times = ("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    first = district.session(*times).json()
    again = district.session(*times)
    assert again.status_code == 200
    assert again.json() == {**first, "minutes": 60}  # nothing changed: the first answer
    sid = first["id"]
    changes = [(f"/v1/service-sessions/{sid}/corrections", {
        "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T09:20:00+08:00",
        "reason": "left early"}, 20), (f"/v1/service-sessions/{sid}/void",
                                       {"reason": "duplicate sheet"}, 0)]
    for path, body, minutes in changes:
        change = district.post(path, body).json()
        again = district.session(*times)
        assert again.status_code == 200, again.text
        assert (again.json()["id"], again.json()["minutes"]) == (sid, minutes)
        # The session's last event: the one the change itself answered.
        assert first["position"] < again.json()["position"] == change["position"]
        hours = district.get(f"/v1/volunteers/{district.volunteer}/hours",
                             min_position=again.json()["position"]).json()
        assert hours["total_minutes"] == minutes


def test_voiding_a_voided_session_is_a_409_and_an_empty_reason_a_422(district: District) -> None:
    sid = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                           "r-1").json()["id"]
    assert district.post(f"/v1/service-sessions/{sid}/void", {"reason": " "}).status_code == 422
    assert district.post(f"/v1/service-sessions/{sid}/void", {"reason": "x"}).status_code == 200
    assert district.post(f"/v1/service-sessions/{sid}/void", {"reason": "x"}).status_code == 409


def test_correcting_an_unknown_session_is_a_404(district: District) -> None:
    response = district.post("/v1/service-sessions/ses-nothing/corrections", {
        "started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T09:45:00+08:00",
        "reason": "x"})
    assert response.status_code == 404


def test_a_batch_gives_each_record_its_own_outcome(district: District) -> None:
    record = {"volunteer_id": district.volunteer, "activity_id": district.activity,
              "source_record_id": "b-1", "started_at": "2017-03-05T09:00:00+08:00",
              "ended_at": "2017-03-05T10:00:00+08:00"}
    bad = {**record, "source_record_id": "b-2", "started_at": "2017-03-05T09:30:00+08:00"}
    response = district.post("/v1/service-sessions/batch", {"records": [record, bad, record]})
    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "duplicate"]
    assert body["results"][1]["error"]["status"] == 409
    # The problem a single write of the record answers: same type URI and title.
    alone = district.post("/v1/service-sessions", bad)
    assert alone.status_code == 409
    assert {k: body["results"][1]["error"][k] for k in ("type", "title")} == {
        k: alone.json()[k] for k in ("type", "title")}


def test_a_batch_item_refused_for_a_field_names_it_beside_the_rule_only(
        district: District) -> None:
    record = {"volunteer_id": district.volunteer, "activity_id": district.activity,
              "source_record_id": "b-late", "started_at": "2017-03-05T17:30:00+08:00",
              "ended_at": "2017-03-05T19:00:00+08:00"}  # the activity ends at 18:00
    response = district.post("/v1/service-sessions/batch", {"records": [record]})
    assert response.status_code == 200, response.text
    error = response.json()["results"][0]["error"]
    assert error["field"] == "ended_at" and error["status"] == 422
    assert not error["detail"].startswith("ended_at"), error


def test_a_read_after_a_write_sees_it_with_min_position(district: District) -> None:
    written = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    position = written.json()["position"]
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours", min_position=position)
    assert hours.status_code == 200
    assert hours.json()["position"] >= position


def test_a_position_beyond_the_ledger_is_a_422_at_once(district: District) -> None:
    """No write answered it, so waiting cannot reach it, and a client told to retry would
    retry for ever."""
    began = time.monotonic()
    response = district.get(f"/v1/volunteers/{district.volunteer}/hours", min_position=10**9)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["min_position"]
    assert "beyond the ledger's last event" in response.json()["detail"]
    assert time.monotonic() - began < 1.5  # answered without the 2 s wait


def test_a_stored_position_the_views_have_not_reached_waits_then_is_a_503(
        district: District) -> None:
    services = district.client.app.state.services  # type: ignore[attr-defined]
    written = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-9")
    position = written.json()["position"]
    runner = services.models.runner

    async def behind() -> int:
        return position - 1

    original = services.models.wait_for, runner.position_async
    try:  # held by another process: as far as this process can tell, one event behind
        services.models.wait_for = lambda *args, **kwargs: False
        runner.position_async = behind
        response = district.get(f"/v1/volunteers/{district.volunteer}/hours",
                                min_position=position)
    finally:
        services.models.wait_for, runner.position_async = original
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert f"have not reached position {position}" in response.json()["detail"]


@pytest.mark.parametrize("token", [None, "vl_not-a-token-we-issued"], ids=["none", "unknown"])
def test_min_position_is_looked_at_only_once_the_caller_is_let_in(
        district: District, token: str | None) -> None:
    """A refused caller learns nothing of the ledger (its last position) from min_position."""
    for path in (f"/v1/volunteers/{district.volunteer}/hours",
                 f"/v1/volunteers/{district.volunteer}/history"):
        response = district.get(path, token=token, min_position=10**9)
        assert response.status_code == 401, response.text
        assert "last event" not in response.text


def test_if_match_guards_corrections_and_voids_with_the_version_get_tags(
        district: District) -> None:
    sid = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                           "r-1").json()["id"]
    tag = district.get(f"/v1/service-sessions/{sid}").headers["ETag"]
    assert tag == '"1"'
    fix = {"started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T09:45:00+08:00",
           "reason": "left early"}

    def post(path: str, body: dict[str, str], if_match: str) -> Any:
        return district.client.post(path, json=body, headers={**bearer(ADMIN_TOKEN),
                                                              "If-Match": if_match})

    stale = post(f"/v1/service-sessions/{sid}/corrections", fix, '"2"')
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert stale.json()["errors"] == [
        {"field": "If-Match", "detail": f"session {sid} is at version 1, not 2: it was changed "
                                        "since; read it again"}]
    held = district.client.get(f"/v1/service-sessions/{sid}",
                               headers={**bearer(ADMIN_TOKEN), "If-None-Match": tag})
    assert (held.status_code, held.headers["ETag"], held.content) == (304, tag, b"")
    for bad in ('W/"1"', "1", '"one"', '"1", "2"', '"01"'):
        refused = post(f"/v1/service-sessions/{sid}/corrections", fix, bad)
        assert refused.status_code == 422, bad
        assert refused.json()["errors"][0]["field"] == "If-Match"
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == 60  # nothing written by the refused ones
    assert post(f"/v1/service-sessions/{sid}/corrections", fix, tag).status_code == 200
    # Sent again after it took effect: already done, 200, whatever the tag now says.
    assert post(f"/v1/service-sessions/{sid}/corrections", fix, tag).status_code == 200
    assert post(f"/v1/service-sessions/{sid}/void", {"reason": "x"}, tag).status_code == 412
    now = district.get(f"/v1/service-sessions/{sid}").headers["ETag"]
    assert now == '"2"'
    assert post(f"/v1/service-sessions/{sid}/void", {"reason": "x"}, "*").status_code == 200
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == 0
