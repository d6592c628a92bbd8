"""The `vledger` command line, run as a user would, on both stores."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ledger import Ledger, Settings
from projections.store import ViewStore
from tests.factories import tamper_with_events

VLEDGER = str(Path(sys.executable).parent / "vledger")


def _run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url}
    return subprocess.run([VLEDGER, *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_every_command(database_url: str) -> None:
    out = _run(database_url, "--help").stdout
    for command in ("serve", "init", "info", "tokens", "keys", "projections", "verify", "demo"):
        assert command in out


def test_tokens_create_prints_only_the_token_and_it_authenticates(database_url: str) -> None:
    from ledger import Ledger, Settings

    assert _run(database_url, "init").returncode == 0  # tokens go into a ledger
    created = _run(database_url, "tokens", "create", "--role", "auditor", "--label", "ci")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vl_")
    ledger = Ledger(Settings(database_url=database_url))
    actor = ledger.authenticate(lines[0])
    ledger.close()
    assert actor is not None and actor.role.value == "auditor"


def test_a_recorder_token_without_a_unit_is_refused_on_stderr(database_url: str) -> None:
    assert _run(database_url, "init").returncode == 0  # tokens go into a ledger
    created = _run(database_url, "tokens", "create", "--role", "recorder")
    assert created.returncode == 2
    assert created.stdout == "" and "unit_id" in created.stderr


def test_tokens_list_piped_gives_whole_ids_that_revoke_takes(database_url: str) -> None:
    assert _run(database_url, "init").returncode == 0  # tokens go into a ledger
    _run(database_url, "tokens", "create", "--role", "auditor", "--label", "a long label " * 5)
    listed = _run(database_url, "tokens", "list")  # stdout is a pipe here, as in a script
    assert listed.returncode == 0, listed.stderr
    header, *rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert header == ["id", "role", "unit", "label", "state"]
    token_id = rows[-1][0]
    assert token_id.startswith("token-") and "…" not in token_id and rows[-1][4] == "live"
    revoked = _run(database_url, "tokens", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert _run(database_url, "tokens", "list").stdout.splitlines()[-1].endswith("\trevoked")


def test_demo_refuses_nonsense_sizes_with_an_error(database_url: str) -> None:
    # bb26 F3: 10**9 ran on, taking memory until it ran out.
    for args in (["--volunteers", "-3"], ["--sessions", "-5"], ["--volunteers", "0"],
                 ["--volunteers", "1000000000"], ["--sessions", "1000000000"]):
        refused = _run(database_url, "demo", *args)
        assert refused.returncode != 0 and ("volunteers" in refused.stderr
                                            or "sessions" in refused.stderr)


def test_demo_says_why_it_recorded_fewer_sessions_than_asked(tmp_path: Path) -> None:
    done = _run(f"sqlite:///{tmp_path / 'demo.db'}", "demo", "--volunteers", "20",
                "--sessions", "3000")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    recorded = int(said.split(" sessions (")[0].rsplit(" ", 1)[1])
    assert recorded < 3000
    assert f"{3000 - recorded} of the 3000 sessions asked for are not there" in said
    assert "found no volunteer free" in said


def test_after_the_demo_verify_covers_every_event(database_url: str,
                                                 tmp_path: Path) -> None:
    """The demo leaves its views and audit log caught up: an auditor's first `verify` checks
    every event, not a log that has read none of them yet."""
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url,
           "VLEDGER_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}
    done = subprocess.run([VLEDGER, "demo", "--volunteers", "30", "--sessions", "200"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    position = int(" ".join(done.stderr.split()).split("event position ")[1].split(".")[0])
    verified = subprocess.run([VLEDGER, "verify"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    said = " ".join(verified.stdout.split())
    assert f"the log verifies: all {position} events" in said, said


def _demo_changed_by(database_url: str, tmp_path: Path,
                     tamper: Callable[[ViewStore, Ledger], None]) -> dict[str, str]:
    """A demo store that `tamper` then changed by hand; the environment that names it."""
    env = {**os.environ, "VLEDGER_DATABASE_URL": database_url,
           "VLEDGER_SIGNING_KEY_FILE": str(tmp_path / "key.pem")}
    done = subprocess.run([VLEDGER, "demo", "--volunteers", "5", "--sessions", "20"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    ledger = Ledger(Settings(database_url=database_url))
    store = ViewStore(ledger.settings.store())
    try:
        tamper(store, ledger)
    finally:
        store.close()
        ledger.close()
    return env


def _serve_after(database_url: str, tmp_path: Path,
                 tamper: Callable[[ViewStore, Ledger], None]) -> subprocess.CompletedProcess[str]:
    """`vledger serve` on a demo store that `tamper` changed by hand after its views read it."""
    env = _demo_changed_by(database_url, tmp_path, tamper)
    return subprocess.run([VLEDGER, "serve", "--port", str(_free_port())],
                          capture_output=True, text=True, env=env, timeout=120)


def test_serve_refuses_a_store_that_lost_events_its_views_read(database_url: str,
                                                               tmp_path: Path) -> None:
    """The last events deleted by hand after the views read them (bb10 F3): starting would
    let new writes take their positions on SQLite, uncounted by views already past them."""
    heads: list[int] = []

    def delete_the_last_two(store: ViewStore, ledger: Ledger) -> None:
        heads.append(ledger.head())
        tamper_with_events(store, ledger, "DELETE FROM {table} WHERE {id} > ?",
                           (heads[0] - 2,))

    started = _serve_after(database_url, tmp_path, delete_the_last_two)
    said = " ".join(started.stderr.split())
    assert started.returncode == 1, said
    assert f"not starting: the store's events end at position {heads[0] - 2}" in said
    assert f"views have read to {heads[0]}" in said


def test_serve_refuses_a_store_whose_audit_leaves_were_deleted(database_url: str,
                                                              tmp_path: Path) -> None:
    """bb26 F1: the server started and logged the next event in the deleted leaf's place,
    then signed a checkpoint whose root matched no history of the events."""
    def delete_the_last_leaf(store: ViewStore, _: Ledger) -> None:
        with store.transaction() as cur:
            last = cur.execute("SELECT MAX(leaf_index) FROM audit_leaves").fetchone()[0]
            cur.execute("DELETE FROM audit_leaves WHERE leaf_index = ?", (last,))

    started = _serve_after(database_url, tmp_path, delete_the_last_leaf)
    said = " ".join(started.stderr.split())
    assert started.returncode == 1, said
    assert "not starting: the audit log's last leaf is for position" in said, said


def test_serve_refuses_a_store_that_lost_events_from_the_middle(database_url: str,
                                                                tmp_path: Path) -> None:
    """bb36 F4: an event deleted from the middle after the audit log took it in started a
    server as if nothing had happened (only a deletion at the end was seen)."""
    def delete_one_from_the_middle(store: ViewStore, ledger: Ledger) -> None:
        tamper_with_events(store, ledger, "DELETE FROM {table} WHERE {id} = ?",
                           (ledger.head() // 2,))

    started = _serve_after(database_url, tmp_path, delete_one_from_the_middle)
    said = " ".join(started.stderr.split())
    assert started.returncode == 1, said
    assert "not starting: 1 of the" in said and "are gone from the store" in said, said
    assert "`vledger verify` names them" in said, said


@pytest.mark.parametrize("tampering", ["nodes deleted", "node changed", "key replaced"])
def test_serve_refuses_a_log_that_no_longer_extends_its_published_checkpoint(
        database_url: str, tmp_path: Path, tampering: str) -> None:
    """bb33 F4, F5: with subtree hashes deleted or changed, or the signing key replaced, the
    server started and took writes, while its checkpoint route answered that the log was
    altered. (A changed leaf under a stored subtree hash is found by `vledger verify`, which
    hashes every event; a start reads only the hashes of the published tree.)"""
    from projections.audit import Auditor, SigningKey

    def tamper(store: ViewStore, ledger: Ledger) -> None:
        key = tmp_path / "key.pem"
        Auditor(store, SigningKey.load(key)).checkpoint()  # published, as the API does
        with store.transaction() as cur:
            if tampering == "nodes deleted":
                cur.execute("DELETE FROM audit_nodes")
            elif tampering == "node changed":
                cur.execute("UPDATE audit_nodes SET hash = ? WHERE level = "
                            "(SELECT MAX(level) FROM audit_nodes)", (bytes(32),))
        if tampering == "key replaced":
            key.unlink()
            SigningKey.load(key)  # a new key in its place

    started = _serve_after(database_url, tmp_path, tamper)
    said = " ".join(started.stderr.split())
    assert started.returncode == 1, said
    expected = {"nodes deleted": "lacks the leaves or subtree hashes",
                "node changed": "no longer have the root of the checkpoint published",
                "key replaced": "set VLEDGER_SIGNING_KEY_FILE to the store's signing key"}
    assert "not starting:" in said and expected[tampering] in said, said


def test_serve_warns_that_a_store_with_published_checkpoints_has_no_kept_one(
        database_url: str, tmp_path: Path) -> None:
    """bb39 F9: with the kept checkpoint file moved away (and the store put back to an older
    backup), the server started without a word and kept the store's checkpoint as its own."""
    from projections.audit import Auditor, SigningKey

    kept = tmp_path / "key.pem.checkpoint"

    def move_the_kept_file_away(store: ViewStore, _: Ledger) -> None:
        Auditor(store, SigningKey.load(tmp_path / "key.pem")).checkpoint()  # as the API does
        kept.rename(tmp_path / "elsewhere")

    said = _started_after(database_url, tmp_path, move_the_kept_file_away)
    assert "warning: the store has published checkpoints" in said, said
    assert f"no checkpoint is kept for it in {kept}" in said, said
    assert "cannot be detected on this host" in said and "Files kept off the database" in said
    assert kept.exists()  # kept from now on


