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
from projections.checkpoint_file import CheckpointFile
from projections.signing import SigningKey, key_path
from projections.store import ViewStore, table_names
from projections.verification import Report, seal_logged, verify_log

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
    elif not any(c.name == "published checkpoint" for c in report.checks):
        out.print("[yellow]no signed checkpoint to compare: none has been published yet (the "
                  "server signs one at GET /v1/audit/checkpoint), so the recomputed root is "
                  "vouched for by no one[/yellow]")
    if not report.ok:
        out.print(f"[bold red]the log does NOT verify[/bold red]: {_culprit(report)}")
    elif report.events > report.leaves and report.unsealed_checked:
        out.print(f"[green]the log verifies[/green] up to tree size {report.leaves}; "
                  f"[yellow]{report.events - report.leaves} newer events, each sealed by the "
                  "ledger, are not in the audit log yet (run the projections)[/yellow]")
    elif report.events > report.leaves:  # say how far the proof reaches, not only that it holds
        out.print(f"[green]the log verifies[/green] up to tree size {report.leaves}; "
                  f"[yellow]{report.events - report.leaves} newer events are not in the audit "
                  "log yet, and their seals were not checked (they need the signing key: run "
                  "where it is, or see /readyz)[/yellow]")
    else:
        out.print(f"[green]the log verifies[/green]: all {report.events} events")
    # bb33 F6: an auditor read "verifies" as covering what the API serves.
    out.print("This checks the events against the audit log and its signed checkpoints. The "
              "views the API answers from (hours, rankings, bulletins, eligibility) are "
              "derived from the events and checked by `vledger projections check`.")


def _culprit(report: Report) -> str:
    """What changed, and what to do, by which checks failed (bb38 F9: every failure blamed
    the events, also when they were intact and a leaf, a subtree hash or the published row
    had changed)."""
    failed = {c.name for c in report.checks if not c.ok}
    if failed == {"seals"}:  # bb39 F4: the checkpoints were blamed
        return (next(c.detail for c in report.checks if c.name == "seals") + ". Every other "
                "check holds: the audit log and its checkpoints are as signed.")
    if report.altered:
        return ("the positions named no longer match the audit log: an event changed, "
                "deleted or added in the store after it was logged, or (where the row says the "
                "log never took it in) its leaf deleted. Compare with a backup taken before "
                "and restore what differs; until then the server refuses writes that build on "
                "them and `vledger projections rebuild` refuses to fold them.")
    if "kept checkpoint" in failed and not failed & {"subtree hashes", "root", "leaves kept"}:
        return ("the store no longer holds the checkpoint this host signed last, kept beside "
                "the signing key (its row in the store was deleted or replaced, bb38 F11): "
                "the server refuses to sign over it; restore the store from a backup taken "
                "after that checkpoint was signed.")
    if failed & {"subtree hashes", "root", "leaves kept"}:
        return ("every event gives its logged leaf, but the audit log's own tables were "
                "changed (a leaf or a subtree hash): `vledger projections rebuild audit` makes "
                "them again from the events, which still give the published root.")
    return ("the events and the audit log agree, but a checkpoint does not: the published one "
            "was replaced in the database, or the one given is not of this log, or not "
            "signed by the key given.")


def _operator_key(settings: Settings, published: dict[str, Any] | None, public_given: bool,
                  saving: bool, err: Console) -> SigningKey | None:
    """The store's signing key, if this machine holds it and it is wanted: to sign a checkpoint
    to save, or for its public half when no public key is given. Never made here (a verifier
    that made the key would vouch for itself); None for an auditor without it."""
    if public_given and not saving:
        return None
    path = key_path(settings.store())
    if not path.is_file():
        return None
    key = SigningKey.load(path)
    if published is not None and key.key_id != published["key_id"]:
        if public_given:
            return None  # the auditor's own key decides; this one signs nothing here
        err.print(f"[red]the key at {path} is {key.key_id}, but this store's checkpoints are "
                  f"signed with key {published['key_id']}: set VLEDGER_SIGNING_KEY_FILE to "
                  "that key's file, or give --public-key[/red]")
        raise typer.Exit(2)
    return key


