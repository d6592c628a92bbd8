"""FieldChecks: a request's refused fields, kept and raised together in the body's order."""

from __future__ import annotations

import pytest

from ledger.errors import FieldChecks, InvalidField, InvalidFields


def refuse(field: str) -> None:
    raise InvalidField(f"{field} is wrong", field)


def test_one_refused_field_is_raised_as_itself() -> None:
    checks = FieldChecks(("name", "kind"))
    assert checks.run(str.upper, "ok") == "OK"
    checks.run(refuse, "kind")
    with pytest.raises(InvalidField) as refused:
        checks.raise_found()
    assert type(refused.value) is InvalidField and refused.value.field == "kind"


def test_several_are_raised_in_the_body_s_order_items_under_their_field() -> None:
    checks = FieldChecks(("name", "skills", "phone"))
    for field in ("colour", "phone", "skills.3", "skills.1", "name"):
        checks.run(refuse, field)
    with pytest.raises(InvalidFields) as refused:
        checks.raise_found()
    assert [p.field for p in refused.value.problems] == [
        "name", "skills.3", "skills.1", "phone", "colour"]
    assert refused.value.described.startswith("name is wrong; skills.3 is wrong")


def test_a_field_keeps_the_first_rule_it_breaks_and_is_no_longer_passed() -> None:
    checks = FieldChecks()
    assert checks.passed("skills")
    checks.add(InvalidField("skills.2 is hidden", "skills.2"))
    checks.add(InvalidField("skills.2 is long", "skills.2"))
    assert not checks.passed("skills") and not checks.passed("name", "skills.2")
    assert checks.passed("skill", "name")
    assert [p.message for p in checks.found.values()] == ["skills.2 is hidden"]


def test_a_check_that_refuses_several_fields_gives_each() -> None:
    def both() -> None:
        raise InvalidFields([InvalidField("a is wrong", "a"), InvalidField("b is wrong", "b")])

    checks = FieldChecks(("b", "a"))
    assert checks.run(both) is None
    with pytest.raises(InvalidFields) as refused:
        checks.raise_found()
    assert [p.field for p in refused.value.problems] == ["b", "a"]


def test_nothing_refused_raises_nothing() -> None:
    FieldChecks().raise_found()
