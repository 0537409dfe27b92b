"""Proposals (the primary): how much to put in a block, when to cut it, sealing blocks.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import logging

from medchain.consensus.events import (
    MessageReceived,
    ProposeBatch,
)
from medchain.node.consensus.base import DriverState
from medchain.node.consensus.chain import propose_block
from medchain.node.consensus.validation import (
    check_proposal,
)

log = logging.getLogger("medchain.driver")

BATCH_TIMER = "batch"


class ProposerMixin(DriverState):
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
