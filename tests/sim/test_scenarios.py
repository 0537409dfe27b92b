"""Seeded fault scenarios (n = 1, 4, 7): safety, liveness after healing,
agreeing state roots, nothing delivered lost. A failure prints the seed,
the scenario and a readable trace of the last messages.

Replay one: python -m tests.sim.debug_one SEED
"""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import Cluster, Scenario
from tests.sim.network import LinkRules, Partition
from tests.sim.scenarios import generate

SEEDS = int(os.environ.get("MEDCHAIN_SIM_SEEDS", "360"))

# Scenarios that once failed, frozen (not regenerated, so changing the generator
# cannot quietly change them), with what was wrong.
REGRESSIONS: dict[str, tuple[str, Scenario]] = {
    "vc-resend": (
        "view-change messages lost in a partition were never resent: all replicas stuck changing view",
        Scenario(
            seed=3,
            n=4,
            requests=57,
            load_until=3500,
            heal_at=4000,
            partitions=[
                Partition(frozenset({3}), 1842, 3548),
                Partition(frozenset({0, 1}), 1243, 3258),
            ],
            batch_size=8,
            batch_timeout=20,
            checkpoint_interval=3,
            log_window=9,
            max_inflight=2,
            view_change_timeout=150,
        ),
    ),
    "restart-pending": (
        "a restarted replica never told its replica it had pending work, so it never caught up",
        Scenario(
            seed=164,
            n=7,
            requests=63,
            load_until=1500,
            heal_at=2000,
            partitions=[Partition(frozenset({5}), 722, 1878)],
            crashes=[(5, 357, 1699)],
            byzantine={6: "forge"},
            batch_size=1,
            batch_timeout=20,
            checkpoint_interval=5,
            log_window=15,
            max_inflight=1,
            view_change_timeout=150,
        ),
    ),
    "restart-pending-2": (
        "same, with several crashes, a long partition and real Ed25519",
        Scenario(
            seed=197,
            n=4,
            requests=30,
            load_until=5500,
            heal_at=6000,
            rules=LinkRules(drop=0.02, duplicate=0.05),
            partitions=[Partition(frozenset({2}), 928, 5525)],
            crashes=[(2, 863, 1159), (3, 1411, 2687), (1, 2822, 3658)],
            batch_size=4,
            batch_timeout=5,
            checkpoint_interval=5,
            log_window=10,
            max_inflight=1,
            view_change_timeout=150,
            real_signatures=True,
        ),
    ),
    "equivocation-junk": (
        "the liveness check counted an equivocator's junk request as one of the submitted ones",
        Scenario(
            seed=381,
            n=4,
            requests=42,
            load_until=1500,
            heal_at=2000,
            byzantine={0: "equivocate"},
            batch_size=1,
            batch_timeout=20,
            checkpoint_interval=10,
            log_window=30,
            max_inflight=4,
            view_change_timeout=300,
        ),
    ),
    "reoffer-abandoned": (
        "a primary never re-offered requests of proposals abandoned by a view change",
        Scenario(
            seed=433,
            n=4,
            requests=48,
            load_until=3500,
            heal_at=4000,
            rules=LinkRules(drop=0.05, delay_max=20),
            byzantine={3: "silent"},
            batch_size=4,
            batch_timeout=5,
            checkpoint_interval=3,
            log_window=9,
            max_inflight=2,
            view_change_timeout=300,
        ),
    ),
    "split-views": (
        "replicas split between views with no quorum in either: a view change a replica had moved past no longer counted",
        Scenario(
            seed=438,
            n=4,
            requests=22,
            load_until=5500,
            heal_at=6000,
            rules=LinkRules(drop=0.05, delay_max=80, duplicate=0.2),
            partitions=[Partition(frozenset({0, 2}), 1672, 2583)],
            byzantine={1: "silent"},
            batch_size=16,
            batch_timeout=20,
            checkpoint_interval=10,
            log_window=30,
            max_inflight=2,
            view_change_timeout=300,
        ),
    ),
    "equivocation-junk-2": (
        "same as equivocation-junk, with drops and duplicates",
        Scenario(
            seed=541,
            n=4,
            requests=32,
            load_until=1500,
            heal_at=2000,
            rules=LinkRules(drop=0.15, duplicate=0.2),
            byzantine={0: "equivocate"},
            batch_size=16,
            batch_timeout=2,
            checkpoint_interval=10,
            log_window=30,
            max_inflight=4,
            view_change_timeout=300,
        ),
    ),
}


def _run(sc: Scenario) -> None:
    res = Cluster(sc).run()
    v = res.violations()
    if v:
        pytest.fail(
            "\n".join([*v, "", res.trace(), f"replay: python -m tests.sim.debug_one {sc.seed}"]),
            pytrace=False,
        )


@pytest.mark.parametrize("seed", range(SEEDS))
def test_generated_scenario(seed: int) -> None:
    _run(generate(seed))


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    _run(REGRESSIONS[name][1])


def test_scenarios_cover_every_fault_and_size() -> None:
    seen_n, kinds = set(), set()
    for seed in range(SEEDS):
        sc = generate(seed)
        seen_n.add(sc.n)
        kinds.update(sc.byzantine.values())
        if sc.rules.drop:
            kinds.add("drop")
        if sc.rules.duplicate:
            kinds.add("duplicate")
        if sc.rules.delay_max > 20:
            kinds.add("delay")
        if sc.partitions:
            kinds.add("partition")
        if sc.crashes:
            kinds.add("crash")
    assert seen_n == {1, 4, 7}
    assert kinds >= {
        "drop",
        "duplicate",
        "delay",
        "partition",
        "crash",
        "silent",
        "equivocate",
        "forge",
        "wrong-view",
        "replay",
        "garbage",
    }
