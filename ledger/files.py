"""Secret files (the checkpoint signing key, the KEKs): written privately, put in place whole."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
