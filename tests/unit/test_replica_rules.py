"""One test per PBFT rule, driving replicas by hand (no network)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import (
    Action,
    BatchExecuted,
    Broadcast,
    Deliver,
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
    Checkpoint,
    Commit,
    CommittedEntry,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    StateReply,
    ViewChange,
    decode_message,
)
from medchain.consensus.persist import (
    PersistedState,
    SlotRecord,
    ViewRecord,
    decode_record,
    encode_record,
)
from medchain.consensus.replica import Replica, Restored
from medchain.consensus.verify import Ed25519Verifier, verify_message
from medchain.storage.crypto import Signer
from tests.sim.node import HmacCrypto

CHAIN = "rules"
NOW = 1_000_000


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


class Harness:
    def __init__(self, n: int = 4, **kw: int) -> None:
        self.n = n
        self.crypto = HmacCrypto(n, 7)
        self.cfgs = [ReplicaConfig(CHAIN, n, i, **kw) for i in range(n)]
        self.replicas = [Replica(c, self.crypto.signer(i)) for i, c in enumerate(self.cfgs)]
        self.delivered: dict[int, list[Deliver]] = {i: [] for i in range(n)}

    def sign(self, i: int, msg: Message) -> Message:
        return msg.signed(CHAIN, self.crypto.signer(i))

    def feed(self, i: int, event: object, now: int = NOW) -> list[Action]:
        out = self.replicas[i].handle(event, now)  # type: ignore[arg-type]
        self.delivered[i].extend(a for a in out if isinstance(a, Deliver))
        return out

    def run(self, seeds: dict[int, list[Action]], drop: set[tuple[int, int]] | None = None) -> None:
        """Deliver every Send/Broadcast until quiet (reliable, FIFO)."""
        queue = [(i, a) for i, acts in seeds.items() for a in acts]
        while queue:
            src, a = queue.pop(0)
            if isinstance(a, Broadcast | Send):
                targets = [a.to] if isinstance(a, Send) else [j for j in range(self.n) if j != src]
                for j in targets:
                    if drop and (src, j) in drop:
                        continue
                    wire = decode_message(a.msg.encode())  # through the codec, like the network
                    assert verify_message(wire, CHAIN, self.crypto) is None
                    queue.extend((j, b) for b in self.feed(j, MessageReceived(wire)))
            elif isinstance(a, Deliver):
                queue.extend(
                    (src, b) for b in self.feed(src, BatchExecuted(a.seq, sha(b"root %d" % a.seq)))
                )

    def propose(self, batch: bytes, ts: int = NOW) -> list[Action]:
        p = next(i for i, r in enumerate(self.replicas) if r.is_primary and r.normal)
        return self.feed(p, ProposeBatch(batch, ts))


def kinds(actions: list[Action]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, Broadcast | Send):
            out.append(type(a).__name__ + ":" + type(a.msg).__name__)
        else:
            out.append(type(a).__name__)
    return out


def test_quorums() -> None:
    for n, f, q in [(1, 0, 1), (4, 1, 3), (7, 2, 5), (10, 3, 7)]:
        c = ReplicaConfig(CHAIN, n, 0, checkpoint_interval=5, log_window=10)
        assert (c.f, c.quorum) == (f, q)


def test_normal_case_delivers_everywhere_in_order() -> None:
    h = Harness(4)
    acts = h.propose(b"batch-1")
    assert kinds(acts)[:2] == ["Persist", "Broadcast:PrePrepare"]
    h.run({0: acts})
    for i in range(4):
        assert [(d.seq, d.batch) for d in h.delivered[i]] == [(1, b"batch-1")]
        cert = h.delivered[i][0].certificate
        assert len({c.sender for c in cert}) == 3 and all(isinstance(c, Commit) for c in cert)


def test_single_replica_orders_alone() -> None:
    h = Harness(1, checkpoint_interval=2, log_window=4)
    for k in range(5):
        h.run({0: h.propose(b"b%d" % k, NOW + k)})
    assert [d.seq for d in h.delivered[0]] == [1, 2, 3, 4, 5]


def test_pipelining_and_strict_order() -> None:
    h = Harness(4, max_inflight=3)
    p = h.replicas[0]
    a1, a2, a3 = h.propose(b"one"), h.propose(b"two", NOW + 1), h.propose(b"three", NOW + 2)
    assert p.inflight() == 3 and not p.can_propose()
    assert kinds(h.propose(b"four", NOW + 3)) == ["Report"]  # window of in-flight batches full
    # Let batches 2 and 3 complete first: nothing is delivered until 1 is.
    h.run({0: a2 + a3})
    assert h.delivered[1] == []
    h.run({0: a1})
    assert [d.batch for d in h.delivered[1]] == [b"one", b"two", b"three"]
    assert p.can_propose()


def test_watermarks() -> None:
    h = Harness(4, checkpoint_interval=5, log_window=10)
    r1 = h.replicas[1]
    for seq in (11, 0):
        pp = h.sign(0, PrePrepare(0, seq, NOW, sha(b"x"), b"x", 0))
        assert kinds(h.feed(1, MessageReceived(pp))) == []
    assert r1.slots == {}
    pp = h.sign(0, PrePrepare(0, 10, NOW, sha(b"x"), b"x", 0))
    assert "Broadcast:Prepare" in kinds(h.feed(1, MessageReceived(pp)))


def test_preprepare_checks() -> None:
    h = Harness(4)
    bad_digest = h.sign(0, PrePrepare(0, 1, NOW, sha(b"other"), b"x", 0))
    assert isinstance(h.feed(1, MessageReceived(bad_digest))[0], Report)
    not_primary = h.sign(2, PrePrepare(0, 1, NOW, sha(b"x"), b"x", 2))
    assert isinstance(h.feed(1, MessageReceived(not_primary))[0], Report)
    drift = h.sign(0, PrePrepare(0, 1, NOW + 60_000, sha(b"x"), b"x", 0))
    out = h.feed(1, MessageReceived(drift))
    assert len(out) == 1 and "drifts" in out[0].text  # type: ignore[union-attr]
    ok = h.sign(0, PrePrepare(0, 1, NOW, sha(b"x"), b"x", 0))
    assert kinds(h.feed(1, MessageReceived(ok)))[:2] == ["Persist", "Broadcast:Prepare"]
    not_advancing = h.sign(0, PrePrepare(0, 2, NOW - 1, sha(b"y"), b"y", 0))
    out = h.feed(1, MessageReceived(not_advancing))
    assert len(out) == 1 and "does not advance" in out[0].text  # type: ignore[union-attr]


def test_persist_before_send() -> None:
    h = Harness(4)
    acts = h.propose(b"b")
    pp = next(a.msg for a in acts if isinstance(a, Broadcast))
    out = h.feed(1, MessageReceived(pp))
    assert kinds(out)[:2] == ["Persist", "Broadcast:Prepare"]
    rec = out[0].record  # type: ignore[union-attr]
    assert isinstance(rec, SlotRecord) and rec.preprepare == pp
    prepares = [h.sign(i, Prepare(0, 1, pp.digest, i)) for i in (2, 3)]  # type: ignore[attr-defined]
    out = h.feed(1, MessageReceived(prepares[0]))
    assert kinds(out) == [
        "Persist",
        "Broadcast:Commit",
    ]  # persisted prepared certificate, then commit
    assert out[0].record.prepares  # type: ignore[union-attr]
    out = h.feed(1, TimerFired("progress"))
    assert kinds(out)[:3] == ["Report", "Persist", "Broadcast:ViewChange"]
    assert out[1].record == ViewRecord(1, False)  # type: ignore[union-attr]


def test_equivocating_primary_detected_by_conflicting_preprepares() -> None:
    h = Harness(4)
    a = h.sign(0, PrePrepare(0, 1, NOW, sha(b"a"), b"a", 0))
    b = h.sign(0, PrePrepare(0, 1, NOW, sha(b"b"), b"b", 0))
    h.feed(1, MessageReceived(a))
    out = h.feed(1, MessageReceived(b))
    rep = next(x for x in out if isinstance(x, Report))
    assert rep.offender == 0 and "equivocated" in rep.text
    assert "Broadcast:ViewChange" in kinds(out)


def test_equivocation_detected_by_f_plus_1_conflicting_prepares() -> None:
    h = Harness(4)
    h.feed(1, MessageReceived(h.sign(0, PrePrepare(0, 1, NOW, sha(b"a"), b"a", 0))))
    # One conflicting prepare could be a liar; f+1 = 2 means an honest replica saw another batch.
    assert "Broadcast:ViewChange" not in kinds(
        h.feed(1, MessageReceived(h.sign(2, Prepare(0, 1, sha(b"b"), 2))))
    )
    out = h.feed(1, MessageReceived(h.sign(3, Prepare(0, 1, sha(b"b"), 3))))
    assert "Broadcast:ViewChange" in kinds(out)


def test_equivocation_detected_when_the_prepares_arrive_before_the_preprepare() -> None:
    """Found in CI under load: the other replicas' prepares can overtake the
    (slow, equivocating) primary's pre-prepare; the check must run on its arrival too."""
    h = Harness(4)
    h.feed(1, MessageReceived(h.sign(2, Prepare(0, 1, sha(b"b"), 2))))
    h.feed(1, MessageReceived(h.sign(3, Prepare(0, 1, sha(b"c"), 3))))
    out = h.feed(1, MessageReceived(h.sign(0, PrePrepare(0, 1, NOW, sha(b"a"), b"a", 0))))
    rep = next(x for x in out if isinstance(x, Report))
    assert rep.offender == 0 and "equivocated" in rep.text
    assert "Broadcast:ViewChange" in kinds(out)


