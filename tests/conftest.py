"""Store fixtures: every storage test runs on a real SQLite file and on the real PostgreSQL server.

PostgreSQL tests use a fresh schema each, dropped afterwards. When the server does not answer
they skip, unless VLEDGER_REQUIRE_POSTGRES=1 (as in CI), where they fail.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger, Settings

PG_URL = os.environ.get("VLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ["sqlite", "postgres"]


def _pg_connect(schema_sql: str | None = None) -> None:
    import psycopg

    from ledger.settings import StoreLocation

    loc = StoreLocation.parse(PG_URL)
    with psycopg.connect(host=loc.host, port=loc.port, user=loc.user, password=loc.password,
                         dbname=loc.dbname, connect_timeout=3, autocommit=True) as conn:
        conn.execute(schema_sql or "SELECT 1")


def postgres_available() -> bool:
    try:
        _pg_connect()
    except Exception:
        return False
    return True


def _require_postgres() -> None:
    if postgres_available():
        return
    if os.environ.get("VLEDGER_REQUIRE_POSTGRES") == "1":
        pytest.fail("PostgreSQL is required (VLEDGER_REQUIRE_POSTGRES=1) but does not answer")
    pytest.skip("PostgreSQL is not answering on " + PG_URL)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database URL for an empty store of the kind the test is parametrised with (its KEK
    file and signing key in the test's directory: beside the SQLite file, or named by
    VLEDGER_KEK_FILE and VLEDGER_SIGNING_KEY_FILE)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    _require_postgres()
    monkeypatch.setenv("VLEDGER_KEK_FILE", str(tmp_path / "ledger.kek"))
    # The signing key too (it seals the events: ledger/eventseals.py), where SQLite's is.
    monkeypatch.setenv("VLEDGER_SIGNING_KEY_FILE", str(tmp_path / "signing-key.pem"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _pg_connect(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        _pg_connect(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    """A ledger on an empty store with the catalogue loaded."""
    the_ledger = Ledger(settings)
    the_ledger.ensure_catalogue()
    yield the_ledger
    the_ledger.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a store once on SQLite and once on PostgreSQL (a test marked
    `@pytest.mark.stores("postgres")` on the stores it names only)."""
    if "database_url" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("stores")
        metafunc.parametrize("database_url", list(only.args) if only else STORES, indirect=True)


@pytest.fixture
def default_gc_thresholds() -> Iterator[None]:
    """CPython's default collector thresholds for one test, whatever the process had."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)