def _started_after(database_url: str, tmp_path: Path,
                   tamper: Callable[[ViewStore, Ledger], None]) -> str:
    """What `vledger serve` says as it starts on a demo store that `tamper` changed (its
    standard error up to the docs' address; the server is then stopped)."""
    env = _demo_changed_by(database_url, tmp_path, tamper)
    server = subprocess.Popen([VLEDGER, "serve", "--port", str(_free_port())], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop = threading.Timer(60, server.kill)  # a server that never says it started
    stop.start()
    lines: list[str] = []
    try:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line)
            if "API docs:" in line:
                break
        assert server.poll() is None, "".join(lines)  # it started
    finally:
        stop.cancel()
        server.terminate()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    return " ".join("".join(lines).split())


def test_info_shows_the_store_and_the_last_position(database_url: str) -> None:
    assert _run(database_url, "init").returncode == 0
    info = _run(database_url, "info")
    assert info.returncode == 0, info.stderr
    assert "last position" in info.stdout and "events" in info.stdout


def _with_a_phone(database_url: str) -> tuple[str, str]:
    """A store holding one volunteer with a phone number: their id, the current KEK's id."""
    from datetime import date

    from tests.factories import ADMIN, make_unit

    ledger = Ledger(Settings(database_url=database_url))
    try:
        volunteer_id = ledger.register_volunteer(ADMIN, "雷锋", make_unit(ledger),
                                                 date(2017, 3, 5), phone="13812345678")[0].id
        return volunteer_id, str(ledger.kek_status().current)
    finally:
        ledger.close()


