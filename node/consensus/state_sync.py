"""State transfer: ask peers for committed blocks with their certificates, serve them, consume what arrives.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import logging

import trio

from medchain.consensus.events import (
    StateFetched,
)
from medchain.consensus.messages import (
    CommittedEntry,
    StateReply,
    StateRequest,
)
from medchain.consensus.verify import verify_message
from medchain.node.consensus.base import DriverState
from medchain.node.consensus.catchup import CatchUp
from medchain.node.consensus.delivery import commits_from_certificate
from medchain.node.consensus.inbox import StateArrived
from medchain.node.net.transport import CHANNEL_SYNC, Incoming

log = logging.getLogger("medchain.driver")


class StateSyncMixin(DriverState):
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
            self.post(StateArrived(m))

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
