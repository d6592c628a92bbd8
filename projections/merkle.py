"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashes, proofs and their verification.

Hashing (RFC 9162 section 2.1.1): `leaf_hash = SHA-256(0x00 || leaf)`,
`node_hash = SHA-256(0x01 || left || right)`, and the root of the empty tree is `SHA-256()`.
The proof builders take a `NodeGetter`: `(level, index) -> hash` of the complete subtree over
leaves `[index * 2**level, (index + 1) * 2**level)` (level 0 is a leaf hash). Every subtree an
RFC 9162 proof or root needs is a complete aligned block or splits into them, so a store that
keeps the hashes of complete blocks answers any tree size with O(log² n) lookups.
The verifiers are plain functions of their arguments: an auditor runs them without the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

NodeGetter = Callable[[int, int], bytes]
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(node: NodeGetter, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that starts on a boundary of its own size's block."""
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_root(node, start, start + k), subtree_root(node, start + k, end))


def inclusion_path(node: NodeGetter, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, leaf side first."""
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            path.append(subtree_root(node, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(node: NodeGetter, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]) of RFC 9162 section 2.1.4.1 (empty when first == second)."""
    proof: list[bytes] = []
    start, end, whole = 0, second, True
    while first != end:
        k = _split(end - start)
        if first - start <= k:
            proof.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(node, start, start + k))
            start, whole = start + k, False
    if not whole:
        proof.append(subtree_root(node, start, end))
    proof.reverse()
    return proof


class Frontier:
    """The complete subtrees on the right edge of a growing tree: appends and roots in O(log n)."""

    def __init__(self, blocks: Iterable[tuple[int, int, bytes]] = ()) -> None:
        self.stack: list[tuple[int, int, bytes]] = list(blocks)  # (level, index, hash)
        self.size = sum(1 << level for level, _, _ in self.stack)

    @staticmethod
    def blocks(size: int) -> list[tuple[int, int]]:
        """The (level, index) of the complete subtrees a tree of `size` leaves decomposes into."""
        out, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the inner nodes (level >= 1) it completed."""
        self.stack.append((0, self.size, leaf))
        self.size += 1
        done: list[tuple[int, int, bytes]] = []
        while len(self.stack) > 1 and self.stack[-1][0] == self.stack[-2][0]:
            right, left = self.stack.pop(), self.stack.pop()
            merged = (left[0] + 1, left[1] >> 1, node_hash(left[2], right[2]))
            self.stack.append(merged)
            done.append(merged)
        return done

    def extend(self, leaves: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Add many leaf hashes; returns the inner nodes they completed, level by level.

        The same tree as `append` for each leaf, built a level at a time: at each level the
        frontier's waiting left block (if any) and the new complete blocks pair off in order
        (the row always starts at an even index), and an odd last block waits in the frontier.
        The audit view builds with this; `vledger verify` recomputes with `append`, so the
        stored tree is checked by a second construction, not by the one that made it.
        """
        old, new = self.size, self.size + len(leaves)
        waiting = {level: h for level, _, h in self.stack}
        done: list[tuple[int, int, bytes]] = []
        stack: list[tuple[int, int, bytes]] = []
        row, level = list(leaves), 0
        while new >> level:
            if old >> level & 1:
                row.insert(0, waiting[level])
            first = (old >> (level + 1)) << 1  # the index of row[0] at this level
            if len(row) & 1:
                stack.append((level, first + len(row) - 1, row.pop()))
            up = [node_hash(left, right) for left, right in zip(row[0::2], row[1::2], strict=True)]
            done.extend((level + 1, (first >> 1) + i, h) for i, h in enumerate(up))
            row, level = up, level + 1
        stack.reverse()
        self.stack, self.size = stack, new
        return done

    def root(self) -> bytes:
        """MTH of the leaves appended so far."""
        if not self.stack:
            return EMPTY_ROOT
        root = self.stack[-1][2]
        for _, _, left in reversed(self.stack[:-1]):
            root = node_hash(left, root)
        return root


def recompute_root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH over a sequence of leaf hashes (RFC 9162 section 2.1.1)."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


def verify_inclusion(leaf_hash: bytes, leaf_index: int, tree_size: int,
                     hashes: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2: whether `hashes` prove the leaf is in the tree with `root`."""
    if not 0 <= leaf_index < tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in hashes:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       hashes: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2: whether `hashes` prove tree `first` is a prefix of `second`."""
    if first < 1 or first > second:
        return False
    if first == second:
        return not hashes and first_root == second_root
    path = list(hashes)
    if not path:
        return False
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
