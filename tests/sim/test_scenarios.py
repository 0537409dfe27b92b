"""Seeded fault scenarios (n = 1, 4, 7): safety, liveness after healing,
agreeing state roots, nothing delivered lost. A failure prints the seed,
the scenario and a readable trace of the last messages.

Replay one: python -m tests.sim.debug_one SEED
"""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import Cluster, Scenario
from tests.sim.scenarios import generate

SEEDS = int(os.environ.get("MEDCHAIN_SIM_SEEDS", "360"))

# Seeds that once failed, pinned with what was wrong:
REGRESSIONS = {
    3: "view-change messages lost in a partition were never resent: all replicas stuck changing view",
    164: "a restarted replica never told its replica it had pending work, so it never caught up",
    197: "same, with several crashes and a long partition",
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


@pytest.mark.parametrize("seed", sorted(REGRESSIONS))
def test_regression_seed(seed: int) -> None:
    _run(generate(seed))


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
