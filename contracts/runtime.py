"""Deterministic block execution.

The executor runs a block's transactions in order against the committed
state. Each transaction sees its own overlay: if it raises, its writes are
dropped and its failure reason recorded; if it succeeds, its writes join the
block's write set. Every (sender, nonce) pair is recorded in state, so a
replayed transaction fails deterministically on every node. Chaincode sees
the caller's verified identity, the block height and consensus time (never
the wall clock), its own namespace, and may call other chaincodes.

State keys are ``<namespace> 0x00 <key>``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgpack

from medchain.contracts import sdk
from medchain.contracts.app import StateReader
from medchain.contracts.identity import ANONYMOUS_IDENTITY, Identity, resolve
from medchain.contracts.loader import (
    DEFAULT_STEP_BUDGET,
    LoadedModule,
    StepBudgetExceeded,
    load_module,
    source_hash,
    with_budget,
)
from medchain.contracts.sdk import Reject
from medchain.storage.block import Block
from medchain.storage.codec import DecodeError, canonical, pack
from medchain.storage.executed import ExecutedBlock
from medchain.storage.genesis import Genesis
from medchain.storage.receipts import receipt_of, sized_receipt
from medchain.storage.state import FAILED, OK, Event, TxResult
from medchain.storage.tx import Transaction

NONCE_NS = b"_nonce\x00"
LIFECYCLE = "lifecycle"
MAX_CALL_DEPTH = 4
MAX_VALUE_BYTES = 4 * 1024 * 1024
MAX_TX_WRITE_BYTES = 4 * 1024 * 1024  # keys and values one transaction writes
MAX_BLOCK_WRITE_BYTES = 64 * 1024 * 1024
MAX_OUTCOME_BYTES = 1024 * 1024  # a transaction's result and events, encoded
ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
INACTIVE = ("revoked", "suspended")
# What a revoked or suspended key may still call: asking for records, so that the
# access chaincode logs the denial and its reason in the patient's access log. The
# call may not invoke other chaincode (Context.call refuses), only query it.
INACTIVE_KEY_CALLS = (("access", "request"), ("access", "request_many"))

ChaincodeError = Reject  # one refusal type for native and loaded chaincode


def reject_reason(exc: Reject) -> str:
    """A refusal's reason as it goes on chain: text only, and never an object's
    memory address (which differs between nodes)."""
    why = exc.args[0] if len(exc.args) == 1 else None
    if type(why) is not str:
        why = "refused (the reason given is not text)"
    return ADDRESS.sub("0x…", why)[:2000]


@runtime_checkable
class IndexReader(Protocol):
    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]: ...


class Chaincode(Protocol):
    name: str

    def invoke(self, ctx: Context, method: str, args: Any) -> Any: ...

    def query(self, ctx: Context, method: str, args: Any) -> Any: ...


class Overlay:
    """Uncommitted writes layered over a reader; ``None`` marks a delete."""

    def __init__(self, base: StateReader, memo: bool = False) -> None:
        """``memo``: remember what the base returned (absent keys too) — for a block's
        overlay over committed state, which cannot change while the block executes.
        Every transaction of a block asks, for instance, whether its contract has an
        installed upgrade; the answer is read once per block instead of once per
        transaction (absent keys read from LevelDB cost it seek compactions)."""
        self.base = base
        self.writes: dict[bytes, bytes | None] = {}
        # Secondary indexes (outside the state root): written by chaincode for
        # queries, kept or dropped together with the transaction's writes.
        self.index_writes: dict[bytes, bytes | None] = {}
        self.written = 0  # bytes of keys and values put, for the per-transaction limit
        self._reads: dict[bytes, bytes | None] | None = {} if memo else None

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        reads = self._reads
        if reads is None:
            return self.base.state_get(key)
        if key in reads:
            return reads[key]
        value = reads[key] = self.base.state_get(key)
        return value

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

    def root(self) -> StateReader:
        base = self.base
        while isinstance(base, Overlay):
            base = base.base
        return base


@dataclass
class Context:
    """What chaincode sees: its namespace, the caller, block height and time."""

    executor: Executor
    contract: str
    state: Overlay
    caller: Identity
    tx_id: bytes
    height: int
    timestamp_ms: int
    events: list[Event]
    read_only: bool = False
    origin: str | None = None  # the contract that called this one, if any
    depth: int = 0
    namespace: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.namespace = self.contract.encode() + b"\x00"

    @property
    def genesis(self) -> Genesis:
        return self.executor.genesis

    @property
    def sender(self) -> bytes:
        return self.caller.key

    # -- state ---------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self.state.get(self.namespace + key)

    def put(self, key: bytes, value: bytes) -> None:
        if self.read_only:
            raise Reject("queries cannot write state")
        if type(key) is not bytes or type(value) is not bytes:
            raise Reject("state keys and values are bytes")
        if len(value) > MAX_VALUE_BYTES:
            raise Reject("state value too large")
        self.state.written += len(key) + len(value)
        if self.state.written > MAX_TX_WRITE_BYTES:
            raise Reject(f"a transaction writes at most {MAX_TX_WRITE_BYTES} bytes of state")
        self.state.writes[self.namespace + key] = value

    def delete(self, key: bytes) -> None:
        if self.read_only:
            raise Reject("queries cannot write state")
        self.state.writes[self.namespace + key] = None

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        n = len(self.namespace)
        for k, v in self.state.state_scan(self.namespace + prefix, None, reverse):
            yield k[n:], v

    def get_obj(self, key: bytes) -> Any:
        """A canonical value stored with ``put_obj`` (None if absent)."""
        raw = self.get(key)
        return None if raw is None else _decode_value(raw)

    def put_obj(self, key: bytes, value: Any) -> None:
        try:
            data = pack(canonical(value, "state value"))
        except TypeError as exc:
            raise Reject(str(exc)) from None
        self.put(key, data)

    def scan_obj(
        self, prefix: bytes, reverse: bool = False, limit: int = 10_000
    ) -> list[tuple[bytes, Any]]:
        out = []
        for k, v in self.scan(prefix, reverse):
            out.append((k, _decode_value(v)))
            if len(out) >= limit:
                break
        return out

    def read(self, contract: str, key: bytes) -> Any:
        """Read another chaincode's stored value (read-only)."""
        raw = self.state.get(contract.encode() + b"\x00" + key)
        return None if raw is None else _decode_value(raw)

    # -- indexes (outside the state root; queries only may read them) ------------------

    def index_put(self, key: bytes, value: bytes = b"") -> None:
        if self.read_only:
            raise Reject("queries cannot write indexes")
        if type(key) is not bytes or type(value) is not bytes:
            raise Reject("index keys and values are bytes")
        if len(key) + len(value) > MAX_VALUE_BYTES:
            raise Reject("index entry too large")
        self.state.written += len(key) + len(value)  # counts toward the same limits as state
        if self.state.written > MAX_TX_WRITE_BYTES:
            raise Reject(f"a transaction writes at most {MAX_TX_WRITE_BYTES} bytes of state")
        self.state.index_writes[self.namespace + key] = value

    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        base = self.state.root()
        if not self.read_only or not isinstance(base, IndexReader):
            raise Reject("indexes can only be read by queries")
        n = len(self.namespace)
        for k, v in base.index_scan(self.namespace + prefix, reverse):
            yield k[n:], v

    # -- identity, events, other chaincodes ------------------------------------------

    def identity(self, key: bytes) -> Identity:
        return resolve(self.state.get, self.executor.genesis, key)

    def emit(self, name: str, attrs: Any) -> None:
        if self.read_only:
            return
        try:
            self.events.append(Event(self.contract, name, canonical(attrs, "event")))
        except TypeError as exc:
            raise Reject(str(exc)) from None

    def call(self, contract: str, method: str, args: Any) -> Any:
        """Invoke another chaincode in this transaction (same caller, same overlay);
        the callee sees ``ctx.origin`` = this contract."""
        if self.depth >= MAX_CALL_DEPTH:
            raise Reject("chaincode calls nested too deeply")
        if not self.read_only and self.caller.status in INACTIVE:
            raise Reject(f"the signing key is {self.caller.status}")
        cc = self.executor.chaincode(self.state, contract)
        if cc is None:
            raise Reject(f"unknown contract {contract!r}")
        if contract in self.executor.natives:
            raise Reject(f"built-in {contract!r} cannot be called from chaincode")
        sub = Context(
            self.executor,
            contract,
            self.state,
            self.caller,
            self.tx_id,
            self.height,
            self.timestamp_ms,
            self.events,
            self.read_only,
            self.contract,
            self.depth + 1,
        )
        result = cc.query(sub, method, args) if self.read_only else cc.invoke(sub, method, args)
        return canonical(result, "result")

    def query(self, contract: str, method: str, args: Any) -> Any:
        """Call another chaincode's read-only query (allowed inside transactions too)."""
        cc = self.executor.chaincode(self.state, contract)
        if cc is None:
            raise Reject(f"unknown contract {contract!r}")
        sub = Context(
            self.executor,
            contract,
            self.state,
            self.caller,
            self.tx_id,
            self.height,
            self.timestamp_ms,
            [],
            True,
            self.contract,
            self.depth + 1,
        )
        return canonical(cc.query(sub, method, args), "result")


