"""Long simulation soak, outside CI:  python -m tests.sim.soak --seeds 5000 [--start 0] [--n 4]

Runs generated scenarios and prints a summary; any failing seed is printed
with the command that replays it (python -m tests.sim.debug_one SEED)."""

from __future__ import annotations

import argparse
import time
from collections import Counter

from tests.sim.cluster import Cluster
from tests.sim.scenarios import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n", type=int, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    failures: list[tuple[int, list[str]]] = []
    sizes: Counter[int] = Counter()
    faults: Counter[str] = Counter()
    delivered = 0
    for seed in range(args.start, args.start + args.seeds):
        sc = generate(seed, args.n)
        sizes[sc.n] += 1
        faults.update(
            k
            for k, on in [
                ("drops", sc.rules.drop > 0),
                ("duplicates", sc.rules.duplicate > 0),
                ("partitions", bool(sc.partitions)),
                ("crashes", bool(sc.crashes)),
                ("byzantine", bool(sc.byzantine)),
                ("real-ed25519", sc.real_signatures),
            ]
            if on
        )
        res = Cluster(sc).run()
        v = res.violations()
        delivered += max((nd.disk.delivered for nd in res.cluster.honest), default=0)
        if v:
            failures.append((seed, v))
            print(f"FAIL seed {seed}: {sc.describe()}\n    " + "\n    ".join(v[:3]), flush=True)
        if (seed - args.start + 1) % 250 == 0:
            print(
                f"... {seed - args.start + 1} seeds, {len(failures)} failures, {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    dt = time.perf_counter() - t0
    print(
        f"\n{args.seeds} scenarios (n: {dict(sizes)}; faults: {dict(faults)}) in {dt:.0f}s cpu; "
        f"{delivered} batches delivered; {len(failures)} failing seeds: {[s for s, _ in failures]}"
    )


if __name__ == "__main__":
    main()
