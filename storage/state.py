"""Transaction results and the state-root commitment.

The state root after block h chains the previous root with a hash of the
block's sorted write set and the block's results root (the Merkle root of its
receipts, storage.receipts, which commit to every transaction's code, data
and events)::

    root_h = SHA-256(canonical([DOMAIN_STATE_ROOT, root_{h-1}, h,
                                SHA-256(writes), results_root_h]))

so two nodes agree on root_h only if they applied exactly the same writes and
reached exactly the same result for every transaction of every block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medchain.storage.codec import as_int, as_list, as_str, as_value, fields, pack, unpack
from medchain.storage.crypto import DOMAIN_STATE_ROOT, sha256

OK = 0
FAILED = 1
MAX_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    contract: str
    name: str
    attrs: Any  # canonical value, usually a map

    def to_wire(self) -> list[Any]:
        return [self.contract, self.name, self.attrs]


@dataclass(frozen=True, slots=True)
class TxResult:
    """What executing one transaction produced: a code, data or a reason, events."""

    code: int
    data: Any  # the return value when OK, the failure reason (str) otherwise
    events: tuple[Event, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_wire(self) -> list[Any]:
        return [self.code, self.data, [e.to_wire() for e in self.events]]

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls, obj: Any) -> TxResult:
        f = fields(obj, 3, "result")
        events = []
        for e in as_list(f[2], "result.events", 10_000):
            ef = fields(e, 3, "event")
            events.append(
                Event(
                    as_str(ef[0], "event.contract"),
                    as_str(ef[1], "event.name"),
                    as_value(ef[2], "event"),
                )
            )
        return cls(
            as_int(f[0], "result.code", 0, 255), as_value(f[1], "result.data"), tuple(events)
        )

    @classmethod
    def decode(cls, data: bytes) -> TxResult:
        return cls.from_wire(unpack(data, MAX_RESULT_BYTES, "result"))


def writes_hash(writes: Mapping[bytes, bytes | None]) -> bytes:
    return sha256(pack([[k, writes[k]] for k in sorted(writes)]))


def next_state_root(
    prev_root: bytes, height: int, writes: Mapping[bytes, bytes | None], results_root: bytes
) -> bytes:
    return sha256(pack([DOMAIN_STATE_ROOT, prev_root, height, writes_hash(writes), results_root]))
