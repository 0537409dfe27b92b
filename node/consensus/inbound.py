"""Network input: decode, verify at the boundary (in worker threads for heavy messages), post to the main task.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from medchain.consensus.events import (
    MessageReceived,
)
from medchain.consensus.messages import (
    Message,
    NewView,
    PrePrepare,
    StateReply,
    decode_message,
)
from medchain.consensus.verify import verify_message
from medchain.node.consensus.base import DriverState
from medchain.node.consensus.inbox import ReplicaInput, ValidatedProposal
from medchain.node.consensus.validation import (
    decode_and_verify_block,
)
from medchain.node.mempool.ingress import _Known
from medchain.node.net.transport import CHANNEL_CONSENSUS, CHANNEL_SYNC, CHANNEL_TXS, Incoming
from medchain.storage.codec import DecodeError
from medchain.storage.kv import StoreError

log = logging.getLogger("medchain.driver")


class InboundMixin(DriverState):
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
            self.post(ValidatedProposal(m, block))
            return
        why = (
            await trio.to_thread.run_sync(verify_message, m, chain, self.verifier)
            if _heavy(m)
            else verify_message(m, chain, self.verifier)
        )
        if why:
            self._garbage(peer, why)
            return
        self.post(ReplicaInput(MessageReceived(m)))


def _heavy(m: Message) -> bool:
    from medchain.consensus.messages import ViewChange

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
