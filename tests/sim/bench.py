"""Simulated commit rate and memory over a long run (no faults).

    python -m tests.sim.bench [--seqs 20000] [--runs 3]

Reports batches delivered per second of real CPU for n = 4 and n = 7 (every
message goes through the codec, HMAC stand-in signatures, the full replica),
and the largest size the replica's logs reached, which must not grow with
the number of sequence numbers (checkpoints garbage-collect them)."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from tests.sim.cluster import Cluster, Scenario


def measure(n: int, seqs: int, real: bool = False) -> dict[str, float]:
    sc = Scenario(
        seed=1,
        n=n,
        requests=seqs,
        load_until=1,
        heal_at=0,
        deadline_after_heal=10**9,
        batch_size=1,
        batch_timeout=1,
        checkpoint_interval=100,
        log_window=200,
        max_inflight=8,
        view_change_timeout=10_000,
        real_signatures=real,
    )
    c = Cluster(sc)
    peak = {"slots": 0, "prepared_certs": 0, "checkpoint_votes": 0, "future": 0, "view_changes": 0}

    def sample() -> bool:
        for nd in c.nodes:
            r = nd.replica
            peak["slots"] = max(peak["slots"], len(r.slots))
            peak["prepared_certs"] = max(peak["prepared_certs"], len(r.prepared_certs))
            peak["checkpoint_votes"] = max(peak["checkpoint_votes"], len(r.checkpoint_votes))
            peak["future"] = max(peak["future"], sum(len(x) for x in r.future.values()))
            peak["view_changes"] = max(
                peak["view_changes"], sum(len(d) for d in r.view_changes.values())
            )
        return c.done()

    c.schedule()
    t = time.process_time()
    c.net.run(10**12, stop=sample, max_events=10**9)
    cpu = time.process_time() - t
    delivered = min(nd.disk.delivered for nd in c.nodes)
    assert c.done(), "run did not finish"
    return {
        "n": n,
        "batches": delivered,
        "cpu_s": cpu,
        "batches_per_cpu_s": delivered / cpu,
        **{f"peak_{k}": v for k, v in peak.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, nargs="*", default=[4, 7])
    args = ap.parse_args()
    summary = {}
    for n in args.n:
        runs = [measure(n, args.seqs) for _ in range(args.runs)]
        for r in runs:
            print(json.dumps(r))
        summary[n] = statistics.median(r["batches_per_cpu_s"] for r in runs)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"median_batches_per_cpu_s": summary, "max_rss_mb": round(rss_mb, 1)}))


if __name__ == "__main__":
    main()
