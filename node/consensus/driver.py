"""The consensus driver: the replica's hands.

One task owns the replica and the ledger and processes one input at a time,
carrying out the actions each ``replica.handle`` returns (node/consensus/loop.py).
Signature checks and block execution run in worker threads so the event loop
stays responsive. The Driver is assembled here from its parts — the loop,
delivery, proposals, network input, transaction ingress, state transfer — with
the state they share (node/consensus/base.py), and answers queries and status.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import Start
from medchain.consensus.messages import (
    Commit,
    PrePrepare,
)
from medchain.consensus.replica import Replica, Restored
from medchain.consensus.verify import Ed25519Verifier
from medchain.contracts.app import Application
from medchain.node.consensus.base import DriverConfig, DriverState
from medchain.node.consensus.delivery import DeliveryMixin, commits_from_certificate
from medchain.node.consensus.inbound import InboundMixin
from medchain.node.consensus.inbox import InboxItem
from medchain.node.consensus.loop import LoopMixin
from medchain.node.consensus.proposer import ProposerMixin
from medchain.node.consensus.state_sync import StateSyncMixin
from medchain.node.consensus.store import ConsensusStore
from medchain.node.consensus.validation import (
    block_digest,
)
from medchain.node.mempool.ingress import IngressMixin, _Waiters
from medchain.node.mempool.pool import TxPool
from medchain.node.net.transport import Incoming, Transport
from medchain.node.ops import memory
from medchain.node.ops.metrics import Metrics
from medchain.node.rpc.events import EventHub
from medchain.storage.block import Block
from medchain.storage.crypto import Signer
from medchain.storage.genesis import Genesis
from medchain.storage.kv import KVStore
from medchain.storage.ledger import Ledger

__all__ = ["Driver", "DriverConfig"]


class Driver(
    LoopMixin,
    DeliveryMixin,
    ProposerMixin,
    InboundMixin,
    IngressMixin,
    StateSyncMixin,
    DriverState,
):
    def __init__(
        self,
        genesis: Genesis,
        ledger: Ledger,
        executor: Application,
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
        self._inbox_send, self._inbox = trio.open_memory_channel[InboxItem](100_000)
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
        return self.executor.nonce_used(self.ledger.state_get_uncached, sender, nonce)

    # -- running ------------------------------------------------------------------

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

    # -- queries and status ---------------------------------------------------------

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


def _rss_kb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0
