"""GET /v1/awards: awards granted and revoked, from the awards view (bb36 F6)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ADMIN_TOKEN, District, bearer

ENTRY = {"id", "award", "year", "recipient_id", "recipient_kind", "decision_ref",
         "rules_version", "status", "revoked_reason", "version"}


def _grant(d: District, award: str, year: int, recipient: str, ref: str = "梅文明〔2017〕12号"
           ) -> dict[str, Any]:
    rules = {"min_hours_in_year": 1} if award != "best_project" else {"min_sessions": 1}
    response = d.client.put(f"/v1/award-rules/{award}/{year}", json=rules,
                            headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200, response.text
    response = d.post("/v1/awards", {"award": award, "year": year, "recipient_id": recipient,
                                     "decision_ref": ref}, token=d.committee)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _awards(d: District, **params: Any) -> Any:
    response = d.get("/v1/awards", token=d.committee, **params)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(body: Any) -> list[str]:
    return [item["id"] for item in body["items"]]


def _three(d: District) -> tuple[str, str, str]:
    """Awards of 2018 and 2017 to the volunteer, and of 2017 to program B5, granted in an
    order that is not the list's."""
    late = _grant(d, "most_beautiful_volunteer", 2018, d.volunteer)["id"]
    program = _grant(d, "best_project", 2017, "B5")["id"]
    early = _grant(d, "most_beautiful_volunteer", 2017, d.volunteer)["id"]
    return program, early, late


def test_lists_an_award_as_get_one_answers_it(district: District) -> None:
    granted = _grant(district, "most_beautiful_volunteer", 2017, district.volunteer)
    body = _awards(district, min_position=granted["position"])
    (entry,) = body["items"]
    assert set(entry) == ENTRY and body["next_cursor"] is None
    one = district.get(f"/v1/awards/{granted['id']}", token=district.auditor).json()
    assert entry["status"] == "granted" and one["revoked"] is False
    for field in ENTRY - {"status"}:
        assert entry[field] == one[field], field
    assert entry["recipient_kind"] == "volunteer" and entry["decision_ref"] == "梅文明〔2017〕12号"


def test_awards_come_by_year_award_and_recipient(district: District) -> None:
    program, early, late = _three(district)
    assert _ids(_awards(district)) == [program, early, late]


def test_a_revoked_award_is_listed_with_its_status_and_reason(district: District) -> None:
    program, early, late = _three(district)
    response = district.post(f"/v1/awards/{early}/revoke", {"reason": "证据不足"},
                             token=district.committee)
    assert response.status_code == 200, response.text
    body = _awards(district, min_position=response.json()["position"])
    revoked = next(e for e in body["items"] if e["id"] == early)
    assert (revoked["status"], revoked["revoked_reason"]) == ("revoked", "证据不足")
    assert revoked["version"] == 2
    assert _ids(_awards(district, status="revoked")) == [early]
    assert _ids(_awards(district, status="granted")) == [program, late]


def test_filters_by_year_award_and_recipient(district: District) -> None:
    program, early, late = _three(district)
    assert _ids(_awards(district, year=2017)) == [program, early]
    assert _ids(_awards(district, award="most_beautiful_volunteer")) == [early, late]
    assert _ids(_awards(district, recipient_id="B5")) == [program]
    assert _ids(_awards(district, recipient_id=district.volunteer, year=2018)) == [late]
    assert _ids(_awards(district, recipient_id="vol-nobody")) == []


def test_paging_with_a_small_limit_serves_each_award_once(district: District) -> None:
    program, early, late = _three(district)
    seen: list[str] = []
    cursor = None
    while True:
        body = _awards(district, limit=1, **({"cursor": cursor} if cursor else {}))
        assert len(body["items"]) <= 1
        seen += _ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [program, early, late]


def test_bad_filters_are_a_422_naming_each(district: District) -> None:
    for params, fields in (({"year": 1999}, ["year"]), ({"year": "x"}, ["year"]),
                           ({"award": "best_person"}, ["award"]),
                           ({"status": "live"}, ["status"]), ({"limit": 5001}, ["limit"]),
                           ({"cursor": "abc"}, ["cursor"]), ({"yaer": 2017}, ["yaer"])):
        response = district.get("/v1/awards", token=district.committee, **params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == fields, (params, response.text)
