"""The directory: GET /v1/volunteers (a unit's people and their ids) and GET /v1/units."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.calendar import district_today
from tests.api.conftest import District, bearer

ENTRY = {"id", "volunteer_number", "name", "home_unit_id", "current_unit_id", "registered_on",
         "deregistered_on", "total_minutes", "star_level"}


def _register(d: District, name: str, unit: str, token: str | None = None) -> str:
    response = d.post("/v1/volunteers", {"name": name, "home_unit_id": unit,
                                         "registered_on": "2017-02-01"},
                      **({"token": token} if token else {}))
    assert response.status_code == 201, response.text
    vid: str = response.json()["id"]
    return vid


def _volunteers(d: District, token: str | None = None, **params: Any) -> Any:
    response = d.get("/v1/volunteers", **({"token": token} if token else {}), **params)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(body: Any) -> list[str]:
    return [item["id"] for item in body["items"]]


def _transfer(d: District, volunteer: str, unit: str, effective_on: str) -> int:
    response = d.post(f"/v1/volunteers/{volunteer}/transfers",
                      {"to_unit_id": unit, "effective_on": effective_on})
    assert response.status_code == 201, response.text
    position: int = response.json()["position"]
    return position


def test_lists_a_volunteer_with_number_unit_and_hours(district: District) -> None:
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T11:00:00+08:00", "dir-1")
    body = _volunteers(district)
    (entry,) = body["items"]
    assert set(entry) == ENTRY and entry["id"] == district.volunteer
    assert entry["volunteer_number"].startswith("MLV") and entry["name"] == "林小梅"
    assert entry["home_unit_id"] == entry["current_unit_id"] == district.unit_a
    assert entry["registered_on"] == "2017-01-10"
    assert entry["total_minutes"] == 120 and entry["star_level"] == 0
    assert entry["deregistered_on"] is None and body["next_cursor"] is None
    assert body["position"] > 0 and body["as_of"] == district_today().isoformat()


def test_no_personal_data_is_listed(district: District) -> None:
    response = district.get("/v1/volunteers", status="all")
    assert all(set(entry) == ENTRY for entry in response.json()["items"])
    for personal in ("13805981234", "138****1234", "350402199001011234", "1990-01-01",
                     "phone", "id_number", "personal"):
        assert personal not in response.text, personal


def test_a_transfer_effective_in_the_past_lists_the_volunteer_in_the_new_unit(
        district: District) -> None:
    position = _transfer(district, district.volunteer, district.unit_b, "2017-06-01")
    assert _ids(_volunteers(district, current_unit_id=district.unit_a,
                            min_position=position)) == []
    (entry,) = _volunteers(district, current_unit_id=district.unit_b)["items"]
    assert entry["id"] == district.volunteer and entry["current_unit_id"] == district.unit_b


def test_the_list_names_both_units_as_get_one_does(district: District) -> None:
    """bb36 F5: `home_unit_id` is the unit of registration in the list as in GET one, and
    `current_unit_id` the unit of today, in both."""
    position = _transfer(district, district.volunteer, district.unit_b, "2017-06-01")
    (entry,) = _volunteers(district, min_position=position)["items"]
    one = district.get(f"/v1/volunteers/{district.volunteer}").json()
    assert entry["home_unit_id"] == one["home_unit_id"] == district.unit_a
    assert entry["current_unit_id"] == one["current_unit_id"] == district.unit_b


def test_the_old_home_unit_filter_is_refused_by_name(district: District) -> None:
    """It listed today's members before bb36 F5; read now as the unit of registration it
    would answer other people without a word, so it is a 422 naming it."""
    response = district.get("/v1/volunteers", home_unit_id=district.unit_a)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["home_unit_id"]


def test_a_transfer_recorded_before_its_effective_day_lists_the_old_unit_until_that_day(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    today = district_today()
    effective = today + timedelta(days=10)
    # The clerk's clock says it is a month on: the ledger takes a transfer ten days from now.
    monkeypatch.setattr("ledger.registry.district_today", lambda: today + timedelta(days=30))
    position = _transfer(district, district.volunteer, district.unit_b, effective.isoformat())
    monkeypatch.undo()
    monkeypatch.setattr("api.routes.directory.district_today", lambda: today)
    body = _volunteers(district, min_position=position)
    assert body["as_of"] == today.isoformat()
    assert [e["current_unit_id"] for e in body["items"]] == [district.unit_a]
    assert _ids(_volunteers(district, current_unit_id=district.unit_b)) == []
    for day in (effective - timedelta(days=1), effective, effective + timedelta(days=1)):
        monkeypatch.setattr("api.routes.directory.district_today", lambda day=day: day)
        expected = district.unit_a if day < effective else district.unit_b
        assert _ids(_volunteers(district, current_unit_id=expected)) == [district.volunteer], day


def test_a_deregistered_volunteer_is_listed_under_deregistered_and_all_only(
        district: District) -> None:
    other = _register(district, "王芳", district.unit_a)
    response = district.post(f"/v1/volunteers/{other}/deregistration",
                             {"deregistered_on": "2017-12-31", "reason": "moved away"})
    assert response.status_code == 200, response.text
    position = response.json()["position"]
    assert _ids(_volunteers(district, min_position=position)) == [district.volunteer]
    (gone,) = _volunteers(district, status="deregistered")["items"]
    assert gone["id"] == other and gone["deregistered_on"] == "2017-12-31"
    assert set(_ids(_volunteers(district, status="all"))) == {district.volunteer, other}


def test_paging_with_a_small_limit_serves_each_volunteer_exactly_once(
        district: District) -> None:
    registered = [district.volunteer] + [
        _register(district, f"志愿者{n}", district.unit_a if n % 2 else district.unit_b)
        for n in range(7)]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = _volunteers(district, limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(body["items"]) <= 3
        seen += body["items"]
        if len(seen) == 3:  # between pages: one already served leaves the list
            response = district.post(f"/v1/volunteers/{seen[0]['id']}/deregistration",
                                     {"deregistered_on": "2017-12-31", "reason": "left"})
            assert response.status_code == 200, response.text
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(e["id"] for e in seen) == sorted(registered)
    numbers = [e["volunteer_number"] for e in seen]
    assert numbers == sorted(numbers)


def test_names_are_filtered_by_prefix(district: District) -> None:
    lin = _register(district, "林志强", district.unit_b)
    _register(district, "王林", district.unit_b)
    assert _ids(_volunteers(district, name="林")) == [district.volunteer, lin]
    assert _ids(_volunteers(district, name="林志")) == [lin]
    assert _ids(_volunteers(district, name="林", current_unit_id=district.unit_b)) == [lin]


def test_a_recorder_lists_only_its_own_units_volunteers(district: District) -> None:
    theirs = _register(district, "王芳", district.unit_b, token=district.recorder_b)
    assert _ids(_volunteers(district, token=district.recorder_b)) == [theirs]
    assert _ids(_volunteers(district, token=district.recorder_a)) == [district.volunteer]
    assert _ids(_volunteers(district, token=district.recorder_b,
                            current_unit_id=district.unit_b)) == [theirs]
    refused = district.get("/v1/volunteers", token=district.recorder_b,
                           current_unit_id=district.unit_a)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert set(_ids(_volunteers(district, token=district.committee))) == {district.volunteer,
                                                                          theirs}


def test_an_unknown_unit_filter_is_a_422_naming_it(district: District) -> None:
    for path, field in (("/v1/volunteers", "current_unit_id"), ("/v1/units", "parent_id")):
        response = district.get(path, **{field: "unit-nobody"})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [field]


def test_a_bad_status_limit_or_cursor_is_a_422_naming_it(district: District) -> None:
    for params, field in (({"status": "gone"}, "status"), ({"limit": 0}, "limit"),
                          ({"limit": 5001}, "limit"), ({"cursor": "abc"}, "cursor")):
        response = district.get("/v1/volunteers", **params)
        assert response.status_code == 422, (params, response.text)
        assert field in str(response.json()["errors"]), (params, response.text)


def test_a_cursor_of_another_filter_is_refused(district: District) -> None:
    _register(district, "林志强", district.unit_a)
    cursor = _volunteers(district, limit=1)["next_cursor"]
    response = district.get("/v1/volunteers", limit=1, cursor=cursor, name="林")
    assert response.status_code == 422 and "cursor" in response.text


def test_a_repeated_read_with_its_etag_is_a_304(district: District) -> None:
    first = district.get("/v1/volunteers")
    again = district.client.get("/v1/volunteers", headers={
        "If-None-Match": first.headers["etag"], **bearer(district.recorder_a)})
    assert again.status_code == 304


def test_units_are_listed_with_kind_parent_and_civilized_level_to_anyone(
        district: District) -> None:
    response = district.post("/v1/units", {"name": "梅列区实验小学", "kind": "school",
                                           "parent_id": district.unit_a,
                                           "civilized_level": "city"})
    assert response.status_code == 201, response.text
    school, position = response.json()["id"], response.json()["position"]
    body = district.get("/v1/units", token=None, min_position=position).json()
    assert len(body["items"]) == 4 and body["next_cursor"] is None
    (entry,) = [u for u in body["items"] if u["id"] == school]
    assert entry == {"id": school, "name": "梅列区实验小学", "kind": "school",
                     "parent_id": district.unit_a, "civilized_level": "city",
                     "closed_on": None}
    assert _ids(district.get("/v1/units", token=None, kind="school").json()) == [school]
    assert _ids(district.get("/v1/units", token=None, parent_id=district.unit_a).json()) == [
        school]
    under_root = district.get("/v1/units", token=None, kind="subdistrict").json()
    assert set(_ids(under_root)) == {district.unit_a, district.unit_b}


def test_paging_units_serves_each_once_in_id_order(district: District) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        body = district.get("/v1/units", token=None, limit=1,
                            **({"cursor": cursor} if cursor else {})).json()
        seen += _ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3 and seen == sorted(seen) and district.unit_a in seen


def test_a_closed_unit_is_listed_with_its_closing_date(district: District) -> None:
    response = district.post(f"/v1/units/{district.unit_b}/closure",
                             {"closed_on": "2017-02-01", "reason": "merged"})
    assert response.status_code == 200, response.text
    body = district.get("/v1/units", token=None, kind="subdistrict",
                        min_position=response.json()["position"]).json()
    closed = {u["id"]: u["closed_on"] for u in body["items"]}
    assert closed == {district.unit_a: None, district.unit_b: "2017-02-01"}
