"""Scratch stores for a benchmark run: SQLite files under a temp dir, or PostgreSQL schemas."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_URL = os.environ.get("VLEDGER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg(sql: str) -> None:
    import psycopg

    from ledger.settings import StoreLocation

    loc = StoreLocation.parse(PG_URL)
    with psycopg.connect(**loc.connect_kwargs()) as conn:
        conn.execute(sql)


def postgres_answers() -> bool:
    """Whether the benchmark PostgreSQL server answers."""
    try:
        _pg("SELECT 1")
    except Exception:
        return False
    return True


@contextmanager
def scratch(kind: str, base: Path, label: str) -> Iterator[str]:
    """A database URL for an empty store, removed afterwards."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix=f"vledger-bench-{label}-", dir=base))
        try:
            yield f"sqlite:///{folder / 'ledger.db'}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    _pg(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        _pg(f'DROP SCHEMA "{schema}" CASCADE')
