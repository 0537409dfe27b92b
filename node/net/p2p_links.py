"""Keeping the links to the other validators up.

libp2p does not redial: a reconnect loop per peer does, with a timeout on
every connect, clearing libp2p's 60 s negative dial cache, pacing its dials
with ``node.net.redial`` and saying at warning level when they keep failing.
A network notifee (``_Watcher``) follows connections as they come and go and
closes one from a non-member at once. Apart from the frame flow
(``node.net.p2p_frames``): this part only makes and watches connections.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import multiaddr
import trio

from medchain.node.net.p2p_compat import inbound_slots
from medchain.node.net.p2p_state import PROTOCOLS, P2PState
from medchain.node.net.redial import Redial

log = logging.getLogger("medchain.p2p")


class Links(P2PState):
    """The transport's link upkeep (a part of ``node.net.p2p.Libp2pTransport``)."""

    async def _reconnect_loop(self, peer: int) -> None:
        L = self._L
        info = self.peers[peer]
        pid = self.peer_ids[peer]
        addr = multiaddr.Multiaddr(info.address)
        pacing = Redial(self.cfg.redial, time.monotonic)
        while True:
            if self._is_connected(pid) and not self.fault.blocks(peer):
                self._connected.add(peer)
                self._link_up(peer, pacing)
                self._want_reconnect[peer] = trio.Event()
                with trio.move_on_after(1.0):
                    await self._want_reconnect[peer].wait()
                continue
            self._connected.discard(peer)
            if self.fault.blocks(peer):
                await trio.sleep(0.2)
                continue
            self.host.get_network().unblock_peer(pid)  # libp2p's 60 s negative dial cache
            error = "no connection after the dial"
            try:
                with trio.fail_after(self.cfg.connect_timeout_s):
                    await self.host.connect(L["PeerInfo"](pid, [addr]))
            except trio.TooSlowError:
                error = f"no answer within {self.cfg.connect_timeout_s:g} s"
            except Exception as exc:  # libp2p raises many kinds
                error = _describe(exc)
            if self._is_connected(pid):
                self._connected.add(peer)
                log.info(
                    "connected to %s",
                    info.name,
                    extra={
                        "event": "peer-up",
                        "peer": info.name,
                        "inbound_slots": self.inbound_slots()[0],
                    },
                )
                self._link_up(peer, pacing)
                for ch in PROTOCOLS:
                    self._outboxes[(peer, ch)].wake.set()
                continue
            log.debug("dial %s failed: %s", info.name, error)
            # connect() can return at once on a dead connection libp2p still holds:
            # drop it, and always back off (never spin).
            await self._hard_disconnect(peer, reconnect=False)
            delay, warning = pacing.failed(error)
            if warning is not None:
                log.warning(
                    "cannot reach %s at %s: %d dials failed over %.0f s (last: %s); still retrying",
                    info.name,
                    info.address,
                    warning.failures,
                    warning.seconds,
                    warning.last_error,
                    extra={"event": "dial-failing", "peer": info.name},
                )
            await trio.sleep(delay)

    def _link_up(self, peer: int, pacing: Redial) -> None:
        recovered = pacing.succeeded()
        if recovered is not None:
            name = self.peers[peer].name
            log.warning(
                "reached %s again after %d failed dials over %.0f s",
                name,
                recovered.failures,
                recovered.seconds,
                extra={"event": "dial-recovered", "peer": name},
            )

    async def _watch_inbound_slots(self) -> None:
        """Say so when libp2p's inbound slots run short (it refuses inbound connections
        beyond them, logging at debug level only): a consortium needs a handful."""
        while True:
            await trio.sleep(10)
            used, total = self.inbound_slots()
            if total and used >= total * 0.8:
                log.warning(
                    "%d of %d inbound connection slots in use; libp2p refuses inbound "
                    "connections beyond them",
                    used,
                    total,
                    extra={"event": "inbound-slots", "inbound_slots": used},
                )
                await trio.sleep(50)

    def inbound_slots(self) -> tuple[int, int]:
        """(in use, in all) of libp2p's inbound connection slots: in use should follow
        the number of open inbound connections (see node.net.p2p_compat)."""
        return inbound_slots(self.host.get_network()) if self.host is not None else (0, 0)

    def _notifee(self) -> Any:
        watcher_cls = type("Watcher", (_Watcher, self._L["INotifee"]), {})
        return watcher_cls(self)


def _describe(exc: BaseException) -> str:
    """One short line for a dial error (libp2p's messages can span many lines)."""
    text = str(exc).strip().splitlines()
    first = text[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Watcher:
    """Network notifee: close a connection from a non-member at once (defence in depth)."""

    def __init__(self, t: Links) -> None:
        self.t = t

    async def connected(self, network: Any, conn: Any) -> None:
        pid = conn.muxed_conn.peer_id
        peer = self.t.member_ids.get(pid)
        if peer is None or peer == self.t.index:
            log.warning(
                "closing connection from non-member %s",
                str(pid)[:20],
                extra={"event": "unknown-peer"},
            )
            with contextlib.suppress(Exception):
                await conn.close()
            return
        self.t._connected.add(peer)
        self.t._conn_epoch[peer] += 1

    async def disconnected(self, network: Any, conn: Any) -> None:
        peer = self.t.member_ids.get(conn.muxed_conn.peer_id)
        if peer is not None and peer in self.t._want_reconnect:
            self.t._conn_epoch[peer] += 1
            if not self.t._is_connected(conn.muxed_conn.peer_id):
                self.t._connected.discard(peer)
                log.info(
                    "disconnected from %s",
                    self.t.peers[peer].name,
                    extra={
                        "event": "peer-down",
                        "peer": self.t.peers[peer].name,
                        "inbound_slots": self.t.inbound_slots()[0],
                    },
                )
            self.t._want_reconnect[peer].set()

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, ma: Any) -> None:
        pass

    async def listen_close(self, network: Any, ma: Any) -> None:
        pass
