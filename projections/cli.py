"""`vledger projections …`: follow the ledger, rebuild views, show their lag, check them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger import Ledger, Settings
from projections.audit import Auditor
from projections.models import ReadModels, auditor_views, read_models
from projections.reconcile import Difference, compare_views
from projections.runner import Projection

app = typer.Typer(help="Keep the read models up to date: follow, rebuild, status, check.",
                  no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console()

LISTED = 20  # differences listed per view by `check`; the rest are counted

PageSize = Annotated[int | None,
                     typer.Option(min=1, max=100_000, help="Events per transaction.")]


def all_projections() -> list[Projection]:
    """Fresh instances of every view the API serves (the read models, history and audit)."""
    return [*read_models(), *auditor_views()]


def require_store() -> None:
    """For commands that only read: refuse a store that does not exist (a mistyped path or
    schema) rather than create an empty one and report a healthy, empty ledger. Exit 3."""
    location = Settings().store()
    if not location.exists():
        err.print(f"[red]no ledger at {location.describe()}: no events were ever stored "
                  "there (check VLEDGER_DATABASE_URL; `vledger init` or `vledger serve` "
                  "creates a store)[/red]")
        raise typer.Exit(3)


@contextmanager
def opened(page_size: int | None = None, reading: bool = False) -> Iterator[ReadModels]:
    """The ledger named by VLEDGER_DATABASE_URL and its views; closed afterwards. `reading`:
    a command that works on an existing ledger (reads it, or rebuilds its views), refused
    (exit 3) on a store that does not exist rather than creating it. The views open no phone
    or id number: a worker on a host without the KEK file runs (ledger/keks.py)."""
    if reading:
        require_store()
    ledger = Ledger(Settings(), check_keks=False)
    models = ReadModels(ledger, extra=auditor_views())
    if page_size is not None:
        models.runner.page_size = models.runner.rebuild_page_size = page_size
    try:
        yield models
    finally:
        models.close()
        ledger.close()


@contextmanager
def progress_bar(description: str, head: int) -> Iterator[Callable[[int, int], None]]:
    """A bar on standard error for the runner's `progress(position, head)` callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(description, total=max(head, 1))
        yield lambda position, top: bar.update(task, completed=position, total=top)


def bring_up_to_date(why: str) -> None:
    """Catch every view up with the ledger, with a progress bar (after `vledger demo`: its
    store then holds the views and the audit log of every event, so `vledger verify` covers
    them all at once rather than a log that has read none of them yet)."""
    with opened() as models:
        head = models.runner.head()
        with progress_bar(why, head) as progress:
            models.runner.catch_up(head, progress=progress)


@app.command()
def run(interval: float = typer.Option(0.5, min=0.01, help="Seconds between polls."),
        page_size: PageSize = None) -> None:
    """Follow the ledger and keep every view up to date until Ctrl-C (waiting, if it does
    not exist yet, for `vledger serve` or `vledger init` to create it)."""
    stop = threading.Event()
    try:
        _wait_for_store(interval)
    except KeyboardInterrupt:
        err.print("stopped before the ledger was created")
        return
    with opened(page_size) as models:
        from projections.audit import unkept_checkpoint
        from projections.signing import key_path

        unkept = unkept_checkpoint(models.store, key_path(models.ledger.settings.store()))
        if unkept:  # as `vledger serve` warns (bb39 F9)
            err.print(f"[yellow]warning: {unkept}[/yellow]")
        err.print(f"following {models.ledger.settings.store().describe()} (Ctrl-C to stop)")
        try:
            # A catch-up that fails (the store gone a while: a failover, a restart) is said
            # and tried again at the next wake-up: the worker outlives the outage, as the
            # API's follower does, rather than leave the views behind until restarted.
            models.runner.follow(stop, interval, failed=_FailureReport().said)
        except KeyboardInterrupt:
            stop.set()
        try:
            err.print(f"stopped at position {models.position()}")
        except Exception as error:  # the store is gone: stopped all the same
            err.print(f"stopped (the store does not answer: {type(error).__name__})")


