"""Run one seed and print its trace: python -m tests.sim.debug_one SEED [N]"""

from __future__ import annotations

import sys
import time

from tests.sim.cluster import Cluster
from tests.sim.scenarios import generate


def main() -> None:
    seed = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else None
    sc = generate(seed, n)
    t = time.perf_counter()
    res = Cluster(sc).run()
    dt = time.perf_counter() - t
    v = res.violations()
    print(res.trace() if v or "-v" in sys.argv else sc.describe())
    print(f"{len(v)} violations in {dt:.2f}s cpu", *v, sep="\n")


if __name__ == "__main__":
    main()