def _view_change(h: Harness, senders: list[int], to: int = 1) -> dict[int, ViewChange]:
    vcs = {}
    for i in senders:
        out = h.feed(i, TimerFired("progress")) if h.replicas[i].normal else []
        vc = next(
            (a.msg for a in out if isinstance(a, Broadcast) and isinstance(a.msg, ViewChange)), None
        )
        assert vc is not None
        vcs[i] = vc
    return vcs


def test_view_change_needs_a_quorum_and_keeps_prepared_batches() -> None:
    h = Harness(4)
    acts = h.propose(b"prepared-only")
    pp = next(a.msg for a in acts if isinstance(a, Broadcast))
    # Everyone prepares, but commits are lost: nothing is delivered.
    for i in (1, 2, 3):
        h.feed(i, MessageReceived(pp))
    for i in (1, 2, 3):
        for j in (0, 1, 2, 3):
            if i != j:
                h.feed(j, MessageReceived(h.sign(i, Prepare(0, 1, pp.digest, i))))  # type: ignore[attr-defined]
    for h_i in (0, 1, 2, 3):
        h.replicas[h_i].pending = True
    vcs = _view_change(h, [0, 2, 3])
    assert all(vc.prepared and vc.prepared[0].preprepare.digest == pp.digest for vc in vcs.values())  # type: ignore[attr-defined]
    new_primary = h.replicas[1]
    # f+1 = 2 view changes make replica 1 join; with its own that is a quorum and it is the new primary.
    assert kinds(h.feed(1, MessageReceived(vcs[0]))) == []
    out = h.feed(1, MessageReceived(vcs[2]))
    assert "Broadcast:ViewChange" in kinds(out) and "Broadcast:NewView" in kinds(out)
    nv = next(a.msg for a in out if isinstance(a, Broadcast) and isinstance(a.msg, NewView))
    assert new_primary.view == 1 and new_primary.normal
    assert [p.digest for p in nv.preprepares] == [pp.digest]  # type: ignore[attr-defined]
    h.run({1: out})
    for i in range(4):
        assert [d.batch for d in h.delivered[i]] == [b"prepared-only"], i


