"""The transport interface the driver talks to, and an in-memory twin.

A transport moves opaque payloads on named channels between validators,
identified by their index in the genesis validator set. It authenticates
peers (only validators get in) but not payloads: the driver verifies
signatures. The real one is node/net/p2p.py (py-libp2p, Noise); ``MemoryHub``
connects nodes in one process for unit tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

CHANNEL_CONSENSUS = "consensus"
CHANNEL_TXS = "txs"
CHANNEL_SYNC = "sync"
CHANNEL_RECORDS = "records"
CHANNELS = (CHANNEL_CONSENSUS, CHANNEL_TXS, CHANNEL_SYNC, CHANNEL_RECORDS)


@dataclass(frozen=True, slots=True)
class Incoming:
    peer: int  # validator index of the authenticated sender
    channel: str
    payload: bytes


@dataclass
class TransportStats:
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    dropped_out: int = 0  # frames dropped because a peer's queue was full
    rejected_in: int = 0  # frames refused (oversized, rate-limited, unknown peer)
    per_peer_rejected: dict[int, int] = field(default_factory=dict)


class Transport(Protocol):
    stats: TransportStats

    def send(self, peer: int, channel: str, payload: bytes) -> None:
        """Queue a payload for a peer; never blocks (a full queue drops and counts)."""
        ...

    def broadcast(self, peers: Iterable[int], channel: str, payload: bytes) -> None: ...

    def connected(self) -> set[int]: ...

    async def receive(self) -> Incoming: ...

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; signals started once listening."""
        ...


class MemoryHub:
    """Connects in-process transports; links can be cut to simulate partitions."""

    def __init__(self) -> None:
        self.nodes: dict[int, MemoryTransport] = {}
        self.cut: set[tuple[int, int]] = set()

    def transport(self, index: int) -> MemoryTransport:
        t = MemoryTransport(self, index)
        self.nodes[index] = t
        return t


class MemoryTransport:
    def __init__(self, hub: MemoryHub, index: int) -> None:
        self.hub = hub
        self.index = index
        self.stats = TransportStats()
        self._send, self._recv = trio.open_memory_channel[Incoming](100_000)
        self.down = False

    def send(self, peer: int, channel: str, payload: bytes) -> None:
        target = self.hub.nodes.get(peer)
        if target is None or target.down or self.down or (self.index, peer) in self.hub.cut:
            self.stats.dropped_out += 1
            return
        try:
            target._send.send_nowait(Incoming(self.index, channel, payload))
        except trio.WouldBlock:
            self.stats.dropped_out += 1
            return
        self.stats.frames_out += 1
        self.stats.bytes_out += len(payload)

    def broadcast(self, peers: Iterable[int], channel: str, payload: bytes) -> None:
        for p in peers:
            self.send(p, channel, payload)

    def connected(self) -> set[int]:
        return {
            i
            for i, t in self.hub.nodes.items()
            if i != self.index and not t.down and (self.index, i) not in self.hub.cut
        }

    async def receive(self) -> Incoming:
        msg = await self._recv.receive()
        self.stats.frames_in += 1
        self.stats.bytes_in += len(msg.payload)
        return msg

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()
