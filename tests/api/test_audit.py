"""History as of a moment, the event feed, and proofs an auditor can check independently."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

import api.routes.audit as audit_routes
import projections.history as history_module
from ledger.errors import AuditLogAltered
from projections.merkle import verify_consistency, verify_inclusion
from projections.signing import verify_checkpoint
from tests.api.conftest import ADMIN_TOKEN, District, bearer
from tests.factories import tamper_with_events


def test_history_as_of_a_past_moment_leaves_out_later_events(district: District) -> None:
    sid = district.session("2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00",
                           "h-1").json()["id"]
    time.sleep(0.01)
    moment = datetime.now(UTC).isoformat()
    time.sleep(0.01)
    district.post(f"/v1/service-sessions/{sid}/void", {"reason": "wrong volunteer"})
    now = district.get(f"/v1/volunteers/{district.volunteer}/history",
                       token=district.auditor).json()
    then = district.get(f"/v1/volunteers/{district.volunteer}/history",
                        token=district.auditor, as_of=moment).json()
    assert "ServiceSession.Voided" in [e["type"] for e in now["events"]]
    assert "ServiceSession.Voided" not in [e["type"] for e in then["events"]]
    assert all({"position", "type", "recorded_at", "actor", "data"} <= set(e)
               for e in now["events"])


def test_the_event_feed_is_in_position_order_and_pages(district: District) -> None:
    first = district.get("/v1/events", token=district.auditor, after=0, limit=3).json()
    positions = [e["position"] for e in first["events"]]
    assert positions == sorted(positions) and len(positions) == 3
    nxt = district.get("/v1/events", token=district.auditor, after=first["next_after"],
                       limit=3).json()
    assert nxt["events"][0]["position"] > positions[-1]
    # bb36 F10: masked or not by the token, so no shared cache may serve it to another.
    answer = district.get("/v1/events", token=district.auditor, after=0, limit=3)
    assert answer.headers["vary"] == "Authorization"
    assert answer.headers["cache-control"] == "no-cache"


def test_a_checkpoint_verifies_with_the_published_key(district: District) -> None:
    checkpoint = district.get("/v1/audit/checkpoint", token=None).json()
    key = district.client.get("/v1/audit/public-key").text
    assert verify_checkpoint(key, checkpoint)
    forged = {**checkpoint, "tree_size": checkpoint["tree_size"] + 1}
    assert not verify_checkpoint(key, forged)


def test_an_inclusion_proof_leads_to_the_signed_root(district: District) -> None:
    checkpoint = district.get("/v1/audit/checkpoint", token=None).json()
    proof = district.get("/v1/audit/inclusion", token=district.auditor, position=3,
                         tree_size=checkpoint["tree_size"]).json()
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), proof["leaf_index"],
                            proof["tree_size"], [bytes.fromhex(h) for h in proof["hashes"]],
                            bytes.fromhex(checkpoint["root_hash"]))


def test_a_proof_for_a_tree_larger_than_the_log_is_a_422(district: District) -> None:
    response = district.get("/v1/audit/consistency", token=district.auditor, first=1,
                            second=10**6)
    assert response.status_code == 422


@pytest.mark.parametrize("params", [{"position": 10**6}, {"position": 1, "tree_size": 10**6}],
                         ids=["position", "tree_size"])
def test_an_inclusion_proof_beyond_the_log_is_a_422_naming_the_parameter(
        district: District, params: dict[str, int]) -> None:
    """Both are query parameters (404 is for an unknown id in the path)."""
    response = district.get("/v1/audit/inclusion", token=district.auditor, **params)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [list(params)[-1]]


def test_history_and_checkpoint_carry_an_etag_that_a_later_write_changes(
        district: District) -> None:
    paths = [f"/v1/volunteers/{district.volunteer}/history", "/v1/audit/checkpoint"]
    tags = {}
    for path in paths:
        first = district.get(path, token=district.auditor)
        assert first.status_code == 200 and first.headers["etag"].startswith('W/"')
        tags[path] = first.headers["etag"]
        again = district.client.get(path, headers={"Authorization": f"Bearer {district.auditor}",
                                                   "If-None-Match": tags[path]})
        assert again.status_code == 304, path
    written = district.session("2017-03-05T15:00:00+08:00", "2017-03-05T16:00:00+08:00",
                               "etag-later")
    assert written.status_code == 201, written.text
    for path in paths:
        changed = district.client.get(path, headers={
            "Authorization": f"Bearer {district.auditor}", "If-None-Match": tags[path]})
        assert changed.status_code == 200 and changed.headers["etag"] != tags[path], path


def test_a_checkpoint_over_changed_events_is_refused_with_a_problem(district: District) -> None:
    published = district.get("/v1/audit/checkpoint", token=None)
    assert published.status_code == 200
    services = district.client.app.state.services  # type: ignore[attr-defined]
    ledger, store = services.ledger, services.models.store
    [first] = ledger.recorder.select_notifications(1, 1)
    changed = bytes(first.state).replace(b"A1", b"Z9", 1)
    assert changed != bytes(first.state)
    tamper_with_events(store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (changed, first.id))
    with pytest.raises(AuditLogAltered, match="no seal"):  # bb38 F2: not folded again
        services.models.runner.rebuild(["audit"])
    # An operator who holds the signing key too seals the changed event anew.
    [(_, mac)] = ledger.seals.seals([first.id], [StoredEvent(
        first.originator_id, first.originator_version, first.topic, changed)])
    with store.transaction() as cur:
        cur.execute("UPDATE event_seals SET mac = ? WHERE position = ?", (mac, first.id))
    services.models.runner.rebuild(["audit"])

    refused = district.get("/v1/audit/checkpoint", token=None)
    assert refused.status_code == 500, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/audit-log-altered")
    detail = " ".join(refused.json()["detail"].split())
    assert "published" in detail
    # bb38 F9: the log is consistent with itself, so both causes are named, and who tells.
    assert "either events were changed" in detail and "leaves or subtree hashes" in detail
    assert "`vledger verify` names which" in detail


def _hours(district: District, n: int) -> None:
    for i in range(n):  # 20 minutes each half hour, on the activity's day
        hour, minute = divmod(8 * 60 + 30 * i, 60)
        written = district.session(f"2017-03-05T{hour:02d}:{minute:02d}:00+08:00",
                                   f"2017-03-05T{hour:02d}:{minute + 20:02d}:00+08:00",
                                   f"f9-{i}")
        assert written.status_code == 201, written.text


def test_a_checkpoint_over_a_changed_subtree_hash_names_the_hash_not_the_events(
        district: District) -> None:
    """bb38 F9: only a stored subtree hash (audit_nodes) was changed, and the checkpoint route
    blamed the events. The root's own blocks, O(log n) rows, tell it apart."""
    _hours(district, 16)  # a tree with a stored block of 16 leaves at least
    published = district.get("/v1/audit/checkpoint", token=None)
    assert published.status_code == 200
    store = district.client.app.state.services.models.store  # type: ignore[attr-defined]
    with store.transaction() as cur:  # the tree's first block, which its root is built from
        cur.execute("UPDATE audit_nodes SET hash = ? WHERE idx = 0 AND level = "
                    "(SELECT MAX(level) FROM audit_nodes)", (bytes(32),))

    refused = district.get("/v1/audit/checkpoint", token=None)
    assert refused.status_code == 500, refused.text
    detail = " ".join(refused.json()["detail"].split())
    assert "stored subtree hash at level" in detail and "the events may be intact" in detail
    assert "events were changed" not in detail and "events or their leaves" not in detail


