"""A seeded, virtual-time network for replicas.

Everything happens on one event heap ordered by (virtual ms, insertion
counter), with one ``random.Random(seed)``: a run is a pure function of its
seed. Per-message rules: drop with probability, delay in [min, max] (which
also reorders), duplicate with probability, partitions (sets of nodes that
cannot talk to the rest) that heal at a given time.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LinkRules:
    drop: float = 0.0
    delay_min: int = 1
    delay_max: int = 5
    duplicate: float = 0.0


@dataclass
class Partition:
    group: frozenset[int]  # nodes cut off from everyone else
    start: int
    heal: int

    def cuts(self, a: int, b: int, now: int) -> bool:
        return self.start <= now < self.heal and ((a in self.group) != (b in self.group))


@dataclass
class SimNetwork:
    seed: int
    rules: LinkRules = field(default_factory=LinkRules)
    heal_at: int = 0  # after this time: no drops, no duplicates, no partitions
    partitions: list[Partition] = field(default_factory=list)
    trace_size: int = 400

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self.trace: deque[str] = deque(maxlen=self.trace_size)
        self.stats = {"sent": 0, "dropped": 0, "duplicated": 0, "cut": 0}

    def at(self, time: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(time, self.now), next(self._counter), fn))

    def after(self, delay: int, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def transmit(self, src: int, dst: int, deliver: Callable[[], None], what: str) -> None:
        """Schedule ``deliver`` at ``dst`` under the link rules."""
        self.stats["sent"] += 1
        faulty = self.now < self.heal_at
        if faulty and any(p.cuts(src, dst, self.now) for p in self.partitions):
            self.stats["cut"] += 1
            self.log(f"{src}->{dst} CUT {what}")
            return
        r = self.rules
        if faulty and self.rng.random() < r.drop:
            self.stats["dropped"] += 1
            self.log(f"{src}->{dst} DROP {what}")
            return
        copies = 2 if faulty and self.rng.random() < r.duplicate else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            lo, hi = (r.delay_min, r.delay_max) if faulty else (1, 5)
            self.after(self.rng.randint(lo, hi), deliver)

    def log(self, line: str) -> None:
        self.trace.append(f"{self.now:>7} {line}")

    def run(
        self, until: int, stop: Callable[[], bool] | None = None, max_events: int = 5_000_000
    ) -> int:
        """Process events up to virtual time ``until`` or until ``stop()``; returns events run."""
        count = 0
        while self._heap and count < max_events:
            t, _, fn = self._heap[0]
            if t > until:
                break
            heapq.heappop(self._heap)
            self.now = t
            fn()
            count += 1
            if stop is not None and count % 64 == 0 and stop():
                break
        else:
            if not self._heap:
                self.now = max(self.now, until)
        return count
