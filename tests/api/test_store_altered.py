"""A write that would build on an event changed in the store after it was logged is a 503
`store-altered` problem naming the record and the position, and records nothing (bb33 F1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import District
from tests.factories import tamper_with_events

NINE, TEN = "2017-03-05T09:00:00+08:00", "2017-03-05T10:00:00+08:00"
ELEVEN, NOON = "2017-03-05T11:00:00+08:00", "2017-03-05T12:00:00+08:00"


def _services(district: District) -> Any:
    return district.client.app.state.services  # type: ignore[attr-defined]


def _change(district: District, position: int, old: bytes, new: bytes) -> None:
    services = _services(district)
    [stored] = services.ledger.recorder.select_notifications(position, 1)
    state = bytes(stored.state)
    assert old in state
    tamper_with_events(services.models.store, services.ledger,
                       "UPDATE {table} SET state = ? WHERE {id} = ?",
                       (state.replace(old, new), position))


def test_a_correction_of_a_session_changed_after_it_was_logged_is_a_503_store_altered(
        district: District, caplog: pytest.LogCaptureFixture) -> None:
    written = district.session(NINE, TEN, "altered-1").json()
    _change(district, written["position"], b"T10:00:00+08:00", b"T17:00:00+08:00")
    head = _services(district).ledger.head()

    refused = district.post(f"/v1/service-sessions/{written['id']}/corrections",
                            {"started_at": NINE, "ended_at": ELEVEN, "reason": "late sheet"})

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["retry-after"] == "300"
    problem = refused.json()
    assert problem["type"].endswith("/store-altered")
    assert written["id"] in problem["detail"]
    assert (f"the event at position {written['position']} no longer hashes to its leaf in "
            "the audit log") in problem["detail"]
    assert _services(district).ledger.head() == head  # nothing recorded
    alarms = [r for r in caplog.records if r.name == "vledger.audit" and r.levelname == "ERROR"]
    assert alarms and f"position {written['position']}" in alarms[-1].getMessage()


def test_a_batch_naming_a_volunteer_changed_after_it_was_logged_records_nothing(
        district: District) -> None:
    services = _services(district)
    assert district.session(NINE, TEN, "altered-2").status_code == 201
    booking = services.ledger._positions([district.volunteer])[district.volunteer]
    booked = max(booking.values())  # the volunteer's booking of that session
    [stored] = services.ledger.recorder.select_notifications(booked, 1)
    assert stored.topic.endswith("Volunteer.SessionBooked")
    _change(district, booked,  # 09:00-10:00 moved to 07:00-08:00: the overlap is hidden
            b'T09:00:00+08:00"},"ended_at":{"_type_":"datetime_iso","_data_":"2017-03-05T10',
            b'T07:00:00+08:00"},"ended_at":{"_type_":"datetime_iso","_data_":"2017-03-05T08')
    services.ledger._kept.take([district.volunteer])  # as after a restart: loaded again
    head = services.ledger.head()
    records = [{"volunteer_id": district.volunteer, "activity_id": district.activity,
                "started_at": start, "ended_at": end, "source_record_id": source}
               for start, end, source in ((ELEVEN, NOON, "batch-1"), (NINE, TEN, "batch-2"))]

    refused = district.post("/v1/service-sessions/batch", {"records": records})

    assert refused.status_code == 503, refused.text
    assert refused.json()["type"].endswith("/store-altered")
    assert f"position {booked}" in refused.json()["detail"]
    assert services.ledger.head() == head


def test_writes_on_records_nobody_changed_are_answered_as_before(district: District) -> None:
    altered = district.session(NINE, TEN, "altered-3").json()
    kept = district.session(ELEVEN, NOON, "kept-3").json()
    _change(district, altered["position"], b"T10:00:00+08:00", b"T17:00:00+08:00")

    corrected = district.post(f"/v1/service-sessions/{kept['id']}/corrections",
                              {"started_at": ELEVEN, "ended_at": "2017-03-05T12:30:00+08:00",
                               "reason": "late sheet"})

    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["minutes"] == 90


def _delete(district: District, position: int) -> None:
    services = _services(district)
    tamper_with_events(services.models.store, services.ledger,
                       "DELETE FROM {table} WHERE {id} = ?", (position,))


def test_a_session_deleted_from_the_store_is_not_recorded_again(district: District) -> None:
    """bb36 F1: with a session's event deleted by hand, its resend was stored anew and counted
    twice (the views had read the first). The volunteer's calendar still holds it: a 503."""
    services = _services(district)
    written = district.session(NINE, TEN, "deleted-1").json()
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()["total_minutes"]
    [recorded] = services.ledger._positions([written["id"]])[written["id"]].values()
    _delete(district, recorded)
    services.ledger._kept.take([district.volunteer])  # as after a restart: loaded again
    head = services.ledger.head()

    for _ in range(2):  # one by one, and in a batch
        again = district.session(NINE, TEN, "deleted-1")
        assert again.status_code == 503, again.text
        assert again.json()["type"].endswith("/store-altered")
        assert "deleted by hand" in again.json()["detail"]
        assert services.ledger.head() == head
    batch = district.post("/v1/service-sessions/batch", {"records": [{
        "volunteer_id": district.volunteer, "activity_id": district.activity,
        "started_at": NINE, "ended_at": TEN, "source_record_id": "deleted-1"}]})
    assert batch.status_code == 503, batch.text
    assert services.ledger.head() == head
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == hours


