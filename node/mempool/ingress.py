"""Transactions in: admit a client's transaction (pool, write-ahead log), forward to the other members, accept what they forward, tell clients when theirs commit.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import contextlib
import logging

import trio

from medchain.node.consensus.base import DriverState
from medchain.node.consensus.inbox import POKE
from medchain.node.consensus.validation import (
    MAX_TX_BATCH,
    decode_tx_batch,
    encode_tx_batch,
)
from medchain.node.mempool.pool import PooledTx, PoolReject, TxPool, check_tx
from medchain.node.net.transport import CHANNEL_TXS, Incoming
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import sha256
from medchain.storage.tx import Transaction

log = logging.getLogger("medchain.driver")

REBROADCAST_MAX = 64  # pending transactions sent to every replica per check (4 a second)
P_WAL = b"W"  # acknowledged, not yet committed transactions (the pool's write-ahead log)


class IngressMixin(DriverState):
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
        self.post(POKE)
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
        self.post(POKE)


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


class _Waiters:
    """Clients waiting for one transaction to commit."""

    __slots__ = ("count", "event")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.count = 0
