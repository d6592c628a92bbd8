"""The `vledger` command line: serve, init, info, tokens, keys, demo, projections, verify."""

from __future__ import annotations

import sqlite3
import sys
from typing import Annotated, Any

import psycopg
import typer
from eventsourcing.persistence import PersistenceError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ledger import SYSTEM, Ledger, LedgerError, Origin, Settings
from ledger.errors import AuditLogAltered
from ledger.settings import ConfigurationError
from projections.cli import require_store

app = typer.Typer(help="The district volunteer-service ledger (学雷锋志愿服务台账).",
                  no_args_is_help=True, add_completion=False)
tokens = typer.Typer(help="Issue, list and revoke bearer tokens.", no_args_is_help=True)
app.add_typer(tokens, name="tokens")
err = Console(stderr=True, soft_wrap=True)  # one line per message, also when piped
CLI = Origin(actor=SYSTEM, source="cli")


def _ledger() -> Ledger:
    try:  # a setting that cannot be used is answered by main(): one line, exit 2
        ledger = Ledger(Settings())
    except STORE_ERRORS as error:
        err.print(_unreachable(error))
        raise typer.Exit(3) from None
    ledger.ensure_catalogue()
    return ledger


# What a store that is missing, down, or not a ledger at all raises as it is opened or read.
STORE_ERRORS = (PersistenceError, OSError, psycopg.Error, sqlite3.Error)
DEMO_MAX_VOLUNTEERS = 1_000_000
DEMO_MAX_SESSIONS = 20_000_000


