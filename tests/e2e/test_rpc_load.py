"""A real node under RPC load: hundreds of clients connecting at once, and a big
records.put that must not stall the node's other calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from medchain.client.rpc import RpcClient
from tests.e2e.harness import E2ECluster, cluster
from tests.e2e.scenario import medchain

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def one() -> Iterator[E2ECluster]:
    with cluster(1) as c:
        yield c


def test_300_simultaneous_connects_all_succeed(one: E2ECluster) -> None:
    path = one.nodes[0].config.rpc_socket
    n = 300
    start = threading.Barrier(n)
    connected = threading.Barrier(n)
    errors: list[str] = []
    answers: list[Any] = []

    def client() -> None:
        try:
            start.wait(30)
            with RpcClient(path, timeout=60) as c:
                answers.append(c.call("node.ping"))
                connected.wait(60)  # every connection open at once
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            connected.abort()

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and answers == ["pong"] * n
    assert one.status(0)["org"] == one.nodes[0].org_id


def test_a_big_records_put_leaves_the_node_responsive(one: E2ECluster) -> None:
    path = one.nodes[0].config.rpc_socket
    items = [
        {
            "resource": {
                "resourceType": "Observation",
                "id": f"load-{i}",
                "status": "final",
                "effectiveDateTime": "2025-03-04",
            },
            "patient": "p-load",
        }
        for i in range(5000)
    ]
    result: dict[str, Any] = {}

    def put() -> None:
        with RpcClient(path, timeout=120) as c:
            t0 = time.monotonic()
            result["out"] = c.call("records.put", {"items": items})
            result["s"] = time.monotonic() - t0

    latencies: list[float] = []
    worker = threading.Thread(target=put)
    with RpcClient(path, timeout=30) as c:
        c.status()
        worker.start()
        while worker.is_alive():
            t0 = time.monotonic()
            c.status()
            latencies.append(time.monotonic() - t0)
            time.sleep(0.02)
    worker.join()
    out = result["out"]
    assert len(out) == 5000 and {r["status"] for r in out} == {"stored"}
    assert max(latencies) < 0.5, (
        f"status took up to {max(latencies):.3f} s during a {result['s']:.2f} s records.put"
    )
    assert len(latencies) >= 5, f"the put took {result['s']:.2f} s: too short to measure"


def test_tx_send_with_a_0644_admin_key_is_one_line(one: E2ECluster) -> None:
    key = one.dir / one.nodes[0].org_id / "admin.key"
    key.chmod(0o644)
    try:
        r = medchain(
            "tx",
            "send",
            "--config",
            str(one.nodes[0].config_path),
            "--key",
            str(key),
            "--contract",
            "kv",
            "--method",
            "put",
            "--args",
            '{"key": "k", "value": "v"}',
            check=False,
            timeout=60,
        )
    finally:
        key.chmod(0o600)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"Error: key file {key} has permissions 0644; it must be readable by its owner only "
        f"(run: chmod 600 {key})"
    ]
