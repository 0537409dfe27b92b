"""Deterministic block execution.

The executor runs a block's transactions in order against the committed
state. Each transaction sees its own overlay: if it raises, its writes are
dropped and its failure reason recorded; if it succeeds, its writes join the
block's write set. Every (sender, nonce) pair is recorded in state, so a
replayed transaction fails deterministically on every node.

State keys are ``<namespace> 0x00 <key>``; each chaincode sees only its own
namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from storage.block import Block
from storage.codec import DecodeError, as_value, canonical
from storage.genesis import Genesis
from storage.ledger import ExecutedBlock
from storage.state import FAILED, OK, Event, TxResult
from storage.tx import Transaction

NONCE_NS = b"_nonce\x00"


class StateReader(Protocol):
    def state_get(self, key: bytes) -> bytes | None: ...

    def state_scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


@runtime_checkable
class IndexReader(Protocol):
    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]: ...


class ChaincodeError(Exception):
    """A transaction refused by chaincode; the message is recorded as its failure reason."""


class Chaincode(Protocol):
    name: str

    def invoke(self, ctx: Context, method: str, args: Any) -> Any: ...

    def query(self, ctx: Context, method: str, args: Any) -> Any: ...


class Overlay:
    """Uncommitted writes layered over a reader; ``None`` marks a delete."""

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        # Secondary indexes (outside the state root): written by chaincode for
        # queries, kept or dropped together with the transaction's writes.
        self.index_writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.base.state_get(key)

    def state_get(self, key: bytes) -> bytes | None:
        return self.get(key)

    def state_scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        merged: dict[bytes, bytes | None] = dict(self.base.state_scan(prefix, start, reverse))
        for k, v in self.writes.items():
            if k.startswith(prefix) and (start is None or (k <= start if reverse else k >= start)):
                merged[k] = v
        for k in sorted(merged, reverse=reverse):
            v = merged[k]
            if v is not None:
                yield k, v


@dataclass
class Context:
    """What chaincode sees: its namespace, the caller, block height and time."""

    namespace: bytes
    state: Overlay
    sender: bytes
    tx_id: bytes
    height: int
    timestamp_ms: int
    genesis: Genesis
    events: list[Event]
    contract: str
    read_only: bool = False

    def _key(self, key: bytes) -> bytes:
        return self.namespace + key

    def get(self, key: bytes) -> bytes | None:
        return self.state.get(self._key(key))

    def put(self, key: bytes, value: bytes) -> None:
        if self.read_only:
            raise ChaincodeError("queries cannot write state")
        if type(key) is not bytes or type(value) is not bytes:
            raise ChaincodeError("state keys and values are bytes")
        self.state.writes[self._key(key)] = value

    def delete(self, key: bytes) -> None:
        if self.read_only:
            raise ChaincodeError("queries cannot write state")
        self.state.writes[self._key(key)] = None

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        n = len(self.namespace)
        for k, v in self.state.state_scan(self._key(prefix), None, reverse):
            yield k[n:], v

    def index_put(self, key: bytes, value: bytes = b"") -> None:
        """Add a secondary-index entry (for queries; not part of the state root)."""
        if self.read_only:
            raise ChaincodeError("queries cannot write indexes")
        self.state.index_writes[self._key(key)] = value

    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Read secondary-index entries; only queries may, so execution depends on state alone."""
        if not self.read_only or not isinstance(self.state.base, IndexReader):
            raise ChaincodeError("indexes can only be read by queries")
        n = len(self.namespace)
        for k, v in self.state.base.index_scan(self._key(prefix), reverse):
            yield k[n:], v

    def emit(self, name: str, attrs: Any) -> None:
        self.events.append(Event(self.contract, name, canonical(attrs, "event")))


def nonce_key(sender: bytes, nonce: int) -> bytes:
    return NONCE_NS + sender + nonce.to_bytes(8, "big")


class Executor:
    def __init__(self, genesis: Genesis, chaincodes: Mapping[str, Chaincode]) -> None:
        self.genesis = genesis
        self.chaincodes = dict(chaincodes)

    def execute(self, state: StateReader, block: Block) -> ExecutedBlock:
        """Execute ``block`` on top of ``state``; returns results and the write set."""
        block_overlay = Overlay(state)
        results: list[TxResult] = []
        for tx_id, raw in zip(block.tx_ids(), block.txs, strict=True):
            results.append(self._execute_tx(block_overlay, block, tx_id, raw))
        return ExecutedBlock(block, results, block_overlay.writes, block_overlay.index_writes)

    def _execute_tx(
        self, block_overlay: Overlay, block: Block, tx_id: bytes, raw: bytes
    ) -> TxResult:
        try:
            tx = Transaction.decode(raw, self.genesis.consensus.max_tx_bytes)
        except DecodeError as exc:
            return TxResult(FAILED, f"malformed transaction: {exc}")
        if tx.chain_id != self.genesis.chain_id:
            return TxResult(FAILED, "wrong chain id")
        nkey = nonce_key(tx.sender, tx.nonce)
        if block_overlay.get(nkey) is not None:
            return TxResult(FAILED, "replayed: this sender already used this nonce")
        block_overlay.writes[nkey] = tx_id
        chaincode = self.chaincodes.get(tx.contract)
        if chaincode is None:
            return TxResult(FAILED, f"unknown contract {tx.contract!r}")
        tx_overlay = Overlay(block_overlay)
        events: list[Event] = []
        ctx = Context(
            namespace=tx.contract.encode() + b"\x00",
            state=tx_overlay,
            sender=tx.sender,
            tx_id=tx_id,
            height=block.height,
            timestamp_ms=block.header.timestamp_ms,
            genesis=self.genesis,
            events=events,
            contract=tx.contract,
        )
        try:
            data = canonical(chaincode.invoke(ctx, tx.method, tx.args), "result")
            as_value(data, "result")
        except ChaincodeError as exc:
            return TxResult(FAILED, str(exc))
        except Exception as exc:  # chaincode bug: fail this transaction only
            return TxResult(FAILED, f"chaincode error: {type(exc).__name__}: {exc}")
        block_overlay.writes.update(tx_overlay.writes)
        block_overlay.index_writes.update(tx_overlay.index_writes)
        return TxResult(OK, data, tuple(events))

    def query(
        self,
        state: StateReader,
        contract: str,
        method: str,
        args: Any,
        height: int,
        timestamp_ms: int,
        caller: bytes = b"",
    ) -> Any:
        """Read-only call against committed state (``caller``: who asks, as claimed)."""
        chaincode = self.chaincodes.get(contract)
        if chaincode is None:
            raise ChaincodeError(f"unknown contract {contract!r}")
        ctx = Context(
            namespace=contract.encode() + b"\x00",
            state=Overlay(state),
            sender=caller,
            tx_id=b"",
            height=height,
            timestamp_ms=timestamp_ms,
            genesis=self.genesis,
            events=[],
            contract=contract,
            read_only=True,
        )
        return canonical(chaincode.query(ctx, method, args), "result")
