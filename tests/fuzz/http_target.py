"""The web UI's HTTP server as a fuzz target: bytes in on one connection (in
arbitrary pieces, pipelined requests and all), through the real request
reader, router and handlers (node/web/app.py on a small chain with blocks, a
patient, a record and a signed-in session), answers out.

An input passes if every answer is a well-formed HTTP/1.1 response with a
JSON error body whenever it is an error, none is a 500 and the server
reported no incident. Used by tests/unit/test_http_property.py, the long
fuzz runs (tests/fuzz/targets.py: ``http-request``) and the live-node test
tests/e2e/test_web_hostile.py (the hostile corpus and ``requests()``)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import cache

import trio
from hypothesis import strategies as st
from trio.testing import MockClock

from medchain.node.consensus.driver import Driver, DriverConfig
from medchain.node.net.transport import MemoryHub
from medchain.node.records.service import RecordService
from medchain.node.web.app import History, build_app
from medchain.node.web.http import HttpServer
from medchain.node.web.limits import WebLimits
from medchain.node.web.portal import Sessions
from medchain.storage.crypto import Signer
from medchain.storage.vault import Vault
from tests.chain import Chain

SESSION = "SESSION-TOKEN"  # in an input, stands for a live patient session's token
MAX_OUT = 1 << 20  # a client that has read this much leaves
STAY_S = 100.0  # a client leaves after this long (virtual time; ends live streams)

# Request targets known to have killed or hurt a node (issue 17), and their kin.
KILLERS = [
    "//[",
    "//a]",
    "//[x]",
    "http://[::1/api/status",
    "http://[::1]:80/api/status",
    "//[::1]/api/status",
    "/api/blocks/%C2%B2",
    "/api/blocks/\u00b2",
    "/api/search?q=\u00b2",
    "/api/search?q=%C2%B2",
    "/api/search?q=%D9%A3",
    "/api/blocks/%D9%A3",
    "/api/blocks/1?offset=%C2%B2",
    "/api/blocks/1?limit=-5&offset=99999999999999999999999",
    "/api/blocks?limit=%C2%B2&before=%00",
    "/api/blocks?before=" + "9" * 5000,
    "/api/tx/%ZZ",
    "/api/records/%FF%FE",
    "/static/..%2F..%2Fetc%2Fpasswd",
    "/?" + "&".join(f"a{i}=1" for i in range(200)),
    "*",
    "http:",
    "https://",
    "ftp://x/api/status",
    "?",
    "#",
]


@dataclass
class WebWorld:
    chain: Chain
    driver: Driver
    sessions: Sessions
    server: HttpServer
    patient: Signer
    pseudonym: str
    block_hash: str
    tx_id: str

    def token(self) -> str:
        """A live session of the patient (a fuzz input may have logged the last one out)."""
        if self.sessions.get(self._token) is None:
            self._token = self.sessions.open(self.patient.public_key, self.pseudonym)
        return self._token

    _token: str = ""


@cache
def world() -> WebWorld:
    c = Chain()
    patient, pseudonym = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "rec-1", pseudonym)
    c.ok(patient, "access", "request", {"record_id": "rec-1", "purpose": "treatment"})
    admin = c.admins["hospital-a"]
    c.block([(admin, "kv", "put", {"key": f"k{i}", "value": "v"}) for i in range(5)])
    d = Driver(
        c.genesis,
        c.ledger,
        c.executor,
        c.node_keys[0],
        MemoryHub().transport(0),
        DriverConfig(offload=False),
    )
    limits = WebLimits(tx_page_default=2, tx_page_max=3, render_batch=1)
    sessions = Sessions(c.genesis.chain_id, "hospital-a", lambda: 1000.0, limits)
    records = RecordService(d, Vault.in_memory(bytes(32)), 0.2)
    app = build_app(d, sessions, History(d), records, limits)
    b = c.ledger.block(c.ledger.height)
    assert b is not None
    return WebWorld(
        c,
        d,
        sessions,
        HttpServer("127.0.0.1", 0, app, limits),
        patient,
        pseudonym,
        b.hash.hex(),
        b.ids[0].hex(),
    )


class FakeStream:
    """A connection: hands over ``data`` in pieces of ``piece`` bytes, then EOF
    (or, with ``hold``, nothing more while the client stays)."""

    def __init__(self, data: bytes, piece: int, hold: bool = False) -> None:
        self.data = data
        self.piece = max(1, piece)
        self.hold = hold
        self.pos = 0
        self.out = bytearray()
        self.leave_at = trio.current_time() + STAY_S

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        n = min(self.piece, max_bytes or self.piece)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        if not chunk and self.hold:
            await trio.sleep(self.leave_at - trio.current_time())
            raise trio.BrokenResourceError("the client left")
        return chunk

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if len(self.out) > MAX_OUT or trio.current_time() > self.leave_at:
            raise trio.BrokenResourceError("the client left")
        self.out += data


def parse_responses(out: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The HTTP/1.1 responses in ``out``; AssertionError if any is malformed."""
    responses = []
    rest = bytes(out)
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"a response head without its end: {head[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        version, _, tail = lines[0].partition(" ")
        assert version == "HTTP/1.1", lines[0]
        status = int(tail.split(" ")[0])
        headers = {}
        for ln in lines[1:]:
            k, colon, v = ln.partition(":")
            assert colon, f"a malformed header line {ln!r}"
            headers[k.strip().lower()] = v.strip()
        if rest.startswith(b"HTTP/1.1 ") or not rest:
            body = b""  # an answer to HEAD (no body whatever its length says)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, rest = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                if not size_line:  # a live stream cut off by the client leaving
                    break
                size = int(size_line, 16)
                body += rest[:size]
                rest = rest[size + 2 :]
                if size == 0:
                    break
        else:
            body, rest = rest, b""
        responses.append((status, headers, body))
    return responses


