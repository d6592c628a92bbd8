"""`vledger verify`: recompute the tamper-evident log from the event store and compare.

Mount with `cli.add_typer(audit_cli.app)` or `cli.command("verify")(audit_cli.verify)`.
Exit status: 0 when every check passes, 1 on any mismatch, 2 when the input cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger, Settings
from projections.audit import Auditor
from projections.signing import SigningKey, key_path
from projections.store import ViewStore, table_names
from projections.verification import Report, verify_log

app = typer.Typer(help="Audit the ledger's tamper-evident log.", no_args_is_help=True)
CHECKPOINT_FIELDS = ("tree_size", "root_hash", "signature", "key_id", "signed_at")


@app.callback()
def main() -> None:
    """Audit the ledger's tamper-evident log."""


def _load_checkpoint(path: Path, err: Console) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        missing = [f for f in CHECKPOINT_FIELDS if f not in saved]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if isinstance(saved["tree_size"], bool) or not isinstance(saved["tree_size"], int):
            raise ValueError("tree_size is not a whole number")
    except (OSError, ValueError, TypeError) as exc:
        err.print(f"[red]cannot read the checkpoint {path}: {exc}[/red]")
        raise typer.Exit(2) from None
    return dict(saved)


def _load_public_key(path: Path, err: Console) -> str:
    """The PEM of an Ed25519 public key from a file, or exit 2 saying what is wrong with it
    (a wrong file must not read as a log that fails to verify)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        pem = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read the public key {path}: {exc}[/red]")
        raise typer.Exit(2) from None
    if "PRIVATE KEY" in pem:
        err.print(f"[red]{path} holds a private key: give the published public key "
                  "(GET /v1/audit/public-key)[/red]")
        raise typer.Exit(2)
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except ValueError as exc:
        err.print(f"[red]{path} is not a public key in PEM: {exc}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(key, Ed25519PublicKey):
        err.print(f"[red]{path} is not an Ed25519 public key[/red]")
        raise typer.Exit(2)
    return pem


def _audit_tables_exist(store: ViewStore) -> bool:
    with store.reading() as cur:
        return "audit_leaves" in table_names(cur)


def _print(report: Report, out: Console) -> None:
    table = Table(title="Audit log verification")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in report.checks:
        mark = "[green]ok[/green]" if check.ok else "[bold red]MISMATCH[/bold red]"
        table.add_row(check.name, mark, check.detail)
    out.print(table)
    out.print(f"{report.events} events read, {report.leaves} leaves, "
              f"{report.seconds:.2f} s ({report.events_per_second:,.0f} events/s)")
    cp = report.checkpoint
    if cp:
        out.print(f"checkpoint: tree_size {cp['tree_size']}, root {cp['root_hash']}, "
                  f"key {cp['key_id']}")
    if not report.ok:
        out.print("[bold red]the log does NOT verify[/bold red]")
    elif report.events > report.leaves:  # say how far the proof reaches, not only that it holds
        out.print(f"[green]the log verifies[/green] up to tree size {report.leaves}; "
                  f"[yellow]{report.events - report.leaves} newer events are not in the audit "
                  "log yet (run the projections)[/yellow]")
    else:
        out.print(f"[green]the log verifies[/green]: all {report.events} events")


@app.command()
def verify(
    against: Path | None = typer.Option(
        None, "--against", help="A checkpoint saved earlier (JSON); the log must extend it."),
    save: Path | None = typer.Option(
        None, "--save", help="Write the new signed checkpoint here (only when all checks pass)."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The published public key (PEM); default: the server's."),
) -> None:
    """Recompute every leaf, subtree hash and root from the events and compare them."""
    from projections.cli import require_store

    out, err = Console(), Console(stderr=True, soft_wrap=True)
    saved = _load_checkpoint(against, err) if against is not None else None
    published_pem = _load_public_key(public_key, err) if public_key is not None else None
    if save is not None and not save.parent.is_dir():
        err.print(f"[red]cannot save the checkpoint to {save}: no directory "
                  f"{save.parent}[/red]")
        raise typer.Exit(2)
    require_store()
    settings = Settings()
    ledger = Ledger(settings)
    store = ViewStore(settings.store())
    try:
        if not _audit_tables_exist(store):
            err.print("[red]the audit log has not been built: run the projections first[/red]")
            raise typer.Exit(2)
        path = key_path(settings.store())
        published = Auditor.last_published(store)
        if published is not None and not path.is_file():
            # The store's checkpoints were signed with a key that is not here (another
            # working directory, or VLEDGER_SIGNING_KEY_FILE unset): no new key is made.
            err.print(f"[red]no signing key at {path}; this store's checkpoints are signed "
                      f"with key {published['key_id']}: set VLEDGER_SIGNING_KEY_FILE to that "
                      "key's file[/red]")
            raise typer.Exit(2)
        key = SigningKey.for_store(settings.store())
        pem = published_pem or key.public_key_pem()
        with out.status("recomputing the audit log…") as status:
            report = verify_log(ledger.recorder, Auditor(store, key), pem, saved,
                                progress=lambda n: status.update(f"{n:,} events read…"))
        _print(report, out)
        if not report.ok:
            raise typer.Exit(1)
        if save is not None:
            try:
                save.write_text(json.dumps(report.checkpoint, indent=2) + "\n",
                                encoding="utf-8")
            except OSError as exc:
                err.print(f"[red]the log verifies, but the checkpoint cannot be saved to "
                          f"{save}: {exc}[/red]")
                raise typer.Exit(2) from None
            out.print(f"checkpoint saved to {save}")
    finally:
        store.close()
        ledger.close()
