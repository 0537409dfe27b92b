"""A full disk halts a node loudly, and nothing is lost.

One member's data dir is a small file system (tmpfs), filled while the
consortium commits. The node must stop at once with exit code 3 and a
message naming the store, the path, the device and the errno — never
"dropped" and carry on — while the others go on committing. Once space is
freed it restarts and catches up, and every transaction any node
acknowledged is committed on every node.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time

import pytest

from medchain.client.rpc import RpcError
from tests.e2e.harness import cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small file system needs root"),
]

FULL = 1  # the node whose disk fills


def test_disk_full_halts_the_node_loudly_and_loses_nothing() -> None:
    with cluster(4, start=False) as c:
        data = c.nodes[FULL].config.data_dir
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)], check=True)
        try:
            c.start_all()
            acked: list[str] = []
            stop = threading.Event()

            def load(node: int, signer: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    with contextlib.suppress(RpcError, OSError):
                        acked.append(c.submit(node, signer, f"n{node}-{i}", "x" * 200))
                    time.sleep(0.005)

            loaders = [threading.Thread(target=load, args=(n, n), daemon=True) for n in (0, FULL)]
            for t in loaders:
                t.start()
            time.sleep(2)
            filler = data / "filler"
            with open(filler, "wb") as fh:  # take every byte left
                chunk = b"\0" * (1 << 20)
                try:
                    while True:
                        fh.write(chunk)
                        fh.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            code = c.procs[FULL].wait(60)
            log = c.log_text(FULL)
            assert code == 3, (code, log[-3000:])
            assert "No space left on device" in log and "ENOSPC" in log, log[-3000:]
            assert str(data) in log and "mounted at" in log, log[-3000:]
            assert "dropped" not in log, log[-3000:]
            time.sleep(2)  # the others go on without it
            stop.set()
            for t in loaders:
                t.join(10)
            others = [0, 2, 3]
            c.wait_committed(acked, others)
            filler.unlink()
            c.start(FULL)
            c.wait_committed(acked, [FULL], timeout=90)
            c.sync()
            c.assert_consistent()
            assert len(acked) > 50, len(acked)
        finally:
            for p in c.procs.values():
                with contextlib.suppress(Exception):
                    p.kill()
                    p.wait(10)
            subprocess.run(["umount", "-l", str(data)], check=False)
