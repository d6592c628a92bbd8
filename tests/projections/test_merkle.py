"""RFC 9162 Merkle trees: roots, audit paths and consistency proofs against known answers."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.merkle import (
    Frontier,
    consistency_proof,
    inclusion_path,
    leaf_hash,
    recompute_root,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

# The reference leaves and roots of the Certificate Transparency test suite (RFC 6962 hashing,
# unchanged in RFC 9162).
CT_LEAVES = [bytes.fromhex(x) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PROOFS = {  # (m, n): PROOF(m, D[n])
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
N = 20
LEAVES = [f"leaf {i}".encode() for i in range(N)]


# -- RFC 9162 section 2.1, written the straightforward recursive way ---------------------------

def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def nodes_of(d: list[bytes]):  # type: ignore[no-untyped-def]
    """A node getter over leaf inputs, as the audit log's tables answer it."""
    return lambda level, index: mth(d[index << level:(index + 1) << level])


# -- known answers --------------------------------------------------------------------------

def test_the_reference_implementation_gives_the_ct_roots() -> None:
    assert [mth(CT_LEAVES[:n]).hex() for n in range(1, 9)] == CT_ROOTS


def test_roots_match_the_ct_vectors() -> None:
    for n in range(1, 9):
        assert recompute_root(leaf_hash(x) for x in CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]


def test_consistency_proofs_match_the_ct_vectors() -> None:
    node = nodes_of(CT_LEAVES)
    for (m, n), expected in CT_PROOFS.items():
        assert [h.hex() for h in consistency_proof(node, m, n)] == expected


def test_the_empty_tree_has_the_hash_of_nothing_as_root() -> None:
    assert recompute_root([]) == hashlib.sha256(b"").digest()


# -- every size up to N ---------------------------------------------------------------------

@pytest.mark.parametrize("n", range(1, N + 1))
def test_roots_of_every_size_match_the_reference(n: int) -> None:
    assert subtree_root(nodes_of(LEAVES), 0, n) == mth(LEAVES[:n])
    assert recompute_root(leaf_hash(x) for x in LEAVES[:n]) == mth(LEAVES[:n])


@pytest.mark.parametrize("n", range(1, N + 1))
def test_audit_paths_match_the_reference_and_verify(n: int) -> None:
    root = mth(LEAVES[:n])
    for m in range(n):
        proof = inclusion_path(nodes_of(LEAVES), m, n)
        assert proof == path(m, LEAVES[:n])
        assert verify_inclusion(leaf_hash(LEAVES[m]), m, n, proof, root)


@pytest.mark.parametrize("n", range(1, N + 1))
def test_consistency_proofs_match_the_reference_and_verify(n: int) -> None:
    for m in range(1, n + 1):
        proof = consistency_proof(nodes_of(LEAVES), m, n)
        assert proof == subproof(m, LEAVES[:n], True)
        assert verify_consistency(m, n, mth(LEAVES[:m]), mth(LEAVES[:n]), proof)


@pytest.mark.parametrize("n", range(2, N + 1))
def test_an_audit_path_fails_for_another_leaf_index_or_a_changed_hash(n: int) -> None:
    root = mth(LEAVES[:n])
    for m in range(n):
        proof = path(m, LEAVES[:n])
        assert not verify_inclusion(leaf_hash(LEAVES[m]), (m + 1) % n, n, proof, root)
        assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, root)
        bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        assert not verify_inclusion(leaf_hash(LEAVES[m]), m, n, bent, root)
        assert not verify_inclusion(leaf_hash(LEAVES[m]), m, n, [*proof, proof[0]], root)


@pytest.mark.parametrize("n", range(2, N + 1))
def test_a_consistency_proof_fails_for_a_rewritten_history(n: int) -> None:
    forged = [b"rewritten", *LEAVES[1:n]]
    for m in range(1, n):
        proof = subproof(m, LEAVES[:n], True)
        assert not verify_consistency(m, n, mth(forged[:m]), mth(LEAVES[:n]), proof)
        assert not verify_consistency(m, n, mth(LEAVES[:m]), mth(forged), proof)
        assert not verify_consistency(m, n, mth(LEAVES[:m]), mth(LEAVES[:n]), proof[:-1])


def test_out_of_range_proofs_never_verify() -> None:
    root = mth(LEAVES[:4])
    assert not verify_inclusion(leaf_hash(LEAVES[0]), 4, 4, path(0, LEAVES[:4]), root)
    assert not verify_consistency(0, 4, mth([]), root, [])
    assert not verify_consistency(5, 4, root, root, [])
    assert verify_consistency(4, 4, root, root, [])
    assert not verify_consistency(4, 4, root, root, [root])


def test_a_frontier_reports_every_completed_block_once() -> None:
    frontier = Frontier()
    done = [block for x in LEAVES for block in frontier.append(leaf_hash(x))]
    expected = [(lv, i) for lv in range(1, 5) for i in range(N >> lv)]
    assert sorted((lv, i) for lv, i, _ in done) == expected
    assert all(h == mth(LEAVES[i << lv:(i + 1) << lv]) for lv, i, h in done)
    assert frontier.root() == mth(LEAVES)


@given(st.lists(st.integers(0, 40), max_size=8), st.integers(0, 70))
@settings(max_examples=150, deadline=None)
def test_extending_by_chunks_builds_the_tree_appending_builds(chunks: list[int],
                                                              start: int) -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(start + sum(chunks))]
    one, many = Frontier(), Frontier()
    by_one = [n for h in hashes[:start] for n in one.append(h)]
    by_many = many.extend(hashes[:start])
    assert sorted(by_many) == sorted(by_one) and many.stack == one.stack
    at = start
    for size in chunks:  # resumed from the stored blocks, as the audit view resumes a page
        many = Frontier(many.stack)
        by_one = [n for h in hashes[at:at + size] for n in one.append(h)]
        assert sorted(many.extend(hashes[at:at + size])) == sorted(by_one)
        assert (many.stack, many.size, many.root()) == (one.stack, one.size, one.root())
        at += size
