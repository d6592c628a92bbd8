"""Which store each seal key belongs to, kept beside the signing key (bb41 F2).

Seals are made under a key derived from the signing key and the store's own random id
(ledger/eventseals.py), which is a row of the store: whoever runs the database can give a
second store (a staging schema under the same key, a copy of a backup) the id of the first,
write there with the key, and copy the sealed events across. So a process about to write
records, in `<key file>.stores` beside the key, which store holds which id, and refuses to
seal for a store whose id another store of this key file holds already, or whose id changed:

    {"format": "vledger-store-ids/1", "stores": {"<store>": "<id>"}}

`<store>` names where the store is (`store_name`: the SQLite file's absolute path, or the
PostgreSQL hosts, database and schema). The file is replaced whole under a lock on the key
file. It protects the stores that share one key file on one host (PostgreSQL's default key,
`./var/signing-key.pem`, serves every schema); a copy of the key on another host has a file
of its own, so a copy of a store must get a key of its own (README).
"""

from __future__ import annotations

import json
from pathlib import Path

from ledger.errors import StoreAltered
from ledger.files import locked, read_stores, replace_whole
from ledger.settings import ConfigurationError, StoreLocation

SUFFIX = ".stores"
FORMAT = "vledger-store-ids/1"


def store_name(location: StoreLocation) -> str:
    """The name a store goes by beside the key: where it is, without user or password."""
    if location.kind == "sqlite" and location.sqlite_path is not None:
        return f"sqlite:{location.sqlite_path.resolve()}"
    hosts = ",".join(f"{h}:{p}" for h, p in location.hosts)
    return f"postgresql://{hosts}/{location.dbname}?schema={location.schema}"


class StoreIds:
    """The store ids recorded beside one signing key."""

    def __init__(self, key_file: Path, location: StoreLocation) -> None:
        self.key_file = key_file
        self.path = key_file.with_name(key_file.name + SUFFIX)
        self.store = store_name(location)

    def claim(self, store_id: str) -> None:
        """Record `store_id` as this store's, or refuse: StoreAltered when another id was
        recorded for it (its row changed by hand), ConfigurationError when another store of
        this key holds the id (a copy, or an id copied by hand)."""
        with locked(self.key_file):  # never replaced, unlike the file beside it
            stores = self._load()
            mine = stores.get(self.store)
            if mine is not None and mine != store_id:
                raise StoreAltered("the event store", 0, (
                    f"its id is {store_id}, but {mine} was recorded for it beside the signing "
                    f"key ({self.path}): its id was changed by hand, or it was replaced by a "
                    "copy of another store; restore it from a backup"))
            other = next((name for name, held in stores.items()
                          if held == store_id and name != self.store), None)
            if other is not None:
                raise ConfigurationError(
                    f"this store ({self.store}) has the id of another store of the same "
                    f"signing key ({other}, recorded in {self.path}): it is a copy of that "
                    "store, or its id was copied by hand. Written under the same key, it could "
                    "make events that store accepts: give the copy a signing key of its own "
                    f"(VLEDGER_SIGNING_KEY_FILE), or, if the store was moved here, remove "
                    f"{other} from {self.path}")
            if mine is None:
                stores[self.store] = store_id
                replace_whole(self.path, (json.dumps({"format": FORMAT, "stores": stores},
                                                     indent=2, sort_keys=True) + "\n"
                                          ).encode("utf-8"), ".stores-")

    def _load(self) -> dict[str, str]:
        try:
            stores = read_stores(self.path, FORMAT) or {}
            if not all(isinstance(v, str) for v in stores.values()):
                raise ValueError("an id that is not text")
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ConfigurationError(
                f"the store ids beside the signing key ({self.path}) cannot be read ({error}): "
                "restore the file from a backup of the key's folder") from None
        return dict(stores)


__all__ = ["StoreIds", "store_name"]
