"""RFC 6962 / RFC 9162 Merkle trees with inclusion proofs.

leaf hash  = SHA-256(0x00 || leaf)
node hash  = SHA-256(0x01 || left || right)
empty tree = SHA-256("")

The tree over n leaves splits at k, the largest power of two smaller than n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


def _largest_pow2_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle tree hash given leaf *hashes* (bottom-up, equal to RFC 6962's MTH)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    level = list(hashes)
    # Bottom-up pairing with an odd last node promoted unchanged gives exactly
    # the RFC 6962 shape (left subtrees are always perfect).
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    return root_of_hashes([leaf_hash(x) for x in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) from RFC 6962 §2.1.1, leaf-to-root order."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} not in a tree of {n}")
    hashes = [leaf_hash(x) for x in leaves]
    return _path(index, hashes)


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = _largest_pow2_below(n)
    if m < k:
        return [*_path(m, hashes[:k]), root_of_hashes(hashes[k:])]
    return [*_path(m - k, hashes[k:]), root_of_hashes(hashes[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2 inclusion proof verification."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if len(p) != 32 or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
