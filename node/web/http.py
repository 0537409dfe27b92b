"""A small HTTP/1.1 server for the node's web UI: h11 on trio, no framework.

Bounded everywhere: header block 16 KiB, request body 64 KiB, 10 s to send a
request, keep-alive idle 30 s, at most ``max_connections`` at once (further
connections get 503). A malformed request gets 400 and the connection is
closed; a handler's unexpected error is logged and answered with 500 — the
node keeps running. Responses carry a strict Content-Security-Policy: the
pages load nothing from anywhere but this server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

log = logging.getLogger("medchain.http")

MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024
REQUEST_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise HttpError(400, "the request body is not valid JSON") from None

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A streaming response (server-sent events): chunks until the client leaves.
    stream: Callable[[], AsyncIterator[bytes]] | None = None


def json_response(
    value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, json.dumps(value).encode(), "application/json", headers or [])


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def deco(fn: Handler) -> Handler:
            self.routes.append((method, rx, fn))
            return fn

        return deco

    async def __call__(self, req: Request) -> Response:
        allowed = False
        for method, rx, fn in self.routes:
            m = rx.match(req.path)
            if m is None:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed = True
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items()}
            return await fn(req)
        if allowed:
            raise HttpError(405, f"{req.method} is not allowed on {req.path}")
        raise HttpError(404, f"nothing at {req.path}")


class HttpServer:
    def __init__(self, host: str, port: int, app: Handler, max_connections: int = 64) -> None:
        self.host = host
        self.port = port
        self.app = app
        self.max_connections = max_connections
        self.connections = 0
        self.bound_port = 0

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.bound_port = listeners[0].socket.getsockname()[1]
        log.info(
            "web UI on http://%s:%d/",
            self.host,
            self.bound_port,
            extra={"event": "http-ready", "port": self.bound_port},
        )
        task_status.started(self.bound_port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            if self.connections > self.max_connections:
                await _send_simple(stream, 503, "too many connections")
                return
            await self._serve_connection(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.connections -= 1
            with trio.move_on_after(1):
                await stream.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        first = True
        while True:
            try:
                with trio.fail_after(IDLE_TIMEOUT_S if not first else REQUEST_TIMEOUT_S):
                    req = await _read_request(conn, stream)
            except trio.TooSlowError:
                return
            except HttpError as exc:
                log.info("bad HTTP request: %s", exc.message, extra={"event": "http-bad-request"})
                await _send(conn, stream, _error(exc.status, exc.message), head=False)
                return
            if req is None:
                return
            first = False
            try:
                resp = await self.app(req)
            except HttpError as exc:
                resp = _error(exc.status, exc.message)
            except Exception:
                log.exception("web handler failed on %s %s", req.method, req.path)
                resp = _error(500, "internal error (logged)")
            await _send(conn, stream, resp, head=req.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or resp.stream is not None:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> Request | None:
    req: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(exc.error_status_hint, f"malformed request: {exc}") from None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            try:
                conn.receive_data(data)
            except h11.RemoteProtocolError as exc:
                raise HttpError(400, f"malformed request: {exc}") from None
            if not data and req is None:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, h11.Request):
            size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
            if size > MAX_HEADER:
                raise HttpError(431, f"request headers over {MAX_HEADER} bytes")
            req = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise HttpError(413, f"request body over {MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert req is not None
            target = req.target.decode("latin-1")
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in req.headers}
            return Request(req.method.decode("ascii"), parts.path, query, headers, bytes(body))


async def _send(
    conn: h11.Connection, stream: trio.SocketStream, resp: Response, head: bool
) -> None:
    headers = [
        (b"content-type", resp.content_type.encode()),
        *SECURITY_HEADERS,
        *[(k.encode(), v.encode()) for k, v in resp.headers],
    ]
    if resp.stream is None:
        headers.append((b"content-length", str(len(resp.body)).encode()))
    else:
        headers += [(b"cache-control", b"no-store"), (b"connection", b"close")]
    try:
        await stream.send_all(conn.send(h11.Response(status_code=resp.status, headers=headers)))
        if resp.stream is not None:
            async with aclosing(resp.stream()) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    await stream.send_all(conn.send(h11.Data(data=chunk)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        if resp.body and not head:
            await stream.send_all(conn.send(h11.Data(data=resp.body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
    except h11.LocalProtocolError:
        return


async def _send_simple(stream: trio.SocketStream, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    with trio.move_on_after(2):
        await stream.send_all(head + body)
