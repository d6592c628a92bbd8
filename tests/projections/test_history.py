"""A volunteer's history for auditors, and the event feed for downstream systems."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import InvalidField, NotFound
from ledger.sealing import ERASED
from projections.history import event_feed, volunteer_history
from projections.models import auditor_views
from projections.reconcile import reconcile
from projections.runner import Runner
from tests.factories import (
    ADMIN,
    COMMITTEE,
    CST,
    at,
    audit_runner,
    grant_volunteer_award,
    make_activity,
    make_unit,
    make_volunteer,
    record,
)

PHONE, ID_NUMBER = "13812345678", "350402199001011234"
EXPECTED = [
    "Volunteer.Registered", "ServiceSession.Recorded", "ServiceSession.Corrected",
    "ServiceSession.Recorded", "ServiceSession.Voided", "Volunteer.PersonalDataUpdated",
    "Award.Granted", "Award.Revoked", "Award.Regranted",
]


@pytest.fixture
def views(ledger: Ledger) -> Iterator[Runner]:
    runner = audit_runner(ledger, page_size=1)  # a regrant is folded apart from its grant
    yield runner
    runner.store.close()


def life_of_a_volunteer(ledger: Ledger, busy_neighbours: int = 0) -> tuple[str, datetime]:
    """A volunteer's record with every kind of fact; returns their id and a moment mid-way."""
    unit_id = make_unit(ledger)
    volunteer_id = ledger.register_volunteer(ADMIN, "Lei", unit_id, date(2017, 1, 1),
                                             phone=PHONE, id_number=ID_NUMBER)[0].id
    other_id = make_volunteer(ledger, home_unit_id=unit_id)
    activity_id = make_activity(ledger, organiser_unit_id=unit_id)
    first = record(ledger, volunteer_id, activity_id, at(9), at(10))
    for i in range(busy_neighbours):  # other people's events push this record's positions apart
        record(ledger, other_id, activity_id, at(8, i), at(8, i + 1))
    ledger.correct_session(ADMIN, first.id, at(9), at(11), "ended later")
    time.sleep(0.01)
    middle = datetime.now(UTC)
    time.sleep(0.01)
    second = record(ledger, volunteer_id, activity_id, at(12), at(13))
    ledger.void_session(ADMIN, second.id, "recorded for the wrong person")
    ledger.update_volunteer(ADMIN, volunteer_id, {"phone": "13987654321"})
    award_id = grant_volunteer_award(ledger, volunteer_id)
    ledger.revoke_award(COMMITTEE, award_id, "granted by mistake")
    ledger.grant_award(COMMITTEE, "most_beautiful_volunteer", 2017, volunteer_id, "decision 2")
    return volunteer_id, middle


def history(views: Runner, ledger: Ledger, volunteer_id: str, **kw: Any) -> list[dict[str, Any]]:
    views.catch_up()
    return volunteer_history(views.store, ledger.recorder, volunteer_id, **kw)


def test_the_history_shows_each_fact_of_the_record_once_in_order(ledger: Ledger,
                                                                 views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger)
    events = history(views, ledger, volunteer_id)
    assert [e["type"] for e in events] == EXPECTED
    assert [e["position"] for e in events] == sorted({e["position"] for e in events})


def test_the_history_reads_far_apart_events_correctly(ledger: Ledger, views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger, busy_neighbours=40)
    events = history(views, ledger, volunteer_id, unmasked=True)
    feed = {e["position"]: e for e in event_feed(ledger.recorder, 0, 1000, unmasked=True)}
    assert [e["type"] for e in events] == EXPECTED
    for e in events:
        assert e == {k: v for k, v in feed[e["position"]].items() if k in e}


def test_as_of_leaves_out_events_recorded_later(ledger: Ledger, views: Runner) -> None:
    volunteer_id, middle = life_of_a_volunteer(ledger)
    assert [e["type"] for e in history(views, ledger, volunteer_id, as_of=middle)] == EXPECTED[:3]
    in_district_time = middle.astimezone(CST)
    assert len(history(views, ledger, volunteer_id, as_of=in_district_time)) == 3
    before = datetime(2017, 1, 1, tzinfo=UTC)
    assert history(views, ledger, volunteer_id, as_of=before) == []


def test_as_of_without_an_offset_is_refused(ledger: Ledger, views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger)
    with pytest.raises(InvalidField) as refused:
        history(views, ledger, volunteer_id, as_of=datetime(2030, 1, 1))
    assert refused.value.field == "as_of"


def test_phone_and_id_number_are_masked_unless_asked(ledger: Ledger, views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger)
    masked = history(views, ledger, volunteer_id)
    # The first phone was replaced, so erased (ledger/sealing.py).
    assert masked[0]["data"]["personal"] == {"phone": ERASED,
                                             "id_number": "3****************4"}
    assert masked[5]["data"]["changes"] == {"phone": "139****4321"}
    clear = history(views, ledger, volunteer_id, unmasked=True)
    assert clear[0]["data"]["personal"] == {"phone": ERASED, "id_number": ID_NUMBER}
    assert clear[5]["data"]["changes"] == {"phone": "13987654321"}


