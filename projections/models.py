"""The read models as the HTTP API and the CLI use them: one object, one runner, one store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ledger import Ledger
from ledger.registry import ServiceFacts
from projections.activities import ActivitiesProjection, ActivityQuery, activities_page
from projections.audit import AuditLog, LoggedVersions
from projections.awards import AwardQuery, AwardsProjection, awards_page
from projections.bulletins import bulletin
from projections.credits import CreditsProjection, in_span, spans_of
from projections.directory import VolunteerQuery, knows_unit, units_page, volunteers_page
from projections.eligibility import eligibility
from projections.feed import decode
from projections.filling import ensure_settled
from projections.history import HistoryIndex
from projections.hours import HOURS_SQL, HoursProjection, hours_from_rows
from projections.rankings import unit_rankings
from projections.runner import Projection, Runner
from projections.store import ViewStore

T = TypeVar("T")
MEMO_SIZE = 4096
_MISSING = object()  # no answer remembered (None is an answer: an award without rules)


def read_models() -> list[Projection]:
    """Fresh instances of this package's projections (hours, credits, awards, activities)."""
    return [HoursProjection(), CreditsProjection(), AwardsProjection(), ActivitiesProjection()]


def auditor_views() -> list[Projection]:
    """Fresh instances of the auditor-facing views (volunteer history, the Merkle log and the
    last version of each record it took in)."""
    return [HistoryIndex(), AuditLog(), LoggedVersions()]


# For a closure (ReadModels.service_facts), in one statement (one snapshot): the credits
# view's position, the last day with sessions the unit organised, and the last day one of its
# members served while a member (credit_days over the spans of their memberships; the first
# membership also covers the days before it, as the members basis credits them). Closures are
# rare: this reads the memberships of the unit's members, not a table kept for it.
SERVICE_FACTS_SQL = (
    spans_of("volunteer_id IN (SELECT volunteer_id FROM credit_memberships WHERE unit_id = ?)")
    + "SELECT (SELECT position FROM projection_positions WHERE name = 'credits'), "
    "(SELECT MAX(service_date) FROM credit_organised_days WHERE unit_id = ?), "
    "(SELECT MAX(d.service_date) FROM credit_days d JOIN spans s "
    f"ON s.volunteer_id = d.volunteer_id AND {in_span('d.service_date')} "
    "WHERE s.unit_id = ? AND d.sessions <> 0)")