def test_a_record_with_an_event_deleted_from_the_middle_is_a_503_naming_it(
        district: District) -> None:
    """bb36 F3: a volunteer with an event deleted from the middle of their history answered
    every read and write with a bare 500 (the replay failed on the hole)."""
    services = _services(district)
    district.session(NINE, TEN, "middle-1")
    district.session(ELEVEN, NOON, "middle-2")
    versions = services.ledger._positions([district.volunteer])[district.volunteer]
    middle = sorted(versions)[len(versions) // 2]
    _delete(district, versions[middle])
    services.ledger._kept.take([district.volunteer])
    head = services.ledger.head()

    read = district.get(f"/v1/volunteers/{district.volunteer}")
    assert read.status_code == 503, read.text
    assert read.json()["type"].endswith("/store-altered")
    assert f"version {middle}" in read.json()["detail"]
    written = district.session("2017-03-05T13:00:00+08:00", "2017-03-05T14:00:00+08:00",
                               "middle-3")
    assert written.status_code == 503, written.text
    assert services.ledger.head() == head


def test_a_record_whose_last_events_were_deleted_is_not_built_on_again(
        district: District) -> None:
    """bb38 F1: with a session's event and its volunteer's last booking both deleted, the
    resend was stored anew and counted twice; with the booking alone deleted, an overlapping
    session was taken. The log knows the last version of each record it took in."""
    services = _services(district)
    written = district.session(NINE, TEN, "last-1").json()
    services.models.catch_up()
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()["total_minutes"]
    [recorded] = services.ledger._positions([written["id"]])[written["id"]].values()
    booking = max(services.ledger._positions([district.volunteer])[district.volunteer].values())
    _delete(district, booking)  # the volunteer's last event: their booking of that session
    services.ledger._kept.take([district.volunteer])
    head = services.ledger.head()

    overlapping = district.session("2017-03-05T09:30:00+08:00", "2017-03-05T10:30:00+08:00",
                                   "last-2")
    assert overlapping.status_code == 503, overlapping.text
    assert "deleted by hand" in overlapping.json()["detail"]
    assert services.ledger.head() == head
    _delete(district, recorded)
    head = services.ledger.head()
    read = district.get(f"/v1/service-sessions/{written['id']}")  # bb38 F12: was a 404
    assert read.status_code == 503 and "deleted by hand" in read.json()["detail"], read.text
    again = district.session(NINE, TEN, "last-1")
    assert again.status_code == 503, again.text
    assert services.ledger.head() == head
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == hours


@pytest.mark.stores("sqlite")
def test_no_write_takes_the_position_of_an_event_deleted_from_the_end(
        district: District) -> None:
    """bb38 F4: SQLite gave the deleted last events' positions to the next write, which the
    views had read past: a 201 never counted. PostgreSQL's sequence never gives one twice."""
    services = _services(district)
    district.session(NINE, TEN, "tail-1")
    services.models.catch_up()
    head = services.ledger.head()
    _delete(district, head)
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours").json()["total_minutes"]

    refused = district.session(ELEVEN, NOON, "tail-2")
    assert refused.status_code == 503, refused.text
    assert f"had given positions up to {head}" in refused.json()["detail"]
    unit = district.post("/v1/units", {"name": "新社区", "kind": "community"})
    assert unit.status_code == 503, unit.text
    assert services.ledger.head() == head - 1
    assert district.get(f"/v1/volunteers/{district.volunteer}/hours").json()[
        "total_minutes"] == hours


def _append_by_hand(district: District, originator_id: str, version: int, topic: str,
                    state: bytes) -> int:
    """The hostile operator: a well-formed event inserted with SQL (bb38 F2); its position."""
    services = _services(district)
    tamper_with_events(services.models.store, services.ledger,
                       "INSERT INTO {table} (originator_id, originator_version, topic, state) "
                       "VALUES (?, ?, ?, ?)", (originator_id, version, topic, state))
    return int(services.ledger.head())


def test_an_event_appended_by_hand_is_counted_served_and_built_on_by_nothing(
        district: District) -> None:
    """bb38 F2: a copy of a recorded session under a new id, and a booking of it on the
    volunteer's own record, appended with SQL: well-formed, but without the ledger's seal."""
    services = _services(district)
    written = district.session(NINE, TEN, "sealed-1").json()
    [session] = services.ledger.recorder.select_notifications(written["position"], 1)
    versions = services.ledger._positions([district.volunteer])[district.volunteer]
    [booking] = services.ledger.recorder.select_notifications(versions[max(versions)], 1)
    copy = "4f6c1d0e-0000-4000-8000-000000000001"
    forged = _append_by_hand(district, copy, 1, session.topic,
                             bytes(session.state).replace(written["id"].encode(), copy.encode()))
    version = max(versions) + 1
    _append_by_hand(district, district.volunteer, version, booking.topic,
                    bytes(booking.state).replace(written["id"].encode(), copy.encode())
                    .replace(f'"originator_version":{version - 1}'.encode(),
                             f'"originator_version":{version}'.encode()))
    services.ledger._kept.take([district.volunteer])  # as after a restart: loaded again
    head = services.ledger.head()

    refused = district.post("/v1/service-sessions", {
        "volunteer_id": district.volunteer, "activity_id": district.activity,
        "started_at": ELEVEN, "ended_at": NOON, "source_record_id": "sealed-2"})
    waited = district.get(f"/v1/volunteers/{district.volunteer}/hours", min_position=forged)
    ready = district.client.get("/readyz")
    feed = district.get("/v1/events", after=written["position"])
    hours = district.get(f"/v1/volunteers/{district.volunteer}/hours")

    assert refused.status_code == 503, refused.text
    assert refused.json()["type"].endswith("/store-altered") and "no seal" in refused.text
    assert services.ledger.head() == head  # nothing recorded
    assert waited.status_code == 500 and "no seal" in waited.text  # never taken in
    assert ready.status_code == 503 and "no seal" in ready.text
    assert f"position(s) {forged}" in ready.text
    assert feed.status_code == 500 and "no seal" in feed.text
    assert hours.status_code == 200 and hours.json()["total_minutes"] == 60  # not counted


def test_a_revocation_deleted_by_hand_does_not_bring_its_token_back(district: District) -> None:
    """bb38 F3: the revocation's event deleted with SQL; the token, presented again (to a
    process that had seen it, and to one that had not), is not let in as live."""
    issued = district.post("/v1/tokens", {"role": "committee", "label": "panel"}).json()
    token = {"Authorization": f"Bearer {issued['token']}"}
    assert district.client.get("/v1/awards", headers=token).status_code == 200
    revoked = district.post(f"/v1/tokens/{issued['id']}/revoke", {"reason": "left the panel"})
    assert revoked.status_code == 200, revoked.text
    district.get("/v1/units", min_position=revoked.json()["position"])  # logged
    assert district.client.get("/v1/awards", headers=token).status_code == 401
    services = _services(district)
    tamper_with_events(services.models.store, services.ledger,
                       "DELETE FROM {table} WHERE {id} = ?", (revoked.json()["position"],))

    again = district.client.get("/v1/awards", headers=token)
    services.grants._seen.clear()  # as a process that never saw it
    fresh = district.client.get("/v1/awards", headers=token)

    for answer in (again, fresh):
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"].endswith("/store-altered")