def _decode_value(raw: bytes) -> Any:
    """A value chaincode stored with put_obj. State is written only by chaincode through
    canonical encoding, so the canonicality re-check of untrusted input is not repeated here."""
    try:
        return msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=True, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types
        raise Reject(f"corrupt state value: {type(exc).__name__}") from None


class ChaincodeContext:
    """What loaded chaincode holds as ``ctx``: sdk.Context's members (``CONTEXT_API``)
    and nothing else. The Context itself (its namespace, overlay, executor, event
    list) sits in the one underscore slot — the loader refuses underscore attributes
    and attribute assignment — so a chaincode can write only its own namespace and
    emit events only in its own name."""

    __slots__ = ("_c",)
    _c: Context

    def __init__(self, ctx: Context) -> None:
        object.__setattr__(self, "_c", ctx)

    def __setattr__(self, name: str, value: Any) -> None:
        raise Reject("chaincode cannot change its context")

    @property
    def caller(self) -> Identity:
        return self._c.caller

    @property
    def sender(self) -> bytes:
        return self._c.caller.key

    @property
    def tx_id(self) -> bytes:
        return self._c.tx_id

    @property
    def height(self) -> int:
        return self._c.height

    @property
    def timestamp_ms(self) -> int:
        return self._c.timestamp_ms

    @property
    def origin(self) -> str | None:
        return self._c.origin

    @property
    def genesis(self) -> Genesis:
        return self._c.genesis

    def get(self, key: bytes) -> bytes | None:
        return self._c.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._c.put(key, value)

    def delete(self, key: bytes) -> None:
        self._c.delete(key)

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._c.scan(prefix, reverse)

    def get_obj(self, key: bytes) -> Any:
        return self._c.get_obj(key)

    def put_obj(self, key: bytes, value: Any) -> None:
        self._c.put_obj(key, value)

    def scan_obj(
        self, prefix: bytes, reverse: bool = False, limit: int = 10_000
    ) -> list[tuple[bytes, Any]]:
        return self._c.scan_obj(prefix, reverse, limit)

    def read(self, contract: str, key: bytes) -> Any:
        return self._c.read(contract, key)

    def index_put(self, key: bytes, value: bytes = b"") -> None:
        self._c.index_put(key, value)

    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._c.index_scan(prefix, reverse)

    def identity(self, key: bytes) -> Identity:
        return self._c.identity(key)

    def emit(self, name: str, attrs: Any) -> None:
        self._c.emit(name, attrs)

    def call(self, contract: str, method: str, args: Any) -> Any:
        return self._c.call(contract, method, args)

    def query(self, contract: str, method: str, args: Any) -> Any:
        return self._c.query(contract, method, args)