def test_a_replaced_published_checkpoint_is_named_so(district: District) -> None:
    """The operator put a root of their own in the published row: the events are not to
    blame, and the row is what the route names."""
    assert district.get("/v1/audit/checkpoint", token=None).status_code == 200
    store = district.client.app.state.services.models.store  # type: ignore[attr-defined]
    with store.transaction() as cur:
        cur.execute("UPDATE audit_published SET root_hash = ?", ("00" * 32,))
    _hours(district, 1)  # a new tree: a new checkpoint is signed, over the published one

    refused = district.get("/v1/audit/checkpoint", token=None)
    assert refused.status_code == 500, refused.text
    detail = " ".join(refused.json()["detail"].split())
    assert "replaced in the database" in detail and "events were changed" not in detail


@pytest.mark.parametrize("change", ["changed", "deleted"])
def test_no_inclusion_proof_is_given_for_an_event_changed_or_deleted_in_the_store(
        district: District, change: str, caplog: pytest.LogCaptureFixture) -> None:
    """The proof would vouch for the leaf the log took in, not for what the store now holds:
    the answer is the audit-log-altered problem instead, naming the position; and the log
    says so as an error, for whoever watches it."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    position = district.session("2017-03-05T15:00:00+08:00", "2017-03-05T16:00:00+08:00",
                                "leaf-1").json()["position"]
    assert district.get("/v1/audit/inclusion", token=district.auditor,
                        position=position).status_code == 200
    _change_or_delete(services, position, change)
    _proof_refused_as_altered(district, caplog, position, f"position {position}")
    assert district.get("/v1/audit/inclusion", token=district.auditor,
                        position=position - 1).status_code == 200  # the others still prove


def _change_or_delete(services: Any, position: int, change: str) -> None:
    """Change a 60-minute session's event in the store (960 minutes), or delete it."""
    if change == "leaf deleted":  # as for an event added by hand below the log's end (bb38 F7)
        with services.models.store.transaction() as cur:
            cur.execute("DELETE FROM audit_leaves WHERE position = ?", (position,))
    elif change == "changed":
        state = services.ledger.recorder.select_notifications(position, 1)[0].state
        altered = bytes(state).replace(b'"minutes":60', b'"minutes":960')
        assert altered != bytes(state)
        tamper_with_events(services.models.store, services.ledger,
                           "UPDATE {table} SET state = ? WHERE {id} = ?", (altered, position))
    else:
        tamper_with_events(services.models.store, services.ledger,
                           "DELETE FROM {table} WHERE {id} = ?", (position,))


