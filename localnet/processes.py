"""Run a local consortium's nodes as background processes (``medchain net``),
with pid files and log files in each organization's directory. Also used by
the end-to-end tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medchain.node.config import NodeConfig
from medchain.storage.genesis import Genesis

PID_FILE = "node.pid"
DEFAULT_ORGS = [
    "Hospital A:hospital",
    "Hospital B:hospital",
    "Insurer:insurer",
    "Regulator:regulator",
    "Clinic C:clinic",
    "Exam Centre:exam-centre",
    "Hospital D:hospital",
]
OUT_FILE = "node.out"


@dataclass
class LocalNode:
    org_id: str
    directory: Path
    config_path: Path

    @property
    def config(self) -> NodeConfig:
        return NodeConfig.load(self.config_path)

    @property
    def pid_file(self) -> Path:
        return self.directory / PID_FILE

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None


def free_ports(n: int) -> list[int]:
    """n TCP ports free on 127.0.0.1 right now."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def local_nodes(directory: Path) -> list[LocalNode]:
    # Absolute: the node processes run in the package's directory, not the caller's.
    directory = Path(directory).resolve()
    g = Genesis.load(directory / "genesis.toml")
    return [
        LocalNode(o.org_id, Path(directory) / o.org_id, Path(directory) / o.org_id / "node.toml")
        for o in g.organizations
    ]


def spawn(node: LocalNode, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start one node process in the background (its own session: not killed with the CLI)."""
    env = dict(os.environ)
    env.update(extra_env or {})
    out = open(node.directory / OUT_FILE, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medchain.cli",
            "node",
            "start",
            "--config",
            str(node.config_path.resolve()),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        cwd=str(node.directory.resolve()),  # the child's paths do not depend on ours
    )
    out.close()
    node.pid_file.write_text(f"{proc.pid}\n")
    return proc


def wait_ready(
    node: LocalNode, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    """Wait until the node answers node.status on its RPC socket."""
    from medchain.client.rpc import RpcClient

    sock = node.config.rpc_socket
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{node.org_id} exited with code {proc.returncode}; see {node.directory / OUT_FILE}"
            )
        try:
            with RpcClient(sock, timeout=2) as c:
                status: dict[str, Any] = c.status()
                return status
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{node.org_id} did not answer on {sock} within {timeout:.0f}s ({last})")


def stop(node: LocalNode, timeout: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL if it does not exit in time. True if it was running."""
    pid = node.pid()
    if pid is None:
        with contextlib.suppress(OSError):
            node.pid_file.unlink()
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        node.pid_file.unlink()
    return True


def net_up(
    directory: Path, progress: Callable[[str], None] = lambda s: None, timeout: float = 60.0
) -> list[dict[str, Any]]:
    nodes = local_nodes(directory)
    procs: dict[str, subprocess.Popen[bytes] | None] = {}
    for n in nodes:
        if n.pid() is not None:
            progress(f"{n.org_id} already running (pid {n.pid()})")
            procs[n.org_id] = None
            continue
        procs[n.org_id] = spawn(n)
        progress(f"started {n.org_id} (pid {n.pid()})")
    statuses = []
    for n in nodes:
        st = wait_ready(n, timeout, procs[n.org_id])
        progress(f"{n.org_id} ready at height {st['height']}")
        statuses.append(st)
    return statuses


def net_down(directory: Path, progress: Callable[[str], None] = lambda s: None) -> int:
    stopped = 0
    for n in local_nodes(directory):
        if stop(n):
            stopped += 1
            progress(f"stopped {n.org_id}")
    return stopped


def pid_alive(pid: int) -> bool:
    """Whether process pid runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
