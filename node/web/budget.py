"""How much of the event loop the web server's handlers may use.

The daemon is one trio event loop and consensus runs on it (node/web/limits.py
says why the web's work is bounded on the loop rather than moved to a
thread). Two bounds, both shared by every request:

- a ``trio.CapacityLimiter`` of ``max_handlers``: at most that many requests
  are being worked on at once; the others wait in order of arrival;
- a ``WorkBudget``: a token bucket of work time refilled at ``work_share`` of
  wall time. Each request's work is measured slice by slice (from taking its
  slot, or resuming, to its next checkpoint or its end) and charged; while
  the bucket is empty, handlers sleep at their next checkpoint or before they
  start. The loop is then idle for consensus at least ``1 - work_share`` of
  the time however many clients ask, and between two turns of a consensus
  task it runs at most ``max_handlers`` slices of web work.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType

import trio

BURST_S = 0.05  # work a quiet server may do at once before pacing starts


class WorkBudget:
    def __init__(
        self, share: float, burst_s: float = BURST_S, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.share = share
        self.burst = burst_s
        self.clock = clock
        self.credit = burst_s
        self._at = clock()
        self.spent = 0.0  # work charged in all (seconds)

    def _refill(self) -> None:
        now = self.clock()
        self.credit = min(self.burst, self.credit + (now - self._at) * self.share)
        self._at = now

    def charge(self, seconds: float) -> None:
        self._refill()
        self.credit -= seconds
        self.spent += seconds

    async def wait(self) -> None:
        """Sleep while the bucket is empty; a checkpoint either way."""
        self._refill()
        if self.credit < 0:
            await trio.sleep(-self.credit / self.share)
        else:
            await trio.lowlevel.checkpoint()


class WorkSlot:
    """One request's share of the handler budget: held while its handler works,
    handed back while it waits on consensus or the network."""

    def __init__(self, limiter: trio.CapacityLimiter, budget: WorkBudget) -> None:
        self.limiter = limiter
        self.budget = budget
        self.held = False
        self._since = 0.0

    async def _take(self) -> None:
        await self.limiter.acquire_on_behalf_of(self)
        self.held = True
        try:
            await self.budget.wait()
        except BaseException:
            self._give()
            raise
        self._since = self.budget.clock()

    def _give(self) -> None:
        if self.held:
            self.held = False
            self.limiter.release_on_behalf_of(self)

    def _charge(self) -> None:
        now = self.budget.clock()
        self.budget.charge(now - self._since)
        self._since = now

    async def __aenter__(self) -> WorkSlot:
        await self._take()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.held:
            self._charge()
            self._give()

    async def checkpoint(self) -> None:
        """Between two slices of a long piece of work: pays for the last one."""
        if not self.held:
            await trio.lowlevel.checkpoint()
            return
        self._charge()
        await self.budget.wait()
        self._since = self.budget.clock()

    @asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        if not self.held:
            yield
            return
        self._charge()
        self._give()
        try:
            yield
        finally:
            await self._take()
