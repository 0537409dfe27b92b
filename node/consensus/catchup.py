"""Catch-up without traffic: ask peers how far they are when a link comes up, and
now and then while nothing gets committed.

A replica learns that it is behind from consensus messages (commits for batches
it lacks, checkpoints beyond its window). An idle consortium sends none, so a
node that lost its data, or restarted after the others moved on, would wait for
the next transaction. The probe is the existing state-transfer request for the
one batch after ours: a peer that has it sends it with its commit certificate,
its reply says how far it is, and the driver then asks it for the rest; a peer
that is not ahead answers with no entries. Replies are verified like any state
transfer (signatures and commit quorum), so a faulty peer can waste a request
but not mislead.

``CatchUp`` only decides whom to probe (time, links and height passed in); the
driver sends the requests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatchUpConfig:
    poll_ms: int = 500  # how often the driver looks at the links
    idle_probe_ms: int = 10_000  # nothing committed for this long: probe one peer


class CatchUp:
    def __init__(self, config: CatchUpConfig) -> None:
        self.cfg = config
        self._known: set[int] = set()  # peers connected at the last tick
        self._seq = -1
        self._seq_since = 0  # when the committed seq last changed
        self._last_probe = 0
        self._next = 0  # round robin over the connected peers

    def tick(self, now_ms: int, connected: set[int], seq: int) -> list[int]:
        """The peers to probe now: every newly connected one, and while the committed
        seq has not moved for ``idle_probe_ms``, one connected peer per that period."""
        fresh = sorted(connected - self._known)
        self._known = set(connected)
        if seq != self._seq:
            self._seq, self._seq_since = seq, now_ms
        out = list(fresh)
        if fresh:
            self._last_probe = now_ms
            return out
        idle = now_ms - self._seq_since >= self.cfg.idle_probe_ms
        due = now_ms - self._last_probe >= self.cfg.idle_probe_ms
        if connected and idle and due:
            peers = sorted(connected)
            self._next = (self._next + 1) % len(peers)
            out.append(peers[self._next])
            self._last_probe = now_ms
        return out
