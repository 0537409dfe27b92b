"""PBFT wire messages: frozen dataclasses with one canonical encoding.

Every message is ``[tag, *body, sender, signature]``. The signature covers
``sign_bytes(DOMAIN, chain_id, *body)``; a commit vote signs exactly
``storage.block.commit_sign_bytes`` so that quorum commit votes *are* the
block's commit certificate. Messages nested in others (prepares in a prepared
certificate, view changes in a new view) are embedded as their exact bytes
and keep their own senders' signatures.

Signatures are produced here (given a sign function) but verified in
:mod:`consensus.verify`, at the boundary, before a message reaches a replica.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self

from medchain.storage.block import commit_sign_bytes
from medchain.storage.codec import DecodeError, as_bytes, as_int, as_list, fields, pack, unpack
from medchain.storage.crypto import HASH_BYTES, SIGNATURE_BYTES, sha256, sign_bytes

MAX_MESSAGE_BYTES = 128 * 1024 * 1024
MAX_NESTED = 4096
NULL_DIGEST = sha256(b"medchain/null-batch/v1")

SignFn = Callable[[bytes], bytes]


class Message:
    """Base of all consensus messages (each subclass is a frozen dataclass)."""

    __slots__ = ()
    TAG: ClassVar[int]
    DOMAIN: ClassVar[str]
    sender: int
    signature: bytes

    def body(self) -> list[Any]:
        raise NotImplementedError

    def sign_bytes(self, chain_id: str) -> bytes:
        return sign_bytes(self.DOMAIN, chain_id, *self.body())

    def encode(self) -> bytes:
        return pack([self.TAG, *self.body(), self.sender, self.signature])

    def signed(self, chain_id: str, sign: SignFn) -> Self:
        return replace(self, signature=sign(self.sign_bytes(chain_id)))  # type: ignore[type-var]


def _u(v: Any, what: str) -> int:
    return as_int(v, what)


def _h(v: Any, what: str) -> bytes:
    return as_bytes(v, what, HASH_BYTES)


@dataclass(frozen=True, slots=True)
class PrePrepare(Message):
    """The primary assigns ``seq`` to a batch in ``view`` at ``timestamp_ms``.

    The batch rides along but is not signed directly: the digest binds it
    (receivers check ``digest == digest_fn(batch)``)."""

    TAG: ClassVar[int] = 1
    DOMAIN: ClassVar[str] = "medchain/pbft/pre-prepare/v1"
    view: int
    seq: int
    timestamp_ms: int
    digest: bytes
    batch: bytes = field(repr=False)
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.view, self.seq, self.timestamp_ms, self.digest]

    def encode(self) -> bytes:
        return pack([self.TAG, *self.body(), self.batch, self.sender, self.signature])

    @property
    def is_null(self) -> bool:
        return self.digest == NULL_DIGEST

    def without_batch(self) -> PrePrepare:
        return replace(self, batch=b"")


@dataclass(frozen=True, slots=True)
class Prepare(Message):
    TAG: ClassVar[int] = 2
    DOMAIN: ClassVar[str] = "medchain/pbft/prepare/v1"
    view: int
    seq: int
    digest: bytes
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.view, self.seq, self.digest]


@dataclass(frozen=True, slots=True)
class Commit(Message):
    TAG: ClassVar[int] = 3
    DOMAIN: ClassVar[str] = "medchain/commit/v1"
    view: int
    seq: int
    digest: bytes
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.view, self.seq, self.digest]

    def sign_bytes(self, chain_id: str) -> bytes:
        return commit_sign_bytes(chain_id, self.view, self.seq, self.digest)


@dataclass(frozen=True, slots=True)
class Checkpoint(Message):
    TAG: ClassVar[int] = 4
    DOMAIN: ClassVar[str] = "medchain/pbft/checkpoint/v1"
    seq: int
    state_root: bytes
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.seq, self.state_root]


@dataclass(frozen=True, slots=True)
class PreparedCert:
    """A pre-prepare (with its batch) and quorum-1 matching prepares."""

    preprepare: PrePrepare
    prepares: tuple[Prepare, ...]

    def to_wire(self) -> list[Any]:
        return [self.preprepare.encode(), [p.encode() for p in self.prepares]]


@dataclass(frozen=True, slots=True)
class ViewChange(Message):
    """Move to ``new_view``, carrying what this replica knows:

    - its stable checkpoint (seq, root) and the quorum of checkpoint messages proving it;
    - its last delivered seq with the quorum of commit votes proving it (empty
      when that seq is covered by the stable checkpoint);
    - a prepared certificate for every seq above that it prepared but has not delivered.
    """

    TAG: ClassVar[int] = 5
    DOMAIN: ClassVar[str] = "medchain/pbft/view-change/v1"
    new_view: int
    stable_seq: int
    stable_root: bytes
    checkpoint_proof: tuple[Checkpoint, ...]
    committed_seq: int
    committed_proof: tuple[Commit, ...]
    prepared: tuple[PreparedCert, ...]
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [
            self.new_view,
            self.stable_seq,
            self.stable_root,
            [c.encode() for c in self.checkpoint_proof],
            self.committed_seq,
            [c.encode() for c in self.committed_proof],
            [p.to_wire() for p in self.prepared],
        ]


@dataclass(frozen=True, slots=True)
class NewView(Message):
    """The new primary's proof (a quorum of view changes) and the pre-prepares
    it re-issues in the new view, which every replica recomputes and checks."""

    TAG: ClassVar[int] = 6
    DOMAIN: ClassVar[str] = "medchain/pbft/new-view/v1"
    view: int
    view_changes: tuple[ViewChange, ...]
    preprepares: tuple[PrePrepare, ...]
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [
            self.view,
            [v.encode() for v in self.view_changes],
            [p.encode() for p in self.preprepares],
        ]


@dataclass(frozen=True, slots=True)
class CommittedEntry:
    """A committed batch with the quorum of commit votes that certify it."""

    seq: int
    batch: bytes
    commits: tuple[Commit, ...]

    @property
    def digest(self) -> bytes:
        return self.commits[0].digest if self.commits else b""

    @property
    def view(self) -> int:
        return self.commits[0].view if self.commits else 0

    def to_wire(self) -> list[Any]:
        return [self.seq, self.batch, [c.encode() for c in self.commits]]


@dataclass(frozen=True, slots=True)
class StateRequest(Message):
    """Ask a peer for committed batches from_seq..to_seq (to_seq 0: all it has)."""

    TAG: ClassVar[int] = 7
    DOMAIN: ClassVar[str] = "medchain/pbft/state-request/v1"
    from_seq: int
    to_seq: int
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.from_seq, self.to_seq]


@dataclass(frozen=True, slots=True)
class StateReply(Message):
    """Committed batches with certificates, and how far the sender has delivered."""

    TAG: ClassVar[int] = 8
    DOMAIN: ClassVar[str] = "medchain/pbft/state-reply/v1"
    last_seq: int
    entries: tuple[CommittedEntry, ...]
    sender: int = 0
    signature: bytes = b""

    def body(self) -> list[Any]:
        return [self.last_seq, [e.to_wire() for e in self.entries]]


MESSAGE_TYPES: dict[int, type[Message]] = {
    c.TAG: c
    for c in (
        PrePrepare,
        Prepare,
        Commit,
        Checkpoint,
        ViewChange,
        NewView,
        StateRequest,
        StateReply,
    )
}


# -- decoding -------------------------------------------------------------------


def decode_message(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode any consensus message; raises DecodeError only."""
    obj = unpack(data, max_size, "consensus message")
    return _from_obj(obj, max_size)


