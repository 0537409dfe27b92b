"""Connecting to a node's RPC socket: a busy node is waited for, a missing one named."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchain.client.connect import NodeBusy, NoNode, connect_unix, connect_unix_async


@contextlib.contextmanager
def full_listener(path: Path) -> Iterator[socket.socket]:
    """A listening socket whose backlog is full: the next connect gets EAGAIN."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(0)
    queued: list[socket.socket] = []
    try:
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(path))
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        yield server
    finally:
        for s in queued:
            s.close()
        server.close()


def drain_later(server: socket.socket, after_s: float) -> threading.Thread:
    """Accept everything queued on ``server`` after ``after_s``, until it closes."""

    def run() -> None:
        time.sleep(after_s)
        server.settimeout(0.5)
        with contextlib.suppress(OSError):
            while True:
                server.accept()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_missing_socket_is_no_node_at_once(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(NoNode) as info:
        connect_unix(str(tmp_path / "nope.sock"))
    assert time.monotonic() - t0 < 0.5
    assert "no node at this socket" in info.value.why and "no such file" in info.value.why


def test_a_socket_file_nobody_listens_on_is_no_node_after_a_short_wait(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: what a crashed node leaves behind
    try:
        t0 = time.monotonic()
        with pytest.raises(NoNode) as info:
            connect_unix(str(path), refused_wait_s=0.3)
        waited = time.monotonic() - t0
        assert 0.25 <= waited < 2
        assert "nothing listens" in info.value.why
    finally:
        dead.close()


def test_a_busy_node_is_waited_for_and_then_reported_busy(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    with full_listener(path) as server:
        t0 = time.monotonic()
        with pytest.raises(NodeBusy) as info:
            connect_unix(str(path), busy_wait_s=0.3)
        assert 0.25 <= time.monotonic() - t0 < 2
        assert "busy" in info.value.why
        # the same node accepting again a moment later: the connect gets through
        drain_later(server, 0.2)
        sock = connect_unix(str(path), busy_wait_s=10)
        sock.close()


def test_the_async_connect_retries_too(tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    with full_listener(path) as server:

        async def main() -> None:
            with pytest.raises(NodeBusy):
                await connect_unix_async(str(path), busy_wait_s=0.2)
            drain_later(server, 0.2)
            sock = await connect_unix_async(str(path), busy_wait_s=10)
            sock.close()
            with pytest.raises(NoNode):
                await connect_unix_async(str(tmp_path / "nope.sock"))

        asyncio.run(main())
