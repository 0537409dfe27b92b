"""Replica configuration: passed in, never global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from medchain.storage.crypto import sha256


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    n: int  # number of replicas
    index: int  # this replica's index, 0..n-1
    checkpoint_interval: int = 100  # K
    log_window: int = 200  # L: accept seq in (low, low + L]
    max_inflight: int = 8  # batches the primary may have proposed but not delivered
    view_change_timeout_ms: int = 3000  # progress timer; doubles per failed view change
    max_backoff_exponent: int = 5
    max_clock_drift_ms: int = 10_000
    fetch_retry_ms: int = 1000
    future_buffer: int = 20_000  # messages for views not yet installed, at most
    digest_fn: Callable[[bytes], bytes] = field(default=sha256, compare=False)

    def __post_init__(self) -> None:
        if self.n < 1 or not 0 <= self.index < self.n:
            raise ValueError("replica index must be in [0, n)")
        if self.log_window < 2 * self.checkpoint_interval:
            raise ValueError("log_window must be at least 2 x checkpoint_interval")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        if self.max_inflight > self.log_window:
            object.__setattr__(self, "max_inflight", self.log_window)

    @property
    def f(self) -> int:
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """Any two quorums intersect in at least f+1 replicas (2f+1 when n = 3f+1)."""
        return (self.n + self.f) // 2 + 1

    def primary(self, view: int) -> int:
        return view % self.n
