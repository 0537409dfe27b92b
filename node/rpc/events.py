"""Committed-block and chaincode-event notifications for RPC subscribers.

Each subscriber has a bounded queue; one that does not keep up is dropped
(and told so) rather than letting the node's memory grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio


@dataclass
class EventFilter:
    kinds: frozenset[str] = frozenset({"block", "event"})
    contract: str | None = None
    name: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # exact matches on event attributes

    def matches(self, note: dict[str, Any]) -> bool:
        if note["kind"] not in self.kinds:
            return False
        if note["kind"] == "event":
            if self.contract is not None and note["contract"] != self.contract:
                return False
            if self.name is not None and note["name"] != self.name:
                return False
            attrs = note.get("attrs")
            for k, v in self.attrs.items():
                if not isinstance(attrs, dict) or attrs.get(k) != v:
                    return False
        return True


class Subscription:
    def __init__(self, hub: EventHub, flt: EventFilter, capacity: int) -> None:
        self.hub = hub
        self.filter = flt
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](capacity)
        self.overflowed = False

    def close(self) -> None:
        self.hub.subscribers.discard(self)
        self.send.close()


class EventHub:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.subscribers: set[Subscription] = set()

    def subscribe(self, flt: EventFilter) -> Subscription:
        sub = Subscription(self, flt, self.capacity)
        self.subscribers.add(sub)
        return sub

    def publish(self, note: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            if not sub.filter.matches(note):
                continue
            try:
                sub.send.send_nowait(note)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                sub.overflowed = True
                sub.close()
