"""Delivery: execute a committed block, commit it, tell who waits.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import trio

from medchain.consensus.events import (
    BatchExecuted,
    Deliver,
)
from medchain.consensus.messages import (
    Commit,
)
from medchain.node.consensus.base import DriverState
from medchain.node.mempool.ingress import P_WAL
from medchain.storage.block import Block, CommitCertificate
from medchain.storage.codec import DecodeError
from medchain.storage.ledger import LedgerError
from medchain.storage.state import TxResult

log = logging.getLogger("medchain.driver")


class DeliveryMixin(DriverState):
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
        self.pool.remove_committed_nonces(self.executor.committed_nonces(executed.writes))
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


def commits_from_certificate(cert: CommitCertificate) -> tuple[Commit, ...]:
    return tuple(Commit(cert.view, cert.seq, cert.block_hash, i, sig) for i, sig in cert.votes)


def certificate_from_commits(commits: tuple[Commit, ...]) -> CommitCertificate:
    c0 = commits[0]
    votes = tuple(sorted((c.sender, c.signature) for c in commits))
    return CommitCertificate(c0.seq, c0.view, c0.digest, votes)
