"""The log's Ed25519 signing key and the signed checkpoint message.

The key file (PKCS#8 PEM, unencrypted) is `VLEDGER_SIGNING_KEY_FILE` when set, else
`signing-key.pem` next to the SQLite file, else `./var/signing-key.pem` (PostgreSQL). It is
generated on first use with mode 0600; beside it, `<key file>.checkpoint` keeps the last
checkpoint this host signed or accepted (projections/checkpoint_file.py). `key_id` is the
first 16 hex digits of SHA-256 over the 32-byte raw public key. A checkpoint signs exactly
these ASCII bytes (each line ends in "\\n"):

    vledger-checkpoint
    {tree_size in decimal}
    {root_hash, 64 lowercase hex digits}
    {signed_at, RFC 3339 UTC, e.g. 2017-03-05T08:00:00+00:00}

and `signature` is the 64-byte Ed25519 signature in standard base64 (with padding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.settings import StoreLocation
from ledger.signingkey import (
    KEY_FILE_ENV,
    KEY_FILE_NAME,
    create_key_file,
    derive_key,
    key_path,
    load_private_key,
    raw_private,
)

__all__ = ["KEY_FILE_ENV", "KEY_FILE_NAME", "SigningKey", "checkpoint_message", "key_id_of",
           "key_path", "verify_checkpoint"]


def checkpoint_message(tree_size: int, root_hash: str, signed_at: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return f"vledger-checkpoint\n{tree_size}\n{root_hash}\n{signed_at}\n".encode("ascii")


def key_id_of(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class SigningKey:
    """The Ed25519 key that signs the log's checkpoints."""

    def __init__(self, private: Ed25519PrivateKey, path: Path | None = None) -> None:
        self.private = private
        self.public = private.public_key()
        self.key_id = key_id_of(self.public)
        self.path = path  # the key file it was read from: the checkpoint file lives beside it

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key file, creating it (mode 0600) when missing."""
        if not path.exists():
            create_key_file(path)
        return cls(load_private_key(path), path)

    @classmethod
    def for_store(cls, location: StoreLocation) -> SigningKey:
        """The key of a store, from the environment or next to it."""
        return cls.load(key_path(location))

    def public_key_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM, for publication."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def derived_secret(self, purpose: str) -> bytes:
        """A secret for another purpose (the API's list cursors), the same in every process
        that loads this key and telling nothing of it: HMAC-SHA256 of the purpose under it."""
        return hmac.new(raw_private(self.private), purpose.encode(), hashlib.sha256).digest()

    def derived_key(self, label: bytes) -> bytes:
        """A 32-byte key for one purpose (`label`, HKDF's info), from the private key by
        HKDF-SHA256: the same in every process that loads this key, telling nothing of it."""
        return derive_key(self.private, label)

    def sign(self, message: bytes) -> str:
        """An Ed25519 signature in base64."""
        return base64.b64encode(self.private.sign(message)).decode("ascii")


def verify_checkpoint(public_key_pem: str | bytes, checkpoint: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's signature and key id match a published public key."""
    pem = public_key_pem.encode("ascii") if isinstance(public_key_pem, str) else public_key_pem
    try:
        public = serialization.load_pem_public_key(pem)
        if not isinstance(public, Ed25519PublicKey):
            return False
        if checkpoint.get("key_id") != key_id_of(public):
            return False
        message = checkpoint_message(int(checkpoint["tree_size"]), str(checkpoint["root_hash"]),
                                     str(checkpoint["signed_at"]))
        public.verify(base64.b64decode(str(checkpoint["signature"]), validate=True), message)
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error,
            UnicodeEncodeError):
        return False
    return True
