"""What the libp2p transport's parts share: its configuration, the protocol
ids of the channels, and its state per peer.

``P2PState`` holds that state and the two primitives on a link that both the
link upkeep (``node.net.p2p_links``) and the frame flow (``node.net.p2p_frames``)
use; ``node.net.p2p.Libp2pTransport`` is made of those two. The small pieces
they use (token bucket, outbox, the test-only fault switch) stand here too.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from medchain.node.net.p2p_host import libp2p_imports
from medchain.node.net.redial import RedialConfig
from medchain.node.net.transport import (
    CHANNEL_CONSENSUS,
    CHANNEL_RECORDS,
    CHANNEL_SYNC,
    CHANNEL_TXS,
    Incoming,
    TransportStats,
)
from medchain.storage.crypto import Signer

PROTOCOLS = {
    CHANNEL_CONSENSUS: "/medchain/consensus/1",
    CHANNEL_TXS: "/medchain/txs/1",
    CHANNEL_SYNC: "/medchain/sync/1",
    CHANNEL_RECORDS: "/medchain/records/1",
}
CHANNEL_OF = {v: k for k, v in PROTOCOLS.items()}


@dataclass(frozen=True)
class P2PConfig:
    connect_timeout_s: float = 5.0
    stream_timeout_s: float = 5.0
    write_timeout_s: float = 5.0
    redial: RedialConfig = field(default_factory=RedialConfig)  # reconnect loop pacing
    max_frame: dict[str, int] | None = None  # per channel; defaults below
    queue_bytes: int = 256 * 1024 * 1024  # per peer and channel, then frames are dropped
    rate_frames_per_s: float = 20_000
    rate_bytes_per_s: float = 512 * 1024 * 1024
    incoming_capacity: int = 200_000

    def frame_limit(self, channel: str) -> int:
        limits = self.max_frame or {}
        default = {
            CHANNEL_CONSENSUS: 64 << 20,
            CHANNEL_TXS: 16 << 20,
            CHANNEL_SYNC: 128 << 20,
            CHANNEL_RECORDS: 64 << 20,
        }
        return limits.get(channel, default[channel])


@dataclass(frozen=True)
class PeerAddress:
    index: int
    name: str  # organization id, for logs
    public_key: bytes
    address: str  # multiaddr


class TokenBucket:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.at = clock()

    def take(self, amount: float) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class _Outbox:
    """Frames waiting for one peer on one channel."""

    def __init__(self) -> None:
        self.frames: deque[bytes] = deque()
        self.bytes = 0
        self.wake = trio.Event()


class FaultSwitch:
    """Test-only: cut this node's links to some peers (both directions) for chaos
    runs, until a deadline (so a cut heals even if whoever set it goes away)."""

    def __init__(self) -> None:
        self.cut: set[int] = set()
        self.all = False
        self.until = 0.0  # time.monotonic() deadline of the current cut

    def set(self, peers: set[int] | None, seconds: float) -> None:
        self.cut = set(peers or ())
        self.all = peers is None
        self.until = time.monotonic() + seconds

    def heal(self) -> None:
        self.cut = set()
        self.all = False

    def blocks(self, peer: int) -> bool:
        if not (self.all or self.cut):
            return False
        if time.monotonic() >= self.until:
            self.heal()
            return False
        return self.all or peer in self.cut


class P2PState:
    """The transport's state: peers and their libp2p ids, the queues each way, rate
    buckets, and which links are up."""

    def __init__(
        self,
        signer: Signer,
        index: int,
        listen: str,
        peers: Sequence[PeerAddress],
        members: Sequence[bytes],
        config: P2PConfig | None = None,
    ) -> None:
        self.signer = signer
        self.index = index
        self.listen = listen
        self.cfg = config or P2PConfig()
        self.peers = {p.index: p for p in peers}
        self.stats = TransportStats()
        L = self._L = libp2p_imports()
        L["swarm_mod"]._HAPPY_EYEBALLS_DELAY = 0.0  # else every connect waits 250 ms
        self.member_ids = {
            L["ID"].from_pubkey(L["Ed25519PublicKey"].from_bytes(k)): i
            for i, k in enumerate(members)
        }
        self.peer_ids = {i: pid for pid, i in self.member_ids.items()}
        self._in_send, self._in_recv = trio.open_memory_channel[Incoming](
            self.cfg.incoming_capacity
        )
        self._outboxes = {(p, ch): _Outbox() for p in self.peers for ch in PROTOCOLS}
        self._connected: set[int] = set()
        self._buckets = {
            p: TokenBucket(self.cfg.rate_frames_per_s, self.cfg.rate_frames_per_s * 2)
            for p in self.peers
        }
        self._byte_buckets = {
            p: TokenBucket(self.cfg.rate_bytes_per_s, self.cfg.rate_bytes_per_s * 2)
            for p in self.peers
        }
        self._want_reconnect = {p: trio.Event() for p in self.peers}
        # Bumped whenever a connection to the peer comes or goes: a writer whose stream
        # belongs to an older connection drops it (a write into a dead connection can
        # "succeed" and the frame vanish).
        self._conn_epoch = dict.fromkeys(self.peers, 0)
        self.host: Any = None
        self.fault: FaultSwitch = FaultSwitch()

    def _is_connected(self, pid: Any) -> bool:
        try:
            conns = self.host.get_network().get_connections(pid)
        except Exception:
            return False
        return any(not getattr(c, "is_closed", False) for c in conns)

    async def _hard_disconnect(self, peer: int, reconnect: bool = True) -> None:
        """Tear down connections to a peer that stopped reading: socket first (Yamux
        would block sending GO_AWAY into a full socket)."""
        pid = self.peer_ids[peer]
        self._connected.discard(peer)
        with contextlib.suppress(Exception):
            for c in list(self.host.get_network().get_connections(pid)):
                with trio.move_on_after(2):
                    await c.muxed_conn.secured_conn.close()
        with contextlib.suppress(Exception), trio.move_on_after(2):
            await self.host.disconnect(pid)
        if reconnect:
            self._want_reconnect[peer].set()
