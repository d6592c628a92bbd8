"""The log's signing key: where it lives, how it is created, what a checkpoint signs."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import StoreLocation
from projections.signing import SigningKey, checkpoint_message, key_path, verify_checkpoint

ROOT = "ab" * 32


def signed(key: SigningKey, size: int = 7, root: str = ROOT) -> dict[str, object]:
    at = "2017-03-05T08:00:00+00:00"
    return {"tree_size": size, "root_hash": root, "key_id": key.key_id, "signed_at": at,
            "signature": key.sign(checkpoint_message(size, root, at))}


def test_the_key_file_is_created_private_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "var" / "signing-key.pem"
    key = SigningKey.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).key_id == key.key_id


def test_the_key_id_is_the_start_of_the_public_keys_sha256(tmp_path: Path) -> None:
    key = SigningKey.load(tmp_path / "k.pem")
    public = serialization.load_pem_public_key(key.public_key_pem().encode())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_the_key_lives_next_to_the_sqlite_file_unless_the_environment_says_otherwise() -> None:
    sqlite = StoreLocation.parse("sqlite:////srv/ledger/ledger.db")
    postgres = StoreLocation.parse("postgresql://postgres@127.0.0.1/test")
    assert key_path(sqlite, env={}) == Path("/srv/ledger/signing-key.pem")
    assert key_path(postgres, env={}) == Path("var/signing-key.pem")
    assert key_path(sqlite, env={"VLEDGER_SIGNING_KEY_FILE": "/k.pem"}) == Path("/k.pem")


def test_the_signature_covers_the_documented_message(tmp_path: Path) -> None:
    key = SigningKey.load(tmp_path / "k.pem")
    checkpoint = signed(key)
    message = f"vledger-checkpoint\n7\n{ROOT}\n2017-03-05T08:00:00+00:00\n".encode()
    key.public.verify(base64.b64decode(str(checkpoint["signature"])), message)
    assert verify_checkpoint(key.public_key_pem(), checkpoint)


@pytest.mark.parametrize("field,value", [
    ("tree_size", 8), ("root_hash", "cd" * 32), ("signed_at", "2018-01-01T00:00:00+00:00"),
    ("key_id", "0" * 16), ("signature", "not base64!"),
])
def test_a_changed_checkpoint_does_not_verify(tmp_path: Path, field: str, value: object) -> None:
    key = SigningKey.load(tmp_path / "k.pem")
    checkpoint = {**signed(key), field: value}
    assert not verify_checkpoint(key.public_key_pem(), checkpoint)


def test_another_keys_checkpoint_does_not_verify(tmp_path: Path) -> None:
    mine, theirs = SigningKey.load(tmp_path / "a.pem"), SigningKey.load(tmp_path / "b.pem")
    assert not verify_checkpoint(mine.public_key_pem(), signed(theirs))
    assert not verify_checkpoint("not a key", signed(mine))
