"""Events fed to a replica and the actions it returns (sans-I/O).

The driver calls ``replica.handle(event, now_ms)`` and carries out the
returned actions *in order*: a ``Persist`` always precedes the sends that
depend on it (etcd raft's Ready rule), so a replica that crashes after sending
never contradicts itself after restarting.
"""

from __future__ import annotations

from dataclasses import dataclass

from medchain.consensus.messages import Commit, CommittedEntry, Message

# -- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """First event after construction (fresh start or restart)."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message whose signatures the boundary has verified (consensus.verify)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    name: str


@dataclass(frozen=True, slots=True)
class ProposeBatch:
    """The driver (on the primary) asks to order ``batch`` proposed at ``timestamp_ms``."""

    batch: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class BatchExecuted:
    """The driver executed the batch delivered at ``seq``; state root after it."""

    seq: int
    state_root: bytes


@dataclass(frozen=True, slots=True)
class PendingWork:
    """Whether the driver holds requests not yet delivered (arms the progress timer)."""

    pending: bool


@dataclass(frozen=True, slots=True)
class StateFetched:
    """A committed batch fetched by state transfer; the boundary has verified
    the commit votes' signatures. The replica checks quorum and digest."""

    entry: CommittedEntry


Event = (
    Start | MessageReceived | TimerFired | ProposeBatch | BatchExecuted | PendingWork | StateFetched
)

# -- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    msg: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other replica."""

    msg: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable state to save before carrying out the actions that follow."""

    record: object  # one of consensus.persist's records


@dataclass(frozen=True, slots=True)
class Deliver:
    """A committed batch, in strict sequence order, with its commit certificate."""

    seq: int
    view: int
    digest: bytes
    batch: bytes
    certificate: tuple[Commit, ...]

    @property
    def is_null(self) -> bool:
        from medchain.consensus.messages import NULL_DIGEST

        return self.digest == NULL_DIGEST


@dataclass(frozen=True, slots=True)
class FetchState:
    """Fetch committed batches (with certificates) from_seq..to_seq from peers
    (to_seq 0: as far as they have), and feed them back as StateFetched."""

    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class Report:
    """Something an operator should see: a faulty peer, a view change."""

    level: str  # "info" | "warning" | "error"
    text: str
    offender: int | None = None


@dataclass(frozen=True, slots=True)
class Halt:
    """Divergence from a stable checkpoint: stop, loudly. Never silently healed."""

    reason: str


Action = Send | Broadcast | SetTimer | CancelTimer | Persist | Deliver | FetchState | Report | Halt

TIMER_PROGRESS = "progress"
TIMER_VIEW_CHANGE = "view-change"
TIMER_FETCH = "fetch"
