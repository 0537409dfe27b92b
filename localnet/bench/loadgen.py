"""A load generator process: signs transactions with its own key and submits
them over RPC at a steady rate (open loop), in JSON-RPC batches.

    python -m medchain.localnet.bench.loadgen --sockets A.sock,B.sock --workload W.json --rate 500
        --duration 20 --out results.jsonl

Transactions are signed before the clock starts, so the generator's own CPU
use during the run is small. Writes one JSON line per accepted transaction:
{"tx": id, "t": submit time}, plus a summary line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import time
from pathlib import Path

from medchain.client.rpc import RpcClient
from medchain.localnet.bench.workload import Maker


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", required=True)
    ap.add_argument(
        "--workload",
        type=Path,
        required=True,
        help="JSON written by medchain.localnet.bench.workload.setup",
    )
    ap.add_argument(
        "--rate", type=float, required=True, help="transactions per second from this process"
    )
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--start-at", type=float, default=0.0, help="wall-clock time to begin (to align generators)"
    )
    args = ap.parse_args()

    maker = Maker(json.loads(args.workload.read_text()))
    total = int(args.rate * args.duration)
    payloads = []
    for i in range(total):
        raw = maker.make(i).encode()
        payloads.append((hashlib.sha256(raw).hexdigest(), base64.b64encode(raw).decode()))
    clients = [RpcClient(s, timeout=60) for s in args.sockets.split(",")]
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    start = time.time()
    sent = busy = rejected = 0
    out = args.out.open("w")
    k = 0
    while sent < total:
        due = min(total, int((time.time() - start) * args.rate) + 1)
        while sent < due:
            chunk = payloads[sent : min(due, sent + args.batch)]
            client = clients[k % len(clients)]
            k += 1
            t = time.time()
            results = client.batch([("tx.submit", {"tx": b64}) for _, b64 in chunk])
            for (tx_id, _), res in zip(chunk, results, strict=True):
                if isinstance(res, Exception):
                    if getattr(res, "code", 0) == -32001:
                        busy += 1
                    else:
                        rejected += 1
                    continue
                out.write(json.dumps({"tx": tx_id, "t": t}) + "\n")
            sent += len(chunk)
        time.sleep(0.005)
    elapsed = time.time() - start
    out.write(
        json.dumps(
            {"summary": True, "sent": sent, "busy": busy, "rejected": rejected, "seconds": elapsed}
        )
        + "\n"
    )
    out.close()


if __name__ == "__main__":
    main()
