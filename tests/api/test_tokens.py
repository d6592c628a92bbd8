"""Tokens over HTTP: issued once in plain text, listed page by page, revoked for good."""

from __future__ import annotations

from tests.api.conftest import ADMIN_TOKEN, District, bearer


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
