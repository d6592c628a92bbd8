"""Every rule the ledger enforces fails with a specific `LedgerError`.

    LedgerError
    ├── InvalidRequest        the request is wrong on its own or against fixed attributes (422)
    │   ├── InvalidField      one named field breaks one rule
    │   ├── InvalidFields     several named fields, each breaking a rule (see FieldChecks)
    │   ├── KeyReused         an idempotency key sent again with another request
    │   └── UnknownReference  an id in the request names nothing the ledger knows
    ├── NotFound              the thing addressed does not exist (404)
    ├── Conflict              the request contradicts other facts of the ledger (409)
    │   ├── OverlappingSession, DuplicateRecordConflict, SessionVoided,
    │   ├── AwardAlreadyGranted, AlreadyMember, ClosedReference, ConcurrentChange,
    │   ├── CreditedAfterClosure
    ├── Forbidden             the actor's role or unit may not do this (403)
    ├── VersionMismatch       the thing changed since the version the client named (412)
    ├── StoreBusy             the store is busy with other writes; try again shortly (503)
    └── AuditLogAltered       the events no longer extend a published checkpoint (500)
        └── StoreAltered      a write would build on an event changed after it was logged (503)

The API maps these classes to HTTP status codes once; the CLI prints their messages.

`TokenRevoked` is apart: it refuses the caller, not the request (401, as for a token revoked
before the request came), so no path that answers for a request's content takes it for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class LedgerError(Exception):
    """Base of every error the ledger raises for a request it refuses."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def rule(self) -> str:
        """The rule broken, without the field's name, for where `field` is shown beside it."""
        if self.field and self.message.startswith(self.field + " "):
            return self.message[len(self.field) + 1:]
        return self.message

    @property
    def described(self) -> str:
        """The message naming its field once: "name must not be empty", "unit_id: no unit …"."""
        if self.field is None or self.rule != self.message:
            return self.message
        return f"{self.field}: {self.message}"


class InvalidRequest(LedgerError):
    """The request is wrong on its own or against fixed attributes of what it names."""


class InvalidField(InvalidRequest):
    """One field breaks one rule."""


class InvalidFields(InvalidRequest):
    """Several fields each break a rule: every one is named, not only the first."""

    def __init__(self, problems: list[InvalidField]) -> None:
        super().__init__("; ".join(p.message for p in problems), problems[0].field)
        self.problems = problems

    @property
    def rule(self) -> str:
        """Every rule broken, each with its field: no one field stands beside them."""
        return self.described

    @property
    def described(self) -> str:
        return "; ".join(p.described for p in self.problems)


class FieldChecks:
    """The checks of one request's fields, run to the end rather than to the first refusal
    (bb29 F5: each fix revealed the next bad field). The first rule each field breaks is
    kept; `raise_found` raises them together, in the order of the body's fields.

    A check that compares fields (a date of birth with the registration date) runs only when
    the fields it reads `passed` their own: "after registered_on" says nothing of a
    registration date that was refused. Checks that need the body right first (a lookup of an
    id it names, an overlap with stored sessions) run after `raise_found`, as before.
    """

    __slots__ = ("found", "order")

    def __init__(self, order: Sequence[str] = (), refused: Iterable[str] = ()) -> None:
        """`refused`: fields the request's schema refused already (api/after_schema.py): held
        as refused, so that their rules and every comparison with them are passed over."""
        self.order = order
        self.found: dict[str, InvalidField] = {
            field: InvalidField(f"{field} was refused by the request's schema", field)
            for field in refused}

    # Positional arguments only: a valid write runs a few of these for every record of an
    # import, and a ** parameter would make a dict on each call.
    def run(self, rule: Callable[[*Ts], T], *args: *Ts) -> T | None:
        """`rule(*args)`, or None once it refused (what it refused is kept)."""
        try:
            return rule(*args)
        except InvalidField as problem:
            self.add(problem)
        except InvalidFields as several:
            for one in several.problems:
                self.add(one)
        return None

    def add(self, problem: InvalidField) -> None:
        """Keep a refusal, unless its field was refused already."""
        self.found.setdefault(problem.field or "body", problem)

    def passed(self, *fields: str) -> bool:
        """Whether no rule refused these fields (nor an item of one, `skills.2`)."""
        return not self.found or not any(
            f == field or f.startswith(field + ".") for f in self.found for field in fields)

    def raise_found(self) -> None:
        """Raise what was refused: one field's refusal as itself, several as InvalidFields
        in the body's order (`order`; a field's items, `skills.2`, in the order found; fields
        it does not list after the others)."""
        if not self.found:
            return
        if len(self.found) == 1:
            raise next(iter(self.found.values()))
        place = {field: at for at, field in enumerate(self.order)}
        raise InvalidFields(sorted(self.found.values(), key=lambda p: place.get(
            (p.field or "").split(".")[0], len(place))))