def check_responses(out: bytes) -> list[int]:
    """The statuses of the answers; AssertionError on a malformed one or a 500."""
    statuses = []
    for status, _headers, body in parse_responses(out):
        assert status != 500, f"internal error: {body[:300]!r}"
        assert 200 <= status < 600, status
        if status >= 400 and body:
            doc = json.loads(body)
            assert isinstance(doc.get("error"), str), doc
            assert "traceback" not in body.decode("utf-8", "replace").lower()
        statuses.append(status)
    return statuses


def run(data: bytes, piece: int = 4096) -> list[int]:
    """Serve ``data`` as one connection's bytes; the statuses answered."""
    w = world()
    data = data.replace(SESSION.encode(), w.token().encode())
    before = w.server.incidents
    out = bytearray()

    async def one() -> None:
        stream = FakeStream(data, piece)
        # longer than any wait a request may make; real hangs still fail
        with trio.fail_after(600):
            with contextlib.suppress(trio.BrokenResourceError, trio.TooSlowError):
                await w.server.serve_stream(stream, "fuzz")
        out.extend(stream.out)

    # virtual time: timeouts pass at once instead of for real
    trio.run(one, clock=MockClock(autojump_threshold=0))
    assert w.server.incidents == before, "the server reported an incident (see the log)"
    return check_responses(bytes(out))


def fuzz_input(data: bytes) -> None:
    """The fuzz target: the first byte picks the piece size, the rest is the input."""
    piece = 1 + (data[0] * 37 % 4096) if data else 4096
    run(data[1:], piece)


# -- inputs -----------------------------------------------------------------------------


def routes() -> list[str]:
    w = world()
    return [
        "/",
        "/static/app.js",
        "/api/status",
        "/api/members",
        "/api/history",
        "/api/blocks?limit=3&before=4",
        "/api/blocks/1",
        f"/api/blocks/{w.chain.ledger.height}?offset=1&limit=1",
        f"/api/blocks/{w.block_hash}",
        f"/api/tx/{w.tx_id}",
        "/api/records/rec-1",
        "/api/search?q=1",
        f"/api/search?q={w.tx_id}",
        "/api/search?q=rec-1",
        "/api/session",
        "/api/portal/me",
        "/api/portal/accesses?limit=2",
        "/api/portal/accesses?before=1." + "0" * 64 + ".rec-1",
        "/api/portal/events",
    ]


