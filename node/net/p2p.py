"""The libp2p transport: validators talk over TCP + Noise + Yamux.

What py-libp2p 0.8 does by default and what this transport does instead (see
../shared/ARCHITECTURE.md and the notes in this docstring's tests), and where:

- Security is Noise only (the default set includes /plaintext). Peers are
  authenticated by their Ed25519 identity key, the node key in the genesis.
- There is no peer allowlist: ``AllowlistNoise`` refuses non-members right
  after the Noise handshake, before any stream can be opened; a notifee and
  every stream handler check membership again. (``node.net.p2p_host``)
- libp2p does not redial: a reconnect loop per peer does, with a timeout on
  every connect and new_stream, clearing libp2p's 60 s negative dial cache.
  It backs off exponentially with jitter up to a cap, and says at warning
  level (at most once a minute per peer) when dials to a peer keep failing.
  (``node.net.p2p_links``)
- libp2p never gives an inbound connection's slot back (250 slots for the
  process's life): ``node.net.p2p_compat`` makes each connection give its slot
  back when it closes.
- A hung peer (SIGSTOP, partition) blocks writes forever: every write has a
  timeout, after which the connection is torn down socket-first.
- An exception escaping a stream handler kills the whole host: handlers
  catch everything.
- One long-lived outbound stream per peer and channel; queued frames are
  coalesced into one write (every write has a fixed CPU cost).
- Frames are 4-byte length-prefixed, limited in size per channel; each peer
  has a token bucket on frames and bytes per second. (``node.net.p2p_frames``)

This module holds the transport itself: the ``Transport`` interface the driver
uses, the host's membership gate, and the task tree that runs it all. Its
configuration and state are in ``node.net.p2p_state``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import multiaddr
import trio

from medchain.node.net.p2p_frames import Frames
from medchain.node.net.p2p_host import make_host, probe_port
from medchain.node.net.p2p_links import Links
from medchain.node.net.p2p_state import PROTOCOLS
from medchain.node.net.transport import Incoming

log = logging.getLogger("medchain.p2p")


class Libp2pTransport(Links, Frames):
    """Built as ``P2PState`` is: ``Libp2pTransport(signer, index, listen, peers,
    members, config)``."""

    # -- Transport interface -------------------------------------------------------

    def send(self, peer: int, channel: str, payload: bytes) -> None:
        box = self._outboxes.get((peer, channel))
        if box is None:
            return
        if box.bytes + len(payload) > self.cfg.queue_bytes or self.fault.blocks(peer):
            self.stats.dropped_out += 1
            return
        box.frames.append(payload)
        box.bytes += len(payload)
        box.wake.set()

    def broadcast(self, peers: Iterable[int], channel: str, payload: bytes) -> None:
        for p in peers:
            self.send(p, channel, payload)

    def connected(self) -> set[int]:
        return set(self._connected)

    async def receive(self) -> Incoming:
        return await self._in_recv.receive()

    # -- host ----------------------------------------------------------------------

    def _make_host(self) -> Any:
        return make_host(self._L, self.signer.seed, self._check_member)

    def _check_member(self, sc: Any, direction: str) -> None:
        pid = sc.get_remote_peer()
        if pid not in self.member_ids:
            self.stats.rejected_in += 1
            log.warning(
                "refused %s connection from %s: not a member of this consortium",
                direction,
                str(pid)[:20],
                extra={"event": "unknown-peer", "peer_id": str(pid)},
            )
            raise self._L["HandshakeFailure"]("peer is not a consortium member")

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        probe_port(self.listen)
        self.host = self._make_host()
        L = self._L
        for proto in PROTOCOLS.values():
            self.host.set_stream_handler(L["TProtocol"](proto), self._safe_handler)
        self.host.get_network().register_notifee(self._notifee())
        async with self.host.run(listen_addrs=[multiaddr.Multiaddr(self.listen)]):
            if not self.host.get_transport_addrs():
                raise OSError(f"libp2p could not listen on {self.listen}")
            log.info(
                "p2p listening on %s as %s",
                self.listen,
                self.host.get_id(),
                extra={"event": "p2p-listen"},
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_inbound_slots)
                for p in self.peers:
                    nursery.start_soon(self._reconnect_loop, p)
                    for ch in PROTOCOLS:
                        nursery.start_soon(self._writer, p, ch)
                task_status.started()
                await trio.sleep_forever()
