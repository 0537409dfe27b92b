"""The ledger: blocks, certificates, tx index, chaincode state, indexes.

Key layout (format 3; heights and seqs are 8-byte big-endian so keys sort by them)::

    M genesis            genesis hash the data dir was created with
    M format             ledger format (3)
    M tip                [height, block hash, state root, last consensus seq, timestamp,
                          format, results root]
    Q <seq>              [height or 0 for a null batch, certificate] per consensus seq
    H <block hash>       height
    T <tx id>            [height, index]
    S <state key>        chaincode state: 00 + value, or 01 + <h> <n> (the value is b <h> V <n>)
    X <index key>        secondary indexes chaincode or the node asks for
    b <h> B              block bytes                                  (block store)
    b <h> C              commit certificate                           (block store)
    b <h> R              state root after executing block h           (block store)
    b <h> O              results root of block h (its receipts)       (block store)
    b <h> E <i>          result of transaction i of block h           (block store)
    b <h> V <n>          n-th state value of VALUE_LOG_MIN bytes or more block h wrote (block store)

The ``b`` entries live in a second store, the block store (on disk: a LevelDB of
its own in ``<ledger>/blocks``); everything else in the main store. The main
store's keys are random (tx ids, record ids), so LevelDB rewrites its bytes many
times on their way down the levels — under sustained load those compactions cost a
node as much CPU as the rest of its work (BENCHMARKS.md, compaction). So the main
store holds only what must be found by such a key: the key, and a pointer or a
short value. The bytes behind them — block bodies, results, large state values —
are appended to the block store under the block's height (WiscKey's key-value
separation, Lu et al., FAST '16). Its keys only ever grow, so its files never overlap and LevelDB
moves them down the levels without rewriting them. A state read is one lookup in
the main store and, for a large value, one in the block store; overwritten
values stay in the block store as history.

Format 3 blocks commit to their predecessor's transaction outcomes (the header's
results root, storage.receipts). Ledgers of formats 1 and 2 hold blocks without
it, which cannot prove an outcome: this release refuses them with that reason.

Committing a block is one synced write to the block store, then one synced
write batch to the main store holding the rest and the tip. A crash between
the two leaves block-store entries above the tip: they are never read (reads
stop at the tip) and the same height is written again when the block is
committed again. So after a crash the ledger still ends at a whole block.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from medchain.storage.block import Block, CommitCertificate
from medchain.storage.codec import DecodeError, as_bytes, as_int, fields, pack, unpack
from medchain.storage.executed import ExecutedBlock
from medchain.storage.genesis import Genesis
from medchain.storage.kv import FailureHook, KVStore, LevelDBKV, MemoryKV, StorageDamaged
from medchain.storage.readcache import ReadCache
from medchain.storage.receipts import EMPTY_RESULTS_ROOT, block_receipts, results_root
from medchain.storage.state import TxResult, next_state_root

_BE8 = struct.Struct(">Q")
_BE4 = struct.Struct(">I")

K_GENESIS = b"Mgenesis"
K_TIP = b"Mtip"
K_FORMAT = b"Mformat"
K_MIRROR_SEQ = b"Mledger-seq"  # in the mirror store
FORMAT = 3
P_HEIGHT = b"b"  # the block store's keys, b <height> <kind>
K_BLOCK = b"B"
K_CERT = b"C"
K_ROOT = b"R"
K_RESULTS_ROOT = b"O"
K_RESULT = b"E"
K_VALUE = b"V"
VALUE_LOG_MIN = 48  # state values this long or longer go to the block store (V)
P_HASH = b"H"
P_TX = b"T"
P_STATE = b"S"
P_INDEX = b"X"
P_SEQ = b"Q"
T = TypeVar("T")
CACHE_ENTRIES = 100_000  # state read cache, absent keys included


def be8(n: int) -> bytes:
    return _BE8.pack(n)


def _indexed(hb: bytes, kind: bytes, idx: bytes) -> bytes:
    """Block-store key of a block's ``idx``-th result or value (``hb``: be8(height))."""
    return P_HEIGHT + hb + kind + idx