POSTS = [
    "/api/session/challenge",
    "/api/session/login",
    "/api/session/logout",
    "/api/portal/challenge",
    "/api/portal/login",
    "/api/portal/logout",
    "/api/portal/submit",
    "/api/portal/fetch",
]


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


def samples() -> list[bytes]:
    host = [("host", "x")]
    auth = [("host", "x"), ("authorization", f"Bearer {SESSION}")]
    out = [request_bytes("GET", t, host, b"") for t in routes()]
    out += [request_bytes("GET", t, auth, b"") for t in routes()[-6:]]
    body = json.dumps({"public_key": "00" * 32, "challenge": "00" * 32, "signature": "00" * 64})
    for p in POSTS:
        hs = [*auth, ("content-type", "application/json"), ("content-length", str(len(body)))]
        out.append(request_bytes("POST", p, hs, body.encode()))
    out += [request_bytes("GET", t, host, b"") for t in KILLERS]
    return [b"\xff" + s for s in out]  # first byte: the piece size


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=12),
        st.text(max_size=12).map(lambda s: "".join(f"%{b:02X}" for b in s.encode())),
        st.sampled_from(["[", "]", "[::1]", "%", "%ZZ", "..", "²", "٣", "0", "-1", "9" * 30]),
        st.integers().map(str),
    )


def targets() -> st.SearchStrategy[str]:
    def join(parts: list[str]) -> str:
        return "/".join(parts)

    return st.one_of(
        st.sampled_from(KILLERS),
        st.builds(
            lambda r, extra, q: r.split("?")[0] + extra + q,
            st.sampled_from(routes() + POSTS),
            st.lists(_segment(), max_size=3).map(lambda p: "/" + join(p) if p else ""),
            st.one_of(
                st.just(""),
                st.dictionaries(
                    st.sampled_from(["q", "offset", "limit", "before", "x"]), _segment(), max_size=4
                ).map(lambda d: "?" + "&".join(f"{k}={v}" for k, v in d.items())),
            ),
        ),
        st.lists(_segment(), max_size=5).map(lambda p: "/" + join(p)),
        st.builds(lambda a, p: f"http://{a}/{p}", _segment(), _segment()),
        st.text(max_size=40),
    )


HEADER_NAMES = [
    "host",
    "content-length",
    "transfer-encoding",
    "cookie",
    "authorization",
    "content-type",
    "connection",
    "expect",
    "x-forwarded-for",
]


def headers() -> st.SearchStrategy[list[tuple[str, str]]]:
    value = st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            [
                "chunked",
                "close",
                "keep-alive",
                "100-continue",
                "-1",
                "99999999999999999999",
                f"mc_session={SESSION}",
                f"Bearer {SESSION}",
                "Bearer ",
                "application/json",
            ]
        ),
        st.integers(0, 1 << 20).map(str),
    )
    name = st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=10))
    return st.lists(st.tuples(name, value), max_size=6).map(lambda hs: [("host", "x"), *hs])


def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=200),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(
                st.sampled_from(["public_key", "challenge", "signature", "tx", "x"]),
                st.one_of(st.text(max_size=20), st.integers(), st.none(), st.just("00" * 32)),
                max_size=4,
            ),
        ),
    )


def one_request() -> st.SearchStrategy[bytes]:
    methods = st.one_of(
        st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT"]),
        st.text(max_size=8),
    )
    return st.builds(request_bytes, methods, targets(), headers(), bodies())


def requests() -> st.SearchStrategy[bytes]:
    """One connection's bytes: a few requests (pipelined), maybe cut or garbled."""

    def cut(data: bytes, at: int | None) -> bytes:
        return data if at is None else data[:at]

    return st.one_of(
        st.builds(
            cut,
            st.lists(one_request(), min_size=1, max_size=3).map(b"".join),
            st.none() | st.integers(0, 400),
        ),
        st.binary(max_size=300),
    )


def inputs() -> st.SearchStrategy[bytes]:
    """Fuzz inputs: the piece size byte, then one connection's bytes."""
    return st.builds(lambda p, d: bytes([p]) + d, st.integers(0, 255), requests())
