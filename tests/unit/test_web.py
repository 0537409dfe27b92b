"""The web UI's building blocks: patient sign-in sessions, and the HTTP server's
handling of bad input (it answers with a clear status and keeps serving)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from node.web.http import HttpError, HttpServer, Request, Response, Router, json_response
from node.web.portal import (
    CHALLENGE_TTL_S,
    MAX_ENTRIES,
    SESSION_TTL_S,
    PortalError,
    Sessions,
    login_sign_bytes,
)
from storage.crypto import DOMAIN_TX, Signer, sign_bytes


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sessions() -> tuple[Sessions, Clock]:
    clock = Clock()
    return Sessions("chain-1", "hospital-a", clock), clock


def test_a_signed_challenge_opens_a_session_once() -> None:
    s, _ = sessions()
    patient = Signer.generate()
    ch = s.challenge()
    sig = patient.sign(login_sign_bytes("chain-1", "hospital-a", ch))
    token = s.login(patient.public_key, ch, sig, "p-1")
    got = s.get(token)
    assert got is not None and got.key == patient.public_key and got.subject == "p-1"
    with pytest.raises(PortalError, match="unknown or expired"):
        s.login(patient.public_key, ch, sig, "p-1")  # a challenge is single-use
    s.logout(token)
    assert s.get(token) is None


@pytest.mark.parametrize(
    "message",
    [
        lambda ch: login_sign_bytes("chain-1", "hospital-b", ch),  # another node's portal
        lambda ch: login_sign_bytes("chain-2", "hospital-a", ch),  # another chain
        lambda ch: sign_bytes(DOMAIN_TX, "chain-1", ch),  # a transaction's domain
        lambda ch: ch,  # the bare challenge
    ],
)
def test_a_signature_over_anything_else_is_refused(message: Any) -> None:
    s, _ = sessions()
    patient = Signer.generate()
    ch = s.challenge()
    with pytest.raises(PortalError, match="does not verify"):
        s.login(patient.public_key, ch, patient.sign(message(ch)), "p-1")


def test_someone_elses_signature_and_unknown_challenges_are_refused() -> None:
    s, _ = sessions()
    patient, thief = Signer.generate(), Signer.generate()
    ch = s.challenge()
    sig = thief.sign(login_sign_bytes("chain-1", "hospital-a", ch))
    with pytest.raises(PortalError, match="does not verify"):
        s.login(patient.public_key, ch, sig, "p-1")
    with pytest.raises(PortalError, match="unknown or expired"):
        s.login(patient.public_key, bytes(32), sig, "p-1")
    with pytest.raises(PortalError, match="32 bytes"):
        s.login(patient.public_key[:5], ch, sig, "p-1")


def test_challenges_and_sessions_expire_and_stay_bounded() -> None:
    s, clock = sessions()
    patient = Signer.generate()
    ch = s.challenge()
    clock.t += CHALLENGE_TTL_S + 1
    sig = patient.sign(login_sign_bytes("chain-1", "hospital-a", ch))
    with pytest.raises(PortalError, match="expired"):
        s.login(patient.public_key, ch, sig, "p-1")
    ch = s.challenge()
    token = s.login(
        patient.public_key, ch, patient.sign(login_sign_bytes("chain-1", "hospital-a", ch)), "p"
    )
    clock.t += SESSION_TTL_S + 1
    assert s.get(token) is None
    for _ in range(MAX_ENTRIES + 50):
        s.challenge()
    assert len(s._challenges) == MAX_ENTRIES


# -- the HTTP server ---------------------------------------------------------------


def app() -> Router:
    r = Router()

    @r.route("GET", "/hello/{name}")
    async def hello(req: Request) -> Response:
        return json_response({"hello": req.params["name"], "q": req.query})

    @r.route("POST", "/echo")
    async def echo(req: Request) -> Response:
        return json_response(req.json())

    @r.route("GET", "/boom")
    async def boom(req: Request) -> Response:
        raise RuntimeError("bug")

    @r.route("GET", "/teapot")
    async def teapot(req: Request) -> Response:
        raise HttpError(418, "short and stout")

    @r.route("GET", "/stream")
    async def stream(req: Request) -> Response:
        async def chunks() -> Any:
            for i in range(3):
                yield f"data: {i}\n\n".encode()

        return Response(200, content_type="text/event-stream", stream=chunks)

    del hello, echo, boom, teapot, stream
    return r


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.move_on_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = [
                        int(ln.split(b":")[1])
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length:")
                    ]
                    if length and len(body) >= length[0]:
                        break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: x\r\n{extra}connection: close\r\n\r\n".encode()


@pytest.mark.trio
async def test_http_server_answers_and_survives_bad_input() -> None:
    server = HttpServer("127.0.0.1", 0, app())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        status, headers, body = await exchange(port, get("/hello/w%20x?a=1"))
        assert status == 200 and json.loads(body) == {"hello": "w x", "q": {"a": "1"}}
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert (await exchange(port, get("/nowhere")))[0] == 404
        assert (await exchange(port, get("/echo")))[0] == 405
        assert (await exchange(port, get("/teapot")))[0] == 418
        status, _, body = await exchange(port, get("/boom"))
        assert status == 500 and b"bug" not in body  # internals are logged, not shown
        # garbage instead of a request line
        assert (await exchange(port, b"\x16\x03\x01\x00\xa5garbage\r\n\r\n"))[0] == 400
        # a body over the limit
        big = b"x" * (70 * 1024)
        raw = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(big) + big
        assert (await exchange(port, raw))[0] == 413
        # invalid JSON and NaN
        for payload in (b"{not json", b'{"a": NaN}'):
            raw = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(payload)
            assert (await exchange(port, raw + payload))[0] == 400
        # headers over 16 KiB
        assert (await exchange(port, get("/hello/x", "x-big: " + "a" * 20000 + "\r\n")))[0] in (
            400,
            431,
        )
        # a client that connects and says nothing does not hold up others
        idle = await trio.open_tcp_stream("127.0.0.1", port)
        status, _, body = await exchange(port, get("/hello/still"))
        assert status == 200 and json.loads(body)["hello"] == "still"
        await idle.aclose()
        # keep-alive: two requests on one connection
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                b"GET /hello/a HTTP/1.1\r\nhost: x\r\n\r\nGET /hello/b HTTP/1.1\r\nhost: x\r\n\r\n"
            )
            data = b""
            with trio.move_on_after(5):
                while data.count(b"hello") < 2:
                    data += await stream.receive_some(65536)
        assert b'"hello": "a"' in data and b'"hello": "b"' in data
        # a streamed response
        status, headers, body = await exchange(port, get("/stream"))
        assert status == 200 and headers["content-type"] == "text/event-stream"
        assert b"data: 2" in body
        nursery.cancel_scope.cancel()
