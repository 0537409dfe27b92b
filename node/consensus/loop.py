"""The consensus driver's loop: one task (``_main``) owns the replica and the
ledger and takes one input at a time from the inbox (node/consensus/inbox.py):
verified messages, timers, validated proposals, state replies, pokes. For every
``replica.handle`` it carries out the returned actions in order — Persist before
the sends after it, Deliver by executing and committing the block in one synced
write batch, FetchState by asking a peer.

Part of the consensus driver (node/consensus/driver.py): a mixin whose methods
run on the Driver."""

from __future__ import annotations

import logging
from typing import Any

import trio

from medchain.consensus.events import (
    Action,
    Broadcast,
    CancelTimer,
    Deliver,
    Event,
    FetchState,
    Halt,
    PendingWork,
    Persist,
    Report,
    Send,
    SetTimer,
)
from medchain.consensus.events import TimerFired as ReplicaTimer
from medchain.node.consensus.base import DriverState
from medchain.node.consensus.inbox import (
    POKE,
    InboxItem,
    ReplicaInput,
    StateArrived,
    ValidatedProposal,
)
from medchain.node.consensus.proposer import BATCH_TIMER
from medchain.node.net.transport import CHANNEL_CONSENSUS
from medchain.storage.kv import StoreError
from medchain.storage.ledger import LedgerError

log = logging.getLogger("medchain.driver")


class LoopMixin(DriverState):
    async def _main(self) -> None:
        while True:
            item = await self._inbox.receive()
            if self.halted:
                continue
            try:
                await self._process(item)
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
                    "driver failed on a %s input; dropped",
                    item.kind,
                    extra={"event": "driver-error"},
                )

    async def _process(self, item: InboxItem) -> None:
        if isinstance(item, ReplicaInput):
            await self._apply(item.event)
        elif isinstance(item, ValidatedProposal):
            pp, block = item.pp, item.block
            self._pending_pp[pp.seq] = (pp, block)
            self._validated_blocks[pp.digest] = block
            while len(self._validated_blocks) > 64:
                del self._validated_blocks[next(iter(self._validated_blocks))]
            await self._validate_pending()
        elif isinstance(item, StateArrived):
            await self._consume_state(item.reply)
        await self._after_input()

    async def _after_input(self) -> None:
        pending = len(self.pool) > 0
        if pending != self._pending_flag:
            self._pending_flag = pending
            await self._apply(PendingWork(pending))
        await self._maybe_propose()

    def post(self, item: InboxItem) -> None:
        try:
            self._inbox_send.send_nowait(item)
        except trio.WouldBlock:
            log.warning("driver inbox full; dropping %s", item.kind)

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
                        self.post(POKE)
                    else:
                        self.post(ReplicaInput(ReplicaTimer(name)))