def _proof_refused_as_altered(district: District, caplog: pytest.LogCaptureFixture,
                              position: int, says: str) -> None:
    """The event's inclusion proof is the audit-log-altered problem, and an error is logged."""
    refused = district.get("/v1/audit/inclusion", token=district.auditor, position=position)
    assert refused.status_code == 500, refused.text
    assert refused.json()["type"].endswith("/audit-log-altered")
    assert says in refused.json()["detail"]
    alarms = [r for r in caplog.records if r.name == "vledger.audit" and r.levelname == "ERROR"]
    assert alarms and f"position {position}" in alarms[-1].getMessage()


def test_a_leaf_deleted_mid_log_while_serving_is_an_altered_log(
        district: District, caplog: pytest.LogCaptureFixture) -> None:
    """bb29 F1: with a leaf deleted from the middle of the log under a running server, its
    event's inclusion proof was a 422 "no event holds position", though the feed listed it."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    position = district.session("2017-03-05T15:00:00+08:00", "2017-03-05T16:00:00+08:00",
                                "leaf-mid").json()["position"]
    district.post("/v1/units", {"name": "后来的街道", "kind": "subdistrict"})  # logged later
    with services.models.store.transaction() as cur:
        cur.execute("DELETE FROM audit_leaves WHERE position = ?", (position,))
    _proof_refused_as_altered(district, caplog, position,
                              f"position {position} is stored but has no leaf")


def test_a_withdrawn_phone_is_erased_from_the_history_and_the_log_still_proves(
        district: District) -> None:
    """Crypto-shredding (ledger/sealing.py): the auditor, who sees numbers whole, reads the
    withdrawn phone as erased; the checkpoint signed before still covers the same events."""
    before = district.get("/v1/audit/checkpoint", token=None).json()
    response = district.client.patch(f"/v1/volunteers/{district.volunteer}",
                                     json={"phone": None}, headers=bearer(ADMIN_TOKEN))
    assert response.status_code == 200, response.text
    events = district.get(f"/v1/volunteers/{district.volunteer}/history",
                          token=district.auditor).json()["events"]
    registered = next(e for e in events if e["type"] == "Volunteer.Registered")
    assert registered["data"]["personal"] == {"phone": "[erased]",
                                              "id_number": "350402199001011234"}
    feed = district.get("/v1/events", token=district.auditor, after=0, limit=1000).json()
    stored = next(e for e in feed["events"] if e["type"] == "Volunteer.Registered")
    assert stored["state"] is not None
    assert b"13805981234" not in base64.b64decode(stored["state"])
    after = district.get("/v1/audit/checkpoint", token=None).json()
    proof = district.get("/v1/audit/consistency", token=district.auditor,
                         first=before["tree_size"], second=after["tree_size"]).json()
    assert verify_consistency(before["tree_size"], after["tree_size"],
                              bytes.fromhex(before["root_hash"]),
                              bytes.fromhex(after["root_hash"]),
                              [bytes.fromhex(h) for h in proof["hashes"]])
    volunteer = district.get(f"/v1/volunteers/{district.volunteer}").json()
    assert "phone" not in volunteer["personal"]


def test_history_comes_in_pages_that_read_only_their_own_events(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb23: without `limit` the whole history came back (12.7 MB at 20,000 sessions, and
    50 such reads at once took 1.4 GB), and each page read every event of it first."""
    for i in range(5):  # five hours of the activity's day, one session each
        district.session(f"2017-03-05T{9 + i:02d}:00:00+08:00",
                         f"2017-03-05T{10 + i:02d}:00:00+08:00", f"p-{i}")
    path = f"/v1/volunteers/{district.volunteer}/history"
    whole = district.get(path, token=district.auditor, limit=10_000).json()["events"]
    assert len(whole) == 6  # registered, five sessions
    read: list[int] = []
    fetch = history_module.fetch_events

    def counted(recorder: Any, positions: Any) -> Any:
        read.append(len(positions))
        return fetch(recorder, positions)

    monkeypatch.setattr(history_module, "fetch_events", counted)
    monkeypatch.setattr(audit_routes, "HISTORY_PAGE", 4)
    first = district.get(path, token=district.auditor).json()
    assert first["events"] == whole[:4] and first["next_cursor"]
    second = district.get(path, token=district.auditor, cursor=first["next_cursor"]).json()
    assert second["events"] == whole[4:] and second["next_cursor"] is None
    assert read == [5, 2]  # a page and one more (is there a next page?), not the whole