def _wait_for_store(interval: float) -> None:
    """A worker may start before the API has created the store; it waits for it rather than
    create it: bb19 found a worker on a mistyped schema making an empty ledger of its own and
    following it, healthy in its own eyes, while the API's views never moved."""
    location = Settings().store()
    if location.exists():
        return
    err.print(f"[yellow]no ledger at {location.describe()} yet: waiting for `vledger serve` or "
              "`vledger init` to create it (check VLEDGER_DATABASE_URL if it never comes)"
              "[/yellow]")
    while not location.exists():
        time.sleep(max(interval, 0.5))


class _FailureReport:
    """Says a failed catch-up on standard error: a new error at once, the same one again at
    most every REPEAT_SECONDS (an outage fails every poll)."""

    REPEAT_SECONDS = 30.0

    def __init__(self) -> None:
        self.last: tuple[str, float] | None = None

    def said(self, error: Exception) -> None:
        text = " ".join(f"{type(error).__name__}: {error}".split())
        now = time.monotonic()
        if self.last is None or self.last[0] != text or now - self.last[1] >= self.REPEAT_SECONDS:
            err.print(f"[red]catching up failed, trying again: {text}[/red]", highlight=False)
            self.last = (text, now)


@app.command()
def rebuild(name: Annotated[str | None, typer.Argument(help="One view; all by default.")] = None,
            page_size: PageSize = None,
            drop_unsigned: Annotated[bool, typer.Option(
                "--drop-unsigned", help="Drop the audit log's leaves, after its last signed "
                "checkpoint, of events deleted because they were named as carrying no seal "
                "(never of an event the ledger sealed).")] = False) -> None:
    """Drop views (all, or NAME: hours, credits, awards, activities, history, audit) and
    refill them from position 0; a rebuilt audit log is checked against the last published
    checkpoint."""
    with opened(page_size, reading=True) as models:
        names = [p.name for p in models.runner.projections]
        if name is not None and name not in names:
            err.print(f"no view named {name!r}; views: {', '.join(names)}")
            raise typer.Exit(2)
        _refuse_unsealed_events(models, audit=name in (None, "audit"))
        _refuse_altered_events(models, audit=name in (None, "audit"), drop=drop_unsigned)
        with progress_bar(f"rebuilding {name or 'all views'}",
                          models.runner.head()) as progress:
            started = time.perf_counter()
            reached = models.runner.rebuild([name] if name else None, progress=progress)
        took = time.perf_counter() - started
        err.print(f"rebuilt to position {reached} in {took:.1f} s "
                  f"({reached / max(took, 1e-9):,.0f} events/s)")
        if name in (None, "audit"):
            _check_published(models)
        if name is None:  # every view counts the events as they are now
            models.ledger.accept_positions()


def _auditor(models: ReadModels) -> Auditor:
    """The store's auditor, with the store's signing key where this host holds it, else a
    reader: these commands compare and sign nothing, and never make a key (bb38 F10: a
    check made one beside the store, which a server would then have signed with)."""
    from projections.signing import SigningKey, key_path

    path = key_path(models.ledger.settings.store())
    auditor = Auditor(models.store, SigningKey.load(path) if path.is_file() else None)
    if path.is_file():
        auditor.sealing(models.ledger.recorder, models.ledger.seals)
    return auditor


def _refuse_unsealed_events(models: ReadModels, audit: bool) -> None:
    """Before a rebuild: events without the ledger's seal would stop it half way, after the
    view was emptied (bb39 F5: the hours view answered 503 until they were deleted). Refused
    (exit 1, nothing rebuilt): for a rebuild of the audit log, any event without a seal (a
    store written before seals: `vledger seal`); otherwise those the log has not taken in."""
    from projections.audit import unsealed_events

    found = unsealed_events(models.store, models.ledger.recorder, models.ledger.seals,
                            logged_too=audit)
    if found:
        err.print(f"[bold red]nothing was rebuilt: {found}[/bold red]")
        raise typer.Exit(1)


