"""The transaction pool: checked on entry, bounded, ordered by arrival.

Entry checks (cheap, before anything is stored): size, decoding, chain id,
signature, and that the (sender, nonce) pair is neither committed nor
already pooled. A full pool answers "busy" instead of growing. Signature
checks are done by the caller (in worker threads, in batches); the pool
only records the verdict.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from medchain.storage.codec import DecodeError
from medchain.storage.crypto import sha256
from medchain.storage.tx import Transaction

REJECT_BUSY = "busy"


class PoolReject(Exception):
    """Why a transaction was not accepted: code is a short machine word, message says more."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class PooledTx:
    """A pending transaction, decoded and signature-checked on entry. Only the raw
    bytes are kept, not the decoded form: a decoded transaction is many small Python
    objects, and a backlog of them leaves Python's object arenas at its high-water
    mark for good (CPython frees an arena only when all of it is empty). Execution
    decodes the raw bytes again, unchecked and cheaply
    (``Transaction.decode_checked``)."""

    tx_id: bytes
    raw: bytes
    sender: bytes
    nonce: int
    received_ms: int


def check_tx(raw: bytes, chain_id: str, max_tx_bytes: int) -> Transaction:
    """Decode and check a transaction except its signature; raises PoolReject."""
    if len(raw) > max_tx_bytes:
        raise PoolReject("too-large", f"transaction of {len(raw)} bytes exceeds {max_tx_bytes}")
    try:
        tx = Transaction.decode(raw, max_tx_bytes)
    except DecodeError as exc:
        raise PoolReject("malformed", str(exc)) from None
    if tx.chain_id != chain_id:
        raise PoolReject(
            "wrong-chain", f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}"
        )
    return tx


class TxPool:
    def __init__(
        self,
        max_count: int,
        max_bytes: int,
        nonce_used: Callable[[bytes, int], bool],
    ) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.nonce_used = nonce_used  # committed already? (reads the ledger)
        self._txs: OrderedDict[bytes, PooledTx] = OrderedDict()
        self._by_nonce: dict[tuple[bytes, int], bytes] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> PooledTx | None:
        return self._txs.get(tx_id)

    def admit(self, tx: Transaction, raw: bytes, now_ms: int) -> bytes:
        """Add a decoded, signature-checked transaction; returns its id or raises PoolReject."""
        tx_id = sha256(raw)
        if tx_id in self._txs:
            raise PoolReject("duplicate", "transaction is already pending")
        key = (tx.sender, tx.nonce)
        if key in self._by_nonce:
            raise PoolReject(
                "replayed", "a pending transaction from this sender already uses this nonce"
            )
        if self.nonce_used(tx.sender, tx.nonce):
            raise PoolReject("replayed", "this sender's nonce was already committed")
        if len(self._txs) >= self.max_count or self.bytes + len(raw) > self.max_bytes:
            raise PoolReject(
                REJECT_BUSY,
                f"transaction pool is full ({len(self._txs)} txs, {self.bytes} bytes); retry later",
            )
        self._txs[tx_id] = PooledTx(tx_id, raw, tx.sender, tx.nonce, now_ms)
        self._by_nonce[key] = tx_id
        self.bytes += len(raw)
        return tx_id

    def remove(self, tx_ids: Iterable[bytes]) -> None:
        for tx_id in tx_ids:
            p = self._txs.pop(tx_id, None)
            if p is not None:
                self._by_nonce.pop((p.sender, p.nonce), None)
                self.bytes -= len(p.raw)

    def remove_committed_nonces(self, pairs: Iterable[tuple[bytes, int]]) -> None:
        """Drop pending transactions whose (sender, nonce) a committed block used."""
        self.remove([t for t in (self._by_nonce.get(k) for k in pairs) if t is not None])

    def take(self, max_txs: int, max_bytes: int, skip: set[bytes]) -> list[PooledTx]:
        """Oldest first, up to the limits, leaving out ``skip`` (already proposed)."""
        out: list[PooledTx] = []
        size = 0
        for tx_id, p in self._txs.items():
            if tx_id in skip:
                continue
            if len(out) >= max_txs or size + len(p.raw) > max_bytes:
                break
            out.append(p)
            size += len(p.raw)
        return out

    def by_age(self) -> Iterator[PooledTx]:
        """Oldest first (arrival order); do not change the pool while iterating."""
        return iter(self._txs.values())

    def oldest_ms(self) -> int | None:
        for p in self._txs.values():
            return p.received_ms
        return None
