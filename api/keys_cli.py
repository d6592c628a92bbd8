"""`vledger keys …`: the key-encryption keys (KEKs) of personal data (ledger/keks.py)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ledger import Ledger, Settings
from projections.cli import require_store

app = typer.Typer(help="The key-encryption keys of phone and id numbers: status, rotate.",
                  no_args_is_help=True)
out = Console(soft_wrap=True)


@app.command()
def status() -> None:
    """Show the current KEK, how many keys each KEK wraps, and the KEK file."""
    require_store()
    ledger = Ledger(Settings())
    try:
        state = ledger.kek_status()
    finally:
        ledger.close()
    table = Table(show_header=False)
    table.add_row("current KEK", state.current or "none")
    table.add_row("KEK file", str(state.path))
    table.add_row("KEKs in the file", ", ".join(state.in_file) or "none")
    for kek_id, count in sorted(state.keys.items(), key=lambda item: item[0] or ""):
        table.add_row(f"keys under {kek_id or 'no KEK (plain)'}", str(count))
    if not state.keys:
        table.add_row("keys", "0")
    out.print(table)


@app.command()
def rotate() -> None:
    """Wrap every key of personal data under a new KEK, then delete the old KEK from the store
    and from the KEK file: backups taken before an erasure can no longer open what it erased."""
    require_store()
    ledger = Ledger(Settings())
    try:
        done = ledger.rotate_keks()
    finally:
        ledger.close()
    out.print(f"new KEK {done.new} in {done.path}, now current", highlight=False)
    out.print(f"re-wrapped {done.rewrapped + done.late} keys under it ({done.late} of them "
              "written under the old KEK during the rotation)", highlight=False)
    out.print(f"deleted old KEK {', '.join(done.old) or '(none)'} from the store and the file",
              highlight=False)
