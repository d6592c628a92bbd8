"""Settings: `VLEDGER_*` variables, and the database URL mapped onto eventsourcing's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ledger import Ledger, Settings, StoreLocation
from ledger.settings import ConfigurationError


def test_the_default_store_is_an_sqlite_file_under_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLEDGER_DATABASE_URL", raising=False)
    location = Settings().store()
    assert (location.kind, location.sqlite_path) == ("sqlite", Path("var/ledger.db"))


def test_the_database_url_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLEDGER_DATABASE_URL", "postgresql://clerk@db.example/ledger")
    assert Settings().store().host == "db.example"


def test_the_activity_margin_is_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLEDGER_ACTIVITY_MARGIN_MINUTES", "15")
    assert Settings().activity_margin_minutes == 15


def test_a_negative_activity_margin_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(activity_margin_minutes=-1)


def test_the_store_deadlines_are_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLEDGER_STORE_WAIT_SECONDS", "0.5")
    monkeypatch.setenv("VLEDGER_STORE_SILENCE_SECONDS", "3")
    deadlines = Settings().deadlines()
    assert (deadlines.wait, deadlines.silence) == (0.5, 3.0)
    assert deadlines.connect_timeout == 2  # libpq's least, in whole seconds


def test_store_deadlines_of_zero_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(store_wait_seconds=0)
    with pytest.raises(ValidationError):
        Settings(store_silence_seconds=0)


def test_a_ledger_on_postgresql_bounds_its_pool_and_one_on_sqlite_keeps_its_own(
        database_url: str) -> None:
    ledger = Ledger(Settings(database_url=database_url, store_wait_seconds=3.5))
    try:
        if database_url.startswith("sqlite"):
            assert ledger.watchdog is None  # no network between it and its file
            return
        factory: Any = ledger.factory
        pool = factory.datastore.pool
        assert pool.timeout == 3.5 and pool.kwargs["connect_timeout"] == 4
        with pool.connection() as conn:
            assert type(conn).__name__.startswith("Watched")
    finally:
        ledger.close()


def test_an_sqlite_url_with_three_slashes_is_relative() -> None:
    assert StoreLocation.parse("sqlite:///var/ledger.db").sqlite_path == Path("var/ledger.db")


def test_an_sqlite_url_with_four_slashes_is_absolute() -> None:
    assert StoreLocation.parse("sqlite:////srv/vledger/ledger.db").sqlite_path == Path(
        "/srv/vledger/ledger.db")


def test_an_sqlite_url_must_name_a_file() -> None:
    with pytest.raises(ValueError, match="names no SQLite file"):
        StoreLocation.parse("sqlite:///")


def test_a_relative_sqlite_file_lies_under_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ledger = Ledger(Settings(database_url="sqlite:///var/here.db"))
    ledger.ensure_catalogue()
    ledger.close()
    assert (tmp_path / "var" / "here.db").is_file()


def test_a_postgresql_url_gives_user_password_host_port_and_database() -> None:
    location = StoreLocation.parse("postgresql://clerk:s3cret@db.example:6543/ledger")
    assert (location.kind, location.user, location.password, location.host, location.port,
            location.dbname) == ("postgres", "clerk", "s3cret", "db.example", 6543, "ledger")


def test_a_postgresql_url_without_port_or_password_uses_the_defaults() -> None:
    location = StoreLocation.parse("postgresql://clerk@db.example/ledger")
    assert (location.password, location.port, location.schema) == ("", 5432, "public")


def test_a_postgresql_password_may_be_percent_encoded() -> None:
    assert StoreLocation.parse("postgresql://clerk:p%40ss%3Aw@h/db").password == "p@ss:w"


def test_a_postgresql_url_may_name_a_schema() -> None:
    assert StoreLocation.parse("postgresql://u@h/db?schema=ledger_2017").schema == "ledger_2017"


def test_a_postgresql_url_maps_onto_eventsourcing_settings() -> None:
    env = StoreLocation.parse("postgresql://clerk:pw@db.example:6543/ledger?schema=s").\
        eventsourcing_env()
    assert {k: env[k] for k in ("PERSISTENCE_MODULE", "POSTGRES_HOST", "POSTGRES_PORT",
                                "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DBNAME",
                                "POSTGRES_SCHEMA")} == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543", "POSTGRES_USER": "clerk", "POSTGRES_PASSWORD": "pw",
        "POSTGRES_DBNAME": "ledger", "POSTGRES_SCHEMA": "s"}


def test_a_description_of_the_store_hides_the_password() -> None:
    assert "s3cret" not in StoreLocation.parse("postgresql://u:s3cret@h/db").describe()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "ledger.db", "sqlite://ledger.db", ""])
def test_a_database_url_of_another_kind_is_refused_clearly(url: str) -> None:
    with pytest.raises(ValueError, match=r"must start with sqlite:/// or postgresql://"):
        StoreLocation.parse(url)


def test_a_ledger_on_a_bad_database_url_does_not_start() -> None:
    with pytest.raises(ValueError, match="VLEDGER_DATABASE_URL"):
        Ledger(Settings(database_url="mysql://u@h/db"))


def test_postgresql_connections_of_the_ledger_and_the_views_run_without_jit() -> None:
    # JIT compiled the loader's short statements (~11 ms each on a 2M-event log).
    from projections.store import ViewStore
    from tests.conftest import PG_URL, _pg_connect, _require_postgres

    _require_postgres()
    schema = f"nojit_{os.getpid()}"
    ledger = Ledger(Settings(database_url=f"{PG_URL}?schema={schema}"))
    views = ViewStore(ledger.settings.store())
    try:
        datastore: Any = ledger.recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cur:
            cur.execute("SHOW jit")
            assert cur.fetchone()["jit"] == "off"
        assert views.query("SHOW jit") == [("off",)]
    finally:
        views.close()
        ledger.close()
        _pg_connect(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_postgresql_url_may_list_hosts_each_with_its_port() -> None:
    """A primary and its standbys (pg_auto_failover): libpq's own multi-host URL. A host
    without a port has 5432, as in libpq's URLs; the list reaches every connection."""
    location = StoreLocation.parse(
        "postgresql://clerk@10.0.0.1:5446,10.0.0.2:5447,[fd00::3]/ledger?schema=s")
    assert location.hosts == (("10.0.0.1", 5446), ("10.0.0.2", 5447), ("fd00::3", 5432))
    kwargs = location.connect_kwargs()
    assert (kwargs["host"], kwargs["port"]) == ("10.0.0.1,10.0.0.2,fd00::3", "5446,5447,5432")
    env = location.eventsourcing_env()
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"]) == (kwargs["host"], kwargs["port"])
    assert "10.0.0.2:5447" in location.describe()
    for bad in ("postgresql://c@h1:x,h2/db", "postgresql://c@h1:0,h2/db",
                "postgresql://c@h1,,h2/db"):
        with pytest.raises(ConfigurationError, match="VLEDGER_DATABASE_URL"):
            StoreLocation.parse(bad)


