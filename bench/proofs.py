"""Audit proofs (RFC 9162) and full log verification, beside a primary-key read and a raw hash."""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.events import timed_scan
from ledger import Ledger, Settings


def proofs(url: str, count: int = 1000) -> dict[str, Any]:
    """Inclusion and consistency proofs made and checked; `vledger verify` over the whole log."""
    from projections.audit import Auditor
    from projections.merkle import verify_consistency, verify_inclusion
    from projections.models import ReadModels, auditor_views
    from projections.signing import SigningKey
    from projections.verification import verify_log

    ledger = Ledger(Settings(database_url=url))
    models = ReadModels(ledger, extra=auditor_views())
    try:
        models.catch_up()
        with tempfile.TemporaryDirectory() as folder:
            key = SigningKey.load(Path(folder) / "bench-signing.key")
        auditor = Auditor(models.store, key)
        size = auditor.size()
        rng = random.Random(0)
        with models.store.reading() as cur:
            positions = [int(p) for (p,) in cur.execute(
                "SELECT position FROM audit_leaves WHERE leaf_index < ?", (size,)).fetchall()]
        chosen = rng.sample(positions, min(count, len(positions)))
        pairs = [tuple(sorted(rng.sample(range(1, size + 1), 2))) for _ in range(count)]
        root = {n: auditor.root(n) for n in {size, *(a for a, _ in pairs)}}

        began = time.perf_counter()
        made = [auditor.inclusion(p, size) for p in chosen]
        inclusion_s = time.perf_counter() - began
        began = time.perf_counter()
        ok = all(verify_inclusion(bytes.fromhex(m["leaf_hash"]), m["leaf_index"], size,
                                  [bytes.fromhex(h) for h in m["hashes"]], root[size])
                 for m in made)
        check_inclusion_s = time.perf_counter() - began
        began = time.perf_counter()
        shown = [auditor.consistency(a, b) for a, b in pairs]
        consistency_s = time.perf_counter() - began
        to_head = [(a, auditor.consistency(a, size)["hashes"]) for a, _ in pairs]
        began = time.perf_counter()
        ok = ok and all(verify_consistency(a, size, root[a], root[size],
                                           [bytes.fromhex(h) for h in hashes])
                        for a, hashes in to_head)
        check_consistency_s = time.perf_counter() - began
        began = time.perf_counter()
        for p in chosen:
            ledger.recorder.select_notifications(p, 1)
        pk_read_s = time.perf_counter() - began
        report = verify_log(ledger.recorder, auditor, key.public_key_pem())
    finally:
        models.close()
        ledger.close()
    return {"tree_size": size, "proofs": len(chosen), "all_verified": ok and report.ok,
            "consistency_shown": len(shown),
            "inclusion_per_s": round(len(chosen) / inclusion_s, 1),
            "consistency_per_s": round(len(pairs) / consistency_s, 1),
            "verify_inclusion_per_s": round(len(made) / check_inclusion_s, 1),
            "verify_consistency_per_s": round(len(pairs) / check_consistency_s, 1),
            "pk_read_per_s": round(len(chosen) / pk_read_s, 1),
            "verify_log_s": round(report.seconds, 2),
            "verify_log_events_per_s": round(report.events_per_second, 1)}


def raw_hash(url: str) -> dict[str, Any]:
    """Read every stored event and SHA-256 its bytes: a log check with no tree at all."""
    count, seconds = timed_scan(url, lambda n: hashlib.sha256(b"\x00" + bytes(n.state)).digest())
    return {"events": count, "hash_s": round(seconds, 2), "events_per_s": round(count / seconds, 1)}
