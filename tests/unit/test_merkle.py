"""RFC 6962 Merkle trees: hand-computed small trees, proofs, tampering."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from medchain.storage.merkle import EMPTY_ROOT, inclusion_proof, merkle_root, verify_inclusion


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def L(x: bytes) -> bytes:
    return H(b"\x00" + x)


def N(a: bytes, b: bytes) -> bytes:
    return H(b"\x01" + a + b)


def test_hand_computed_roots() -> None:
    a, b, c, d, e = (bytes([i]) for i in range(5))
    assert merkle_root([]) == EMPTY_ROOT == H(b"")
    assert merkle_root([a]) == L(a)
    assert merkle_root([a, b]) == N(L(a), L(b))
    assert merkle_root([a, b, c]) == N(N(L(a), L(b)), L(c))
    assert merkle_root([a, b, c, d]) == N(N(L(a), L(b)), N(L(c), L(d)))
    assert merkle_root([a, b, c, d, e]) == N(N(N(L(a), L(b)), N(L(c), L(d))), L(e))


def test_rfc6962_test_vector() -> None:
    # Certificate Transparency's reference tree of 8 leaves (RFC 6962 test data).
    leaves = [
        bytes.fromhex(x)
        for x in [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
    ]
    assert (
        merkle_root(leaves).hex()
        == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert (
        merkle_root(leaves[:3]).hex()
        == "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    )


def test_hand_computed_proofs() -> None:
    a, b, c, d, e = (bytes([i]) for i in range(5))
    leaves = [a, b, c, d, e]
    assert inclusion_proof(leaves, 0) == [L(b), N(L(c), L(d)), L(e)]
    assert inclusion_proof(leaves, 2) == [L(d), N(L(a), L(b)), L(e)]
    assert inclusion_proof(leaves, 4) == [N(N(L(a), L(b)), N(L(c), L(d)))]
    assert inclusion_proof([a, b, c], 2) == [N(L(a), L(b))]
    assert inclusion_proof([a], 0) == []
    root = merkle_root(leaves)
    for i, leaf in enumerate(leaves):
        assert verify_inclusion(leaf, i, 5, inclusion_proof(leaves, i), root)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=12), min_size=1, max_size=70), st.data())
def test_every_proof_verifies_and_tampering_fails(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    n = len(leaves)
    for i, leaf in enumerate(leaves):
        proof = inclusion_proof(leaves, i)
        assert verify_inclusion(leaf, i, n, proof, root)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, i)
    leaf = leaves[i]
    # wrong leaf, wrong index, wrong size, wrong root, altered or truncated path
    assert not verify_inclusion(leaf + b"!", i, n, proof, root)
    assert not verify_inclusion(leaf, i, n, proof, H(root))
    if n > 1:
        others = [j for j in range(n) if leaves[j] != leaf]
        if others:
            j = data.draw(st.sampled_from(others))
            assert not verify_inclusion(leaf, j, n, inclusion_proof(leaves, j), root)
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[k] = bytes(x ^ 1 for x in bad[k])
        assert not verify_inclusion(leaf, i, n, bad, root)
        assert not verify_inclusion(leaf, i, n, proof[:-1], root)
        assert not verify_inclusion(leaf, i, n, [*proof, b"\x00" * 32], root)
    assert not verify_inclusion(leaf, n, n, proof, root)
