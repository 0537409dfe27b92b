"""A small HTTP/1.1 server for the node's web UI: h11 on trio, no framework.

Nothing a client sends can stop it. A malformed request gets 400 (or 413,
431) and its connection is closed; a fault of our own while handling one
gets 500 with a short incident id, also in one error-level log line (the
exception's type and where it was raised; no traceback, no request data);
the connection ends, the server goes on. The accept loop runs under a
supervisor: a fault there is logged the same way and the listener reopened.

Bounded everywhere (node/web/limits.py): header block 16 KiB, body 64 KiB,
time to send a request, keep-alive idle time, requests per connection,
connections in all and per client IP (over a cap: 503), time for the client
to take each part of a response (a client that never reads is dropped), and
requests worked on at once and their share of the event loop
(node/web/budget.py). Responses carry a strict Content-Security-Policy:
the pages load nothing from anywhere but this server.
"""

from __future__ import annotations

import errno
import json
import logging
import secrets
import socket
import traceback
from contextlib import suppress
from pathlib import Path
from typing import Any

import h11
import trio

from medchain.node.web.budget import WorkBudget, WorkSlot
from medchain.node.web.limits import WebLimits
from medchain.node.web.protocol import (
    MAX_HEADER,
    SECURITY_HEADERS,
    ByteStream,
    Handler,
    HttpError,
    Request,
    Response,
    Router,
    error_response,
    json_response,
    read_request,
    send_response,
)

__all__ = [
    "HttpError",
    "HttpServer",
    "Request",
    "Response",
    "Router",
    "error_response",
    "json_response",
]

log = logging.getLogger("medchain.http")

