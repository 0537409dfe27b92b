"""View-change logic that is pure data-in, data-out: checking a view-change
message and computing the new view's pre-prepares (Castro & Liskov §4.4).

Both the new primary (to build its NewView) and every backup (to check it)
run :func:`plan_new_view` on the same quorum of view changes, so a primary
cannot slip in anything the view changes do not justify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.messages import NULL_DIGEST, Checkpoint, Commit, PreparedCert, ViewChange
from medchain.consensus.verify import batch_matches, check_commit_quorum


def check_prepared_cert(pc: PreparedCert, cfg: ReplicaConfig) -> str | None:
    pp = pc.preprepare
    if pp.sender != cfg.primary(pp.view):
        return f"pre-prepare for view {pp.view} not from its primary"
    if not batch_matches(pp.digest, pp.batch, cfg.digest_fn):
        return f"prepared batch at seq {pp.seq} does not match its digest"
    senders = set()
    for p in pc.prepares:
        if (p.view, p.seq, p.digest) != (pp.view, pp.seq, pp.digest):
            return f"prepare does not match pre-prepare at seq {pp.seq}"
        if p.sender == pp.sender or not 0 <= p.sender < cfg.n:
            return f"prepare from replica {p.sender} cannot count at seq {pp.seq}"
        senders.add(p.sender)
    if len(senders) < cfg.quorum - 1:
        return f"prepared certificate at seq {pp.seq} has {len(senders)} prepares, needs {cfg.quorum - 1}"
    return None


def check_checkpoint_proof(
    seq: int, root: bytes, proof: Sequence[Checkpoint], cfg: ReplicaConfig
) -> str | None:
    if seq == 0:
        return None
    if seq % cfg.checkpoint_interval:
        return f"checkpoint at {seq} is not a multiple of {cfg.checkpoint_interval}"
    senders = {
        c.sender for c in proof if c.seq == seq and c.state_root == root and 0 <= c.sender < cfg.n
    }
    if len(senders) < cfg.quorum or len(proof) != len(senders):
        return f"checkpoint proof for {seq} is not a quorum of distinct matching votes"
    return None


def check_view_change(vc: ViewChange, cfg: ReplicaConfig) -> str | None:
    """None if ``vc`` is well-formed (its signatures were verified at the boundary)."""
    why = check_checkpoint_proof(vc.stable_seq, vc.stable_root, vc.checkpoint_proof, cfg)
    if why:
        return why
    if vc.committed_seq < vc.stable_seq:
        return "committed seq below its own stable checkpoint"
    if vc.committed_seq > vc.stable_seq:
        why = check_commit_quorum(vc.committed_proof, cfg.quorum, cfg.n)
        if why:
            return f"committed proof: {why}"
        if vc.committed_proof[0].seq != vc.committed_seq:
            return "committed proof is for another seq"
    elif vc.committed_proof:
        return "committed proof given for a seq the checkpoint already covers"
    seen: set[int] = set()
    for pc in vc.prepared:
        pp = pc.preprepare
        if pp.seq in seen:
            return f"two prepared certificates for seq {pp.seq}"
        seen.add(pp.seq)
        if pp.view >= vc.new_view:
            return f"prepared certificate from view {pp.view}, not before {vc.new_view}"
        if pp.seq <= vc.committed_seq:
            return f"prepared certificate for seq {pp.seq}, already committed"
        if pp.seq > vc.stable_seq + cfg.log_window:
            return f"prepared certificate for seq {pp.seq} beyond the log window"
        why = check_prepared_cert(pc, cfg)
        if why:
            return why
    return None


@dataclass(frozen=True)
class NewViewPlan:
    stable_seq: int
    stable_root: bytes
    stable_proof: tuple[Checkpoint, ...]
    base_seq: int  # everything up to here is decided (checkpoint or commit certificate)
    base_proof: tuple[Commit, ...]  # commit certificate for base_seq, if above the checkpoint
    entries: tuple[
        tuple[int, int, bytes, bytes], ...
    ]  # (seq, timestamp, digest, batch); null: NULL_DIGEST


def plan_new_view(vcs: Sequence[ViewChange]) -> NewViewPlan:
    """The decided prefix and the pre-prepares the new view must re-issue."""
    stable = max(vcs, key=lambda v: (v.stable_seq, v.sender))
    committed = max(vcs, key=lambda v: (v.committed_seq, v.sender))
    base_seq = max(stable.stable_seq, committed.committed_seq)
    base_proof = committed.committed_proof if committed.committed_seq > stable.stable_seq else ()
    best: dict[int, PreparedCert] = {}
    for vc in vcs:
        for pc in vc.prepared:
            s = pc.preprepare.seq
            if s > base_seq and (s not in best or pc.preprepare.view > best[s].preprepare.view):
                best[s] = pc
    entries = []
    for s in range(base_seq + 1, max(best, default=base_seq) + 1):
        if s in best:
            pp = best[s].preprepare
            entries.append((s, pp.timestamp_ms, pp.digest, pp.batch))
        else:
            entries.append((s, 0, NULL_DIGEST, b""))
    return NewViewPlan(
        stable.stable_seq,
        stable.stable_root,
        stable.checkpoint_proof,
        base_seq,
        base_proof,
        tuple(entries),
    )
