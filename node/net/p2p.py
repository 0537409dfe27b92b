"""The libp2p transport: validators talk over TCP + Noise + Yamux.

What py-libp2p 0.8 does by default and what this module does instead (see
../shared/ARCHITECTURE.md and the notes in this docstring's tests):

- Security is Noise only (the default set includes /plaintext). Peers are
  authenticated by their Ed25519 identity key, the node key in the genesis.
- There is no peer allowlist: ``AllowlistNoise`` refuses non-members right
  after the Noise handshake, before any stream can be opened; a notifee and
  every stream handler check membership again.
- libp2p does not redial: a reconnect loop per peer does, with a timeout on
  every connect and new_stream, clearing libp2p's 60 s negative dial cache.
  It backs off exponentially with jitter up to a cap, and says at warning
  level (at most once a minute per peer) when dials to a peer keep failing.
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
  has a token bucket on frames and bytes per second.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import nacl.signing
import trio

from medchain.node.net.framing import FrameReader, FrameTooLarge, encode_frames
from medchain.node.net.p2p_compat import inbound_slots, recycle_inbound_slots
from medchain.node.net.redial import Redial, RedialConfig
from medchain.node.net.transport import (
    CHANNEL_CONSENSUS,
    CHANNEL_RECORDS,
    CHANNEL_SYNC,
    CHANNEL_TXS,
    Incoming,
    TransportStats,
)
from medchain.storage.crypto import Signer

log = logging.getLogger("medchain.p2p")

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


def _libp2p_imports() -> dict[str, Any]:
    """libp2p is slow to import; only the daemon pays for it."""
    import libp2p.network.swarm as swarm_mod
    from libp2p import new_host
    from libp2p.abc import INotifee
    from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo
    from libp2p.security.exceptions import HandshakeFailure
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    return {
        "swarm_mod": swarm_mod,
        "new_host": new_host,
        "INotifee": INotifee,
        "Ed25519PrivateKey": Ed25519PrivateKey,
        "Ed25519PublicKey": Ed25519PublicKey,
        "KeyPair": KeyPair,
        "create_x25519_key_pair": create_x25519_key_pair,
        "TProtocol": TProtocol,
        "ID": ID,
        "PeerInfo": PeerInfo,
        "HandshakeFailure": HandshakeFailure,
        "NOISE_PROTOCOL_ID": NOISE_PROTOCOL_ID,
        "NoiseTransport": NoiseTransport,
        "YAMUX_PROTOCOL_ID": YAMUX_PROTOCOL_ID,
        "Yamux": Yamux,
    }


def peer_id_of(public_key: bytes) -> Any:
    L = _libp2p_imports()
    return L["ID"].from_pubkey(L["Ed25519PublicKey"].from_bytes(public_key))


class Libp2pTransport:
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
        L = self._L = _libp2p_imports()
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
        L = self._L
        priv = L["Ed25519PrivateKey"](nacl.signing.SigningKey(self.signer.seed))
        kp = L["KeyPair"](priv, priv.get_public_key())
        transport = self

        base: Any = L["NoiseTransport"]

        async def secure_inbound(self: Any, conn: Any) -> Any:
            sc = await base.secure_inbound(self, conn)
            transport._check_member(sc, "inbound")
            return sc

        async def secure_outbound(self: Any, conn: Any, peer_id: Any) -> Any:
            sc = await base.secure_outbound(self, conn, peer_id)
            transport._check_member(sc, "outbound")
            return sc

        # Noise, refusing non-members right after the handshake authenticates them.
        allowlist_noise = type(
            "AllowlistNoise",
            (base,),
            {"secure_inbound": secure_inbound, "secure_outbound": secure_outbound},
        )
        noise = allowlist_noise(kp, noise_privkey=L["create_x25519_key_pair"]().private_key)
        host = L["new_host"](
            key_pair=kp,
            sec_opt={L["NOISE_PROTOCOL_ID"]: noise},
            muxer_opt={L["TProtocol"](L["YAMUX_PROTOCOL_ID"]): L["Yamux"]},
        )
        recycle_inbound_slots(host.get_network())
        return host

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

    def probe_port(self) -> None:
        """libp2p binds with SO_REUSEPORT and ignores bind errors: check the port ourselves."""
        ma = multiaddr.Multiaddr(self.listen)
        host = ma.value_for_protocol("ip4")
        port = int(ma.value_for_protocol("tcp"))
        if port == 0:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # TIME_WAIT is fine, a listener is not
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen on {self.listen}: {exc.strerror} (is another node using it?)",
            ) from None
        finally:
            s.close()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.probe_port()
        self.host = self._make_host()
        L = self._L
        for proto in PROTOCOLS.values():
            self.host.set_stream_handler(L["TProtocol"](proto), self._safe_handler)
        watcher_cls = type("Watcher", (_Watcher, L["INotifee"]), {})
        self.host.get_network().register_notifee(watcher_cls(self))
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

    # -- connections ------------------------------------------------------------------

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

    # -- outbound ---------------------------------------------------------------------

    async def _writer(self, peer: int, channel: str) -> None:
        L = self._L
        box = self._outboxes[(peer, channel)]
        pid = self.peer_ids[peer]
        proto = L["TProtocol"](PROTOCOLS[channel])
        stream: Any = None
        stream_epoch = -1
        while True:
            if not box.frames:
                box.wake = trio.Event()
                await box.wake.wait()
                continue
            if peer not in self._connected or self.fault.blocks(peer):
                box.wake = trio.Event()
                with trio.move_on_after(0.5):
                    await box.wake.wait()
                continue
            if stream is not None and stream_epoch != self._conn_epoch[peer]:
                with contextlib.suppress(Exception), trio.move_on_after(1):
                    await stream.reset()
                stream = None
            if stream is None:
                try:
                    stream_epoch = self._conn_epoch[peer]
                    with trio.fail_after(self.cfg.stream_timeout_s):
                        stream = await self.host.new_stream(pid, [proto])
                except Exception as exc:
                    log.debug("new_stream to %d/%s failed: %s", peer, channel, type(exc).__name__)
                    if isinstance(exc, trio.TooSlowError):
                        await self._hard_disconnect(peer)
                    self._connected.discard(peer)
                    self._want_reconnect[peer].set()
                    await trio.sleep(0.1)
                    continue
            frames = list(box.frames)
            box.frames.clear()
            box.bytes = 0
            data = encode_frames(frames)
            ok = False
            with trio.move_on_after(self.cfg.write_timeout_s):
                try:
                    await stream.write(data)
                    ok = True
                except Exception as exc:
                    log.debug("write to %d/%s failed: %s", peer, channel, type(exc).__name__)
            if ok:
                self.stats.frames_out += len(frames)
                self.stats.bytes_out += len(data)
                continue
            # Lost (or maybe partly written): drop the stream; the protocols above recover
            # from lost messages. A write that timed out means the peer stopped reading.
            self.stats.dropped_out += len(frames)
            with contextlib.suppress(Exception), trio.move_on_after(1):
                await stream.reset()
            stream = None
            await self._hard_disconnect(peer)

    # -- inbound ----------------------------------------------------------------------

    async def _safe_handler(self, stream: Any) -> None:
        try:
            await self._handle_stream(stream)
        except BaseException as exc:  # never let a handler kill the host
            if isinstance(exc, trio.Cancelled):
                raise
            log.debug("stream handler ended: %s", type(exc).__name__)
        finally:
            with contextlib.suppress(BaseException), trio.move_on_after(1):
                await stream.reset()

    async def _handle_stream(self, stream: Any) -> None:
        pid = stream.muxed_conn.peer_id
        peer = self.member_ids.get(pid)
        channel = CHANNEL_OF.get(str(stream.get_protocol()))
        if peer is None or peer == self.index or channel is None:
            self.stats.rejected_in += 1
            log.warning("refused a stream from %s", str(pid)[:20], extra={"event": "unknown-peer"})
            return
        name = self.peers[peer].name
        reader = FrameReader(self.cfg.frame_limit(channel))
        frames_bucket, bytes_bucket = self._buckets[peer], self._byte_buckets[peer]
        while True:
            data = await stream.read(1 << 20)
            try:
                frames = reader.feed(data)
            except FrameTooLarge as exc:
                self._reject(
                    peer, f"{name} sent an oversized frame on {channel}: {exc}; closing the stream"
                )
                return
            if self.fault.blocks(peer):
                continue  # cut: frames are parsed (framing stays aligned) and dropped
            for f in frames:
                if not frames_bucket.take(1) or not bytes_bucket.take(len(f)):
                    self._reject(
                        peer, f"{name} exceeds its message rate on {channel}; frame dropped"
                    )
                    continue
                self.stats.frames_in += 1
                self.stats.bytes_in += len(f) + 4
                try:
                    self._in_send.send_nowait(Incoming(peer, channel, f))
                except trio.WouldBlock:
                    self._reject(peer, "incoming queue full; frame dropped")

    def _reject(self, peer: int, why: str) -> None:
        self.stats.rejected_in += 1
        self.stats.per_peer_rejected[peer] = self.stats.per_peer_rejected.get(peer, 0) + 1
        log.warning(why, extra={"event": "frame-rejected", "offender": self.peers[peer].name})


def _describe(exc: BaseException) -> str:
    """One short line for a dial error (libp2p's messages can span many lines)."""
    text = str(exc).strip().splitlines()
    first = text[0][:160] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


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


class _Watcher:
    """Network notifee: close a connection from a non-member at once (defence in depth)."""

    def __init__(self, t: Libp2pTransport) -> None:
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
