"""Frames to and from the other validators, over the links ``node.net.p2p_links``
keeps up.

Outbound: one long-lived stream per peer and channel, written by one task that
coalesces the queued frames into one write (every write has a fixed CPU cost);
every write has a timeout, after which the connection is torn down socket-first
(a hung peer would block it forever). Inbound: a stream handler per stream that
catches everything (an exception escaping it kills the whole host), checks
membership again, splits 4-byte length-prefixed frames with a size limit per
channel, and rate-limits each peer with token buckets on frames and bytes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from medchain.node.net.framing import FrameReader, FrameTooLarge, encode_frames
from medchain.node.net.p2p_state import CHANNEL_OF, PROTOCOLS, P2PState
from medchain.node.net.transport import Incoming

log = logging.getLogger("medchain.p2p")


class Frames(P2PState):
    """The transport's frame flow (a part of ``node.net.p2p.Libp2pTransport``)."""

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
