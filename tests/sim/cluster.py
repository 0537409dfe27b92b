"""A simulated consortium: nodes, clients, faults, and the invariants."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import Deliver
from medchain.consensus.messages import (
    Commit,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    decode_message,
)
from tests.sim.network import LinkRules, Partition, SimNetwork
from tests.sim.node import Ed25519Crypto, HmacCrypto, SimNode, decode_batch, encode_batch

BYZANTINE_KINDS = ("silent", "slow", "equivocate", "forge", "wrong-view", "replay", "garbage")


@dataclass
class Scenario:
    seed: int
    n: int = 4
    requests: int = 60
    load_until: int = 3_000
    heal_at: int = 4_000
    deadline_after_heal: int = 60_000
    rules: LinkRules = field(default_factory=LinkRules)
    partitions: list[Partition] = field(default_factory=list)
    crashes: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # (node, crash at, restart at)
    byzantine: dict[int, str] = field(default_factory=dict)
    batch_size: int = 8
    batch_timeout: int = 5
    checkpoint_interval: int = 5
    log_window: int = 10
    max_inflight: int = 4
    view_change_timeout: int = 300
    real_signatures: bool = False

    def describe(self) -> str:
        parts = [f"seed={self.seed} n={self.n} reqs={self.requests}"]
        r = self.rules
        if r.drop or r.duplicate or r.delay_max > 5:
            parts.append(
                f"drop={r.drop:.2f} dup={r.duplicate:.2f} delay={r.delay_min}-{r.delay_max}"
            )
        for p in self.partitions:
            parts.append(f"partition {sorted(p.group)} {p.start}-{p.heal}")
        for node, at, back in self.crashes:
            parts.append(f"crash {node} {at}-{back}")
        for node, kind in sorted(self.byzantine.items()):
            parts.append(f"byzantine {node}={kind}")
        parts.append(
            f"K={self.checkpoint_interval} L={self.log_window} W={self.max_inflight} heal={self.heal_at}"
        )
        return ", ".join(parts)


class Cluster:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.net = SimNetwork(sc.seed, sc.rules, sc.heal_at, sc.partitions)
        self.crypto: HmacCrypto | Ed25519Crypto = (
            Ed25519Crypto(sc.n, sc.seed) if sc.real_signatures else HmacCrypto(sc.n, sc.seed)
        )
        self.batch_size = sc.batch_size
        self.batch_timeout = sc.batch_timeout
        self.submitted: list[bytes] = []
        self.submit_time: dict[bytes, int] = {}
        self.first_exec: dict[bytes, int] = {}
        self.nodes = [SimNode(self, i, self._config(i)) for i in range(sc.n)]
        for i, kind in sc.byzantine.items():
            self.nodes[i].byzantine = kind
        self.replay_store: dict[int, list[bytes]] = {i: [] for i in sc.byzantine}

    def _config(self, i: int) -> ReplicaConfig:
        sc = self.sc
        return ReplicaConfig(
            chain_id=f"sim-{sc.seed}",
            n=sc.n,
            index=i,
            checkpoint_interval=sc.checkpoint_interval,
            log_window=sc.log_window,
            max_inflight=sc.max_inflight,
            view_change_timeout_ms=sc.view_change_timeout,
            max_backoff_exponent=4,
            max_clock_drift_ms=60_000,
            fetch_retry_ms=200,
            digest_fn=lambda b: hashlib.sha256(b).digest(),
        )

    @property
    def honest(self) -> list[SimNode]:
        return [nd for nd in self.nodes if nd.byzantine is None]

    # -- routing with Byzantine behaviour ------------------------------------------

    def route(self, src: int, dst: int, data: bytes, what: str) -> None:
        node = self.nodes[src]
        if node.byzantine == "slow":
            # Everything it sends arrives late: as a primary it stalls progress without being silent.
            self.net.after(
                4 * self.sc.view_change_timeout // 3, lambda: self._transmit(src, dst, data, what)
            )
            return
        if node.byzantine is not None:
            for dst2, data2, what2 in self._misbehave(node, dst, data, what):
                self._transmit(src, dst2, data2, what2)
            return
        self._transmit(src, dst, data, what)

    def _transmit(self, src: int, dst: int, data: bytes, what: str) -> None:
        target = self.nodes[dst]
        epoch = target.epoch

        def arrive() -> None:
            if target.epoch == epoch:  # messages in flight to a crashed node are lost
                target.receive_wire(src, data, epoch)

        self.net.log(f"{src}->{dst} {what}")
        self.net.transmit(src, dst, arrive, what)

    def _misbehave(
        self, node: SimNode, dst: int, data: bytes, what: str
    ) -> list[tuple[int, bytes, str]]:
        kind = node.byzantine
        msg = decode_message(data)
        rng = self.net.rng
        out = [(dst, data, what)]
        chain = node.cfg.chain_id
        if kind == "silent":
            if node.replica.is_primary or isinstance(msg, PrePrepare | NewView):
                return []
        elif kind == "equivocate":
            if isinstance(msg, PrePrepare) and not msg.is_null and dst % 2 == 1:
                reqs = decode_batch(msg.batch) or []
                alt = encode_batch([*reversed(reqs), b"equivocation-%d" % msg.seq])
                evil = replace(msg, batch=alt, digest=node.cfg.digest_fn(alt)).signed(
                    chain, node.sign
                )
                out = [(dst, evil.encode(), f"EVIL {what}")]
        elif kind == "forge":
            victim = (node.index + 1) % node.cfg.n
            forged = Commit(
                0, 1, bytes(32), victim, bytes(64)
            )  # claims another sender, garbage signature
            bad_sig = Prepare(
                node.replica.view, node.replica.delivered + 1, bytes(32), node.index, bytes(64)
            )
            out += [
                (dst, forged.encode(), "FORGED commit"),
                (dst, bad_sig.encode(), "BADSIG prepare"),
            ]
        elif kind == "wrong-view":
            if isinstance(msg, Prepare | Commit | PrePrepare):
                for dv in (1, 3):
                    wv = replace(msg, view=msg.view + dv).signed(chain, node.sign)
                    out.append((dst, wv.encode(), f"WRONGVIEW {what}"))
                if msg.view > 0:
                    old = replace(msg, view=msg.view - 1).signed(chain, node.sign)
                    out.append((dst, old.encode(), f"OLDVIEW {what}"))
        elif kind == "replay":
            store = self.replay_store[node.index]
            store.append(data)
            if len(store) > 500:
                del store[: len(store) - 500]
            for _ in range(2):
                old = store[rng.randrange(len(store))]
                out.append((rng.randrange(node.cfg.n), old, "REPLAY"))
        elif kind == "garbage":
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            out.append((dst, junk, "GARBAGE"))
            if isinstance(msg, ViewChange):
                return out
        return [(d, x, w) for d, x, w in out if d != node.index]

    # -- clients ----------------------------------------------------------------------

    def submit(self, req: bytes) -> None:
        self.submitted.append(req)
        self.submit_time[req] = self.net.now
        for nd in self.nodes:
            self.net.after(self.net.rng.randint(1, 3), lambda nd=nd: nd.receive_request(req))

    def requests_for(self, index: int) -> list[bytes]:
        return list(self.submitted)

    def on_deliver(self, node: SimNode, d: Deliver) -> None:
        if node.byzantine is None and not d.is_null:
            for req in decode_batch(d.batch) or []:
                self.first_exec.setdefault(req, self.net.now)

    # -- running ------------------------------------------------------------------------

    def schedule(self) -> None:
        sc, rng = self.sc, self.net.rng
        for nd in self.nodes:
            self.net.at(0, nd.start)
        for k in range(sc.requests):
            t = rng.randint(0, sc.load_until)
            req = b"req-%d-%d" % (sc.seed, k)
            self.net.at(t, lambda req=req: self.submit(req))
        for node, at, back in sc.crashes:
            self.net.at(at, self.nodes[node].crash)
            self.net.at(back, self.nodes[node].restart)

    def done(self) -> bool:
        if len(self.submitted) < self.sc.requests:
            return False
        total = len(self.submitted)
        return all(not nd.crashed and nd.done_count >= total for nd in self.honest)

    def run(self) -> Result:
        self.schedule()
        deadline = self.sc.heal_at + self.sc.deadline_after_heal
        self.net.run(deadline, stop=self.done)
        return Result(self)


@dataclass
class Result:
    cluster: Cluster

    def violations(self) -> list[str]:
        c = self.cluster
        out: list[str] = []
        honest = c.honest
        # Safety: no two honest replicas deliver different batches at the same seq (across restarts too).
        by_seq: dict[int, tuple[bytes, int]] = {}
        for nd in honest:
            last = 0
            for seq, digest in nd.delivery_log:
                if seq != last + 1:
                    out.append(f"node {nd.index} delivered seq {seq} after {last}")
                last = seq
                prev = by_seq.setdefault(seq, (digest, nd.index))
                if prev[0] != digest:
                    out.append(
                        f"SAFETY: seq {seq} delivered as {prev[0].hex()[:8]} by {prev[1]} and {digest.hex()[:8]} by {nd.index}"
                    )
            if nd.halted:
                out.append(f"node {nd.index} halted: {nd.halted}")
        # Same state root at every seq both delivered.
        for a in honest:
            for b in honest:
                if a.index < b.index:
                    for seq in set(a.disk.roots) & set(b.disk.roots):
                        if a.disk.roots[seq] != b.disk.roots[seq]:
                            out.append(
                                f"state roots of {a.index} and {b.index} differ at seq {seq}"
                            )
                            break
        # Liveness: everything submitted is executed by every honest replica.
        total = set(c.submitted)
        for nd in honest:
            missing = total - nd.disk.executed
            if missing:
                out.append(
                    f"LIVENESS: node {nd.index} is missing {len(missing)} of {len(total)} requests (delivered up to {nd.disk.delivered}, view {nd.replica.view}, normal={nd.replica.normal})"
                )
        return out

    def trace(self) -> str:
        c = self.cluster
        lines = [
            f"scenario: {c.sc.describe()}",
            f"virtual time {c.net.now} ms, network {c.net.stats}",
        ]
        for nd in c.nodes:
            r = nd.replica
            lines.append(
                f"node {nd.index}{' (' + nd.byzantine + ')' if nd.byzantine else ''}: view {r.view} "
                f"{'normal' if r.normal else 'view-change'} delivered {nd.disk.delivered} low {r.low} "
                f"executed {len(nd.disk.executed)} pool {len(nd.pool)} crashed={nd.crashed}"
            )
            for rep in nd.reports[-5:]:
                lines.append(f"    report: {rep.level} {rep.text}")
        lines.append("last messages:")
        lines.extend(c.net.trace)
        return "\n".join(lines)

    def latency_ms(self) -> list[int]:
        c = self.cluster
        return [c.first_exec[r] - c.submit_time[r] for r in c.submitted if r in c.first_exec]