class KeyReused(InvalidRequest):
    """An idempotency key came back with a request other than the one it was first sent with."""


class UnknownReference(InvalidRequest):
    """An id in the request body names nothing the ledger knows."""


class NotFound(LedgerError):
    """The thing addressed by id does not exist."""


class Conflict(LedgerError):
    """The request contradicts other facts of the ledger."""


class OverlappingSession(Conflict):
    """The volunteer already has a live session during that time."""


class DuplicateRecordConflict(Conflict):
    """A source record id was used before for a different record."""


class SessionVoided(Conflict):
    """A voided session cannot be corrected or voided again."""


class AwardAlreadyGranted(Conflict):
    """The award was already granted to that recipient for that year."""


class NotACandidate(Conflict):
    """The recipient was not registered (a volunteer) or open (a unit) on any day of the
    award's year."""


class AwardAlreadyRevoked(Conflict):
    """The award was already revoked."""


class AlreadyMember(Conflict):
    """The volunteer already belongs to that unit on that day."""


class ClosedReference(Conflict):
    """The request refers to something closed, cancelled or deregistered."""


class CreditedAfterClosure(Conflict):
    """A unit would close on or before a day it has live service credited on (sessions it
    organised, or sessions its members served): those must be voided or corrected first."""


class ConcurrentChange(Conflict):
    """Another writer changed the same thing at the same moment; try again."""


class VersionMismatch(LedgerError):
    """The client asked to change a version of something that is no longer its current one
    (an `If-Match` that does not match): nothing was written."""


class Forbidden(LedgerError):
    """The actor's role or unit may not do this."""


class StoreBusy(LedgerError):
    """The store is busy with other writers; nothing was written, try again shortly."""


class ViewsBehind(StoreBusy):
    """The views have not read far enough to answer (being rebuilt, or held by a stalled
    worker); nothing is wrong with the request: try again shortly."""


class AuditLogAltered(LedgerError):
    """The audit log no longer extends the last checkpoint this store published, or an event
    is no longer the one the log took in: it was changed or removed after it was logged. No
    checkpoint is signed over such a log and no inclusion proof is given for such an event
    (500); `vledger verify` finds every such event."""


def changed_after_logging_message(position: int) -> str:
    """What a read that refuses to serve an event, and a write that refuses to build on it,
    both say of an event whose bytes no longer give the leaf the audit log took in for it."""
    return (f"the event at position {position} no longer hashes to its leaf in the audit "
            "log: it was changed in the store after it was logged; run vledger verify")


class StoreAltered(AuditLogAltered):
    """A write loaded an aggregate whose stored event is no longer the one the audit log took
    in (changed in the database after it was logged): it is not checked against, nor built
    on, such state, and records nothing (503: nothing is wrong with the request, but the
    store must be restored before that aggregate can be written again)."""

    def __init__(self, aggregate_id: str, position: int, why: str | None = None) -> None:
        super().__init__(f"{aggregate_id} is not as the ledger recorded it, so nothing is "
                         "read from it or built on it, and nothing was written: "
                         + (why or changed_after_logging_message(position)))
        self.aggregate_id = aggregate_id
        self.position = position


class TokenRevoked(Exception):
    """The caller's token was revoked after its request was let in and before the request's
    write was stored: nothing of it was stored (ledger/guards.py)."""
