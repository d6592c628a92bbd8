"""Large inserts on PostgreSQL complete while another writer holds the events table's lock.

Each scenario runs in a process of its own with a time limit: an insert that hangs (as the
library's pipelined insert did) is killed with its connection, and so is the lock it held,
rather than stalling the rest of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger import Ledger, Settings
from ledger.errors import Conflict
from ledger.pgrecorder import PIPELINE_BYTES, LedgerPostgresRecorder
from tests.factories import ADMIN, make_unit, make_volunteer, together

SCENARIO = """
import os, sys, threading, time, uuid
import psycopg
from eventsourcing.persistence import StoredEvent
from ledger import Ledger, Settings
from ledger.settings import StoreLocation

url, count = sys.argv[1], int(sys.argv[2])
ledger = Ledger(Settings(database_url=url))
recorder = ledger.recorder
where = StoreLocation.parse(url)
held = threading.Event()

def hold_the_lock() -> None:
    with psycopg.connect(host=where.host, port=where.port, user=where.user,
                         password=where.password, dbname=where.dbname) as conn:
        conn.execute(f'LOCK TABLE "{where.schema}"."{recorder.events_table_name}" '
                     "IN EXCLUSIVE MODE")
        held.set()
        time.sleep(1.5)

threading.Thread(target=hold_the_lock, daemon=True).start()
held.wait(10)
events = [StoredEvent(originator_id=f"big-{uuid.uuid4().hex}", originator_version=1,
                      topic="ledger.test:Big", state=os.urandom(240).hex().encode())
          for _ in range(count)]
ids = recorder.insert_events(events)
assert ids is not None and len(ids) == count and ids == sorted(ids), ids[:3]
print("inserted", len(ids))
"""


@pytest.mark.stores("postgres")
@pytest.mark.parametrize("count", [20, 20_000], ids=["pipelined", "four-megabytes"])
def test_an_insert_completes_after_another_writer_releases_the_table(
        ledger: Ledger, database_url: str, count: int) -> None:
    assert isinstance(ledger.recorder, LedgerPostgresRecorder)
    assert (count * 480 > PIPELINE_BYTES) is (count > 20)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", SCENARIO, database_url, str(count)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["inserted", str(count)]


@pytest.mark.stores("postgres")
def test_writes_that_lose_a_race_take_no_position(ledger: Ledger, settings: Settings) -> None:
    """Racing writers of one volunteer: the losers insert nothing and try again, so positions
    stay contiguous (the library's INSERT took a position per event before the primary key
    refused it, and positions skipped numbers wherever writers raced)."""
    units = [make_unit(ledger) for _ in range(3)]
    volunteer = make_volunteer(ledger, units[0])
    ledgers = [Ledger(settings) for _ in range(4)]
    try:
        results = together(16, lambda i: ledgers[i % 4].transfer_volunteer(
            ADMIN, volunteer, units[1 + i % 2], date(2017, 2, 1) + timedelta(days=i)))
    finally:
        for other in ledgers:
            other.close()
    won = [r for r in results if not isinstance(r, Exception)]
    assert won, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception)), results
    with ledger.recorder.datastore.transaction(commit=False) as cur:  # type: ignore[attr-defined]
        cur.execute(f'SELECT notification_id FROM "{settings.store().schema}".'
                    f'"{ledger.recorder.events_table_name}" ORDER BY 1')  # type: ignore[attr-defined]
        positions = [row["notification_id"] for row in cur.fetchall()]
    assert positions == list(range(1, len(positions) + 1))


@pytest.mark.stores("postgres")
def test_a_write_that_finds_its_version_taken_inserts_none_of_its_events(
        ledger: Ledger) -> None:
    recorder = ledger.recorder
    first = StoredEvent(originator_id="agg-1", originator_version=1, topic="t:T", state=b"{}")
    recorder.insert_events([first])
    head = ledger.head()
    fresh = StoredEvent(originator_id="agg-2", originator_version=1, topic="t:T", state=b"{}")
    with pytest.raises(IntegrityError):
        recorder.insert_events([fresh, first])  # agg-2 is new, agg-1 v1 is taken
    assert recorder.select_events("agg-2") == []
    recorder.insert_events([fresh])
    assert ledger.head() == head + 1  # the failed write took no position


@pytest.mark.stores("postgres")
@pytest.mark.parametrize("statement", ["insert_events_statement", "insert_unchanged_statement"])
def test_an_insert_looks_its_checks_up_by_key_with_no_statistics_and_a_generic_plan(
        ledger: Ledger, statement: str) -> None:
    """The insert's checks (versions already stored; a guard's versions moved on) are primary-
    key lookups, not a join the planner may make a hash join over a scan of every event: with
    no statistics (autovacuum off or not yet run) and psycopg's prepared statement gone
    generic, that scan cost 73 ms per insert at 220,000 events and grew with the table."""
    import psycopg

    from ledger.settings import StoreLocation

    recorder = ledger.recorder
    assert isinstance(recorder, LedgerPostgresRecorder)
    where = StoreLocation.parse(ledger.settings.database_url)
    table = f'"{where.schema}"."{recorder.events_table_name}"'
    with psycopg.connect(**where.connect_kwargs()) as conn:
        conn.execute(f"INSERT INTO {table} (originator_id, originator_version, topic, state) "
                     "SELECT 'filler-' || (n / 10), n % 10, 'ledger.test:Filler', "
                     "'{}'::bytea FROM generate_series(1, 50000) n")
        text = getattr(recorder, statement).as_string(conn)
        parts = text.split("%b")
        prepared = "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "")
                           for i, part in enumerate(parts))
        conn.execute("SET plan_cache_mode = force_generic_plan")
        guarded = statement.endswith("unchanged_statement")
        types = "text[], bigint[], text[], bytea[]" + (", text[], bigint[]" if guarded else "")
        conn.execute(f"PREPARE checked({types}) AS {prepared}")
        values = ("ARRAY['new-1'], ARRAY[1::bigint], ARRAY['ledger.test:New'], "
                  "ARRAY['{}'::bytea]" + (", ARRAY['filler-7'], ARRAY[3::bigint]"
                                          if guarded else ""))
        plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN EXECUTE checked({values})"))
    assert "Seq Scan on" not in plan, plan


@pytest.mark.stores("postgres")
def test_the_recorder_stores_events_of_plain_aggregates_with_uuid_ids(settings: Settings) -> None:
    """The insert sends the ids as an array of the table's id type: text for the ledger, the
    library's uuid for plain aggregates (the benchmark's baseline saves them)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    class Note(Aggregate):
        def __init__(self, text: str) -> None:
            self.text = text

    env = settings.store().eventsourcing_env()
    env.pop("ORIGINATOR_ID_TYPE")
    app: Application[Any] = Application(env=env)
    try:
        assert isinstance(app.recorder, LedgerPostgresRecorder)
        notes = [Note(f"note {n}") for n in range(3)]
        app.save(*notes)
        assert [app.repository.get(n.id).text for n in notes] == ["note 0", "note 1", "note 2"]
    finally:
        app.close()
