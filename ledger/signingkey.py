"""Where the store's signing key lives, and how keys for other purposes are derived from it.

The audit log signs its checkpoints with this Ed25519 key (projections/signing.py); the ledger
derives from it the key that seals every event it writes (ledger/eventseals.py), so both
read the same file. It is PKCS#8 PEM, unencrypted: `VLEDGER_SIGNING_KEY_FILE` when set, else
`signing-key.pem` next to the SQLite file, else `./var/signing-key.pem` (PostgreSQL). It is
generated on first use with mode 0600, and belongs off the database host and out of its
backups: whoever holds it can sign checkpoints and seal events.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.files import create_once
from ledger.settings import StoreLocation

KEY_FILE_ENV = "VLEDGER_SIGNING_KEY_FILE"
KEY_FILE_NAME = "signing-key.pem"


def key_path(location: StoreLocation, env: Mapping[str, str] | None = None) -> Path:
    """Where the signing key of a store lives."""
    env = os.environ if env is None else env
    if env.get(KEY_FILE_ENV):
        return Path(env[KEY_FILE_ENV])
    if location.kind == "sqlite" and location.sqlite_path is not None:
        return location.sqlite_path.parent / KEY_FILE_NAME
    return Path("var") / KEY_FILE_NAME


def create_key_file(path: Path) -> None:
    """A new private key at `path` (mode 0600), unless one is there: concurrent first uses
    agree on one key."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    create_once(path, pem, ".signing-key-")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in `path` (ValueError when it holds another kind of key)."""
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return loaded


def raw_private(private: Ed25519PrivateKey) -> bytes:
    """The 32 bytes of the private key."""
    return private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())


def derive_key(private: Ed25519PrivateKey, label: bytes) -> bytes:
    """A 32-byte key for one purpose (`label`, HKDF's info), from the private key by
    HKDF-SHA256: the same in every process that loads this key, telling nothing of it."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=label).derive(raw_private(private))
