"""The key-encryption keys (KEKs) that wrap the keys of sealed numbers, kept in a file outside
the database (bb21 F3: the keys sat in plain beside the events, so a backup taken before an
erasure, or whoever runs the database, could open every number).

Each row of `personal_keys` holds its data key wrapped (AES-256-GCM, a random 12-byte nonce,
the row's key id as associated data: 60 bytes) under a KEK, and the KEK's id; `personal_keks`
lists the KEK ids the store accepts, one marked current, and `personal_keys.kek_id` refers to
it (ledger/keytable.py). The KEKs themselves are only on disk and in the memory of the
processes that use them.

The KEK file is `VLEDGER_KEK_FILE` when set, else beside the signing key's default place: next
to the SQLite file as `<file name>.kek` (`var/ledger.db.kek`), or `./var/<db>.<schema>.kek` for
PostgreSQL, named per store so that a rotation of one store never removes a KEK another still
uses. It is text, mode 0600, one KEK a line, oldest first:

    <kek id> <the 32-byte key in standard base64>

A KEK id is derived from the key: the first 16 hex digits of its SHA-256, so a line whose key
does not match its id is refused rather than used. The file holds one line, or two for the
moment of a rotation (`vledger keys rotate`: ledger/keyrotation.py). It is created on first use
as the signing key is (a private temporary file linked into place: concurrent first uses agree)
and rewritten by a rotation through a temporary file renamed over it (readers see the old file
or the new one, never half of one).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import IntegrityError

from ledger.files import create_once, private_temp
from ledger.settings import ConfigurationError, StoreLocation

KEK_FILE_ENV = "VLEDGER_KEK_FILE"
_NONCE_BYTES = 12
_HEADER = ("# vledger key-encryption keys: one '<kek id> <key, base64>' a line. Keep this file "
           "off the database host and out of database backups.\n")

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: rotations exclude each other per host
    fcntl = None  # type: ignore[assignment]


class KekMissing(ConfigurationError):
    """The store holds keys wrapped under a KEK the KEK file does not hold: every number they
    seal would read as erased, so the ledger does not start (nor make a new KEK)."""


class KekRetired(IntegrityError):
    """A write's keys were wrapped under a KEK a rotation has deleted meanwhile: nothing of the
    write was stored, and it runs again (as after a lost race) under the current KEK."""


def kek_id_of(kek: bytes) -> str:
    """First 16 hex digits of SHA-256 of the key."""
    return hashlib.sha256(kek).hexdigest()[:16]


def kek_path(location: StoreLocation, setting: Path | None = None) -> Path:
    """Where a store's KEK file lives (`setting`: VLEDGER_KEK_FILE)."""
    if setting is not None:
        return setting
    if location.kind == "sqlite" and location.sqlite_path is not None:
        return location.sqlite_path.with_name(location.sqlite_path.name + ".kek")
    return Path("var") / f"{location.dbname}.{location.schema}.kek"


class KekFile:
    """The KEK file: read, created on first use, rewritten by a rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, bytes]:
        """The KEKs by id, oldest first ({} when there is no file)."""
        try:
            text = self.path.read_text("ascii")
        except FileNotFoundError:
            return {}
        keks: dict[str, bytes] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                kek_id, encoded = line.split()
                kek = base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error):
                raise ConfigurationError(f"KEK file {self.path}, line {number}: not "
                                         "'<kek id> <key, base64>'") from None
            if len(kek) != 32 or kek_id_of(kek) != kek_id:
                raise ConfigurationError(f"KEK file {self.path}, line {number}: the key is not "
                                         f"the 32-byte key of KEK {kek_id}")
            keks[kek_id] = kek
        return keks

    def create(self) -> dict[str, bytes]:
        """A file with one new KEK, unless another process made one first: the file's KEKs."""
        create_once(self.path, _text(_new()), ".kek-")
        return self.read()

    def add(self) -> str:
        """Append a new KEK (the file is replaced whole); its id."""
        new = _new()
        self._replace({**self.read(), **new})
        return next(iter(new))

    def keep_only(self, kek_id: str) -> None:
        """Drop every KEK but one from the file."""
        keks = self.read()
        self._replace({kek_id: keks[kek_id]})

    def _replace(self, keks: Mapping[str, bytes]) -> None:
        tmp = private_temp(self.path.parent, _text(keks), ".kek-")
        try:
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename survives a crash once the dir is synced
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclude other rotations and starts on this host (`<file>.lock`, flock); PostgreSQL
        stores add an advisory lock for other hosts (ledger/keytable.py)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


def _text(keks: Mapping[str, bytes]) -> bytes:
    """The KEK file's bytes: its header, then one '<kek id> <key, base64>' line a KEK."""
    return (_HEADER + "".join(f"{i} {base64.b64encode(k).decode()}\n"
                              for i, k in keks.items())).encode("ascii")


def _new() -> dict[str, bytes]:
    kek = AESGCM.generate_key(bit_length=256)
    return {kek_id_of(kek): kek}


class KeyRing:
    """The KEKs one process uses: the current one wraps new keys, any the file holds unwrap.

    `current_of` reads which KEK the store marks current; the ring asks it again only after a
    write was refused (`stale`), which is how a server learns of a rotation done elsewhere: its
    first write after it names a deleted KEK, is refused inside its transaction, and is tried
    again under the new one. A KEK the ring does not hold yet is read from the file by id."""

    def __init__(self, path: Path, current_of: Callable[[], str | None]) -> None:
        self.file = KekFile(path)
        self._current_of = current_of
        self._keks: dict[str, AESGCM] = {}
        self._current: str | None = None
        self._lock = threading.Lock()
        self.stale = True

    @property
    def path(self) -> Path:
        return self.file.path

    def current(self) -> str:
        """The id of the KEK that wraps new keys."""
        if self.stale or self._current is None:
            with self._lock:
                current = self._current_of()
                if current is None:
                    raise KekMissing("the store names no current KEK; restart the ledger, "
                                     "which registers one")
                self.kek(current)
                self._current, self.stale = current, False
        assert self._current is not None
        return self._current

    def kek(self, kek_id: str) -> AESGCM:
        """A KEK by id, read from the file the first time (KekMissing if the file lacks it)."""
        found = self._keks.get(kek_id)
        if found is None:
            on_disk = self.file.read()
            if kek_id not in on_disk:
                raise KekMissing(f"the KEK file {self.path} does not hold KEK {kek_id}, which "
                                 "wraps keys of personal data in the store (set "
                                 f"{KEK_FILE_ENV} to the file that does)")
            self._keks.update({i: AESGCM(k) for i, k in on_disk.items() if i not in self._keks})
            found = self._keks[kek_id]
        return found

    def wrap(self, key_id: str, key: bytes, kek_id: str | None = None) -> tuple[str, bytes]:
        """A data key wrapped under the current KEK (or `kek_id`): that KEK's id, the bytes."""
        kek_id = kek_id or self.current()
        nonce = os.urandom(_NONCE_BYTES)
        return kek_id, nonce + self.kek(kek_id).encrypt(nonce, key, key_id.encode())

    def unwrap(self, key_id: str, kek_id: str | None, wrapped: bytes) -> bytes:
        """A stored data key in plain (one written by a ledger older than KEKs, in plain, as
        it is: a start wraps those, but an older process may still write some)."""
        if kek_id is None:
            return wrapped
        return self.kek(kek_id).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:],
                                        key_id.encode())
