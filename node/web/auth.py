"""Who is asking: the web UI's signed login and each request's viewer.

``/api/session/...`` signs in a patient, a member organization's admin or the
regulator with the portal's challenge design (node/web/portal.py: the same
domain-separated login message, single-use challenges, audience = this node's
organization, 30-minute sessions in an HttpOnly SameSite=Strict cookie or a
bearer token). The signature is checked before anything is said about the
key. A session holds only the key: every request resolves it again on
committed state (``contracts.identity.resolve``), so a key revoked, rotated or
suspended after the login loses its view at the next request, and its session
ends.
"""

from __future__ import annotations

from typing import Any

from medchain.contracts.identity import NODE, PRACTITIONER, Identity, resolve
from medchain.node.consensus.driver import Driver
from medchain.node.web.portal import (
    DOMAIN_LOGIN,
    SESSION_TTL_S,
    PortalError,
    Session,
    Sessions,
    SessionsFull,
)
from medchain.node.web.protocol import HttpError, Request, Response, Router, json_response
from medchain.node.web.visibility import (
    ANONYMOUS,
    ORG_KIND,
    PATIENT_KIND,
    REGULATOR_KIND,
    Viewer,
    viewer_of,
)

COOKIE = "mc_session"
SCOPES = {
    PATIENT_KIND: "the transactions you signed or that name you, and your records",
    ORG_KIND: "the transactions your organization's keys signed, the events it is a party "
    "to, and the records it holds",
    REGULATOR_KIND: "everything on chain",
}


class Auth:
    def __init__(self, d: Driver, sessions: Sessions) -> None:
        self.d = d
        self.sessions = sessions

    def token(self, req: Request) -> str | None:
        return req.cookie(COOKIE) or _bearer(req)

    def identity(self, key: bytes) -> Identity:
        return resolve(self.d.ledger.state_get, self.d.genesis, key)

    def current(self, req: Request) -> tuple[Viewer, Session | None]:
        """The request's viewer as of now; a session whose key no longer earns
        the view it signed in with is ended and the request is anonymous."""
        token = self.token(req)
        s = self.sessions.get(token)
        if s is None:
            return ANONYMOUS, None
        v = viewer_of(self.identity(s.key))
        if v is None or v.id != s.subject:
            self.sessions.logout(token)
            return ANONYMOUS, None
        return v, s

    def viewer(self, req: Request) -> Viewer:
        return self.current(req)[0]

    def patient(self, req: Request) -> Session:
        """The signed-in patient's session (401 otherwise)."""
        v, s = self.current(req)
        if s is None or v.kind != PATIENT_KIND:
            raise HttpError(401, "sign in first: this is the patient's own data")
        return s

    def login_body(self, req: Request) -> tuple[bytes, bytes, bytes]:
        body = req.json()
        try:
            if not isinstance(body, dict):
                raise TypeError
            key = bytes.fromhex(str(body["public_key"]))
            ch = bytes.fromhex(str(body["challenge"]))
            sig = bytes.fromhex(str(body["signature"]))
        except (KeyError, ValueError, TypeError):
            raise HttpError(400, "send {public_key, challenge, signature} as hex") from None
        return key, ch, sig

    def challenge_json(self, req: Request) -> dict[str, Any]:
        return {
            "challenge": self.sessions.challenge(req.client).hex(),
            "domain": DOMAIN_LOGIN,
            "chain_id": self.d.genesis.chain_id,
            "audience": self.sessions.audience,
        }


def session_cookie(token: str) -> tuple[str, str]:
    return (
        "set-cookie",
        f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(SESSION_TTL_S)}",
    )


CLEAR_COOKIE = ("set-cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")


def refusal(who: Identity) -> str:
    """Why a key that signed correctly gets no elevated view."""
    if not who.active and who.kind != "unknown":
        return f"that key is {who.status}"
    if who.kind == PRACTITIONER:
        return (
            "a practitioner's key has no explorer view: the organization's admin key "
            "signs in for the organization"
        )
    if who.kind == NODE:
        return "a node key does not sign in"
    return "that key is not an active patient or organization admin of this consortium"


def whoami(auth: Auth, v: Viewer, key: bytes) -> dict[str, Any]:
    names = {o.org_id: o.name for o in auth.d.genesis.organizations}
    out: dict[str, Any] = {
        "kind": v.kind,
        "id": v.id,
        "public_key": key.hex(),
        "sees": SCOPES.get(v.kind, ""),
    }
    if v.kind == PATIENT_KIND:
        out["patient"] = v.id
    else:
        out.update(org=v.id, org_name=names.get(v.id, ""))
    return out


def open_session(sessions: Sessions, key: bytes, subject: str) -> str:
    try:
        return sessions.open(key, subject)
    except SessionsFull as exc:
        raise HttpError(503, str(exc)) from None


def add_session_routes(r: Router, auth: Auth) -> None:
    sessions = auth.sessions

    @r.route("POST", "/api/session/challenge")
    async def challenge(req: Request) -> Response:
        return json_response(auth.challenge_json(req))

    @r.route("POST", "/api/session/login")
    async def login(req: Request) -> Response:
        key, ch, sig = auth.login_body(req)
        try:
            sessions.verify(key, ch, sig)
        except PortalError as exc:
            raise HttpError(403, str(exc)) from None
        who = auth.identity(key)
        v = viewer_of(who)
        if v is None:
            raise HttpError(403, refusal(who))
        token = open_session(sessions, key, v.id)
        return json_response(whoami(auth, v, key), headers=[session_cookie(token)])

    @r.route("GET", "/api/session")
    async def me(req: Request) -> Response:
        v, s = auth.current(req)
        if s is None:
            raise HttpError(401, "not signed in")
        return json_response(whoami(auth, v, s.key), headers=[("cache-control", "no-store")])

    @r.route("POST", "/api/session/logout")
    async def logout(req: Request) -> Response:
        sessions.logout(auth.token(req))
        return json_response({"ok": True}, headers=[CLEAR_COOKIE])

    del challenge, login, me, logout


def _bearer(req: Request) -> str | None:
    auth = req.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None
