"""Chaos runs against a real consortium (node processes, libp2p + Noise, LevelDB).

Under steady load, one run repeatedly SIGKILLs and restarts random nodes,
SIGSTOPs and SIGCONTs them, and cuts their links for a while (the nodes run
with ``MEDCHAIN_TEST_FAULTS=1`` and serve ``debug.cut``), never impairing
more than f nodes at once. Then, with every node back:

- every acknowledged transaction is committed, exactly once (it appears in
  exactly one block, and its first execution succeeded);
- all nodes have identical block hashes and state roots at every height;
- after a final SIGKILL of every node, each LevelDB ledger opens and passes
  ``verify_chain`` (structure, hash chain, certificates, tx index).

``run_chaos`` returns the counts; tests/e2e/chaos/test_chaos.py runs a short
one in CI and ``python -m tests.e2e.chaos.run`` the long ones.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from medchain.client.rpc import RpcClient, RpcError
from medchain.localnet.processes import wait_ready
from medchain.storage.genesis import ConsensusParams
from medchain.storage.ledger import Ledger, verify_chain
from tests.e2e.harness import E2ECluster

CHAOS_PARAMS = ConsensusParams(
    checkpoint_interval=20,
    log_window=40,
    batch_timeout_ms=10,
    view_change_timeout_ms=1000,
)
FAULT_ENV = {"MEDCHAIN_TEST_FAULTS": "1"}


@dataclass
class ChaosReport:
    n: int
    seconds: float
    seed: int
    kills: int = 0
    pauses: int = 0
    cuts: int = 0
    acknowledged: int = 0
    submit_errors: int = 0
    committed: int = 0
    lost: int = 0
    duplicated: int = 0
    height: int = 0
    view_changes: int = 0
    ledgers_verified: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ChaosLoad:
    """Submits signed transactions to random healthy nodes; remembers what was acknowledged."""

    def __init__(self, c: E2ECluster, healthy: Any, rate: float, seed: int) -> None:
        self.c = c
        self.healthy = healthy  # () -> list[int]
        self.rate = rate
        self.rng = random.Random(seed)
        self.acked: list[str] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        clients: dict[int, RpcClient] = {}
        k = 0
        while not self._stop.is_set():
            nodes = self.healthy()
            if not nodes:
                time.sleep(0.05)
                continue
            i = self.rng.choice(nodes)
            k += 1
            try:
                if i not in clients:
                    clients[i] = RpcClient(self.c.nodes[i].config.rpc_socket, timeout=5)
                tx = self.c.builders[k % self.c.n].build(
                    "kv", "put", {"key": f"chaos/{k}", "value": str(k)}
                )
                self.acked.append(clients[i].submit(tx)["tx_id"])
            except (OSError, RpcError, ConnectionError, ValueError):
                self.errors += 1
                old = clients.pop(i, None)
                if old is not None:
                    old.close()
            time.sleep(1 / self.rate)
        for cl in clients.values():
            cl.close()


class Chaos:
    def __init__(self, c: E2ECluster, seed: int, log: Any = print) -> None:
        self.c = c
        self.rng = random.Random(seed)
        self.f = (c.n - 1) // 3
        self.impaired: dict[int, tuple[str, float]] = {}  # node -> (fault, ends at)
        self.lock = threading.Lock()
        self.log = log
        self.counts: Counter[str] = Counter()

    def healthy(self) -> list[int]:
        with self.lock:
            return [i for i in range(self.c.n) if i not in self.impaired]

    def inject(self, min_s: float = 1.0, max_s: float = 4.0) -> None:
        """Start one fault on a random healthy node, if fewer than f are impaired."""
        with self.lock:
            if len(self.impaired) >= self.f:
                return
            i = self.rng.choice([j for j in range(self.c.n) if j not in self.impaired])
            kind = self.rng.choice(["kill", "pause", "cut"])
            hold = self.rng.uniform(min_s, max_s)
            self.impaired[i] = (kind, time.monotonic() + hold)
        name = self.c.nodes[i].org_id
        if kind == "kill":
            self.c.signal(i, signal.SIGKILL)
        elif kind == "pause":
            self.c.signal(i, signal.SIGSTOP)
        else:
            with RpcClient(self.c.nodes[i].config.rpc_socket, timeout=5) as cl:
                cl.call("debug.cut", {"ms": int(hold * 1000)})
        self.counts[kind] += 1
        self.log(f"  {kind:5} {name} for {hold:.1f}s")

    def recover_due(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            due = [i for i, (_, end) in self.impaired.items() if force or end <= now]
        for i in due:
            kind, _ = self.impaired[i]
            if kind == "kill":
                self.c.start(i, wait=True, env=FAULT_ENV)
            elif kind == "pause":
                self.c.signal(i, signal.SIGCONT)
            elif force:
                with RpcClient(self.c.nodes[i].config.rpc_socket, timeout=10) as cl:
                    cl.call("debug.heal", {})
            with self.lock:
                del self.impaired[i]


def _views(c: E2ECluster) -> int:
    return int(max(c.status(i)["view"] for i in range(c.n)))


def check_ledgers(c: E2ECluster, acked: list[str], report: ChaosReport) -> None:
    """Offline, on each node's LevelDB: sound chain; acknowledged txs exactly once."""
    wanted = {bytes.fromhex(t) for t in acked}
    for i, node in enumerate(c.nodes):
        ledger = Ledger.open(node.config.data_dir / "ledger", c.genesis)
        try:
            problems = verify_chain(ledger)
            report.problems += [f"{node.org_id}: {p}" for p in problems]
            if not problems:
                report.ledgers_verified += 1
            if i != 0:
                continue
            seen: Counter[bytes] = Counter()
            for h in range(1, ledger.height + 1):
                block = ledger.block(h)
                assert block is not None
                seen.update(t for t in block.ids if t in wanted)
            report.committed = sum(1 for t in wanted if seen[t] >= 1)
            report.lost = sum(1 for t in wanted if seen[t] == 0)
            report.duplicated = sum(1 for t in wanted if seen[t] > 1)
            failed = 0
            for t in wanted:
                loc = ledger.tx(t)
                if loc is not None and not loc.result.ok:
                    failed += 1
            if failed:
                report.problems.append(f"{failed} acknowledged transactions failed to execute")
            if report.lost:
                missing = sorted(t.hex() for t in wanted if seen[t] == 0)[:5]
                report.problems.append(f"{report.lost} acknowledged transactions lost: {missing}")
            if report.duplicated:
                report.problems.append(f"{report.duplicated} transactions in more than one block")
        finally:
            ledger.close()