def _refuse_altered_events(models: ReadModels, audit: bool, drop: bool = False) -> None:
    """Before a rebuild (of the audit log too, with `audit`): events changed or deleted in the
    database after the audit log took them in would pass into the rebuilt views, and a rebuilt
    audit log would lose the leaves that show which events they were. Refused (exit 1,
    nothing rebuilt), naming them, also when the stored events no longer give the root of the
    checkpoint the store published (their leaves may have been changed with them: bb33 F4).
    When they still give it and only the audit log's own tables were altered, rebuilding the
    log from the events is the repair."""
    from ledger.errors import AuditLogAltered
    from projections.store import table_names
    from projections.verification import altered_events, position_of

    with models.store.reading() as cur:
        if "audit_leaves" not in table_names(cur):
            return
    auditor = _auditor(models)
    published = auditor.published()
    size = int(published["tree_size"]) if published is not None else None
    count, first, root = altered_events(models.ledger.recorder, auditor, root_of=size,
                                        first=1000)
    if published is not None and (root is None or root.hex() != published["root_hash"]):
        err.print(f"[bold red]the stored events no longer give the root of the checkpoint of "
                  f"{size} events published at {published['signed_at']}"
                  + (f" ({count} differ from their leaves, first at position(s) "
                     f"{', '.join(map(str, first))})" if count else "")
                  + ": a rebuilt audit log would sign over the change. Nothing was rebuilt; "
                  "restore the events (e.g. from a backup) and see `vledger verify`."
                  "[/bold red]")
        raise typer.Exit(1)
    if not count:
        return
    signed_to = position_of(models.store, size)
    if first[0] > signed_to and drop and audit:  # bb41 F4, with the operator's word
        sealed = _sealed_positions(models, first)
        if not sealed and count == len(first):
            err.print(f"dropping the leaves of {count} event(s) the audit log took in after its "
                      f"last signed checkpoint, which no longer match them (position(s) "
                      f"{', '.join(map(str, first[:10]))}); rebuilding from the events as they "
                      "are, each checked against its seal")
            return
        if sealed:  # bb42 F1: the ledger wrote them; deleting them undid a revocation
            err.print(f"[bold red]the ledger sealed the event(s) at position(s) "
                      f"{', '.join(map(str, sealed[:10]))}, which are no longer as sealed: "
                      "events of the ledger, changed or deleted by hand. Nothing was "
                      "rebuilt; restore them from a backup.[/bold red]")
            raise typer.Exit(1)
    if first[0] > signed_to:
        err.print(f"[bold red]{count} event(s) the audit log took in after its last signed "
                  f"checkpoint no longer match their leaves (first at position(s) "
                  f"{', '.join(map(str, first[:3]))}). If they are exactly the events named "
                  "as carrying no seal, which you deleted, rebuild every view with "
                  "--drop-unsigned; otherwise they are events of the ledger deleted or changed "
                  "by hand: restore them from a backup. Nothing was rebuilt.[/bold red]")
        raise typer.Exit(1)
    try:
        auditor.check_published()
    except AuditLogAltered:
        err.print(f"{count} event(s) differ from the audit log, which no longer extends its "
                  "published checkpoint; the events still give its root: "
                  + ("rebuilding the audit log from them" if audit else
                     "rebuild the audit log from them as well (`vledger projections rebuild "
                     "audit`)"))
        return
    err.print(f"[bold red]{count} stored event(s) changed or deleted after the audit log took "
              f"them in, first at position(s) {', '.join(map(str, first))}: a rebuild would "
              "carry the change into the views and replace the leaves that show it. Nothing "
              "was rebuilt; restore those events (e.g. from a backup) and see `vledger "
              "verify`.[/bold red]")
    raise typer.Exit(1)


def _sealed_positions(models: ReadModels, positions: Sequence[int]) -> list[int]:
    """Those of `positions` the ledger sealed (a row in event_seals)."""
    from ledger.eventseals import SEALS_TABLE

    with models.store.reading() as cur:
        condition, values = cur.one_of("position", list(positions))
        rows = cur.execute(f"SELECT position FROM {SEALS_TABLE} WHERE {condition} "
                           "ORDER BY position", (values,)).fetchall()
    return [int(p) for (p,) in rows]


