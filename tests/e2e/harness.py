"""A real consortium for end-to-end tests: node processes on loopback,
py-libp2p with Noise between them, LevelDB under each, RPC sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medchain.client.rpc import RpcClient, RpcError
from medchain.client.signing import TxBuilder
from medchain.localnet.processes import (
    DEFAULT_ORGS,
    LocalNode,
    free_ports,
    local_nodes,
    spawn,
    wait_ready,
)
from medchain.node.consortium import OrgSpec, init_consortium
from medchain.node.net.p2p_state import PeerAddress
from medchain.storage.genesis import ConsensusParams, Genesis
from medchain.storage.keyfile import load_key

NAMES = DEFAULT_ORGS

TEST_PARAMS = ConsensusParams(
    checkpoint_interval=10,
    log_window=20,
    batch_timeout_ms=10,
    view_change_timeout_ms=1000,
)


@dataclass
class E2ECluster:
    n: int = 4
    params: ConsensusParams = TEST_PARAMS
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mc-e2e-")))
    http: bool = False  # turn on every node's web UI

    def __post_init__(self) -> None:
        self.dir = self.root / "c"
        ports = free_ports(2 * self.n if self.http else self.n)
        self.genesis: Genesis = init_consortium(
            self.dir,
            [OrgSpec.parse(x) for x in NAMES[: self.n]],
            consensus=self.params,
            ports=ports[: self.n],
            http_ports=ports[self.n :] if self.http else None,
        )
        self.nodes: list[LocalNode] = local_nodes(self.dir)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.builders = [
            TxBuilder(load_key(self.dir / o.org_id / "admin.key"), self.genesis.chain_id)
            for o in self.genesis.organizations
        ]

    # -- processes ----------------------------------------------------------------

    def start(self, i: int, wait: bool = True, env: dict[str, str] | None = None) -> None:
        self.procs[i] = spawn(self.nodes[i], env)
        if wait:
            wait_ready(self.nodes[i], 60, self.procs[i])

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i, wait=False)
        for i in range(self.n):
            wait_ready(self.nodes[i], 60, self.procs[i])

    def signal(self, i: int, sig: int) -> None:
        self.procs[i].send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.procs[i].wait(30)

    def close(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(Exception):
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(10)
        if os.environ.get("MEDCHAIN_KEEP_E2E"):
            return
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self, i: int, lines: int = 40) -> str:
        out = []
        for name in ("node.log", "node.out"):
            p = self.nodes[i].directory / name
            if p.exists():
                out.append(f"--- {self.nodes[i].org_id}/{name}")
                out.extend(p.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)

    def log_text(self, i: int) -> str:
        p = self.nodes[i].directory / "node.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def peer_addresses(self, skip: int) -> list[PeerAddress]:
        """Every member's libp2p address but node ``skip``'s: what a transport of the
        test's own, standing in for node ``skip``, dials."""
        return [
            PeerAddress(i, o.org_id, o.node_key, self.nodes[i].config.listen)
            for i, o in enumerate(self.genesis.organizations)
            if i != skip
        ]

    # -- RPC ----------------------------------------------------------------------

    def client(self, i: int) -> RpcClient:
        return RpcClient(self.nodes[i].config.rpc_socket, timeout=30)

    def status(self, i: int) -> dict[str, Any]:
        with self.client(i) as c:
            return c.status()

    def heights(self, nodes: list[int] | None = None) -> list[int]:
        return [self.status(i)["height"] for i in (nodes if nodes is not None else range(self.n))]

    def submit(self, i: int, signer: int, key: str, value: str = "v") -> str:
        with self.client(i) as c:
            tx = self.builders[signer].build("kv", "put", {"key": key, "value": value})
            tx_id: str = c.submit(tx)["tx_id"]
            return tx_id

    def wait_committed(self, tx_ids: list[str], nodes: list[int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for i in nodes:
            with self.client(i) as c:
                for t in tx_ids:
                    left = max(0.1, deadline - time.monotonic())
                    r = c.wait(t, int(left * 1000))
                    assert r["status"] in ("committed", "failed"), (
                        f"{self.nodes[i].org_id}: {t} is {r}"
                    )

    def wait_height(self, height: int, nodes: list[int], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            hs = self.heights(nodes)
            if min(hs) >= height:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"heights {hs} did not reach {height} in {timeout}s")
            time.sleep(0.1)

    def sync(self, nodes: list[int] | None = None, timeout: float = 30) -> None:
        """Wait until the given nodes have every block any of them has (read-your-writes
        across nodes: a write committed on one node reaches the others a moment later)."""
        nodes = list(nodes if nodes is not None else range(self.n))
        self.wait_height(max(self.heights(nodes)), nodes, timeout)

    def settled_status(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Every node's status once all stand at one height (an idle primary seals the
        last block with transactions a moment later, so heights settle, then stay)."""
        deadline = time.monotonic() + timeout
        while True:
            st = [self.status(i) for i in range(self.n)]
            if len({s["height"] for s in st}) == 1 or time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def assert_consistent(self, nodes: list[int] | None = None) -> int:
        """Identical block hashes and state roots at every height all nodes have."""
        nodes = list(nodes if nodes is not None else range(self.n))
        top = min(self.heights(nodes))
        clients = [self.client(i) for i in nodes]
        try:
            for h in range(1, top + 1):
                blocks = [c.call("block.get", {"height": h}) for c in clients]
                assert len({b["hash"] for b in blocks}) == 1, f"block hashes differ at {h}"
                assert len({b["state_root_after"] for b in blocks}) == 1, (
                    f"state roots differ at {h}"
                )
        finally:
            for c in clients:
                c.close()
        return top


class Load:
    """Background load: submit transactions to the given nodes until stopped;
    records what each node acknowledged."""

    def __init__(self, cluster: E2ECluster, nodes: list[int], rate: float = 100) -> None:
        self.cluster = cluster
        self.nodes = nodes
        self.rate = rate
        self.acked: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        k = 0
        clients: dict[int, RpcClient] = {}
        while not self._stop.is_set():
            i = self.nodes[k % len(self.nodes)]
            k += 1
            try:
                if i not in clients:
                    clients[i] = self.cluster.client(i)
                tx = self.cluster.builders[i % self.cluster.n].build(
                    "kv", "put", {"key": f"load{k}", "value": "x"}
                )
                self.acked.append(clients[i].submit(tx)["tx_id"])
            except (OSError, RpcError, ConnectionError) as exc:
                self.errors.append(f"{i}: {exc}")
                clients.pop(i, None)
            time.sleep(1 / self.rate)
        for c in clients.values():
            c.close()


@contextlib.contextmanager
def cluster(
    n: int = 4,
    start: bool = True,
    on_fail: Callable[[E2ECluster], None] | None = None,
    http: bool = False,
) -> Iterator[E2ECluster]:
    c = E2ECluster(n, http=http)
    try:
        if start:
            c.start_all()
        yield c
    except BaseException:
        for i in range(c.n):
            print(c.logs(i))
        spy = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "py-spy"
        if spy.exists():
            for i, p in c.procs.items():
                if p.poll() is None:
                    r = subprocess.run(
                        [str(spy), "dump", "--pid", str(p.pid)],
                        capture_output=True,
                        text=True,
                        timeout=30,
                    )
                    print(f"--- py-spy dump of {c.nodes[i].org_id}\n{r.stdout[-4000:]}")
        raise
    finally:
        c.close()
