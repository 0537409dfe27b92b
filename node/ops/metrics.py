"""Counters and a commit-latency histogram for node.metrics."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Upper bounds (ms) of the latency histogram buckets; the last is +inf.
BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10_000)


@dataclass
class Metrics:
    blocks: int = 0
    txs: int = 0
    proposed: int = 0
    state_transfer_batches: int = 0
    offenses: dict[int, int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    latency_sum_ms: int = 0
    recent_latency_ms: deque[int] = field(default_factory=lambda: deque(maxlen=2048))
    block_exec_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def observe_commit(self, ms: int) -> None:
        self.latency_counts[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.latency_sum_ms += ms
        self.recent_latency_ms.append(ms)

    def percentile(self, q: float) -> int | None:
        data = sorted(self.recent_latency_ms)
        if not data:
            return None
        return data[min(len(data) - 1, int(q * len(data)))]

    def to_json(self) -> dict[str, Any]:
        hist = {f"le_{b}": c for b, c in zip(BUCKETS_MS, self.latency_counts, strict=False)}
        hist["le_inf"] = self.latency_counts[-1]
        execs = sorted(self.block_exec_ms)
        return {
            "blocks_committed": self.blocks,
            "txs_committed": self.txs,
            "blocks_proposed": self.proposed,
            "state_transfer_batches": self.state_transfer_batches,
            "commit_latency_ms": {
                "histogram": hist,
                "count": sum(self.latency_counts),
                "sum": self.latency_sum_ms,
                "p50_recent": self.percentile(0.5),
                "p99_recent": self.percentile(0.99),
            },
            "block_exec_ms_p50": execs[len(execs) // 2] if execs else None,
        }
