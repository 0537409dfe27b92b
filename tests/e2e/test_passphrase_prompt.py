"""An encrypted key on a terminal: the CLI asks for the passphrase (hidden), a
right one signs, a wrong one is one line. Run on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from medchain.storage.crypto import Signer
from medchain.storage.keyfile import PASSPHRASE_ENV, save_key

pytestmark = pytest.mark.e2e
SECRET = "correct horse battery"


def on_terminal(args: list[str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``medchain ARGS`` on a new pty, answer the prompt, return (status, all output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
        os.execve(sys.executable, [sys.executable, "-m", "medchain.cli", *args], env)
    out, answered, end = b"", False, time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not answered and b"passphrase for" in out:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_the_cli_asks_for_a_passphrase_and_does_not_echo_it(tmp_path: Path) -> None:
    key = tmp_path / "sealed.key"
    save_key(key, Signer.generate(), SECRET, opslimit=1, memlimit=8192)
    sock = str(tmp_path / "no-node.sock")  # the key is opened before a node is asked
    args = [
        "tx",
        "send",
        "--socket",
        sock,
        "--contract",
        "kv",
        "--method",
        "put",
        "--key",
        str(key),
    ]
    code, out = on_terminal(args, SECRET)
    assert "passphrase for" in out and SECRET not in out, out
    assert code == 4 and "cannot reach the node" in out, out  # past the key: the node is next
    code, out = on_terminal(args, "wrong")
    assert code == 1 and "wrong passphrase" in out and "Traceback" not in out, out