class ReadModels:
    """Volunteer hours, unit rankings, bulletins and eligibility, kept up to date by a runner."""

    def __init__(self, ledger: Ledger, extra: Sequence[Projection] = ()) -> None:
        self.ledger = ledger
        self.store = ViewStore(ledger.settings.store(), gate=ledger.writing,
                               watchdog=ledger.watchdog)
        for view in extra:  # the log takes in no event without the ledger's seal
            if isinstance(view, AuditLog):
                view.seals = ledger.seals
        self.runner = Runner(ledger.recorder, self.store, [*read_models(), *extra])
        self._memo: OrderedDict[tuple[Any, ...], tuple[int, Any]] = OrderedDict()
        self._memo_lock = threading.Lock()
        self._flights: dict[tuple[Any, ...], threading.Lock] = {}

    def _remembered(self, key: tuple[Any, ...], compute: Callable[[], T]) -> tuple[int, T]:
        """An aggregate answer, computed once per view position (any new event recomputes it),
        and the position it answers for."""
        position = self.runner.position()
        return position, self._answer(key, position, compute)

    async def _remembered_async(self, key: tuple[Any, ...],
                                compute: Callable[[], T]) -> tuple[int, T]:
        """`_remembered` for a coroutine: the position and a remembered answer are read without
        a worker thread; only an answer to compute goes to one."""
        position = await self.runner.position_async()
        with self._memo_lock:
            hit = self._recall(key, position)
        if hit is not _MISSING:
            return position, hit
        return position, await asyncio.to_thread(self._answer, key, position, compute)

    def _recall(self, key: tuple[Any, ...], position: int) -> Any:
        """The answer remembered for `key` at `position`, or _MISSING; under `_memo_lock`."""
        hit = self._memo.get(key)
        if hit is None or hit[0] != position:
            return _MISSING
        self._memo.move_to_end(key)
        return hit[1]

    def _answer(self, key: tuple[Any, ...], position: int, compute: Callable[[], T]) -> T:
        """The answer remembered for `key` at `position`, else computed and remembered.

        Single flight: when many requests miss the same key at once (a new event, a cold
        start), one computes and the others wait for its answer instead of all computing.
        """
        with self._memo_lock:
            hit = self._recall(key, position)
            if hit is not _MISSING:
                return hit  # type: ignore[no-any-return]
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = threading.Lock()
        with flight:
            with self._memo_lock:
                hit = self._recall(key, position)
            if hit is not _MISSING:
                return hit  # type: ignore[no-any-return]
            answer = compute()
            with self._memo_lock:
                self._memo[key] = (position, answer)
                self._memo.move_to_end(key)
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
                self._flights.pop(key, None)
        return answer

    async def head_async(self) -> int:
        """The ledger's head (`Ledger.head`) for a coroutine: the library's own statement, run
        by the views' store (`ViewStore.read`: the same file or database, no worker thread)."""
        recorder: Any = self.ledger.recorder
        if self.store.postgres:
            sql = recorder.max_notification_id_statement.as_string(None)
        else:
            sql = recorder.select_max_notification_id_statement
        rows = await self.store.read(sql)
        return int(rows[0][0] or 0)

    def catch_up(self) -> int:
        """Apply every event not yet applied; returns the position reached."""
        return self.runner.catch_up()

    def wait_for(self, position: int, timeout: float, verify: bool = False,
                 fold: bool = True) -> bool:
        """Whether the views reached `position` within `timeout` seconds (catching up meanwhile,
        unless another process keeps them: `fold`; `verify`: as the store says, not as this
        process last knew)."""
        return self.runner.wait_for(position, timeout, verify, fold)

    def position(self) -> int:
        """How far every view has read."""
        return self.runner.position()

    def lag_seconds(self, position: int) -> float:
        """How long the oldest event a view at `position` has not read has waited (0 when it
        has read them all): the time since that event was recorded."""
        page = self.ledger.recorder.select_notifications(position + 1, 1)
        if not page:
            return 0.0
        recorded = datetime.fromisoformat(decode(page[0]).recorded_at)
        return max(0.0, time.time() - recorded.timestamp())

    def volunteer_hours(self, volunteer_id: str) -> dict[str, Any] | None:
        """A volunteer's hours, or None if the view does not know the volunteer.

        Not remembered: the one statement that answers also reads the view's position, so a
        memo would cost the same query to check as it saves (and an LRU memo smaller than the
        set of volunteers asked about misses every time).
        """
        return hours_from_rows(volunteer_id, self.store.query(HOURS_SQL, (volunteer_id,) * 4))

    async def volunteer_hours_async(self, volunteer_id: str) -> dict[str, Any] | None:
        """`volunteer_hours` for a coroutine (ViewStore.read: no worker thread)."""
        rows = await self.store.read(HOURS_SQL, (volunteer_id,) * 4)
        return hours_from_rows(volunteer_id, rows)

    def unit_rankings(self, kind: str, basis: str = "members", year: int | None = None,
                      quarter: int | None = None, rollup: bool = False) -> list[dict[str, Any]]:
        """Units of a kind ranked by credited minutes in a period (ties share a rank)."""
        return list(self._remembered(*self._rankings(kind, basis, year, quarter, rollup))[1])

    async def unit_rankings_async(self, kind: str, basis: str = "members",
                                  year: int | None = None, quarter: int | None = None,
                                  rollup: bool = False) -> tuple[int, list[dict[str, Any]]]:
        """`unit_rankings` for a coroutine, and the position the ranking answers for."""
        key, compute = self._rankings(kind, basis, year, quarter, rollup)
        position, answer = await self._remembered_async(key, compute)
        return position, list(answer)

    def _rankings(self, kind: str, basis: str, year: int | None, quarter: int | None,
                  rollup: bool) -> tuple[tuple[Any, ...], Callable[[], list[dict[str, Any]]]]:
        def compute() -> list[dict[str, Any]]:
            with self.store.reading() as cur:
                answer = unit_rankings(cur, kind, basis, year, quarter, rollup)
                ensure_settled(cur, "credit_filling")  # after the question's own checks (422 first)
                return answer

        return ("rankings", kind, basis, year, quarter, rollup), compute

    def bulletin(self, year: int, quarter: int, program: str = "B6",
                 basis: str = "organised") -> list[dict[str, Any]]:
        """The quarterly bulletin of a program: units with service in that quarter."""
        return list(self._remembered(*self._bulletin(year, quarter, program, basis))[1])

    async def bulletin_async(self, year: int, quarter: int, program: str = "B6",
                             basis: str = "organised") -> tuple[int, list[dict[str, Any]]]:
        """`bulletin` for a coroutine, and the position the bulletin answers for."""
        position, answer = await self._remembered_async(
            *self._bulletin(year, quarter, program, basis))
        return position, list(answer)

    def _bulletin(self, year: int, quarter: int, program: str,
                  basis: str) -> tuple[tuple[Any, ...], Callable[[], list[dict[str, Any]]]]:
        def compute() -> list[dict[str, Any]]:
            with self.store.reading() as cur:
                answer = bulletin(cur, year, quarter, program, basis)
                ensure_settled(cur, "credit_filling")  # after the question's own checks (422 first)
                return answer

        return ("bulletin", year, quarter, program, basis), compute

    def eligibility(self, award: str, year: int,
                    candidate_id: str | None = None) -> dict[str, Any] | None:
        """Candidates of an award and year with each criterion explained, and the position
        they answer for; None without rules."""
        def compute() -> dict[str, Any] | None:
            with self.store.reading() as cur:
                answer = eligibility(cur, award, year, candidate_id)
                ensure_settled(cur, "hours_filling", "credit_filling")
                return answer

        position, answer = self._remembered(("eligibility", award, year, candidate_id), compute)
        return {**answer, "position": position} if answer is not None else None

    def volunteer_directory(self, query: VolunteerQuery, after: Sequence[str] | None,
                            count: int) -> tuple[int, list[dict[str, Any]]]:
        """A page of volunteers (projections/directory.py) and the position it answers for."""
        with self.store.reading() as cur:
            return volunteers_page(cur, query, after, count)

    def activity_directory(self, query: ActivityQuery, after: Sequence[str] | None,
                           count: int) -> tuple[int, list[dict[str, Any]]]:
        """A page of activities (projections/activities.py) and the position it answers for."""
        with self.store.reading() as cur:
            return activities_page(cur, query, after, count)

    def award_directory(self, query: AwardQuery, after: Sequence[str] | None,
                        count: int) -> tuple[int, list[dict[str, Any]]]:
        """A page of awards (projections/awards.py) and the position it answers for."""
        with self.store.reading() as cur:
            return awards_page(cur, query, after, count)

    def unit_directory(self, kind: str | None, parent_id: str | None,
                       after: Sequence[str] | None,
                       count: int) -> tuple[int, list[dict[str, Any]]]:
        """A page of units in id order and the position it answers for."""
        with self.store.reading() as cur:
            return units_page(cur, kind, parent_id, after, count)

    def knows_unit(self, unit_id: str) -> bool:
        """Whether the views hold a unit (as far as they have read)."""
        with self.store.reading() as cur:
            return knows_unit(cur, unit_id)

    def last_service_day(self, unit_id: str) -> str | None:
        """The last day a unit has live service credited on, organised by it or served by its
        members (None if it has none); as far as the views have read."""
        return self.service_facts(unit_id).last_service_on

    def service_facts(self, unit_id: str) -> ServiceFacts:
        """What a closure of the unit is checked against (Ledger.close_unit): the last day it
        has service credited on and the position the credits view had read to (one statement,
        so one snapshot), and every volunteer who was ever one of its members."""
        with self.store.reading() as cur:
            ensure_settled(cur, "credit_filling")
            row = cur.execute(SERVICE_FACTS_SQL, (unit_id,) * 3).fetchone()
            position, organised, served = row if row is not None else (0, None, None)
            members = cur.execute("SELECT DISTINCT volunteer_id FROM credit_memberships "
                                  "WHERE unit_id = ?", (unit_id,)).fetchall()
        last = max((str(d) for d in (organised, served) if d is not None), default=None)
        return ServiceFacts(int(position or 0), last, frozenset(str(m) for m, in members))

    def close(self) -> None:
        """Release the views' connections (the ledger is closed by its owner)."""
        self.store.close()
