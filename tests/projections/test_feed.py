"""The read side's decoding: only top-level values are transcoded in our events."""

from __future__ import annotations

from datetime import date
from typing import Any

from ledger import Ledger
from projections.feed import FeedEvent, decode_page, read_events
from tests.factories import (
    ADMIN,
    make_activity,
    make_unit,
    make_volunteer,
    record,
    train,
    transfer,
    void,
)


def _nested_transcoded(value: Any) -> bool:
    if isinstance(value, dict):
        return "_type_" in value or any(_nested_transcoded(v) for v in value.values())
    if isinstance(value, list):
        return any(_nested_transcoded(v) for v in value)
    return False


def test_no_event_of_the_ledger_nests_a_transcoded_value(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_activity(ledger)
    void(ledger, record(ledger, volunteer, activity).id)
    train(ledger, volunteer, date(2017, 4, 1))
    transfer(ledger, volunteer, make_unit(ledger), date(2017, 5, 1))
    ledger.publish_award_rules(ADMIN, "most_beautiful_volunteer", 2017, {"min_star_level": 1})
    ledger.update_volunteer(ADMIN, volunteer, {"phone": "13800000000", "skills": ["急救"]})
    events = decode_page(ledger.recorder.select_notifications(1, 10_000))
    assert len(events) > 10
    for event in events:
        assert not _nested_transcoded(event.data), event.type
        assert "T" in event.recorded_at


def test_data_is_the_events_own_fields_and_recorded_at_its_timestamp(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_activity(ledger)
    session = record(ledger, volunteer, activity)
    events = decode_page(ledger.recorder.select_notifications(1, 10_000))
    recorded = next(e for e in events if e.type == "ServiceSession.Recorded")
    stored = ledger.get_session(session.id)
    assert recorded.originator_id == session.id
    for key in ("originator_id", "originator_version", "originator_topic", "timestamp"):
        assert key not in recorded.data  # the library's bookkeeping is not the event's data
    assert recorded.data["volunteer_id"] == volunteer
    assert recorded.data["minutes"] == stored.minutes
    # datetimes arrive as their ISO text, unwrapped from the library's transcoding
    assert recorded.data["started_at"] == stored.started_at.isoformat()
    event = ledger.mapper.to_domain_event(ledger.recorder.select_notifications(
        recorded.position, 1)[0])
    assert recorded.recorded_at == event.timestamp.isoformat()


def test_a_page_of_rows_is_the_page_of_notifications(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_activity(ledger)
    void(ledger, record(ledger, volunteer, activity).id)
    train(ledger, volunteer, date(2017, 4, 1))
    head = ledger.head()
    recorder: Any = ledger.recorder

    def fields(events: list[FeedEvent]) -> list[tuple[Any, ...]]:
        return [(e.position, e.originator_id, e.version, e.type, e.topic, e.state, e.data,
                 e.recorded_at) for e in events]

    whole = fields(decode_page(ledger.recorder.select_notifications(1, 10_000)))
    assert len(whole) == head > 5
    assert fields(read_events(recorder, 1, 10_000)) == whole
    # From a start, a limit, a stop: the same slices as the library's.
    assert fields(read_events(recorder, 2, 3)) == whole[1:4]
    assert fields(read_events(recorder, 2, 10, head - 1)) == whole[1:head - 1]
    assert recorder.select_rows(head + 1, 10) == []
