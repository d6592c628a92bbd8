"""Reconciliation: random command sequences, then views against a recomputation and a rebuild."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ledger import Conflict, InvalidRequest, Ledger
from projections import ReadModels
from projections.cli import app
from projections.models import read_models
from projections.reconcile import SCRATCH_PREFIX, reconcile
from tests.factories import (
    ADMIN,
    COMMITTEE,
    at,
    fill_ledger,
    grant_volunteer_award,
    make_activity,
    make_long_activity,
    make_unit,
    make_volunteer,
    serve,
    tamper_with_events,
)

START = date(2017, 1, 1)

days = st.integers(min_value=0, max_value=600)
commands = st.one_of(
    st.tuples(st.just("serve"), st.integers(0, 2), st.integers(0, 1), days, st.integers(1, 9)),
    st.tuples(st.just("correct"), st.integers(0, 30), days, st.integers(1, 9)),
    st.tuples(st.just("void"), st.integers(0, 30)),
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), days),
    st.tuples(st.just("catch_up"), st.integers(1, 40)),
)


@dataclass
class World:
    """What the commands did, kept the simple way: each live session and each membership."""

    units: list[str]
    volunteers: list[str]
    activities: list[tuple[str, str]]  # (activity id, organiser unit id)
    sessions: dict[str, tuple[int, int, date, str]] = field(default_factory=dict)
    memberships: dict[int, dict[date, str]] = field(default_factory=dict)

    def unit_on(self, who: int, day: date) -> str:
        dated = self.memberships[who]
        return dated[max((d for d in dated if d <= day), default=min(dated))]


def apply(ledger: Ledger, models: ReadModels, world: World, command: tuple) -> None:
    kind, *args = command
    if kind == "serve":
        who, which, day, hours = args
        day_on = START + timedelta(days=day)
        activity, organiser = world.activities[which]
        written = serve(ledger, world.volunteers[who], activity, day_on, hours, start_hour=8)
        world.sessions[written.id] = (who, hours * 60, day_on, organiser)
    elif kind == "correct" and world.sessions:
        session_id = sorted(world.sessions)[args[0] % len(world.sessions)]
        who, _, _, organiser = world.sessions[session_id]
        day_on = START + timedelta(days=args[1])
        ledger.correct_session(ADMIN, session_id, at(8, day=day_on),
                               at(8 + args[2], day=day_on), "corrected")
        world.sessions[session_id] = (who, args[2] * 60, day_on, organiser)
    elif kind == "void" and world.sessions:
        session_id = sorted(world.sessions)[args[0] % len(world.sessions)]
        ledger.void_session(ADMIN, session_id, "voided")
        del world.sessions[session_id]
    elif kind == "transfer":
        who, to, day = args
        day_on = START + timedelta(days=day)
        ledger.transfer_volunteer(ADMIN, world.volunteers[who], world.units[to], day_on)
        world.memberships[who][day_on] = world.units[to]
    elif kind == "catch_up":
        models.runner.page_size = args[0]
        models.catch_up()


def expected_members(world: World) -> Counter[str]:
    totals: Counter[str] = Counter()
    for who, minutes, day, _ in world.sessions.values():
        totals[world.unit_on(who, day)] += minutes
    return totals


def expected_units(world: World, basis: str, year: int | None,
                   quarter: int | None) -> dict[str, tuple[int, int, int]]:
    """Per unit: minutes, sessions and distinct volunteers in a period, from the world."""
    minutes: Counter[str] = Counter()
    sessions: Counter[str] = Counter()
    active: dict[str, set[int]] = {}
    for who, served, day, organiser in world.sessions.values():
        if year is not None and day.year != year:
            continue
        if quarter is not None and (day.month - 1) // 3 + 1 != quarter:
            continue
        unit = world.unit_on(who, day) if basis == "members" else organiser
        minutes[unit] += served
        sessions[unit] += 1
        active.setdefault(unit, set()).add(who)
    return {u: (minutes[u], sessions[u], len(active.get(u, ()))) for u in world.units}


PERIODS = [(None, None), (2017, None), (2018, None),
           *((y, q) for y in (2017, 2018) for q in (1, 2, 3, 4))]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(commands, min_size=5, max_size=30))
def test_random_commands_leave_views_equal_to_a_recomputation_and_a_rebuild(
        ledger: Ledger, models: ReadModels, steps: list[tuple]) -> None:
    units = [make_unit(ledger, "organisation") for _ in range(3)]
    volunteers = [make_volunteer(ledger, units[i], registered_on=START) for i in range(3)]
    activities = [(make_long_activity(ledger, u, code), u) for u, code in zip(
        units[:2], ("B6", "C1"), strict=True)]
    world = World(units, volunteers, activities,
                  memberships={i: {START: units[i]} for i in range(3)})
    for step in steps:
        # Overlapping sessions and same-unit transfers are refused: nothing is recorded.
        with contextlib.suppress(Conflict, InvalidRequest):
            apply(ledger, models, world, step)
    models.runner.page_size = 2000
    models.catch_up()

    for who, volunteer_id in enumerate(volunteers):
        hours = models.volunteer_hours(volunteer_id)
        mine = [s for s in world.sessions.values() if s[0] == who]
        assert hours is not None
        assert hours["total_minutes"] == sum(s[1] for s in mine)
        assert hours["sessions"] == len(mine)
        assert hours["last_service_date"] == max((s[2].isoformat() for s in mine), default=None)
    ranked = {i["unit_id"]: i["total_minutes"] for i in models.unit_rankings("organisation")}
    members = expected_members(world)
    assert {u: ranked[u] for u in units} == {u: members[u] for u in units}
    organised: Counter[str] = Counter()
    for s in world.sessions.values():
        organised[s[3]] += s[1]
    by_organiser = {i["unit_id"]: i["total_minutes"]
                    for i in models.unit_rankings("organisation", basis="organised")}
    assert {u: by_organiser[u] for u in units} == {u: organised[u] for u in units}
    for basis in ("members", "organised"):
        for year, quarter in PERIODS:
            got = {i["unit_id"]: (i["total_minutes"], i["sessions"], i["volunteers"])
                   for i in models.unit_rankings("organisation", basis, year, quarter)}
            assert {u: got[u] for u in units} == expected_units(world, basis, year, quarter), (
                basis, year, quarter)
    last: dict[str, str] = {}
    for who, _, day, organiser in world.sessions.values():
        for unit in (organiser, world.unit_on(who, day)):
            last[unit] = max(last.get(unit, ""), day.isoformat())
    assert {u: models.last_service_day(u) for u in units} == {u: last.get(u) for u in units}
    assert reconcile(models.store, ledger.recorder, read_models) == []


def test_check_reports_a_tampered_view_by_key(ledger: Ledger, models: ReadModels,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    volunteer = make_volunteer(ledger)
    serve(ledger, volunteer, make_long_activity(ledger, make_unit(ledger)), date(2017, 3, 3))
    models.catch_up()
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    cli = CliRunner()

    assert cli.invoke(app, ["check"]).exit_code == 0
    with models.store.transaction() as cur:
        cur.execute("UPDATE hours_cells SET minutes = minutes + 1")
    result = cli.invoke(app, ["check"])

    assert result.exit_code == 1
    assert "hours_cells" in result.output and volunteer in result.output


def test_check_covers_the_activity_list_and_the_awards_listed(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb36 F6: the lists' rows (activities planned and cancelled, awards granted and
    revoked) are rebuilt and compared as every view's are."""
    unit = make_unit(ledger)
    kept, cancelled = make_activity(ledger, unit), make_activity(ledger, unit)
    ledger.cancel_activity(ADMIN, cancelled, "rain")
    volunteer = make_volunteer(ledger, home_unit_id=unit)
    revoked = grant_volunteer_award(ledger, volunteer, 2017)
    ledger.revoke_award(COMMITTEE, revoked, "wrong person")
    grant_volunteer_award(ledger, volunteer, 2018)
    models.catch_up()
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    cli = CliRunner()
    assert reconcile(models.store, ledger.recorder, read_models) == []
    assert cli.invoke(app, ["check"]).exit_code == 0

    with models.store.transaction() as cur:
        cur.execute("UPDATE activity_list SET cancelled_at = NULL WHERE activity_id = ?",
                    (cancelled,))
        cur.execute("UPDATE award_grants SET live = 1, revoked_reason = NULL "
                    "WHERE award_id = ?", (revoked,))
    found = {(d.table, d.key[0]) for d in reconcile(models.store, ledger.recorder, read_models)}
    assert found == {("activity_list", cancelled), ("award_grants", revoked)}
    result = cli.invoke(app, ["check"])
    assert result.exit_code == 1
    assert "activity_list" in result.output and cancelled in result.output
    assert kept not in result.output


