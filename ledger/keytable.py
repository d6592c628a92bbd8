"""The `personal_keys` and `personal_keks` tables, as a start, a rotation and `vledger keys
status` use them (a write stores and deletes keys in its recorder: ledger/sqliterecorder.py,
pgrecorder.py). The same statements on both stores, but for the placeholder and the schema.

`personal_keys.kek_id` has a FOREIGN KEY to `personal_keks`. PostgreSQL enforces it. SQLite
enforces foreign keys only on connections that turned them on, which the library's pooled
connections have not (and `PRAGMA foreign_keys` cannot be set inside its transactions): there
a write inserts its keys with `INSERT … SELECT … FROM personal_keks WHERE kek_id = ?`, which
stores nothing under a KEK that is not listed, and the recorder refuses the write when fewer
rows went in than it sent. Both checks run inside the inserting transaction, after the write
took its turn (the events table's lock, the SQLite write turn), as a rotation's last step does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ledger.keks import KeyRing

KEKS_TABLE = "personal_keks"
KEYS_TABLE = "personal_keys"
PAGE = 5_000  # keys read and re-wrapped per statement: bounded memory for 600k keys


def create_statements(postgres: bool, schema: str = "") -> list[str]:
    """The tables and indexes (an older `personal_keys`, without `kek_id`, gains it)."""
    keks, keys = (f'"{schema}".{KEKS_TABLE}', f'"{schema}".{KEYS_TABLE}') if postgres \
        else (KEKS_TABLE, KEYS_TABLE)
    if postgres:
        return [
            f"CREATE TABLE IF NOT EXISTS {keks} (kek_id text PRIMARY KEY, "
            "is_current boolean NOT NULL DEFAULT false)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS personal_keks_one_current ON {keks} "
            "(is_current) WHERE is_current",
            f"CREATE TABLE IF NOT EXISTS {keys} (key_id text PRIMARY KEY, key bytea NOT NULL, "
            f"kek_id text REFERENCES {keks} (kek_id))",
            # Looked up first: ALTER TABLE would lock the table against every read at each start.
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE "
            f"table_schema = '{schema}' AND table_name = '{KEYS_TABLE}' AND column_name = "
            f"'kek_id') THEN ALTER TABLE {keys} ADD COLUMN kek_id text REFERENCES {keks} "
            "(kek_id); END IF; END $$",
            f"CREATE INDEX IF NOT EXISTS personal_keys_kek_id ON {keys} (kek_id)"]
    return [
        f"CREATE TABLE IF NOT EXISTS {keks} (kek_id TEXT PRIMARY KEY, "
        "is_current INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
        f"CREATE UNIQUE INDEX IF NOT EXISTS personal_keks_one_current ON {keks} (is_current) "
        "WHERE is_current = 1",
        f"CREATE TABLE IF NOT EXISTS {keys} (key_id TEXT PRIMARY KEY, key BLOB NOT NULL, "
        f"kek_id TEXT REFERENCES {keks} (kek_id)) WITHOUT ROWID"]


class KeyTable:
    """What a start, a rotation and the status read and change of the two tables."""

    def __init__(self, recorder: Any, postgres: bool,
                 writing: Callable[[], AbstractContextManager[None]] = nullcontext) -> None:
        self.recorder = recorder
        # The SQLite write turn (ledger/turns.py), which every write of the two tables takes:
        # SQLite refuses at once a writer whose transaction read before another one wrote.
        self.writing = writing
        self.postgres = postgres
        schema = f'"{recorder.datastore.schema}".' if postgres else ""
        self.keks, self.keys = schema + KEKS_TABLE, schema + KEYS_TABLE
        self.mark = "%s" if postgres else "?"
        self.true = "true" if postgres else "1"

    @contextmanager
    def _cursor(self, commit: bool = False) -> Iterator[Any]:
        with self.recorder.datastore.transaction(commit=commit) as cur:
            yield cur

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        with self.writing(), self._cursor(commit=True) as cur:
            yield cur

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.mark)

    def current(self) -> str | None:
        """The KEK the store wraps new keys under."""
        with self._cursor() as cur:
            cur.execute(f"SELECT kek_id FROM {self.keks} WHERE is_current = {self.true}")
            row = cur.fetchone()
        return None if row is None else str(row["kek_id"])

    def keks_listed(self) -> list[str]:
        with self._cursor() as cur:
            cur.execute(f"SELECT kek_id FROM {self.keks} ORDER BY kek_id")
            return [str(r["kek_id"]) for r in cur.fetchall()]

    def holds_keys_under(self, kek_id: str | None) -> bool:
        """Whether any key is wrapped under a KEK (None: stored in plain, before KEKs)."""
        where = "kek_id IS NULL" if kek_id is None else self._sql("kek_id = ?")
        with self._cursor() as cur:
            cur.execute(f"SELECT 1 AS one FROM {self.keys} WHERE {where} LIMIT 1",
                        () if kek_id is None else (kek_id,))
            return cur.fetchone() is not None

    def counts(self) -> dict[str | None, int]:
        """Keys per KEK id (None: in plain)."""
        with self._cursor() as cur:
            cur.execute(f"SELECT kek_id, COUNT(*) AS n FROM {self.keys} GROUP BY kek_id")
            return {r["kek_id"]: int(r["n"]) for r in cur.fetchall()}

    def make_current(self, kek_id: str, forget: Collection[str] = ()) -> None:
        """List a KEK and mark it current (the one before stays listed until a rotation ends);
        `forget`: listed KEKs no key is wrapped under, whose file lines are gone."""
        with self._writing() as cur:
            cur.execute(f"UPDATE {self.keks} SET is_current = {'false' if self.postgres else 0}"
                        f" WHERE is_current = {self.true}")
            cur.execute(self._sql(
                f"INSERT INTO {self.keks} (kek_id, is_current) VALUES (?, {self.true}) ON "
                f"CONFLICT (kek_id) DO UPDATE SET is_current = {self.true}"), (kek_id,))
            for old in forget:
                cur.execute(self._sql(f"DELETE FROM {self.keks} WHERE kek_id = ?"), (old,))

    def page(self, after: str, kek_ids: Collection[str],
             cur: Any | None = None) -> list[tuple[str, bytes, str | None]]:
        """The next keys after a key id wrapped under any of `kek_ids` or in plain (read in
        `cur`'s transaction when given)."""
        if cur is None:
            with self._cursor() as own:
                return self.page(after, kek_ids, own)
        marks = ", ".join(self.mark for _ in kek_ids) or "NULL"
        cur.execute(self._sql(
            f"SELECT key_id, key, kek_id FROM {self.keys} WHERE key_id > ? AND "
            f"(kek_id IS NULL OR kek_id IN ({marks})) ORDER BY key_id LIMIT {PAGE}"),
            (after, *kek_ids))
        return [(r["key_id"], bytes(r["key"]), r["kek_id"]) for r in cur.fetchall()]

    def rewrap(self, cur: Any, ring: KeyRing, rows: list[tuple[str, bytes, str | None]]) -> int:
        """Wrap some keys again under the ring's current KEK, each only if it is still as read
        (a key erased meanwhile stays erased); how many were."""
        if not rows:
            return 0
        new = ring.current()
        again = [ring.wrap(key_id, ring.unwrap(key_id, kek_id, wrapped), new)[1]
                 for key_id, wrapped, kek_id in rows]
        if self.postgres:  # one statement a page, not a round trip a key
            cur.execute(
                f"UPDATE {self.keys} AS k SET key = n.w, kek_id = %s FROM unnest(%s::text[], "
                "%s::bytea[], %s::text[]) AS n(id, w, old) WHERE k.key_id = n.id AND "
                "k.kek_id IS NOT DISTINCT FROM n.old",
                (new, [r[0] for r in rows], again, [r[2] for r in rows]))
            return int(cur.rowcount)
        cur.executemany(f"UPDATE {self.keys} SET key = ?, kek_id = ? WHERE key_id = ? AND "
                        "kek_id IS ?",
                        [(w, new, r[0], r[2]) for w, r in zip(again, rows, strict=True)])
        return int(cur.sqlite_cursor.rowcount)

    def rewrap_all(self, ring: KeyRing, kek_ids: Collection[str],
                   cur: Any | None = None) -> int:
        """Re-wrap every key under `kek_ids` (or in plain), a page per transaction (all in
        `cur`'s when given)."""
        after, done = "", 0
        while True:
            if cur is None:
                rows = self.page(after, kek_ids)
                with self._writing() as own:
                    done += self.rewrap(own, ring, rows)
            else:
                rows = self.page(after, kek_ids, cur)
                done += self.rewrap(cur, ring, rows)
            if len(rows) < PAGE:
                return done
            after = rows[-1][0]

    @contextmanager
    def writers_held(self) -> Iterator[Any]:
        """A transaction no write of keys can interleave with: on PostgreSQL it takes the
        events table's lock, which every insert takes first; on SQLite the write turn."""
        with self._writing() as cur:
            if self.postgres:
                self.recorder._lock_table(cur)
            yield cur

    def wrap_plain(self, ring: KeyRing) -> int:
        """Wrap every key stored in plain (by a ledger older than KEKs) under the current KEK,
        in one transaction: a second process starting at once finds none left. Writers are
        not held (on PostgreSQL): a key an older process stores in plain meanwhile reads as it
        is, and the next start or rotation wraps it."""
        with self._writing() as cur:
            return self.rewrap_all(ring, (), cur)

    def finish_rotation(self, ring: KeyRing, new: str) -> tuple[int, list[str]]:
        """With writers held: re-wrap the keys written under an older KEK since the rotation's
        pages passed them, then delete every other KEK's row. Those keys, and the KEKs."""
        with self.writers_held() as cur:
            cur.execute(self._sql(f"SELECT kek_id FROM {self.keks} WHERE kek_id <> ?"), (new,))
            old = sorted(str(r["kek_id"]) for r in cur.fetchall())
            late = self.rewrap_all(ring, old, cur)
            for kek_id in old:
                cur.execute(self._sql(f"DELETE FROM {self.keks} WHERE kek_id = ?"), (kek_id,))
        return late, old
