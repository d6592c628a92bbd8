"""The ledger decodes stored events exactly as the library would, only faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex

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
