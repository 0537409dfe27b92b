"""JSON-RPC 2.0 on a Unix socket: one JSON object (or batch array) per line.

Member systems (a hospital's HIS, a patient app, an insurer) talk to their
own node here. The socket is created with mode 0600. Bad JSON, unknown
methods, bad params, oversized lines and abrupt disconnects get the standard
JSON-RPC errors (or just a closed connection) and never disturb the node.

Supervision: a handler's unexpected exception ends only its own call, as
-32603 with a short incident id that the node logs in one error-level line
(no traceback); a connection's failure ends only that connection; and the
accept loop outlives any error of accept itself. Only cancellation (shutdown)
stops the server.

This module holds ``RpcServer``: the socket, the accept loop, supervision and
the incident log. A connection's protocol is node.rpc.connection; the error
codes are node.rpc.errors and the handlers' param helpers node.rpc.params.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from medchain.node.rpc.connection import Connection, Handler
from medchain.node.rpc.errors import ErrorTranslator, RpcError

log = logging.getLogger("medchain.rpc")

MAX_LINE = 1024 * 1024
MAX_SUN_PATH = 107
# Connections the kernel queues for accept (it caps this at net.core.somaxconn):
# enough for hundreds of clients connecting at once; a client finding it full
# retries (client/connect.py).
BACKLOG = 1024
# accept(2) errors that mean "out of descriptors or memory for now": wait, then retry.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S = 0.1


def _no_translation(exc: Exception) -> RpcError | None:
    return None


class RpcServer:
    """Dispatches methods; the node registers them (see node/rpc/chain_api.py)."""

    def __init__(
        self,
        path: Path,
        max_line: int = MAX_LINE,
        backlog: int = BACKLOG,
        translate: ErrorTranslator = _no_translation,
    ) -> None:
        self.path = Path(path)
        self.max_line = max_line
        self.backlog = backlog
        self.translate = translate
        self.methods: dict[str, Handler] = {}
        self.connections = 0
        self.incidents = 0

    def method(self, name: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.methods[name] = fn
            return fn

        return register

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        sock = await self._bind()
        listener = trio.SocketListener(sock)
        log.info("RPC listening on %s", self.path, extra={"event": "rpc-listen"})
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                await self._accept_loop(listener, nursery)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(Exception):
                await listener.aclose()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept forever: an accept error is logged (once per run of them) and waited
        out, never the end of the server; each connection runs supervised."""
        failing = 0
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                raise
            except Exception as exc:
                if failing == 0:
                    self._accept_failed(exc)
                failing += 1
                await trio.sleep(ACCEPT_RETRY_S * min(failing, 10))
                continue
            if failing:
                log.warning(
                    "RPC accepting again after %d failed accepts",
                    failing,
                    extra={"event": "rpc-accept-recovered"},
                )
                failing = 0
            nursery.start_soon(self._supervised, stream)

    def _accept_failed(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno in ACCEPT_CAPACITY_ERRNOS:
            log.error(
                "RPC accept failed: %s; retrying",
                os.strerror(exc.errno or 0),
                extra={"event": "rpc-accept-failed"},
            )
        else:
            self.incident("RPC accept", exc)

    async def _supervised(self, stream: trio.SocketStream) -> None:
        # The last line of defence: nothing a connection does reaches the accept loop.
        try:
            await self._handle_stream(stream)
        except Exception as exc:
            self.incident("RPC connection", exc)

    def incident(self, what: str, exc: BaseException) -> str:
        """Log an unexpected exception in one error-level line and return its id.

        The line names the exception's type and where it was raised, not its
        message: messages can carry request data (records, pseudonyms)."""
        self.incidents += 1
        iid = secrets.token_hex(4)
        leaf = _first_leaf(exc)
        log.error(
            "%s failed: %s at %s (incident %s)",
            what,
            type(leaf).__name__,
            _raised_at(leaf),
            iid,
            extra={"event": "rpc-incident", "incident": iid},
        )
        return iid

    async def _bind(self) -> trio.socket.SocketType:
        path = str(self.path)
        if len(path.encode()) > MAX_SUN_PATH:
            raise OSError(
                errno.ENAMETOOLONG,
                f"RPC socket path is {len(path)} bytes; Unix sockets allow {MAX_SUN_PATH}: {path}",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                self.path.unlink()  # stale socket of a dead node
            else:
                raise OSError(errno.EADDRINUSE, f"another node is serving {path}")
            finally:
                probe.close()
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket file is created 0600, never wider even briefly
        try:
            await sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(self.backlog)
        return sock

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        conn = Connection(self, stream)
        self.connections += 1
        # One client's troubles never reach the server: a client that went away is
        # normal, anything else is logged; only cancellation (shutdown) propagates.
        try:
            await conn.run()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except* Exception as group:
            self.incident("RPC connection", group)
        finally:
            self.connections -= 1
            try:
                conn.close_subscriptions()
            except Exception as exc:
                self.incident("RPC connection cleanup", exc)
            with contextlib.suppress(Exception):
                await stream.aclose()


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _raised_at(exc: BaseException) -> str:
    """module:line of the innermost frame of ``exc``'s traceback."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}"
