"""What a replica must not forget across a crash, as records to save in order.

The driver saves each ``Persist`` record before carrying out the actions
after it, and on restart folds the saved records into a
:class:`PersistedState` with :func:`PersistedState.apply` (the same reducer the
simulator uses). Records have a canonical encoding so the driver can keep them
in LevelDB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medchain.consensus.messages import Checkpoint, Prepare, PrePrepare, decode_message
from medchain.storage.codec import DecodeError, as_bytes, as_int, as_list, fields, pack, unpack
from medchain.storage.crypto import HASH_BYTES


@dataclass(frozen=True, slots=True)
class ViewRecord:
    """The replica is in ``view``; ``normal`` False while changing to it."""

    view: int
    normal: bool


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """A pre-prepare accepted for ``seq`` (and, once prepared, the prepares)."""

    seq: int
    preprepare: PrePrepare
    prepares: tuple[Prepare, ...] = ()


@dataclass(frozen=True, slots=True)
class StableRecord:
    """A stable checkpoint with its proof; slots at or below it are dropped."""

    seq: int
    state_root: bytes
    proof: tuple[Checkpoint, ...]


Record = ViewRecord | SlotRecord | StableRecord


@dataclass
class PersistedState:
    view: int = 0
    normal: bool = True
    stable_seq: int = 0
    stable_root: bytes = bytes(32)
    stable_proof: tuple[Checkpoint, ...] = ()
    slots: dict[int, SlotRecord] = field(default_factory=dict)

    def apply(self, record: Record) -> None:
        if isinstance(record, ViewRecord):
            self.view, self.normal = record.view, record.normal
        elif isinstance(record, SlotRecord):
            if record.seq > self.stable_seq:
                self.slots[record.seq] = record
        elif isinstance(record, StableRecord) and record.seq > self.stable_seq:
            self.stable_seq, self.stable_root, self.stable_proof = (
                record.seq,
                record.state_root,
                record.proof,
            )
            for s in [s for s in self.slots if s <= record.seq]:
                del self.slots[s]


def encode_record(record: Record) -> bytes:
    if isinstance(record, ViewRecord):
        return pack([1, record.view, record.normal])
    if isinstance(record, SlotRecord):
        return pack(
            [2, record.seq, record.preprepare.encode(), [p.encode() for p in record.prepares]]
        )
    return pack([3, record.seq, record.state_root, [c.encode() for c in record.proof]])


def decode_record(data: bytes) -> Record:
    obj: Any = unpack(data, 256 * 1024 * 1024, "consensus record")
    if type(obj) is not list or not obj:
        raise DecodeError("consensus record: expected an array")
    kind = obj[0]
    if type(kind) is not int:  # True == 1 in Python; the encoding says int
        raise DecodeError(f"consensus record: kind must be an integer, not {kind!r}")
    if kind == 1:
        f = fields(obj, 3, "view record")
        if type(f[2]) is not bool:
            raise DecodeError("view record: normal must be a boolean")
        return ViewRecord(as_int(f[1], "view"), f[2])
    if kind == 2:
        f = fields(obj, 4, "slot record")
        pp = decode_message(as_bytes(f[2], "preprepare"))
        prepares = tuple(
            decode_message(as_bytes(p, "prepare")) for p in as_list(f[3], "prepares", 1024)
        )
        if not isinstance(pp, PrePrepare) or not all(isinstance(p, Prepare) for p in prepares):
            raise DecodeError("slot record: wrong message types")
        return SlotRecord(as_int(f[1], "seq"), pp, prepares)  # type: ignore[arg-type]
    if kind == 3:
        f = fields(obj, 4, "stable record")
        proof = tuple(
            decode_message(as_bytes(c, "checkpoint")) for c in as_list(f[3], "proof", 1024)
        )
        if not all(isinstance(c, Checkpoint) for c in proof):
            raise DecodeError("stable record: wrong message types")
        return StableRecord(as_int(f[1], "seq"), as_bytes(f[2], "root", HASH_BYTES), proof)  # type: ignore[arg-type]
    raise DecodeError(f"consensus record: unknown kind {kind!r}")
