"""`vledger projections run`: the worker that keeps the views when the API does not."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import Ledger, Settings
from projections.cli import app
from projections.runner import Runner
from tests.factories import make_unit


def test_the_worker_outlives_a_store_that_stops_answering(
        ledger: Ledger, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failover or a restart of the store made the worker exit, leaving the views behind
    until someone restarted it (the helper's pg_auto_failover run). It now says so once and
    tries again; here the store fails three polls, then answers, then Ctrl-C."""
    make_unit(ledger)
    monkeypatch.setenv("VLEDGER_DATABASE_URL", database_url)
    real = Runner.catch_up
    calls: list[int] = []

    def flaky(self: Runner, *args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) <= 3:
            raise sqlite3.OperationalError("the store does not answer (as in a failover)")
        if len(calls) == 4:
            return real(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "catch_up", flaky)
    result = CliRunner().invoke(app, ["run", "--interval", "0.01"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert said.count("catching up failed, trying again") == 1  # the same error, said once
    assert f"stopped at position {ledger.head()}" in said  # caught up once it answered


def test_the_worker_waits_for_a_store_rather_than_making_one(tmp_path: Any) -> None:
    """bb19 F2: `projections run` on a mistyped path or schema made an empty ledger of its
    own and followed it, while the API's views never moved. It now waits for the store to be
    created (by `serve` or `init`) and says so; it makes nothing."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    path = tmp_path / "later.db"
    vledger = str(Path(sys.executable).parent / "vledger")
    env = {**os.environ, "VLEDGER_DATABASE_URL": f"sqlite:///{path}"}
    worker = subprocess.Popen([vledger, "projections", "run", "--interval", "0.1"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert worker.poll() is None and not path.exists()  # waiting, nothing made
        assert subprocess.run([vledger, "init"], env=env, timeout=60).returncode == 0
        ledger = Ledger(Settings(database_url=f"sqlite:///{path}"))
        try:
            make_unit(ledger)
            head = ledger.head()
        finally:
            ledger.close()
        deadline, reached = time.monotonic() + 30, None
        while reached != head and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with closing(sqlite3.connect(path)) as conn:
                    (reached,) = conn.execute(
                        "SELECT MIN(position) FROM projection_positions").fetchone()
            except sqlite3.OperationalError:  # the worker has not made its tables yet
                continue
        assert reached == head  # it found the store and caught up with it
    finally:
        worker.terminate()
        _, said = worker.communicate(timeout=30)
    assert "no ledger at" in said and "waiting for" in said, said
