"""A realistic demo district from the 2017 Meilie plan, written through the ledger's use cases.

Deterministic for a seed: the same units, names, personal data, dates, session times, minutes
and counts, recorded in the same order, under the same ids (`ledger.ids.seeded_ids`). The
event positions on PostgreSQL (sequence gaps) and the recorded times are not part of that
promise.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ledger.aggregate import event_topic
from ledger.application import Ledger
from ledger.collector import bulk_collection
from ledger.demo_activities import DemoActivity, SessionPlanner, make_activities
from ledger.demo_units import district_units, register_units
from ledger.demo_volunteers import (
    applications,
    make_insured,
    make_trainings,
    make_transfers,
    make_volunteers,
    run_singles,
)
from ledger.errors import Conflict, InvalidField
from ledger.ids import seeded_ids
from ledger.provenance import SYSTEM, Origin
from ledger.sessions import SessionRecord
from ledger.settings import Settings
from ledger.units import Unit
from ledger.volunteers import VolunteerNumbers

Progress = Callable[[str, int, int], None]  # (stage, done, total)
REGISTRATION_BATCH = 1000
SESSION_BATCH = 2000
AWARD_RULES_2017: dict[str, dict[str, float | int | bool]] = {
    "most_beautiful_volunteer": {"min_hours_in_year": 40, "min_star_level": 0,
                                 "training_required": True, "min_registered_days": 180,
                                 "no_voided_sessions": True},
    "best_organisation": {"min_hours_in_year": 500, "min_active_volunteers": 20,
                          "min_hours_per_volunteer": 5},
    "best_community": {"min_hours_in_year": 300, "min_active_volunteers": 15,
                       "min_hours_per_volunteer": 4},
    "best_project": {"min_sessions": 100, "min_volunteers": 50, "min_hours_in_year": 200},
}


class DemoNeedsEmptyLedger(Conflict):
    """The demo fills an empty ledger only, so its records never mix with real ones."""


@dataclass(frozen=True)
class DemoSummary:
    """What the demo wrote; equal for equal seeds (ids, positions and timings aside)."""

    seed: int
    units: int
    volunteers: int
    transfers: int
    trainings: int
    insured: int
    activities: int
    sessions: int
    minutes: int
    sessions_by_program: dict[str, int]
    rejected: int
    award_rules: int
    position: int = field(compare=False)
    unit_ids: dict[str, str] = field(compare=False, repr=False)
    seconds: dict[str, float] = field(compare=False, repr=False)
    recording_seconds: float = field(compare=False, repr=False)


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress report."""


@bulk_collection()
def generate_district(ledger: Ledger, volunteers: int, sessions: int, seed: int,
                      progress: Progress | None = None) -> DemoSummary:
    """Fill an empty ledger with a district of `volunteers` volunteers and ~`sessions` sessions
    (the ids of its units, volunteers and activities drawn from the seed too)."""
    with seeded_ids(seed):
        return _generate(ledger, volunteers, sessions, seed, progress)