def test_sessions_carry_their_served_time(ledger: Ledger, views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger)
    valid = [e["valid_time"] for e in history(views, ledger, volunteer_id)]
    served = [(datetime.fromisoformat(v["started_at"]), datetime.fromisoformat(v["ended_at"]))
              if v else None for v in valid]
    assert served[:5] == [None, (at(9), at(10)), (at(9), at(11)), (at(12), at(13)), None]
    assert served[5:] == [None] * 4


def test_each_event_says_who_recorded_it_and_through_which_channel(ledger: Ledger,
                                                                   views: Runner) -> None:
    volunteer_id, _ = life_of_a_volunteer(ledger)
    events = history(views, ledger, volunteer_id)
    assert events[0]["actor"] == {"id": "test-admin", "role": "admin"}
    assert events[-1]["actor"] == {"id": "test-committee", "role": "committee"}
    assert {e["source"] for e in events} == {"test"}
    assert all("actor" not in e["data"] for e in events)


def test_an_unknown_volunteer_has_no_history(ledger: Ledger, views: Runner) -> None:
    with pytest.raises(NotFound):
        history(views, ledger, "vol-nobody")


def test_the_feed_lists_every_event_after_a_position(ledger: Ledger, views: Runner) -> None:
    life_of_a_volunteer(ledger)
    page = event_feed(ledger.recorder, after=3, limit=5)
    positions = [e["position"] for e in page]
    assert len(page) == 5 and positions == sorted(positions) and positions[0] > 3
    everything = event_feed(ledger.recorder, 0, 1000)
    assert len(everything) == ledger.head()
    assert "Volunteer.SessionBooked" in {e["type"] for e in everything}


def test_the_feed_shows_stored_bytes_that_hold_numbers_only_sealed(ledger: Ledger,
                                                                   views: Runner) -> None:
    life_of_a_volunteer(ledger)
    feed = event_feed(ledger.recorder, 0, 1000)
    registered = next(e for e in feed if e["data"].get("personal"))
    assert registered["data"]["personal"]["id_number"] == "3****************4"
    assert all(e["state"] for e in feed)
    stored = b"".join(base64.b64decode(e["state"]) for e in feed)
    for number in (PHONE, ID_NUMBER, "13987654321"):
        assert number.encode() not in stored


@pytest.mark.parametrize("after,limit,field", [(-1, 10, "after"), (0, 0, "limit"),
                                               (0, 10_001, "limit")])
def test_feed_bounds_are_checked(ledger: Ledger, after: int, limit: int, field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        event_feed(ledger.recorder, after, limit)
    assert refused.value.field == field


def test_a_history_kept_page_by_page_equals_one_filled_from_empty(ledger: Ledger,
                                                                   views: Runner) -> None:
    views.catch_up()  # the empty index fills, then settles: from here on, page by page
    assert not views.store.query("SELECT 1 FROM history_filling")
    volunteer_id, _ = life_of_a_volunteer(ledger, busy_neighbours=3)
    views.catch_up()

    assert reconcile(views.store, ledger.recorder, auditor_views) == []
    assert len(history(views, ledger, volunteer_id)) == len(EXPECTED)


def test_a_history_event_deleted_from_the_store_is_named_not_skipped(ledger: Ledger,
                                                                     views: Runner) -> None:
    """bb10 F4: an event deleted in the database after the history took it in was left out
    in silence; the history now refuses (500 audit-log-altered), naming its position."""
    from ledger.errors import AuditLogAltered
    from tests.factories import tamper_with_events

    volunteer_id, _ = life_of_a_volunteer(ledger)
    events = history(views, ledger, volunteer_id)
    gone = events[2]["position"]
    tamper_with_events(views.store, ledger, "DELETE FROM {table} WHERE {id} = ?", (gone,))
    with pytest.raises(AuditLogAltered, match=f"position\\(s\\) {gone}\\)"):
        volunteer_history(views.store, ledger.recorder, volunteer_id)


def test_each_event_names_the_aggregate_it_belongs_to(ledger: Ledger, views: Runner) -> None:
    """bb20 F4: of two alike sessions on one day, the history did not say which one a void
    concerned; the feed did. Each history event now names its aggregate, as the feed does."""
    volunteer_id, _ = life_of_a_volunteer(ledger)
    events = history(views, ledger, volunteer_id)
    voided = next(e for e in events if e["type"] == "ServiceSession.Voided")
    assert ledger.get_session(voided["originator_id"]).is_voided
    assert {e["originator_id"] for e in events if e["type"].startswith("Volunteer.")} == {
        volunteer_id}
