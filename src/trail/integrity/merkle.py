"""Merkle trees as RFC 6962 (Certificate Transparency) defines them.

Leaves are event hashes (hex SHA-256) in the checkpoint's order. ``MTH`` of an empty list is
SHA-256 of nothing; a leaf is ``SHA-256(0x00 || leaf)``; a node is ``SHA-256(0x01 || l || r)``,
splitting at the largest power of two smaller than the number of leaves. The domain
separation byte stops a leaf from being passed off as a node.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256


def leaf_hash(event_hash_hex: str) -> bytes:
    return sha256(b"\x00" + bytes.fromhex(event_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """The tree head over already-hashed leaves (iterative, O(n) memory once)."""
    if not leaves:
        return sha256(b"").digest()
    level = list(leaves)
    # Bottom-up pairing gives the same root as RFC 6962's recursive split: an odd node at the
    # end of a level is carried up unchanged.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(event_hashes: Sequence[str]) -> str:
    """Hex tree head over event hashes (hex)."""
    return root_of_leaves([leaf_hash(h) for h in event_hashes]).hex()


def inclusion_path(index: int, event_hashes: Sequence[str]) -> list[str]:
    """The audit path (hex node hashes, bottom-up) proving leaf ``index`` (RFC 6962 §2.1.1)."""
    if not 0 <= index < len(event_hashes):
        raise IndexError("leaf index outside the tree")
    leaves = [leaf_hash(h) for h in event_hashes]
    path: list[bytes] = []
    _path(index, leaves, path)
    return [p.hex() for p in path]


def _path(m: int, leaves: list[bytes], out: list[bytes]) -> None:
    n = len(leaves)
    if n <= 1:
        return
    k = _split(n)
    if m < k:
        _path(m, leaves[:k], out)
        out.append(root_of_leaves(leaves[k:]))
    else:
        _path(m - k, leaves[k:], out)
        out.append(root_of_leaves(leaves[:k]))


def verify_inclusion(event_hash_hex: str, index: int, size: int, path: Sequence[str], root_hex: str) -> bool:
    """Check an audit path against a tree head (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    try:
        node = leaf_hash(event_hash_hex)
        nodes = [bytes.fromhex(p) for p in path]
    except ValueError:
        return False
    fn, sn = index, size - 1
    for p in nodes:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(p, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = node_hash(node, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and node.hex() == root_hex


class MerkleBuilder:
    """The same tree head, computed leaf by leaf in O(log n) memory (a stack of perfect subtrees)."""

    __slots__ = ("_stack", "count")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, event_hash_hex: str) -> None:
        size, node = 1, leaf_hash(event_hash_hex)
        stack = self._stack
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            node = node_hash(left, node)
            size <<= 1
        stack.append((size, node))
        self.count += 1

    def root(self) -> str:
        if not self._stack:
            return sha256(b"").hexdigest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node.hex()
