"""When a custodian may release records for an access decision, and what it
remembers to refuse the rest.

A committed access decision (an ``access.request_many`` or ``access.request``
transaction) releases records once, while fresh: it must have committed
within the release window (block time against this node's clock), not have
been redeemed here before, and still hold at release time (the consent check
re-run at the head: consent active and in force, requester key and
practitioner active, and the record's exact date — which only the custodian
holds, the chain has its year — inside the consent's data period). What is refused is logged on chain by this node
(``access.refuse_release``), one entry per (decision, record, refusal), at a
bounded rate per requester.

Redemptions are kept in the node-state LevelDB (``StoredRedemptions``) so a
restart does not forget them; an entry matters only while its decision is
fresh, so older ones are pruned. ``MemoryRedemptions`` is the twin for tests.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol

from medchain.storage.crypto import sha256
from medchain.storage.kv import KVStore

# Refusal codes (access.REFUSALS) and the reasons given to the requester and logged.
STALE = "stale"
NO_LONGER_PERMITTED = "no-longer-permitted"
REDEEMED = "redeemed"
REDEEMED_REASON = "refused: this access decision was already redeemed (a release is single-use)"


def stale_reason(window_s: int) -> str:
    return f"refused: this access decision is stale (a release needs one committed in the last {window_s} s)"


def no_longer_reason(why: str) -> str:
    return f"refused: the access decision does not hold at release: {why}"


@dataclass(frozen=True)
class ReleasePolicy:
    window_s: int = 60  # a decision releases records for this long after its block time
    refusal_logs_per_minute: int = 20  # refusal transactions per requester (more: node log only)

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000


class Redemptions(Protocol):
    """The access decisions (transaction ids) this custodian has released records for."""

    def redeemed(self, decision: bytes) -> bool: ...

    def redeem(self, decision: bytes, decided_ms: int) -> None:
        """Remember ``decision`` (committed at block time ``decided_ms``) durably."""
        ...

    def prune(self, before_ms: int) -> int:
        """Forget decisions committed before ``before_ms``; how many were forgotten."""
        ...


P_BY_ID = b"Ur"  # Ur <decision tx id> -> block time (8 bytes, big-endian)
P_BY_TIME = b"Ut"  # Ut <block time> <decision tx id> -> "" (for pruning in time order)
PRUNE_BATCH = 10_000


class StoredRedemptions:
    """Redemptions in a KV store (the node-state LevelDB; its other keys are W and P...)."""

    def __init__(self, store: KVStore) -> None:
        self.store = store

    def redeemed(self, decision: bytes) -> bool:
        return self.store.get(P_BY_ID + decision) is not None

    def redeem(self, decision: bytes, decided_ms: int) -> None:
        ts = max(0, decided_ms).to_bytes(8, "big")
        # synced: a release must not outlive a crash that forgets it was made
        self.store.write({P_BY_ID + decision: ts, P_BY_TIME + ts + decision: b""}, sync=True)

    def prune(self, before_ms: int) -> int:
        gone: dict[bytes, bytes | None] = {}
        for key, _ in self.store.scan(P_BY_TIME):
            if int.from_bytes(key[2:10], "big") >= before_ms or len(gone) >= 2 * PRUNE_BATCH:
                break
            gone[key] = None
            gone[P_BY_ID + key[10:]] = None
        if gone:
            self.store.write(gone, sync=False)
        return len(gone) // 2

    def __len__(self) -> int:
        return sum(1 for _ in self.store.scan(P_BY_ID))


class MemoryRedemptions:
    def __init__(self) -> None:
        self.entries: dict[bytes, int] = {}

    def redeemed(self, decision: bytes) -> bool:
        return decision in self.entries

    def redeem(self, decision: bytes, decided_ms: int) -> None:
        self.entries[decision] = decided_ms

    def prune(self, before_ms: int) -> int:
        old = [d for d, ms in self.entries.items() if ms < before_ms]
        for d in old:
            del self.entries[d]
        return len(old)

    def __len__(self) -> int:
        return len(self.entries)


class RefusalGate:
    """Which refusals this node logs on chain: each (decision, record, refusal)
    once (the chaincode skips repeats too; this spares the transaction), and at
    most ``per_minute`` refusal transactions per requester key."""

    def __init__(self, per_minute: int, remember: int = 10_000) -> None:
        self.per_minute = per_minute
        self.remember = remember
        self._logged: OrderedDict[tuple[bytes, str, str], None] = OrderedDict()
        self._recent: dict[bytes, deque[float]] = {}

    def fresh(
        self, decision: bytes, items: list[tuple[str, str, str]]
    ) -> list[tuple[str, str, str]]:
        """The (record, refusal, reason) items not logged before for ``decision``."""
        return [it for it in items if (decision, it[0], it[1]) not in self._logged]

    def admit(self, requester: bytes, now_s: float) -> bool:
        """May one more refusal transaction be sent for ``requester`` now?"""
        q = self._recent.setdefault(requester, deque())
        while q and q[0] <= now_s - 60:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now_s)
        if len(self._recent) > self.remember:  # forget requesters quiet for a minute
            for k in [k for k, v in self._recent.items() if not v or v[-1] <= now_s - 60]:
                del self._recent[k]
        return True

    def logged(self, decision: bytes, items: list[tuple[str, str, str]]) -> None:
        for record, refusal, _ in items:
            self._logged[(decision, record, refusal)] = None
        while len(self._logged) > self.remember:
            self._logged.popitem(last=False)


class ReplyCache:
    """Replies sent to (peer, request id), kept a while so that a resend after a
    lost reply gets the same answer (the same sealed bytes) rather than a
    refusal as already redeemed. Bounded in entries and bytes."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 32 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple[int, bytes], tuple[bytes, bytes, float]] = OrderedDict()

    def get(self, key: tuple[int, bytes], tx: bytes) -> bytes | None:
        hit = self._items.get(key)
        if hit is None or hit[0] != sha256(tx) or hit[2] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[int, bytes], tx: bytes, reply: bytes, until: float) -> None:
        if len(reply) > self.max_bytes // 4:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= len(old[1])
        now = time.monotonic()
        while self._items:  # oldest first: drop what has expired
            first = next(iter(self._items.values()))
            if first[2] >= now:
                break
            self.bytes -= len(self._items.popitem(last=False)[1][1])
        self._items[key] = (sha256(tx), reply, until)
        self.bytes += len(reply)
        while self._items and (len(self._items) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, dropped, _) = self._items.popitem(last=False)
            self.bytes -= len(dropped)
