"""The ledger decodes stored events exactly as the library would, only faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.demo import generate_district
from ledger.errors import InvalidField
from ledger.transcoding import LedgerTranscoder


def _both() -> tuple[JSONTranscoder, LedgerTranscoder]:
    library, ours = JSONTranscoder(), LedgerTranscoder()
    for transcoder in (library, ours):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
    return library, ours


def test_decoding_agrees_with_the_library_on_nested_values() -> None:
    library, ours = _both()
    value = {
        "started_at": datetime(2017, 3, 5, 9, 0, tzinfo=timezone(timedelta(hours=8))),
        "recorded": datetime.now(UTC),
        "actor": {"id": "token-1", "role": "recorder", "unit_id": "unit-1"},
        "ids": [uuid4(), uuid4()],
        "amount": Decimal("1.50"),
        "personal": {"skills": ["急救", "法律"], "phone": None},
        "minutes": 150,
        "hours": 2.5,
    }
    encoded = library.encode(value)
    assert ours.decode(encoded) == library.decode(encoded)


def test_an_offset_survives_the_round_trip() -> None:
    _, ours = _both()
    moment = datetime(2017, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=8)))
    decoded = ours.decode(ours.encode({"at": moment}))["at"]
    assert decoded == moment and decoded.utcoffset() == timedelta(hours=8)


def test_a_value_that_json_cannot_hold_is_refused_before_it_is_stored() -> None:
    # Python's encoder would write NaN, which no JSON parser (ours: orjson) reads back.
    _, ours = _both()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(InvalidField):
            ours.encode({"criteria": {"min_hours_in_year": bad}})
    assert ours.decode(ours.encode({"hours": 1.5})) == {"hours": 1.5}


def test_every_stored_event_of_a_district_is_written_as_the_library_writes_it(
        ledger: Ledger) -> None:
    """orjson writes the events; the library's encoder must give the same bytes for each."""
    generate_district(ledger, 40, 300, 2017)
    ours: Any = ledger.mapper.transcoder
    assert isinstance(ours, LedgerTranscoder)
    kinds = set()
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start, 1000)
        for stored in page:
            value = ours.decode(stored.state)
            assert ours.encode(value) == bytes(stored.state)
            assert JSONTranscoder.encode(ours, value) == bytes(stored.state), stored.topic
            kinds.add(stored.topic)
        if len(page) < 1000:
            break
        start = page[-1].id + 1
    assert {"ledger.sessions:ServiceSession.Recorded",
            "ledger.volunteers:Volunteer.SessionBooked"} < kinds and len(kinds) >= 10
    # A snapshot holds the volunteer's calendar: lists of lists, datetimes inside.
    first = ledger.recorder.select_notifications(
        1, 1, topics=["ledger.volunteers:Volunteer.Registered"])[0]
    volunteer = ledger.repository.get(first.originator_id)
    assert volunteer.sessions
    stored_snapshot = ledger.mapper.to_stored_event(type(volunteer).Snapshot.take(volunteer))
    value = ours.decode(stored_snapshot.state)
    assert JSONTranscoder.encode(ours, value) == bytes(stored_snapshot.state)


_LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text()
           | st.datetimes(timezones=st.timezones()) | st.decimals(allow_nan=False))
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@given(_VALUES)
@settings(max_examples=300, deadline=None)
def test_orjson_and_the_library_write_the_same_bytes(value: Any) -> None:
    library, ours = _both()
    try:
        expected = library.encode(value)
    except UnicodeEncodeError:  # a lone surrogate: neither can store it
        with pytest.raises(UnicodeEncodeError):
            ours.encode(value)
        return
    assert ours.encode(value) == expected


@given(st.recursive(st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=10))
@settings(max_examples=200, deadline=None)
def test_floats_read_back_as_the_library_would_read_them(value: Any) -> None:
    library, ours = _both()  # orjson may spell an exponent differently (1e16, not 1e+16)
    assert library.decode(ours.encode(value)) == library.decode(library.encode(value))


def test_what_orjson_would_write_otherwise_takes_the_library_path() -> None:
    library, ours = _both()
    for value in ({"ids": [uuid4()]}, {"big": 2**70}, {1: "a key that is not text"},
                  {"hours": (1.5, uuid4())},
                  # orjson would round this offset (+08:05:43, local mean time) to +08:06
                  {"at": datetime(1800, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))},
                  {"at": datetime(2017, 3, 5, 8, 0, 0, 123, tzinfo=UTC)},
                  {"naive": datetime(999, 1, 1)}):
        assert ours.encode(value) == library.encode(value)
    with pytest.raises(InvalidField):
        ours.encode({"nested": [{"x": float("nan")}]})
