"""Tokens over HTTP: issued once in plain text, listed page by page, revoked for good."""

from __future__ import annotations

import pytest

from api.deps import Grants
from ledger import Ledger, Settings
from tests.api.conftest import ADMIN_TOKEN, District, bearer
from tests.factories import ADMIN


def test_tokens_are_listed_page_by_page_and_never_shown(district: District) -> None:
    issued = district.post("/v1/tokens", {"role": "committee", "label": "paging"}).json()
    seen: list[dict[str, object]] = []
    cursor = None
    while True:
        page = district.get("/v1/tokens", token=district.auditor, limit=2,
                            **({"cursor": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len({t["id"] for t in seen}) >= 5  # every token once, none twice
    assert issued["token"] not in str(seen)
    mine = next(t for t in seen if t["id"] == issued["id"])
    assert (mine["role"], mine["revoked"]) == ("committee", False)
    assert any(t["revoked"] for t in seen)  # the district's revoked auditor


def test_a_revoked_token_is_refused_at_once(district: District) -> None:
    issued = district.post("/v1/tokens", {"role": "auditor", "label": "short-lived"}).json()
    assert district.get("/v1/events", token=issued["token"]).status_code == 200
    revoked = district.client.post(f"/v1/tokens/{issued['id']}/revoke",
                                   json={"reason": "left the office"},
                                   headers=bearer(ADMIN_TOKEN))
    assert revoked.status_code == 200
    assert district.get("/v1/events", token=issued["token"]).status_code == 401


def test_a_token_revoked_elsewhere_is_refused_on_the_next_request(
        district: District, settings: Settings) -> None:
    """The API remembers grants it has loaded; a revocation by another process (here the
    ledger `vledger tokens revoke` opens) still takes effect on the very next request."""
    issued = district.post("/v1/tokens", {"role": "committee", "label": "remembered"}).json()
    for _ in range(3):
        assert district.get("/v1/rankings/units", token=issued["token"],
                            year=2017, kind="subdistrict").status_code == 200
    elsewhere = Ledger(settings)
    try:
        elsewhere.revoke_token(ADMIN, issued["id"], "left the committee")
    finally:
        elsewhere.close()
    refused = district.get("/v1/rankings/units", token=issued["token"],
                           year=2017, kind="subdistrict")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "unknown or revoked token"


def test_a_grant_is_loaded_once_while_it_is_unchanged(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    issued = district.post("/v1/tokens", {"role": "auditor", "label": "counted"}).json()
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    loads: list[str] = []
    real = ledger.token_grant

    def counted(token: str) -> object:
        loads.append(token)
        return real(token)

    monkeypatch.setattr(ledger, "token_grant", counted)
    for _ in range(5):
        assert district.get("/v1/events", token=issued["token"], limit=1).status_code == 200
    assert loads == [issued["token"]]
    # A token no grant was issued for is refused by the version lookup alone.
    assert district.get("/v1/events", token="vl_never-issued", limit=1).status_code == 401
    assert loads == [issued["token"]]
    # Another secret names another grant id (the id is a prefix of the digest): refused alike.
    assert district.get("/v1/events", token=issued["token"] + "x", limit=1).status_code == 401
    assert loads == [issued["token"]]


def test_the_remembered_grants_are_bounded(district: District,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Grants, "LIMIT", 2)
    grants = district.client.app.state.services.grants  # type: ignore[attr-defined]
    tokens = [district.post("/v1/tokens", {"role": "auditor", "label": f"bounded {n}"}).json()
              ["token"] for n in range(3)]
    for token in tokens:
        assert district.get("/v1/events", token=token, limit=1).status_code == 200
    assert len(grants._seen) == 2
    assert district.get("/v1/events", token=tokens[0], limit=1).status_code == 200  # again


def test_token_writes_answer_once_the_views_hold_them(district: District) -> None:
    # Grants and revocations are events like any other: in inline mode the views (the audit
    # log, the feed's readers) have read them when the write answers, as after every write.
    issued = district.post("/v1/tokens", {"role": "committee", "label": "inline"}).json()
    views = district.get("/v1/rankings/units", token=None, kind="subdistrict").json()
    assert views["position"] == issued["position"]
    revoked = district.client.post(f"/v1/tokens/{issued['id']}/revoke", json={"reason": "done"},
                                   headers=bearer(ADMIN_TOKEN)).json()
    views = district.get("/v1/rankings/units", token=None, kind="subdistrict").json()
    assert views["position"] == revoked["position"] > issued["position"]


def test_a_label_of_100_kb_is_a_422_naming_label_and_issues_nothing(district: District) -> None:
    before = district.get("/v1/tokens").json()["items"]
    refused = district.post("/v1/tokens", {"role": "auditor", "label": "x" * 100_000})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in refused.json()["errors"]] == ["label"]
    assert "200" in refused.json()["errors"][0]["detail"]
    assert district.get("/v1/tokens").json()["items"] == before
    kept = district.post("/v1/tokens", {"role": "auditor", "label": "阿" * 200})
    assert kept.status_code == 201, kept.text


def test_a_label_hiding_a_bidi_override_is_a_422_saying_which_character(
        district: District) -> None:
    refused = district.post("/v1/tokens", {"role": "auditor", "label": "clerk \u202enimda"})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "label" and "U+202E" in error["detail"]
