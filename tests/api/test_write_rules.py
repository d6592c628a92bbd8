"""Write rules over HTTP: positions of repeats, deregistration and closure dates, numbers that
are numbers, repeated trainings, stations and the unit hierarchy, no-op corrections."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, District, bearer

MAY_31 = ("2017-05-31T09:00:00+08:00", "2017-05-31T10:00:00+08:00")
JULY_1 = ("2017-07-01T09:00:00+08:00", "2017-07-01T10:00:00+08:00")
TRAINING = {"level": "district", "form": "centralised", "audience": "core",
            "title": "骨干志愿者培训", "completed_on": "2017-05-20", "hours": 4}


def created(response: Any) -> str:
    assert response.status_code == 201, response.text
    identifier: str = response.json()["id"]
    return identifier


def all_year(district: District, organiser: str) -> str:
    """An activity open through the whole of 2017."""
    return created(district.post("/v1/activities", {
        "program_code": "A1", "organiser_unit_id": organiser, "title": "关爱空巢老人",
        "starts_at": "2017-01-01T00:00:00+08:00", "ends_at": "2017-12-31T23:00:00+08:00"}))


def raw_post(district: District, path: str, body: str) -> Any:
    return district.client.post(path, content=body.encode(), headers={
        **bearer(ADMIN_TOKEN), "Content-Type": "application/json"})


def test_a_repeated_session_answers_200_with_the_position_it_was_stored_at(
        district: District) -> None:
    first = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00", "r-1")
    created(district.post("/v1/units", {"name": "徐碧街道", "kind": "subdistrict"}))
    again = district.session("2017-03-05T01:00:00Z", "2017-03-05T02:00:00Z", "r-1")
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["position"]) == (first.json()["id"],
                                                              first.json()["position"])


def test_deregistration_takes_late_service_before_it_and_refuses_moves_onto_it(
        district: District) -> None:
    activity = all_year(district, district.unit_a)
    response = district.post(f"/v1/volunteers/{district.volunteer}/deregistration",
                             {"deregistered_on": "2017-06-01", "reason": "搬家"})
    assert response.status_code == 200, response.text
    late = district.session(*MAY_31, "late-1", activity=activity)
    after = district.session(*JULY_1, "after-1", activity=activity)
    moved = district.post(f"/v1/service-sessions/{created(late)}/corrections",
                          {"started_at": JULY_1[0], "ended_at": JULY_1[1], "reason": "move"})
    assert (after.status_code, moved.status_code) == (409, 409)
    assert moved.json()["type"] == after.json()["type"]
    assert moved.json()["type"].endswith("/closed-reference")
    assert [e["field"] for e in moved.json()["errors"]] == ["started_at"]


def test_a_closed_unit_takes_late_service_before_its_closing_date_only(
        district: District) -> None:
    organiser = created(district.post("/v1/units", {"name": "陈大镇", "kind": "town"}))
    activity = all_year(district, organiser)
    closed = district.post(f"/v1/units/{organiser}/closure",
                           {"closed_on": "2017-06-01", "reason": "撤并"})
    assert closed.status_code == 200, closed.text
    late = district.session(*MAY_31, "late-1", activity=activity)
    after = district.session(*JULY_1, "after-1", activity=activity)
    assert (late.status_code, after.status_code) == (201, 409)
    assert after.json()["type"].endswith("/closed-reference")


def test_a_unit_does_not_close_on_or_before_service_credited_to_it(district: District) -> None:
    """Closing a unit before service it organised, or its members served, left those minutes
    credited to a unit closed before they were served (found by three outside testers)."""
    organiser = created(district.post("/v1/units", {"name": "陈大镇", "kind": "town"}))
    home = created(district.post("/v1/units", {"name": "沙洲社区", "kind": "community",
                                               "parent_id": district.unit_a}))
    person = created(district.post("/v1/volunteers", {
        "name": "黄秀英", "home_unit_id": home, "registered_on": "2017-01-01"}))
    served = created(district.session(*JULY_1, "j-1", volunteer=person,
                                      activity=all_year(district, organiser)))

    def close(unit: str, day: str) -> Any:
        return district.post(f"/v1/units/{unit}/closure", {"closed_on": day, "reason": "撤并"})

    for unit, day in ((organiser, "2017-06-01"), (home, "2017-07-01")):
        refused = close(unit, day)
        assert refused.status_code == 409, (unit, refused.text)
        assert refused.json()["type"].endswith("/credited-after-closure")
        assert refused.json()["errors"][0]["field"] == "closed_on"
        assert "2017-07-01" in refused.json()["errors"][0]["detail"]
        assert district.get(f"/v1/units/{unit}").json()["closed_on"] is None
    assert close(home, "2017-07-02").status_code == 200
    voided = district.post(f"/v1/service-sessions/{served}/void", {"reason": "记错了"})
    assert voided.status_code == 200, voided.text
    assert close(organiser, "2017-06-01").status_code == 200
    assert close("unit-nothing", "2017-06-01").status_code == 404


@pytest.mark.parametrize("hours", ["true", '"4"'])
def test_training_hours_of_another_type_are_a_422_naming_hours(district: District,
                                                               hours: str) -> None:
    body = (f'{{"volunteer_id": "{district.volunteer}", "level": "district", '
            f'"form": "centralised", "audience": "core", "title": "t", '
            f'"completed_on": "2017-05-20", "hours": {hours}}}')
    response = raw_post(district, "/v1/training-completions", body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["hours"]


@pytest.mark.parametrize("hours", ["NaN", "Infinity", "-Infinity"])
def test_training_hours_that_are_not_finite_say_so(district: District, hours: str) -> None:
    body = (f'{{"volunteer_id": "{district.volunteer}", "level": "district", '
            f'"form": "centralised", "audience": "core", "title": "t", '
            f'"completed_on": "2017-05-20", "hours": {hours}}}')
    response = raw_post(district, "/v1/training-completions", body)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "hours" and "finite number" in error["detail"]


@pytest.mark.parametrize("year", ['"2017"', "2017.0"])
def test_an_award_year_that_is_not_an_integer_is_a_422_naming_year(district: District,
                                                                   year: str) -> None:
    rules = district.client.put("/v1/award-rules/most_beautiful_volunteer/2017",
                                json={"min_hours_in_year": 0}, headers=bearer(ADMIN_TOKEN))
    assert rules.status_code == 200, rules.text
    body = (f'{{"award": "most_beautiful_volunteer", "year": {year}, '
            f'"recipient_id": "{district.volunteer}", "decision_ref": "x"}}')
    response = raw_post(district, "/v1/awards", body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["year"]


@pytest.mark.parametrize("year", ['"2017"', "2017.0"])
def test_an_insurance_year_that_is_not_an_integer_is_a_422_naming_year(district: District,
                                                                       year: str) -> None:
    body = f'{{"year": {year}, "policy_ref": "P-1", "insurer": "人保财险"}}'
    response = raw_post(district, f"/v1/volunteers/{district.volunteer}/insurance", body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["year"]


def test_the_same_training_again_answers_200_with_the_original_id_and_position(
        district: District) -> None:
    body = {"volunteer_id": district.volunteer, **TRAINING}
    first = district.post("/v1/training-completions", body)
    created(district.post("/v1/units", {"name": "徐碧街道", "kind": "subdistrict"}))
    again = district.post("/v1/training-completions", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours",
                         min_position=again.json()["position"]).json()
    assert hours["training_minutes"] == 240


def test_the_same_training_with_other_hours_is_a_409_naming_the_record(
        district: District) -> None:
    first = district.post("/v1/training-completions",
                          {"volunteer_id": district.volunteer, **TRAINING})
    other = district.post("/v1/training-completions",
                          {"volunteer_id": district.volunteer, **TRAINING, "hours": 6})
    assert other.status_code == 409
    assert first.json()["id"] in other.json()["detail"]
    assert [e["field"] for e in other.json()["errors"]] == ["hours"]


def test_a_station_must_be_a_unit_of_kind_station(district: District) -> None:
    response = district.post("/v1/activities", {
        "program_code": "B1", "organiser_unit_id": district.unit_a, "title": "x",
        "starts_at": "2017-03-05T08:00:00+08:00", "ends_at": "2017-03-05T09:00:00+08:00",
        "station_unit_id": district.unit_b})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["station_unit_id"]


def test_the_unit_hierarchy_is_kept_on_registration_and_on_moves(district: District) -> None:
    community = created(district.post("/v1/units", {
        "name": "新街社区", "kind": "community", "parent_id": district.unit_a}))
    answers = [
        district.post("/v1/units", {"name": "另一区", "kind": "district",
                                    "parent_id": community}),
        district.post("/v1/units", {"name": "陈大镇", "kind": "town", "parent_id": community}),
        district.client.patch(f"/v1/units/{district.unit_b}", json={"parent_id": community},
                              headers=bearer(ADMIN_TOKEN)),
    ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["parent_id"]


def test_a_correction_to_the_current_times_answers_200_and_writes_nothing(
        district: District) -> None:
    session = created(district.session("2017-03-05T09:00:00+08:00",
                                       "2017-03-05T10:00:00+08:00", "r-1"))
    path = f"/v1/service-sessions/{session}/corrections"
    body = {"started_at": "2017-03-05T09:00:00+08:00", "ended_at": "2017-03-05T11:00:00+08:00",
            "reason": "wrong hour"}
    first = district.post(path, body)
    created(district.post("/v1/units", {"name": "徐碧街道", "kind": "subdistrict"}))
    again = district.post(path, {**body, "started_at": "2017-03-05T01:00:00Z"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() == {"id": session, "minutes": 120,
                                            "position": first.json()["position"]}
    assert district.get(f"/v1/service-sessions/{session}").json()["version"] == 2


@pytest.mark.parametrize(("path", "body", "fields"), [
    ("/v1/service-sessions", {"started_at": "0001-01-01T00:00:00+08:00",
                              "ended_at": "0001-01-01T01:00:00+08:00",
                              "source_record_id": "year-1"}, ["started_at", "ended_at"]),
    ("/v1/service-sessions", {"started_at": "0001-01-01T00:00:00+14:00",
                              "ended_at": "0001-01-01T01:00:00+14:00",
                              "source_record_id": "year-1-east"}, ["started_at", "ended_at"]),
    ("/v1/activities", {"starts_at": "0001-01-01T00:00:00+14:00",
                        "ends_at": "2017-01-01T00:00:00+08:00"}, ["starts_at"]),
    ("/v1/activities", {"starts_at": "9999-12-31T00:00:00-12:00",
                        "ends_at": "9999-12-31T23:00:00-12:00"}, ["starts_at", "ends_at"]),
    ("/v1/activities", {"starts_at": "2017-01-01T00:00:00+08:00",
                        "ends_at": "3000-01-01T00:00:00+08:00"}, ["ends_at"]),
    ("/v1/volunteers", {"name": "张三", "registered_on": "1800-01-01"}, ["registered_on"]),
    ("/v1/volunteers", {"name": "李四", "registered_on": "2017-01-01",
                        "birth_date": "1850-01-01"}, ["birth_date"]),
], ids=["session-year-1", "session-year-1-east", "activity-year-1", "activity-year-9999",
        "activity-year-3000", "registered-1800", "born-1850"])
def test_a_time_or_day_out_of_the_ledger_s_range_is_a_422_naming_it(
        district: District, path: str, body: dict[str, Any], fields: list[str]) -> None:
    """Near year 1 or 9999 an instant cannot be turned into district time (it was a 500, and
    a failed batch of writes for every caller sharing it); before 1900 no record belongs.
    Both ends of a time out of range are named."""
    full = {"volunteer_id": district.volunteer, "activity_id": district.activity,
            "program_code": "A1", "organiser_unit_id": district.unit_a, "title": "t",
            "home_unit_id": district.unit_a, **body}
    wanted = {"/v1/service-sessions": ("volunteer_id", "activity_id", "started_at",
                                       "ended_at", "source_record_id"),
              "/v1/activities": ("program_code", "organiser_unit_id", "title", "starts_at",
                                 "ends_at"),
              "/v1/volunteers": ("name", "home_unit_id", "registered_on", "birth_date")}[path]
    response = district.post(path, {k: v for k, v in full.items() if k in wanted})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == fields


def test_a_day_before_1900_is_a_422_for_every_day_a_record_names(district: District) -> None:
    volunteer = district.volunteer
    for path, body, field in (
            (f"/v1/volunteers/{volunteer}/transfers",
             {"to_unit_id": district.unit_b, "effective_on": "1899-12-31"}, "effective_on"),
            (f"/v1/volunteers/{volunteer}/deregistration",
             {"deregistered_on": "0001-01-01", "reason": "搬迁"}, "deregistered_on"),
            ("/v1/training-completions",
             {**TRAINING, "volunteer_id": volunteer, "completed_on": "1066-10-14"},
             "completed_on"),
            (f"/v1/units/{district.unit_b}/closure",
             {"closed_on": "0001-01-01", "reason": "撤并"}, "closed_on")):
        response = district.post(path, body)
        assert response.status_code == 422, (path, response.text)
        assert [e["field"] for e in response.json()["errors"]] == [field], path


def test_training_hours_are_whole_minutes_as_written_and_at_least_one(
        district: District) -> None:
    too_short = district.post("/v1/training-completions", {
        **TRAINING, "volunteer_id": district.volunteer, "hours": 0.001})
    assert too_short.status_code == 422, too_short.text
    assert [e["field"] for e in too_short.json()["errors"]] == ["hours"]
    # 4.35 h is 261 minutes (4.35 * 60 in binary floating point is 260.99…).
    created(district.post("/v1/training-completions", {
        **TRAINING, "volunteer_id": district.volunteer, "hours": 4.35}))
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()
    assert hours["training_minutes"] == 261


@pytest.mark.parametrize("name", ["\u200b", " \ufeff\u200b ", "\t\u2028"],
                         ids=["zero-width-space", "bom-and-spaces", "separators"])
def test_a_name_that_shows_nothing_is_empty(district: District, name: str) -> None:
    response = district.post("/v1/units", {"name": name, "kind": "community",
                                           "parent_id": district.unit_a})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["name"]
    # Hidden characters at either end are refused too, not trimmed (bb28 F2): what is stored
    # is what was sent, spaces at either end aside.
    hidden = district.post("/v1/units", {"name": "\u200b列东街道\u200b", "kind": "subdistrict"})
    assert hidden.status_code == 422 and "U+200B" in hidden.text, hidden.text
    unit = created(district.post("/v1/units", {"name": " 列东街道\u3000", "kind": "subdistrict"}))
    assert district.get(f"/v1/units/{unit}").json()["name"] == "列东街道"


def test_a_volunteer_of_a_closed_unit_serves_again_only_once_transferred(
        district: District) -> None:
    """The members basis credits the volunteer's unit on the service date, so that unit must
    not have closed by then (no credit for a unit that no longer is)."""
    home = created(district.post("/v1/units", {"name": "沙洲社区", "kind": "community",
                                               "parent_id": district.unit_a}))
    person = created(district.post("/v1/volunteers", {
        "name": "黄秀英", "home_unit_id": home, "registered_on": "2017-01-01"}))
    activity = all_year(district, district.unit_a)
    closed = district.post(f"/v1/units/{home}/closure", {"closed_on": "2017-06-30",
                                                         "reason": "撤并"})
    assert closed.status_code == 200, closed.text
    before = district.session(*MAY_31, "home-before", volunteer=person, activity=activity)
    after = district.session(*JULY_1, "home-after", volunteer=person, activity=activity)
    assert (before.status_code, after.status_code) == (201, 409), after.text
    assert [e["field"] for e in after.json()["errors"]] == ["volunteer_id"]
    moved = district.post(f"/v1/volunteers/{person}/transfers",
                          {"to_unit_id": district.unit_b, "effective_on": "2017-06-30"})
    assert moved.status_code == 201, moved.text
    again = district.session(*JULY_1, "home-after", volunteer=person, activity=activity)
    assert again.status_code == 201, again.text
    # Service before the closing date is still recorded late, as it truly happened.
    early = district.post("/v1/service-sessions/batch", {"records": [{
        "volunteer_id": person, "activity_id": activity, "source_record_id": "home-b",
        "started_at": "2017-06-29T09:00:00+08:00", "ended_at": "2017-06-29T10:00:00+08:00"}]})
    assert early.json()["results"][0]["status"] == "accepted"


def test_a_name_or_a_token_label_is_one_line(district: District) -> None:
    """A line break in a label forged a second line in `vledger tokens list`."""
    for name in ("列东\n街道", "列东\u2028街道", "列东\u2029街道"):
        unit = district.post("/v1/units", {"name": name, "kind": "subdistrict"})
        assert unit.status_code == 422 and unit.json()["errors"][0]["field"] == "name", name
    renamed = district.client.patch(f"/v1/units/{district.unit_a}", json={"name": "列东\n街道"},
                                    headers=bearer(ADMIN_TOKEN))
    assert renamed.status_code == 422 and renamed.json()["errors"][0]["field"] == "name"
    token = district.post("/v1/tokens", {"role": "auditor",
                                         "label": "evil\nfake-id\tadmin\t\tx\tlive"})
    assert token.status_code == 422, token.text
    assert token.json()["errors"][0]["field"] == "label"


@pytest.mark.parametrize("ch", ["\u202e", "\u2066", "\u200b", "\u200f", "\ufeff"],
                         ids=["rlo", "lri", "zwsp", "rlm", "bom"])
def test_a_name_title_or_reason_hiding_a_format_character_is_a_422_saying_which(
        district: District, ch: str) -> None:
    """A right-to-left override made 林小梅 of another name in every report (Trojan source)."""
    code = f"U+{ord(ch):04X}"
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    head = ledger.head()
    attempts = [
        ("name", "/v1/units", {"name": f"列东{ch}街道", "kind": "subdistrict"}),
        ("name", "/v1/volunteers", {"name": f"林{ch}小梅", "home_unit_id": district.unit_a,
                                    "registered_on": "2017-01-10"}),
        ("title", "/v1/activities", {"program_code": "B5", "organiser_unit_id": district.unit_a,
                                     "title": f"学雷锋{ch}纪念日", "starts_at": MAY_31[0],
                                     "ends_at": MAY_31[1]}),
        ("reason", f"/v1/activities/{district.activity}/cancellation", {"reason": f"下雨{ch}取消"}),
    ]
    for field, path, body in attempts:
        refused = district.post(path, body)
        assert refused.status_code == 422, (path, refused.text)
        [error] = refused.json()["errors"]
        assert error["field"] == field and code in error["detail"], (path, error)
    renamed = district.client.patch(f"/v1/units/{district.unit_a}", json={"name": f"列{ch}东"},
                                    headers=bearer(ADMIN_TOKEN))
    assert renamed.status_code == 422 and code in renamed.json()["errors"][0]["detail"]
    assert ledger.head() == head
    assert district.get(f"/v1/units/{district.unit_a}").json()["name"] == "列东街道"


def test_minority_names_with_the_middle_dot_and_spaces_are_kept(district: District) -> None:
    for name in ("阿依古丽·买买提", "买买提・艾力", "Anna Lee"):
        person = created(district.post("/v1/volunteers", {
            "name": name, "home_unit_id": district.unit_a, "registered_on": "2017-01-10"}))
        assert district.get(f"/v1/volunteers/{person}").json()["name"] == name


def test_an_empty_unit_patch_is_a_422_naming_the_body_and_writes_nothing(
        district: District) -> None:
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    head = ledger.head()
    for body, field, says in (({}, "body", "no field to change"), ({"name": None}, "name",
                                                                     "cannot be removed")):
        refused = district.client.patch(f"/v1/units/{district.unit_a}", json=body,
                                        headers=bearer(ADMIN_TOKEN))
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == field and says in error["detail"], error
    assert ledger.head() == head
    assert district.get(f"/v1/units/{district.unit_a}").json()["name"] == "列东街道"


def test_a_unit_patch_changes_both_fields_or_neither_and_honours_if_match(
        district: District) -> None:
    """A rename and a refused move in one PATCH used to store the rename and answer 422."""
    path = f"/v1/units/{district.unit_b}"
    tag = district.get(path).headers["ETag"]

    def patch(body: dict[str, Any], **headers: str) -> Any:
        return district.client.patch(path, json=body, headers={**bearer(ADMIN_TOKEN), **headers})

    refused = patch({"name": "新名", "parent_id": "unit-nothing"})
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["parent_id"]
    assert district.get(path).json()["name"] == "列西街道"
    assert district.get(path).headers["ETag"] == tag
    both = patch({"name": "新名", "parent_id": None}, **{"If-Match": tag})
    assert both.status_code == 200, both.text
    unit = district.get(path)
    assert (unit.json()["name"], unit.json()["parent_id"]) == ("新名", None)
    assert unit.headers["ETag"] == f'"{unit.json()["version"]}"' != tag
    stale = patch({"name": "旧名"}, **{"If-Match": tag})
    assert stale.status_code == 412
    assert stale.json()["errors"][0]["field"] == "If-Match"
    assert district.get(path).json()["name"] == "新名"


def test_a_unit_closure_honours_if_match(district: District) -> None:
    """bb20 F2: a closure sent with a stale or weak tag closed the unit (200), while a PATCH
    with the same tag was a 412."""
    path = f"/v1/units/{district.unit_b}"
    tag = district.get(path).headers["ETag"]
    renamed = district.client.patch(path, json={"name": "列西街道办"}, headers=bearer(ADMIN_TOKEN))
    assert renamed.status_code == 200, renamed.text

    def close(**headers: str) -> Any:
        return district.client.post(f"{path}/closure", json={
            "closed_on": "2017-01-05", "reason": "merged"}, headers={**bearer(ADMIN_TOKEN),
                                                                   **headers})

    stale = close(**{"If-Match": tag})
    assert stale.status_code == 412 and stale.json()["errors"][0]["field"] == "If-Match"
    assert close(**{"If-Match": 'W/"zzz"'}).status_code == 422
    assert district.get(path).json()["closed_on"] is None
    current = district.get(path).headers["ETag"]
    assert close(**{"If-Match": current}).status_code == 200
    assert district.get(path).json()["closed_on"] == "2017-01-05"
