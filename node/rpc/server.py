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
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from medchain.contracts.app import ChaincodeError
from medchain.node.mempool.pool import REJECT_BUSY, PoolReject
from medchain.node.rpc.events import EventFilter, Subscription
from medchain.node.rpc.jsonval import JsonValueError, from_json, to_json

log = logging.getLogger("medchain.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
BUSY = -32001
REJECTED = -32002
NOT_FOUND = -32003
QUERY_FAILED = -32004
STORAGE_DAMAGED = -32010  # the node read damaged data (its operator runs node verify)
STORAGE_FAILED = -32011  # the node could not write to its disk and is stopping

MAX_LINE = 1024 * 1024
MAX_BATCH = 1000
MAX_SUN_PATH = 107
# Connections the kernel queues for accept (it caps this at net.core.somaxconn):
# enough for hundreds of clients connecting at once; a client finding it full
# retries (client/rpc.py).
BACKLOG = 1024
# accept(2) errors that mean "out of descriptors or memory for now": wait, then retry.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S = 0.1


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


Handler = Callable[["Connection", dict[str, Any]], Awaitable[Any]]
# Maps an exception a handler raised to the RPC error the caller should see, or
# None for the generic rules (invalid params, internal error). The node uses it
# for its own exception types, so they get codes of their own.
ErrorTranslator = Callable[[Exception], "RpcError | None"]


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class Connection:
    def __init__(self, server: RpcServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.send_lock = trio.Lock()
        self.subscriptions: dict[str, Subscription] = {}
        self.nursery: trio.Nursery | None = None
        self._next_sub = 0

    async def run(self) -> None:
        buf = bytearray()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                buf += data
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if line.strip():
                        await self._process_line(line)
                if len(buf) > self.server.max_line:
                    await self.send(
                        _error(
                            None,
                            INVALID_REQUEST,
                            f"request line exceeds {self.server.max_line} bytes",
                        )
                    )
                    break
            nursery.cancel_scope.cancel()

    async def send(self, obj: Any) -> None:
        await self._send_line(json.dumps(obj, separators=(",", ":")).encode())

    async def _send_line(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data + b"\n")

    def _encode(self, response: dict[str, Any], method: str) -> bytes:
        """A response as JSON; a result that is not JSON is the handler's bug, so an
        internal error of that call, not of the connection."""
        try:
            return json.dumps(response, separators=(",", ":")).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            err = _internal_error(self.server.incident(f"RPC {method} reply", exc))
            return json.dumps(_error(response.get("id"), err.code, str(err), err.data)).encode()

    async def _process_line(self, line: bytes) -> None:
        if len(line) > self.server.max_line:
            await self.send(
                _error(None, INVALID_REQUEST, f"request line exceeds {self.server.max_line} bytes")
            )
            return
        try:
            req = json.loads(line, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            await self.send(_error(None, PARSE_ERROR, f"parse error: {exc}"))
            return
        if isinstance(req, list):
            if not req or len(req) > MAX_BATCH:
                await self.send(
                    _error(None, INVALID_REQUEST, f"a batch holds 1 to {MAX_BATCH} requests")
                )
                return
            parts = [await self._dispatch_encoded(x) for x in req]
            encoded = [p for p in parts if p is not None]
            if encoded:
                await self._send_line(b"[" + b",".join(encoded) + b"]")
            return
        one = await self._dispatch_encoded(req)
        if one is not None:
            await self._send_line(one)

    async def _dispatch_encoded(self, req: Any) -> bytes | None:
        response = await self._dispatch(req)
        if response is None:
            return None
        method = req.get("method") if isinstance(req, dict) else None
        return self._encode(response, method if isinstance(method, str) else "?")

    async def _dispatch(self, req: Any) -> dict[str, Any] | None:
        if (
            not isinstance(req, dict)
            or req.get("jsonrpc") != "2.0"
            or not isinstance(req.get("method"), str)
        ):
            rid = req.get("id") if isinstance(req, dict) and _valid_id(req.get("id")) else None
            return _error(rid, INVALID_REQUEST, "not a JSON-RPC 2.0 request object")
        is_notification = "id" not in req
        rid = req.get("id")
        if not is_notification and not _valid_id(rid):
            return _error(None, INVALID_REQUEST, "id must be a string, an integer or null")
        handler = self.server.methods.get(req["method"])
        if handler is None:
            return (
                None
                if is_notification
                else _error(rid, METHOD_NOT_FOUND, f"method not found: {req['method']}")
            )
        params = req.get("params", {})
        if isinstance(params, list):
            params = {"args": params}
        if not isinstance(params, dict):
            return (
                None if is_notification else _error(rid, INVALID_PARAMS, "params must be an object")
            )
        try:
            result = await handler(self, params)
        except Exception as exc:
            err = self._call_error(req["method"], exc)
            return None if is_notification else _error(rid, err.code, str(err), err.data)
        return None if is_notification else {"jsonrpc": "2.0", "id": rid, "result": result}

    def _call_error(self, method: str, exc: Exception) -> RpcError:
        """The error a handler's exception becomes: its own, the node's translation,
        invalid params, or else an internal error with an incident id."""
        if isinstance(exc, RpcError):
            return exc
        try:
            translated = self.server.translate(exc)
        except Exception as bad:  # a broken translator must not turn into a crash
            translated = None
            self.server.incident(f"RPC {method} error translation", bad)
        if translated is not None:
            return translated
        if isinstance(exc, KeyError | TypeError | ValueError | JsonValueError):
            return RpcError(INVALID_PARAMS, f"invalid params: {exc}")
        return _internal_error(self.server.incident(f"RPC {method}", exc))

    # -- subscriptions ------------------------------------------------------------

    def add_subscription(self, sub: Subscription) -> str:
        self._next_sub += 1
        sid = f"s{self._next_sub}"
        self.subscriptions[sid] = sub
        assert self.nursery is not None
        self.nursery.start_soon(self._pump, sid, sub)
        return sid

    async def _pump(self, sid: str, sub: Subscription) -> None:
        async for note in sub.receive:
            await self.send(
                {
                    "jsonrpc": "2.0",
                    "method": "events.notify",
                    "params": {"subscription": sid, "event": to_json(note)},
                }
            )
        if sub.overflowed:
            await self.send(
                {
                    "jsonrpc": "2.0",
                    "method": "events.dropped",
                    "params": {"subscription": sid, "reason": "subscriber too slow"},
                }
            )

    def remove_subscription(self, sid: str) -> bool:
        sub = self.subscriptions.pop(sid, None)
        if sub is None:
            return False
        sub.close()
        return True

    def close_subscriptions(self) -> None:
        for sid in list(self.subscriptions):
            self.remove_subscription(sid)


def _valid_id(v: Any) -> bool:
    return v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def _internal_error(iid: str) -> RpcError:
    return RpcError(INTERNAL_ERROR, f"internal error (incident {iid})", {"incident": iid})


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


# -- parameter helpers used by the method handlers ------------------------------


def param_b64(params: dict[str, Any], name: str) -> bytes:
    v = params.get(name)
    if not isinstance(v, str):
        raise RpcError(INVALID_PARAMS, f"{name} must be a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise RpcError(INVALID_PARAMS, f"{name} is not valid base64") from None


def param_hex(params: dict[str, Any], name: str, size: int | None = None) -> bytes:
    v = params.get(name)
    try:
        b = bytes.fromhex(v) if isinstance(v, str) else None
    except ValueError:
        b = None
    if b is None or (size is not None and len(b) != size):
        raise RpcError(INVALID_PARAMS, f"{name} must be {size or 'some'} bytes of hex")
    return b


def param_int(params: dict[str, Any], name: str, default: int | None = None, lo: int = 0) -> int:
    v = params.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise RpcError(INVALID_PARAMS, f"{name} must be an integer >= {lo}")
    return v


def param_str(params: dict[str, Any], name: str) -> str:
    v = params.get(name)
    if not isinstance(v, str) or not v:
        raise RpcError(INVALID_PARAMS, f"{name} must be a non-empty string")
    return v


def pool_error(exc: PoolReject) -> RpcError:
    code = BUSY if exc.code == REJECT_BUSY else REJECTED
    return RpcError(code, str(exc), {"reason": exc.code})


def query_error(exc: ChaincodeError) -> RpcError:
    return RpcError(QUERY_FAILED, str(exc))


def event_filter(params: dict[str, Any]) -> EventFilter:
    kinds = params.get("kinds", ["block", "event"])
    if not isinstance(kinds, list) or not set(kinds) <= {"block", "event"} or not kinds:
        raise RpcError(INVALID_PARAMS, 'kinds must be a non-empty subset of ["block", "event"]')
    attrs = params.get("attrs", {})
    if not isinstance(attrs, dict):
        raise RpcError(INVALID_PARAMS, "attrs must be an object")
    contract, name = params.get("contract"), params.get("name")
    if not all(x is None or isinstance(x, str) for x in (contract, name)):
        raise RpcError(INVALID_PARAMS, "contract and name must be strings")
    return EventFilter(frozenset(kinds), contract, name, from_json(attrs))