def chaincode_context(ctx: Context) -> sdk.Context:
    """The context a loaded chaincode function receives (the type checker holds
    ChaincodeContext to sdk.Context here)."""
    return ChaincodeContext(ctx)


class LoadedChaincode:
    """A checked, instrumented chaincode module behind the Chaincode interface."""

    def __init__(self, module: LoadedModule) -> None:
        self.module = module
        self.name = module.name

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        fn = self.module.transactions.get(method)
        if fn is None:
            raise Reject(f"{self.name} has no transaction {method!r}")
        if ctx.origin is not None and ctx.origin not in getattr(fn, "_medchain_callers", ()):
            raise Reject(
                f"{self.name}.{method} runs only when its signer sends it, not from {ctx.origin}"
            )
        return fn(chaincode_context(ctx), args)

    def query(self, ctx: Context, method: str, args: Any) -> Any:
        fn = self.module.queries.get(method)
        if fn is None:
            raise Reject(f"{self.name} has no query {method!r}")
        return fn(chaincode_context(ctx), args)


def nonce_key(sender: bytes, nonce: int) -> bytes:
    return NONCE_NS + sender + nonce.to_bytes(8, "big")


class Executor:
    """Runs blocks (the node's contracts.app.Application). ``natives``: trusted
    built-in chaincodes (kv, lifecycle); ``bundled``: chaincode sources shipped
    with this release, accepted only if their hashes are the ones in the genesis;
    upgrades come from the lifecycle chaincode's state, so every node runs exactly
    the approved code."""

    def __init__(
        self,
        genesis: Genesis,
        natives: Mapping[str, Chaincode],
        bundled: Mapping[str, str] | None = None,
        step_budget: int = DEFAULT_STEP_BUDGET,
    ) -> None:
        self.genesis = genesis
        self.natives = dict(natives)
        self.step_budget = step_budget
        self._modules: dict[bytes, LoadedChaincode] = {}
        self._bundled: dict[str, bytes] = {}
        expected = dict(genesis.chaincodes)
        for name, source in (bundled or {}).items():
            h = source_hash(source)
            if expected.get(name) != h:
                continue  # not part of this chain's genesis (or another version): not used
            self._modules[h] = LoadedChaincode(load_module(source, name))
            self._bundled[name] = h
        missing = sorted(set(expected) - set(self._bundled))
        self.missing = missing  # genesis chaincodes this node does not have (node refuses to start)
        self._thread: ThreadPoolExecutor | None = None
        self._thread_lock = threading.Lock()

    @property
    def chaincodes(self) -> dict[str, Chaincode]:  # for tests and status
        out: dict[str, Chaincode] = dict(self.natives)
        for name, h in self._bundled.items():
            out[name] = self._modules[h]
        return out

    def chaincode(self, state: StateReader, name: str) -> Chaincode | None:
        native = self.natives.get(name)
        if native is not None:
            return native
        active = state.state_get(LIFECYCLE.encode() + b"\x00active/" + name.encode())
        if active is not None:
            rec = _decode_value(active)
            h = rec["hash"]
            mod = self._modules.get(h)
            if mod is None:
                src = state.state_get(LIFECYCLE.encode() + b"\x00src/" + h)
                if src is None:
                    raise Reject(f"source of chaincode {name!r} is missing from state")
                mod = LoadedChaincode(load_module(src.decode(), name))
                self._modules[h] = mod
            return mod
        h2 = self._bundled.get(name)
        return None if h2 is None else self._modules[h2]

    def nonce_used(self, get: Callable[[bytes], bytes | None], sender: bytes, nonce: int) -> bool:
        return get(nonce_key(sender, nonce)) is not None

    def committed_nonces(self, writes: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
        n = len(NONCE_NS)
        for k in writes:
            if k.startswith(NONCE_NS):
                yield k[n : n + 32], int.from_bytes(k[n + 32 :], "big")

    def execute(
        self,
        state: StateReader,
        block: Block,
        checked: Container[bytes] = (),
    ) -> ExecutedBlock:
        """Execute ``block`` on top of ``state``; returns results and the write set.
        ``checked``: ids of transactions whose bytes already passed ``Transaction.decode``
        (decoded again here without the checks).

        Runs on this executor's own thread, always entered the same way, so chaincode
        starts at the same stack depth whoever calls (consensus, state transfer, a
        replay): Python's recursion limit — which also stops C code comparing or
        copying deeply nested values — then strikes at the same point on every node."""
        with self._thread_lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="chaincode")
        return self._thread.submit(self._execute, state, block, checked).result()

    def _execute(
        self, state: StateReader, block: Block, checked: Container[bytes]
    ) -> ExecutedBlock:
        block_overlay = Overlay(state, memo=True)
        results: list[TxResult] = []
        receipts: list[bytes] = []
        written = 0
        for tx_id, raw in zip(block.tx_ids(), block.txs, strict=True):
            tx = Transaction.decode_checked(raw) if tx_id in checked else None
            if tx is None:
                try:
                    tx = Transaction.decode(raw, self.genesis.consensus.max_tx_bytes)
                except DecodeError as exc:
                    result = TxResult(FAILED, f"malformed transaction: {exc}")
                    results.append(result)
                    receipts.append(receipt_of(tx_id, None, result).encode())
                    continue
            result, pending = self._execute_tx(block_overlay, block, tx_id, tx)
            receipt, size = sized_receipt(tx_id, tx, result)
            if pending is not None:
                why = None
                if size > MAX_OUTCOME_BYTES:
                    why = f"the result and events take {size} bytes, more than {MAX_OUTCOME_BYTES}"
                elif written + pending.written > MAX_BLOCK_WRITE_BYTES:
                    why = "the block holds as many state writes as it may: send it again"
                if why is None:
                    written += pending.written
                    block_overlay.writes.update(pending.writes)
                    block_overlay.index_writes.update(pending.index_writes)
                else:
                    result = TxResult(FAILED, why)
                    receipt = receipt_of(tx_id, tx, result)
            results.append(result)
            receipts.append(receipt.encode())
        return ExecutedBlock(
            block, results, block_overlay.writes, block_overlay.index_writes, receipts
        )

    def _execute_tx(
        self,
        block_overlay: Overlay,
        block: Block,
        tx_id: bytes,
        tx: Transaction,
    ) -> tuple[TxResult, Overlay | None]:
        """The result, and on success the transaction's writes (not merged yet)."""
        if tx.chain_id != self.genesis.chain_id:
            return TxResult(FAILED, "wrong chain id"), None
        nkey = nonce_key(tx.sender, tx.nonce)
        if block_overlay.get(nkey) is not None:
            return TxResult(FAILED, "replayed: this sender already used this nonce"), None
        block_overlay.writes[nkey] = tx_id
        tx_overlay = Overlay(block_overlay)
        events: list[Event] = []
        try:
            chaincode = self.chaincode(block_overlay, tx.contract)
            if chaincode is None:
                return TxResult(FAILED, f"unknown contract {tx.contract!r}"), None
            caller = resolve(tx_overlay.get, self.genesis, tx.sender)
            if caller.status in INACTIVE and (tx.contract, tx.method) not in INACTIVE_KEY_CALLS:
                return TxResult(FAILED, f"the signing key is {caller.status}"), None
            ctx = Context(
                self,
                tx.contract,
                tx_overlay,
                caller,
                tx_id,
                block.height,
                block.header.timestamp_ms,
                events,
            )
            data = with_budget(self.step_budget, lambda: chaincode.invoke(ctx, tx.method, tx.args))
            data = canonical(data, "result")
        except Reject as exc:
            return TxResult(FAILED, reject_reason(exc)), None
        except StepBudgetExceeded as exc:
            return TxResult(FAILED, str(exc)), None
        except RecursionError:
            return TxResult(FAILED, "chaincode error: recursion too deep"), None
        except Exception as exc:  # chaincode bug: fail this transaction only
            # (a message can quote an object's repr, whose address differs between nodes)
            why = ADDRESS.sub("0x…", str(exc))[:500]
            return TxResult(FAILED, f"chaincode error: {type(exc).__name__}: {why}"), None
        return TxResult(OK, data, tuple(events)), tx_overlay

    def query(
        self,
        state: StateReader,
        contract: str,
        method: str,
        args: Any,
        height: int,
        timestamp_ms: int,
        caller: bytes | Identity = b"",
    ) -> Any:
        """Read-only call against committed state. ``caller``: an identity the node
        authenticated (a signed query), or a bare key, or nothing (anonymous)."""
        overlay = Overlay(state)
        chaincode = self.chaincode(overlay, contract)
        if chaincode is None:
            raise Reject(f"unknown contract {contract!r}")
        who = (
            caller
            if isinstance(caller, Identity)
            else (resolve(overlay.get, self.genesis, caller) if caller else ANONYMOUS_IDENTITY)
        )
        ctx = Context(self, contract, overlay, who, b"", height, timestamp_ms, [], read_only=True)
        try:
            return canonical(
                with_budget(self.step_budget * 5, lambda: chaincode.query(ctx, method, args)),
                "result",
            )
        except StepBudgetExceeded as exc:
            raise Reject(str(exc)) from None
