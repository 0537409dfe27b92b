"""Receipts: what a block's transactions came to, in a form that can be proven
one transaction, and one event, at a time.

The receipt of a transaction is the canonical encoding of::

    ["medchain/receipt/v1", tx_id, sender, contract, method, code,
     SHA-256(canonical data), events_root, event_count]

where ``data`` is the result (``code`` 0) or the failure reason (``code`` 1),
and ``events_root`` is the RFC 6962 Merkle root over the transaction's
events, each the canonical encoding of ``[contract, name, attrs]``. A
transaction that does not decode has sender b"" and contract and method "".

A block's *results root* is the Merkle root over its receipts in transaction
order. Execution follows ordering, so block h's results root is carried in
the header of block h+1 (as its state root is) and signed by h+1's commit
certificate: with a Merkle path to that root, one receipt proves that a
transaction succeeded or failed; with a second path to the receipt's events
root, one event proves exactly what the transaction did (say, one anchor of
a bulk import) and nothing about the other events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medchain.storage.codec import DecodeError, as_bytes, as_int, as_str, fields, pack, unpack
from medchain.storage.crypto import HASH_BYTES, sha256
from medchain.storage.merkle import EMPTY_ROOT, inclusion_proof, merkle_root
from medchain.storage.state import Event, TxResult
from medchain.storage.tx import MAX_NAME, Transaction

DOMAIN_RECEIPT = "medchain/receipt/v1"
MAX_RECEIPT_BYTES = 512
MAX_EVENTS = 10_000
EMPTY_RESULTS_ROOT = EMPTY_ROOT  # the results root before block 1


def event_leaf(event: Event) -> bytes:
    return pack(event.to_wire())


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_id: bytes
    sender: bytes
    contract: str
    method: str
    code: int
    data_hash: bytes
    events_root: bytes
    event_count: int

    @property
    def ok(self) -> bool:
        return self.code == 0

    def encode(self) -> bytes:
        return pack(
            [
                DOMAIN_RECEIPT,
                self.tx_id,
                self.sender,
                self.contract,
                self.method,
                self.code,
                self.data_hash,
                self.events_root,
                self.event_count,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Receipt:
        f = fields(unpack(data, MAX_RECEIPT_BYTES, "receipt"), 9, "receipt")
        if f[0] != DOMAIN_RECEIPT:
            raise DecodeError("receipt: wrong domain tag")
        sender = as_bytes(f[2], "receipt.sender", max_len=32)
        if len(sender) not in (0, 32):
            raise DecodeError("receipt.sender: a public key is 32 bytes")
        return cls(
            tx_id=as_bytes(f[1], "receipt.tx_id", HASH_BYTES),
            sender=sender,
            contract=as_str(f[3], "receipt.contract", MAX_NAME),
            method=as_str(f[4], "receipt.method", MAX_NAME),
            code=as_int(f[5], "receipt.code", 0, 255),
            data_hash=as_bytes(f[6], "receipt.data_hash", HASH_BYTES),
            events_root=as_bytes(f[7], "receipt.events_root", HASH_BYTES),
            event_count=as_int(f[8], "receipt.event_count", 0, MAX_EVENTS),
        )


def receipt_of(tx_id: bytes, tx: Transaction | None, result: TxResult) -> Receipt:
    """The receipt of one executed transaction (``tx`` None: it did not decode)."""
    return sized_receipt(tx_id, tx, result)[0]


def sized_receipt(tx_id: bytes, tx: Transaction | None, result: TxResult) -> tuple[Receipt, int]:
    """The receipt, and how many bytes the result and events take encoded."""
    data = pack(result.data)
    leaves = [event_leaf(e) for e in result.events]
    receipt = Receipt(
        tx_id=tx_id,
        sender=b"" if tx is None else tx.sender,
        contract="" if tx is None else tx.contract,
        method="" if tx is None else tx.method,
        code=result.code,
        data_hash=sha256(data),
        events_root=merkle_root(leaves),
        event_count=len(result.events),
    )
    return receipt, len(data) + sum(len(x) for x in leaves)


def decode_or_none(raw: bytes) -> Transaction | None:
    try:
        return Transaction.decode(raw)
    except DecodeError:
        return None


def block_receipts(
    tx_ids: Sequence[bytes], txs: Sequence[bytes], results: Sequence[TxResult]
) -> list[bytes]:
    """The encoded receipts of a block's transactions (decoding each transaction)."""
    return [
        receipt_of(i, decode_or_none(raw), r).encode()
        for i, raw, r in zip(tx_ids, txs, results, strict=True)
    ]


def results_root(receipts: Sequence[bytes]) -> bytes:
    return merkle_root(receipts)


def receipt_path(receipts: Sequence[bytes], index: int) -> list[bytes]:
    return inclusion_proof(receipts, index)


def event_path(result: TxResult, index: int) -> list[bytes]:
    return inclusion_proof([event_leaf(e) for e in result.events], index)
