"""A body its schema refused still has its other fields checked by the ledger's own rules.

Two kinds of rule guard a write: the schema's (pydantic: types, formats, enumerations, blank
text) and the ledger's (hidden characters, days in range, a session's length, a date of birth
against the registration, …). A body the schema refused never reached the ledger, so a blank
`name` hid a `birth_date` in the future, an empty `source_record_id` an end before the start,
and an unknown `program_code` an activity that ends before it starts: the client learned of
them one answer at a time (bb35 F1). Here the fields the schema let through are typed as the
route's model types them and given to the same ledger checks the write runs, with the refused
fields held as refused (`FieldChecks(refused=…)`: their rules and every comparison with them
are passed over); what those checks refuse is named after the schema's refusals, in one 422.

Only the checks of a request on its own are run: nothing is looked up (an id it names, an
overlap), and nothing is written. A route opts in with `@after_schema(Model, checks)`; a batch
with `@after_schema(ItemModel, checks, items="records")`: each item of the list is checked as
a body of its own, and what is refused of it named after its place (`records.3.ended_at`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ledger.errors import InvalidField, InvalidFields

# (the ledger, the typed fields the schema let through, the fields held as refused): runs the
# ledger's checks of the request on its own, raising what they refuse.
log = logging.getLogger("vledger.api")

Checks = Callable[[Any, Mapping[str, Any], frozenset[str]], None]
F = TypeVar("F", bound=Callable[..., Any])

# A location the schema refused, after "body": ("name",), ("records", 3, "ended_at").
Location = tuple[Any, ...]

_CHECKS: dict[Callable[..., Any], tuple[type[BaseModel], Checks, str | None]] = {}

# What a check is given for a field held as refused: a value of the field's type, whose own
# rules and comparisons are passed over anyway.
SOME_TEXT = "x"
SOME_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
SOME_LATER_INSTANT = SOME_INSTANT + timedelta(hours=1)
SOME_DAY = date(2000, 1, 1)


def after_schema(model: type[BaseModel], checks: Checks,
                 items: str | None = None) -> Callable[[F], F]:
    """Register a route's ledger checks of its body `model`, for a body its schema refused;
    with `items`, of each item (a `model`) of the body's list `items`."""
    def register(endpoint: F) -> F:
        _CHECKS[endpoint] = (model, checks, items)
        return endpoint
    return register


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    if not field.metadata:
        return TypeAdapter(field.annotation)  # type: ignore[arg-type]
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)])  # type: ignore[arg-type]


def typed(model: type[BaseModel], body: Mapping[str, Any],
          refused: frozenset[str]) -> dict[str, Any]:
    """The body's fields the schema let through, typed as the model types them."""
    values: dict[str, Any] = {}
    for name in model.model_fields:
        if name in refused or name not in body:
            continue
        try:
            value = _adapter(model, name).validate_python(body[name])
        except ValidationError:  # refused with another (which the schema names)
            continue
        values[name] = value.value if hasattr(value, "value") else value
    return values


def problems(endpoint: Any, ledger: Any, body: Any,
             refused: Sequence[Location]) -> list[InvalidField]:
    """What the ledger's own checks refuse of the fields the schema let through (none where
    the route registered no checks, or the body is not a JSON object); `refused`: where the
    schema refused the body."""
    entry = _CHECKS.get(endpoint)
    if entry is None or not isinstance(body, Mapping) or ledger is None:
        return []
    model, checks, items = entry
    if items is None:
        return _refused(model, checks, ledger, body, frozenset(str(loc[0]) for loc in refused))
    listed = body.get(items)
    if not isinstance(listed, list) or (items,) in refused:
        return []  # the list itself was refused (empty, too long): its items are not read
    found: list[InvalidField] = []
    for index, item in enumerate(listed):
        if not isinstance(item, Mapping) or (items, index) in refused:
            continue
        held = frozenset(str(loc[2]) for loc in refused
                         if len(loc) > 2 and loc[0] == items and loc[1] == index)
        for problem in _refused(model, checks, ledger, item, held):
            field = f"{items}.{index}.{problem.field}"
            found.append(InvalidField(f"{field} {problem.rule}", field))
    return found


def _refused(model: type[BaseModel], checks: Checks, ledger: Any, body: Mapping[str, Any],
             refused: frozenset[str]) -> list[InvalidField]:
    """What `checks` refuse of one body's fields that its schema let through."""
    try:
        values = typed(model, body, refused)
        held = frozenset(refused | {name for name in body if name not in values})
        checks(ledger, values, held)
    except InvalidFields as several:
        found = several.problems
    except InvalidField as one:
        found = [one]
    except Exception:  # a fault here must not turn the schema's 422 into a 500
        log.exception("the ledger's checks after a schema refusal failed")
        return []
    else:
        return []
    return [p for p in found if p.field and p.field.split(".")[0] not in held]
