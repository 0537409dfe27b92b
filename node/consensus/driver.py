"""The consensus driver: the replica's hands.

One task (``_main``) owns the replica and the ledger and processes one input
at a time: verified messages, timers, proposals, executed blocks. For every
``replica.handle`` it carries out the returned actions in order — Persist
before the sends after it, Deliver by executing and committing the block in
one synced write batch, FetchState by asking a peer. Signature checks and
block execution run in worker threads so the event loop stays responsive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from consensus.config import ReplicaConfig
from consensus.events import (
    Action,
    BatchExecuted,
    Broadcast,
    CancelTimer,
    Deliver,
    Event,
    FetchState,
    Halt,
    MessageReceived,
    PendingWork,
    Persist,
    ProposeBatch,
    Report,
    Send,
    SetTimer,
    Start,
    StateFetched,
)
from consensus.events import TimerFired as ReplicaTimer
from consensus.messages import (
    Commit,
    CommittedEntry,
    Message,
    NewView,
    PrePrepare,
    StateReply,
    StateRequest,
    decode_message,
)
from consensus.replica import Replica, Restored
from consensus.verify import Ed25519Verifier, verify_message
from contracts.runtime import NONCE_NS, Executor, nonce_key
from node.consensus.catchup import CatchUp, CatchUpConfig
from node.consensus.chain import propose_block
from node.consensus.store import ConsensusStore
from node.consensus.validation import (
    MAX_TX_BATCH,
    block_digest,
    check_proposal,
    decode_and_verify_block,
    decode_tx_batch,
    encode_tx_batch,
)
from node.mempool.pool import PooledTx, PoolReject, TxPool, check_tx
from node.net.transport import CHANNEL_CONSENSUS, CHANNEL_SYNC, CHANNEL_TXS, Incoming, Transport
from node.ops import memory
from node.ops.metrics import Metrics
from node.rpc.events import EventHub
from storage.block import Block, CommitCertificate
from storage.codec import DecodeError
from storage.crypto import Signer, sha256
from storage.genesis import Genesis
from storage.kv import KVStore, StoreError
from storage.ledger import Ledger, LedgerError
from storage.state import TxResult
from storage.tx import Transaction

log = logging.getLogger("medchain.driver")

BATCH_TIMER = "batch"
REBROADCAST_MAX = 64  # pending transactions sent to every replica per check (4 a second)
P_WAL = b"W"  # acknowledged, not yet committed transactions (the pool's write-ahead log)


@dataclass(frozen=True)
class DriverConfig:
    pool_max_txs: int = 200_000
    pool_max_bytes: int = 256 * 1024 * 1024
    forward_interval_ms: int = 20  # forwarded transactions are batched: writes cost CPU
    block_interval_ms: int = 40  # the primary proposes at most one block per interval
    max_state_entries: int = 64
    max_state_bytes: int = 16 * 1024 * 1024
    max_inflight: int = 1  # a block's header needs its predecessor's state root
    offload: bool = True  # execute and commit in worker threads
    # An idle primary proposes an empty block this long after a block with transactions,
    # so that their outcomes (carried by the next header) are certified without waiting
    # for more traffic: an evidence certificate needs that next block.
    seal_delay_ms: int = 250
    # Probes for batches we lack when links come up and while idle (node.consensus.catchup).
    catch_up: CatchUpConfig = field(default_factory=CatchUpConfig)


def commits_from_certificate(cert: CommitCertificate) -> tuple[Commit, ...]:
    return tuple(Commit(cert.view, cert.seq, cert.block_hash, i, sig) for i, sig in cert.votes)


def certificate_from_commits(commits: tuple[Commit, ...]) -> CommitCertificate:
    c0 = commits[0]
    votes = tuple(sorted((c.sender, c.signature) for c in commits))
    return CommitCertificate(c0.seq, c0.view, c0.digest, votes)


class Driver:
    def __init__(
        self,
        genesis: Genesis,
        ledger: Ledger,
        executor: Executor,
        signer: Signer,
        transport: Transport,
        config: DriverConfig | None = None,
        clock: Callable[[], int] | None = None,
        local: KVStore | None = None,
    ) -> None:
        self.genesis = genesis
        self.ledger = ledger
        # This node's own scratch state — the pool's write-ahead log and the replica's
        # Persist records: keys written and soon deleted, kept out of the ledger's
        # LevelDB so its compactions only move the ledger (default: the ledger's store).
        self.local: KVStore = ledger.store if local is None else local
        self.executor = executor
        self.signer = signer
        self.transport = transport
        self.cfg = config or DriverConfig()
        self.clock = clock or (lambda: int(time.time() * 1000))
        validators = genesis.validators
        index = validators.index_of(signer.public_key)
        if index is None:
            raise ValueError("this node's key is not a validator in the genesis")
        self.index = index
        self.n = validators.n
        self.peers = [i for i in range(self.n) if i != index]
        self.verifier = Ed25519Verifier(validators.keys)
        p = genesis.consensus
        self.replica_cfg = ReplicaConfig(
            chain_id=genesis.chain_id,
            n=validators.n,
            index=index,
            checkpoint_interval=p.checkpoint_interval,
            log_window=p.log_window,
            max_inflight=self.cfg.max_inflight,
            view_change_timeout_ms=p.view_change_timeout_ms,
            max_clock_drift_ms=p.max_clock_drift_ms,
            digest_fn=block_digest,
        )
        self.store = ConsensusStore(self.local)
        self.replica = Replica(self.replica_cfg, signer.sign, self._restored())
        self.pool = TxPool(self.cfg.pool_max_txs, self.cfg.pool_max_bytes, self._nonce_used)
        self.events = EventHub()
        self.metrics = Metrics()
        self.halted: str | None = None
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[str, Any]](100_000)
        self._timers: dict[str, float] = {}  # name -> trio deadline
        self._timers_changed = trio.Event()
        self._proposed: set[bytes] = set()
        self._proposed_view = -1
        self._forwarded_to_primary = -1
        self._wal: set[bytes] = set()  # ids of acknowledged transactions in the write-ahead log
        self._validated_blocks: dict[bytes, Block] = {}  # digest -> decoded block, until delivered
        self._broadcasted: set[bytes] = set()
        self._last_inclusion_ms = 0  # when a block last carried one of our pool's transactions
        # ids of transactions checked inside proposed blocks (not in our pool), until the
        # block is delivered: execution decodes them without checking them again
        self._checked: OrderedDict[bytes, None] = OrderedDict()
        self._last_proposal_ms = 0
        tip = ledger.block(ledger.height) if ledger.height else None
        self._tip_unsealed = tip is not None and len(tip.txs) > 0  # its outcomes not yet certified
        self._last_commit_ms = 0
        self._exec_ms_per_tx = 0.0  # moving average: what a transaction costs to execute here
        self._pending_pp: dict[int, tuple[PrePrepare, Block]] = {}
        self._forward: list[bytes] = []
        self._forward_wake = trio.Event()
        self._pending_flag = False
        self._fetch_peer = 0
        self._recent_rejects: dict[bytes, str] = {}
        self._commit_waiters: dict[bytes, _Waiters] = {}
        # Other services on the transport (the record fetch protocol) register here.
        self.channel_handlers: dict[str, Callable[[Incoming], Awaitable[None]]] = {}

    def _restored(self) -> Restored | None:
        persisted = self.store.load()
        if (
            self.ledger.seq == 0
            and persisted.view == 0
            and not persisted.slots
            and persisted.stable_seq == 0
        ):
            return None
        proof: tuple[Commit, ...] = ()
        entry = self.ledger.seq_entry(self.ledger.seq) if self.ledger.seq else None
        if entry is not None:
            proof = commits_from_certificate(entry[1])
        return Restored(persisted, self.ledger.seq, proof, self.ledger.last_timestamp_ms)

    def _nonce_used(self, sender: bytes, nonce: int) -> bool:
        # Not through the state read cache: each nonce is used once, so a cached
        # one is never asked for again (and replays would fill the cache).
        return self.ledger.state_get_uncached(nonce_key(sender, nonce)) is not None

    # -- running ------------------------------------------------------------------

    def _recover_pool(self) -> None:
        """Re-admit the transactions we acknowledged before a crash and had not committed."""
        stale: dict[bytes, bytes | None] = {}
        for key, raw in self.local.scan(P_WAL):
            tx_id = key[len(P_WAL) :]
            if self.ledger.tx(tx_id) is not None:
                stale[key] = None
                continue
            try:
                tx = check_tx(raw, self.genesis.chain_id, self.genesis.consensus.max_tx_bytes)
                if not tx.verify_signature():
                    raise PoolReject("bad-signature", "bad signature")
                self.pool.admit(tx, raw, self.clock())
            except PoolReject:
                stale[key] = None
                continue
            self._wal.add(tx_id)
            self._forward.append(raw)
        if stale:
            self.local.write(stale, sync=False)
        if self._wal:
            log.info(
                "re-admitted %d acknowledged transactions after a restart",
                len(self._wal),
                extra={"event": "pool-recovered"},
            )

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._recover_pool()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._forward_loop)
            nursery.start_soon(self._catch_up_loop)
            await self._apply(Start())
            task_status.started()
            await self._main()

    async def _main(self) -> None:
        while True:
            kind, item = await self._inbox.receive()
            if self.halted:
                continue
            try:
                await self._process(kind, item)
            except LedgerError as exc:
                # The ledger refused a write: never carry on with state we cannot keep.
                self.halted = self.halted or f"ledger error: {exc}"
                log.critical("HALT: %s", self.halted, extra={"event": "halt"})
            except StoreError as exc:
                # A write that did not reach the disk (or a read of damaged data): what
                # this node promised — a vote, an acknowledged transaction — may be lost
                # if it carried on, so it stops here.
                self.halted = self.halted or f"storage failed: {exc}"
                log.critical("HALT: %s", self.halted, extra={"event": "halt"})
            except Exception:
                # A bug triggered by one input must not take the node down: drop it, say so.
                log.exception(
                    "driver failed on a %s input; dropped", kind, extra={"event": "driver-error"}
                )

    async def _process(self, kind: str, item: Any) -> None:
        if kind == "event":
            await self._apply(item)
        elif kind == "pp":
            pp, block = item
            self._pending_pp[pp.seq] = (pp, block)
            self._validated_blocks[pp.digest] = block
            while len(self._validated_blocks) > 64:
                del self._validated_blocks[next(iter(self._validated_blocks))]
            await self._validate_pending()
        elif kind == "state":
            await self._consume_state(item)
        await self._after_input()

    async def _after_input(self) -> None:
        pending = len(self.pool) > 0
        if pending != self._pending_flag:
            self._pending_flag = pending
            await self._apply(PendingWork(pending))
        await self._maybe_propose()

    def post(self, kind: str, item: Any = None) -> None:
        try:
            self._inbox_send.send_nowait((kind, item))
        except trio.WouldBlock:
            log.warning("driver inbox full; dropping %s", kind)

    # -- replica actions ----------------------------------------------------------

    async def _apply(self, event: Event) -> None:
        actions = self.replica.handle(event, self.clock())
        await self._carry_out(actions)

    async def _carry_out(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Persist):
                self.store.save(a.record)  # type: ignore[arg-type]
            elif isinstance(a, Broadcast):
                self.transport.broadcast(self.peers, CHANNEL_CONSENSUS, a.msg.encode())
            elif isinstance(a, Send):
                self.transport.send(a.to, CHANNEL_CONSENSUS, a.msg.encode())
            elif isinstance(a, SetTimer):
                self._set_timer(a.name, a.delay_ms)
            elif isinstance(a, CancelTimer):
                self._timers.pop(a.name, None)
            elif isinstance(a, Deliver):
                await self._deliver(a)
            elif isinstance(a, FetchState):
                self._fetch(a.from_seq, a.to_seq)
            elif isinstance(a, Report):
                self._report(a)
            elif isinstance(a, Halt):
                self.halted = a.reason
                log.critical("HALT: %s", a.reason, extra={"event": "halt", "reason": a.reason})

    def _report(self, r: Report) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING}.get(r.level, logging.ERROR)
        extra: dict[str, Any] = {"event": "consensus"}
        if r.offender is not None:
            extra["offender"] = self.genesis.organizations[r.offender].org_id
        log.log(level, r.text, extra=extra)
        if r.offender is not None:
            self.metrics.offenses[r.offender] = self.metrics.offenses.get(r.offender, 0) + 1

    def _set_timer(self, name: str, delay_ms: int) -> None:
        self._timers[name] = trio.current_time() + delay_ms / 1000
        self._timers_changed.set()

    async def _timer_loop(self) -> None:
        while True:
            self._timers_changed = trio.Event()
            deadline = min(self._timers.values(), default=float("inf"))
            with trio.move_on_at(deadline):
                await self._timers_changed.wait()
                continue
            now = trio.current_time()
            for name, at in list(self._timers.items()):
                if at <= now:
                    del self._timers[name]
                    if name == BATCH_TIMER:
                        self.post("poke")
                    else:
                        self.post("event", ReplicaTimer(name))

    # -- delivery: execute and commit ---------------------------------------------

    async def _deliver(self, d: Deliver) -> None:
        cert = certificate_from_commits(d.certificate)
        started = time.perf_counter()
        if d.is_null:
            self.ledger.commit_null(d.seq, cert)
            await self._apply(BatchExecuted(d.seq, self.ledger.state_root))
            return
        try:
            block = self._validated_blocks.pop(d.digest, None) or Block.decode(
                d.batch, check_txs=False
            )
            self.ledger.check_next(block)
        except (DecodeError, LedgerError) as exc:
            # A certified block that does not extend our ledger: our state diverged.
            self.halted = f"committed block at seq {d.seq} does not apply: {exc}"
            log.critical("HALT: %s", self.halted, extra={"event": "halt"})
            return
        checked = set()
        for tx_id in block.tx_ids():
            if tx_id in self.pool:
                checked.add(tx_id)
            elif tx_id in self._checked:
                del self._checked[tx_id]  # needed once
                checked.add(tx_id)
        execute = partial(self.executor.execute, checked=checked)
        if self.cfg.offload:
            executed = await trio.to_thread.run_sync(execute, self.ledger, block)
            await trio.to_thread.run_sync(self.ledger.commit_block, executed, cert, d.seq)
        else:
            executed = execute(self.ledger, block)
            self.ledger.commit_block(executed, cert, d.seq)
        now = self.clock()
        tx_ids = block.tx_ids()
        for tx_id in tx_ids:
            pooled = self.pool.get(tx_id)
            if pooled is not None:
                self.metrics.observe_commit(now - pooled.received_ms)
                self._last_inclusion_ms = now
        self.pool.remove(tx_ids)
        done = [t for t in tx_ids if t in self._wal]
        if done:
            self._wal.difference_update(done)
            self.local.write({P_WAL + t: None for t in done}, sync=False)
        n = len(NONCE_NS)
        self.pool.remove_committed_nonces(
            (k[n : n + 32], int.from_bytes(k[n + 32 :], "big"))
            for k in executed.writes
            if k.startswith(NONCE_NS)
        )
        self._proposed.difference_update(tx_ids)
        self._tip_unsealed = len(tx_ids) > 0
        self._last_commit_ms = now
        self.metrics.blocks += 1
        self.metrics.txs += len(tx_ids)
        exec_ms = (time.perf_counter() - started) * 1000
        self.metrics.block_exec_ms.append(exec_ms)
        if len(tx_ids) >= 20:
            per_tx = exec_ms / len(tx_ids)
            a = self._exec_ms_per_tx
            self._exec_ms_per_tx = per_tx if a == 0 else 0.8 * a + 0.2 * per_tx
        self._publish(block, tx_ids, executed.results)
        for tx_id in tx_ids:
            w = self._commit_waiters.pop(tx_id, None)
            if w is not None:
                w.event.set()
        await self._apply(BatchExecuted(d.seq, self.ledger.state_root))
        await self._validate_pending()

    def _publish(self, block: Block, tx_ids: list[bytes], results: Any) -> None:
        if not self.events.subscribers:
            return
        h = block.header
        self.events.publish(
            {
                "kind": "block",
                "height": h.height,
                "hash": block.hash.hex(),
                "txs": len(tx_ids),
                "timestamp_ms": h.timestamp_ms,
                "state_root": self.ledger.state_root.hex(),
            }
        )
        for tx_id, res in zip(tx_ids, results, strict=True):
            assert isinstance(res, TxResult)
            for e in res.events:
                self.events.publish(
                    {
                        "kind": "event",
                        "contract": e.contract,
                        "name": e.name,
                        "attrs": e.attrs,
                        "tx_id": tx_id.hex(),
                        "height": h.height,
                    }
                )

    # -- proposals (primary) --------------------------------------------------------

    def batch_cap(self) -> int:
        """At most batch_max_txs, and no more than executes in a sixth of the view-change
        timeout: a replica waiting longer than that timeout for the next block suspects
        the primary, so an overloaded primary that cut huge blocks of expensive
        transactions would be replaced again and again (throughput collapses). Smaller
        blocks under heavy chaincode keep every replica's progress timer fed."""
        params = self.genesis.consensus
        per_tx = self._exec_ms_per_tx
        if per_tx <= 0:
            return params.batch_max_txs
        budget_ms = params.view_change_timeout_ms / 6
        return max(50, min(params.batch_max_txs, int(budget_ms / per_tx)))

    async def _maybe_propose(self) -> None:
        r = self.replica
        if self.halted or not r.can_propose() or r.delivered != self.ledger.seq:
            return
        if self._proposed_view != r.view:
            self._proposed.clear()  # proposals of an earlier view were abandoned: offer them again
            self._proposed_view = r.view
        params = self.genesis.consensus
        unproposed = len(self.pool) - len(self._proposed)
        now = self.clock()
        if unproposed <= 0:
            if self._tip_unsealed:
                await self._seal(now)
            return
        max_txs = self.batch_cap()
        if unproposed < max_txs:
            # Cheap checks first (this runs after every input): wait for the batch timer
            # since the oldest pending transaction, and at least block_interval_ms since the
            # last proposal (fewer, fuller blocks: every block costs a round of messages).
            oldest = self.pool.oldest_ms() or now
            wait = max(
                params.batch_timeout_ms - (now - oldest),
                self.cfg.block_interval_ms - (now - self._last_proposal_ms),
            )
            if wait > 0:
                if BATCH_TIMER not in self._timers:
                    self._set_timer(BATCH_TIMER, wait)
                return
        batch = self.pool.take(max_txs, params.batch_max_bytes, self._proposed)
        if not batch:
            return
        self._last_proposal_ms = now
        ts = max(now, self.ledger.last_timestamp_ms + 1, r.last_proposed_ts() + 1)
        block = propose_block(self.ledger, [p.raw for p in batch], ts, self.signer.public_key)
        self._validated_blocks[block.hash] = block
        self._proposed.update(p.tx_id for p in batch)
        self.metrics.proposed += 1
        await self._apply(ProposeBatch(block.encode(), ts))

    async def _seal(self, now: int) -> None:
        """Propose an empty block after the last block with transactions: its header
        carries their results root, signed by its commit certificate."""
        wait = self.cfg.seal_delay_ms - (now - self._last_commit_ms)
        if wait > 0:
            if BATCH_TIMER not in self._timers:
                self._set_timer(BATCH_TIMER, wait)
            return
        r = self.replica
        self._last_proposal_ms = now
        ts = max(now, self.ledger.last_timestamp_ms + 1, r.last_proposed_ts() + 1)
        block = propose_block(self.ledger, [], ts, self.signer.public_key)
        self._validated_blocks[block.hash] = block
        self.metrics.proposed += 1
        await self._apply(ProposeBatch(block.encode(), ts))

    async def _validate_pending(self) -> None:
        """Feed the replica the pre-prepare that extends our ledger, once we can check it."""
        while True:
            seq = self.ledger.seq + 1
            item = self._pending_pp.pop(seq, None)
            for s in [s for s in self._pending_pp if s < seq]:
                del self._pending_pp[s]
            if item is None:
                return
            pp, block = item
            proposer = self.genesis.validators.keys[pp.sender]
            why = check_proposal(pp, block, self.ledger, proposer)
            if why:
                org = self.genesis.organizations[pp.sender].org_id
                log.warning(
                    "rejected proposal %d from %s: %s",
                    pp.seq,
                    org,
                    why,
                    extra={"event": "bad-proposal", "offender": org},
                )
                self.metrics.offenses[pp.sender] = self.metrics.offenses.get(pp.sender, 0) + 1
                continue
            await self._apply(MessageReceived(pp))

    # -- network input ------------------------------------------------------------

    async def _receive_loop(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                msg = await self.transport.receive()
                if msg.channel == CHANNEL_CONSENSUS:
                    self._on_consensus_frame(msg, nursery)
                elif msg.channel == CHANNEL_TXS:
                    nursery.start_soon(_guarded, self._on_forwarded_txs, msg)
                elif msg.channel == CHANNEL_SYNC:
                    nursery.start_soon(_guarded, self._on_sync_frame, msg)
                elif msg.channel in self.channel_handlers:
                    nursery.start_soon(_guarded, self.channel_handlers[msg.channel], msg)

    def _decode_from(self, msg: Incoming) -> Message | None:
        try:
            m = decode_message(msg.payload)
        except DecodeError as exc:
            self._garbage(msg.peer, f"undecodable consensus message: {exc}")
            return None
        if m.sender != msg.peer and not isinstance(m, NewView):
            self._garbage(msg.peer, f"message claims to be from replica {m.sender}")
            return None
        return m

    def _garbage(self, peer: int, why: str) -> None:
        org = self.genesis.organizations[peer].org_id
        self.metrics.offenses[peer] = self.metrics.offenses.get(peer, 0) + 1
        log.warning("from %s: %s", org, why, extra={"event": "bad-message", "offender": org})

    def _on_consensus_frame(self, msg: Incoming, nursery: trio.Nursery) -> None:
        m = self._decode_from(msg)
        if m is None:
            return
        nursery.start_soon(_guarded, self._verify_and_post, msg.peer, m)

    async def _verify_and_post(self, peer: int, m: Message) -> None:
        chain = self.genesis.chain_id
        if isinstance(m, PrePrepare):
            known = self.pool
            try:
                why = verify_message(m, chain, self.verifier)
                if why is None:
                    block, fresh = await trio.to_thread.run_sync(
                        decode_and_verify_block, m.batch, self.genesis, _Known(known)
                    )
                    self._remember_checked(fresh)
            except DecodeError as exc:
                why = f"invalid proposal: {exc}"
            if why:
                self._garbage(peer, why)
                return
            self.post("pp", (m, block))
            return
        why = (
            await trio.to_thread.run_sync(verify_message, m, chain, self.verifier)
            if _heavy(m)
            else verify_message(m, chain, self.verifier)
        )
        if why:
            self._garbage(peer, why)
            return
        self.post("event", MessageReceived(m))

    # -- transactions ---------------------------------------------------------------

    async def submit(self, raw: bytes) -> bytes:
        """Admit a client's transaction: checks, pool, forward to peers. Raises PoolReject."""
        try:
            tx = check_tx(raw, self.genesis.chain_id, self.genesis.consensus.max_tx_bytes)
            if not tx.verify_signature():  # one check: cheaper inline than a thread hop
                raise PoolReject("bad-signature", "transaction signature does not verify")
            tx_id = self.pool.admit(tx, raw, self.clock())
        except PoolReject as exc:
            if exc.code == "replayed" and self.ledger.tx(sha256(raw)) is not None:
                # A committed transaction always used its nonce, so the pool's nonce
                # check is what finds it: no tx-index read for every new transaction.
                exc = PoolReject("duplicate", "transaction is already committed")
            self._remember_reject(sha256(raw), f"{exc.code}: {exc}")
            raise exc from None
        # Acknowledged means kept: the pool's write-ahead entry survives a crash (a
        # write() that returned is in the kernel even if the process is SIGKILLed).
        self.local.write({P_WAL + tx_id: raw}, sync=False)
        self._wal.add(tx_id)
        self._forward.append(raw)
        self._forward_wake.set()
        self.post("poke")
        return tx_id

    def _remember_checked(self, tx_ids: list[bytes]) -> None:
        self._checked.update(dict.fromkeys(tx_ids))
        while len(self._checked) > 20_000:  # blocks validated but never delivered
            self._checked.popitem(last=False)

    def _remember_reject(self, tx_id: bytes, why: str) -> None:
        self._recent_rejects[tx_id] = why
        if len(self._recent_rejects) > 10_000:
            del self._recent_rejects[next(iter(self._recent_rejects))]

    def rejection(self, tx_id: bytes) -> str | None:
        return self._recent_rejects.get(tx_id)

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> bool:
        if self.ledger.tx(tx_id) is not None:
            return True
        w = self._commit_waiters.get(tx_id)
        if w is None:
            w = self._commit_waiters[tx_id] = _Waiters()
        w.count += 1
        try:
            with trio.move_on_after(timeout_s):
                await w.event.wait()
        finally:  # the last one to give up forgets the transaction
            w.count -= 1
            if w.count == 0 and self._commit_waiters.get(tx_id) is w:
                del self._commit_waiters[tx_id]
        return self.ledger.tx(tx_id) is not None

    async def _forward_loop(self) -> None:
        """New transactions go to the primary, the one node that needs them now (the
        backups verify them once, inside its block). Should the primary change, every
        pending transaction is sent to the new one; should one stay pending for half a
        view-change timeout while blocks carry none of ours, it goes to everyone, so that
        every replica's progress timer runs and a silent primary is replaced (PBFT's
        client rebroadcast). While blocks do carry ours, a backlog is congestion, and
        rebroadcasting would only add work (every replica verifying it again): then
        only a transaction pending for 4 timeouts (censored?) goes to everyone.
        Either way at most REBROADCAST_MAX every 250 ms, oldest first: a few pending
        transactions start every replica's timer as well as thousands would, while
        rebroadcasting a whole backlog would make every replica verify it again, and
        after a short stall that work would grow the backlog instead of draining it.
        (Nothing pending is lost by the cap: when the view changes, every node
        forwards its whole pool to the new primary.)"""
        half_timeout = self.genesis.consensus.view_change_timeout_ms // 2
        censored = 8 * half_timeout
        last_check = 0
        while True:
            with trio.move_on_after(0.25):
                await self._forward_wake.wait()
            self._forward_wake = trio.Event()
            await trio.sleep(self.cfg.forward_interval_ms / 1000)
            primary = self.replica.primary
            if self.replica.normal and primary != self._forwarded_to_primary:
                self._forwarded_to_primary = primary
                if primary != self.index:
                    self._forward = [p.raw for p in self.pool.by_age()]
            batch, self._forward = self._forward, []
            if batch and primary != self.index:
                self._send_txs([primary], batch)
            now = self.clock()
            if now - last_check >= 250:
                last_check = now
                limit = half_timeout if now - self._last_inclusion_ms > half_timeout else censored
                stale: list[PooledTx] = []
                for p in self.pool.by_age():
                    if now - p.received_ms <= limit or len(stale) >= REBROADCAST_MAX:
                        break
                    if p.tx_id not in self._broadcasted:
                        stale.append(p)
                if stale:
                    self._broadcasted.update(p.tx_id for p in stale)
                    self._send_txs(self.peers, [p.raw for p in stale])
                if len(self._broadcasted) > 2 * len(self.pool) + 1000:
                    self._broadcasted = {t for t in self._broadcasted if t in self.pool}

    def _send_txs(self, peers: list[int], raws: list[bytes]) -> None:
        for i in range(0, len(raws), MAX_TX_BATCH):
            data = encode_tx_batch(raws[i : i + MAX_TX_BATCH])
            self.transport.broadcast(peers, CHANNEL_TXS, data)

    async def _on_forwarded_txs(self, msg: Incoming) -> None:
        chain, limit = self.genesis.chain_id, self.genesis.consensus.max_tx_bytes
        try:
            raws = decode_tx_batch(msg.payload, limit)
        except DecodeError as exc:
            self._garbage(msg.peer, f"undecodable transaction batch: {exc}")
            return

        # Skip what we already hold before paying for a signature check: after a view
        # change or a rebroadcast, most of a batch is transactions already in our pool.
        # (Committed ones are refused by the pool's own duplicate check.)
        raws = [r for r in raws if sha256(r) not in self.pool]
        if not raws:
            return

        def check_all() -> list[tuple[Transaction, bytes] | str]:
            out: list[tuple[Transaction, bytes] | str] = []
            for raw in raws:
                try:
                    tx = check_tx(raw, chain, limit)
                except PoolReject as exc:
                    out.append(str(exc))
                    continue
                if self._nonce_used(tx.sender, tx.nonce):
                    continue  # committed already (a rebroadcast): not worth a signature check
                out.append((tx, raw) if tx.verify_signature() else "bad signature")
            return out

        bad = 0
        # Small batches are cheaper to check inline than to hand to a thread.
        checked = check_all() if len(raws) <= 16 else await trio.to_thread.run_sync(check_all)
        for item in checked:
            if isinstance(item, str):
                bad += 1
                continue
            tx, raw = item
            # Already have it, already committed, or full: the origin node still has it.
            with contextlib.suppress(PoolReject):
                self.pool.admit(tx, raw, self.clock())
        if bad:
            self._garbage(msg.peer, f"forwarded {bad} invalid transactions")
        self.post("poke")

    # -- state transfer -------------------------------------------------------------

    def _fetch(self, from_seq: int, to_seq: int) -> None:
        peers = sorted(self.transport.connected()) or self.peers
        if not peers:
            return
        self._fetch_peer = (self._fetch_peer + 1) % len(peers)
        self._request_state(peers[self._fetch_peer], from_seq, to_seq)

    def _request_state(self, peer: int, from_seq: int, to_seq: int) -> None:
        req = StateRequest(from_seq, to_seq, self.index).signed(
            self.genesis.chain_id, self.signer.sign
        )
        self.transport.send(peer, CHANNEL_SYNC, req.encode())

    async def _catch_up_loop(self) -> None:
        """Ask peers for the batch after ours when a link comes up and while idle: an
        idle consortium sends nothing else that would tell a node it is behind. A reply
        carrying that batch makes ``_consume_state`` fetch the rest from its sender."""
        probes = CatchUp(self.cfg.catch_up)
        while True:
            await trio.sleep(self.cfg.catch_up.poll_ms / 1000)
            if self.halted:
                continue
            nxt = self.replica.delivered + 1
            for peer in probes.tick(self.clock(), self.transport.connected(), nxt - 1):
                self._request_state(peer, nxt, nxt)

    async def _on_sync_frame(self, msg: Incoming) -> None:
        m = self._decode_from(msg)
        if m is None:
            return
        if isinstance(m, StateRequest):
            if verify_message(m, self.genesis.chain_id, self.verifier) is None:
                self._serve_state(m)
        elif isinstance(m, StateReply):
            why = await trio.to_thread.run_sync(
                verify_message, m, self.genesis.chain_id, self.verifier
            )
            if why:
                self._garbage(msg.peer, why)
                return
            self.post("state", m)

    def _serve_state(self, req: StateRequest) -> None:
        last = self.ledger.seq
        hi = last if req.to_seq == 0 else min(req.to_seq, last)
        hi = min(hi, req.from_seq + self.cfg.max_state_entries - 1)
        entries: list[CommittedEntry] = []
        size = 0
        for seq in range(max(1, req.from_seq), hi + 1):
            item = self.ledger.seq_entry(seq)
            if item is None:
                break
            height, cert = item
            batch = b"" if height == 0 else (self.ledger.block_bytes(height) or b"")
            entries.append(CommittedEntry(seq, batch, commits_from_certificate(cert)))
            size += len(batch)
            if size >= self.cfg.max_state_bytes:
                break
        reply = StateReply(last, tuple(entries), self.index).signed(
            self.genesis.chain_id, self.signer.sign
        )
        self.transport.send(req.sender, CHANNEL_SYNC, reply.encode())

    async def _consume_state(self, reply: StateReply) -> None:
        before = self.ledger.seq
        for e in reply.entries:
            await self._apply(StateFetched(e))
        after = self.ledger.seq
        if after > before:
            self.metrics.state_transfer_batches += after - before
            log.info(
                "state transfer: applied seq %d..%d from %s",
                before + 1,
                after,
                self.genesis.organizations[reply.sender].org_id,
                extra={"event": "state-transfer"},
            )
            if reply.last_seq > after:
                req = StateRequest(after + 1, 0, self.index).signed(
                    self.genesis.chain_id, self.signer.sign
                )
                self.transport.send(reply.sender, CHANNEL_SYNC, req.encode())

    def query(self, contract: str, method: str, args: Any, caller: bytes = b"") -> Any:
        """A read-only chaincode query against the committed state (raises ChaincodeError)."""
        return self.executor.query(
            self.ledger,
            contract,
            method,
            args,
            self.ledger.height,
            self.ledger.last_timestamp_ms,
            caller=caller,
        )

    # -- status ---------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """Sizes of everything that grows with traffic: each has a bound (soak test)."""
        r = self.replica
        stores = {id(s): s for s in (self.ledger.store, self.ledger.blocks, self.local)}
        leveldb_kb = sum(getattr(s, "memory_kb", lambda: 0)() for s in stores.values())
        return {
            "rss_kb": _rss_kb(),
            **memory.malloc_info(),
            "leveldb_kb": leveldb_kb,
            "python_blocks": sys.getallocatedblocks(),
            "pool_txs": len(self.pool),
            "checked_txs": len(self._checked),
            "validated_blocks": len(self._validated_blocks),
            "pending_preprepares": len(self._pending_pp),
            "proposed": len(self._proposed),
            "broadcasted": len(self._broadcasted),
            "wal": len(self._wal),
            "commit_waiters": len(self._commit_waiters),
            "recent_rejects": len(self._recent_rejects),
            "state_cache": len(self.ledger._cache),
            "replica_slots": len(r.slots),
            "replica_certs": len(r.prepared_certs) + len(r.certified) + len(r.fetched),
            "replica_checkpoints": len(r.checkpoint_votes) + len(r.exec_roots),
            "replica_future": sum(len(v) for v in r.future.values()),
            "subscribers": len(self.events.subscribers),
        }

    def status(self) -> dict[str, Any]:
        r = self.replica
        return {
            "chain_id": self.genesis.chain_id,
            "org": self.genesis.organizations[self.index].org_id,
            "height": self.ledger.height,
            "seq": self.ledger.seq,
            "view": r.view,
            "view_changing": not r.normal,
            "primary": self.genesis.organizations[r.primary].org_id,
            "is_primary": r.is_primary,
            "state_root": self.ledger.state_root.hex(),
            "last_block_hash": self.ledger.last_hash.hex(),
            "peers": sorted(
                self.genesis.organizations[i].org_id for i in self.transport.connected()
            ),
            "pool": len(self.pool),
            "halted": self.halted,
        }


class _Known:
    """Membership test against the pool (transactions whose signatures we checked)."""

    def __init__(self, pool: TxPool) -> None:
        self.pool = pool

    def __contains__(self, tx_id: object) -> bool:
        return isinstance(tx_id, bytes) and tx_id in self.pool

    def __len__(self) -> int:
        return len(self.pool)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())


def _heavy(m: Message) -> bool:
    from consensus.messages import ViewChange

    return isinstance(m, ViewChange | NewView | StateReply)


async def _guarded(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a per-message task; an unexpected error is logged, never fatal to the node
    (storage failures halt it: the store's failure hook has said so already)."""
    try:
        await fn(*args)
    except StoreError as exc:
        log.error("storage failed handling a network message: %s", exc, extra={"event": "halt"})
    except Exception:
        log.exception("failed handling a network message; dropped", extra={"event": "driver-error"})


class _Waiters:
    """Clients waiting for one transaction to commit."""

    __slots__ = ("count", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.count = 0


def _rss_kb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0