def test_a_history_page_does_not_load_the_volunteers_record(
        district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb27 F3: each page loaded the volunteer (a 2 MB snapshot at 29,000 sessions) to learn
    that they exist; an unknown id is still a 404."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    loaded: list[Any] = []
    load = services.ledger._get_many

    def counted(cls: Any, ids: Any) -> Any:
        loaded.append(cls.__name__)
        return load(cls, ids)

    monkeypatch.setattr(services.ledger, "_get_many", counted)
    page = district.get(f"/v1/volunteers/{district.volunteer}/history", token=district.auditor)
    assert page.status_code == 200 and page.json()["events"]
    assert "Volunteer" not in loaded
    for unknown in ("vol-nobody", district.unit_a):
        missing = district.get(f"/v1/volunteers/{unknown}/history", token=district.auditor)
        assert missing.status_code == 404, missing.text


@pytest.mark.parametrize("change", ["changed", "deleted", "leaf deleted"])
def test_history_and_feed_refuse_an_event_changed_or_deleted_in_the_store(
        district: District, change: str) -> None:
    """bb33 F1-F3: the history and the event feed served an event changed in the store after
    it was logged with 200 (a void before the session it voids, 660 minutes for 60), and the
    feed skipped a deleted one without a word. Both answer the audit-log-altered problem,
    naming the position; pages and histories that do not reach it are served."""
    services = district.client.app.state.services  # type: ignore[attr-defined]
    before = district.session("2017-03-05T13:00:00+08:00", "2017-03-05T14:00:00+08:00",
                              "feed-0").json()["position"]
    position = district.session("2017-03-05T15:00:00+08:00", "2017-03-05T16:00:00+08:00",
                                "feed-1").json()["position"]
    district.session("2017-03-05T17:00:00+08:00", "2017-03-05T18:00:00+08:00", "feed-2")
    _change_or_delete(services, position, change)
    for answer in (district.get("/v1/events", token=district.auditor, after=position - 1),
                   district.get("/v1/events", token=district.auditor, after=before),
                   district.get(f"/v1/volunteers/{district.volunteer}/history",
                                token=district.auditor)):
        assert answer.status_code == 500, answer.text
        assert answer.json()["type"].endswith("/audit-log-altered")
        assert f"position(s) {position}" in answer.json()["detail"] or (
            f"position {position}" in answer.json()["detail"])
    served = district.get("/v1/events", token=district.auditor, after=0, limit=before)
    assert served.status_code == 200 and served.json()["events"][-1]["position"] == before


def test_an_api_started_without_the_kept_checkpoint_warns_of_it(
        settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """bb39 F9, where the API is started without `vledger serve` (which says it itself)."""
    import logging

    from fastapi.testclient import TestClient

    from api.app import create_app

    configured = settings.model_copy(update={"admin_token": ADMIN_TOKEN})
    with TestClient(create_app(configured)) as client:
        assert client.get("/v1/audit/checkpoint").status_code == 200
        kept = client.app.state.services.auditor.kept.path  # type: ignore[attr-defined]
    kept.unlink()
    with caplog.at_level(logging.WARNING, logger="vledger"), \
            TestClient(create_app(configured)) as client:
        assert client.get("/v1/audit/checkpoint").status_code == 200
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
              and "no checkpoint is kept for it" in r.getMessage()]
    assert len(warned) == 1 and str(kept) in warned[0], caplog.text