def test_keys_rotate_says_what_it_did_and_status_shows_it(database_url: str) -> None:
    volunteer_id, old = _with_a_phone(database_url)
    before = _run(database_url, "keys", "status")
    assert before.returncode == 0, before.stderr
    assert old in before.stdout and "keys under " + old in " ".join(before.stdout.split())
    rotated = _run(database_url, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    said = " ".join(rotated.stdout.split())
    new = said.split("new KEK ")[1].split()[0]
    assert new != old and f"deleted old KEK {old}" in said and "re-wrapped 1 keys" in said
    after = " ".join(_run(database_url, "keys", "status").stdout.split())
    assert f"current KEK │ {new}" in after and old not in after
    ledger = Ledger(Settings(database_url=database_url))
    try:
        assert ledger.personal_of(ledger.get_volunteer(volunteer_id)) == {"phone": "13812345678"}
    finally:
        ledger.close()


def test_serve_refuses_a_store_whose_kek_file_is_missing(database_url: str) -> None:
    _, kek_id = _with_a_phone(database_url)
    ledger = Ledger(Settings(database_url=database_url))
    path = ledger.key_ring.path
    ledger.close()
    path.rename(path.with_name("moved.kek"))
    started = _run(database_url, "serve", "--port", str(_free_port()))
    said = " ".join(started.stderr.split())
    assert started.returncode == 2, said
    assert "not starting: the store" in said and kek_id in said and str(path) in said
    assert not path.exists()
    status = _run(database_url, "projections", "status")  # the views open no number
    assert status.returncode == 0, status.stderr
    assert not path.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_healthz_on_the_default_relative_sqlite_store(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLEDGER_")}
    server = subprocess.Popen([VLEDGER, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("the server did not answer within 30 s")
        assert response.status_code == 200
        assert (tmp_path / "var" / "ledger.db").exists()
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stalled_half_sent_request_does_not_hold_a_stop(tmp_path: Path, workers: str) -> None:
    """bb13 F3: a client sent half a body and stalled; SIGTERM then waited for it 120 s.
    The server now stops within its graceful wait (api/serving.GRACEFUL_SECONDS)."""
    from api.serving import GRACEFUL_SECONDS

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLEDGER_")}
    server = subprocess.Popen([VLEDGER, "serve", "--port", str(port), "--workers", workers],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    stalled = socket.socket()
    try:
        deadline = time.monotonic() + 30
        while httpx_ok(port) is False:
            assert time.monotonic() < deadline, "the server did not answer within 30 s"
            time.sleep(0.2)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"POST /v1/units HTTP/1.1\r\nHost: x\r\nContent-Type: "
                        b"application/json\r\nContent-Length: 100\r\n\r\n{\"name\"")
        time.sleep(0.5)
        began = time.monotonic()
        server.terminate()
        server.wait(timeout=GRACEFUL_SECONDS + 20)
        assert time.monotonic() - began < GRACEFUL_SECONDS + 8
    finally:
        stalled.close()
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def httpx_ok(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _on_a_read_only_file(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`vledger ARGS` on a store whose file was made read-only, run without root's power to
    write any file whatever its mode (setpriv is util-linux's, Essential on Debian)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert _run(url, "init").returncode == 0
    (tmp_path / "ledger.db").chmod(0o444)
    return subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", VLEDGER, *args],
        capture_output=True, text=True, env={**os.environ, "VLEDGER_DATABASE_URL": url},
        timeout=60)


def test_serve_refuses_an_sqlite_file_it_cannot_write(tmp_path: Path) -> None:
    """bb13 F1: on a read-only file the server started, said it was ready, and answered every
    write with a 503 to try again, whose cause no log named. It now refuses to start and
    says why. (As root the file's mode is overridden: the server runs without that power.)"""
    started = _on_a_read_only_file(tmp_path, "serve", "--port", str(_free_port()))
    said = " ".join(started.stderr.split())
    assert started.returncode == 1, said
    assert "not starting: the store cannot be written" in said and "readonly" in said, said


def test_an_unreachable_store_is_a_clear_message_not_a_traceback() -> None:
    result = _run("postgresql://postgres@127.0.0.1:1/test", "info")
    assert result.returncode == 3
    assert "the store does not answer" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_write_to_a_read_only_sqlite_file_says_so(tmp_path: Path) -> None:
    """bb13 F7: a full disk or a read-only file was reported as a store that "cannot be
    opened", which sends an operator to check VLEDGER_DATABASE_URL."""
    created = _on_a_read_only_file(tmp_path, "tokens", "create", "--role", "auditor")
    assert created.returncode == 3 and created.stdout == ""
    assert "the store cannot be written: it is read-only" in " ".join(created.stderr.split())


@pytest.mark.parametrize("command", [["info"], ["tokens", "list"], ["projections", "status"],
                                     ["verify"], ["demo", "--volunteers", "5", "--sessions", "5"]])
def test_a_file_that_is_not_an_sqlite_database_is_a_clear_message(
        tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "not-a-ledger.db"
    path.write_bytes(bytes(range(256)) * 20)
    result = _run(f"sqlite:///{path}", *command)
    assert result.returncode == 3, result.stderr
    assert "the store cannot be opened" in result.stderr
    assert "not a database" in result.stderr and "VLEDGER_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3
    assert path.read_bytes() == bytes(range(256)) * 20  # nothing written into it


@pytest.mark.parametrize("schema", ["bad;drop", "1abc", "a b", "x" * 64, ""])
def test_a_postgresql_schema_that_is_not_a_plain_name_is_refused(schema: str) -> None:
    result = _run(f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}", "info")
    assert result.returncode == 2, result.stderr
    assert "must be a plain PostgreSQL name" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_a_postgresql_schema_that_does_not_exist_yet_is_created() -> None:
    from tests.conftest import PG_URL, _pg_connect, _require_postgres

    _require_postgres()
    schema = f"fresh_{os.getpid()}"
    try:
        result = _run(f"{PG_URL}?schema={schema}", "init")  # info only reads: it would refuse
        assert result.returncode == 0, result.stderr
        assert _run(f"{PG_URL}?schema={schema}", "info").returncode == 0
    finally:
        _pg_connect(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize(("env", "says"), [
    ({"VLEDGER_DATABASE_URL": "mysql://x"}, "must start with sqlite:/// or postgresql://"),
    ({"VLEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:notaport/test"}, "Port"),
    ({"VLEDGER_PORT": "0"}, "VLEDGER_PORT"),
    ({"VLEDGER_INLINE_PROJECTIONS": "maybe"}, "VLEDGER_INLINE_PROJECTIONS"),
    ({"VLEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test?schema=a&sslmode=require"},
     "not sslmode (TLS and other connection options: set libpq's environment variables"),
    ({"VLEDGER_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test?scheme=a"},
     "takes only the parameter schema, not scheme"),
    ({"VLEDGER_DATABASE_URL": "sqlite:///l.db?mode=ro"}, "an SQLite URL takes no parameters"),
], ids=["scheme", "port-in-url", "port-setting", "boolean-setting", "sslmode", "misspelt-schema",
        "sqlite-parameter"])
@pytest.mark.parametrize("command", [["verify"], ["projections", "status"], ["info"]])
def test_a_setting_that_cannot_be_used_is_one_line_and_exit_2(
        tmp_path: Path, env: dict[str, str], says: str, command: list[str]) -> None:
    environment = {**os.environ, "VLEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'l.db'}",
                   **env}
    done = subprocess.run([VLEDGER, *command], capture_output=True, text=True, timeout=120,
                          env=environment, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("command", [["info"], ["verify"], ["projections", "status"],
                                     ["projections", "check"], ["projections", "rebuild"],
                                     ["tokens", "list"], ["tokens", "revoke", "token-x"],
                                     ["tokens", "create", "--role", "auditor"]])
def test_a_command_that_only_reads_refuses_a_store_that_is_not_there(
        tmp_path: Path, command: list[str]) -> None:
    """A mistyped path is not reported as a healthy, empty ledger, nor created."""
    missing = tmp_path / "typo" / "ledgr.db"
    done = _run(f"sqlite:///{missing}", *command)
    assert done.returncode == 3, done.stderr
    assert "no ledger at" in done.stderr and "Traceback" not in done.stderr
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.stores("postgres")
def test_a_command_that_only_reads_refuses_a_schema_that_is_not_there(
        database_url: str) -> None:
    done = _run(database_url.replace("?schema=", "?schema=missing_"), "info")
    assert done.returncode == 3 and "no ledger at" in done.stderr, done.stderr


def test_tokens_create_refuses_a_100_kb_label_on_stderr(database_url: str) -> None:
    assert _run(database_url, "init").returncode == 0  # tokens go into a ledger
    created = _run(database_url, "tokens", "create", "--role", "auditor", "--label", "x" * 100_000)
    assert created.returncode == 2
    assert created.stdout == "" and "label" in created.stderr and "200" in created.stderr
    assert _run(database_url, "tokens", "list").stdout.splitlines()[1:] == []


@pytest.mark.parametrize("command", [["info"], ["tokens", "create", "--role", "auditor"]])
def test_an_empty_file_or_schema_is_no_ledger_and_stays_empty(
        database_url: str, tmp_path: Path, command: list[str]) -> None:
    """An empty SQLite file or PostgreSQL schema is refused, not made into a ledger."""
    if database_url.startswith("sqlite"):
        empty = tmp_path / "empty.db"
        empty.touch()
        done = _run(f"sqlite:///{empty}", *command)
        assert empty.stat().st_size == 0
    else:
        import psycopg

        from ledger.settings import StoreLocation

        done = _run(database_url, *command)  # the test's own schema, empty so far
        location = StoreLocation.parse(database_url)
        with psycopg.connect(**location.connect_kwargs()) as conn:
            assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE "
                                "table_schema = %s", (location.schema,)).fetchone() == (0,)
    assert done.returncode == 3, done.stderr
    assert "no ledger at" in done.stderr and done.stdout == ""


def test_workers_slow_to_start_are_waited_for_not_killed(tmp_path: Path) -> None:
    """bb16: on a busy machine uvicorn's supervisor logged "Child process [...] died" one to
    three times as `serve --workers 2` started, and started the worker again: it asks each
    worker for a sign of life after 0.5 s and kills one that gives none within 5 s, and a
    worker still importing the app gives none. A worker here takes 7 s to start (a
    sitecustomize that sleeps in the spawned workers only), and is waited for."""
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if 'multiprocessing' in ' '.join(getattr(sys, 'orig_argv', [])):\n"
        "    time.sleep(7)\n")
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VLEDGER_")},
           "PYTHONPATH": str(slow)}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([VLEDGER, "serve", "--port", str(port), "--workers", "2"],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while httpx_ok(port) is False:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.2)
        time.sleep(2)  # both workers up, and the supervisor's checks since
        text = log.read_text()
        assert "Started server process" in text and "died" not in text, text
    finally:
        server.terminate()
        server.wait(timeout=30)
