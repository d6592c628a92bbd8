"""`vledger projections run`: the worker that keeps the views when the API does not."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import Ledger
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