def _count_events(ledger: Ledger) -> int:
    recorder: Any = ledger.recorder
    table = recorder.events_table_name
    schema = getattr(recorder.datastore, "schema", "")
    if schema:
        table = f'"{schema}"."{table}"'
    with recorder.datastore.transaction(commit=False) as cur:
        cur.execute(f"SELECT COUNT(*) AS n FROM {table}")
        row = cur.fetchone()
    return int(row["n"] if isinstance(row, dict) else row[0])


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", min=1,
                                             max=65535)] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Start the HTTP API (docs at /docs, contract at /openapi.json)."""
    from uvicorn.config import LOG_LEVELS

    from api.serving import ensure_port_free
    from api.serving import serve as run

    if log_level not in LOG_LEVELS:
        err.print(f"[red]--log-level must be one of {', '.join(LOG_LEVELS)}, not "
                  f"{log_level!r}[/red]")
        raise typer.Exit(2)
    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    try:
        ensure_port_free(host, port)
    except OSError as error:
        err.print(f"[red]cannot listen on {host}:{port}: {error.strerror or error}[/red]")
        raise typer.Exit(1) from None
    ledger = _ledger()  # create the store and catalogue once, before the workers start
    try:
        location = ledger.settings.store()
        unwritable = location.write_problem()
        if unwritable:
            err.print(f"[red]not starting: the store cannot be written "
                      f"({location.describe()}): {unwritable}[/red]")
            raise typer.Exit(1)
        from projections.audit import (
            altered_log,
            logged_events_gone,
            unextended_checkpoint,
            unkept_checkpoint,
            unsealed_events,
        )
        from projections.runner import views_ahead_of
        from projections.signing import key_path
        from projections.store import ViewStore, connection_budget

        views = ViewStore(location)
        try:
            # Events deleted after the views read them: on SQLite new writes would take their
            # positions, and views that read past them would never count those writes. Audit
            # leaves deleted by hand: the next event would be logged in their place (bb26 F1).
            # Events deleted from the middle, counted (bb36 F4). A log that no longer extends
            # the checkpoint it published (bb33 F4, F5).
            # Events without the ledger's seal: written by hand, or before seals (bb38 F2).
            # Asked first whether this host keeps a checkpoint for the store: the checks
            # below keep the store's from then on.
            unkept = unkept_checkpoint(views, key_path(location))
            missing = (views_ahead_of(views, ledger.head()) or altered_log(views)
                       or logged_events_gone(views, ledger.events_up_to)
                       or unsealed_events(views, ledger.recorder, ledger.seals)
                       or unextended_checkpoint(views, key_path(location)))
            warning = connection_budget(views, workers) if location.kind == "postgres" else None
        finally:
            views.close()
        if missing:
            err.print(f"[red]not starting: {missing}[/red]")
            raise typer.Exit(1)
        for said in (unkept, warning):
            if said:
                err.print(f"[yellow]warning: {said}[/yellow]", highlight=False)
    finally:
        ledger.close()
    err.print(f"volunteer-ledger on {settings.store().describe()}")
    err.print(f"API docs: http://{host}:{port}/docs")
    run(host, port, workers, log_level)


@app.command()
def init() -> None:
    """Create the store and its views, and load the program catalogue."""
    from projections.models import ReadModels, auditor_views

    ledger = _ledger()
    models = ReadModels(ledger, extra=auditor_views())
    models.catch_up()
    err.print(f"ready: {ledger.settings.store().describe()}, head position {ledger.head()}")
    models.close()
    ledger.close()


@app.command()
def info() -> None:
    """Show the store, how many events it holds and the last position."""
    require_store()
    ledger = _ledger()
    table = Table(show_header=False)
    table.add_row("store", ledger.settings.store().describe())
    table.add_row("events", str(_count_events(ledger)))
    table.add_row("last position", str(ledger.head()))
    Console().print(table)
    ledger.close()


@tokens.command("create")
def tokens_create(
    role: Annotated[str, typer.Option(help="admin, recorder, committee or auditor.")],
    unit: Annotated[str | None, typer.Option(help="The unit a recorder records for.")] = None,
    label: Annotated[str, typer.Option(help="Who or what the token is for.")] = "",
) -> None:
    """Issue a token; prints only the token on standard output."""
    # Into an existing ledger only: a token issued into a store made by a mistyped URL would
    # be refused by every real server (`vledger init` makes a new store on purpose).
    require_store()
    ledger = _ledger()
    try:
        token, written = ledger.issue_token(CLI, role, unit, label)
    except LedgerError as error:
        err.print(f"[red]{error.described if error.field else f'error: {error}'}[/red]")
        raise typer.Exit(2) from None
    finally:
        ledger.close()
    err.print(f"issued {written.id} ({role}{' for ' + unit if unit else ''})")
    sys.stdout.write(token + "\n")


@tokens.command("list")
def tokens_list() -> None:
    """List every token ever issued (never the token itself).

    A table on a terminal; tab-separated lines, ids whole, when piped to another program.
    """
    require_store()
    ledger = _ledger()
    try:
        rows = [(t.id, t.role, t.unit_id or "", t.label, "live" if t.is_live else "revoked")
                for t in ledger.list_tokens()]
    finally:
        ledger.close()
    header = ("id", "role", "unit", "label", "state")
    if not sys.stdout.isatty():
        for row in (header, *rows):
            sys.stdout.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@tokens.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (token-…), from `list`.")],
    reason: Annotated[str, typer.Option(help="Why it is revoked.")] = "revoked by the office",
) -> None:
    """Revoke a token: it is refused (401) from then on."""
    require_store()  # a token of a store that does not exist: nothing to revoke, nothing made
    ledger = _ledger()
    try:
        ledger.revoke_token(CLI, token_id, reason)
    except LedgerError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    finally:
        ledger.close()
    err.print(f"revoked {token_id}")


def _mount_read_side() -> None:
    """Mount the read side's and the demo's commands."""
    from api.keys_cli import app as keys_app
    from projections.audit_cli import app as audit_app
    from projections.cli import app as projections_app

    app.add_typer(projections_app, name="projections")
    app.add_typer(keys_app, name="keys")
    app.registered_commands.extend(audit_app.registered_commands)

    @app.command()
    def demo(
        # Bounded (bb26 F3: 10**9 ran on, taking 40-60 MB a second, until memory ran out): a
        # city's volunteers, and a few years of its sessions (benchmarks go further in code).
        volunteers: Annotated[int, typer.Option(
            min=1, max=DEMO_MAX_VOLUNTEERS, help="How many volunteers.")] = 2000,
        sessions: Annotated[int, typer.Option(
            min=0, max=DEMO_MAX_SESSIONS, help="How many service sessions.")] = 20000,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same district).")] = 2017,
    ) -> None:
        """Fill the store with a realistic district from the 2017 plan."""
        from ledger.demo import run_demo
        from projections.cli import bring_up_to_date

        run_demo(volunteers=volunteers, sessions=sessions, seed=seed)
        bring_up_to_date("bringing the views and the audit log up to date")


_mount_read_side()


def main() -> None:
    """`vledger`: a store that cannot be opened or read (a file that is not an SQLite
    database, a server that went away) ends any command with one line saying so, exit 3."""
    try:
        app()
    except ValidationError as error:  # a VLEDGER_* setting of the wrong type or range
        for problem in error.errors():
            name = "VLEDGER_" + "_".join(str(p) for p in problem["loc"]).upper()
            err.print(f"[red]{name}: {problem['msg']} (got {problem.get('input')!r})[/red]",
                      markup=True, highlight=False)
        sys.exit(2)
    except ConfigurationError as error:
        err.print(f"[red]{error}[/red]", highlight=False)
        sys.exit(2)
    except AuditLogAltered as error:  # bb39 F7: a refusal, said in one line, not a traceback
        err.print(f"[bold red]refused: {_one_line(error)}[/bold red]", highlight=False)
        sys.exit(1)
    except STORE_ERRORS as error:
        err.print(_unreachable(error))
        sys.exit(3)


def _unreachable(error: BaseException) -> str:
    """The one line for a store that cannot be opened (an SQLite path that is a directory or
    not writable) or does not answer (PostgreSQL down), naming the setting to check."""
    location = Settings().store()
    what = "does not answer"
    if location.kind == "sqlite":
        text = str(error).lower()
        what = ("cannot be written: its disk is full" if "disk is full" in text else
                "cannot be written: it is read-only" if "readonly" in text else
                "cannot be opened")
    return (f"[red]the store {what} ({location.describe()}; check VLEDGER_DATABASE_URL): "
            f"{_one_line(error)}[/red]")


def _one_line(error: BaseException) -> str:
    """An error's message on one line (psycopg adds a hint line: "Is the server running…")."""
    return " ".join(str(error).split())


if __name__ == "__main__":  # python -m api.cli
    main()
