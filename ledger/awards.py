"""Award rules (published criteria per award and year, versioned) and awards granted or revoked."""

from __future__ import annotations

import math
from typing import Any

from eventsourcing.domain import event

from ledger.aggregate import LedgerAggregate
from ledger.catalogue import AwardKind
from ledger.errors import AwardAlreadyGranted, AwardAlreadyRevoked, InvalidField, InvalidFields

_UNIT_CRITERIA: dict[str, type] = {
    "min_hours_in_year": float,
    "min_active_volunteers": int,
    "min_hours_per_volunteer": float,
}

# The criteria each award kind understands, with the type of value each requires.
CRITERIA: dict[AwardKind, dict[str, type]] = {
    AwardKind.most_beautiful_volunteer: {
        "min_hours_in_year": float,
        "min_star_level": int,
        "training_required": bool,
        "min_registered_days": int,
        "no_voided_sessions": bool,
        "not_awarded_in_previous_years": int,
        "insurance_required": bool,
    },
    AwardKind.best_organisation: _UNIT_CRITERIA,
    AwardKind.best_community: _UNIT_CRITERIA,
    AwardKind.best_project: {
        "min_sessions": int,
        "min_volunteers": int,
        "min_hours_in_year": float,
    },
}

# Who may receive each award: a volunteer, a unit of one kind, or a program (A1…C4).
RECIPIENT_KIND: dict[AwardKind, str] = {
    AwardKind.most_beautiful_volunteer: "volunteer",
    AwardKind.best_organisation: "organisation",
    AwardKind.best_community: "community",
    AwardKind.best_project: "program",
}


# No criterion of any award needs more than this; a larger value is a typing mistake.
CRITERION_LIMIT = 1_000_000_000
# Criteria with a smaller bound of their own (bb18 F3: 274 years of registration were taken).
LIMITS: dict[str, tuple[int, str]] = {
    "min_star_level": (5, "the highest star level"),
    "min_registered_days": (36_525, "a hundred years"),
    "not_awarded_in_previous_years": (100, "a hundred years"),
}


def check_criteria(award: AwardKind, criteria: dict[str, Any]) -> dict[str, Any]:
    """Validate a flat criteria object for an award kind; returns the normalised criteria.

    Every bad criterion is named in one answer (InvalidFields), not only the first.
    """
    known = CRITERIA[award]
    if not criteria:
        raise InvalidField("the rules must set at least one criterion", "criteria")
    clean: dict[str, Any] = {}
    problems: list[InvalidField] = []
    for name, value in criteria.items():
        try:
            clean[name] = _criterion(award, known, name, value)
        except InvalidField as problem:
            problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InvalidFields(problems)
    return clean


def _criterion(award: AwardKind, known: dict[str, type], name: str, value: Any) -> Any:
    kind = known.get(name)
    if kind is None:
        raise InvalidField(
            f"{name} is not a criterion of {award.value}; known: {', '.join(known)}", name)
    if kind is bool:
        if not isinstance(value, bool):
            raise InvalidField(f"{name} must be true or false", name)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField(f"{name} must be a number", name)
    # An int is finite; isfinite() would turn one past a float's range into an OverflowError
    # (bb28 F1: a 500 for 10**400). It is refused as too large just below.
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidField(f"{name} must be a finite number", name)
    if value < 0:
        raise InvalidField(f"{name} must not be negative", name)
    if value > CRITERION_LIMIT:
        raise InvalidField(f"{name} must be at most {CRITERION_LIMIT:,}", name)
    if kind is int:
        if value != int(value):
            raise InvalidField(f"{name} must be a whole number", name)
        value = int(value)
    if name in LIMITS and value > LIMITS[name][0]:
        raise InvalidField(f"{name} must be at most {LIMITS[name][0]:,} ({LIMITS[name][1]})",
                           name)
    return value


def rules_id(award: AwardKind, year: int) -> str:
    return f"rules-{award.value}-{year}"


def award_id(award: AwardKind, year: int, recipient_id: str) -> str:
    return f"award-{year}-{award.value}-{recipient_id}"


class AwardRules(LedgerAggregate):
    """The criteria for one award and year; each publication is a new version."""

    id: str  # chosen by the ledger, see ledger.aggregate


    @event("Published")
    def __init__(self, award: str, year: int, criteria: dict[str, Any], version: int,
                 actor: dict[str, Any], source: str) -> None:
        self.award = award
        self.year = year
        self.criteria = criteria
        self.rules_version = version

    def republish(self, criteria: dict[str, Any], meta: dict[str, Any]) -> None:
        """Publish a new version of the criteria."""
        self._republished(award=self.award, year=self.year, criteria=criteria,
                          version=self.rules_version + 1, **meta)

    @event("Republished")
    def _republished(self, award: str, year: int, criteria: dict[str, Any], version: int,
                     actor: dict[str, Any], source: str) -> None:
        self.criteria = criteria
        self.rules_version = version


class Award(LedgerAggregate):
    """A commendation granted to one recipient for one year, possibly revoked."""

    id: str  # chosen by the ledger, see ledger.aggregate


    # `eligibility`: what the views said of the recipient under the rules when the committee
    # granted it (`Eligibility.seen`), None for grants recorded before it was kept. A
    # committee may grant against the criteria; the record then says so.
    @event("Granted")
    def __init__(self, award: str, year: int, recipient_id: str, recipient_kind: str,
                 decision_ref: str, rules_version: int, actor: dict[str, Any],
                 source: str, eligibility: dict[str, Any] | None = None) -> None:
        self.award = award
        self.year = year
        self.recipient_id = recipient_id
        self.recipient_kind = recipient_kind
        self.decision_ref = decision_ref
        self.rules_version = rules_version
        self.eligibility = eligibility
        self.revoked_reason: str | None = None

    @property
    def is_live(self) -> bool:
        return self.revoked_reason is None

    def regrant(self, decision_ref: str, rules_version: int, meta: dict[str, Any],
                eligibility: dict[str, Any] | None = None) -> None:
        """Grant a revoked award again, by a new decision."""
        self.ensure_revoked()
        self._regranted(decision_ref=decision_ref, rules_version=rules_version,
                        eligibility=eligibility, **meta)

    def ensure_revoked(self) -> None:
        """Refuse a second grant while this one stands (409)."""
        if self.is_live:
            raise AwardAlreadyGranted(
                f"{self.award} {self.year} was already granted to {self.recipient_id}",
                "recipient_id",
            )

    def revoke(self, reason: str, meta: dict[str, Any]) -> None:
        """Withdraw the award; the grant stays in the history."""
        if not self.is_live:
            raise AwardAlreadyRevoked(f"award {self.id} was already revoked")
        self._revoked(award=self.award, year=self.year, recipient_id=self.recipient_id,
                      reason=reason, **meta)

    @event("Regranted")
    def _regranted(self, decision_ref: str, rules_version: int, actor: dict[str, Any],
                   source: str, eligibility: dict[str, Any] | None = None) -> None:
        self.decision_ref = decision_ref
        self.rules_version = rules_version
        self.eligibility = eligibility
        self.revoked_reason = None

    @event("Revoked")
    def _revoked(self, award: str, year: int, recipient_id: str, reason: str,
                 actor: dict[str, Any], source: str) -> None:
        self.revoked_reason = reason
