"""Connecting to a node's RPC socket, waiting out a busy or starting node.

A Unix socket's connect either succeeds at once or fails at once: EAGAIN when
the node's listen backlog is full (it is there, just busy: worth waiting for),
ECONNREFUSED when the socket file exists but nothing listens (a node that died
without removing it, or one between bind and listen: worth a short wait).
Both clients in ``client.rpc`` connect through here; what was found when no
connection comes is a ``NodeUnreachable`` (``NoNode`` or ``NodeBusy``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import socket
import time

BUSY_WAIT_S = 10.0  # how long a connect waits for a busy node to accept
REFUSED_WAIT_S = 1.0  # how long a socket file with no listener is given to come alive


class NodeUnreachable(ConnectionError):
    """No connection to the node's RPC socket; ``why`` says what was found there."""

    def __init__(self, path: str, err: int, why: str) -> None:
        super().__init__(err, why)
        self.path = path
        self.why = why

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


class NoNode(NodeUnreachable):
    """Nothing serves the socket: no such file, or a file nobody listens on."""


class NodeBusy(NodeUnreachable):
    """A node serves the socket but accepted no connection in time (backlog full)."""


class _Connector:
    """One connect to ``path`` with retries: what to try next, and when to give up."""

    def __init__(self, path: str, busy_wait_s: float, refused_wait_s: float) -> None:
        self.path = path
        self.start = time.monotonic()
        self.busy_wait_s = busy_wait_s
        self.refused_wait_s = refused_wait_s
        self.delay = 0.005

    def attempt(self) -> socket.socket | float:
        """A connected (non-blocking) socket, or how long to wait before the next try.
        Raises :class:`NodeUnreachable` (or the OSError) once there is no point in waiting."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.path)
            return sock
        except OSError as exc:
            sock.close()
            return self._retry_after(exc)

    def _retry_after(self, exc: OSError) -> float:
        waited = time.monotonic() - self.start
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            if waited >= self.busy_wait_s:
                raise NodeBusy(
                    self.path,
                    exc.errno,
                    f"the node is busy: it accepted no connection within {self.busy_wait_s:g} s "
                    "(try again shortly)",
                ) from None
            return self._backoff(self.busy_wait_s - waited)
        if exc.errno == errno.ENOENT:
            raise NoNode(
                self.path, exc.errno, "no node at this socket (no such file; is it running?)"
            ) from None
        if exc.errno == errno.ECONNREFUSED:
            if not os.path.exists(self.path):
                raise NoNode(
                    self.path, exc.errno, "no node at this socket (no such file; is it running?)"
                ) from None
            if waited >= self.refused_wait_s:
                raise NoNode(
                    self.path,
                    exc.errno,
                    "no node at this socket (the file exists but nothing listens: "
                    "the node stopped or crashed)",
                ) from None
            return self._backoff(self.refused_wait_s - waited)
        raise exc

    def _backoff(self, left: float) -> float:
        # Exponential with jitter, so hundreds of clients turned away together do not
        # all come back in the same instant.
        wait = min(self.delay * (0.5 + random.random()), max(left, 0.0) + 0.001)
        self.delay = min(self.delay * 2, 0.2)
        return wait


def connect_unix(
    path: str, busy_wait_s: float = BUSY_WAIT_S, refused_wait_s: float = REFUSED_WAIT_S
) -> socket.socket:
    """A connected socket to the node at ``path``, waiting out a busy or starting node."""
    c = _Connector(path, busy_wait_s, refused_wait_s)
    while True:
        got = c.attempt()
        if isinstance(got, socket.socket):
            return got
        time.sleep(got)


async def connect_unix_async(
    path: str, busy_wait_s: float = BUSY_WAIT_S, refused_wait_s: float = REFUSED_WAIT_S
) -> socket.socket:
    """:func:`connect_unix` for asyncio: waits without blocking the event loop."""
    c = _Connector(path, busy_wait_s, refused_wait_s)
    while True:
        got = c.attempt()
        if isinstance(got, socket.socket):
            return got
        await asyncio.sleep(got)
