"""Blocks, validator sets and commit certificates.

A block is ``[header_bytes, [tx_bytes, ...]]``: the header and the
transactions are embedded as their exact canonical encodings, so the block
hash (SHA-256 of the header bytes) and every tx id are computed from the bytes
as received, never from a re-encoding.

The commit certificate of block h is 2f+1 (strictly: a Byzantine quorum)
validator signatures over ``commit_sign_bytes(chain_id, view, h, block_hash)``,
which are exactly the PBFT commit votes that committed the block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from medchain.storage.codec import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    as_str,
    fields,
    pack,
    unpack,
)
from medchain.storage.crypto import (
    DOMAIN_COMMIT,
    HASH_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Signer,
    sha256,
    sign_bytes,
    verify,
)
from medchain.storage.merkle import inclusion_proof, merkle_root
from medchain.storage.tx import MAX_NAME, MAX_TX_BYTES, Transaction

MAX_BLOCK_BYTES = 32 * 1024 * 1024
MAX_BLOCK_TXS = 20_000
MAX_VALIDATORS = 256
HEADER_BYTES_MAX = 1024


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The ordered public keys of the validators; index = position."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a validator set needs at least one validator")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("duplicate validator key")

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def f(self) -> int:
        """How many Byzantine validators the set tolerates."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Smallest quorum whose any two intersect in f+1 validators (2f+1 when n = 3f+1)."""
        return (self.n + self.f) // 2 + 1

    def index_of(self, key: bytes) -> int | None:
        try:
            return self.keys.index(key)
        except ValueError:
            return None

    def hash(self) -> bytes:
        return sha256(pack(["medchain/validators/v1", list(self.keys)]))


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    timestamp_ms: int
    tx_root: bytes
    state_root: bytes  # state root after executing block height-1
    results_root: bytes  # Merkle root of block height-1's receipts (storage.receipts)
    validator_set_hash: bytes
    proposer: bytes  # proposer's node public key

    def encode(self) -> bytes:
        return pack(
            [
                self.chain_id,
                self.height,
                self.prev_hash,
                self.timestamp_ms,
                self.tx_root,
                self.state_root,
                self.results_root,
                self.validator_set_hash,
                self.proposer,
            ]
        )

    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        f = fields(unpack(data, HEADER_BYTES_MAX, "header"), 9, "header")
        return cls(
            chain_id=as_str(f[0], "header.chain_id", MAX_NAME, 1),
            height=as_int(f[1], "header.height", 1),
            prev_hash=as_bytes(f[2], "header.prev_hash", HASH_BYTES),
            timestamp_ms=as_int(f[3], "header.timestamp_ms"),
            tx_root=as_bytes(f[4], "header.tx_root", HASH_BYTES),
            state_root=as_bytes(f[5], "header.state_root", HASH_BYTES),
            results_root=as_bytes(f[6], "header.results_root", HASH_BYTES),
            validator_set_hash=as_bytes(f[7], "header.validator_set_hash", HASH_BYTES),
            proposer=as_bytes(f[8], "header.proposer", PUBLIC_KEY_BYTES),
        )


@dataclass(frozen=True, slots=True)
class Block:
    header_bytes: bytes
    header: BlockHeader
    txs: tuple[bytes, ...]
    ids: tuple[bytes, ...] = field(default=(), compare=False, repr=False)  # tx ids, computed once

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.txs):
            object.__setattr__(self, "ids", tuple(sha256(t) for t in self.txs))

    @classmethod
    def build(cls, header: BlockHeader, txs: Sequence[bytes]) -> Block:
        return cls(header.encode(), header, tuple(txs))

    @property
    def hash(self) -> bytes:
        return sha256(self.header_bytes)

    @property
    def height(self) -> int:
        return self.header.height

    def tx_ids(self) -> list[bytes]:
        return list(self.ids)

    def encode(self) -> bytes:
        return pack([self.header_bytes, list(self.txs)])

    def inclusion_proof(self, index: int) -> list[bytes]:
        return inclusion_proof(self.tx_ids(), index)

    @classmethod
    def decode(
        cls,
        data: bytes,
        max_size: int = MAX_BLOCK_BYTES,
        max_tx_size: int = MAX_TX_BYTES,
        check_txs: bool = True,
    ) -> Block:
        """Decode a block and check its structure: header, tx encodings, tx root.

        Signatures are not checked here (that is the validator's job, in
        worker threads); ``check_txs=False`` skips decoding each transaction
        for blocks read back from our own ledger.
        """
        f = fields(unpack(data, max_size, "block"), 2, "block")
        header_bytes = as_bytes(f[0], "block.header", max_len=HEADER_BYTES_MAX)
        header = BlockHeader.decode(header_bytes)
        txs = as_list(f[1], "block.txs", MAX_BLOCK_TXS)
        for i, t in enumerate(txs):
            as_bytes(t, f"block.txs[{i}]", max_len=max_tx_size)
            if check_txs:
                Transaction.decode(t, max_tx_size)
        block = cls(header_bytes, header, tuple(txs))
        if merkle_root(block.ids) != header.tx_root:
            raise DecodeError("block: tx_root does not match its transactions")
        return block


