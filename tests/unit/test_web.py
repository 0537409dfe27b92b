"""The web UI's building blocks: sign-in sessions, the HTTP server's handling of
bad input (it answers with a clear status and keeps serving), and the rule of
who sees what in the explorer (a pure function of viewer and transaction)."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from medchain.contracts.identity import ADMIN, NODE, PATIENT, PRACTITIONER, UNKNOWN, Identity
from medchain.node.web.auth import Auth
from medchain.node.web.http import HttpError, HttpServer, Request, Response, Router, json_response
from medchain.node.web.portal import (
    CHALLENGE_TTL_S,
    MAX_ENTRIES,
    SESSION_TTL_S,
    PortalError,
    Sessions,
    login_sign_bytes,
)
from medchain.node.web.visibility import (
    ANONYMOUS,
    EVENTS,
    FULL,
    ORG_KIND,
    PATIENT_KIND,
    PUBLIC,
    PUBLIC_TX_FIELDS,
    REGULATOR_KIND,
    TxView,
    Viewer,
    parties,
    record_visible,
    shape_tx,
    tx_view,
    viewer_of,
)
from medchain.storage.crypto import DOMAIN_TX, Signer, sign_bytes


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


# -- who sees what: the visibility rule as a pure function ---------------------------

HOSP_A = Identity(b"a" * 32, PRACTITIONER, "prac-a", "hospital-a", "hospital", "physician")
HOSP_B_ADMIN = Identity(b"b" * 32, ADMIN, "hospital-b", "hospital-b", "hospital")
INS_NODE = Identity(b"i" * 32, NODE, "insurer", "insurer", "insurer")
P1_KEY = Identity(b"1" * 32, PATIENT, "pat-1")
P2_KEY = Identity(b"2" * 32, PATIENT, "pat-2")
P1 = Viewer(PATIENT_KIND, "pat-1")
P2 = Viewer(PATIENT_KIND, "pat-2")
ORG_A = Viewer(ORG_KIND, "hospital-a")
ORG_B = Viewer(ORG_KIND, "hospital-b")
ORG_INS = Viewer(ORG_KIND, "insurer")
REG = Viewer(REGULATOR_KIND, "regulator")

CLAIM_ARGS = {
    "claim_id": "c-1",
    "patient": "pat-1",
    "diagnoses": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}],
}
CLAIM_EVENTS = [
    {"claim": "c-1", "patient": "pat-1", "hospital": "hospital-a", "insurer": "insurer"}
]
BULK_ARGS = {
    "anchors": [
        {"record_id": "r-1", "patient": "pat-1", "custodian": "hospital-a"},
        {"record_id": "r-2", "patient": "pat-2", "custodian": "hospital-a"},
    ]
}
BULK_EVENTS = [
    {"record_id": "r-1", "patient": "pat-1", "custodian": "hospital-a"},
    {"record_id": "r-2", "patient": "pat-2", "custodian": "hospital-a"},
]
ACCESS_EVENTS = [
    {"patient": "pat-1", "record": "r-1", "decision": "permit", "requester_org": "hospital-b"}
]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (P1_KEY, P1),
        (replace(P1_KEY, status="revoked"), None),
        (Identity(b"r" * 32, ADMIN, "regulator", "regulator", "regulator"), REG),
        (HOSP_B_ADMIN, ORG_B),
        (replace(HOSP_B_ADMIN, status="revoked"), None),  # rotated away or revoked
        (HOSP_A, None),  # practitioners: no elevated view
        (replace(HOSP_A, status="suspended"), None),
        (INS_NODE, None),
        (Identity(b"u" * 32, UNKNOWN), None),
    ],
)
def test_who_earns_which_view(who: Identity, expected: Viewer | None) -> None:
    assert viewer_of(who) == expected


def test_parties_are_found_by_field_name_at_any_depth() -> None:
    p = parties(BULK_ARGS, {"x": [{"y": {"insurer": "insurer", "grantee": "hospital-b"}}]})
    assert p.patients == {"pat-1", "pat-2"}
    assert p.orgs == {"hospital-a", "insurer", "hospital-b"}
    # a non-string under a party field is walked into, not taken as a party
    assert parties({"patient": {"patient": "pat-3"}}).patients == {"pat-3"}


@pytest.mark.parametrize(
    ("viewer", "sender", "args", "events", "level", "shown"),
    [
        # a stranger sees no detail of anything
        (ANONYMOUS, P1_KEY, {"consent_id": "x"}, [{"patient": "pat-1"}], PUBLIC, ()),
        (ANONYMOUS, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, PUBLIC, ()),
        # the regulator sees everything
        (REG, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, FULL, (0,)),
        (REG, P2_KEY, {}, [], FULL, ()),
        # a patient: their own, and what names only them
        (P1, P1_KEY, {"consent_id": "x"}, [{"patient": "pat-1"}], FULL, (0,)),
        (P1, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, FULL, (0,)),
        (P2, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, PUBLIC, ()),
        (P1, HOSP_A, BULK_ARGS, BULK_EVENTS, EVENTS, (0,)),  # a bulk tx: their event only
        (P2, HOSP_A, BULK_ARGS, BULK_EVENTS, EVENTS, (1,)),
        # another patient's signature names that patient: no sender, only P1's event
        (P1, P2_KEY, {"record_id": "r-1"}, ACCESS_EVENTS, EVENTS, (0,)),
        (P1, P2_KEY, {"patient": "pat-1"}, [], PUBLIC, ()),
        # an organization: what its keys signed, whatever the key's status now
        (ORG_A, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, FULL, (0,)),
        (ORG_A, replace(HOSP_A, status="revoked"), CLAIM_ARGS, CLAIM_EVENTS, FULL, (0,)),
        (ORG_B, HOSP_B_ADMIN, {}, [], FULL, ()),
        (ORG_INS, INS_NODE, {}, [], FULL, ()),
        # ... and the events it is a party to, without the arguments
        (ORG_INS, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, EVENTS, (0,)),
        (ORG_B, HOSP_A, CLAIM_ARGS, CLAIM_EVENTS, PUBLIC, ()),
        (ORG_B, HOSP_A, {"record_id": "r-1"}, ACCESS_EVENTS, EVENTS, (0,)),
        (ORG_B, P1_KEY, {"grantee": "hospital-b"}, [{"grantee": "hospital-b"}], EVENTS, (0,)),
        (ORG_A, P1_KEY, {"grantee": "hospital-b"}, [{"grantee": "hospital-b"}], PUBLIC, ()),
        # a patient's key never counts as an organization's
        (ORG_A, replace(P1_KEY, org="hospital-a"), {}, [], PUBLIC, ()),
        (ORG_A, None, {}, [{"custodian": "hospital-a"}], EVENTS, (0,)),
    ],
)
def test_tx_visibility(
    viewer: Viewer,
    sender: Identity | None,
    args: Any,
    events: list[Any],
    level: str,
    shown: tuple[int, ...],
) -> None:
    assert tx_view(viewer, sender, args, None, events) == TxView(level, shown)


def test_a_result_naming_another_patient_keeps_the_patient_from_the_full_tx() -> None:
    view = tx_view(P1, HOSP_A, {"patient": "pat-1"}, {"patient": "pat-2"}, [])
    assert view.level == PUBLIC


FULL_TX = {
    "tx_id": "ab" * 32,
    "status": "failed",
    "height": 7,
    "index": 0,
    "contract": "settlement",
    "method": "submit_claim",
    "size": 412,
    "block_hash": "cd" * 32,
    "tx_root": "ef" * 32,
    "args": CLAIM_ARGS,
    "events": [*CLAIM_EVENTS, {"patient": "pat-2"}],
    "reason": "the patient pat-1 is not enrolled",
    "result": {"outcome": "deny"},
    "sender": {"kind": "practitioner", "id": "prac-a", "org": "hospital-a"},
    "nonce": 99,
}


def test_the_public_shape_carries_no_detail() -> None:
    out = shape_tx(FULL_TX, TxView(PUBLIC))
    assert set(out) == {*PUBLIC_TX_FIELDS, "detail"} and out["detail"] == PUBLIC
    text = json.dumps(out)
    for secret in ("pat-1", "E11.9", "icd-10", "prac-a", "hospital-a", "deny", "enrolled"):
        assert secret not in text
    # the positive control: the same scan finds them all in the full shape
    full = json.dumps(shape_tx(FULL_TX, TxView(FULL, (0, 1))))
    for secret in ("pat-1", "E11.9", "icd-10", "prac-a", "hospital-a", "deny", "enrolled"):
        assert secret in full


def test_the_events_shape_carries_only_the_chosen_events() -> None:
    out = shape_tx(FULL_TX, TxView(EVENTS, (0,)))
    assert out["events"] == CLAIM_EVENTS and out["detail"] == EVENTS
    assert not {"args", "result", "reason", "sender", "nonce"} & set(out)
    assert "pat-2" not in json.dumps(out)


@pytest.mark.parametrize(
    ("viewer", "visible"),
    [(ANONYMOUS, False), (P1, True), (P2, False), (ORG_A, True), (ORG_B, False), (REG, True)],
)
def test_record_visibility(viewer: Viewer, visible: bool) -> None:
    anchor = {"record_id": "r-1", "patient": "pat-1", "custodian": "hospital-a", "version": 1}
    assert record_visible(viewer, anchor) is visible


# -- the session's identity is re-checked at every request ---------------------------


def test_a_session_ends_when_its_key_stops_earning_its_view() -> None:
    from medchain.contracts.identity import REGISTRY_KEY_PREFIX
    from medchain.storage.codec import canonical, pack
    from tests.helpers import Consortium

    con = Consortium.make(4)
    admin = con.admin_keys[1]
    state: dict[bytes, bytes] = {}
    d = SimpleNamespace(genesis=con.genesis, ledger=SimpleNamespace(state_get=state.get))
    s, _ = sessions()
    auth = Auth(d, s)  # type: ignore[arg-type]
    who = auth.identity(admin.public_key)
    v = viewer_of(who)
    assert v == Viewer(ORG_KIND, "org-1")
    token = s.open(admin.public_key, v.id)
    req = Request("GET", "/api/tx/x", {}, {"authorization": f"Bearer {token}"})
    assert auth.viewer(req) == v
    # the admin key is rotated away: the registry now says it is revoked
    record = {"kind": ADMIN, "id": "org-1", "org": "org-1", "role": None, "status": "revoked"}
    state[REGISTRY_KEY_PREFIX + admin.public_key] = pack(canonical(record))
    assert auth.viewer(req) == ANONYMOUS
    assert s.get(token) is None  # and the session is gone, even if the key came back
    state.clear()
    assert auth.viewer(req) == ANONYMOUS
    with pytest.raises(HttpError) as err:
        auth.patient(req)
    assert err.value.status == 401
