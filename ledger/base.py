"""The infrastructure every use case shares: store settings, loading, saving, retrying."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import event
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from ledger.aggregate import LedgerAggregate
from ledger.catalogue import PROGRAMS
from ledger.errors import (
    ClosedReference,
    ConcurrentChange,
    InvalidField,
    KeyReused,
    LedgerError,
    NotFound,
    StoreBusy,
    TokenRevoked,
    UnknownReference,
    VersionMismatch,
)
from ledger.eventseals import EventSeals
from ledger.guards import WriteGuard, current_grant, guarding, with_grant
from ledger.ids import first_keyed_id, keyed_ids, keyed_ids_issued
from ledger.keks import kek_path
from ledger.keyrotation import KekStatus, Rotated, open_ring, rotate, status, unchecked_ring
from ledger.loading import Kept, Loader
from ledger.provenance import SYSTEM, Origin
from ledger.sealing import KeyChanges, alike, keys_for, opened, storing_keys
from ledger.settings import Settings, StoreLocation, turn_off_jit
from ledger.signingkey import key_path
from ledger.storeids import StoreIds
from ledger.transcoding import LedgerTranscoder
from ledger.turns import WriteTurns
from ledger.vouching import SNAPSHOT_KEY_LABEL, EventCheck, SnapshotSeal
from ledger.watchdog import Watchdog, bound_pool

T = TypeVar("T")
A = TypeVar("A", bound=LedgerAggregate)
log = logging.getLogger("vledger.ledger")

# A write that lost a race tries again, after a random pause that doubles with each loss (up
# to the cap): without it, twenty writers of one volunteer at once retried in lockstep and a
# third to a half of them ran out of attempts (409) on PostgreSQL with two API workers.
MAX_ATTEMPTS = 16
RETRY_PAUSE_SECONDS = 0.002
RETRY_PAUSE_CAP_SECONDS = 0.1
SQLITE_POOL_SIZE = 40
# What the store raises when it does not answer (down, restarted, a dropped connection): not
# the request's fault (the API answers 503; a group of writes is not tried item by item).
STORE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True)
class Written:
    """What a write returns: the id it concerns and the event position it reached."""

    id: str
    position: int


class _Catalogue(LedgerAggregate):
    """The program catalogue as loaded into the store, so the history shows what it was."""

    id: str  # chosen by the ledger, see ledger.aggregate


    ID = "catalogue"

    @event("Loaded")
    def __init__(self, programs: list[dict[str, Any]], actor: dict[str, Any],
                 source: str) -> None:
        self.programs = programs


@contextmanager
def _setting_up(location: StoreLocation) -> Iterator[None]:
    """Let one process at a time set up a PostgreSQL store.

    eventsourcing replaces its insert function on every start, and two starts at the same
    moment (two API workers, a CLI beside the server) fail with "tuple concurrently updated".
    """
    if location.kind != "postgres":
        yield
        return
    from psycopg import sql

    with location.session_lock("vledger-setup") as conn:
        if location.schema != "public":
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(location.schema)))
        yield


def replay(aggregate: Any, events: Any) -> Any:
    """Apply stored events in order: the library's projector checks each event against a
    runtime Protocol, which cost a third of a batch's time; our events all can mutate."""
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class LedgerBase(Application[str]):
    """Shared plumbing of the `Ledger` application service."""

    def __init__(self, settings: Settings | None = None, env: dict[str, str] | None = None,
                 check_keks: bool = True):
        self.settings = settings or Settings()
        location = self.settings.store()
        # Cuts PostgreSQL connections whose server stopped answering (ledger/watchdog.py);
        # the views' pools (projections/store.py) share it.
        deadlines = self.settings.deadlines()
        self.watchdog = (Watchdog(location.connector(deadlines), deadlines)
                         if location.kind == "postgres" else None)
        store_env = location.eventsourcing_env()
        store_env.update(env or {})
        if location.kind == "postgres":
            turn_off_jit()
        with _setting_up(location):
            super().__init__(env=store_env)
        if location.kind == "sqlite":
            # The library keeps 5 SQLite connections and opens and closes others per use; a
            # server runs up to 40 request threads, so keep one connection for each.
            pool: Any = self.factory.datastore.pool  # type: ignore[attr-defined]
            pool.pool_size = SQLITE_POOL_SIZE
        self.margin = timedelta(minutes=self.settings.activity_margin_minutes)
        # SQLite has one writer at a time per file. Our writers (ledger saves and view
        # catch-ups, in this process and others) take turns (ledger/turns.py) instead of
        # queueing in SQLite's busy handler, which backs off by sleeping.
        self._turns = (WriteTurns(location.sqlite_path)
                       if location.kind == "sqlite" and location.sqlite_path is not None else None)
        recorder: Any = self.recorder
        # The KEKs that wrap the keys of sealed numbers (keks.py): checked, and set up on a
        # new or older store, before anything is read or written (`check_keks` False: neither,
        # for a command that opens no number).
        path = kek_path(location, self.settings.kek_file)
        try:
            self.key_ring = (open_ring(recorder, location, path, self.writing) if check_keks
                             else unchecked_ring(recorder, location, path))
        except BaseException:
            self.close()
            raise
        recorder.ring = self.key_ring
        # Every event written is sealed with a key derived from the signing key; an event
        # without its seal is refused (eventseals.py).
        self.seals = EventSeals(key_path(location), recorder.store_id,
                                StoreIds(key_path(location), location).claim)
        if hasattr(type(recorder), "seals"):
            recorder.seals = self.seals
        snapshots: Any = self.snapshots.recorder if self.snapshots is not None else None
        self._loader = Loader(recorder.datastore, location.kind != "sqlite",
                              recorder.events_table_name,
                              snapshots.events_table_name if snapshots is not None else None,
                              location.schema)
        self._kept = Kept(self.settings.kept_aggregates)
        # Told how many events each save stored, once they are stored (the API counts them:
        # vledger_events_appended_total). Every write of the ledger saves through here.
        self.on_recorded: Callable[[int], None] | None = None

    # -- storage ----------------------------------------------------------------------------

    def construct_factory(self, env: Any) -> Any:
        """The library's factory, its PostgreSQL pool bounded (ledger/deadlines.py) before
        the pool opens: its wait for a connection, libpq's connect timeout, the watchdog on
        every statement, and a check that drops connections the server closed."""
        factory = super().construct_factory(env)
        datastore = getattr(factory, "datastore", None)
        if self.watchdog is not None and datastore is not None:
            bound_pool(datastore.pool, self.watchdog)
        return factory

    def construct_transcoder(self) -> LedgerTranscoder:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def close(self) -> None:
        """Close the store's connections and the write-turn file; on SQLite, first truncate
        the WAL if keys erased since still sit in it (sqliterecorder.forget_erased)."""
        forget = getattr(self.recorder, "forget_erased", None)
        if forget is not None:
            try:
                forget(wait_ms=2000)
            except Exception:  # closing goes on: the next start's writes try again
                log.exception("could not truncate the WAL after erasures")
        super().close()
        if self._turns is not None:
            self._turns.close()
        if self.watchdog is not None:
            self.watchdog.close()

    def rotate_keks(self) -> Rotated:
        """Wrap every key of personal data under a new KEK and forget the old one
        (keyrotation.py): backups taken before an erasure can no longer open what it erased."""
        return rotate(self.recorder, self.settings.store(), self.key_ring, self.writing)

    def kek_status(self) -> KekStatus:
        """The current KEK, the keys under each KEK, the KEK file."""
        return status(self.recorder, self.settings.store(), self.key_ring)

    def vouch(self, check: EventCheck | None, snapshot_key: bytes | None) -> None:
        """Build writes only on what the audit log vouches for (ledger/vouching.py): `check`
        refuses loaded events that differ from their leaves, and snapshots are sealed with,
        and used only when they carry, a MAC under `snapshot_key`. Aggregates kept from
        before are dropped, so none loaded unchecked is built on."""
        self._loader.check = check
        self._loader.seal = SnapshotSeal(snapshot_key) if snapshot_key is not None else None
        self._kept.clear()

    def refused_snapshots(self) -> frozenset[tuple[str, int]]:
        """The snapshots (id, version) this process found without its key's MAC."""
        return frozenset(self._loader.forged)

    def accept_positions(self) -> None:
        """After every view was rebuilt from the events as they are: let writes go on from the
        last event left (SQLite refuses them after its last events were deleted by hand;
        ledger/sqliterecorder.py). Nothing to do on PostgreSQL."""
        accept = getattr(self.recorder, "accept_positions", None)
        if accept is not None:
            accept()

    def events_up_to(self, position: int) -> int:
        """How many events the store holds at or below `position` (a full count of them)."""
        return self._loader.count_up_to(position)

    def head(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        return int(self.recorder.max_notification_id() or 0)


    @contextmanager
    def writing(self, seconds: float | None = None) -> Iterator[None]:
        """Hold the SQLite write turn (a no-op on PostgreSQL); StoreBusy if it is not this
        process's within `seconds` (by default the turns' own limit)."""
        if self._turns is None:
            yield
            return
        with self._turns.turn(seconds):
            yield

    def _take_snapshots(self, processing_event: Any) -> None:
        """Snapshot from the aggregates just saved, not by loading them again.

        The library reloads an aggregate from the store for each snapshot it takes; ours are in
        memory and saved, so a snapshot of their current state (any version is a valid one) costs
        one insert. One snapshot per aggregate per save, when its events crossed an interval;
        its older snapshots are deleted in the same transaction (`Loader.store_snapshots`).
        """
        if self.snapshots is None:
            return
        due: dict[str, Any] = {}
        unvouched = self._loader.unvouched
        for saved in processing_event.events:
            aggregate = processing_event.aggregates.get(saved.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval and (saved.originator_version % interval == 0
                             or saved.originator_id in unvouched):
                due[saved.originator_id] = aggregate
        unvouched.difference_update(due)
        if due:
            if self._loader.seal is None:
                # A ledger without views (`vledger demo`, `vledger tokens`) seals its snapshots
                # too, with the key its events were just sealed with (eventseals.py): a server
                # would otherwise pass them over and replay those aggregates once.
                key = self.seals.derived(SNAPSHOT_KEY_LABEL)
                if key is not None:
                    self._loader.seal = SnapshotSeal(key)
            self._loader.store_snapshots([self.mapper.to_stored_event(type(a).Snapshot.take(a))
                                          for a in due.values()])

    def _save(self, *aggregates: LedgerAggregate | None, guard: WriteGuard | None = None,
              keys: KeyChanges | None = None) -> int:
        """Record the aggregates' pending events in one transaction; returns the head position.
        With `guard`, only if what the write was checked against still holds (guards.py);
        with `keys`, storing and deleting the keys of sealed numbers with them (sealing.py)."""
        recordings = self._save_recorded(*aggregates, guard=guard, keys=keys)
        if not recordings:
            return self.head()
        return int(max(position for _, position in recordings))

    def _save_recorded(self, *aggregates: LedgerAggregate | None,
                       guard: WriteGuard | None = None,
                       keys: KeyChanges | None = None) -> list[tuple[Any, int]]:
        """`_save`, answering each event stored with the position it took, in order.

        What `Application.save` does, without its two runtime-Protocol `isinstance` checks per
        aggregate (a tenth of a batch import's time): ours are all `LedgerAggregate`s.
        """
        processing = ProcessingEvent[str]()
        for aggregate in aggregates:
            if aggregate is not None:
                processing.events.extend(aggregate.collect_events())
                processing.aggregates[aggregate.id] = aggregate
        if keyed_ids_issued():
            self._recognise(processing.events, keys)
        with self.writing():
            with guarding(with_grant(guard)), storing_keys(keys):
                try:
                    recordings = self._store(processing)
                except IntegrityError:
                    self._refuse_if_revoked()
                    raise
            if recordings and self.on_recorded is not None:  # stored, whatever follows
                self.on_recorded(len(recordings))
            self._take_snapshots(processing)
        return recordings

    def _store(self, processing: ProcessingEvent[str]) -> list[tuple[Any, int]]:
        """The library's `_record` (`EventStore.put`), answering (event, position) pairs: it
        made a `Recording` and a `Notification`, a copy of the stored event, for each event
        (1.5 µs, for two events a session on an import), which no one here reads."""
        stored = [self.mapper.to_stored_event(e) for e in processing.events]
        positions = self.recorder.insert_events(stored, tracking=processing.tracking,
                                                **processing.saved_kwargs)
        if not positions:
            return []
        return list(zip(processing.events, positions, strict=True))

    def _refuse_if_revoked(self) -> None:
        """After an insert refused by its guard: TokenRevoked if the caller's grant moved (was
        revoked) since the caller was let in, rather than a lost race to run again."""
        grant = current_grant()
        if grant is None:
            return
        stored = self._loader.versions([grant.id]).get(grant.id)
        if stored != grant.version:
            raise TokenRevoked(
                f"token {grant.id} was revoked after this request was let in (grant version "
                f"{grant.version}, now {stored}); nothing of it was stored")

    def keyed(self, scope: str | None, run: Callable[[], T], prefix: str | None = None,
              fields: Callable[[], dict[str, Any]] | None = None) -> T | Recognised:
        """Run a use case that registers something, with ids drawn from `scope` (a caller and
        its idempotency key) when given: sent again, the request is Recognised (what it
        registered the first time, not a second one), or refused (KeyReused) if it is not the
        same request. Two sends at once: one registers, the other recognises it.

        With `prefix` (the kind of id the use case draws) and `fields` (what its first event
        records of the request), a request sent again is recognised before the use case checks
        it against the ledger as it stands now: a resend is answered as the first send was
        even if, say, the unit it names has closed since; and a key that registered something
        of another kind is refused."""
        if scope is None:
            return run()
        if prefix is not None:
            known = self._registered_under(scope, prefix, fields)
            if known is not None:
                return known
        for _ in range(2):
            with keyed_ids(scope):
                try:
                    return run()
                except Recognised as recognised:
                    return recognised
                except IntegrityError:
                    continue  # the same request, sent again, was stored meanwhile: look again
                except LedgerError:
                    # Refused as the ledger stands now (say, its unit closed just now): if the
                    # same request sent at the same moment was stored before that, it is done.
                    known = (self._registered_under(scope, prefix, fields)
                             if prefix is not None else None)
                    if known is None:
                        raise
                    return known
        raise ConcurrentChange("another request with the same idempotency key was being "
                               "written; please try again")

    def _registered_under(self, scope: str, prefix: str,
                          fields: Callable[[], dict[str, Any]] | None) -> Recognised | None:
        """What a key registered before, if anything (see `keyed`)."""
        drawn = {p: first_keyed_id(scope, p) for p in REGISTERED_KINDS}
        stored = self._positions(list(drawn.values()))
        for kind, the_id in drawn.items():
            if the_id not in stored:
                continue
            if kind != prefix:
                raise KeyReused(
                    f"Idempotency-Key was sent before with another kind of request (which "
                    f"registered {the_id}); send a new key for a new request",
                    "Idempotency-Key")
            if fields is None:
                return None  # the use case's own save recognises it (`_recognise`)
            first = self.mapper.to_domain_event(self.recorder.select_events(the_id, lte=1)[0])
            try:
                wanted: dict[str, Any] | None = fields()
            except LedgerError:
                wanted = None  # not even valid on its own: not the request first sent
            if wanted is None or not alike(
                    self._opened({k: getattr(first, k, None) for k in wanted}), wanted):
                raise KeyReused(
                    "Idempotency-Key was sent before with another request (which registered "
                    f"{the_id}); send a new key for a new request", "Idempotency-Key")
            return Recognised(the_id, stored[the_id][min(stored[the_id])])
        return None

    def _recognise(self, events: Iterable[Any], keys: KeyChanges | None) -> None:
        """Before saving what a keyed request registers: if the store holds it already (the
        request was sent before), Recognised; if it holds something else under the ids drawn
        from the key, KeyReused."""
        issued = set(keyed_ids_issued())
        for pending in events:
            if pending.originator_version != 1 or pending.originator_id not in issued:
                continue
            stored = self.recorder.select_events(pending.originator_id, lte=1)
            if not stored:
                continue
            original = self.mapper.to_domain_event(stored[0])
            if type(original) is not type(pending) or not alike(
                    self._opened(_content(original)),
                    opened(_content(pending), keys.added if keys else {})):
                raise KeyReused(
                    "Idempotency-Key was sent before with another request (which registered "
                    f"{pending.originator_id}); send a new key for a new request",
                    "Idempotency-Key")
            position = self._positions([pending.originator_id])[pending.originator_id][1]
            raise Recognised(pending.originator_id, position)

    def _opened(self, data: dict[str, Any]) -> dict[str, Any]:
        """Data holding sealed numbers (an event's, a volunteer's personal data), opened with
        the stored keys: a number whose key was deleted reads as ERASED (sealing.py)."""
        return opened(data, keys_for(self.recorder, [data]))

    def _last_position(self, aggregate: LedgerAggregate) -> int:
        """Where an aggregate's last stored event sits: the answer of a write that found
        nothing to change."""
        return self._positions([aggregate.id])[aggregate.id][aggregate.version]

    def _positions(self, ids: Collection[str],
                   topic: str | None = None) -> dict[str, dict[int, int]]:
        """Where the stored events (of one topic) of some aggregates sit in the ledger's order:
        by id, each event's position by version (a write sent again answers the original's)."""
        return self._loader.positions(ids, topic)

    def _retrying(self, attempt: Callable[[], T], attempts: int = MAX_ATTEMPTS,
                  pause: float = RETRY_PAUSE_SECONDS,
                  refused: str = "another change to the same records won; please try again",
                  busy: bool = False) -> T:
        """Run a read-check-write attempt again when another writer won the race, up to
        `attempts` times; with `pause`, after a random wait of up to `pause` seconds that
        doubles with each lost race (up to RETRY_PAUSE_CAP_SECONDS), so that many racers for
        one shared aggregate spread out. ConcurrentChange (`refused`) when all are lost, or
        with `busy` StoreBusy (503, try again): the race was for the ledger's own record (the
        volunteer numbers), not for one the client named (bb30 F1)."""
        for tries in range(attempts):
            try:
                return attempt()
            except IntegrityError:
                if pause:
                    time.sleep(random.uniform(0, min(RETRY_PAUSE_CAP_SECONDS, pause * 2**tries)))
        raise StoreBusy(refused) if busy else ConcurrentChange(refused)

    def _get(self, cls: type[A], aggregate_id: str) -> A | None:
        return self._get_many(cls, [aggregate_id]).get(aggregate_id)

    def _borrow_many(self, cls: type[A], ids: Collection[str]) -> dict[str, A]:
        """Like `_get_many`, but aggregates a batch of this process saved last are reused
        when their stored version has not moved. Give them back with `_give_back` after a
        successful save; otherwise just drop them."""
        taken = self._kept.take(ids)
        if taken:
            stored = self._loader.versions(taken)
            taken = {i: a for i, a in taken.items()
                     if stored.get(i) == a.version and isinstance(a, cls)}
        missing = [i for i in ids if i not in taken]
        return {**taken, **self._get_many(cls, missing)} if missing else taken

    def _borrow(self, cls: type[A], aggregate_id: str, what: str) -> A:
        """`_find`, reusing the aggregate this process saved last if the store holds no later
        version of it (a volunteer with 29,000 sessions: a 2 MB snapshot not read again for
        each correction, bb27). Give it back with `_give_back` once saved."""
        found = self._borrow_many(cls, [aggregate_id]).get(aggregate_id)
        if found is None:
            raise NotFound(f"no {what} with id {aggregate_id!r}")
        return found

    def _give_back(self, aggregates: Iterable[LedgerAggregate]) -> None:
        """Aggregates just saved (or loaded and unchanged), for the next `_borrow_many`."""
        self._kept.give(aggregates)

    def _get_many(self, cls: type[A], ids: Collection[str]) -> dict[str, A]:
        """The aggregates of a class among some ids, loaded with one statement (unknown ids,
        and ids of another class, are left out)."""
        loaded = self._loader.load(ids, self.mapper, replay)
        return {i: a for i, a in loaded.items() if isinstance(a, cls)}

    def _find(self, cls: type[A], aggregate_id: str, what: str) -> A:
        """Load an aggregate addressed in the path (404 when unknown)."""
        aggregate = self._get(cls, aggregate_id)
        if aggregate is None:
            raise NotFound(f"no {what} with id {aggregate_id!r}")
        return aggregate

    def _refer(self, cls: type[A], aggregate_id: str, field: str, what: str,
               among: Mapping[str, A] | None = None) -> A:
        """Load an aggregate named in a request body (422 naming the field when unknown), or
        take it from `among`, the aggregates a batch loaded at once (`_get_many`)."""
        if not aggregate_id:
            aggregate = None
        elif among is not None:
            aggregate = among.get(aggregate_id)
        else:
            aggregate = self._get(cls, aggregate_id)
        if aggregate is None:
            raise UnknownReference(f"no {what} with id {aggregate_id!r}", field)
        return aggregate

    # -- catalogue --------------------------------------------------------------------------

    def ensure_catalogue(self) -> int:
        """Load the program catalogue into the store once; returns the head position."""

        def attempt() -> int:
            if self._get(_Catalogue, _Catalogue.ID) is not None:
                return self.head()
            programs = [
                {"code": p.code, "category": p.category.value, "name_zh": p.name_zh,
                 "name_en": p.name_en, "responsible": list(p.responsible)}
                for p in PROGRAMS.values()
            ]
            loaded = _Catalogue(programs=programs, id=_Catalogue.ID,  # type: ignore[call-arg]
                                **Origin(SYSTEM, "init").meta())
            return self._save(loaded)

        return self._retrying(attempt)


class Recognised(Exception):
    """A keyed request sent again: what it registered the first time (its id, the position of
    its first event). Raised from inside the use case, which saves nothing; `keyed` returns it."""

    def __init__(self, registered_id: str, position: int) -> None:
        super().__init__(registered_id)
        self.id = registered_id
        self.position = position


# The kinds of ids a keyed registration draws (units, volunteers, activities: ids.new_id).
REGISTERED_KINDS = ("unit", "vol", "act")
# What a request does not choose: when and by whom it was recorded, the number it was issued.
_NOT_CONTENT = frozenset({"timestamp", "actor", "source", "volunteer_number"})


def _content(registered: Any) -> dict[str, Any]:
    """What a registration's first event says about what was asked for (instants compare as
    instants, whatever their offsets)."""
    return {k: v for k, v in vars(registered).items() if k not in _NOT_CONTENT}


def check_version(aggregate: LedgerAggregate, kind: str, expected: int | None,
                  seen: list[int] | None) -> None:
    """Refuse to change `aggregate` if it is not at the version the client named (`expected`,
    from If-Match), or if it moved since an earlier attempt of the same request read it
    (`seen`): an attempt is retried when another write won the race, and a write that won on
    this very thing was made by a client who did not know this change was coming. `seen`
    None: a change that other writes to the aggregate do not contradict (a volunteer's
    personal data, while sessions are booked on their calendar)."""
    if expected is not None and aggregate.version != expected:
        raise VersionMismatch(
            f"{kind} {aggregate.id} is at version {aggregate.version}, not {expected}: it was "
            "changed since; read it again", "If-Match")
    if seen is None:
        return
    if not seen:
        seen.append(aggregate.version)
    elif seen[0] != aggregate.version:
        raise ConcurrentChange(
            f"{kind} {aggregate.id} was changed by another request while this one was being "
            f"written (version {seen[0]} -> {aggregate.version}); read it again")


def check_program(code: str) -> str:
    if code not in PROGRAMS:
        raise InvalidField(f"program_code {code!r} is not one of A1…A4, B1…B8, C1…C4",
                           "program_code")
    return code


def open_unit(unit: Any, field: str) -> None:
    if not unit.is_open:
        raise ClosedReference(f"unit {unit.id} was closed on {unit.closed_on}", field)