def _nested(raw: Any, what: str, cls: type[Message], max_size: int) -> Any:
    msg = decode_message(as_bytes(raw, what), max_size)
    if not isinstance(msg, cls):
        raise DecodeError(f"{what}: expected {cls.__name__}, got {type(msg).__name__}")
    return msg


def _nested_list(raw: Any, what: str, cls: type[Message], max_size: int) -> tuple[Any, ...]:
    return tuple(_nested(x, what, cls, max_size) for x in as_list(raw, what, MAX_NESTED))


def _from_obj(obj: Any, max_size: int) -> Message:
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise DecodeError("consensus message: expected [tag, ...]")
    tag = obj[0]
    cls = MESSAGE_TYPES.get(tag)
    if cls is None:
        raise DecodeError(f"consensus message: unknown tag {tag}")
    name = cls.__name__
    arity = {
        PrePrepare: 8,
        Prepare: 6,
        Commit: 6,
        Checkpoint: 5,
        ViewChange: 10,
        NewView: 6,
        StateRequest: 5,
        StateReply: 5,
    }[cls]
    f = fields(obj, arity, name)
    sender = as_int(f[-2], f"{name}.sender", 0, 1023)
    sig = as_bytes(f[-1], f"{name}.signature", SIGNATURE_BYTES)
    b = f[1:-2]
    if cls is PrePrepare:
        return PrePrepare(
            _u(b[0], "view"),
            _u(b[1], "seq"),
            _u(b[2], "timestamp"),
            _h(b[3], "digest"),
            as_bytes(b[4], "batch"),
            sender,
            sig,
        )
    if cls is Prepare or cls is Commit:
        return cls(_u(b[0], "view"), _u(b[1], "seq"), _h(b[2], "digest"), sender, sig)
    if cls is Checkpoint:
        return Checkpoint(_u(b[0], "seq"), _h(b[1], "state_root"), sender, sig)
    if cls is ViewChange:
        prepared = []
        for i, pc in enumerate(as_list(b[6], "prepared", MAX_NESTED)):
            pf = fields(pc, 2, f"prepared[{i}]")
            prepared.append(
                PreparedCert(
                    _nested(pf[0], "prepared.preprepare", PrePrepare, max_size),
                    _nested_list(pf[1], "prepared.prepares", Prepare, max_size),
                )
            )
        return ViewChange(
            _u(b[0], "new_view"),
            _u(b[1], "stable_seq"),
            _h(b[2], "stable_root"),
            _nested_list(b[3], "checkpoint_proof", Checkpoint, max_size),
            _u(b[4], "committed_seq"),
            _nested_list(b[5], "committed_proof", Commit, max_size),
            tuple(prepared),
            sender,
            sig,
        )
    if cls is NewView:
        return NewView(
            _u(b[0], "view"),
            _nested_list(b[1], "view_changes", ViewChange, max_size),
            _nested_list(b[2], "preprepares", PrePrepare, max_size),
            sender,
            sig,
        )
    if cls is StateRequest:
        return StateRequest(_u(b[0], "from_seq"), _u(b[1], "to_seq"), sender, sig)
    entries = []
    for i, e in enumerate(as_list(b[1], "entries", MAX_NESTED)):
        ef = fields(e, 3, f"entries[{i}]")
        entries.append(
            CommittedEntry(
                _u(ef[0], "seq"),
                as_bytes(ef[1], "batch"),
                _nested_list(ef[2], "commits", Commit, max_size),
            )
        )
    return StateReply(_u(b[0], "last_seq"), tuple(entries), sender, sig)
