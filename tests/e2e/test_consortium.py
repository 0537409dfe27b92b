"""A real 4-node consortium: separate processes, py-libp2p with Noise, LevelDB."""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.harness import Load, cluster

pytestmark = pytest.mark.e2e


def test_transactions_to_any_node_commit_everywhere_identically() -> None:
    with cluster(4) as c:
        ids = [c.submit(k % 4, k % 4, f"key{k}") for k in range(60)]
        c.wait_committed(ids, [0, 1, 2, 3])
        assert c.assert_consistent() >= 1
        st = c.settled_status()
        assert len({s["height"] for s in st}) == 1
        assert len({s["state_root"] for s in st}) == 1, st
        assert all(len(s["peers"]) == 3 for s in st)


def test_sigkill_backup_under_load_then_catch_up_by_state_transfer() -> None:
    with cluster(4) as c:
        with Load(c, [0, 1, 3], rate=80) as load:
            time.sleep(1.0)
            c.signal(2, signal.SIGKILL)  # a backup (the primary of view 0 is node 0)
            h = max(c.heights([0, 1, 3]))
            c.wait_height(h + 5, [0, 1, 3], timeout=30)  # the others keep committing
            c.start(2)
            time.sleep(1.0)
        c.wait_committed(load.acked, [0, 1, 3])
        top = max(c.heights([0, 1, 3]))
        c.wait_height(top, [2], timeout=60)
        c.assert_consistent()
        # no http_port in node.toml: no web UI on any node (it is off unless enabled)
        assert not any('"event":"http-ready"' in c.log_text(i) for i in range(4))
        with c.client(2) as cl:
            assert cl.call("node.metrics")["state_transfer_batches"] > 0
        assert not load.errors[:1] or all("2:" in e or "refused" in e for e in load.errors)


def test_sigkill_primary_view_change_then_sigstop_recovers() -> None:
    with cluster(4) as c:
        assert c.status(1)["primary"] == "hospital-a"
        warm = [c.submit(1, 1, f"warm{k}") for k in range(5)]
        c.wait_committed(warm, [1, 2, 3])
        c.signal(0, signal.SIGKILL)  # the primary dies
        t = time.monotonic()
        ids = [c.submit(1 + k % 3, 1 + k % 3, f"after{k}") for k in range(20)]
        c.wait_committed(ids, [1, 2, 3], timeout=30)
        elapsed = time.monotonic() - t
        st = c.status(1)
        assert st["view"] >= 1 and st["primary"] != "hospital-a"
        assert elapsed < 15, f"commits resumed only after {elapsed:.1f}s"
        c.start(0)
        c.wait_height(max(c.heights([1, 2, 3])), [0], timeout=60)
        # Now freeze a node for 10 s under load; the rest go on; it recovers after SIGCONT.
        with Load(c, [0, 1, 2], rate=50) as load:
            c.signal(3, signal.SIGSTOP)
            h = max(c.heights([0, 1, 2]))
            time.sleep(10)
            assert min(c.heights([0, 1, 2])) > h
            c.signal(3, signal.SIGCONT)
            time.sleep(1)
        c.wait_committed(load.acked, [0, 1, 2, 3], timeout=60)
        c.wait_height(max(c.heights([0, 1, 2])), [3], timeout=60)
        c.assert_consistent()
