"""Seeded scenario generator: one seed -> one fault mix, reproducibly."""

from __future__ import annotations

import random

from tests.sim.cluster import BYZANTINE_KINDS, Scenario
from tests.sim.network import LinkRules, Partition


def generate(seed: int, n: int | None = None, kinds: tuple[str, ...] = BYZANTINE_KINDS) -> Scenario:
    rng = random.Random(seed * 7919 + 17)
    if n is None:
        n = rng.choice([4, 4, 4, 7, 7]) if seed % 10 else 1
    f = (n - 1) // 3
    heal = rng.choice([2_000, 4_000, 6_000])
    sc = Scenario(
        seed=seed,
        n=n,
        requests=rng.randint(20, 80),
        load_until=heal - 500,
        heal_at=heal,
        batch_size=rng.choice([1, 4, 8, 16]),
        batch_timeout=rng.choice([2, 5, 20]),
        checkpoint_interval=rng.choice([3, 5, 10]),
        max_inflight=rng.choice([1, 2, 4, 8]),
        view_change_timeout=rng.choice([150, 300, 600]),
        real_signatures=rng.random() < 0.1,
    )
    sc.log_window = sc.checkpoint_interval * rng.choice([2, 3])
    sc.max_inflight = min(sc.max_inflight, sc.log_window)
    if n == 1:
        return sc
    mix = rng.random()
    if mix < 0.7:
        sc.rules = LinkRules(
            drop=rng.choice([0.0, 0.02, 0.05, 0.15]),
            delay_min=1,
            delay_max=rng.choice([5, 20, 80]),
            duplicate=rng.choice([0.0, 0.05, 0.2]),
        )
    budget = f
    # Byzantine replicas (never more than f in all, counting crashes that overlap).
    byz = rng.randint(0, budget) if rng.random() < 0.5 else 0
    for i in rng.sample(range(n), byz):
        sc.byzantine[i] = rng.choice(kinds)
    budget -= byz
    # Partitions that heal: a minority cut off for a while.
    if rng.random() < 0.4:
        size = rng.randint(1, max(1, f))
        group = frozenset(rng.sample(range(n), size))
        start = rng.randint(0, heal // 2)
        sc.partitions.append(Partition(group, start, rng.randint(start + 200, heal)))
    if rng.random() < 0.15:
        # A partition of up to half: no quorum on either side until it heals (safety only meanwhile).
        group = frozenset(rng.sample(range(n), n // 2))
        start = rng.randint(0, heal // 2)
        sc.partitions.append(Partition(group, start, rng.randint(start + 100, heal)))
    # Crash and restart honest nodes, at most `budget` down at once.
    if budget > 0 and rng.random() < 0.6:
        candidates = [i for i in range(n) if i not in sc.byzantine]
        t = rng.randint(0, heal // 3)
        for _ in range(rng.randint(1, 3)):
            if t >= heal - 100:
                break
            node = rng.choice(candidates)
            back = rng.randint(t + 100, min(heal, t + 2_000))
            sc.crashes.append((node, t, back))
            t = back + rng.randint(10, 500)
    return sc
