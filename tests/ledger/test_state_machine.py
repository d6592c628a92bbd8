"""Random command sequences against a reference model; the store must agree after every step.

Each example shares the test's store but has its own units, volunteers and source record ids,
so examples never see each other. The writing ledger snapshots volunteers every 3 events; a
second ledger on the same store checks every step, and a fresh one checks the end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import Ledger, LedgerError, SessionRecord, Settings
from tests.factories import ADMIN, CST
from tests.ledger.reference_model import Expected, Model

DAY = datetime(2017, 3, 5, 7, 0, tzinfo=CST)
STARTS = st.integers(0, 18)  # half hours from 07:00 to 16:00
LENGTHS = st.sampled_from([-1, 0, 1, 1, 2, 2, 3, 4])  # in half hours; some are not positive
SECONDS = st.sampled_from([0, 0, 0, 59])
FULL_DAY = (DAY + timedelta(minutes=30), DAY + timedelta(hours=11, minutes=30))  # 07:30–18:30
WINDOWS = [FULL_DAY,
           (DAY + timedelta(hours=1), DAY + timedelta(hours=5)),  # 08:00–12:00
           (DAY + timedelta(hours=5), DAY + timedelta(hours=10))]  # 12:00–17:00
REGISTERED = st.sampled_from([date(2017, 1, 1), date(2017, 2, 15)])
EFFECTIVE = st.sampled_from([date(2017, 1, 1), date(2017, 2, 1), date(2017, 3, 1),
                             date(2017, 4, 1)])
PROBE_DAYS = [date(2017, 1, 1), date(2017, 2, 1), date(2017, 2, 20), date(2017, 3, 1),
              date(2017, 4, 1)]
# Lei Feng Day itself, so sessions on it are refused; or a later day, so they are still taken.
CLOSED_ON = date(2017, 6, 30)  # units close after every activity window: planning stays open
DEREGISTERED = st.sampled_from([date(2017, 3, 5), date(2017, 9, 1)])
REASONS = st.sampled_from(["clerk typed the wrong hour", "entered twice", " "])
SOURCES = st.integers(0, 19)  # few enough that records often reuse one


def slot(n: int, seconds: int = 0) -> datetime:
    return DAY + timedelta(minutes=30 * n, seconds=seconds)


class LedgerMachine(RuleBasedStateMachine):
    """Commands of the write side, each checked against the model's expectation."""

    writer: Ledger
    reader: Ledger
    database_url: str

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.prefix = uuid4().hex[:8]
        self.units: list[str] = []
        self.volunteers: list[str] = []
        self.activities: list[str] = []
        self.sessions: list[str] = []

    def attempt(self, expected: Expected, command: Any) -> Any:
        """Run a command; it must fail with exactly the expected class or succeed."""
        try:
            result = command()
        except LedgerError as error:
            assert isinstance(expected, type), f"unexpected {error!r}"
            assert type(error) is expected, f"expected {expected.__name__}, got {error!r}"
            return None
        assert not isinstance(expected, type), f"expected {expected.__name__}, it succeeded"
        return result

    def source(self, n: int) -> str:
        return f"{self.prefix}-sheet-{n}"

    @initialize(registered=st.lists(REGISTERED, min_size=3, max_size=3),
                window=st.sampled_from(WINDOWS))
    def a_district_with_volunteers_and_activities(self, registered: list[date],
                                                 window: tuple[datetime, datetime]) -> None:
        for kind in ("town", "community"):
            self.register_unit(kind)
        for i, registered_on in enumerate(registered):
            self.register_volunteer(self.units[i % 2], registered_on)
        self.plan_activity(self.units[0], FULL_DAY)
        self.plan_activity(self.units[1], window)

    # -- registry ---------------------------------------------------------------------------

    def register_unit(self, kind: str) -> None:
        self.units.append(self.writer.register_unit(ADMIN, f"unit {self.prefix}", kind).id)

    @precondition(lambda self: len(self.units) < 5)
    @rule(kind=st.sampled_from(["town", "community", "organisation"]))
    def a_unit_is_registered(self, kind: str) -> None:
        self.register_unit(kind)

    @precondition(lambda self: len(self.units) - len(self.model.closed_units) > 2)
    @rule(data=st.data())
    def a_unit_is_closed(self, data: st.DataObject) -> None:
        unit = data.draw(st.sampled_from(self.units), "unit")
        self.attempt(self.model.close_unit(unit),
                     lambda: self.writer.close_unit(ADMIN, unit, CLOSED_ON, "merged"))

    def register_volunteer(self, unit: str, registered_on: date) -> None:
        written = self.attempt(self.model.register_volunteer(unit), lambda: self.writer
                               .register_volunteer(ADMIN, "志愿者", unit, registered_on))
        if written is not None:
            self.model.add_volunteer(written[0].id, unit, registered_on)
            self.volunteers.append(written[0].id)

    @precondition(lambda self: len(self.volunteers) < 5)
    @rule(data=st.data(), registered_on=REGISTERED)
    def a_volunteer_is_registered(self, data: st.DataObject, registered_on: date) -> None:
        self.register_volunteer(data.draw(st.sampled_from(self.units), "unit"), registered_on)

    def plan_activity(self, unit: str, window: tuple[datetime, datetime]) -> None:
        written = self.attempt(self.model.plan_activity(unit, window, CLOSED_ON),
                               lambda: self.writer.plan_activity(
            ADMIN, "A1", unit, "关爱空巢老人", window[0], window[1]))
        if written is not None:
            self.model.add_activity(written.id, window)
            self.activities.append(written.id)

    @precondition(lambda self: len(self.activities) < 5)
    @rule(data=st.data(), window=st.sampled_from(WINDOWS))
    def an_activity_is_planned(self, data: st.DataObject,
                               window: tuple[datetime, datetime]) -> None:
        self.plan_activity(data.draw(st.sampled_from(self.units), "unit"), window)

    @rule(data=st.data(), effective_on=EFFECTIVE)
    def a_volunteer_is_transferred(self, data: st.DataObject, effective_on: date) -> None:
        volunteer = data.draw(st.sampled_from(self.volunteers), "volunteer")
        unit = data.draw(st.sampled_from(self.units), "unit")
        self.attempt(self.model.transfer(volunteer, unit, effective_on),
                     lambda: self.writer.transfer_volunteer(ADMIN, volunteer, unit, effective_on))

    @precondition(lambda self: sum(v.active for v in self.model.volunteers.values()) > 2)
    @rule(data=st.data())
    def a_volunteer_is_deregistered(self, data: st.DataObject) -> None:
        volunteer = data.draw(st.sampled_from(self.volunteers), "volunteer")
        on = data.draw(DEREGISTERED, "deregistered_on")
        self.attempt(self.model.deregister(volunteer, on), lambda: self.writer.deregister_volunteer(
            ADMIN, volunteer, on, "moved away"))

    # -- sessions ---------------------------------------------------------------------------

    def draw_span(self, data: st.DataObject) -> tuple[datetime, datetime]:
        start = data.draw(STARTS, "start")
        end = start + data.draw(LENGTHS, "length")
        return slot(start), slot(end, data.draw(SECONDS, "seconds"))

    def draw_record(self, data: st.DataObject, volunteer: str, activity: str) -> SessionRecord:
        start, end = self.draw_span(data)
        return SessionRecord(volunteer, activity, start, end,
                             self.source(data.draw(SOURCES, "source")))

    def expect(self, rec: SessionRecord) -> Expected:
        return self.model.record(rec.volunteer_id, rec.activity_id, rec.started_at,
                                 rec.ended_at, rec.source_record_id)

    @rule(data=st.data())
    def a_session_is_recorded(self, data: st.DataObject) -> None:
        rec = self.draw_record(data, data.draw(st.sampled_from(self.volunteers), "volunteer"),
                               data.draw(st.sampled_from(self.activities), "activity"))
        expected = self.expect(rec)
        written = self.attempt(expected, lambda: self.writer.record_session(ADMIN, rec))
        if written is not None:
            assert written.id == expected
            self.sessions.append(written.id)

    @rule(data=st.data())
    def a_batch_is_recorded(self, data: st.DataObject) -> None:
        volunteer = data.draw(st.sampled_from(self.volunteers), "volunteer")
        activity = data.draw(st.sampled_from(self.activities), "activity")
        records = [self.draw_record(data, volunteer, activity)
                   for _ in range(data.draw(st.integers(2, 4), "size"))]
        expected = [self.expect(r) for r in records]
        result = self.writer.record_sessions(ADMIN, records)
        for want, outcome in zip(expected, result.outcomes, strict=True):
            if isinstance(want, type):
                assert type(outcome.error) is want, (want, outcome)
            else:
                assert outcome.session_id == want, (want, outcome)
        self.sessions.extend(o.session_id for o in result.outcomes
                             if o.status == "accepted" and o.session_id)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), in_utc=st.booleans())
    def a_record_is_sent_again(self, data: st.DataObject, in_utc: bool) -> None:
        """The original record again, perhaps with another offset: the same session back."""
        session = data.draw(st.sampled_from(self.sessions), "session")
        original = self.model.sessions[session]
        zone = UTC if in_utc else CST
        start, end = (datetime.fromtimestamp(t, zone) for t in original.original)
        rec = SessionRecord(original.volunteer_id, original.activity_id, start, end,
                            original.source_record_id)
        written = self.writer.record_session(ADMIN, rec)
        assert (written.id, written.created) == (session, False)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), reason=REASONS)
    def a_session_is_corrected(self, data: st.DataObject, reason: str) -> None:
        session = data.draw(st.sampled_from(self.sessions), "session")
        start, end = self.draw_span(data)
        self.attempt(self.model.correct(session, start, end, reason),
                     lambda: self.writer.correct_session(ADMIN, session, start, end, reason))

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), reason=REASONS)
    def a_session_is_voided(self, data: st.DataObject, reason: str) -> None:
        session = data.draw(st.sampled_from(self.sessions), "session")
        self.attempt(self.model.void(session, reason),
                     lambda: self.writer.void_session(ADMIN, session, reason))

    # -- the store agrees with the model ----------------------------------------------------

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        agree(self.reader, self.model)

    def teardown(self) -> None:
        fresh = Ledger(Settings(database_url=self.database_url))
        try:
            agree(fresh, self.model)
        finally:
            fresh.close()


