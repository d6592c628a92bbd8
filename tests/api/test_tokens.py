"""Tokens over HTTP: issued once in plain text, listed page by page, revoked for good."""

from __future__ import annotations

from typing import Any

import pytest

from api.deps import Grants
from ledger import Ledger, Settings
from ledger.access import token_id_for
from ledger.guards import relying_on_grant
from tests.api.conftest import ADMIN_TOKEN, District, bearer, issue
from tests.factories import ADMIN, at, lands_before_next_save, recorder_of, session_record


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


# -- a token revoked while its request waits to be stored (bb20 F1) -------------------------


def _session(district: District, source: str, hour: int = 9) -> dict[str, Any]:
    return {"volunteer_id": district.volunteer, "activity_id": district.activity,
            "started_at": f"2017-03-05T{hour:02d}:00:00+08:00",
            "ended_at": f"2017-03-05T{hour:02d}:30:00+08:00", "source_record_id": source}


WRITES = {  # a grouped write, a batch, a keyed registration
    "/v1/service-sessions": lambda d: _session(d, "revoked-1"),
    "/v1/service-sessions/batch": lambda d: {"records": [_session(d, "revoked-2")]},
    "/v1/volunteers": lambda d: {"name": "林小兰", "home_unit_id": d.unit_a,
                                 "registered_on": "2017-01-10"},
}


@pytest.mark.parametrize("path", WRITES)
def test_a_write_let_in_before_its_token_was_revoked_but_stored_after_is_a_401(
        district: District, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The request is admitted while the token is live; the office's revocation commits
    before the request's insert: the write is refused, as the token is from then on."""
    token = issue(district.client, "recorder", district.unit_a)
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    heads: list[int] = []

    def revoke() -> None:
        with relying_on_grant(None):  # the office's own request
            heads.append(ledger.revoke_token(ADMIN, token_id_for(token), "gone").position)

    revoked = lands_before_next_save(ledger, monkeypatch, revoke)
    response = district.client.post(path, json=WRITES[path](district),
                                    headers={**bearer(token), "Idempotency-Key": "k-1"}
                                    if path == "/v1/volunteers" else bearer(token))
    assert revoked and response.status_code == 401, response.text
    assert response.json()["detail"] == "unknown or revoked token"
    assert response.json()["type"].endswith("/unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert ledger.head() == heads[0]  # nothing stored after the revocation


def test_a_live_tokens_write_that_lost_a_race_is_run_again_not_refused(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = district.client.app.state.services.ledger  # type: ignore[attr-defined]
    rival = lands_before_next_save(ledger, monkeypatch, lambda: ledger.record_sessions(
        recorder_of(district.unit_a), [session_record(
            district.volunteer, district.activity, at(9), at(9, 30), "rival")]))
    response = district.post("/v1/service-sessions", _session(district, "raced", hour=10),
                             district.recorder_a)
    assert rival and response.status_code == 201, response.text
    assert len(ledger.get_volunteer(district.volunteer).sessions) == 2


def test_the_bootstrap_admin_token_is_not_revocable_and_says_why(district: District) -> None:
    """bb22: its actor id, `admin-token`, is on every event it made, and revoking it was a 404
    "no token with id 'admin-token'"."""
    response = district.post("/v1/tokens/admin-token/revoke", {"reason": "rotating"})
    assert response.status_code == 409, response.text
    assert "VLEDGER_ADMIN_TOKEN" in response.json()["detail"]
    assert district.get("/v1/tokens").status_code == 200  # and it still works
