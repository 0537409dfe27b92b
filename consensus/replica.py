"""A PBFT replica as a pure state machine: ``handle(event, now) -> [Action]``.

It orders opaque batches (bytes + digest) and knows nothing of contracts,
sockets, clocks or disks: time comes in as ``now``, messages come in already
authenticated (consensus.verify), and everything it wants done goes out as
actions, Persist first. See consensus/events.py for the vocabulary.

Normal case, checkpoints and view changes follow Castro & Liskov (OSDI '99,
TOCS '02), with two practical additions: a replica that holds a commit
certificate for a sequence number it cannot execute fetches the batch by state
transfer, and a replica in view v answers a peer stuck in an older view with
the NewView message that installed v.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from medchain.consensus.config import ReplicaConfig
from medchain.consensus.events import (
    TIMER_FETCH,
    TIMER_PROGRESS,
    TIMER_VIEW_CHANGE,
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
    Checkpoint,
    Commit,
    CommittedEntry,
    Message,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    SignFn,
    ViewChange,
)
from medchain.consensus.persist import PersistedState, SlotRecord, StableRecord, ViewRecord
from medchain.consensus.verify import batch_matches, check_commit_quorum, check_entry
from medchain.consensus.viewchange import (
    NewViewPlan,
    check_checkpoint_proof,
    check_view_change,
    plan_new_view,
)


@dataclass
class Slot:
    """Agreement on one sequence number in the current view."""

    preprepare: PrePrepare | None = None
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False


@dataclass(frozen=True)
class Restored:
    """What the driver knows after a restart: its saved consensus records and
    how far its ledger has delivered (with that batch's certificate)."""

    persisted: PersistedState
    delivered_seq: int = 0
    delivered_proof: tuple[Commit, ...] = ()
    delivered_timestamp_ms: int = 0


class Replica:
    def __init__(
        self, config: ReplicaConfig, sign: SignFn, restored: Restored | None = None
    ) -> None:
        self.cfg = config
        self.me = config.index
        self._sign = sign
        r = restored or Restored(PersistedState())
        p = r.persisted
        self.restarted = restored is not None
        self.view = p.view
        self.normal = p.normal
        self.low = p.stable_seq  # low watermark = last stable checkpoint
        self.stable_root = p.stable_root
        self.stable_proof = p.stable_proof
        self.delivered = r.delivered_seq
        self.delivered_proof = r.delivered_proof
        self.last_ts = r.delivered_timestamp_ms
        self.slots: dict[int, Slot] = {}
        self.prepared_certs: dict[int, PreparedCert] = {}
        for seq, rec in sorted(p.slots.items()):
            if seq <= self.delivered:
                continue
            if rec.preprepare.view == self.view and self.normal:
                self.slots[seq] = Slot(preprepare=rec.preprepare, prepared=bool(rec.prepares))
            if rec.prepares:
                self.prepared_certs[seq] = PreparedCert(rec.preprepare, rec.prepares)
        self.next_seq = max([self.delivered, *self.slots]) + 1
        self.committed_ready: dict[int, tuple[PrePrepare, tuple[Commit, ...]]] = {}
        self.fetched: dict[int, CommittedEntry] = {}
        self.fetch_target = 0  # highest seq known committed that we still need
        self.certified: dict[int, tuple[Commit, ...]] = {}  # commit quorum seen, batch missing
        self.exec_roots: dict[int, bytes] = {}
        self.checkpoint_votes: dict[int, dict[bytes, dict[int, Checkpoint]]] = defaultdict(dict)
        self.ahead_checkpoints: dict[int, Checkpoint] = {}  # sender -> latest beyond our window
        # sender -> highest seq it committed beyond our window (those messages are dropped;
        # f+1 of them mean the batch is decided, so we fetch it instead).
        self.ahead_commits: dict[int, int] = {}
        # sender -> {view: its view change}; a few recent views each, so a view change that
        # a replica has since moved past still counts toward the quorum for its view.
        self.view_changes: dict[int, dict[int, ViewChange]] = defaultdict(dict)
        self.new_view_msg: NewView | None = None
        self.nv_sent: dict[int, int] = {}  # replica -> view of the NewView we last sent it
        self.future: dict[int, list[Message]] = defaultdict(list)
        self.future_count: dict[int, int] = defaultdict(int)  # per sender
        self.future_senders: dict[int, set[int]] = defaultdict(
            set
        )  # view -> who sent us messages in it
        self.now = 0
        self.pending = False
        self.vc_attempts = 0
        self.vc_timer_view = -1
        self.progress_armed = False
        self.halted: str | None = None

    # -- public helpers ----------------------------------------------------------

    @property
    def primary(self) -> int:
        return self.cfg.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.primary == self.me

    @property
    def high(self) -> int:
        return self.low + self.cfg.log_window

    def can_propose(self) -> bool:
        return (
            self.halted is None
            and self.normal
            and self.is_primary
            and self.next_seq <= self.high
            and self.next_seq <= self.delivered + self.cfg.max_inflight
        )

    def inflight(self) -> int:
        return self.next_seq - 1 - self.delivered

    # -- dispatch ------------------------------------------------------------------

    def handle(self, event: Event, now: int) -> list[Action]:
        if self.halted is not None:
            return []
        self.now = now
        out: list[Action] = []
        if isinstance(event, MessageReceived):
            self._on_message(event.msg, out)
        elif isinstance(event, ProposeBatch):
            self._on_propose(event, out)
        elif isinstance(event, BatchExecuted):
            self._on_executed(event, out)
        elif isinstance(event, TimerFired):
            self._on_timer(event.name, out)
        elif isinstance(event, PendingWork):
            self.pending = event.pending
            self._arm_progress(out)
        elif isinstance(event, StateFetched):
            self._on_fetched(event.entry, out)
        elif isinstance(event, Start):
            self._on_start(out)
        return out

    def _on_message(self, msg: Message, out: list[Action]) -> None:
        if not 0 <= msg.sender < self.cfg.n or msg.sender == self.me:
            return
        if isinstance(msg, PrePrepare | Prepare | Commit):
            if msg.view < self.view:
                self._help_stale_peer(msg.sender, out)
                return
            if msg.view > self.view or not self.normal:
                self._buffer_future(msg)  # for a view we have not installed yet
                self._catch_up_view(msg.view, out)
                return
            if isinstance(msg, PrePrepare):
                self._on_preprepare(msg, out)
            elif isinstance(msg, Prepare):
                self._on_prepare(msg, out)
            else:
                self._on_commit(msg, out)
        elif isinstance(msg, Checkpoint):
            self._on_checkpoint(msg, out)
        elif isinstance(msg, ViewChange):
            self._on_view_change(msg, out)
        elif isinstance(msg, NewView):
            self._on_new_view(msg, out)

    # -- normal case -----------------------------------------------------------------

    def _on_start(self, out: list[Action]) -> None:
        if self.restarted:
            out.append(
                Report(
                    "info",
                    f"replica {self.me} restarted in view {self.view} at seq {self.delivered}",
                )
            )
            if not self.normal:
                self._send_view_change(out)
            else:
                # Repeat (identically: Ed25519 is deterministic) what we had said in this view.
                for seq, slot in sorted(self.slots.items()):
                    pp = slot.preprepare
                    assert pp is not None
                    if self.is_primary:
                        out.append(Broadcast(pp))
                    else:
                        self._record_prepare(seq, slot, out)
                    if slot.prepared:
                        c = Commit(self.view, seq, pp.digest, self.me).signed(
                            self.cfg.chain_id, self._sign
                        )
                        slot.commits[self.me] = c
                        out.append(Broadcast(c))
            # Ask peers for whatever was committed while we were down.
            out.append(FetchState(self.delivered + 1, 0))
        self._arm_progress(out)

    def _on_propose(self, ev: ProposeBatch, out: list[Action]) -> None:
        if not self.can_propose():
            out.append(
                Report("info", "proposal refused: not the primary, changing view, or window full")
            )
            return
        digest = self.cfg.digest_fn(ev.batch)
        ts = max(ev.timestamp_ms, self.last_proposed_ts() + 1)
        pp = PrePrepare(self.view, self.next_seq, ts, digest, ev.batch, self.me).signed(
            self.cfg.chain_id, self._sign
        )
        self.next_seq += 1
        slot = self.slots.setdefault(pp.seq, Slot())
        slot.preprepare = pp
        out.append(Persist(SlotRecord(pp.seq, pp)))
        out.append(Broadcast(pp))
        self._check_prepared(pp.seq, slot, out)
        self._arm_progress(out)

    def last_proposed_ts(self) -> int:
        ts = self.last_ts
        for slot in self.slots.values():
            if slot.preprepare is not None:
                ts = max(ts, slot.preprepare.timestamp_ms)
        return ts

    def _in_window(self, seq: int) -> bool:
        return self.low < seq <= self.high and seq > self.delivered

    def _on_preprepare(self, pp: PrePrepare, out: list[Action]) -> None:
        if pp.sender != self.primary:
            out.append(
                Report(
                    "warning",
                    f"pre-prepare from {pp.sender}, who is not primary of view {self.view}",
                    pp.sender,
                )
            )
            return
        if not self._in_window(pp.seq):
            return
        if pp.is_null or not batch_matches(pp.digest, pp.batch, self.cfg.digest_fn):
            out.append(
                Report(
                    "warning",
                    f"primary {pp.sender} sent a batch that does not match its digest",
                    pp.sender,
                )
            )
            return
        slot = self.slots.setdefault(pp.seq, Slot())
        if slot.preprepare is not None:
            if slot.preprepare.digest != pp.digest:
                self._equivocation(f"two different pre-prepares for seq {pp.seq}", out)
            return
        if abs(pp.timestamp_ms - self.now) > self.cfg.max_clock_drift_ms:
            drift = pp.timestamp_ms - self.now
            out.append(
                Report(
                    "warning",
                    f"pre-prepare {pp.seq} timestamp drifts {drift} ms from our clock",
                    pp.sender,
                )
            )
            return
        if pp.timestamp_ms <= self._timestamp_floor(pp.seq):
            out.append(
                Report("warning", f"pre-prepare {pp.seq} timestamp does not advance", pp.sender)
            )
            return
        slot.preprepare = pp
        out.append(Persist(SlotRecord(pp.seq, pp)))
        self._record_prepare(pp.seq, slot, out)
        if self._equivocated(pp.seq, slot, out):  # others' prepares may arrive first
            return
        self._check_prepared(pp.seq, slot, out)
        self._arm_progress(out)

    def _timestamp_floor(self, seq: int) -> int:
        floor = self.last_ts
        for s, slot in self.slots.items():
            if s < seq and slot.preprepare is not None and not slot.preprepare.is_null:
                floor = max(floor, slot.preprepare.timestamp_ms)
        return floor

    def _record_prepare(self, seq: int, slot: Slot, out: list[Action]) -> None:
        assert slot.preprepare is not None
        p = Prepare(self.view, seq, slot.preprepare.digest, self.me).signed(
            self.cfg.chain_id, self._sign
        )
        slot.prepares[self.me] = p
        out.append(Broadcast(p))

    def _on_prepare(self, p: Prepare, out: list[Action]) -> None:
        if p.sender == self.primary or not self._in_window(p.seq):
            return
        slot = self.slots.setdefault(p.seq, Slot())
        if p.sender in slot.prepares:
            return
        slot.prepares[p.sender] = p
        if self._equivocated(p.seq, slot, out):
            return
        self._check_prepared(p.seq, slot, out)

    def _equivocated(self, seq: int, slot: Slot, out: list[Action]) -> bool:
        """f+1 replicas, so at least one honest one, prepared another batch than the
        pre-prepare we accepted: the primary sent different ones."""
        pp = slot.preprepare
        if pp is None:
            return False
        conflicting = {q.sender for q in slot.prepares.values() if q.digest != pp.digest}
        if len(conflicting) <= self.cfg.f:
            return False
        self._equivocation(
            f"replicas {sorted(conflicting)} prepared another batch at seq {seq}", out
        )
        return True

    def _check_prepared(self, seq: int, slot: Slot, out: list[Action]) -> None:
        pp = slot.preprepare
        if pp is None or slot.prepared:
            return
        matching = [
            q for q in slot.prepares.values() if q.digest == pp.digest and q.sender != self.primary
        ]
        if len(matching) < self.cfg.quorum - 1:
            return
        slot.prepared = True
        prepares = tuple(sorted(matching, key=lambda q: q.sender)[: self.cfg.quorum - 1])
        self.prepared_certs[seq] = PreparedCert(pp, prepares)
        out.append(Persist(SlotRecord(seq, pp, prepares)))
        c = Commit(self.view, seq, pp.digest, self.me).signed(self.cfg.chain_id, self._sign)
        slot.commits[self.me] = c
        out.append(Broadcast(c))
        self._check_committed(seq, slot, out)

    def _on_commit(self, c: Commit, out: list[Action]) -> None:
        if not self._in_window(c.seq):
            if c.seq > self.high:
                self._note_ahead_commit(c, out)
            return
        slot = self.slots.setdefault(c.seq, Slot())
        if c.sender in slot.commits:
            return
        slot.commits[c.sender] = c
        self._check_committed(c.seq, slot, out)

    def _note_ahead_commit(self, c: Commit, out: list[Action]) -> None:
        """A commit beyond our window: remember the sender's highest; once f+1 replicas (one
        of them honest, so the batch is prepared at a quorum) committed beyond us, fetch."""
        if c.seq <= self.ahead_commits.get(c.sender, 0):
            return
        self.ahead_commits[c.sender] = c.seq
        ahead = sorted(self.ahead_commits.values(), reverse=True)
        if len(ahead) > self.cfg.f and ahead[self.cfg.f] > self.high:
            self._want_state(ahead[self.cfg.f], out)

    def _check_committed(self, seq: int, slot: Slot, out: list[Action]) -> None:
        if slot.committed:
            return
        by_digest: dict[bytes, list[Commit]] = defaultdict(list)
        for c in slot.commits.values():
            by_digest[c.digest].append(c)
        for digest, votes in by_digest.items():
            if len(votes) < self.cfg.quorum:
                continue
            cert = tuple(sorted(votes, key=lambda c: c.sender)[: self.cfg.quorum])
            pp = slot.preprepare
            if pp is not None and pp.digest == digest:
                # Prepared locally, or certified by a quorum of commits: either way decided.
                slot.committed = True
                self.committed_ready[seq] = (pp, cert)
                self._deliver_ready(out)
            elif seq not in self.certified:
                # A quorum committed a batch we do not have: fetch it with this certificate.
                self.certified[seq] = cert
                self._want_state(seq, out)
            return

    def _deliver_ready(self, out: list[Action]) -> None:
        progressed = False
        while True:
            seq = self.delivered + 1
            if seq in self.committed_ready:
                pp, cert = self.committed_ready.pop(seq)
                out.append(Deliver(seq, pp.view, pp.digest, pp.batch, cert))
                ts = pp.timestamp_ms
            elif seq in self.fetched:
                e = self.fetched.pop(seq)
                out.append(Deliver(seq, e.view, e.digest, e.batch, e.commits))
                cert = e.commits
                ts = 0  # opaque to us; the driver checks block times itself
            else:
                break
            self.delivered = seq
            self.delivered_proof = cert
            self.last_ts = max(self.last_ts, ts)
            self.certified.pop(seq, None)
            slot = self.slots.get(seq)
            if slot is not None and slot.preprepare is not None:
                slot.preprepare = slot.preprepare.without_batch()  # the driver has it now
            self.prepared_certs.pop(seq, None)
            progressed = True
        if progressed:
            self.vc_attempts = 0
            if self.progress_armed:
                out.append(CancelTimer(TIMER_PROGRESS))
                self.progress_armed = False
            self._arm_progress(out)
            if self.fetch_target and self.delivered >= self.fetch_target:
                self.fetch_target = 0
                out.append(CancelTimer(TIMER_FETCH))
                # Messages for batches committed while we were far behind were outside
                # our window and dropped: ask once for anything committed since, or a
                # replica that caught up as the load stopped would stay behind.
                out.append(FetchState(self.delivered + 1, 0))

    # -- progress timer ----------------------------------------------------------------

    def _has_work(self) -> bool:
        if self.pending:
            return True
        return any(
            s > self.delivered and slot.preprepare is not None for s, slot in self.slots.items()
        )

    def _timeout(self) -> int:
        return self.cfg.view_change_timeout_ms << min(
            self.vc_attempts, self.cfg.max_backoff_exponent
        )

    def _arm_progress(self, out: list[Action]) -> None:
        if not self.normal or self.progress_armed or not self._has_work():
            return
        self.progress_armed = True
        out.append(SetTimer(TIMER_PROGRESS, self._timeout()))

    def _on_timer(self, name: str, out: list[Action]) -> None:
        if name == TIMER_PROGRESS:
            self.progress_armed = False
            if self.normal and self._has_work():
                out.append(
                    Report(
                        "warning",
                        f"no progress in view {self.view} within {self._timeout()} ms; changing view",
                        self.primary,
                    )
                )
                self._start_view_change(self.view + 1, out)
        elif name == TIMER_VIEW_CHANGE and not self.normal:
            if self.vc_timer_view == self.view:
                # A quorum wanted this view but its primary did not install it in time.
                self.vc_attempts += 1
                out.append(
                    Report(
                        "warning",
                        f"view {self.view} was not installed in time; trying view {self.view + 1}",
                    )
                )
                self._start_view_change(self.view + 1, out)
            else:
                # No quorum yet: say it again (messages sent during a partition are lost),
                # but do not escalate alone; meanwhile catch up on whatever was committed.
                self._send_view_change(out, resend=True)
                out.append(FetchState(self.delivered + 1, 0))
        elif name == TIMER_FETCH and self.fetch_target > self.delivered:
            out.append(FetchState(self.delivered + 1, self.fetch_target))
            out.append(SetTimer(TIMER_FETCH, self.cfg.fetch_retry_ms))

    # -- checkpoints and state transfer -----------------------------------------------

    def _on_executed(self, ev: BatchExecuted, out: list[Action]) -> None:
        if ev.seq == self.low and self.low > 0 and ev.state_root != self.stable_root:
            self._halt(f"state root after seq {ev.seq} differs from the stable checkpoint", out)
            return
        if ev.seq % self.cfg.checkpoint_interval or ev.seq <= self.low:
            return
        self.exec_roots[ev.seq] = ev.state_root
        c = Checkpoint(ev.seq, ev.state_root, self.me).signed(self.cfg.chain_id, self._sign)
        out.append(Broadcast(c))
        self._add_checkpoint_vote(c, out)

    def _on_checkpoint(self, c: Checkpoint, out: list[Action]) -> None:
        if c.seq <= self.low or c.seq % self.cfg.checkpoint_interval:
            return
        if c.seq > self.high:
            prev = self.ahead_checkpoints.get(c.sender)
            if prev is None or c.seq > prev.seq:
                self.ahead_checkpoints[c.sender] = c
            same = [
                x
                for x in self.ahead_checkpoints.values()
                if x.seq == c.seq and x.state_root == c.state_root
            ]
            if len(same) >= self.cfg.quorum:
                # A stable checkpoint beyond our window (its proof is the quorum's signatures):
                # move the window there and fetch up to it, so that the messages of the
                # batches after it are no longer dropped while we catch up.
                proof = tuple(sorted(same, key=lambda x: x.sender)[: self.cfg.quorum])
                self._make_stable(c.seq, c.state_root, proof, out)
                return
            ahead = sorted(
                (x.seq for x in self.ahead_checkpoints.values() if x.seq > self.high), reverse=True
            )
            if len(ahead) > self.cfg.f:
                # f+1 replicas, one of them honest, have checkpointed beyond our window.
                self._want_state(ahead[self.cfg.f], out)
            return
        self._add_checkpoint_vote(c, out)

    def _add_checkpoint_vote(self, c: Checkpoint, out: list[Action]) -> None:
        votes = self.checkpoint_votes[c.seq].setdefault(c.state_root, {})
        votes.setdefault(c.sender, c)
        if len(votes) >= self.cfg.quorum:
            proof = tuple(sorted(votes.values(), key=lambda x: x.sender)[: self.cfg.quorum])
            self._make_stable(c.seq, c.state_root, proof, out)

    def _make_stable(
        self, seq: int, root: bytes, proof: tuple[Checkpoint, ...], out: list[Action]
    ) -> None:
        if seq <= self.low:
            return
        mine = self.exec_roots.get(seq)
        if mine is not None and mine != root:
            self._halt(f"our state root at checkpoint {seq} differs from the quorum's", out)
            return
        self.low, self.stable_root, self.stable_proof = seq, root, proof
        out.append(Persist(StableRecord(seq, root, proof)))
        for s in [s for s in self.slots if s <= seq]:
            del self.slots[s]
        # (fetched / committed_ready batches stay until delivered: we may still be behind.)
        for d in (self.prepared_certs, self.certified):
            for s in [s for s in d if s <= seq]:
                del d[s]
        for s in [s for s in self.checkpoint_votes if s <= seq]:
            del self.checkpoint_votes[s]
        for s in [s for s in self.exec_roots if s < seq]:
            del self.exec_roots[s]
        self.ahead_checkpoints = {
            k: v for k, v in self.ahead_checkpoints.items() if v.seq > self.high
        }
        if self.delivered < seq:
            self._want_state(seq, out)

    def _want_state(self, target: int, out: list[Action]) -> None:
        """Ask the driver to fetch committed batches up to ``target`` (retried on a timer)."""
        if target <= self.delivered or target <= self.fetch_target:
            return
        self.fetch_target = target
        out.append(FetchState(self.delivered + 1, target))
        out.append(SetTimer(TIMER_FETCH, self.cfg.fetch_retry_ms))

    def _on_fetched(self, entry: CommittedEntry, out: list[Action]) -> None:
        if entry.seq <= self.delivered or entry.seq > self.delivered + 2 * self.cfg.log_window:
            return
        why = check_entry(entry, self.cfg.quorum, self.cfg.n, self.cfg.digest_fn)
        if why:
            out.append(Report("warning", f"state transfer entry {entry.seq} rejected: {why}"))
            return
        self.fetched[entry.seq] = entry
        self._deliver_ready(out)

    def _halt(self, reason: str, out: list[Action]) -> None:
        self.halted = reason
        out.append(Halt(reason))

    # -- view change ------------------------------------------------------------------

    def _equivocation(self, what: str, out: list[Action]) -> None:
        out.append(
            Report(
                "error",
                f"primary {self.primary} equivocated in view {self.view}: {what}",
                self.primary,
            )
        )
        if self.normal:
            self._start_view_change(self.view + 1, out)

    def _start_view_change(self, new_view: int, out: list[Action]) -> None:
        if new_view <= self.view:
            return
        self.view = new_view
        self.normal = False
        self.slots = {}
        self.committed_ready = {}
        if self.progress_armed:
            out.append(CancelTimer(TIMER_PROGRESS))
            self.progress_armed = False
        out.append(Persist(ViewRecord(new_view, False)))
        self._send_view_change(out)

    def _send_view_change(self, out: list[Action], resend: bool = False) -> None:
        committed_proof = self.delivered_proof if self.delivered > self.low else ()
        vc = ViewChange(
            self.view,
            self.low,
            self.stable_root,
            self.stable_proof,
            self.delivered if committed_proof else self.low,
            committed_proof,
            tuple(
                pc
                for s, pc in sorted(self.prepared_certs.items())
                if s > self.delivered and s <= self.high
            ),
            self.me,
        ).signed(self.cfg.chain_id, self._sign)
        self._store_view_change(vc)
        if resend:
            for old in self.view_changes[self.me].values():
                out.append(Broadcast(old))  # the latest few: earlier ones may have been lost
        else:
            out.append(Broadcast(vc))
        if self.vc_timer_view != self.view:
            out.append(SetTimer(TIMER_VIEW_CHANGE, self.cfg.view_change_timeout_ms))
        if not resend:
            self._after_view_change_vote(out)

    def _on_view_change(self, vc: ViewChange, out: list[Action]) -> None:
        if vc.new_view < self.view or (vc.new_view == self.view and self.normal):
            self._help_stale_peer(vc.sender, out)
            return
        if vc.new_view in self.view_changes[vc.sender]:
            return
        why = check_view_change(vc, self.cfg)
        if why:
            out.append(Report("warning", f"invalid view change from {vc.sender}: {why}", vc.sender))
            return
        self._store_view_change(vc)
        # Join: f+1 replicas (one honest) want a view above ours.
        above = sorted(
            (
                max(d)
                for s, d in self.view_changes.items()
                if s != self.me and d and max(d) > self.view
            ),
            reverse=True,
        )
        if len(above) > self.cfg.f:
            self._start_view_change(above[self.cfg.f], out)  # the highest view f+1 of them want
            return
        self._after_view_change_vote(out)

    def _store_view_change(self, vc: ViewChange) -> None:
        mine = self.view_changes[vc.sender]
        mine[vc.new_view] = vc
        for v in sorted(mine)[:-4]:
            del mine[v]

    def _vcs_for(self, view: int) -> list[ViewChange]:
        return [d[view] for d in self.view_changes.values() if view in d]

    def _after_view_change_vote(self, out: list[Action]) -> None:
        if self.normal:
            return
        vcs = self._vcs_for(self.view)
        if len(vcs) < self.cfg.quorum:
            return
        if self.vc_timer_view != self.view:
            self.vc_timer_view = self.view
            out.append(SetTimer(TIMER_VIEW_CHANGE, self._timeout()))
        if self.is_primary:
            self._send_new_view(sorted(vcs, key=lambda v: v.sender)[: self.cfg.quorum], out)

    def _send_new_view(self, vcs: list[ViewChange], out: list[Action]) -> None:
        plan = plan_new_view(vcs)
        pps = tuple(
            PrePrepare(self.view, seq, ts, digest, batch, self.me).signed(
                self.cfg.chain_id, self._sign
            )
            for seq, ts, digest, batch in plan.entries
        )
        nv = NewView(self.view, tuple(vcs), pps, self.me).signed(self.cfg.chain_id, self._sign)
        out.append(Persist(ViewRecord(self.view, True)))
        for pp in pps:
            out.append(Persist(SlotRecord(pp.seq, pp)))
        out.append(Broadcast(nv))
        self._install(nv, plan, out, persisted=True)

    def _on_new_view(self, nv: NewView, out: list[Action]) -> None:
        if nv.view < self.view or (nv.view == self.view and self.normal):
            return
        if nv.sender != self.cfg.primary(nv.view):
            out.append(
                Report("warning", f"new-view for {nv.view} from non-primary {nv.sender}", nv.sender)
            )
            return
        why = self._check_new_view(nv)
        if why:
            out.append(
                Report(
                    "error",
                    f"invalid new-view for view {nv.view} from {nv.sender}: {why}",
                    nv.sender,
                )
            )
            return
        if nv.view > self.view:
            self.view = nv.view
        plan = plan_new_view(nv.view_changes)
        out.append(Persist(ViewRecord(nv.view, True)))
        self._install(nv, plan, out, persisted=False)

    def _check_new_view(self, nv: NewView) -> str | None:
        senders = set()
        for vc in nv.view_changes:
            if vc.new_view != nv.view:
                return f"contains a view change for view {vc.new_view}"
            why = check_view_change(vc, self.cfg)
            if why:
                return f"view change from {vc.sender}: {why}"
            senders.add(vc.sender)
        if len(senders) < self.cfg.quorum or len(senders) != len(nv.view_changes):
            return "not a quorum of distinct view changes"
        plan = plan_new_view(nv.view_changes)
        if len(plan.entries) != len(nv.preprepares):
            return "re-issued pre-prepares do not match the view changes"
        for (seq, ts, digest, batch), pp in zip(plan.entries, nv.preprepares, strict=True):
            if (pp.view, pp.seq, pp.timestamp_ms, pp.digest, pp.batch, pp.sender) != (
                nv.view,
                seq,
                ts,
                digest,
                batch,
                nv.sender,
            ):
                return f"re-issued pre-prepare for seq {seq} does not match the view changes"
        return None

    def _install(self, nv: NewView, plan: NewViewPlan, out: list[Action], persisted: bool) -> None:
        self.normal = True
        self.new_view_msg = nv
        self.slots = {}
        self.committed_ready = {}
        for d in self.view_changes.values():
            for v in [v for v in d if v <= self.view]:
                del d[v]
        out.append(CancelTimer(TIMER_VIEW_CHANGE))
        self.vc_timer_view = -1
        out.append(Report("info", f"view {self.view} installed (primary {self.primary})"))
        if (
            plan.stable_seq > self.low
            and check_checkpoint_proof(
                plan.stable_seq, plan.stable_root, plan.stable_proof, self.cfg
            )
            is None
        ):
            self._make_stable(plan.stable_seq, plan.stable_root, plan.stable_proof, out)
        if plan.base_seq > self.delivered:
            if (
                plan.base_proof
                and check_commit_quorum(plan.base_proof, self.cfg.quorum, self.cfg.n) is None
            ):
                self.certified[plan.base_seq] = plan.base_proof
            self._want_state(plan.base_seq, out)
        top = max(plan.base_seq, self.delivered)
        for pp in nv.preprepares:
            top = max(top, pp.seq)
            if pp.seq <= self.delivered or pp.seq <= self.low:
                continue
            slot = Slot(preprepare=pp)
            self.slots[pp.seq] = slot
            if not self.is_primary:
                if not persisted:
                    out.append(Persist(SlotRecord(pp.seq, pp)))
                self._record_prepare(pp.seq, slot, out)
            self._check_prepared(pp.seq, slot, out)
        self.next_seq = top + 1
        self._arm_progress(out)
        for msg in self._take_future(self.view):
            self._on_message(msg, out)

    def _help_stale_peer(self, peer: int, out: list[Action]) -> None:
        """A peer is in an older view: send it the NewView that installed ours."""
        nv = self.new_view_msg
        if nv is None or not self.normal or self.nv_sent.get(peer, -1) >= nv.view:
            return
        self.nv_sent[peer] = nv.view
        out.append(Send(peer, nv))

    def _catch_up_view(self, view: int, out: list[Action]) -> None:
        """f+1 replicas (one honest) already work in a view above ours: we missed its
        NewView (down, partitioned, restarted). Ask to move there: our view change
        reaches replicas already in that view, and they answer with its NewView."""
        if view <= self.view:
            return
        senders = set().union(*(s for v, s in self.future_senders.items() if v >= view))
        if len(senders) > self.cfg.f:
            out.append(
                Report(
                    "info",
                    f"f+1 replicas are in view {view}, ahead of our view {self.view}; joining",
                )
            )
            self._start_view_change(view, out)

    def _buffer_future(self, msg: PrePrepare | Prepare | Commit) -> None:
        """Keep messages for a view not installed yet, bounded per sender."""
        if (
            msg.view > self.view + self.cfg.n
            or self.future_count[msg.sender] >= self.cfg.future_buffer // self.cfg.n
        ):
            return
        self.future[msg.view].append(msg)
        self.future_count[msg.sender] += 1
        self.future_senders[msg.view].add(msg.sender)

    def _take_future(self, view: int) -> list[Message]:
        msgs = self.future.pop(view, [])
        for v in [v for v in self.future if v < view]:
            del self.future[v]
        for v in [v for v in self.future_senders if v <= view]:
            del self.future_senders[v]
        self.future_count = defaultdict(int)
        for lst in self.future.values():
            for m in lst:
                self.future_count[m.sender] += 1
        return msgs
