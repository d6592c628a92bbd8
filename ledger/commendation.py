"""Use cases of award committees and the office: award rules, awards, and access tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from ledger.access import (
    BOOTSTRAP_ADMIN_ID,
    AccessToken,
    check_token_grant,
    new_token,
    require_role,
    token_digest,
    token_id_for,
)
from ledger.aggregate import event_topic
from ledger.awards import (
    RECIPIENT_KIND,
    Award,
    AwardRules,
    award_id,
    check_criteria,
    rules_id,
)
from ledger.base import LedgerBase, Written, open_unit
from ledger.calendar import check_year, district_today
from ledger.catalogue import PROGRAMS, AwardKind, Role, member
from ledger.errors import Conflict, FieldChecks, InvalidField, NotACandidate, UnknownReference
from ledger.provenance import Actor, Origin
from ledger.text import MAX_REASON, article, check_label, check_text
from ledger.units import Unit
from ledger.volunteers import Volunteer


def award_kind(value: str) -> AwardKind:
    return member(AwardKind, "award", value)


def token_role(value: str) -> Role:
    return member(Role, "role", value)


class CommendationUseCases(LedgerBase):
    """Publishing award rules, granting and revoking awards, issuing access tokens."""

    def publish_award_rules(self, origin: Origin, award: str, year: int,
                            criteria: dict[str, Any]) -> tuple[int, int]:
        """Publish a new version of an award's criteria for a year; returns (version, position)."""
        require_role(origin.actor)
        checks = FieldChecks(("award", "year"))  # the criteria after, as the body gives them
        kind = checks.run(award_kind, award)
        checks.run(check_year, year)
        clean = checks.run(check_criteria, kind, criteria) if kind is not None else None
        checks.raise_found()
        assert kind is not None and clean is not None

        def attempt() -> tuple[int, int]:
            rules = self._get(AwardRules, rules_id(kind, year))
            if rules is None:
                rules = AwardRules(award=kind.value, year=year, criteria=clean,  # type: ignore[call-arg]
                                   version=1, id=rules_id(kind, year), **origin.meta())
            else:
                rules.republish(clean, origin.meta())
            return rules.rules_version, self._save(rules)

        return self._retrying(attempt)

    def get_award_rules(self, award: str, year: int) -> AwardRules | None:
        """The current rules for an award and year, if published."""
        return self._get(AwardRules, rules_id(award_kind(award), year))

    def award_rules_position(self, rules: AwardRules) -> int:
        """The position at which the current version of some rules was published."""
        return self._positions([rules.id])[rules.id][rules.version]

    def grant_award(self, origin: Origin, award: str, year: int, recipient_id: str,
                    decision_ref: str,
                    seen: Callable[[], dict[str, Any] | None] | None = None) -> Written:
        """Grant an award for a year to a recipient of the right kind, under published rules.

        With `seen`, asked once the request has passed the ledger's checks: what the views say
        of the recipient's eligibility, kept with the grant (the committee decides; the record
        shows whether it went against the criteria)."""
        require_role(origin.actor, Role.committee)
        kind, decision_ref = self.grant_fields(award, year, decision_ref)
        rules = self._get(AwardRules, rules_id(kind, year))
        if rules is None:
            raise InvalidField(f"no rules are published for {kind.value} {year}", "year")
        recipient_kind = self._check_recipient(kind, recipient_id, year)
        standing = self._get(Award, award_id(kind, year, recipient_id))
        if standing is not None:  # 409 now, not a wait for the views first (bb22)
            standing.ensure_revoked()
        eligibility = seen() if seen is not None else None

        def attempt() -> Written:
            the_id = award_id(kind, year, recipient_id)
            granted = self._get(Award, the_id)
            if granted is None:
                granted = Award(  # type: ignore[call-arg]
                    award=kind.value, year=year, recipient_id=recipient_id,
                    recipient_kind=recipient_kind, decision_ref=decision_ref,
                    rules_version=rules.rules_version, eligibility=eligibility, id=the_id,
                    **origin.meta(),
                )
            else:
                granted.regrant(decision_ref, rules.rules_version, origin.meta(), eligibility)
            return Written(granted.id, self._save(granted))

        return self._retrying(attempt)

    @staticmethod
    def grant_fields(award: str, year: int, decision_ref: str, refused: Iterable[str] = ()
                     ) -> tuple[AwardKind, str]:
        """A grant's award and decision as recorded, checked with its year on their own (422,
        naming every field refused; `refused`: fields the request's schema refused, held as
        refused); its rules and recipient are looked up."""
        checks = FieldChecks(("award", "year", "recipient_id", "decision_ref"), refused)
        kind = checks.run(award_kind, award)
        checks.run(check_year, year)
        if checks.passed("year") and year > district_today().year:  # bb18 F3: 2099 was taken
            checks.add(InvalidField(f"year {year} has not begun: an award goes to a year that "
                                    "has", "year"))
        decision_ref = checks.run(check_text, "decision_ref", decision_ref) or ""
        checks.raise_found()
        assert kind is not None
        return kind, decision_ref

    @staticmethod
    def revocation_reason(reason: str, refused: Iterable[str] = ()) -> str:
        """Why an award or a token is revoked, as recorded, checked on its own (422;
        `refused`: as for `grant_fields`)."""
        checks = FieldChecks(("reason",), refused)
        why = checks.run(check_text, "reason", reason, MAX_REASON)
        checks.raise_found()
        assert why is not None
        return why

    def _check_recipient(self, kind: AwardKind, recipient_id: str, year: int) -> str:
        """The recipient's kind, once it is known to be of the award's kind and a candidate
        of its year, as eligibility has them: a volunteer registered on 31 December of the
        year (its facts are taken as of that day; one who left during the year is no longer a
        volunteer of it), a unit open on at least one day of it (a later closure does not take
        a year's merit away)."""
        expected = RECIPIENT_KIND[kind]
        if expected == "program":
            if recipient_id not in PROGRAMS:
                self._refuse_other_kind(kind, expected, recipient_id)
                raise UnknownReference(
                    f"{kind.value} goes to a program code (A1…C4), "
                    f"not {recipient_id!r}", "recipient_id")
            return expected
        first, last = date(year, 1, 1).isoformat(), date(year, 12, 31).isoformat()
        if expected == "volunteer":
            volunteers = self._get_many(Volunteer, [recipient_id])
            if not volunteers:
                self._refuse_other_kind(kind, expected, recipient_id)
            volunteer = self._refer(Volunteer, recipient_id, "recipient_id", "volunteer",
                                    among=volunteers)
            ended = volunteer.deregistered_on
            if volunteer.registered_on > last or (ended is not None and ended <= last):
                span = f"from {volunteer.registered_on}" + (f" until {ended}" if ended else "")
                raise NotACandidate(
                    f"volunteer {recipient_id} was not registered on 31 December {year} "
                    f"(registered {span}), so is no candidate for {kind.value} {year}",
                    "recipient_id")
            return expected
        units = self._get_many(Unit, [recipient_id])
        if not units:
            self._refuse_other_kind(kind, expected, recipient_id)
        unit = self._refer(Unit, recipient_id, "recipient_id", "unit", among=units)
        if unit.kind != expected:
            raise _wrong_kind(kind, expected, recipient_id, f"{article(unit.kind)} {unit.kind}")
        if unit.closed_on is not None and unit.closed_on <= first:
            raise NotACandidate(
                f"unit {recipient_id} was closed on {unit.closed_on}, before {year} began, so "
                f"is no candidate for {kind.value} {year}", "recipient_id")
        return expected

    def _refuse_other_kind(self, kind: AwardKind, expected: str, recipient_id: str) -> None:
        """For a recipient not found as the award's kind: refuse it by what it is, if it is
        something else (bb22: a unit given for the most beautiful volunteer was "no volunteer
        with id …"); asked only once the expected kind was not found."""
        found = None
        if recipient_id in PROGRAMS:
            found = "a program"
        elif expected != "volunteer" and self._get(Volunteer, recipient_id) is not None:
            found = "a volunteer"
        elif expected in ("volunteer", "program"):
            unit = self._get(Unit, recipient_id)
            found = None if unit is None else f"{article(unit.kind)} {unit.kind}"
        if found is not None:
            raise _wrong_kind(kind, expected, recipient_id, found)

    def get_award(self, the_id: str) -> Award:
        """An award by id (404 when unknown)."""
        return self._find(Award, the_id, "award")

    def revoke_award(self, origin: Origin, the_id: str, reason: str) -> Written:
        """Revoke a granted award, with a reason."""
        require_role(origin.actor, Role.committee)

        def attempt() -> Written:
            granted = self.get_award(the_id)
            granted.revoke(self.revocation_reason(reason), origin.meta())
            return Written(granted.id, self._save(granted))

        return self._retrying(attempt)

    # -- access tokens ----------------------------------------------------------------------

    def issue_token(self, origin: Origin, role: str, unit_id: str | None = None,
                    label: str = "") -> tuple[str, Written]:
        """Issue a bearer token; returns the token (shown once) and the write."""
        require_role(origin.actor)
        the_role, label = self.token_fields(role, unit_id, label)
        if unit_id:
            open_unit(self._refer(Unit, unit_id, "unit_id", "unit"), "unit_id")
        token = new_token()
        grant = AccessToken(digest=token_digest(token), role=the_role.value,  # type: ignore[call-arg]
                            unit_id=unit_id or None, label=label, id=token_id_for(token),
                            **origin.meta())
        return token, Written(grant.id, self._save(grant))

    @staticmethod
    def token_fields(role: str, unit_id: str | None, label: str, refused: Iterable[str] = ()
                     ) -> tuple[Role, str]:
        """A token's role and label as recorded, checked with its unit on their own (422,
        naming every field refused; `refused`: as for `grant_fields`); its unit is looked
        up."""
        checks = FieldChecks(("role", "unit_id", "label"), refused)
        the_role = checks.run(token_role, role)
        if the_role is not None and checks.passed("role", "unit_id"):
            checks.run(check_token_grant, the_role, unit_id)
        label = checks.run(check_label, label) or ""
        checks.raise_found()
        assert the_role is not None
        return the_role, label

    def revoke_token(self, origin: Origin, token_id: str, reason: str) -> Written:
        """Revoke a token by its id; it is refused from then on."""
        require_role(origin.actor)
        if token_id == BOOTSTRAP_ADMIN_ID:  # bb22: it was "no token with id 'admin-token'"
            raise Conflict(
                f"{BOOTSTRAP_ADMIN_ID} is the server's VLEDGER_ADMIN_TOKEN, not a token the "
                "ledger issued, so it cannot be revoked: change or unset VLEDGER_ADMIN_TOKEN "
                "and restart the server")

        def attempt() -> Written:
            grant = self._find(AccessToken, token_id, "token")
            grant.revoke(self.revocation_reason(reason), origin.meta())
            return Written(grant.id, self._save(grant))

        return self._retrying(attempt)

    def authenticate(self, token: str) -> Actor | None:
        """The actor a presented token stands for, or None for an unknown or revoked token."""
        found = self.token_grant(token)
        return None if found is None else found[0]

    def token_grant(self, token: str) -> tuple[Actor | None, int] | None:
        """A presented token's actor (None once revoked) and its grant's version, or None
        when no grant was issued for it. The version changes with every later event of the
        grant, so a caller may keep the answer while `token_version_statement` returns it."""
        grant = self._get(AccessToken, token_id_for(token))
        if grant is None or grant.digest != token_digest(token):
            return None
        return (grant.actor() if grant.is_live else None), grant.version

    @property
    def token_version_statement(self) -> str:
        """SQL with one `?` (a token id, `token_id_for`): its grant's stored version, or NULL."""
        return self._loader.version_statement

    def list_tokens(self) -> list[AccessToken]:
        """Every token grant ever issued, live or revoked."""
        topic_prefix = event_topic(AccessToken, "Issued")
        ids: list[str] = []
        start = 1
        while True:
            page = self.recorder.select_notifications(start, 1000, topics=[topic_prefix])
            ids.extend(str(n.originator_id) for n in page)
            if len(page) < 1000:
                break
            start = page[-1].id + 1
        return [self._find(AccessToken, i, "token") for i in ids]


def _wrong_kind(kind: AwardKind, expected: str, recipient_id: str, found: str) -> InvalidField:
    """The refusal of a recipient of another kind than the award goes to, saying what it is."""
    wanted = {"volunteer": "a volunteer", "program": "a program code (A1…C4)"}.get(
        expected, f"a unit of kind {expected}")
    return InvalidField(f"{kind.value} goes to {wanted}, and {recipient_id} is {found}",
                        "recipient_id")