def run_chaos(
    n: int = 4,
    seconds: float = 40,
    seed: int = 1,
    rate: float = 60,
    fault_every_s: tuple[float, float] = (1.5, 4.0),
    log: Any = print,
) -> ChaosReport:
    report = ChaosReport(n=n, seconds=seconds, seed=seed)
    c = E2ECluster(n, params=CHAOS_PARAMS)
    chaos = Chaos(c, seed, log)
    try:
        for i in range(n):
            c.start(i, wait=False, env=FAULT_ENV)
        for i in range(n):
            wait_ready(c.nodes[i], 60, c.procs[i])
        load = ChaosLoad(c, chaos.healthy, rate, seed)
        load.start()
        end = time.monotonic() + seconds
        next_fault = time.monotonic() + 2
        try:
            while time.monotonic() < end:
                chaos.recover_due()
                if time.monotonic() >= next_fault:
                    chaos.inject()
                    next_fault = time.monotonic() + chaos.rng.uniform(*fault_every_s)
                time.sleep(0.1)
            chaos.recover_due(force=True)
            time.sleep(2)  # a little load with everyone back
        finally:
            load.stop()
            chaos.recover_due(force=True)
        report.kills = chaos.counts["kill"]
        report.pauses = chaos.counts["pause"]
        report.cuts = chaos.counts["cut"]
        report.acknowledged = len(load.acked)
        report.submit_errors = load.errors
        log(f"  load stopped: {report.acknowledged} acknowledged; waiting for every node")
        try:
            c.wait_committed(load.acked, list(range(n)), timeout=120)
        except AssertionError as exc:
            report.problems.append(f"not committed everywhere in 120 s: {exc}")
        c.sync(timeout=60)
        report.height = c.assert_consistent()
        report.view_changes = _views(c)
        for i in range(n):  # the harshest stop: SIGKILL everyone, then inspect the files
            c.signal(i, signal.SIGKILL)
        check_ledgers(c, load.acked, report)
        return report
    except BaseException:
        for i in range(n):
            log(c.logs(i, 30))
        raise
    finally:
        c.close()
