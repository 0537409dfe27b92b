"""What every part of the consensus driver shares: its configuration, and the state
the Driver (node/consensus/driver.py) sets up and its parts (delivery, proposer,
inbound, state sync, mempool ingress) read and change — declared once, here."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import Deliver, Event
from medchain.consensus.messages import Message, PrePrepare, StateReply
from medchain.consensus.replica import Replica
from medchain.consensus.verify import Ed25519Verifier
from medchain.contracts.app import Application
from medchain.node.consensus.catchup import CatchUpConfig
from medchain.node.consensus.inbox import InboxItem
from medchain.node.consensus.store import ConsensusStore
from medchain.node.mempool.pool import TxPool
from medchain.node.net.transport import Incoming, Transport
from medchain.node.ops.metrics import Metrics
from medchain.node.rpc.events import EventHub
from medchain.storage.block import Block
from medchain.storage.crypto import Signer
from medchain.storage.genesis import Genesis
from medchain.storage.kv import KVStore
from medchain.storage.ledger import Ledger

if TYPE_CHECKING:
    from medchain.node.mempool.ingress import _Waiters


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


class DriverState:
    genesis: Genesis
    ledger: Ledger
    local: KVStore  # this node's scratch state: the pool's write-ahead log, Persist records
    executor: Application  # the chaincode executor (contracts.runtime.Executor)
    signer: Signer
    transport: Transport
    cfg: DriverConfig
    clock: Callable[[], int]
    index: int
    n: int
    peers: list[int]
    verifier: Ed25519Verifier
    replica_cfg: ReplicaConfig
    store: ConsensusStore
    replica: Replica
    pool: TxPool
    events: EventHub
    metrics: Metrics
    halted: str | None
    _inbox_send: trio.MemorySendChannel[InboxItem]
    _inbox: trio.MemoryReceiveChannel[InboxItem]
    _timers: dict[str, float]  # name -> trio deadline
    _timers_changed: trio.Event
    _proposed: set[bytes]
    _proposed_view: int
    _forwarded_to_primary: int
    _wal: set[bytes]  # ids of acknowledged transactions in the write-ahead log
    _validated_blocks: dict[bytes, Block]  # digest -> decoded block, until delivered
    _broadcasted: set[bytes]
    _last_inclusion_ms: int  # when a block last carried one of our pool's transactions
    _checked: OrderedDict[bytes, None]  # checked inside proposed blocks, until delivered
    _last_proposal_ms: int
    _tip_unsealed: bool  # the tip's outcomes not yet certified by a next block
    _last_commit_ms: int
    _exec_ms_per_tx: float  # moving average: what a transaction costs to execute here
    _pending_pp: dict[int, tuple[PrePrepare, Block]]
    _forward: list[bytes]
    _forward_wake: trio.Event
    _pending_flag: bool
    _fetch_peer: int
    _recent_rejects: dict[bytes, str]
    _commit_waiters: dict[bytes, _Waiters]
    channel_handlers: dict[str, Callable[[Incoming], Awaitable[None]]]

    # Defined by the loop (node/consensus/loop.py); the other parts call them.
    def post(self, item: InboxItem) -> None:
        raise NotImplementedError

    async def _apply(self, event: Event) -> None:
        raise NotImplementedError

    def _set_timer(self, name: str, delay_ms: int) -> None:
        raise NotImplementedError

    # Defined by the Driver.
    def _nonce_used(self, sender: bytes, nonce: int) -> bool:
        raise NotImplementedError

    # Defined by one part; others call them.
    def _garbage(self, peer: int, why: str) -> None:
        raise NotImplementedError

    def _decode_from(self, msg: Incoming) -> Message | None:
        raise NotImplementedError

    async def _on_forwarded_txs(self, msg: Incoming) -> None:
        raise NotImplementedError

    async def _on_sync_frame(self, msg: Incoming) -> None:
        raise NotImplementedError

    def _remember_checked(self, tx_ids: list[bytes]) -> None:
        raise NotImplementedError

    async def _validate_pending(self) -> None:
        raise NotImplementedError

    async def _maybe_propose(self) -> None:
        raise NotImplementedError

    async def _deliver(self, d: Deliver) -> None:
        raise NotImplementedError

    def _fetch(self, from_seq: int, to_seq: int) -> None:
        raise NotImplementedError

    async def _consume_state(self, reply: StateReply) -> None:
        raise NotImplementedError
