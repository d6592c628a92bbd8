"""Unit rankings and quarterly bulletins: public aggregates."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.schemas import _Snapshots, page_cursor, read_cursor
from ledger import InvalidField, Settings
from tests.api.conftest import ADMIN_TOKEN, District, bearer


def _activity(d: District, unit: str, program: str = "B5", day: str = "2017-03-05") -> str:
    response = d.post("/v1/activities", {
        "program_code": program, "organiser_unit_id": unit, "title": "服务",
        "starts_at": f"{day}T08:00:00+08:00", "ends_at": f"{day}T20:00:00+08:00"})
    assert response.status_code == 201, response.text
    activity: str = response.json()["id"]
    return activity


def _volunteer(d: District, unit: str, name: str = "志愿者") -> str:
    response = d.post("/v1/volunteers", {"name": name, "home_unit_id": unit,
                                         "registered_on": "2017-01-01"})
    assert response.status_code == 201, response.text
    volunteer: str = response.json()["id"]
    return volunteer


def test_rankings_list_every_unit_of_the_kind_with_ties_sharing_a_rank(district: District) -> None:
    unit_c = district.post("/v1/units", {"name": "徐碧街道", "kind": "subdistrict"}).json()["id"]
    district.post("/v1/units", {"name": "陈大镇", "kind": "town"})
    for unit, key in ((district.unit_a, "a"), (district.unit_b, "b")):
        volunteer = _volunteer(district, unit)
        activity = _activity(district, unit)
        response = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                                    f"tie-{key}", volunteer=volunteer, activity=activity)
        assert response.status_code == 201, response.text
    body = district.get("/v1/rankings/units", token=None, kind="subdistrict", year=2017).json()
    ranks = {item["unit_id"]: item["rank"] for item in body["items"]}
    assert ranks == {district.unit_a: 1, district.unit_b: 1, unit_c: 3}
    zero = next(item for item in body["items"] if item["unit_id"] == unit_c)
    assert zero["total_minutes"] == 0 and zero["volunteers"] == 0


def test_rankings_need_a_valid_kind(district: District) -> None:
    response = district.get("/v1/rankings/units", token=None, kind="galaxy")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"


def test_rankings_paginate_with_an_opaque_cursor(district: District) -> None:
    first = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1,
                          cursor=first["next_cursor"]).json()
    assert second["items"][0]["unit_id"] != first["items"][0]["unit_id"]
    bad = district.get("/v1/rankings/units", token=None, kind="subdistrict", cursor="garbage!")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    # A cursor walks the list it was issued for: not the same kind under another basis.
    other = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1,
                         basis="organised", cursor=first["next_cursor"])
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "cursor"
    # The page size may change from one page to the next.
    assert district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=5,
                        cursor=first["next_cursor"]).status_code == 200


def _edited(cursor: str, offset: int) -> list[str]:
    """Cursors a client could make from one it was given: another offset re-encoded with the
    old seal or none, one character changed in the body or the seal."""
    body, seal = cursor.split(".")
    found = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    found["o"] = offset
    forged = base64.urlsafe_b64encode(orjson.dumps(found)).decode().rstrip("=")
    flip = {"A": "B"}.get(body[5], "A")
    return [f"{forged}.{seal}", forged, f"{body[:5]}{flip}{body[6:]}.{seal}",
            f"{body}.{seal[:-1]}{'A' if seal[-1] != 'A' else 'B'}", body]


def test_an_edited_cursor_is_refused_not_read_as_another_offset(district: District) -> None:
    # bb24 F3: an unsealed cursor's offset could be edited to skip or repeat rows.
    for n in range(3):
        district.post("/v1/units", {"name": f"新街道{n}", "kind": "subdistrict"})
    first = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1).json()
    tokens = district.get("/v1/tokens", limit=1).json()
    lists = [("/v1/rankings/units", None, {"kind": "subdistrict", "limit": 1},
              first["next_cursor"]),
             ("/v1/tokens", ADMIN_TOKEN, {"limit": 1}, tokens["next_cursor"])]
    for path, token, params, cursor in lists:
        assert district.get(path, token=token, cursor=cursor, **params).status_code == 200
        for edited in _edited(cursor, 2):
            response = district.get(path, token=token, cursor=edited, **params)
            assert response.status_code == 422, (path, edited, response.text)
            assert response.json()["errors"][0]["field"] == "cursor"


def test_a_cursor_sealed_with_another_secret_is_refused() -> None:
    # Another deployment (another signing key) issued it, or this one's key was replaced.
    def app_with(secret: bytes) -> Any:
        services = SimpleNamespace(cursor_secret=secret)
        return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(services=services)))

    ours, theirs = app_with(b"a" * 32), app_with(b"b" * 32)
    cursor = page_cursor(theirs, 10, "list", "digest", 7)
    assert read_cursor(theirs, cursor, "list").position == 7
    with pytest.raises(InvalidField, match="not a cursor this service issued"):
        read_cursor(ours, cursor, "list")


def test_later_pages_answer_for_the_first_pages_position(district: District) -> None:
    # bb24 F4: a write that leaves the list as it was moved the later pages' position on.
    first = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1).json()
    moved = _volunteer(district, district.unit_a, "新来的")  # registered: no service, no change
    assert district.get(f"/v1/volunteers/{moved}/hours").json()["position"] > first["position"]
    second = district.get("/v1/rankings/units", token=None, kind="subdistrict", limit=1,
                          cursor=first["next_cursor"]).json()
    assert second["position"] == first["position"]
    whole = district.get("/v1/rankings/units", token=None, kind="subdistrict").json()
    assert whole["position"] > first["position"]
    assert whole["items"][1:2] == second["items"]


def test_walks_of_one_version_begun_at_two_positions_keep_their_own(
        district: District) -> None:
    # bb27 F1: the version kept by content held the position of whichever first page kept it
    # last, and a walk begun earlier reported that one once the list had changed.
    params = {"kind": "subdistrict", "limit": 1}
    early = district.get("/v1/rankings/units", token=None, **params).json()
    _volunteer(district, district.unit_a, "新来的")  # the list stays as it was
    late = district.get("/v1/rankings/units", token=None, **params).json()
    assert late["position"] > early["position"] and late["items"] == early["items"]
    changed = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T17:00:00+08:00",
                               "reorders")
    assert changed.status_code == 201, changed.text
    for first in (early, late):
        walked = district.get("/v1/rankings/units", token=None, cursor=first["next_cursor"],
                              **params).json()
        assert walked["position"] == first["position"], (walked, first)


def test_a_repeated_read_with_its_etag_is_a_304(district: District) -> None:
    first = district.get("/v1/rankings/units", token=None, kind="subdistrict")
    tag = first.headers["etag"]
    again = district.client.get("/v1/rankings/units", params={"kind": "subdistrict"},
                                headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert tag.startswith('W/"')  # If-None-Match compares weakly: the strong form matches too
    strong = district.client.get("/v1/rankings/units", params={"kind": "subdistrict"},
                                 headers={"If-None-Match": f'"other", {tag[2:]}'})
    assert strong.status_code == 304


def test_a_write_elsewhere_keeps_an_answers_etag_and_a_write_that_changes_it_does_not(
        district: District) -> None:
    """The tag leaves out how far the views have read: a conditional GET of a volunteer's
    hours or a ranking stays a 304 while the ledger grows elsewhere."""
    hours = f"/v1/volunteers/{district.volunteer}/hours"
    first = district.get(hours)
    tag, ranked = first.headers["etag"], district.get("/v1/rankings/units", token=None,
                                                       kind="subdistrict").headers["etag"]
    elsewhere = district.post("/v1/units", {"name": "某学校", "kind": "school"})
    assert elsewhere.status_code == 201
    later = district.client.get(hours, params={"min_position": elsewhere.json()["position"]},
                                headers={"If-None-Match": tag, **bearer(ADMIN_TOKEN)})
    assert later.status_code == 304 and later.headers["etag"] == tag
    assert district.get(hours).json()["position"] > first.json()["position"]
    assert district.client.get("/v1/rankings/units", params={"kind": "subdistrict"},
                               headers={"If-None-Match": ranked}).status_code == 304
    served = district.session("2017-03-05T15:00:00+08:00", "2017-03-05T16:00:00+08:00", "tag-1")
    assert served.status_code == 201, served.text
    changed = district.client.get(hours, headers={"If-None-Match": tag, **bearer(ADMIN_TOKEN)})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert district.client.get("/v1/rankings/units", params={"kind": "subdistrict"},
                               headers={"If-None-Match": ranked}).status_code == 200


def test_the_b6_bulletin_counts_the_quarter_per_organising_unit(district: District) -> None:
    activity = _activity(district, district.unit_b, program="B6", day="2017-05-04")
    volunteer = _volunteer(district, district.unit_a)
    response = district.session("2017-05-04T09:00:00+08:00", "2017-05-04T11:00:00+08:00", "b6",
                                volunteer=volunteer, activity=activity)
    assert response.status_code == 201
    body = district.get("/v1/bulletins/2017/2", token=None).json()
    assert body["program"] == "B6"
    row = next(item for item in body["items"] if item["unit_id"] == district.unit_b)
    assert (row["total_minutes"], row["sessions"], row["volunteers"]) == (120, 1, 1)
    assert "volunteer_id" not in str(body)
    members = district.get("/v1/bulletins/2017/2", token=None, basis="members").json()
    assert any(i["unit_id"] == district.unit_a and i["total_minutes"] == 120
               for i in members["items"])
    assert district.get("/v1/bulletins/2017/1", token=None).json()["items"] == [] or all(
        i["total_minutes"] == 0 for i in district.get("/v1/bulletins/2017/1").json()["items"])


def test_a_fifth_quarter_is_a_422(district: District) -> None:
    assert district.get("/v1/bulletins/2017/5", token=ADMIN_TOKEN).status_code == 422


def _schools_ranked(d: District) -> list[str]:
    """Three schools; the first two serve an hour each (a tie), the third nothing yet."""
    schools = [d.post("/v1/units", {"name": f"学校{i}", "kind": "school"}).json()["id"]
               for i in range(3)]
    for i, school in enumerate(schools[:2]):
        response = d.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                             f"school-{i}", volunteer=_volunteer(d, d.unit_a),
                             activity=_activity(d, school))
        assert response.status_code == 201, response.text
    return schools


def _walk(d: District, first: dict[str, Any], **params: Any) -> Any:
    return d.get("/v1/rankings/units", token=None, kind="school", basis="organised", limit=1,
                 cursor=first["next_cursor"], **params)


def test_rankings_pages_come_from_the_list_their_first_page_came_from(district: District) -> None:
    schools = _schools_ranked(district)
    first = district.get("/v1/rankings/units", token=None, kind="school", basis="organised",
                         limit=1).json()
    # The third school now serves most: the ranking's order changes between two pages.
    written = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T17:00:00+08:00",
                               "school-late", volunteer=_volunteer(district, district.unit_a),
                               activity=_activity(district, schools[2])).json()["position"]
    assert district.get("/v1/rankings/units", token=None, kind="school", basis="organised",
                        min_position=written).json()["items"][0]["unit_id"] == schools[2]

    second = _walk(district, first).json()
    third = _walk(district, second).json()
    walked = [page["items"][0] for page in (first, second, third)]
    assert sorted(item["unit_id"] for item in walked) == sorted(schools)  # none twice, none lost
    assert [item["rank"] for item in walked] == [1, 1, 3]  # as ranked when the walk began
    assert second["position"] == third["position"] == first["position"] < written
    assert third["next_cursor"] is None


def test_a_list_changed_and_no_longer_held_answers_409_and_unchanged_pages_go_on(
        district: District, monkeypatch: Any) -> None:
    schools = _schools_ranked(district)
    first = district.get("/v1/rankings/units", token=None, kind="school", basis="organised",
                         limit=1).json()
    # Another event that does not touch the schools' ranking: the walk goes on, answering
    # for the first page's position as every page of the walk does (bb24 F4).
    district.post("/v1/units", {"name": "另一个街道", "kind": "subdistrict"})
    second = _walk(district, first).json()
    assert second["position"] == first["position"]

    # The first page was served over an hour ago (this process forgot its version, and the
    # store keeps none that old) and the list changed since: 409.
    monkeypatch.setattr("api.schemas._SNAPSHOTS", _Snapshots())
    monkeypatch.setattr("api.lists.KEEP_SECONDS", -1.0)
    district.session("2017-03-05T09:00:00+08:00", "2017-03-05T17:00:00+08:00", "school-late",
                     volunteer=_volunteer(district, district.unit_a),
                     activity=_activity(district, schools[2]))
    changed = _walk(district, second)
    assert changed.status_code == 409, changed.text
    assert changed.json()["type"].endswith("/list-changed")
    assert "first page" in changed.json()["detail"]


def test_a_walk_goes_on_at_another_worker_from_the_version_its_first_page_came_from(
        district: District, settings: Settings, monkeypatch: Any) -> None:
    """Two API processes on one store: the first page from one, a write that reorders the
    list, the next pages from the other, which never served the first page."""
    schools = _schools_ranked(district)
    first = district.get("/v1/rankings/units", token=None, kind="school", basis="organised",
                         limit=1).json()
    monkeypatch.setattr("api.schemas._SNAPSHOTS", _Snapshots())  # the other's memory
    written = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T17:00:00+08:00",
                               "school-late", volunteer=_volunteer(district, district.unit_a),
                               activity=_activity(district, schools[2])).json()["position"]
    with TestClient(create_app(settings.model_copy(update={"admin_token": ADMIN_TOKEN}))) as other:
        assert other.get("/v1/rankings/units", params={
            "kind": "school", "basis": "organised", "min_position": written,
        }).json()["items"][0]["unit_id"] == schools[2]  # the other worker sees the new order
        pages = [first]
        while pages[-1]["next_cursor"] is not None:
            response = other.get("/v1/rankings/units", params={
                "kind": "school", "basis": "organised", "limit": 1,
                "cursor": pages[-1]["next_cursor"]})
            assert response.status_code == 200, response.text
            pages.append(response.json())
    walked = [page["items"][0] for page in pages]
    assert sorted(item["unit_id"] for item in walked) == sorted(schools)  # none twice, none lost
    assert [item["rank"] for item in walked] == [1, 1, 3]  # as ranked when the walk began
    assert {page["position"] for page in pages} == {first["position"]}


def test_the_store_keeps_the_newest_list_versions_for_an_hour(settings: Settings,
                                                              monkeypatch: Any) -> None:
    from api.lists import StoredLists
    from projections.store import ViewStore

    store = ViewStore(settings.store())
    try:
        lists = StoredLists(store)
        monkeypatch.setattr("api.lists.LISTS", 2)
        for n in range(3):
            lists.keep(f"d{n}", 10 + n, [{"rank": n}])
            lists.keep(f"d{n}", 99, [{"rank": "again"}])  # once per digest: the first stays
        assert lists.find("d0") is None  # the oldest of three, beyond the newest two
        assert lists.find("d1") == (11, [{"rank": 1}])
        assert lists.find("d2") == (12, [{"rank": 2}])
        monkeypatch.setattr("api.lists.KEEP_SECONDS", -1.0)
        assert lists.find("d2") is None  # older than the hour a version is kept
    finally:
        store.close()


def test_the_store_keeps_list_versions_compressed_and_within_a_bound_in_bytes(
        settings: Settings, monkeypatch: Any) -> None:
    """bb23: every first page after a write kept a whole copy of its list, uncompressed, so
    anonymous reads of a large ranking grew the store by a megabyte each, up to 200 copies."""
    from api.lists import StoredLists
    from projections.store import ViewStore

    big = [{"rank": i, "unit_id": f"unit-{i:016x}", "total_minutes": i * 7} for i in range(2000)]
    store = ViewStore(settings.store())
    try:
        lists = StoredLists(store)
        lists.keep("d0", 10, big)
        [(size,)] = store.query("SELECT size FROM kept_lists")
        assert size < len(orjson.dumps(big)) / 4
        monkeypatch.setattr("api.lists.MAX_BYTES", int(size * 2.5))
        for n in range(1, 5):
            lists.keep(f"d{n}", 10 + n, [*big, {"rank": n}])
        assert [d for (d,) in store.query("SELECT digest FROM kept_lists ORDER BY kept_at")] \
            == ["d3", "d4"]  # the newest two fit in two and a half times one
        assert lists.find("d4") == (14, [*big, {"rank": 4}])
        assert lists.find("d0") is None
    finally:
        store.close()
