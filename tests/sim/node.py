"""A simulated node: a Replica plus a small driver that mirrors node/'s.

The driver here does what the daemon's does, minus I/O: authenticates
incoming messages at the boundary (decode + verify_message + the link's
sender), keeps a request pool and cuts batches on the primary, executes
delivered batches into a hash-chained state, keeps a durable ledger of
delivered batches with their certificates (surviving crashes, like LevelDB),
saves Persist records before sending, and serves/consumes state transfer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import msgpack

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import (
    Action,
    BatchExecuted,
    Broadcast,
    CancelTimer,
    Deliver,
    Event,
    FetchState,
    Halt,
    MessageReceived,
    PendingWork,
    Persist,
    ProposeBatch,
    Report,
    Send,
    SetTimer,
    Start,
    StateFetched,
    TimerFired,
)
from medchain.consensus.messages import (
    Commit,
    CommittedEntry,
    Message,
    NewView,
    PrePrepare,
    StateReply,
    StateRequest,
    decode_message,
)
from medchain.consensus.persist import PersistedState, decode_record, encode_record
from medchain.consensus.replica import Replica, Restored
from medchain.consensus.verify import Ed25519Verifier, verify_message
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import Signer

if TYPE_CHECKING:
    from tests.sim.cluster import Cluster

BATCH_TIMER = "batch"
MAX_STATE_ENTRIES = 16


class HmacCrypto:
    """A fast stand-in for Ed25519 in simulation: per-replica secret keys, so a
    replica still cannot sign as another. (Real Ed25519 is used in some runs.)"""

    def __init__(self, n: int, seed: int) -> None:
        self.keys = [hashlib.sha256(b"sim-key %d %d" % (seed, i)).digest() for i in range(n)]

    def signer(self, i: int) -> Callable[[bytes], bytes]:
        key = self.keys[i]
        return lambda m: hmac.new(key, m, hashlib.sha256).digest() * 2

    def __call__(self, index: int, message: bytes, signature: bytes) -> bool:
        if not 0 <= index < len(self.keys):
            return False
        expect = hmac.new(self.keys[index], message, hashlib.sha256).digest() * 2
        return hmac.compare_digest(expect, signature)


class Ed25519Crypto:
    def __init__(self, n: int, seed: int) -> None:
        self.signers = [
            Signer(hashlib.sha256(b"sim-ed %d %d" % (seed, i)).digest()) for i in range(n)
        ]
        self.verifier = Ed25519Verifier([s.public_key for s in self.signers])

    def signer(self, i: int) -> Callable[[bytes], bytes]:
        return self.signers[i].sign

    def __call__(self, index: int, message: bytes, signature: bytes) -> bool:
        return self.verifier(index, message, signature)


def encode_batch(requests: list[bytes]) -> bytes:
    data: bytes = msgpack.packb(requests, use_bin_type=True)
    return data


def decode_batch(batch: bytes) -> list[bytes] | None:
    try:
        reqs = msgpack.unpackb(batch, raw=False)
    except Exception:
        return None
    if type(reqs) is not list or not all(type(r) is bytes for r in reqs):
        return None
    return reqs


@dataclass
class Disk:
    """What survives a crash: saved consensus records and the delivered ledger."""

    records: list[bytes] = field(default_factory=list)
    ledger: dict[int, CommittedEntry] = field(default_factory=dict)  # seq -> entry
    roots: dict[int, bytes] = field(default_factory=dict)  # seq -> state root after it
    executed: set[bytes] = field(default_factory=set)
    state_root: bytes = bytes(32)
    delivered: int = 0

    def persisted(self) -> PersistedState:
        state = PersistedState()
        for raw in self.records:
            state.apply(decode_record(raw))
        return state


class SimNode:
    def __init__(self, cluster: Cluster, index: int, cfg: ReplicaConfig) -> None:
        self.cluster = cluster
        self.net = cluster.net
        self.index = index
        self.cfg = cfg
        self.disk = Disk()
        self.sign = cluster.crypto.signer(index)
        self.crashed = False
        self.byzantine: str | None = None
        self.reports: list[Report] = []
        self.halted: str | None = None
        # every Deliver ever carried out: (seq, digest)
        self.delivery_log: list[tuple[int, bytes]] = []
        self.done_count = 0  # submitted requests executed
        self._boot(restored=None)

    # -- lifecycle ------------------------------------------------------------------

    def _boot(self, restored: Restored | None) -> None:
        self.replica = Replica(self.cfg, self.sign, restored)
        self.timers: dict[str, int] = {}  # name -> generation
        self.generation = 0
        self.pool: dict[bytes, None] = {}
        self.proposed: set[bytes] = set()
        self.proposed_view = -1
        self.batch_timer_armed = False
        self.fetch_peer = (self.index + 1) % self.cfg.n
        self.fetch_upto = 0
        self.epoch = getattr(self, "epoch", 0) + 1

    def start(self) -> None:
        self.feed(Start())

    def crash(self) -> None:
        self.crashed = True
        self.net.log(f"node {self.index} CRASH")

    def restart(self) -> None:
        last = self.disk.ledger.get(self.disk.delivered)
        restored = Restored(
            self.disk.persisted(),
            delivered_seq=self.disk.delivered,
            delivered_proof=last.commits if last else (),
        )
        self.crashed = False
        self._boot(restored)
        self.net.log(f"node {self.index} RESTART at seq {self.disk.delivered}")
        for req in self.cluster.requests_for(self.index):
            if req not in self.disk.executed:
                self.pool[req] = None
        self.start()
        self.feed(PendingWork(bool(self.pool)))

    # -- inputs ---------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        if self.crashed or self.halted:
            return
        actions = self.replica.handle(event, self.net.now)
        self.carry_out(actions)

    def receive_request(self, req: bytes) -> None:
        if self.crashed or req in self.disk.executed or req in self.pool:
            return
        was_empty = not self.pool
        self.pool[req] = None
        if was_empty:
            self.feed(PendingWork(True))
        self.maybe_propose()

    def receive_wire(self, src: int, data: bytes, epoch_at_send: int) -> None:
        """The boundary: decode, authenticate, then hand to the replica or the driver."""
        if self.crashed or self.halted:
            return
        try:
            msg = decode_message(data)
        except DecodeError as exc:
            self.reports.append(Report("warning", f"undecodable message from {src}: {exc}", src))
            return
        if msg.sender != src and not isinstance(msg, NewView):  # a NewView may be relayed
            self.reports.append(
                Report("warning", f"replica {src} sent a message signed as {msg.sender}", src)
            )
            return
        why = verify_message(msg, self.cfg.chain_id, self.cluster.crypto)
        if why:
            self.reports.append(Report("warning", why, src))
            return
        if isinstance(msg, StateRequest):
            self._serve_state(msg)
        elif isinstance(msg, StateReply):
            self._consume_state(msg)
        else:
            if isinstance(msg, PrePrepare) and decode_batch(msg.batch) is None and not msg.is_null:
                self.reports.append(
                    Report("warning", f"primary {src} proposed an invalid batch", src)
                )
                return
            self.feed(MessageReceived(msg))

    def fire_timer(self, name: str, generation: int) -> None:
        if self.crashed or self.timers.get(name) != generation:
            return
        del self.timers[name]
        if name == BATCH_TIMER:
            self.batch_timer_armed = False
            self.maybe_propose(force=True)
        else:
            self.feed(TimerFired(name))

    # -- actions --------------------------------------------------------------------

    def carry_out(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Persist):
                self.disk.records.append(encode_record(a.record))  # type: ignore[arg-type]
            elif isinstance(a, Send):
                self.send(a.to, a.msg)
            elif isinstance(a, Broadcast):
                for j in range(self.cfg.n):
                    if j != self.index:
                        self.send(j, a.msg)
            elif isinstance(a, SetTimer):
                self.set_timer(a.name, a.delay_ms)
            elif isinstance(a, CancelTimer):
                self.timers.pop(a.name, None)
            elif isinstance(a, Deliver):
                self.deliver(a)
            elif isinstance(a, FetchState):
                self.fetch(a)
            elif isinstance(a, Report):
                self.reports.append(a)
            elif isinstance(a, Halt):
                self.halted = a.reason
                self.net.log(f"node {self.index} HALT {a.reason}")
        self.maybe_propose()

    def send(self, to: int, msg: Message) -> None:
        data = msg.encode()
        self.cluster.route(self.index, to, data, describe(msg))

    def set_timer(self, name: str, delay: int) -> None:
        self.generation += 1
        gen = self.generation
        self.timers[name] = gen
        epoch = self.epoch
        self.net.after(delay, lambda: self.epoch == epoch and self.fire_timer(name, gen))

    def deliver(self, d: Deliver) -> None:
        if d.seq != self.disk.delivered + 1:
            raise AssertionError(
                f"node {self.index}: delivered seq {d.seq} after {self.disk.delivered}"
            )
        self.delivery_log.append((d.seq, d.digest))
        root = self.disk.state_root
        if not d.is_null:
            reqs = decode_batch(d.batch) or []
            for req in reqs:
                if req not in self.disk.executed:
                    self.disk.executed.add(req)
                    if req in self.cluster.submit_time:
                        self.done_count += 1
                    root = hashlib.sha256(root + req).digest()
                self.pool.pop(req, None)
                self.proposed.discard(req)
        self.disk.state_root = root
        self.disk.ledger[d.seq] = CommittedEntry(d.seq, d.batch, d.certificate)
        self.disk.roots[d.seq] = root
        self.disk.delivered = d.seq
        self.cluster.on_deliver(self, d)
        self.feed(BatchExecuted(d.seq, root))
        self.feed(PendingWork(bool(self.pool)))

    # -- batching (the primary's driver) ---------------------------------------------

    def maybe_propose(self, force: bool = False) -> None:
        if self.crashed or self.halted or not self.replica.can_propose():
            return
        if self.proposed_view != self.replica.view:
            # Proposals of an earlier view that were not delivered are abandoned: offer them again.
            self.proposed.clear()
            self.proposed_view = self.replica.view
        size = self.cluster.batch_size
        while self.replica.can_propose():
            chunk = list(islice((r for r in self.pool if r not in self.proposed), size))
            if not chunk:
                return
            if len(chunk) < size and not force:
                if not self.batch_timer_armed:
                    self.batch_timer_armed = True
                    self.set_timer(BATCH_TIMER, self.cluster.batch_timeout)
                return
            self.proposed.update(chunk)
            self.propose(chunk)

    def propose(self, chunk: list[bytes]) -> None:
        actions = self.replica.handle(ProposeBatch(encode_batch(chunk), self.net.now), self.net.now)
        self.carry_out(actions)

    # -- state transfer ---------------------------------------------------------------

    def fetch(self, a: FetchState) -> None:
        self.fetch_upto = max(self.fetch_upto, a.to_seq)
        peers = [j for j in range(self.cfg.n) if j != self.index]
        if not peers:
            return
        self.fetch_peer = (
            peers[(peers.index(self.fetch_peer) + 1) % len(peers)]
            if self.fetch_peer in peers
            else peers[0]
        )
        req = StateRequest(a.from_seq, a.to_seq, self.index).signed(self.cfg.chain_id, self.sign)
        self.send(self.fetch_peer, req)

    def _serve_state(self, req: StateRequest) -> None:
        last = self.disk.delivered
        hi = last if req.to_seq == 0 else min(req.to_seq, last)
        hi = min(hi, req.from_seq + MAX_STATE_ENTRIES - 1)
        entries = tuple(
            self.disk.ledger[s] for s in range(req.from_seq, hi + 1) if s in self.disk.ledger
        )
        self.send(
            req.sender, StateReply(last, entries, self.index).signed(self.cfg.chain_id, self.sign)
        )

    def _consume_state(self, reply: StateReply) -> None:
        before = self.disk.delivered
        for e in reply.entries:
            self.feed(StateFetched(e))
        if self.crashed or self.halted:
            return
        after = self.disk.delivered
        # Keep going while the peer has more and we are making progress.
        if after > before and reply.last_seq > after:
            req = StateRequest(after + 1, 0, self.index).signed(self.cfg.chain_id, self.sign)
            self.send(reply.sender, req)


def describe(msg: Message) -> str:
    name = type(msg).__name__
    parts = [name, f"from={msg.sender}"]
    for attr in ("view", "new_view", "seq", "from_seq"):
        if hasattr(msg, attr):
            parts.append(f"{attr}={getattr(msg, attr)}")
    if isinstance(msg, Commit | PrePrepare):
        parts.append(f"d={msg.digest.hex()[:6]}")
    return " ".join(parts)