def _check_published(models: ReadModels) -> None:
    """A rebuilt audit log must still extend the checkpoint the store last published: the
    events it was rebuilt from may have been changed in the database since (exit 1)."""
    from ledger.errors import AuditLogAltered

    try:
        published = _auditor(models).check_published()
    except AuditLogAltered as altered:
        err.print(f"[bold red]the rebuilt audit log does not extend the published checkpoint: "
                  f"{altered}[/bold red]")
        raise typer.Exit(1) from None
    if published is not None:
        err.print(f"the audit log extends the published checkpoint of {published['tree_size']} "
                  "events")


@app.command()
def status() -> None:
    """Show each view's position, the ledger's head, and the lag in events and seconds."""
    with opened(reading=True) as models:
        table = Table("view", "position", "head", "lag (events)", "lag (s)")
        for view in sorted(models.runner.status(), key=lambda v: v.name):
            table.add_row(view.name, str(view.position), str(view.head), str(view.lag),
                          f"{_lag_seconds(models, view.position, view.lag):.1f}")
        out.print(table)


def _lag_seconds(models: ReadModels, position: int, lag: int) -> float:
    return 0.0 if lag == 0 else models.lag_seconds(position)


@app.command()
def check(page_size: PageSize = None) -> None:
    """Rebuild every view into a scratch store and compare it row by row with the live one."""
    with opened(page_size, reading=True) as models:
        models.catch_up()
        found = compare_views(models.store, models.ledger.recorder, all_projections,
                              listed=LISTED)
        if found.differences:
            report(found.differences, found.counts)
            raise typer.Exit(1)
        _check_published(models)  # the events themselves still extend what was published
        out.print("every view matches its rebuild: "
                  f"{', '.join(p.name for p in models.runner.projections)}")


def report(differences: Sequence[Difference], counts: Mapping[str, int] | None = None) -> None:
    """Print the differences by view, table and key (the audit log's leaves by position);
    bytes (hashes) in hex; and, where a view's listing was cut short (`counts`: how many each
    view has in all), how many more there are."""
    counts = counts or Counter(d.view for d in differences)
    for d in differences:
        # One line per difference, never wrapped, so scripts can grep it.
        out.print(f"{d.view} {d.table} key={_shown(d.key)}: live={_shown(d.live)} "
                  f"rebuilt={_shown(d.rebuilt)}", markup=False, highlight=False, soft_wrap=True)
    for d in differences:
        if d.table == "audit_leaves":  # keyed by position (projections/reconcile.py)
            out.print(f"audit: the event at position {d.key[0]} {_leaf_found(d)}",
                      markup=False, highlight=False, soft_wrap=True)
    for view, count in sorted(counts.items()):
        shown = sum(1 for d in differences if d.view == view)
        if count > shown:
            out.print(f"{view}: {shown} of {count} differences listed", markup=False,
                      highlight=False, soft_wrap=True)
    err.print(f"{sum(counts.values())} difference(s) in all"
              + ("" if len(counts) < 2 else
                 f" ({', '.join(f'{v} {n}' for v, n in sorted(counts.items()))})"))


def _leaf_found(d: Difference) -> str:
    """What one difference of the audit log's leaves says about the event at its position."""
    if d.rebuilt is None:
        return ("is gone from the store, but the audit log holds its leaf: deleted after it "
                "was logged (or its leaf added by hand)")
    if d.live is None:
        return ("has no leaf in the audit log: added to the store by hand (or its leaf "
                "deleted)")
    return ("no longer gives the leaf logged for it (the event or its leaf was changed in "
            "the database after it was logged; `vledger verify` checks which)")


def _shown(row: tuple[object, ...] | None) -> str:
    if row is None:
        return "None"
    return "(" + ", ".join(bytes(v).hex() if isinstance(v, bytes | memoryview) else repr(v)
                           for v in row) + ")"
