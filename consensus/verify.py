"""Authenticating consensus messages at the boundary, before a replica sees them.

``verify_message`` checks the signature of a message and of every message
nested in it (prepared certificates, checkpoint and commit proofs, view
changes inside a new view). The replica then checks the *logic* (quorum
sizes, matching fields) without doing any cryptography itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from medchain.consensus.messages import (
    NULL_DIGEST,
    Commit,
    CommittedEntry,
    Message,
    NewView,
    StateReply,
    ViewChange,
)
from medchain.storage.crypto import verify


class Verifier(Protocol):
    """Checks that validator ``index`` signed ``message``."""

    def __call__(self, index: int, message: bytes, signature: bytes) -> bool: ...


class Ed25519Verifier:
    def __init__(self, keys: Sequence[bytes]) -> None:
        self.keys = tuple(keys)

    def __call__(self, index: int, message: bytes, signature: bytes) -> bool:
        return 0 <= index < len(self.keys) and verify(self.keys[index], message, signature)


def verify_message(msg: Message, chain_id: str, verifier: Verifier) -> str | None:
    """None if ``msg`` and everything nested in it is correctly signed, else why not."""
    if not verifier(msg.sender, msg.sign_bytes(chain_id), msg.signature):
        return f"bad signature on {type(msg).__name__} from replica {msg.sender}"
    for inner in nested(msg):
        if not verifier(inner.sender, inner.sign_bytes(chain_id), inner.signature):
            return f"bad signature on nested {type(inner).__name__} from replica {inner.sender} in {type(msg).__name__}"
    return None


def nested(msg: Message) -> list[Message]:
    out: list[Message] = []
    if isinstance(msg, ViewChange):
        out.extend(msg.checkpoint_proof)
        out.extend(msg.committed_proof)
        for pc in msg.prepared:
            out.append(pc.preprepare)
            out.extend(pc.prepares)
    elif isinstance(msg, NewView):
        for vc in msg.view_changes:
            out.append(vc)
            out.extend(nested(vc))
        out.extend(msg.preprepares)
    elif isinstance(msg, StateReply):
        for e in msg.entries:
            out.extend(e.commits)
    return out


def check_commit_quorum(commits: Sequence[Commit], quorum: int, n: int) -> str | None:
    """Logic check of a commit certificate (signatures already verified):
    ``quorum`` commit votes from distinct replicas for one (view, seq, digest)."""
    if not commits:
        return "empty certificate"
    first = commits[0]
    senders = set()
    for c in commits:
        if (c.view, c.seq, c.digest) != (first.view, first.seq, first.digest):
            return "certificate votes disagree"
        if not 0 <= c.sender < n:
            return f"vote from unknown replica {c.sender}"
        senders.add(c.sender)
    if len(senders) < quorum:
        return f"certificate has {len(senders)} distinct votes, needs {quorum}"
    return None


def batch_matches(digest: bytes, batch: bytes, digest_fn: Callable[[bytes], bytes]) -> bool:
    """The batch is what ``digest`` names (a null batch is empty)."""
    if digest == NULL_DIGEST:
        return batch == b""
    return digest_fn(batch) == digest


def check_entry(
    entry: CommittedEntry, quorum: int, n: int, digest_fn: Callable[[bytes], bytes]
) -> str | None:
    """A fetched committed batch: its certificate is a quorum for its seq and
    the batch hashes to the certified digest."""
    why = check_commit_quorum(entry.commits, quorum, n)
    if why:
        return why
    if entry.commits[0].seq != entry.seq:
        return "certificate is for another sequence number"
    if not batch_matches(entry.digest, entry.batch, digest_fn):
        return "batch does not match the certified digest"
    return None