def _generate(ledger: Ledger, volunteers: int, sessions: int, seed: int,
              progress: Progress | None) -> DemoSummary:
    if ledger._get(VolunteerNumbers, VolunteerNumbers.ID) is not None:
        raise DemoNeedsEmptyLedger(
            "the demo fills an empty ledger; this one has volunteers (an interrupted demo "
            "leaves some: for a fresh one, point VLEDGER_DATABASE_URL at a new file or schema, "
            "or delete this demo store)")
    if ledger.recorder.select_notifications(1, 1, topics=[event_topic(Unit, "Registered")]):
        # e.g. an earlier demo stopped after its units: running again would add them twice.
        raise DemoNeedsEmptyLedger(
            "the demo fills an empty ledger; this one has units (an interrupted demo leaves "
            "some: for a fresh one, point VLEDGER_DATABASE_URL at a new file or schema, or "
            "delete this demo store)")
    if volunteers < 1 or sessions < 0:
        raise InvalidField("the demo needs at least one volunteer and no negative number of "
                           "sessions", "volunteers" if volunteers < 1 else "sessions")
    report = progress or _quiet
    rng = random.Random(seed)
    origin = Origin(SYSTEM, source="demo")
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        seconds[stage] = time.perf_counter() - clock
        clock = time.perf_counter()

    ledger.ensure_catalogue()
    units = district_units()
    unit_ids = register_units(ledger, origin, units)
    report("units", len(units), len(units))
    lap("units")

    people = make_volunteers(rng, volunteers, units)
    requests = applications(people, unit_ids)
    volunteer_ids: list[str] = []
    for start in range(0, len(requests), REGISTRATION_BATCH):
        written, _ = ledger.register_volunteers(
            origin, requests[start:start + REGISTRATION_BATCH])
        volunteer_ids += [w.id for w in written]
        report("volunteers", len(volunteer_ids), len(requests))
    lap("volunteers")

    moves = make_transfers(rng, people, units)
    run_singles(moves, lambda m: ledger.transfer_volunteer(
        origin, volunteer_ids[m[0]], unit_ids[m[1]], m[2]),
        lambda n: report("transfers", n, len(moves)))
    trainings = make_trainings(rng, people)
    run_singles(trainings, lambda t: ledger.complete_training(
        origin, volunteer_ids[t.index], t.level, t.form, t.audience, t.title, t.completed_on,
        t.hours), lambda n: report("trainings", n, len(trainings)))
    insured = make_insured(rng, len(people))
    run_singles(insured, lambda p: ledger.insure_volunteer(
        origin, volunteer_ids[p[0]], 2017, p[1], p[2]),
        lambda n: report("insurance", n, len(insured)))
    lap("trainings, transfers, insurance")

    activities = make_activities(rng, sessions, units, len(people))
    activity_ids: list[str] = []
    for activity in activities:
        starts_at, ends_at = activity.window()
        activity_ids.append(ledger.plan_activity(
            origin, activity.program, unit_ids[activity.organiser], activity.title, starts_at,
            ends_at, unit_ids[activity.station] if activity.station else None).id)
        if len(activity_ids) % 100 == 0 or len(activity_ids) == len(activities):
            report("activities", len(activity_ids), len(activities))
    lap("activities")

    planner = SessionPlanner(rng, people, units)
    by_program: Counter[str] = Counter()
    accepted = rejected = minutes = 0
    recording = 0.0
    for batch in _session_batches(planner, activities, activity_ids, volunteer_ids, seed):
        began = time.perf_counter()
        result = ledger.record_sessions(origin, [record for _, record in batch])
        recording += time.perf_counter() - began
        for (program, _), outcome in zip(batch, result.outcomes, strict=True):
            if outcome.status == "accepted":
                accepted += 1
                minutes += outcome.minutes or 0
                by_program[program] += 1
            else:
                rejected += 1
        report("sessions", accepted + rejected, sessions)
    report("sessions", accepted + rejected, accepted + rejected)  # seats no one could fill
    lap("sessions")

    for award, criteria in AWARD_RULES_2017.items():
        ledger.publish_award_rules(origin, award, 2017, dict(criteria))
    lap("award rules")
    return DemoSummary(
        seed=seed, units=len(units), volunteers=len(volunteer_ids), transfers=len(moves),
        trainings=len(trainings), insured=len(insured), activities=len(activities),
        sessions=accepted, minutes=minutes, sessions_by_program=dict(sorted(by_program.items())),
        rejected=rejected, award_rules=len(AWARD_RULES_2017), position=ledger.head(),
        unit_ids=unit_ids, seconds=seconds, recording_seconds=recording,
    )


def _session_batches(planner: SessionPlanner, activities: list[DemoActivity],
                     activity_ids: list[str], volunteer_ids: list[str], seed: int
                     ) -> Iterator[list[tuple[str, SessionRecord]]]:
    """Session records in date order, in batches, each with its program code."""
    batch: list[tuple[str, SessionRecord]] = []
    number = 0
    for activity, activity_id in zip(activities, activity_ids, strict=True):
        for index, started_at, ended_at in planner.sessions(activity):
            number += 1
            batch.append((activity.program, SessionRecord(
                volunteer_ids[index], activity_id, started_at, ended_at,
                f"demo-{seed}-{number:08d}")))
            if len(batch) == SESSION_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def run_demo(volunteers: int, sessions: int, seed: int) -> None:
    """`vledger demo`: fill the configured ledger, showing progress and a summary."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    ledger = Ledger(Settings())
    try:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            tasks: dict[str, TaskID] = {}

            def show(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            summary = generate_district(ledger, volunteers, sessions, seed, show)
    except (DemoNeedsEmptyLedger, InvalidField) as error:
        console.print(f"[red]{error.message}[/red]")
        raise SystemExit(1) from None
    finally:
        ledger.close()
    hours = summary.minutes / 60
    console.print(
        f"Demo district (seed {seed}) in {ledger.settings.store().describe()}: "
        f"{summary.units} units, {summary.volunteers} volunteers, {summary.activities} "
        f"activities, {summary.sessions} sessions ({hours:,.0f} h), {summary.trainings} "
        f"trainings, {summary.transfers} transfers, {summary.insured} insured, "
        f"award rules for 2017 published; event position {summary.position}.")
    if summary.sessions < sessions:
        unfilled = sessions - summary.sessions - summary.rejected
        console.print(
            f"{sessions - summary.sessions} of the {sessions} sessions asked for are not there: "
            f"{summary.rejected} planned were refused by the ledger's rules (e.g. an overlap "
            f"with the volunteer's other service) and {unfilled} found no volunteer free and "
            "registered at that time (more volunteers make room for more sessions).")


__all__ = ["AWARD_RULES_2017", "DemoNeedsEmptyLedger", "DemoSummary", "generate_district",
           "run_demo"]