@pytest.mark.stores("postgres")
def test_a_ledger_on_a_multi_host_url_takes_the_host_that_answers(database_url: str) -> None:
    """The first host does not answer (a node that is down): libpq goes on to the next, for
    the ledger's connections and the views' alike."""
    from projections.models import ReadModels
    from tests.factories import make_unit, make_volunteer

    listed = database_url.replace("@127.0.0.1:5432/", "@127.0.0.1:1,127.0.0.1:5432/")
    assert listed != database_url
    ledger = Ledger(Settings(database_url=listed))
    try:
        volunteer = make_volunteer(ledger, home_unit_id=make_unit(ledger))
        models = ReadModels(ledger)
        try:
            assert models.catch_up() == ledger.head()
            assert models.volunteer_hours(volunteer) is not None
        finally:
            models.close()
    finally:
        ledger.close()


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:5432/",
                                 "postgresql://postgres@127.0.0.1:5432",
                                 "postgresql://postgres@127.0.0.1:5432/?schema=s"])
def test_a_postgresql_url_without_a_database_is_refused(url: str) -> None:
    """bb19 F3: with no database in the URL, libpq chose one (`postgres`) without a word, and
    serve or init would have made a ledger there."""
    with pytest.raises(ConfigurationError, match="must name the database"):
        StoreLocation.parse(url)
