"""GET /v1/activities: the list a clerk finds activity ids in (bb36 F6)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import T0, T1, District

ENTRY = {"id", "title", "program_code", "organiser_unit_id", "station_unit_id", "place",
         "starts_at", "ends_at", "cancelled", "cancelled_at", "version"}


def _plan(d: District, title: str, starts_at: str, ends_at: str, unit: str | None = None,
          program: str = "C1") -> tuple[str, int]:
    response = d.post("/v1/activities", {
        "program_code": program, "organiser_unit_id": unit or d.unit_a, "title": title,
        "starts_at": starts_at, "ends_at": ends_at})
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["position"]


def _activities(d: District, token: str | None = None, **params: Any) -> Any:
    response = d.get("/v1/activities", token=token, **params)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(body: Any) -> list[str]:
    return [item["id"] for item in body["items"]]


def _cancel(d: District, activity: str) -> int:
    response = d.post(f"/v1/activities/{activity}/cancellation", {"reason": "rain"})
    assert response.status_code == 200, response.text
    position: int = response.json()["position"]
    return position


def test_lists_each_activity_as_get_one_answers_it_to_anyone(district: District) -> None:
    body = _activities(district)
    (entry,) = body["items"]
    assert set(entry) == ENTRY and body["next_cursor"] is None and body["position"] > 0
    one = district.get(f"/v1/activities/{district.activity}", token=None).json()
    assert entry == {**one, "cancelled_at": None}
    assert entry["starts_at"] == T0 and entry["ends_at"] == T1


def test_activities_come_in_order_of_start_whatever_the_offset(district: District) -> None:
    # 01:00Z is 09:00+08:00: after the district's 08:00+08:00 activity, before 10:00+08:00.
    utc, _ = _plan(district, "植树 UTC", "2017-03-05T01:00:00Z", "2017-03-05T03:00:00Z")
    later, position = _plan(district, "植树", "2017-03-05T10:00:00+08:00",
                            "2017-03-05T12:00:00+08:00")
    assert _ids(_activities(district, min_position=position)) == [district.activity, utc, later]


def test_a_cancelled_activity_is_listed_with_when_and_filtered_by_status(
        district: District) -> None:
    other, _ = _plan(district, "植树", "2017-03-12T08:00:00+08:00", "2017-03-12T12:00:00+08:00")
    position = _cancel(district, district.activity)
    (entry, _) = _activities(district, min_position=position)["items"]
    one = district.get(f"/v1/activities/{district.activity}").json()
    assert entry["cancelled"] is one["cancelled"] is True
    assert entry["version"] == one["version"] == 2 and entry["cancelled_at"] is not None
    assert entry["cancelled_at"][:4] >= "2024"  # recorded now, not when the activity was
    assert _ids(_activities(district, status="cancelled")) == [district.activity]
    assert _ids(_activities(district, status="active")) == [other]
    assert _ids(_activities(district, status="all")) == [district.activity, other]


def test_filters_by_organiser_and_program(district: District) -> None:
    theirs, position = _plan(district, "普法", "2017-04-01T09:00:00+08:00",
                             "2017-04-01T11:00:00+08:00", unit=district.unit_b, program="B3")
    assert _ids(_activities(district, organiser_unit_id=district.unit_b,
                            min_position=position)) == [theirs]
    assert _ids(_activities(district, organiser_unit_id=district.unit_a)) == [district.activity]
    assert _ids(_activities(district, program_code="B5")) == [district.activity]
    assert _ids(_activities(district, program_code="B3",
                            organiser_unit_id=district.unit_a)) == []


def test_from_and_to_list_the_windows_that_overlap_them_inclusively(
        district: District) -> None:
    # The district's activity runs 2017-03-05 08:00 to 18:00 (+08:00).
    april, position = _plan(district, "四月", "2017-04-01T09:00:00+08:00",
                            "2017-04-01T11:00:00+08:00")
    everyone = [district.activity, april]
    assert _ids(_activities(district, min_position=position)) == everyone
    assert _ids(_activities(district, **{"from": "2017-03-05T10:00:00Z"})) == everyone
    assert _ids(_activities(district, **{"from": "2017-03-05T10:00:01Z"})) == [april]
    assert _ids(_activities(district, to="2017-03-05T08:00:00+08:00")) == [district.activity]
    assert _ids(_activities(district, to="2017-03-05T07:59:59+08:00")) == []
    assert _ids(_activities(district, **{"from": "2017-03-05T12:00:00+08:00",
                                         "to": "2017-03-31T00:00:00+08:00"})) == [
        district.activity]
    assert _ids(_activities(district, **{"from": "2017-03-06T00:00:00+08:00",
                                         "to": "2017-03-31T00:00:00+08:00"})) == []


def test_paging_with_a_small_limit_serves_each_activity_once_in_order(
        district: District) -> None:
    planned = [district.activity] + [
        _plan(district, f"活动{n}", f"2017-05-{n + 1:02d}T09:00:00+08:00",
              f"2017-05-{n + 1:02d}T10:00:00+08:00")[0] for n in range(6)]
    # Two on the same instant: the id breaks the tie, and the page boundary falls between.
    planned.append(_plan(district, "同时", "2017-05-03T09:00:00+08:00",
                         "2017-05-03T11:00:00+08:00")[0])
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = _activities(district, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(body["items"]) <= 2
        seen += body["items"]
        if len(seen) == 2:  # between pages: one already served is cancelled
            _cancel(district, seen[0]["id"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(e["id"] for e in seen) == sorted(planned) and len(seen) == len(planned)
    keys = [(e["starts_at"], e["id"]) for e in seen]
    assert keys == sorted(keys)  # every start here is written at +08:00


def test_bad_filters_are_a_422_naming_each(district: District) -> None:
    for params, fields in (
            ({"organiser_unit_id": "unit-nobody"}, ["organiser_unit_id"]),
            ({"program_code": "Z9"}, ["program_code"]),
            ({"from": "2017-03-05"}, ["from"]),
            ({"to": "2017-03-05T08:00:00"}, ["to"]),
            ({"from": "2017-03-06T00:00:00+08:00", "to": "2017-03-05T00:00:00+08:00"}, ["to"]),
            # bb37 F1: years outside 1-9999 in UTC were a 500.
            ({"from": "9999-12-31T23:59:59-12:00"}, ["from"]),
            ({"to": "0001-01-01T00:00:00+14:00"}, ["to"]),
            ({"from": "9999-12-31T23:59:59-12:00", "to": "0001-01-01T00:00:00+14:00"},
             ["from", "to"]),
            ({"status": "planned"}, ["status"]), ({"limit": 0}, ["limit"]),
            ({"cursor": "abc"}, ["cursor"]), ({"organiser": "x"}, ["organiser"])):
        response = district.get("/v1/activities", **params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == fields, (params, response.text)


def test_a_cursor_of_another_filter_is_refused(district: District) -> None:
    _plan(district, "植树", "2017-03-12T08:00:00+08:00", "2017-03-12T12:00:00+08:00")
    cursor = _activities(district, limit=1)["next_cursor"]
    response = district.get("/v1/activities", limit=1, cursor=cursor, program_code="C1")
    assert response.status_code == 422 and "cursor" in response.text


def test_a_cursor_follows_the_same_instant_written_with_another_offset(
        district: District) -> None:
    """bb37 F4: a client that wrote `from` at +08:00, then in UTC, was refused its cursor."""
    for day in (12, 13, 14):
        _plan(district, "植树", f"2017-03-{day}T08:00:00+08:00", f"2017-03-{day}T12:00:00+08:00")
    first = _activities(district, limit=1, **{"from": "2017-03-12T00:00:00+08:00"})
    then = _activities(district, limit=5, cursor=first["next_cursor"],
                       **{"from": "2017-03-11T16:00:00Z"})
    assert len(first["items"]) + len(then["items"]) == 3
    assert not set(_ids(first)) & set(_ids(then))
    refused = district.get("/v1/activities", limit=5, cursor=first["next_cursor"],
                           **{"from": "2017-03-11T16:00:01Z"})  # another instant
    assert refused.status_code == 422 and "cursor" in refused.text

