"""`Idempotency-Key` on registrations: a request sent again after a lost answer registers once."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import ADMIN_TOKEN, District, bearer


def send(district: District, path: str, body: dict[str, Any], key: str,
         token: str = ADMIN_TOKEN) -> Any:
    return district.client.post(path, json=body,
                                headers={**bearer(token), "Idempotency-Key": key})


def head(district: District) -> int:
    return int(district.client.app.state.services.ledger.head())  # type: ignore[attr-defined]


def test_a_unit_sent_again_with_its_key_answers_200_with_the_first_id(district: District) -> None:
    body = {"name": "列中社区", "kind": "community", "parent_id": district.unit_a}
    first = send(district, "/v1/units", body, "unit-7")
    assert first.status_code == 201
    stored = head(district)
    again = send(district, "/v1/units", body, "unit-7")
    assert (again.status_code, again.json()) == (200, first.json())
    assert head(district) == stored
    other = send(district, "/v1/units", {**body, "name": "列北社区"}, "unit-7")
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert head(district) == stored
    unkeyed = district.post("/v1/units", body)  # no key: a second unit, as before
    assert unkeyed.status_code == 201 and unkeyed.json()["id"] != first.json()["id"]


def test_a_volunteer_sent_again_keeps_one_id_and_one_number(district: District) -> None:
    body = {"name": "王芳", "home_unit_id": district.unit_a, "registered_on": "2017-02-01",
            "phone": "13912345678"}
    token = district.recorder_a
    first = send(district, "/v1/volunteers", body, "0f7c-v", token)
    assert first.status_code == 201
    again = send(district, "/v1/volunteers", body, "0f7c-v", token)
    assert again.status_code == 200
    assert again.json() == first.json()  # id, volunteer_number and position
    # The key is the recorder's: the admin's same key is another request.
    assert send(district, "/v1/volunteers", body, "0f7c-v").json()["id"] != first.json()["id"]


def test_an_activity_sent_again_in_another_offset_is_the_same_request(district: District) -> None:
    body = {"program_code": "A1", "organiser_unit_id": district.unit_a, "title": "植树",
            "starts_at": "2017-03-12T08:00:00+08:00", "ends_at": "2017-03-12T12:00:00+08:00"}
    first = send(district, "/v1/activities", body, "act-1")
    again = send(district, "/v1/activities", {**body, "starts_at": "2017-03-12T00:00:00Z",
                                              "ends_at": "2017-03-12T04:00:00Z"}, "act-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_a_malformed_key_is_a_422_naming_the_header(district: District) -> None:
    for key in (b"", b"has space", b"x" * 201, "钥匙".encode()):
        response = district.client.post(
            "/v1/units", json={"name": "x", "kind": "town"},
            headers=[*bearer(ADMIN_TOKEN).items(), ("Idempotency-Key", key)])
        assert response.status_code == 422, key
        assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_resend_is_recognised_even_after_what_it_names_has_closed(district: District) -> None:
    """The first send's answer was lost; the unit it named closed since: the resend is still
    the same request, already done (it was a 409 when the request was checked again first)."""
    home = district.post("/v1/units", {"name": "沙洲社区", "kind": "community",
                                       "parent_id": district.unit_a}).json()["id"]
    body = {"name": "王芳", "home_unit_id": home, "registered_on": "2017-02-01"}
    first = send(district, "/v1/volunteers", body, "v-9")
    assert first.status_code == 201, first.text
    activity = {"program_code": "A1", "organiser_unit_id": home, "title": "植树",
                "starts_at": "2017-03-12T08:00:00+08:00", "ends_at": "2017-03-12T12:00:00+08:00"}
    planned = send(district, "/v1/activities", activity, "a-9")
    assert planned.status_code == 201, planned.text
    closed = district.post(f"/v1/units/{home}/closure", {"closed_on": "2017-04-01",
                                                         "reason": "撤并"})
    assert closed.status_code == 200, closed.text
    stored = head(district)
    again = send(district, "/v1/volunteers", body, "v-9")
    assert (again.status_code, again.json()) == (200, first.json())
    assert send(district, "/v1/activities", activity, "a-9").json() == planned.json()
    assert head(district) == stored
    other = send(district, "/v1/volunteers", {**body, "name": "王芬"}, "v-9")
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_key_used_for_one_kind_of_registration_is_refused_for_another(
        district: District) -> None:
    first = send(district, "/v1/units", {"name": "列中社区", "kind": "community",
                                         "parent_id": district.unit_a}, "k-1")
    assert first.status_code == 201
    stored = head(district)
    other = send(district, "/v1/activities", {
        "program_code": "A1", "organiser_unit_id": district.unit_a, "title": "植树",
        "starts_at": "2017-03-12T08:00:00+08:00", "ends_at": "2017-03-12T12:00:00+08:00"}, "k-1")
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert first.json()["id"] in other.json()["errors"][0]["detail"]
    assert head(district) == stored


def test_a_key_or_a_tag_sent_twice_is_a_422_naming_the_header(district: District) -> None:
    """bb20 F3: with two Idempotency-Key lines the server took the first and dropped the
    second, so a retry carrying only the second registered the unit twice. Two If-Match
    lines are a list of tags, as one line with a comma is."""
    auth = ("Authorization", f"Bearer {ADMIN_TOKEN}")
    twice = district.client.post("/v1/units", json={"name": "两把钥匙", "kind": "community"},
                                 headers=[auth, ("Idempotency-Key", "a"),
                                          ("Idempotency-Key", "b")])
    assert twice.status_code == 422, twice.text
    assert twice.json()["errors"][0]["field"] == "Idempotency-Key"
    path = f"/v1/units/{district.unit_b}"
    tag = district.get(path).headers["ETag"]
    tags = district.client.patch(path, json={"name": "新名"},
                                 headers=[auth, ("If-Match", tag), ("If-Match", '"99"')])
    assert tags.status_code == 422 and tags.json()["errors"][0]["field"] == "If-Match"
    assert district.get(path).headers["ETag"] == tag
