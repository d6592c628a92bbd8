"""The last checkpoint this host signed or accepted, kept in a file beside the signing key.

The store keeps the checkpoint it last published (`audit_published`), but whoever runs the
database can delete that row, rebuild the audit log over changed events, and have the server
sign and publish the changed history as if nothing had been published (bb38 F11). This file
is where the key is, out of their reach: `<key file>.checkpoint` (`signing-key.pem.checkpoint`
by default), mode 0600, JSON:

    {"format": "vledger-kept-checkpoints/1",
     "stores": {"<store>": {"tree_size": 98000, "root_hash": "…", "signed_at": "…",
                            "signature": "…", "key_id": "…"}}}

one checkpoint per store the key signs for (`<store>`: `sqlite:<absolute path>`, or
`postgresql://<hosts>/<dbname>?schema=<schema>`: PostgreSQL's default key, `./var/…`, may
serve several schemas), each with the fields `GET /v1/audit/checkpoint` answers. A store that
holds no published checkpoint, or an older one, while this file holds one is refused as
altered (projections/audit.py `Auditor.check_published`), and so is a tree that does not
extend it.

The processes of one deployment on one host share the file: it is replaced whole (a private
temporary file renamed into place) under an exclusive lock on the key file, and a store's
checkpoint is never replaced by one of a smaller tree. An outside auditor, who holds the
public key only, has no such file, and `vledger verify` works without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ledger.errors import AuditLogAltered
from ledger.files import locked, read_stores, replace_whole
from ledger.settings import StoreLocation
from ledger.storeids import store_name

SUFFIX = ".checkpoint"
FORMAT = "vledger-kept-checkpoints/1"
FIELDS = ("tree_size", "root_hash", "signed_at", "signature", "key_id")


class CheckpointFile:
    """One store's entry in the checkpoint file beside a signing key."""

    def __init__(self, key_file: Path, location: StoreLocation) -> None:
        self.key_file = key_file
        self.path = key_file.with_name(key_file.name + SUFFIX)
        self.store = store_name(location)

    def read(self) -> dict[str, Any] | None:
        """The checkpoint kept for the store, if any (AuditLogAltered when the file cannot be
        read: it was written by no process of ours)."""
        checkpoint = self._load().get("stores", {}).get(self.store)
        return None if checkpoint is None else dict(checkpoint)

    def keep(self, checkpoint: Mapping[str, Any]) -> None:
        """Keep `checkpoint` as the store's, unless one of as large a tree is kept already."""
        fields = {f: checkpoint[f] for f in FIELDS}
        with locked(self.key_file):  # never replaced, unlike the checkpoint file
            held = self._load()
            stores = held.setdefault("stores", {})
            old = stores.get(self.store)
            if old is not None and int(old["tree_size"]) >= int(fields["tree_size"]):
                return  # another process kept a later one: never back to a smaller tree
            stores[self.store] = fields
            held["format"] = FORMAT
            data = (json.dumps(held, indent=2, sort_keys=True) + "\n").encode("utf-8")
            replace_whole(self.path, data, ".checkpoint-")
            _sync_directory(self.path.parent)

    def _load(self) -> dict[str, Any]:
        try:
            stores = read_stores(self.path, FORMAT)
            if stores is None:
                return {}
            for checkpoint in stores.values():
                missing = [f for f in FIELDS if f not in checkpoint]
                if missing or isinstance(checkpoint["tree_size"], bool) or not isinstance(
                        checkpoint["tree_size"], int):
                    raise ValueError(f"a checkpoint without a valid {(missing or FIELDS)[0]}")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise AuditLogAltered(
                f"the checkpoint file beside the signing key ({self.path}) cannot be read "
                f"({error}): it was changed by hand; restore it from a backup of the key "
                "file's folder") from None
        return {"format": FORMAT, "stores": stores}


def _sync_directory(directory: Path) -> None:
    """The rename on disk, as the published row is before anyone is answered with it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