def _separate_values(
    hb: bytes,
    writes: Mapping[bytes, bytes | None],
    batch: dict[bytes, bytes | None],
    appended: dict[bytes, bytes | None],
) -> None:
    """A block's state writes as main-store entries (``batch``: short values inline,
    others as pointers) and block-store values (``appended``)."""
    n = 0
    for k, v in writes.items():
        if v is None:
            batch[P_STATE + k] = None
        elif len(v) < VALUE_LOG_MIN:
            batch[P_STATE + k] = b"\x00" + v
        else:
            idx = _BE4.pack(n)
            n += 1
            appended[_indexed(hb, K_VALUE, idx)] = v
            batch[P_STATE + k] = b"\x01" + hb + idx


class LedgerError(Exception):
    """The ledger refuses an operation (inconsistent block, corrupt store)."""


class LedgerDamaged(LedgerError, StorageDamaged):
    """Stored ledger data is missing or does not decode: the store is damaged."""


def _result_from(raw: bytes) -> TxResult:
    return TxResult.from_wire(unpack(raw, 2 * 1024 * 1024, "tx result"))


def _decoded(what: str, decode: Callable[[], T]) -> T:
    try:
        return decode()
    except (DecodeError, ValueError) as exc:
        raise LedgerDamaged(f"the ledger's {what} does not decode: {exc}") from None


class GenesisMismatch(LedgerError):
    """The data dir was created for a different chain."""


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    result: TxResult


