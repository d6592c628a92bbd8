"""A volunteer's calendar index: overlap checks that look at a few neighbours, not every session.

The index (live sessions sorted by start, with the longest one's length) is built on the first
check and kept in step by the session events. These tests drive one in-memory volunteer through
random bookings, corrections and voids and compare every check with a scan of every session.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from ledger.aggregate import LedgerSnapshot
from ledger.errors import OverlappingSession
from ledger.volunteers import Volunteer
from tests.factories import CST

META = {"actor": {"kind": "system", "id": "test"}, "source": "test"}
FIRST = datetime(2017, 1, 2, 8, 0, tzinfo=CST)


def volunteer() -> Volunteer:
    return Volunteer(name="张三", home_unit_id="unit-1", registered_on="2017-01-01",  # type: ignore[call-arg]
                     volunteer_number="MLV0000001", personal={}, id="vol-1", **META)


def scan(v: Volunteer, start: datetime, end: datetime, ignore: str = "") -> str | None:
    """The check as it was: every session, in the order they were booked."""
    s0, e0 = start.timestamp(), end.timestamp()
    return next((i for i, (s, e, on) in v.sessions.items()
                 if on and i != ignore and s < e0 and s0 < e), None)


def test_the_kept_index_finds_what_a_scan_of_every_session_finds() -> None:
    rng = random.Random(11)
    v = volunteer()
    v.overlapping(FIRST, FIRST + timedelta(hours=1))  # built empty, then kept in step
    checks = clashes = 0
    for n in range(3000):
        start = FIRST + timedelta(minutes=15 * rng.randrange(4 * 24 * 20))
        # Mostly short sessions; now and then a day-long one, which widens the search back.
        end = start + timedelta(minutes=rng.choice([15, 30, 60, 120, 24 * 60]
                                                   if rng.random() < 0.05 else [15, 30, 60]))
        live = [i for i, (_s, _e, on) in v.sessions.items() if on]
        action = rng.random()
        ignore = rng.choice(live) if live and action >= 0.6 else ""
        expected = scan(v, start, end, ignore)
        found = v.overlapping(start, end, ignore)
        checks += 1
        clashes += expected is not None
        assert (found is None) == (expected is None), n
        if found is not None:  # a real overlap, maybe another one than the scan's first
            s, e, on = v.sessions[found]
            assert on and found != ignore and s < end.timestamp() and start.timestamp() < e
            if live and action < 0.2:
                v.release(found, META)
            continue
        if action < 0.6:
            v.book(f"ses-{n}", start, end, META)
        else:
            v.rebook(ignore, start, end, META)
    fresh = volunteer()
    fresh.sessions = {i: list(t) for i, t in v.sessions.items()}
    assert fresh.overlapping(FIRST, FIRST + timedelta(days=30)) is not None
    assert v._live_calendar()[0] == fresh._live_calendar()[0]  # in step with a fresh build
    assert clashes > 300 and checks - clashes > 300


def test_a_refused_booking_names_the_overlapping_session() -> None:
    v = volunteer()
    v.book("ses-a", FIRST, FIRST + timedelta(hours=24), META)
    v.book("ses-b", FIRST + timedelta(hours=24), FIRST + timedelta(hours=25), META)  # touches
    late = FIRST + timedelta(hours=23)
    try:
        v.book("ses-c", late, late + timedelta(minutes=30), META)
    except OverlappingSession as error:
        assert "ses-a" in str(error)
    else:
        raise AssertionError("an overlap with a day-long session was not found")


def test_the_index_is_neither_snapshotted_nor_compared() -> None:
    v = volunteer()
    v.book("ses-a", FIRST, FIRST + timedelta(hours=1), META)  # the check builds the index
    twin = Volunteer.__new__(Volunteer)
    twin.__dict__.update({k: value for k, value in vars(v).items() if k != "_calendar"})
    assert "_calendar" in vars(v)
    assert twin == v
    assert "_calendar" not in LedgerSnapshot.take(v).state
