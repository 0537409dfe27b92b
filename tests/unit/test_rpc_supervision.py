"""RPC supervision: a handler's bug ends only its call, a connection's only that
connection, and an accept error never the server."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from medchain.node.rpc import server as rpc
from medchain.node.rpc.connection import Connection
from medchain.node.rpc.errors import INTERNAL_ERROR, RpcError
from medchain.node.rpc.server import RpcServer
from tests.unit.test_rpc import LineClient, connect


class Damaged(Exception):
    """Stands for a node's own exception type that deserves a code of its own."""


def make_server(path: Path) -> RpcServer:
    server = RpcServer(
        path,
        translate=lambda exc: RpcError(-32099, "damaged") if isinstance(exc, Damaged) else None,
    )

    @server.method("ok")
    async def ok(conn: Connection, params: dict[str, Any]) -> Any:
        return "fine"

    @server.method("boom")
    async def boom(conn: Connection, params: dict[str, Any]) -> Any:
        raise RuntimeError("secret patient data in a message")

    @server.method("not_json")
    async def not_json(conn: Connection, params: dict[str, Any]) -> Any:
        return object()

    @server.method("damaged")
    async def damaged(conn: Connection, params: dict[str, Any]) -> Any:
        raise Damaged

    return server


def call(rid: int, method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method}


def rpc_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "medchain.rpc" and r.levelno >= logging.WARNING]


@pytest.mark.trio
async def test_a_handler_bug_is_an_incident_of_that_call_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medchain.rpc")
    async with trio.open_nursery() as nursery:
        server = make_server(tmp_path / "s.sock")
        await nursery.start(server.serve)
        cl = await connect(server.path)
        r = await cl.call(call(1, "boom"))
        err = r["error"]
        iid = err["data"]["incident"]
        assert err["code"] == INTERNAL_ERROR and r["id"] == 1
        assert len(iid) == 8 and err["message"] == f"internal error (incident {iid})"
        # one error line naming the incident and where, no traceback, no message text
        (line,) = rpc_errors(caplog)
        assert line.levelno == logging.ERROR and line.exc_info is None
        text = line.getMessage()
        assert iid in text and "RuntimeError" in text and "test_rpc_supervision" in text
        assert "secret" not in text
        # a reply that is not JSON is the same kind of incident, and the connection lives on
        r = await cl.call(call(2, "not_json"))
        assert r["error"]["code"] == INTERNAL_ERROR and r["id"] == 2
        assert (await cl.call(call(3, "ok")))["result"] == "fine"
        # in a batch, only the failing call fails
        batch = await cl.call([call(4, "ok"), call(5, "boom"), call(6, "not_json"), call(7, "ok")])
        by_id = {x["id"]: x for x in batch}
        assert by_id[4]["result"] == by_id[7]["result"] == "fine"
        assert by_id[5]["error"]["code"] == by_id[6]["error"]["code"] == INTERNAL_ERROR
        # the node's own exception types keep their own codes (the translator)
        assert (await cl.call(call(8, "damaged")))["error"] == {
            "code": -32099,
            "message": "damaged",
        }
        assert server.incidents == 4
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_failing_connection_never_ends_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="medchain.rpc")
    real_run = Connection.run
    broken = {"left": 2}

    async def run(self: Connection) -> None:
        if broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("connection handler bug")
        await real_run(self)

    def close_breaks(self: Connection) -> None:
        raise RuntimeError("cleanup bug")

    monkeypatch.setattr(Connection, "run", run)
    async with trio.open_nursery() as nursery:
        server = make_server(tmp_path / "s.sock")
        await nursery.start(server.serve)
        for _ in range(2):  # dropped, with an incident each
            dropped = await connect(server.path)
            assert await dropped.read() is None
        monkeypatch.setattr(Connection, "close_subscriptions", close_breaks)
        cl = await connect(server.path)
        assert (await cl.call(call(1, "ok")))["result"] == "fine"
        await cl.stream.aclose()  # its cleanup fails: an incident, contained too
        cl = await connect(server.path)
        assert (await cl.call(call(2, "ok")))["result"] == "fine"
        with trio.fail_after(5):
            while server.incidents < 3:
                await trio.sleep(0.01)
        lines = rpc_errors(caplog)
        assert len(lines) == 3 and all("incident" in x.getMessage() for x in lines)
        assert "cleanup" in lines[2].getMessage()
        assert all(x.exc_info is None for x in lines)
        nursery.cancel_scope.cancel()


class FlakyListener:
    """accept() fails a few times (descriptors exhausted, then something odd) first."""

    def __init__(self, real: trio.SocketListener) -> None:
        self.real = real
        self.failures: list[Exception] = [
            OSError(errno.EMFILE, "Too many open files"),
            OSError(errno.EMFILE, "Too many open files"),
            RuntimeError("accept bug"),
        ]

    async def accept(self) -> trio.SocketStream:
        if self.failures:
            await trio.sleep(0)
            raise self.failures.pop(0)
        return await self.real.accept()


@pytest.mark.trio
async def test_accept_errors_are_waited_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="medchain.rpc")
    monkeypatch.setattr(rpc, "ACCEPT_RETRY_S", 0.01)
    server = make_server(tmp_path / "s.sock")
    async with trio.open_nursery() as nursery:
        sock = await server._bind()
        flaky = FlakyListener(trio.SocketListener(sock))
        nursery.start_soon(server._accept_loop, flaky, nursery)
        cl: LineClient = await connect(server.path)
        assert (await cl.call(call(1, "ok")))["result"] == "fine"
        assert not flaky.failures
        msgs = [x.getMessage() for x in rpc_errors(caplog)]
        # one line for the run of failures, one when accepting again
        assert len(msgs) == 2 and "Too many open files" in msgs[0] and "again" in msgs[1]
        nursery.cancel_scope.cancel()