class Ledger:
    def __init__(self, store: KVStore, genesis: Genesis, blocks: KVStore | None = None) -> None:
        self.store = store
        self.blocks = store if blocks is None else blocks  # B, C, R, Q (see the module doc)
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.validators = genesis.validators
        self.genesis_hash = genesis.hash()
        self._cache = ReadCache(CACHE_ENTRIES)
        # Another store (the node's node-state) told the consensus seq of every commit:
        # a node-state that lost its recent writes is found at start (storage.integrity).
        self.mirror: KVStore | None = None
        stored = store.get(K_GENESIS)
        fmt = store.get(K_FORMAT)
        if stored is None:
            store.write({K_GENESIS: self.genesis_hash, K_FORMAT: bytes([FORMAT])}, sync=True)
        elif fmt != bytes([FORMAT]):
            made = "1" if fmt is None else (str(fmt[0]) if len(fmt) == 1 else fmt.hex())
            raise LedgerError(
                f"this ledger has format {made}; this release reads format {FORMAT} only"
                + (
                    " (format 1 and 2 blocks do not commit to their transactions' outcomes, "
                    "so no evidence from them could be trusted): start a new data dir for a "
                    "new chain, or keep running the release that made it"
                    if fmt is None or (len(fmt) == 1 and fmt[0] < FORMAT)
                    else ": it was made by a newer release"
                )
            )
        self.format = FORMAT
        if stored is not None and stored != self.genesis_hash:
            raise GenesisMismatch(
                f"this data dir belongs to the chain with genesis {stored.hex()[:16]}…, "
                f"not {self.genesis_hash.hex()[:16]}…; refusing to start with a different genesis"
            )
        tip = store.get(K_TIP)
        if tip is None:
            self.height = 0
            self.last_hash = self.genesis_hash
            self.state_root = genesis.initial_state_root()
            self.results_root = EMPTY_RESULTS_ROOT  # of the last block
            self.seq = 0  # last consensus sequence number delivered (blocks and null batches)
            self.last_timestamp_ms = genesis.genesis_time_ms
        else:
            f = _decoded("tip", lambda: fields(unpack(tip, 256, "tip"), 7, "tip"))
            self.height = as_int(f[0], "tip.height")
            self.last_hash = as_bytes(f[1], "tip.hash", 32)
            self.state_root = as_bytes(f[2], "tip.root", 32)
            self.seq = as_int(f[3], "tip.seq")
            self.last_timestamp_ms = as_int(f[4], "tip.timestamp")
            if f[5] != self.format:
                raise LedgerError(f"the tip says format {f[5]!r}, the ledger {self.format}")
            self.results_root = as_bytes(f[6], "tip.results_root", 32)

    @classmethod
    def open(
        cls,
        path: Path,
        genesis: Genesis,
        create: bool = True,
        on_failure: FailureHook | None = None,
        read_only: bool = False,
    ) -> Ledger:
        """Open (``create``: or make) the ledger's two stores at ``path``; ``read_only``
        for a tool that only reads them (see LevelDBKV)."""
        # Block caches (decompressed blocks; they fill over minutes, then stay): small for
        # the main store — hot state is cached above it (storage.readcache) — and none for
        # the block store, read only by state transfer and explorers.
        # An 8 MiB memtable (LevelDB: 4) for the main store. Most of its reads look up
        # keys that do not exist (a new record's id): the bloom filters answer them,
        # but LevelDB still charges a "seek" to the first table it consulted whenever
        # it consulted two, and compacts a table after ~100 such charges — so with
        # small level-0 tables, seek compactions keep its background thread busy.
        # Bigger memtables cost less compaction CPU per transaction but make a larger
        # sawtooth in memory with each flush (python -m benchmarks.compaction;
        # BENCHMARKS.md, compaction).
        main = LevelDBKV(
            path,
            create=create,
            cache_bytes=2 << 20,
            write_buffer_bytes=8 << 20,
            name="ledger",
            on_failure=on_failure,
            read_only=read_only,
        )
        try:
            # 4 MiB memtable (seconds of writes at the target load): LevelDB flushes it
            # on the one background thread it shares with the main store's compactions,
            # and a commit waits while the memtable is full.
            blocks = LevelDBKV(
                path / "blocks",
                create=create,
                bloom_filter_bits=0,
                cache_bytes=0,
                write_buffer_bytes=4 << 20,
                name="ledger block",
                on_failure=on_failure,
                read_only=read_only,
            )
            return cls(main, genesis, blocks)
        except BaseException:
            main.close()
            raise

    @classmethod
    def in_memory(cls, genesis: Genesis) -> Ledger:
        return cls(MemoryKV(), genesis)

    def close(self) -> None:
        if self.blocks is not self.store:
            self.blocks.close()
        self.store.close()

    # -- commit ----------------------------------------------------------------

    def check_next(self, block: Block) -> None:
        """Raise LedgerError unless ``block`` extends the tip exactly."""
        h = block.header
        if h.chain_id != self.chain_id:
            raise LedgerError(f"block for chain {h.chain_id!r}, this is {self.chain_id!r}")
        if h.height != self.height + 1:
            raise LedgerError(f"block height {h.height}, expected {self.height + 1}")
        if h.prev_hash != self.last_hash:
            raise LedgerError(f"block {h.height} does not extend block {self.height}")
        if h.state_root != self.state_root:
            raise LedgerError(f"block {h.height} carries a state root that differs from ours")
        if h.results_root != self.results_root:
            raise LedgerError(f"block {h.height} carries a results root that differs from ours")
        if h.validator_set_hash != self.validators.hash():
            raise LedgerError(f"block {h.height} names a different validator set")

    def _tip(
        self, height: int, block_hash: bytes, root: bytes, seq: int, ts: int, results: bytes
    ) -> bytes:
        return pack([height, block_hash, root, seq, ts, self.format, results])

    def commit_block(
        self, executed: ExecutedBlock, certificate: CommitCertificate, seq: int | None = None
    ) -> bytes:
        """Write the block and all its effects — one synced write to the block store,
        then one synced batch to the main store with the tip (see the module doc);
        return the new state root.

        ``seq`` is the consensus sequence number that ordered it (default: the next one)."""
        block = executed.block
        self.check_next(block)
        if certificate.block_hash != block.hash:
            raise LedgerError("certificate does not match the block")
        if len(executed.results) != len(block.txs):
            raise LedgerError("one result per transaction is required")
        height = block.height
        seq = self.seq + 1 if seq is None else seq
        if seq <= self.seq:
            raise LedgerError(f"consensus seq {seq} already delivered (at {self.seq})")
        outcomes = results_root(executed.receipt_list())
        root = next_state_root(self.state_root, height, executed.writes, outcomes)
        block_hash = block.hash
        hb = be8(height)
        cert = certificate.encode()
        ts = block.header.timestamp_ms
        batch: dict[bytes, bytes | None] = {
            P_HASH + block_hash: hb,
            P_SEQ + be8(seq): pack([height, cert]),
            K_TIP: self._tip(height, block_hash, root, seq, ts, outcomes),
        }
        hk = P_HEIGHT + hb
        appended: dict[bytes, bytes | None] = {
            hk + K_BLOCK: block.encode(),
            hk + K_CERT: cert,
            hk + K_ROOT: root,
            hk + K_RESULTS_ROOT: outcomes,
        }
        for i, tx_id in self._index_txs(block, executed.results):
            batch[P_TX + tx_id] = pack([height, i])
        for i, result in enumerate(executed.results):
            appended[_indexed(hb, K_RESULT, _BE4.pack(i))] = pack(result.to_wire())
        _separate_values(hb, executed.writes, batch, appended)
        for k, v in executed.index_writes.items():
            batch[P_INDEX + k] = v
        if self.blocks is self.store:
            batch.update(appended)
        else:
            self.blocks.write(appended, sync=True)  # first: the tip below must find them
        self.store.write(batch, sync=True)
        self._mirror_seq(seq)
        self._cache.committed(executed.writes)
        self.height, self.last_hash, self.state_root = height, block_hash, root
        self.seq, self.last_timestamp_ms, self.results_root = seq, ts, outcomes
        return root

    def _index_txs(self, block: Block, results: Sequence[TxResult]) -> Iterator[tuple[int, bytes]]:
        """(index, tx id) of the block's transactions that get a tx index entry.

        A transaction repeated (in this block or an earlier one) keeps its first
        location; the executor has failed the repeat as a replay. (Only a failed
        transaction can be such a repeat: skip the lookup otherwise.)"""
        seen: set[bytes] = set()
        for i, (tx_id, result) in enumerate(zip(block.tx_ids(), results, strict=True)):
            if tx_id in seen or (not result.ok and self.store.get(P_TX + tx_id) is not None):
                continue
            seen.add(tx_id)
            yield i, tx_id

    def commit_null(self, seq: int, certificate: CommitCertificate) -> None:
        """Record that consensus ordered a null batch at ``seq`` (no block, state unchanged)."""
        if seq <= self.seq:
            raise LedgerError(f"consensus seq {seq} already delivered (at {self.seq})")
        tip = self._tip(
            self.height,
            self.last_hash,
            self.state_root,
            seq,
            self.last_timestamp_ms,
            self.results_root,
        )
        entry = {P_SEQ + be8(seq): pack([0, certificate.encode()])}
        self.store.write({**entry, K_TIP: tip}, sync=True)
        self._mirror_seq(seq)
        self.seq = seq

    def _mirror_seq(self, seq: int) -> None:
        if self.mirror is not None:
            self.mirror.write({K_MIRROR_SEQ: be8(seq)}, sync=False)

    def mirrored_seq(self) -> int | None:
        """The last consensus seq this ledger told its mirror (node-state) of."""
        raw = None if self.mirror is None else self.mirror.get(K_MIRROR_SEQ)
        return None if raw is None or len(raw) != 8 else int(_BE8.unpack(raw)[0])

    def seq_entry(self, seq: int) -> tuple[int, CommitCertificate] | None:
        """(height or 0 for a null batch, certificate) of a delivered consensus seq."""
        if seq > self.seq:  # written before a crash that lost the tip: not committed here
            return None
        data = self.store.get(P_SEQ + be8(seq))
        if data is None:
            return None

        def decode() -> tuple[int, CommitCertificate]:
            f = fields(unpack(data, 128 * 1024, "seq entry"), 2, "seq entry")
            return as_int(f[0], "height"), CommitCertificate.decode(as_bytes(f[1], "certificate"))

        return _decoded(f"entry of consensus seq {seq}", decode)

    def _height_key(self, height: int, kind: bytes) -> bytes:
        """Block-store key of a block's body, certificate or root (``kind``: K_BLOCK, ...)."""
        return P_HEIGHT + be8(height) + kind

    # -- reads -------------------------------------------------------------------

    def block_bytes(self, height: int) -> bytes | None:
        if height > self.height:
            return None
        return self.blocks.get(self._height_key(height, K_BLOCK))

    def block(self, height: int) -> Block | None:
        data = self.block_bytes(height)
        if data is None:
            return None
        return _decoded(f"block {height}", lambda: Block.decode(data, check_txs=False))

    def certificate(self, height: int) -> CommitCertificate | None:
        data = None if height > self.height else self.blocks.get(self._height_key(height, K_CERT))
        if data is None:
            return None
        return _decoded(f"certificate of block {height}", lambda: CommitCertificate.decode(data))

    def state_root_at(self, height: int) -> bytes | None:
        if height == 0:
            return self.genesis.initial_state_root()
        return None if height > self.height else self.blocks.get(self._height_key(height, K_ROOT))

    def results_root_at(self, height: int) -> bytes | None:
        """The results root of block ``height`` (what block height+1's header carries)."""
        if height == 0:
            return EMPTY_RESULTS_ROOT
        if height > self.height:
            return None
        return self.blocks.get(self._height_key(height, K_RESULTS_ROOT))

    def results(self, height: int, count: int) -> list[TxResult]:
        """The results of the ``count`` transactions of block ``height``."""
        hb = be8(height)
        out = []
        for i in range(count):
            raw = self.blocks.get(_indexed(hb, K_RESULT, _BE4.pack(i)))
            if height > self.height:
                raise LedgerError(f"block {height} is not committed here")
            if raw is None:
                raise LedgerDamaged(f"the result of transaction {i} of block {height} is missing")
            out.append(
                _decoded(
                    f"result of transaction {i} of block {height}",
                    partial(_result_from, raw),
                )
            )
        return out

    def height_of(self, block_hash: bytes) -> int | None:
        data = self.store.get(P_HASH + block_hash)
        if data is None:
            return None
        if len(data) != 8:
            raise LedgerDamaged(f"the hash index entry of {block_hash.hex()} is corrupt")
        return int(_BE8.unpack(data)[0])

    def tx(self, tx_id: bytes) -> TxLocation | None:
        data = self.store.get(P_TX + tx_id)
        if data is None:
            return None
        f = _decoded("tx index", lambda: fields(unpack(data, 64, "tx index"), 2, "tx index"))
        height, index = _decoded("tx index", lambda: (as_int(f[0], "h"), as_int(f[1], "i")))
        if height > self.height:
            # Its block's batch is written and the tip not yet advanced (a commit in a
            # worker thread, or entries a crash left above the tip): not committed here.
            return None
        raw = self.blocks.get(_indexed(be8(height), K_RESULT, _BE4.pack(index)))
        if raw is None:
            raise LedgerDamaged(f"the result of transaction {tx_id.hex()} is missing")
        result = _decoded(
            f"result of transaction {tx_id.hex()}",
            lambda: TxResult.from_wire(unpack(raw, 2 * 1024 * 1024, "tx result")),
        )
        return TxLocation(height, index, result)

    def state_get(self, key: bytes) -> bytes | None:
        """Committed state, through a read cache (of keys that exist) that every commit updates."""
        return self._cache.get(key, self._load_state)

    def state_get_uncached(self, key: bytes) -> bytes | None:
        """Committed state, straight from the store: for keys read once (nonces)."""
        return self._load_state(key)

    def _load_state(self, key: bytes) -> bytes | None:
        raw = self.store.get(P_STATE + key)
        return raw if raw is None else self._value(key, raw)

    def _value(self, key: bytes, raw: bytes) -> bytes:
        """A state entry -> the value (inline, or in the block store)."""
        if raw[:1] == b"\x00":
            return raw[1:]
        if raw[:1] == b"\x01" and len(raw) == 13:
            value = self.blocks.get(_indexed(raw[1:9], K_VALUE, raw[9:13]))
            if value is not None:
                return value
            raise LedgerDamaged(f"state value of {key!r} is missing from the block store")
        raise LedgerDamaged(f"state entry {key!r} is corrupt")

    def state_scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        n = len(P_STATE)
        for k, v in self.store.scan(
            P_STATE + prefix, None if start is None else P_STATE + start, reverse
        ):
            key = k[n:]
            yield key, self._value(key, v)

    def index_get(self, key: bytes) -> bytes | None:
        return self.store.get(P_INDEX + key)

    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        n = len(P_INDEX)
        for k, v in self.store.scan(P_INDEX + prefix, None, reverse):
            yield k[n:], v


