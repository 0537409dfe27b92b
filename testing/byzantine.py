"""Test-only faulty behaviour for a member node, to prove the others cope.

``MEDCHAIN_BYZANTINE=equivocate,forge,flood`` in a node's environment wraps
its transport in :class:`ByzantineTransport` (the daemon logs a loud warning).
It never runs unless that variable is set. Modes:

- ``equivocate``: as primary, send every peer a different, validly signed
  pre-prepare (same transactions, another timestamp) for each sequence
  number. Honest replicas see conflicting prepares, report the primary and
  change view.
- ``forge``: next to each consensus message, send a copy with a corrupted
  signature and one that claims to come from another replica.
- ``flood``: keep sending junk frames (random bytes, truncated messages,
  nonsense transactions) on every channel at a high rate.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import trio

from medchain.consensus.messages import Message, PrePrepare, decode_message
from medchain.node.consensus.validation import block_digest
from medchain.node.net.transport import (
    CHANNEL_CONSENSUS,
    CHANNELS,
    Incoming,
    Transport,
    TransportStats,
)
from medchain.storage.block import Block
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import Signer

log = logging.getLogger("medchain.byzantine")

ENV = "MEDCHAIN_BYZANTINE"
MODES = frozenset({"equivocate", "forge", "flood"})


def modes_from_env(env: dict[str, str] | None = None) -> frozenset[str]:
    raw = (env if env is not None else os.environ).get(ENV, "")
    modes = frozenset(m.strip() for m in raw.split(",") if m.strip())
    unknown = modes - MODES
    if unknown:
        raise ValueError(f"{ENV}: unknown modes {sorted(unknown)} (known: {sorted(MODES)})")
    return modes


class ByzantineTransport:
    """Wraps a real transport; misbehaves on the way out, per ``modes``."""

    def __init__(
        self,
        inner: Transport,
        modes: frozenset[str],
        signer: Signer,
        chain_id: str,
        index: int,
        n: int,
        flood_frames_per_s: float = 1000,
        seed: int | None = None,
    ) -> None:
        self.inner = inner
        self.stats: TransportStats = inner.stats
        self.modes = modes
        self.signer = signer
        self.chain_id = chain_id
        self.index = index
        self.n = n
        self.flood_rate = flood_frames_per_s
        self.rng = random.Random(seed)
        self.sent = {"equivocations": 0, "forgeries": 0, "junk": 0}
        self._recent: list[bytes] = []  # real payloads, to truncate and mangle

    # -- Transport interface ---------------------------------------------------------

    @property
    def fault(self) -> Any:
        return getattr(self.inner, "fault", None)

    def connected(self) -> set[int]:
        return self.inner.connected()

    async def receive(self) -> Incoming:
        return await self.inner.receive()

    def send(self, peer: int, channel: str, payload: bytes) -> None:
        self.inner.send(peer, channel, payload)
        if channel == CHANNEL_CONSENSUS:
            self._remember(payload)
            if "forge" in self.modes:
                self._forge(peer, payload)

    def broadcast(self, peers: Iterable[int], channel: str, payload: bytes) -> None:
        peers = list(peers)
        if channel == CHANNEL_CONSENSUS and "equivocate" in self.modes:
            variants = [self._equivocal(payload, k + 1) for k in range(len(peers))]
            if all(v is not None for v in variants):
                for p, v in zip(peers, variants, strict=True):
                    self.send(p, channel, v)  # type: ignore[arg-type]
                self.sent["equivocations"] += 1
                return
        for p in peers:
            self.send(p, channel, payload)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        log.warning(
            "BYZANTINE TEST MODE %s: this node misbehaves on purpose",
            ",".join(sorted(self.modes)),
            extra={"event": "byzantine-mode"},
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.run)
            if "flood" in self.modes:
                nursery.start_soon(self._flood)
            task_status.started()

    # -- misbehaviour ------------------------------------------------------------------

    def _remember(self, payload: bytes) -> None:
        if len(payload) <= 64 * 1024:
            self._recent.append(payload)
            if len(self._recent) > 64:
                del self._recent[:32]

    def _equivocal(self, payload: bytes, k: int) -> bytes | None:
        """The k-th other pre-prepare for the same view and sequence number (same
        transactions, another timestamp), validly signed."""
        try:
            m = decode_message(payload)
        except DecodeError:
            return None
        if not isinstance(m, PrePrepare) or m.is_null:
            return None
        try:
            block = Block.decode(m.batch, check_txs=False)
        except DecodeError:
            return None
        ts = m.timestamp_ms + k
        other = Block.build(replace(block.header, timestamp_ms=ts), list(block.txs))
        batch = other.encode()
        pp = replace(m, timestamp_ms=ts, digest=block_digest(batch), batch=batch)
        return pp.signed(self.chain_id, self.signer.sign).encode()

    def _forge(self, peer: int, payload: bytes) -> None:
        try:
            m: Message = decode_message(payload)
        except DecodeError:
            return
        sig = bytearray(m.signature or bytes(64))
        sig[self.rng.randrange(len(sig))] ^= 0x01
        self.inner.send(peer, CHANNEL_CONSENSUS, replace(m, signature=bytes(sig)).encode())  # type: ignore[type-var]
        someone = (self.index + 1 + self.rng.randrange(self.n - 1)) % self.n
        self.inner.send(peer, CHANNEL_CONSENSUS, replace(m, sender=someone).encode())  # type: ignore[type-var]
        self.sent["forgeries"] += 2

    def _junk(self) -> bytes:
        kind = self.rng.randrange(4)
        if kind == 0 or not self._recent:
            return self.rng.randbytes(self.rng.randrange(1, 2048))
        real = self.rng.choice(self._recent)
        if kind == 1:
            return real[: self.rng.randrange(len(real))]  # truncated
        if kind == 2:
            b = bytearray(real)
            for _ in range(4):
                b[self.rng.randrange(len(b))] = self.rng.randrange(256)
            return bytes(b)
        return real * 2  # trailing bytes

    async def _flood(self) -> None:
        peers = [p for p in range(self.n) if p != self.index]
        tick = 0.01
        per_tick = max(1, int(self.flood_rate * tick))
        while True:
            for _ in range(per_tick):
                self.inner.send(self.rng.choice(peers), self.rng.choice(CHANNELS), self._junk())
                self.sent["junk"] += 1
            await trio.sleep(tick)