def tx_root(txs: Sequence[bytes]) -> bytes:
    """Merkle root over the tx ids (SHA-256 of each transaction's bytes)."""
    return merkle_root([sha256(t) for t in txs])


def commit_sign_bytes(chain_id: str, view: int, seq: int, digest: bytes) -> bytes:
    """What a validator signs to commit a batch: the PBFT commit vote for
    (view, sequence number, digest), where a block's digest is its hash."""
    return sign_bytes(DOMAIN_COMMIT, chain_id, view, seq, digest)


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    seq: int  # consensus sequence number (equals the height unless null batches were ordered)
    view: int
    block_hash: bytes
    votes: tuple[tuple[int, bytes], ...]  # (validator index, signature), sorted by index

    def encode(self) -> bytes:
        return pack([self.seq, self.view, self.block_hash, [list(v) for v in self.votes]])

    @classmethod
    def decode(cls, data: bytes) -> CommitCertificate:
        f = fields(unpack(data, 64 * 1024, "certificate"), 4, "certificate")
        votes = []
        for i, v in enumerate(as_list(f[3], "certificate.votes", MAX_VALIDATORS)):
            pair = fields(v, 2, f"certificate.votes[{i}]")
            votes.append(
                (
                    as_int(pair[0], "certificate.vote.index", 0, MAX_VALIDATORS - 1),
                    as_bytes(pair[1], "certificate.vote.signature", SIGNATURE_BYTES),
                )
            )
        return cls(
            seq=as_int(f[0], "certificate.seq", 1),
            view=as_int(f[1], "certificate.view"),
            block_hash=as_bytes(f[2], "certificate.block_hash", HASH_BYTES),
            votes=tuple(votes),
        )

    def verify(
        self, chain_id: str, validators: ValidatorSet, header: BlockHeader | None = None
    ) -> str | None:
        """None if the certificate proves the block committed, else the reason it does not."""
        if header is not None and header.hash() != self.block_hash:
            return "certificate is for a different block hash"
        message = commit_sign_bytes(chain_id, self.view, self.seq, self.block_hash)
        seen: set[int] = set()
        good = 0
        for index, sig in self.votes:
            if index in seen:
                return f"validator {index} votes twice"
            seen.add(index)
            if index >= validators.n:
                return f"validator index {index} not in the validator set"
            if not verify(validators.keys[index], message, sig):
                return f"bad signature from validator {index}"
            good += 1
        if good < validators.quorum:
            return f"only {good} valid signatures, need {validators.quorum}"
        return None


def make_certificate(
    chain_id: str,
    view: int,
    header: BlockHeader,
    signers: Sequence[tuple[int, Signer]],
    seq: int | None = None,
) -> CommitCertificate:
    """Assemble a certificate from (validator index, Signer) pairs (tests, demo, sim)."""
    block_hash = header.hash()
    seq = header.height if seq is None else seq
    message = commit_sign_bytes(chain_id, view, seq, block_hash)
    votes = []
    for index, signer in sorted(signers, key=lambda p: p[0]):
        votes.append((index, signer.sign(message)))
    return CommitCertificate(seq, view, block_hash, tuple(votes))
