"""What the consensus driver's one task takes in (Driver.post): every input the
other tasks hand it — network receivers, timers, the pool — one kind per type.
``kind`` names the input in logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from medchain.consensus.events import Event
from medchain.consensus.messages import PrePrepare, StateReply
from medchain.storage.block import Block


@dataclass(frozen=True, slots=True)
class ReplicaInput:
    """An event for the replica as it is: a verified message, a timer that fired."""

    kind: ClassVar[str] = "event"
    event: Event


@dataclass(frozen=True, slots=True)
class ValidatedProposal:
    """A pre-prepare whose signature and block passed their checks (off the
    driver's task), with the block decoded."""

    kind: ClassVar[str] = "pp"
    pp: PrePrepare
    block: Block


@dataclass(frozen=True, slots=True)
class StateArrived:
    """A verified state-transfer reply: committed batches to catch up with."""

    kind: ClassVar[str] = "state"
    reply: StateReply


@dataclass(frozen=True, slots=True)
class Poke:
    """Nothing for the replica, but the pool or the batch timer changed: the
    driver looks again whether to propose."""

    kind: ClassVar[str] = "poke"


POKE = Poke()

InboxItem = ReplicaInput | ValidatedProposal | StateArrived | Poke