def test_check_streams_the_tables_and_names_each_difference_by_key(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies are merged a few rows at a time, not held whole (bb23: 657 MB at 444k
    events): a row missing, an extra one and a changed one, among many, are each named."""
    monkeypatch.setattr("projections.reconcile.BATCH", 2)
    unit = make_unit(ledger)
    activity = make_long_activity(ledger, unit)
    volunteers = [make_volunteer(ledger, home_unit_id=unit) for _ in range(6)]
    for n, volunteer in enumerate(volunteers):
        serve(ledger, volunteer, activity, date(2017, 3, 1 + n))
    models.catch_up()
    assert reconcile(models.store, ledger.recorder, read_models) == []

    gone, changed = sorted(volunteers)[1], sorted(volunteers)[3]
    with models.store.transaction() as cur:
        cur.execute("DELETE FROM hours_cells WHERE volunteer_id = ?", (gone,))
        cur.execute("UPDATE hours_cells SET minutes = minutes + 1 WHERE volunteer_id = ?",
                    (changed,))
        cur.execute("INSERT INTO hours_cells SELECT 'vol-zzz-extra', year, quarter, "
                    "program_code, minutes, sessions FROM hours_cells WHERE volunteer_id = ?",
                    (changed,))
    found = [d for d in reconcile(models.store, ledger.recorder, read_models)
             if d.table == "hours_cells"]
    assert [(d.key[0], d.live is None, d.rebuilt is None) for d in found] == [
        (gone, True, False), (changed, False, False), ("vol-zzz-extra", False, True)]


def test_the_store_orders_rows_as_the_merge_compares_them(models: ReadModels) -> None:
    """Text in byte order whatever the database's collation (en_US would put "a" before "B"),
    NULL first: else the merge would take rows present in both copies for differences."""
    from projections.reconcile import _ordered

    values = ["b", "B", "a", "Vol-2", "vol-1", "_x", "é", None, "10", "9"]
    with models.store.transaction() as cur:
        cur.execute("CREATE TABLE check_order (label TEXT, n INTEGER)")
        for n, value in enumerate(values):
            cur.execute("INSERT INTO check_order (label, n) VALUES (?, ?)", (value, n))
        got = list(_ordered(cur, "check_order", ("label", "n")))
        cur.execute("DROP TABLE check_order")
    assert got == sorted(got, key=lambda found: found[0])
    assert [row[0] for _, row in got][:2] == [None, "10"]


def test_a_check_removes_scratch_stores_left_by_a_killed_one_and_keeps_those_in_use(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch) -> None:
    """bb26 F2: a check killed with SIGKILL left its scratch copy (80 MB) for good."""
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    store = models.store
    with contextlib.ExitStack() as held:
        if store.postgres:
            stale, busy = f"{SCRATCH_PREFIX}stale0000000", f"{SCRATCH_PREFIX}busy00000000"
            other = held.enter_context(store.connect())  # another check, still running
            other.execute("SELECT pg_advisory_lock(hashtext(%s))", (busy,))
            with store.transaction() as cur:
                for name in (stale, busy):
                    cur.execute(f'CREATE SCHEMA "{name}"')
                    cur.execute(f'CREATE TABLE "{name}".rows (n INTEGER)')

            def left() -> set[str]:
                with store.transaction() as cur:
                    return {n for (n,) in cur.execute(
                        "SELECT nspname FROM pg_namespace WHERE nspname IN (?, ?)",
                        (stale, busy)).fetchall()}
        else:
            base = Path(tempfile.gettempdir())
            stale_dir = Path(tempfile.mkdtemp(prefix="vledger-check-", dir=base))
            busy_dir = Path(tempfile.mkdtemp(prefix="vledger-check-", dir=base))
            (stale_dir / "views.db").write_bytes(b"\0" * 1000)
            lock = held.enter_context(open(busy_dir / "in-use.lock", "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
            held.callback(shutil.rmtree, busy_dir, True)
            stale, busy = str(stale_dir), str(busy_dir)

            def left() -> set[str]:
                return {str(d) for d in (stale_dir, busy_dir) if d.exists()}

        assert left() == {stale, busy}
        assert CliRunner().invoke(app, ["check"]).exit_code == 0
        assert left() == {busy}
        if store.postgres:
            other.execute("SELECT pg_advisory_unlock(hashtext(%s))", (busy,))
            with store.transaction() as cur:
                cur.execute(f'DROP SCHEMA "{busy}" CASCADE')


LISTED = 20  # differences listed per view


def _sessions(ledger: Ledger) -> list:
    return [n for n in ledger.recorder.select_notifications(1, 1000)
            if b'"minutes":30' in bytes(n.state)]


@pytest.mark.parametrize("change", ["deleted", "changed"])
def test_check_after_one_altered_event_names_its_position_in_a_bounded_listing(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, change: str) -> None:
    """bb38 F10: the audit log's leaves were compared by index, so one event deleted shifted
    every later index and the check listed thousands of lines. Leaves are compared by
    position, and each view's listing stops at 20, saying how many there were."""
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    for _ in range(6):  # some 80 events
        fill_ledger(ledger, sessions=8)
    cli = CliRunner()
    assert cli.invoke(app, ["check"]).exit_code == 0  # every view, the audit log too, read
    session = _sessions(ledger)[2]
    if change == "deleted":
        tamper_with_events(models.store, ledger, "DELETE FROM {table} WHERE {id} = ?",
                           (session.id,))
    else:
        tamper_with_events(models.store, ledger, "UPDATE {table} SET state = ? WHERE {id} = ?",
                           (bytes(session.state).replace(b'"minutes":30', b'"minutes":90'),
                            session.id))

    result = cli.invoke(app, ["check"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    audit = [line for line in lines if line.startswith("audit ")]
    assert audit and len(audit) <= LISTED, audit
    assert any(line.startswith(f"audit audit_leaves key=({session.id}):") for line in audit)
    named = [line for line in lines if line.startswith("audit: the event at position")]
    assert len(named) == 1 and named[0].startswith(
        f"audit: the event at position {session.id} "), named
    assert "difference(s) in all" in result.output
    assert len(lines) < 6 * (LISTED + 3)


def test_check_makes_no_key_nor_any_other_file(
        ledger: Ledger, models: ReadModels, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """bb38 F10: the check made a signing key beside the store (or in ./var), which a server
    started later would have signed with. It compares and signs nothing."""
    monkeypatch.setenv("VLEDGER_DATABASE_URL", ledger.settings.database_url)
    if ledger.settings.store().kind == "sqlite":  # its key beside the store, by default
        monkeypatch.delenv("VLEDGER_SIGNING_KEY_FILE", raising=False)
    # (On PostgreSQL the store's key is the one its events were sealed with, named by the
    # setting: the check needs it to check their seals.)
    monkeypatch.chdir(tmp_path)  # ./var, PostgreSQL's default key folder, is here
    serve(ledger, make_volunteer(ledger), make_long_activity(ledger, make_unit(ledger)),
          date(2017, 3, 3))

    def files() -> set[Path]:
        return {p for p in tmp_path.rglob("*")
                if not p.name.endswith(("-wal", "-shm", "-journal"))}

    before = files()
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert files() == before