def test_invalid_new_view_rejected() -> None:
    h = Harness(4)
    for r in h.replicas:
        r.pending = True
    vcs = _view_change(h, [0, 2, 3])
    good = NewView(1, tuple(vcs.values()), (), 1)
    # an extra pre-prepare the view changes do not justify
    sneaky = h.sign(
        1, replace(good, preprepares=(h.sign(1, PrePrepare(1, 1, NOW, sha(b"z"), b"z", 1)),))
    )
    out = h.feed(2, MessageReceived(sneaky))
    assert any(isinstance(a, Report) and a.offender == 1 for a in out)
    too_few = h.sign(1, replace(good, view_changes=tuple(vcs.values())[:2]))
    assert any(isinstance(a, Report) for a in h.feed(2, MessageReceived(too_few)))
    from_other = h.sign(3, replace(good, sender=3))
    assert any(isinstance(a, Report) for a in h.feed(2, MessageReceived(from_other)))
    assert not h.replicas[2].normal
    out = h.feed(2, MessageReceived(h.sign(1, good)))
    assert h.replicas[2].normal and h.replicas[2].view == 1


def test_checkpoint_stability_gc_and_divergence() -> None:
    h = Harness(4, checkpoint_interval=2, log_window=4)
    for k in range(4):
        h.run({0: h.propose(b"b%d" % k, NOW + k)})
    for r in h.replicas:
        assert r.low == 4 and all(s > 4 for s in r.slots) and not r.prepared_certs
    # A replica whose own root differs from a stable checkpoint halts, loudly.
    r = h.replicas[3]
    h.feed(3, BatchExecuted(6, sha(b"mine")))
    out: list[Action] = []
    for i in (0, 1, 2):
        out += h.feed(3, MessageReceived(h.sign(i, Checkpoint(6, sha(b"theirs"), i))))
    assert any(isinstance(a, Halt) for a in out) and r.halted