def agree(ledger: Ledger, model: Model) -> None:
    """Every volunteer's calendar, units over time, status and minutes equal the model's."""
    for volunteer_id, expected in model.volunteers.items():
        volunteer = ledger.get_volunteer(volunteer_id)
        assert volunteer.sessions == model.calendar(volunteer_id)
        assert volunteer.is_active == expected.active
        assert [volunteer.unit_on(d) for d in PROBE_DAYS] == [expected.unit_on(d)
                                                              for d in PROBE_DAYS]
        minutes = sum(ledger.get_session(sid).minutes
                      for sid, (_s, _e, live) in volunteer.sessions.items() if live)
        assert minutes == model.minutes(volunteer_id)
    for session_id, expected_session in model.sessions.items():
        session = ledger.get_session(session_id)
        assert (session.started_at, session.ended_at, session.is_voided) == (
            expected_session.started_at, expected_session.ended_at, not expected_session.live)


def test_random_commands_leave_the_store_as_the_model_expects(database_url: str) -> None:
    writer = Ledger(Settings(database_url=database_url, snapshot_interval=3))
    reader = Ledger(Settings(database_url=database_url))
    machine = type("Machine", (LedgerMachine,),
                   {"writer": writer, "reader": reader, "database_url": database_url})
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        writer.close()
        reader.close()
