"""The pid check behind ``medchain net`` and the local-net helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from medchain.localnet.processes import pid_alive


def test_a_running_process_is_alive_and_a_zombie_is_not() -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert pid_alive(p.pid)
        assert pid_alive(os.getpid())
        assert p.stdin is not None
        p.stdin.close()  # the child exits; not reaped, it stays a zombie
        deadline = time.monotonic() + 10
        while pid_alive(p.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        assert not pid_alive(p.pid), "an exited, unreaped child counts as running"
    finally:
        p.wait()
    assert not pid_alive(p.pid)  # reaped: the pid is gone
