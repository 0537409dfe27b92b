"""Pacing of the reconnect loop to one peer: how long to wait before the next dial,
and when to tell the operator that dials keep failing.

Pure bookkeeping with an injected clock and random source, so it is tested without
sockets. ``node.net.p2p_links`` owns one ``Redial`` per peer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RedialConfig:
    min_s: float = 0.2  # wait after the first failed dial
    max_s: float = 3.0  # the wait doubles per failure up to this cap
    jitter: float = 0.5  # each wait is drawn uniformly from [(1 - jitter) w, w]
    warn_after_s: float = 10.0  # dials failing this long: warn
    warn_every_s: float = 60.0  # and again at most this often while it lasts


@dataclass(frozen=True)
class DialWarning:
    """Dials to a peer have failed ``failures`` times over ``seconds``."""

    failures: int
    seconds: float
    last_error: str


@dataclass(frozen=True)
class Recovered:
    """A dial succeeded after ``failures`` failed ones over ``seconds``."""

    failures: int
    seconds: float


class Redial:
    def __init__(
        self,
        config: RedialConfig,
        clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.failures = 0
        self.failing_since: float | None = None
        # The last warning, kept across recoveries: a flapping link is not warned about
        # more often than a dead one.
        self.warned_at: float | None = None
        self.warned = False  # about the current run of failures
        self.last_error = ""

    def failed(self, error: str) -> tuple[float, DialWarning | None]:
        """Record a failed dial: the wait before the next one, and a warning to log
        when dials have been failing for long (at most one per ``warn_every_s``)."""
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        self.last_error = error
        warning = None
        since = now - self.failing_since
        due = self.warned_at is None or now - self.warned_at >= self.cfg.warn_every_s
        if since >= self.cfg.warn_after_s and due:
            self.warned_at = now
            self.warned = True
            warning = DialWarning(self.failures, since, error)
        return self.delay(), warning

    def delay(self) -> float:
        """Exponential in the failures so far, capped, with jitter (never above the cap,
        so peers that lost each other together do not redial in lockstep)."""
        exp = min(max(self.failures - 1, 0), 30)
        ceiling = min(self.cfg.max_s, self.cfg.min_s * 2.0**exp)
        return ceiling * (1 - self.cfg.jitter * self.rng.random())

    def succeeded(self) -> Recovered | None:
        """Record a working link: the backoff starts over. Returns what to log if the
        failures had been warned about."""
        out = None
        if self.warned and self.failing_since is not None:
            out = Recovered(self.failures, self.clock() - self.failing_since)
        self.failures = 0
        self.failing_since = None
        self.warned = False
        self.last_error = ""
        return out
