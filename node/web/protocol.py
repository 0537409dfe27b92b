"""HTTP/1.1 on one connection, with h11: reading a request into a ``Request``,
routing it, writing a ``Response`` back — no sockets, no policy (those are
node/web/http.py's).

Everything a client sends is untrusted: a request that h11 refuses, a target
that is neither origin-form (``/path?query``) nor absolute-form
(``http://host/path``), a query with too many fields, headers or a body over
their limits all raise ``HttpError`` with a 4xx status, never anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import h11
import trio

MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024
MAX_QUERY_FIELDS = 64
SEND_CHUNK = 64 * 1024  # a send timeout applies to each part of this size

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


class ByteStream(Protocol):
    """What a connection needs of its socket (trio.SocketStream, or a test's fake)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...

    async def send_all(self, data: bytes) -> None: ...


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    client: str = ""  # the peer's IP address
    route: str = ""  # the pattern that matched (what logs name instead of the path)
    # Set by the server: gives the request's work slot to others while the
    # handler waits on consensus or the network (``async with req.waiting():``).
    waiting: Callable[[], AbstractAsyncContextManager[None]] = _no_slot
    # Set by the server: a pause between slices of a long render (pays for the
    # work done so far out of the web's share of the event loop).
    checkpoint: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint

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
    # Called once the response is done with, sent or not (frees what the
    # handler reserved for the stream).
    release: Callable[[], None] | None = None


def json_response(
    value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    return Response(status, json.dumps(value).encode(), "application/json", headers or [])


def error_response(status: int, message: str, **extra: str) -> Response:
    return json_response({"error": message, **extra}, status)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        rx = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def deco(fn: Handler) -> Handler:
            self.routes.append((method, pattern, rx, fn))
            return fn

        return deco

    async def __call__(self, req: Request) -> Response:
        allowed = False
        for method, pattern, rx, fn in self.routes:
            m = rx.match(req.path)
            if m is None:
                continue
            if method != req.method and not (method == "GET" and req.method == "HEAD"):
                allowed = True
                continue
            req.route = pattern
            req.params = {k: unquote(v) for k, v in m.groupdict().items()}
            return await fn(req)
        if allowed:
            raise HttpError(405, f"{req.method} is not allowed on {req.path}")
        raise HttpError(404, f"nothing at {req.path}")


def int_param(query: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter, clamped to [lo, hi]; 400 if it is not one."""
    v = query.get(name)
    if v is None:
        return default
    try:
        if not v.isascii():  # int() takes other scripts' digits too
            raise ValueError(v)
        n = int(v)
    except ValueError:
        raise HttpError(400, f"{name} must be a number") from None
    return max(lo, min(hi, n))


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target in origin-form or absolute-form.

    Parsed by hand rather than with urllib's ``urlsplit``, which raises on
    brackets (``//[``) and reads ``//host/path`` as a network location."""
    if target.startswith("/"):
        rest = target
    else:
        scheme, sep, after = target.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise HttpError(400, "the request target is not a path or an http URL")
        cut = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
        rest = after[cut:]
        if not rest.startswith("/"):
            rest = "/" + rest
    rest = rest.partition("#")[0]  # (clients do not send fragments; ignore one)
    path, _, query = rest.partition("?")
    return path, query


def parse_query(query: str) -> dict[str, str]:
    try:
        parsed = parse_qs(query, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise HttpError(400, f"a query has at most {MAX_QUERY_FIELDS} fields") from None
    return {k: v[0] for k, v in parsed.items()}


def to_request(event: h11.Request, body: bytes, client: str) -> Request:
    target = event.target.decode("latin-1")
    path, query = split_target(target)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    return Request(
        event.method.decode("latin-1"), path, parse_query(query), headers, body, client=client
    )


async def read_request(conn: h11.Connection, stream: ByteStream, client: str) -> Request | None:
    """The next request on the connection, or None once the client has closed it."""
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
                conn.receive_data(bytes(data))
            except h11.RemoteProtocolError as exc:
                raise HttpError(400, f"malformed request: {exc}") from None
            if not data and req is None:
                return None
            continue
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
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
            if req is None:
                raise HttpError(400, "malformed request: a body without a request")
            return to_request(req, bytes(body), client)


async def _cancel_at_eof(stream: ByteStream, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once the client closes its side (or sends more than a
    request's worth while it should only be listening)."""
    taken = 0
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while taken <= MAX_BODY:
            data = await stream.receive_some(65536)
            if not data:
                break
            taken += len(data)
    scope.cancel()


async def send_response(
    conn: h11.Connection,
    stream: ByteStream,
    resp: Response,
    head: bool,
    timeout_s: float,
    close: bool = False,
) -> None:
    """Write the response; each part of it must leave within ``timeout_s``
    (trio.TooSlowError otherwise). ``close`` asks the client to end the
    connection after this response."""

    async def put(data: bytes) -> None:
        for i in range(0, len(data), SEND_CHUNK):
            with trio.fail_after(timeout_s):
                await stream.send_all(data[i : i + SEND_CHUNK])

    headers = [
        (b"content-type", resp.content_type.encode()),
        *SECURITY_HEADERS,
        *[(k.encode(), v.encode()) for k, v in resp.headers],
    ]
    if resp.stream is None:
        headers.append((b"content-length", str(len(resp.body)).encode()))
        if close:
            headers.append((b"connection", b"close"))
    else:
        headers += [(b"cache-control", b"no-store"), (b"connection", b"close")]
    try:
        await put(conn.send(h11.Response(status_code=resp.status, headers=headers)) or b"")
        if resp.stream is not None:
            gone: Exception | None = None  # raised as itself, not in an exception group
            async with trio.open_nursery() as nursery:
                # a client that leaves ends its stream at once, not at the next write
                nursery.start_soon(_cancel_at_eof, stream, nursery.cancel_scope)
                try:
                    async with aclosing(resp.stream()) as chunks:  # type: ignore[type-var]
                        async for chunk in chunks:
                            await put(conn.send(h11.Data(data=chunk)) or b"")
                    await put(conn.send(h11.EndOfMessage()) or b"")
                except (
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    trio.TooSlowError,
                ) as exc:
                    gone = exc
                nursery.cancel_scope.cancel()
            if gone is not None:
                raise gone
            return
        if resp.body and not head:
            await put(conn.send(h11.Data(data=resp.body)) or b"")
        await put(conn.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        return