SEND_BUFFER = 256 * 1024  # kernel send buffer per connection (no autotuning to megabytes)
RESTART_DELAY_S = 0.5
# Closing: our side first, then what the client still sends is read and dropped
# for a moment (closing with unread input resets the connection, and the
# client may lose the answer it has not read yet).
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024
MAX_LINGERING = 256  # beyond, connections close at once (each one holds a descriptor)
REOPEN_MAX_DELAY_S = 30.0
# accept() failures that mean "out of resources for now": wait, then go on
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class HttpServer:
    def __init__(self, host: str, port: int, app: Handler, limits: WebLimits | None = None) -> None:
        self.host = host
        self.port = port
        self.app = app
        self.limits = limits or WebLimits()
        self.work = trio.CapacityLimiter(self.limits.max_handlers)
        self.budget = WorkBudget(self.limits.work_share)
        self.connections = 0
        self.per_client: dict[str, int] = {}
        self.refused = 0  # connections turned away at a cap
        self.lingering = 0  # connections being closed
        self.incidents = 0
        self.bound_port = 0

    # -- listening, supervised ---------------------------------------------------------

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = list(await trio.open_tcp_listeners(self.port, host=self.host))
        self.bound_port = listeners[0].socket.getsockname()[1]
        log.info(
            "web UI on http://%s:%d/",
            self.host,
            self.bound_port,
            extra={"event": "http-ready", "port": self.bound_port},
        )
        task_status.started(self.bound_port)
        delay = RESTART_DELAY_S
        async with trio.open_nursery() as connections:
            while True:
                started = trio.current_time()
                try:
                    async with trio.open_nursery() as accepting:
                        for listener in listeners:
                            accepting.start_soon(self._accept, listener, connections)
                except Exception as exc:
                    self.incident(exc, "the web server's accept loop")
                    # a fault that keeps coming back is retried less and less often
                    quiet = trio.current_time() - started > REOPEN_MAX_DELAY_S
                    delay = RESTART_DELAY_S if quiet else min(2 * delay, REOPEN_MAX_DELAY_S)
                    await trio.sleep(delay)
                    listeners = await self._reopen(listeners)

    async def _accept(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                log.warning(
                    "web server cannot accept a connection: %s",
                    exc.strerror,
                    extra={"event": "http-accept-capacity"},
                )
                await trio.sleep(0.1)
                continue
            connections.start_soon(self._connection, stream)

    async def _reopen(self, old: list[trio.SocketListener]) -> list[trio.SocketListener]:
        """The listeners again, after a fault: reused if still open, else bound anew."""
        if all(lst.socket.fileno() != -1 for lst in old):
            return old
        for lst in old:
            with suppress(Exception):
                await lst.aclose()
        delay = RESTART_DELAY_S
        while True:
            try:
                return list(await trio.open_tcp_listeners(self.bound_port, host=self.host))
            except OSError as exc:
                log.error(
                    "web server cannot listen on port %d again: %s; retrying",
                    self.bound_port,
                    exc.strerror,
                    extra={"event": "http-reopen-failed"},
                )
                await trio.sleep(delay)
                delay = min(2 * delay, REOPEN_MAX_DELAY_S)

    async def _close(self, stream: trio.SocketStream) -> None:
        if self.lingering < MAX_LINGERING:
            self.lingering += 1
            try:
                with suppress(Exception), trio.move_on_after(LINGER_S):
                    await stream.send_eof()
                    left = LINGER_BYTES
                    while left > 0:
                        data = await stream.receive_some(65536)
                        if not data:
                            break
                        left -= len(data)
            finally:
                self.lingering -= 1
        with suppress(Exception), trio.move_on_after(1):
            await stream.aclose()

    def incident(self, exc: BaseException, where: str) -> str:
        """Log an unexpected fault in one line at error level; its id, for the client."""
        ident = secrets.token_hex(4)
        self.incidents += 1
        leaf = _first_leaf(exc)
        frames = traceback.extract_tb(leaf.__traceback__)
        at = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        # The type and place only: an exception's message may carry request data.
        log.error(
            "web server fault in %s: %s at %s (incident %s)",
            where,
            type(leaf).__name__,
            at,
            ident,
            extra={"event": "http-incident", "incident": ident},
        )
        return ident

    # -- one connection ----------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        client = _peer(stream)
        lim = self.limits
        if (
            self.connections >= lim.max_connections
            or self.per_client.get(client, 0) >= lim.max_connections_per_client
        ):
            self.refused += 1
            with suppress(Exception):
                await _send_simple(stream, 503, "too many connections; try again shortly")
            await self._close(stream)
            return
        self.connections += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        try:
            with suppress(OSError):
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            await self.serve_stream(stream, client)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass  # the client went away, or did not take our answer in time
        except Exception as exc:
            self.incident(exc, "a web connection")
        finally:
            self.connections -= 1
            left = self.per_client.pop(client, 1) - 1
            if left > 0:
                self.per_client[client] = left
            await self._close(stream)

    async def serve_stream(self, stream: ByteStream, client: str) -> None:
        """Serve one connection's requests on any byte stream (a socket; tests
        and the fuzzer drive it without one). Raises only the stream's errors
        and trio.TooSlowError (the client did not take a response in time)."""
        lim = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        for n in range(lim.max_requests_per_connection):
            try:
                with trio.fail_after(lim.request_timeout_s if n == 0 else lim.idle_timeout_s):
                    req = await read_request(conn, stream, client)
            except trio.TooSlowError:
                return
            except HttpError as exc:
                log.debug("bad HTTP request: %s", exc.message, extra={"event": "http-bad-request"})
                await _send_simple(stream, exc.status, exc.message)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise
            except Exception as exc:  # a fault in our own reading of the request
                ident = self.incident(exc, "reading a request")
                await _send_simple(stream, 500, "internal error", incident=ident)
                return
            if req is None:
                return
            last = n == lim.max_requests_per_connection - 1
            resp = await self._handle(req)
            try:
                await send_response(
                    conn, stream, resp, req.method == "HEAD", lim.send_timeout_s, close=last
                )
            finally:
                if resp.release is not None:
                    resp.release()
            if conn.our_state is h11.MUST_CLOSE or resp.stream is not None or last:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _handle(self, req: Request) -> Response:
        slot = WorkSlot(self.work, self.budget)
        req.waiting = slot.released
        req.checkpoint = slot.checkpoint
        try:
            async with slot:
                return await self.app(req)
        except HttpError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:
            ident = self.incident(exc, f"{req.method} {req.route or '(no route)'}")
            return error_response(500, "internal error", incident=ident)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _peer(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except (OSError, IndexError, TypeError):
        return "?"


_REASONS = {400: "Bad Request", 413: "Content Too Large", 431: "Request Header Fields Too Large"}


async def _send_simple(stream: ByteStream, status: int, message: str, **extra: str) -> None:
    """A whole error response in one write, outside h11's state machine (which
    may have refused the request), then the connection closes."""
    body = json.dumps({"error": message, **extra}).encode()
    reason = _REASONS.get(status, "Error")
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json"]
    head += [f"{k.decode()}: {v.decode()}" for k, v in SECURITY_HEADERS]
    head += [f"content-length: {len(body)}", "connection: close", "", ""]
    with trio.move_on_after(2):
        await stream.send_all("\r\n".join(head).encode() + body)
