"""Blocks and commit certificates."""

from __future__ import annotations

from dataclasses import replace

import pytest

from medchain.node.consensus.chain import propose_block
from medchain.storage.block import Block, CommitCertificate, ValidatorSet
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import Signer
from medchain.storage.ledger import Ledger
from tests.helpers import Consortium


@pytest.mark.parametrize(
    "n, f, q", [(1, 0, 1), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (10, 3, 7)]
)
def test_quorum_sizes(n: int, f: int, q: int) -> None:
    v = ValidatorSet(tuple(bytes([i]) * 32 for i in range(n)))
    assert (v.f, v.quorum) == (f, q)
    assert 2 * v.quorum - n >= f + 1  # any two quorums share an honest validator


def _block(c: Consortium) -> Block:
    ledger = Ledger.in_memory(c.genesis)
    txs = [c.tx(c.admin_keys[0]).encode() for _ in range(3)]
    return propose_block(ledger, txs, 1000, c.node_keys[0].public_key)


def test_certificate_accepts_quorum(consortium: Consortium) -> None:
    b = _block(consortium)
    v = consortium.genesis.validators
    assert consortium.certify(b).verify(consortium.chain_id, v, b.header) is None
    assert (
        consortium.certify(b, signers=[0, 1, 2, 3]).verify(consortium.chain_id, v, b.header) is None
    )


def test_certificate_rejections(consortium: Consortium) -> None:
    c, b = consortium, _block(consortium)
    v = c.genesis.validators
    good = c.certify(b, signers=[0, 1, 2])
    assert "only 2 valid" in (c.certify(b, signers=[0, 1]).verify(c.chain_id, v, b.header) or "")
    dup = replace(good, votes=(good.votes[0], good.votes[0], good.votes[1]))
    assert "twice" in (dup.verify(c.chain_id, v, b.header) or "")
    # f = 1 forged signature among the quorum: rejected
    mallory = Signer.generate()
    forged = replace(good, votes=(*good.votes[:2], (2, mallory.sign(b"whatever"))))
    assert "bad signature from validator 2" in (forged.verify(c.chain_id, v, b.header) or "")
    unknown = replace(good, votes=(*good.votes, (9, good.votes[0][1])))
    assert "not in the validator set" in (unknown.verify(c.chain_id, v, b.header) or "")
    assert "different block hash" in (
        good.verify(c.chain_id, v, replace(b.header, timestamp_ms=1)) or ""
    )
    assert good.verify("other-chain", v) is not None  # signatures are bound to the chain id
    other_view = replace(good, view=1)
    assert other_view.verify(c.chain_id, v) is not None  # and to the view they were cast in


def test_block_decode_checks_tx_root(consortium: Consortium) -> None:
    b = _block(consortium)
    swapped = Block(b.header_bytes, b.header, (b.txs[1], b.txs[0], b.txs[2]))
    with pytest.raises(DecodeError, match="tx_root"):
        Block.decode(swapped.encode())
    dropped = Block(b.header_bytes, b.header, b.txs[:2])
    with pytest.raises(DecodeError, match="tx_root"):
        Block.decode(dropped.encode())


def test_block_inclusion_proofs(consortium: Consortium) -> None:
    from medchain.storage.merkle import verify_inclusion

    b = _block(consortium)
    for i, tx_id in enumerate(b.tx_ids()):
        assert verify_inclusion(tx_id, i, len(b.txs), b.inclusion_proof(i), b.header.tx_root)


def test_certificate_round_trip_rejects_bad_votes() -> None:
    cert = CommitCertificate(1, 0, b"\x00" * 32, ((0, b"\x01" * 64),))
    data = bytearray(cert.encode())
    data[-67] = 0xC3  # the index slot becomes `true`
    with pytest.raises(DecodeError):
        CommitCertificate.decode(bytes(data))
