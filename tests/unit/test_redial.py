"""Reconnect pacing: exponential backoff with jitter under a cap, and one warning
per minute (not per dial) while dials to a peer keep failing."""

from __future__ import annotations

import itertools
import random

from medchain.node.net.redial import Redial, RedialConfig

CFG = RedialConfig(min_s=0.2, max_s=3.0, jitter=0.5, warn_after_s=10.0, warn_every_s=60.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    r = Redial(CFG, Clock(), random.Random(7))
    waits = [r.failed("refused")[0] for _ in range(12)]
    ceilings = [min(3.0, 0.2 * 2**k) for k in range(12)]
    for w, c in zip(waits, ceilings, strict=True):
        assert c * 0.5 <= w <= c
    assert max(waits) <= 3.0
    assert len({round(w, 6) for w in waits[6:]}) > 1  # jittered, not in lockstep


def test_success_starts_the_backoff_over() -> None:
    r = Redial(CFG, Clock(), random.Random(1))
    for _ in range(8):
        r.failed("refused")
    r.succeeded()
    assert r.failed("refused")[0] <= 0.2


def test_warns_once_failing_long_then_at_most_once_a_minute() -> None:
    clock = Clock()
    r = Redial(CFG, clock, random.Random(3))
    warnings = []
    for _ in range(600):  # ten minutes of dials every second
        _, w = r.failed("ConnectionRefusedError")
        if w is not None:
            warnings.append((clock.t, w))
        clock.t += 1.0
    first_at, first = warnings[0]
    assert first_at - 1000.0 >= 10.0
    assert first.failures == 11 and first.last_error == "ConnectionRefusedError"
    assert 9 <= len(warnings) <= 11
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(warnings)]
    assert min(gaps) >= 60.0


def test_recovery_is_reported_only_after_a_warning() -> None:
    clock = Clock()
    r = Redial(CFG, clock, random.Random(3))
    r.failed("x")
    clock.t += 2
    assert r.succeeded() is None  # a blip: nothing to say
    for _ in range(20):
        r.failed("x")
        clock.t += 1
    back = r.succeeded()
    assert back is not None and back.failures == 20 and back.seconds == 20.0
    assert r.succeeded() is None


def test_a_flapping_link_is_warned_about_no_more_than_a_dead_one() -> None:
    clock = Clock()
    r = Redial(CFG, clock, random.Random(5))
    warnings = 0
    for _ in range(10):  # down 15 s, up a moment, ten times over
        for _ in range(15):
            warnings += r.failed("x")[1] is not None
            clock.t += 1
        r.succeeded()
    assert warnings == 3  # at 10 s, then once per 60 s