def test_behind_replica_fetches_state_and_verifies_certificates() -> None:
    h = Harness(4, checkpoint_interval=2, log_window=4)
    behind = h.replicas[3]
    for k in range(6):
        h.run({0: h.propose(b"b%d" % k, NOW + k)}, drop={(i, 3) for i in range(4)})
    assert h.delivered[3] == []
    out: list[Action] = []
    for i in (0, 1):
        out += h.feed(3, MessageReceived(h.sign(i, Checkpoint(6, sha(b"root 6"), i))))
    fetch = [a for a in out if isinstance(a, FetchState)]
    assert (
        fetch and fetch[0].from_seq == 1 and fetch[0].to_seq == 6
    )  # f+1 checkpoints beyond its window
    entries = [CommittedEntry(d.seq, d.batch, d.certificate) for d in h.delivered[0]]
    # An entry whose certificate lacks a quorum, or whose batch is not the certified one, is refused.
    short = replace(entries[0], commits=entries[0].commits[:2])
    assert isinstance(h.feed(3, StateFetched(short))[0], Report)
    swapped = replace(entries[0], batch=b"forged")
    assert isinstance(h.feed(3, StateFetched(swapped))[0], Report)
    for e in entries:
        h.feed(3, StateFetched(e))
    assert [d.batch for d in h.delivered[3]] == [b"b%d" % k for k in range(6)]
    assert behind.delivered == 6


def test_stable_checkpoint_beyond_the_window_moves_it_so_later_batches_are_not_dropped() -> None:
    # Replica 3 missed seq 1..6. A quorum's checkpoint at 6 arrives (beyond its window 0..4):
    # it moves its window there at once, so the messages of seq 7, sent while it is still
    # fetching 1..6, are kept and 7 is delivered right after the transfer.
    h = Harness(4, checkpoint_interval=2, log_window=4)
    for k in range(6):
        h.run({0: h.propose(b"b%d" % k, NOW + k)}, drop={(i, 3) for i in range(4)})
    out: list[Action] = []
    for i in (0, 1, 2):
        out += h.feed(3, MessageReceived(h.sign(i, Checkpoint(6, sha(b"root 6"), i))))
    behind = h.replicas[3]
    assert behind.low == 6 and behind.delivered == 0
    assert any(isinstance(a, FetchState) and a.to_seq == 6 for a in out)
    h.run({0: h.propose(b"b6", NOW + 6)})  # seq 7, replica 3 included
    assert h.delivered[3] == []
    for d in h.delivered[0][:6]:
        h.feed(3, StateFetched(CommittedEntry(d.seq, d.batch, d.certificate)))
    assert [d.batch for d in h.delivered[3]] == [b"b%d" % k for k in range(7)]


def test_commits_beyond_the_window_from_f_plus_1_replicas_start_a_fetch() -> None:
    # The chain stops at seq 5 (no checkpoint after 4): the only sign that 5 exists is the
    # commits replica 3 dropped while it was behind. f+1 of them make it fetch up to 5.
    h = Harness(4, checkpoint_interval=2, log_window=4)
    for k in range(5):
        h.run({0: h.propose(b"b%d" % k, NOW + k)}, drop={(i, 3) for i in range(4)})
    c5 = [c for c in h.replicas[0].slots[5].commits.values()]
    out: list[Action] = []
    for c in c5[:1]:
        out += h.feed(3, MessageReceived(c))
    assert not any(isinstance(a, FetchState) for a in out)  # one replica's word is not enough
    for c in c5[1:2]:
        out += h.feed(3, MessageReceived(c))
    assert any(isinstance(a, FetchState) and a.to_seq == 5 for a in out)
    for d in h.delivered[0]:
        h.feed(3, StateFetched(CommittedEntry(d.seq, d.batch, d.certificate)))
    assert h.replicas[3].delivered == 5


