"""Python clients for a node's RPC socket.

``RpcClient`` is synchronous (scripts, the CLI); ``AsyncRpcClient`` is for
asyncio applications (a patient app, an insurer's system). Both speak
JSON-RPC 2.0, one object per line, and raise :class:`RpcError` with the
server's code and message. Connecting (and what a missing or busy node
raises) is client.connect; signing transactions and queries with a member's
key (``TxBuilder``) is client.signing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medchain.client.connect import BUSY_WAIT_S, connect_unix, connect_unix_async
from medchain.client.signing import TxBuilder, query_params
from medchain.storage.tx import Transaction


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def _raise_for(resp: dict[str, Any]) -> Any:
    if "error" in resp:
        e = resp["error"]
        raise RpcError(e.get("code", 0), e.get("message", ""), e.get("data"))
    return resp.get("result")


class RpcClient:
    """Synchronous client. Connecting waits up to ``busy_wait_s`` for a busy node;
    a missing node raises :class:`NoNode`, one that stays busy :class:`NodeBusy`."""

    def __init__(
        self, path: Path | str, timeout: float = 30.0, busy_wait_s: float = BUSY_WAIT_S
    ) -> None:
        self.path = str(path)
        self.sock = connect_unix(self.path, min(busy_wait_s, timeout))
        self.sock.settimeout(timeout)
        self._buf = b""
        self._ids = itertools.count(1)
        self._notes: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self) -> dict[str, Any] | list[Any]:
        while b"\n" not in self._buf:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("node closed the RPC connection")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        obj: dict[str, Any] | list[Any] = json.loads(line)
        return obj

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with self._lock:
            rid = next(self._ids)
            self.sock.sendall(
                json.dumps(
                    {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
                ).encode()
                + b"\n"
            )
            while True:
                msg = self._readline()
                if isinstance(msg, dict) and msg.get("id") == rid:
                    return _raise_for(msg)
                if isinstance(msg, dict) and "method" in msg:
                    self._notes.append(msg)

    def batch(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch; results (or RpcError instances) in order."""
        with self._lock:
            ids = [next(self._ids) for _ in calls]
            req = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in zip(ids, calls, strict=True)
            ]
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            while True:
                msg = self._readline()
                if isinstance(msg, list):
                    by_id = {r.get("id"): r for r in msg}
                    out: list[Any] = []
                    for i in ids:
                        try:
                            out.append(_raise_for(by_id[i]))
                        except RpcError as exc:
                            out.append(exc)
                    return out
                if "method" in msg:
                    self._notes.append(msg)

    # -- conveniences -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("node.status")
        return result

    def submit(
        self, tx: Transaction | bytes, wait: bool = False, timeout_ms: int = 10_000
    ) -> dict[str, Any]:
        raw = tx.encode() if isinstance(tx, Transaction) else tx
        params: dict[str, Any] = {"tx": base64.b64encode(raw).decode()}
        if wait:
            params.update(wait=True, timeout_ms=timeout_ms)
        result: dict[str, Any] = self.call("tx.submit", params)
        return result

    def wait(self, tx_id: str, timeout_ms: int = 10_000) -> dict[str, Any]:
        result: dict[str, Any] = self.call("tx.wait", {"tx_id": tx_id, "timeout_ms": timeout_ms})
        return result

    def query(
        self, contract: str, method: str, args: Any = None, signer: TxBuilder | None = None
    ) -> Any:
        """A read-only chaincode call; with ``signer``, signed so chaincode knows who asks."""
        return self.call("state.query", query_params(contract, method, args, signer))

    def subscribe(self, **flt: Any) -> str:
        sid: str = self.call("events.subscribe", flt)["subscription"]
        return sid

    def notifications(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield notifications (events.notify params) as they arrive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            while self._notes:
                yield self._notes.pop(0)["params"]
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.sock.settimeout(left)
            try:
                msg = self._readline()
            except TimeoutError:
                return
            if isinstance(msg, dict) and "method" in msg:
                self._notes.append(msg)


class AsyncRpcClient:
    """asyncio client: ``async with AsyncRpcClient(path) as c: await c.call(...)``."""

    def __init__(self, path: Path | str, busy_wait_s: float = BUSY_WAIT_S) -> None:
        self.path = str(path)
        self.busy_wait_s = busy_wait_s
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncRpcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        sock = await connect_unix_async(self.path, self.busy_wait_s)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=8 << 20)
        self._reader_task = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                    await self.notifications.put(msg["params"])
                elif isinstance(msg, dict):
                    fut = self._waiting.pop(msg.get("id"), None)  # type: ignore[arg-type]
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("node closed the RPC connection"))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self._writer.write(
            json.dumps(
                {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
            ).encode()
            + b"\n"
        )
        await self._writer.drain()
        return _raise_for(await fut)

    async def query(
        self, contract: str, method: str, args: Any = None, signer: TxBuilder | None = None
    ) -> Any:
        return await self.call("state.query", query_params(contract, method, args, signer))

    async def submit(self, tx: Transaction | bytes, wait: bool = False) -> dict[str, Any]:
        raw = tx.encode() if isinstance(tx, Transaction) else tx
        params: dict[str, Any] = {"tx": base64.b64encode(raw).decode()}
        if wait:
            params["wait"] = True
        result: dict[str, Any] = await self.call("tx.submit", params)
        return result
