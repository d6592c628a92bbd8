"""The write side of the volunteer ledger: domain events, aggregates and the `Ledger` service."""

from ledger.application import Ledger
from ledger.base import Written
from ledger.catalogue import PROGRAMS, AwardKind, Role, UnitKind, star_level
from ledger.errors import (
    Conflict,
    Forbidden,
    InvalidField,
    InvalidFields,
    InvalidRequest,
    LedgerError,
    NotFound,
    UnknownReference,
)
from ledger.provenance import SYSTEM, Actor, Origin
from ledger.recording import BatchResult, SessionWritten
from ledger.registry import VolunteerApplication
from ledger.sessions import RecordOutcome, SessionRecord
from ledger.settings import Settings, StoreLocation

__all__ = [
    "PROGRAMS",
    "SYSTEM",
    "Actor",
    "AwardKind",
    "BatchResult",
    "Conflict",
    "Forbidden",
    "InvalidField",
    "InvalidFields",
    "InvalidRequest",
    "Ledger",
    "LedgerError",
    "NotFound",
    "Origin",
    "RecordOutcome",
    "Role",
    "SessionRecord",
    "SessionWritten",
    "Settings",
    "StoreLocation",
    "UnitKind",
    "UnknownReference",
    "VolunteerApplication",
    "Written",
    "star_level",
]
