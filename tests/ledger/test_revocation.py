"""A write relies on its caller's grant inside its insert (bb20 F1: writes let in before a
revocation were still stored up to 2 s after it answered)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ledger import Ledger, Origin
from ledger.errors import TokenRevoked
from ledger.guards import Grant, relying_on_grant
from tests.factories import (
    ADMIN,
    at,
    lands_before_next_save,
    make_activity,
    make_unit,
    make_volunteer,
    record,
    recorder_of,
    session_record,
)


class Caller:
    """A recorder token of one unit, as the API lets it in: its origin and its grant."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.unit = make_unit(ledger)
        self.token, written = ledger.issue_token(ADMIN, "recorder", unit_id=self.unit)
        found = ledger.token_grant(self.token)
        assert found is not None and found[0] is not None
        self.origin = Origin(found[0], source="api")
        self.grant = Grant(written.id, found[1])

    def revoke(self) -> None:
        """Revoked by the office: another request, relying on no grant of this caller's."""
        with relying_on_grant(None):
            self.ledger.revoke_token(ADMIN, self.grant.id, "left the office")


@pytest.fixture
def caller(ledger: Ledger) -> Caller:
    return Caller(ledger)


def inserts(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the ledger's inserts (each attempt of a write that reaches the store)."""
    real, count = ledger._store, []

    def counted(processing: Any) -> Any:
        count.append(1)
        return real(processing)

    monkeypatch.setattr(ledger, "_store", counted)
    return count


# Writes of every kind: grouped (one session), batched, unguarded, numbered, registered; each
# given a volunteer, an activity and a session of the caller's unit.
WRITES: dict[str, Callable[[Ledger, Caller, str, str, str], Any]] = {
    "one session": lambda ledger, c, vol, act, _: record(ledger, vol, act, origin=c.origin),
    "a batch": lambda ledger, c, vol, act, _: ledger.record_sessions(
        c.origin, [session_record(vol, act, at(11), at(12))]),
    "a void": lambda ledger, c, vol, act, session: ledger.void_session(c.origin, session, "typo"),
    "a volunteer": lambda ledger, c, *_: make_volunteer(ledger, c.unit, origin=c.origin),
    "an activity": lambda ledger, c, *_: make_activity(ledger, c.unit, origin=c.origin),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_let_in_before_a_revocation_stored_after_it_is_refused(
        ledger: Ledger, caller: Caller, monkeypatch: pytest.MonkeyPatch, write: str) -> None:
    volunteer = make_volunteer(ledger, caller.unit)
    activity = make_activity(ledger, caller.unit)
    session = record(ledger, volunteer, activity, at(13), at(14)).id
    revoked = lands_before_next_save(ledger, monkeypatch, caller.revoke)
    head = ledger.head() + 1  # the revocation's event
    tried = inserts(ledger, monkeypatch)
    with relying_on_grant(caller.grant), pytest.raises(TokenRevoked) as refused:
        WRITES[write](ledger, caller, volunteer, activity, session)
    assert revoked and ledger.head() == head  # nothing of the write stored
    assert len(tried) == 2  # the revocation's, then the write's once: not run again
    assert caller.grant.id in str(refused.value)


def test_a_write_relying_on_a_grant_revoked_before_it_began_is_refused(
        ledger: Ledger, caller: Caller) -> None:
    volunteer = make_volunteer(ledger, caller.unit)
    activity = make_activity(ledger, caller.unit)
    caller.revoke()
    head = ledger.head()
    with relying_on_grant(caller.grant), pytest.raises(TokenRevoked):
        record(ledger, volunteer, activity, origin=caller.origin)
    assert ledger.head() == head


def test_a_write_relying_on_a_live_grant_is_stored(ledger: Ledger, caller: Caller) -> None:
    volunteer = make_volunteer(ledger, caller.unit)
    activity = make_activity(ledger, caller.unit)
    with relying_on_grant(caller.grant):
        written = record(ledger, volunteer, activity, origin=caller.origin)
    assert ledger.get_session(written.id).minutes == 60


def test_a_race_lost_to_another_write_is_still_run_again(
        ledger: Ledger, caller: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a grant that moved refuses the caller: a write that lost an ordinary race on
    the same records is checked again and stored, as before."""
    volunteer = make_volunteer(ledger, caller.unit)
    activity = make_activity(ledger, caller.unit)
    rival = lands_before_next_save(ledger, monkeypatch, lambda: ledger.record_sessions(
        recorder_of(caller.unit), [session_record(volunteer, activity, at(15), at(16))]))
    tried = inserts(ledger, monkeypatch)
    with relying_on_grant(caller.grant):
        written = record(ledger, volunteer, activity, origin=caller.origin)
    assert rival and len(tried) == 3  # the rival's, the write's lost race, its retry
    assert len(ledger.get_volunteer(volunteer).sessions) == 2
    assert ledger.get_session(written.id).minutes == 60


def test_a_token_may_revoke_itself(ledger: Ledger) -> None:
    """The revocation saves the very grant its write relies on, at the version it was let in."""
    token, written = ledger.issue_token(ADMIN, "admin")
    found = ledger.token_grant(token)
    assert found is not None and found[0] is not None
    with relying_on_grant(Grant(written.id, found[1])):
        ledger.revoke_token(Origin(found[0]), written.id, "leaving")
    assert ledger.authenticate(token) is None


def test_writes_grouped_together_each_rely_on_their_own_callers_grant(
        ledger: Ledger, caller: Caller) -> None:
    """Single sessions sent at once share a transaction (ledger/grouping.py), and whichever
    caller's thread leads saves the others' too: each with its own caller's grant."""
    live = Caller(ledger)
    mine = make_volunteer(ledger, caller.unit), make_activity(ledger, caller.unit)
    theirs = make_volunteer(ledger, live.unit), make_activity(ledger, live.unit)
    office = make_volunteer(ledger), make_activity(ledger)
    caller.revoke()
    batch, release = ledger.record_sessions, threading.Event()

    def held(origin: Origin, records: Any) -> Any:
        if origin == ADMIN:  # the first batch, while the others queue behind it
            release.wait(timeout=30)
        return batch(origin, records)

    ledger.record_sessions = held  # type: ignore[method-assign]
    results: dict[str, Any] = {}

    def send(name: str, grant: Grant | None, origin: Origin, vol: str, act: str) -> None:
        with relying_on_grant(grant):
            try:
                results[name] = record(ledger, vol, act, origin=origin)
            except Exception as error:
                results[name] = error

    threads = [threading.Thread(target=send, args=args) for args in [
        ("office", None, ADMIN, *office), ("revoked", caller.grant, caller.origin, *mine),
        ("live", live.grant, live.origin, *theirs)]]
    for queued, thread in enumerate(threads):
        thread.start()
        deadline = time.monotonic() + 10
        while len(ledger._sessions_together._waiting) < queued:  # the leader takes its own
            assert time.monotonic() < deadline, "the writes did not queue"
            time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    # The revoked caller's thread led the last two: the live caller's write is its own.
    assert isinstance(results["revoked"], TokenRevoked)
    assert results["live"].created and results["office"].created
    assert not ledger.get_volunteer(mine[0]).sessions