@app.command()
def verify(
    against: Path | None = typer.Option(
        None, "--against", help="A checkpoint saved earlier (JSON); the log must extend it."),
    save: Path | None = typer.Option(
        None, "--save", help="When every check passes, write a signed checkpoint of the log "
        "here: a new one where the store's signing key is held (the operator), else the last "
        "one the store published."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The published public key (PEM) that checks the "
        "signatures; nothing secret is needed with it. Default: the public half of the "
        "store's signing key, where this machine holds it."),
) -> None:
    """Recompute every leaf, subtree hash and root from the events and compare them.

    Compared with the audit log and its signed checkpoints; nothing secret is needed.

    It reads only: it never makes a key, and signs only for --save with the store's key.
    """
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
    ledger = Ledger(settings, check_keks=False)  # the events' bytes only: no number is opened
    store = ViewStore(settings.store())
    try:
        if not _audit_tables_exist(store):
            err.print("[red]the audit log has not been built: run the projections first[/red]")
            raise typer.Exit(2)
        published = Auditor.last_published(store)
        key = _operator_key(settings, published, public_key is not None, save is not None, err)
        pem = published_pem or (key.public_key_pem() if key is not None else None)
        if pem is None and (published is not None or saved is not None):
            err.print("[red]no public key to check the signed checkpoints with: give "
                      "--public-key FILE (the key the office publishes, GET "
                      "/v1/audit/public-key, kept where the operator cannot change it), or run "
                      "where the store's signing key is (set VLEDGER_SIGNING_KEY_FILE to its "
                      "file)[/red]")
            raise typer.Exit(2)
        if save is not None and key is None and published is None:
            err.print("[red]--save: no checkpoint has been published yet, and there is no "
                      "signing key here to sign one (the server publishes one at GET "
                      "/v1/audit/checkpoint)[/red]")
            raise typer.Exit(2)
        # Seals are MACs under the signing key: checked wherever the key is, also when the
        # checkpoints are checked with a public key given (bb39 F3).
        seals = ledger.seals if ledger.seals.key_file.exists() else None
        # Only an operator saving a checkpoint signs one; otherwise nothing is written.
        signing = save is not None and key is not None
        # The checkpoint kept beside the key, where this host holds one (the operator's).
        kept = CheckpointFile(key_path(settings.store()), settings.store())
        auditor = Auditor(store, key if signing else None,
                          kept=kept if kept.path.is_file() else None)
        if seals is not None:
            auditor.sealing(ledger.recorder, seals)  # signs no event without its seal
        with out.status("recomputing the audit log…") as status:
            report = verify_log(ledger.recorder, auditor, pem,
                                saved, progress=lambda n: status.update(f"{n:,} events read…"),
                                sign=signing, seals=seals)
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


@app.command()
def seal(
    against: Path | None = typer.Option(
        None, "--against", help="A checkpoint saved earlier (vledger verify --save, or GET "
        "/v1/audit/checkpoint), signed with the store's key: events up to it are sealed too."),
) -> None:
    """Seal the events a signed checkpoint vouches for that carry no seal: once, on a store
    written by a version before event seals (or whose seals were lost). Events the audit log
    took in after the last signed checkpoint, or has not taken in, are never sealed: they are
    listed (exit 1)."""
    from ledger.errors import AuditLogAltered
    from projections.cli import require_store

    out, err = Console(), Console(stderr=True, soft_wrap=True)
    saved = _load_checkpoint(against, err) if against is not None else None
    require_store()
    settings = Settings()
    path = key_path(settings.store())
    if not path.is_file():
        err.print(f"[red]there is no signing key at {path}: seals are made with the store's "
                  "signing key (set VLEDGER_SIGNING_KEY_FILE)[/red]")
        raise typer.Exit(2)
    ledger = Ledger(settings, check_keks=False)
    store = ViewStore(settings.store())
    try:
        if not _audit_tables_exist(store):
            err.print("[red]the audit log has not been built: only the events it took in are "
                      "sealed here (run the projections with the version that wrote them)[/red]")
            raise typer.Exit(2)
        try:
            with out.status("checking the audit log and sealing the events it vouches for…"):
                done = seal_logged(ledger.recorder, Auditor(store, SigningKey.load(path)),
                                   ledger.seals, saved)
        except AuditLogAltered as altered:
            err.print(f"[bold red]nothing more was sealed: {altered}[/bold red]")
            raise typer.Exit(1) from None
    finally:
        store.close()
        ledger.close()
    out.print(f"sealed {done.sealed} event(s) that the checkpoint of {done.signed} events "
              f"signed with this key vouches for; {done.already} carried their seal already")
    if done.unsigned:
        shown = ", ".join(map(str, done.unsigned[:5]))
        err.print(f"[bold red]{len(done.unsigned)} event(s) the audit log took in after that "
                  f"checkpoint carry no seal (position(s) {shown}): not sealed, since no "
                  "signature vouches for their leaves (SQL, or a process of a version that "
                  "checks no seal, may have written them). Only on a store written before "
                  "seals, and with a checkpoint of them its old server signed before the "
                  "upgrade, give that checkpoint with --against. Otherwise delete them, then "
                  "rebuild every view (`vledger projections rebuild`), which drops their "
                  "leaves.[/bold red]")
    if done.unlogged:
        shown = ", ".join(map(str, done.unlogged[:5]))
        err.print(f"[bold red]{len(done.unlogged)} event(s) the audit log has not taken in "
                  f"carry no seal (position(s) {shown}): not sealed. If they were written by "
                  "hand, delete them; no view counts them meanwhile.[/bold red]")
    if done.left:  # bb40 F5: events left unsealed are not a success
        raise typer.Exit(1)