def test_certificate_with_f_forged_signatures_rejected_at_boundary() -> None:
    signers = [Signer(bytes([i + 1]) * 32) for i in range(4)]
    verifier = Ed25519Verifier([s.public_key for s in signers])
    commits = tuple(Commit(0, 1, sha(b"x"), i).signed(CHAIN, signers[i].sign) for i in range(3))
    reply = StateReply(1, (CommittedEntry(1, b"x", commits),), 0).signed(CHAIN, signers[0].sign)
    assert verify_message(reply, CHAIN, verifier) is None
    forged = replace(
        commits[2], signature=signers[0].sign(commits[2].sign_bytes(CHAIN))
    )  # f = 1 forged
    bad = StateReply(1, (CommittedEntry(1, b"x", (*commits[:2], forged)),), 0).signed(
        CHAIN, signers[0].sign
    )
    why = verify_message(bad, CHAIN, verifier)
    assert why is not None and "replica 2" in why


def test_restart_never_contradicts_what_it_persisted() -> None:
    h = Harness(4)
    pp_a = h.sign(0, PrePrepare(0, 1, NOW, sha(b"a"), b"a", 0))
    out = h.feed(1, MessageReceived(pp_a))
    disk = PersistedState()
    for a in out:
        if isinstance(a, Persist):
            disk.apply(decode_record(encode_record(a.record)))  # type: ignore[arg-type]
    r = Replica(h.cfgs[1], h.crypto.signer(1), Restored(disk))
    h.replicas[1] = r
    out = h.feed(1, Start())
    assert kinds(out)[0] == "Report" and "Broadcast:Prepare" in kinds(out)
    # The same (view, seq) with another digest is equivocation, not a second vote.
    pp_b = h.sign(0, PrePrepare(0, 1, NOW, sha(b"b"), b"b", 0))
    out = h.feed(1, MessageReceived(pp_b))
    assert not any(
        isinstance(a, Broadcast) and isinstance(a.msg, Prepare) and a.msg.digest == sha(b"b")
        for a in out
    )
    assert any(
        isinstance(a, FetchState) for a in h.feed(1, Start())
    )  # and asks peers what it missed


def test_progress_timer_only_with_work_and_backoff_doubles() -> None:
    h = Harness(4, view_change_timeout_ms=100)
    assert not [a for a in h.feed(1, Start()) if isinstance(a, SetTimer)]
    timers = [a for a in h.feed(1, PendingWork(True)) if isinstance(a, SetTimer)]
    assert timers == [SetTimer("progress", 100)]
    r = h.replicas[1]
    r.vc_attempts = 3
    assert r._timeout() == 800


def test_stale_peer_gets_the_new_view() -> None:
    h = Harness(4)
    for r in h.replicas:
        r.pending = True
    vcs = _view_change(h, [0, 2, 3])
    nv_out = h.feed(1, MessageReceived(vcs[0])) + h.feed(1, MessageReceived(vcs[2]))
    nv = next(a.msg for a in nv_out if isinstance(a, Broadcast) and isinstance(a.msg, NewView))
    # A replica restarted in view 0 sends an old-view message to the primary of view 1 ...
    old = h.sign(3, Prepare(0, 1, sha(b"q"), 3))
    out = h.feed(1, MessageReceived(old))
    assert [a for a in out if isinstance(a, Send)] == [Send(3, nv)]
    assert h.feed(1, MessageReceived(old)) == []  # once per view


def test_memory_bounded_over_many_sequence_numbers() -> None:
    h = Harness(4, checkpoint_interval=10, log_window=20)
    peak = 0
    for k in range(600):
        h.run({0: h.propose(b"b%d" % k, NOW + k)})
        for r in h.replicas:
            peak = max(
                peak,
                len(r.slots) + len(r.prepared_certs) + len(r.checkpoint_votes) + len(r.exec_roots),
            )
    assert h.replicas[2].delivered == 600 and h.replicas[2].low == 600
    assert peak <= 2 * 20 + 4


@pytest.mark.parametrize("msg_type", ["preprepare", "viewchange"])
def test_messages_round_trip(msg_type: str) -> None:
    h = Harness(4)
    if msg_type == "preprepare":
        m: Message = h.sign(0, PrePrepare(0, 1, NOW, sha(b"x"), b"x", 0))
    else:
        for r in h.replicas:
            r.pending = True
        m = _view_change(h, [2])[2]
    assert decode_message(m.encode()) == m
