"""Secret files (the checkpoint signing key, the KEKs): written privately, put in place whole."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def private_temp(directory: Path, data: bytes, prefix: str) -> str:
    """A new file holding `data` in `directory`, mode 0600 from the start and synced to disk;
    its path, for the caller to link or rename into place."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return tmp


def create_once(path: Path, data: bytes, prefix: str) -> None:
    """Create `path` holding `data`, unless it exists: written to a private temporary file,
    then linked into place, so that a concurrent first use either wins the link or later
    reads the winner's complete file, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_temp(path.parent, data, prefix)
    try:
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def replace_whole(path: Path, data: bytes, prefix: str) -> None:
    """Replace `path` with `data`: written to a private temporary file, then renamed over
    it, so readers see the old file or the new one, never half of one."""
    tmp = private_temp(path.parent, data, prefix)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (a file that is never replaced: the signing key), held by
    the processes of one host that rewrite a file beside it."""
    import fcntl

    with open(path, "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_stores(path: Path, form: str) -> dict[str, Any] | None:
    """The `stores` member of a JSON file of that `format` kept beside the signing key (the
    kept checkpoints, the store ids); None when there is no file, ValueError (or TypeError,
    KeyError) when it is not such a file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    held = json.loads(text)
    stores = held["stores"]
    if held.get("format") != form or not isinstance(stores, dict):
        raise ValueError(f"not a {form} file")
    return dict(stores)
