"""Large inserts on PostgreSQL complete while another writer holds the events table's lock.

Each scenario runs in a process of its own with a time limit: an insert that hangs (as the
library's pipelined insert did) is killed with its connection, and so is the lock it held,
rather than stalling the rest of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.pgrecorder import PIPELINE_BYTES, LedgerPostgresRecorder

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
