"""Every stored event says who acted, through which channel, and when it was recorded."""

from __future__ import annotations

import json

from ledger import Ledger
from tests.factories import ADMIN, make_activity, make_volunteer, record, void


def test_every_stored_event_carries_actor_source_and_recorded_time(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    activity = make_activity(ledger)
    written = record(ledger, volunteer, activity)
    void(ledger, written.id)
    ledger.publish_award_rules(ADMIN, "most_beautiful_volunteer", 2017, {"min_star_level": 1})
    events = ledger.recorder.select_notifications(1, 10_000)
    assert len(events) >= 8
    for event in events:
        state = json.loads(event.state)
        assert {"id", "role"} <= set(state["actor"]), event.topic
        assert state["source"], event.topic
        assert state["timestamp"], event.topic


def test_a_session_keeps_the_time_served_apart_from_the_time_recorded(ledger: Ledger) -> None:
    volunteer = make_volunteer(ledger)
    written = record(ledger, volunteer, make_activity(ledger))
    [recorded] = [n for n in ledger.recorder.select_notifications(1, 10_000)
                  if n.originator_id == written.id]
    state = json.loads(recorded.state)
    assert state["started_at"]["_data_"].startswith("2017-03-05")
    assert not state["timestamp"]["_data_"].startswith("2017")
