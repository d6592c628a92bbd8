"""Units: registered with kind, parent and level; renamed, moved, closed; then never referred to."""

from __future__ import annotations

from datetime import date

import pytest

from ledger import Ledger
from ledger.errors import (
    ClosedReference,
    ConcurrentChange,
    InvalidField,
    InvalidFields,
    NotFound,
    UnknownReference,
    VersionMismatch,
)
from tests.factories import ADMIN, lands_before_next_save, make_unit


def close(ledger: Ledger, unit_id: str) -> None:
    ledger.close_unit(ADMIN, unit_id, date(2017, 6, 30), "merged into another unit")


def test_a_unit_is_registered_with_its_kind_parent_and_level(ledger: Ledger) -> None:
    town = make_unit(ledger, kind="town")
    unit_id = ledger.register_unit(ADMIN, "列东街道文明单位", "organisation", parent_id=town,
                                   civilized_level="city").id
    unit = ledger.get_unit(unit_id)
    assert (unit.name, unit.kind, unit.parent_id, unit.civilized_level) == (
        "列东街道文明单位", "organisation", town, "city")


def test_a_unit_of_an_unknown_kind_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_unit(ADMIN, "X", "village")
    assert refused.value.field == "kind"


def test_a_unit_of_an_unknown_civilized_level_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_unit(ADMIN, "X", "school", civilized_level="galactic")
    assert refused.value.field == "civilized_level"


def test_a_unit_needs_a_name(ledger: Ledger) -> None:
    with pytest.raises(InvalidField) as refused:
        ledger.register_unit(ADMIN, "  ", "town")
    assert refused.value.field == "name"


def test_a_unit_may_not_be_registered_under_an_unknown_parent(ledger: Ledger) -> None:
    with pytest.raises(UnknownReference) as refused:
        ledger.register_unit(ADMIN, "X", "community", parent_id="unit-nope")
    assert refused.value.field == "parent_id"


def test_a_unit_may_not_be_registered_under_a_closed_parent(ledger: Ledger) -> None:
    parent = make_unit(ledger)
    close(ledger, parent)
    with pytest.raises(ClosedReference) as refused:
        make_unit(ledger, kind="community", parent_id=parent)
    assert refused.value.field == "parent_id"


def test_an_unknown_unit_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        ledger.get_unit("unit-nope")


def test_a_unit_can_be_renamed(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    ledger.rename_unit(ADMIN, unit_id, "列西街道")
    assert ledger.get_unit(unit_id).name == "列西街道"


def test_a_unit_name_hiding_a_bidi_override_is_refused_and_the_old_name_kept(
        ledger: Ledger) -> None:
    unit_id = make_unit(ledger, name="列东街道")
    with pytest.raises(InvalidField) as refused:
        ledger.rename_unit(ADMIN, unit_id, "列东\u202e道街")
    assert refused.value.field == "name" and "U+202E" in refused.value.message
    with pytest.raises(InvalidField, match=r"U\+2067"):
        ledger.register_unit(ADMIN, "列西\u2067街道\u2069", "town")
    assert ledger.get_unit(unit_id).name == "列东街道"


def test_a_closed_unit_cannot_be_renamed(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    close(ledger, unit_id)
    with pytest.raises(ClosedReference):
        ledger.rename_unit(ADMIN, unit_id, "new name")


def test_a_unit_can_be_moved_under_another_parent(ledger: Ledger) -> None:
    old, new = make_unit(ledger), make_unit(ledger)
    unit_id = make_unit(ledger, kind="community", parent_id=old)
    ledger.move_unit(ADMIN, unit_id, new)
    assert ledger.get_unit(unit_id).parent_id == new


def test_a_unit_cannot_be_moved_under_its_own_descendant(ledger: Ledger) -> None:
    town = make_unit(ledger)
    community = make_unit(ledger, kind="community", parent_id=town)
    with pytest.raises(InvalidField) as refused:
        ledger.move_unit(ADMIN, town, community)
    assert refused.value.field == "parent_id"


def test_a_unit_cannot_be_moved_under_a_closed_unit(ledger: Ledger) -> None:
    closed, unit_id = make_unit(ledger), make_unit(ledger, kind="community")
    close(ledger, closed)
    with pytest.raises(ClosedReference) as refused:
        ledger.move_unit(ADMIN, unit_id, closed)
    assert refused.value.field == "parent_id"


def test_a_closed_unit_records_its_closing_date(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    close(ledger, unit_id)
    assert ledger.get_unit(unit_id).closed_on == "2017-06-30"


def test_closing_a_unit_needs_a_reason(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    with pytest.raises(InvalidField) as refused:
        ledger.close_unit(ADMIN, unit_id, date(2017, 6, 30), " ")
    assert refused.value.field == "reason"


def test_a_closed_unit_cannot_be_closed_again(ledger: Ledger) -> None:
    unit_id = make_unit(ledger)
    close(ledger, unit_id)
    with pytest.raises(ClosedReference):
        close(ledger, unit_id)


def test_a_change_another_change_of_the_unit_beat_is_refused(
        ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    unit_id = make_unit(ledger, name="列东")
    lands_before_next_save(ledger, monkeypatch,
                           lambda: ledger.rename_unit(ADMIN, unit_id, "列西"))
    with pytest.raises(ConcurrentChange, match="changed by another request"):
        ledger.change_unit(ADMIN, unit_id, name="列中")
    assert ledger.get_unit(unit_id).name == "列西"


def test_a_change_naming_another_version_of_the_unit_is_refused(ledger: Ledger) -> None:
    unit_id = make_unit(ledger, "community", parent_id=make_unit(ledger, "town"))
    with pytest.raises(VersionMismatch):
        ledger.change_unit(ADMIN, unit_id, name="x", expected_version=2)
    ledger.change_unit(ADMIN, unit_id, name="x", parent_id=None, move=True, expected_version=1)
    assert ledger.get_unit(unit_id).version == 3  # renamed and moved, in one write


def test_a_change_to_what_a_unit_already_is_writes_nothing(ledger: Ledger) -> None:
    parent = make_unit(ledger, "town")
    unit_id = ledger.register_unit(ADMIN, "列东社区", "community", parent_id=parent).id
    head = ledger.head()
    same = ledger.change_unit(ADMIN, unit_id, name=" 列东社区 ", parent_id=parent, move=True)
    assert (same.position, ledger.head(), ledger.get_unit(unit_id).version) == (head, head, 1)
    ledger.change_unit(ADMIN, unit_id, name="列东社区", parent_id=None, move=True)
    assert ledger.get_unit(unit_id).version == 2  # only the move was recorded


def test_a_unit_names_its_name_kind_and_level_at_once_and_stores_nothing(
        ledger: Ledger) -> None:
    head = ledger.head()
    with pytest.raises(InvalidFields) as refused:
        ledger.register_unit(ADMIN, "列东\u202e街道", "village", civilized_level="galactic")
    assert [p.field for p in refused.value.problems] == ["name", "kind", "civilized_level"]
    assert ledger.head() == head


def test_a_closure_names_its_day_and_its_reason_at_once(ledger: Ledger) -> None:
    unit_id, head = make_unit(ledger), ledger.head()
    with pytest.raises(InvalidFields) as refused:
        ledger.close_unit(ADMIN, unit_id, date(1899, 12, 31), " ")
    assert [p.field for p in refused.value.problems] == ["closed_on", "reason"]
    assert ledger.head() == head
