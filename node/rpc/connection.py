"""One client connection to the RPC socket: the line protocol, dispatching a
request (or batch) to its method, and the connection's event subscriptions.

``RpcServer`` (node.rpc.server) binds, accepts and supervises; everything a
connection does with the lines it reads stands here. A request's failure is
answered on the connection and never ends it; what the server registered as
methods, its line limit, its error translation and its incident log are
reached through ``Connection.server``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from medchain.node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
)
from medchain.node.rpc.events import Subscription
from medchain.node.rpc.jsonval import JsonValueError, to_json

if TYPE_CHECKING:
    from medchain.node.rpc.server import RpcServer

MAX_BATCH = 1000

Handler = Callable[["Connection", dict[str, Any]], Awaitable[Any]]


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