def verify_chain(
    ledger: Ledger, from_height: int = 1, progress: Callable[[int], None] | None = None
) -> list[str]:
    """Check every stored block: structure, hash chain, state and results roots
    carried in headers (results recomputed from the stored results), commit
    certificates, tx index. Returns a list of problems (empty: sound)."""
    problems: list[str] = []
    prev_hash = ledger.genesis_hash if from_height == 1 else None
    prev_root = ledger.state_root_at(from_height - 1)
    prev_results = ledger.results_root_at(from_height - 1)
    for h in range(from_height, ledger.height + 1):
        raw = ledger.block_bytes(h)
        if raw is None:
            problems.append(f"block {h} missing")
            break
        try:
            block = Block.decode(raw)
        except ValueError as exc:
            problems.append(f"block {h} undecodable: {exc}")
            break
        if block.height != h:
            problems.append(f"block stored at {h} says height {block.height}")
        if prev_hash is not None and block.header.prev_hash != prev_hash:
            problems.append(f"block {h} does not chain onto block {h - 1}")
        if block.header.state_root != prev_root:
            problems.append(
                f"block {h} carries a state root that is not the root after block {h - 1}"
            )
        if block.header.results_root != prev_results:
            problems.append(f"block {h} carries a results root that is not block {h - 1}'s")
        if ledger.height_of(block.hash) != h:
            problems.append(f"block {h} missing from the hash index")
        cert = ledger.certificate(h)
        if cert is None:
            problems.append(f"block {h} has no commit certificate")
        else:
            why = cert.verify(ledger.chain_id, ledger.validators, block.header)
            if why:
                problems.append(f"block {h} certificate invalid: {why}")
        for i, tx_id in enumerate(block.tx_ids()):
            try:
                loc = ledger.tx(tx_id)
            except (LedgerError, DecodeError, StorageDamaged) as exc:
                problems.append(f"block {h} tx {i}: tx index unreadable: {exc}")
                continue
            if loc is None or (loc.height, loc.index) > (h, i):
                problems.append(f"block {h} tx {i} missing from the tx index")
        prev_hash = block.hash
        prev_root = ledger.state_root_at(h)
        if prev_root is None:
            problems.append(f"block {h} has no state root")
            break
        try:
            results = ledger.results(h, len(block.txs))
            prev_results = results_root(block_receipts(block.tx_ids(), block.txs, results))
        except (LedgerError, DecodeError, StorageDamaged) as exc:
            problems.append(f"block {h}: results unreadable: {exc}")
            break
        if ledger.results_root_at(h) != prev_results:
            problems.append(f"block {h}: the stored results root does not match its results")
        if progress is not None:
            progress(1)
    tip_differs = (
        prev_hash != ledger.last_hash
        or prev_root != ledger.state_root
        or prev_results != ledger.results_root
    )
    if not problems and ledger.height >= from_height and tip_differs:
        problems.append("the tip does not match the last block")
    return problems
