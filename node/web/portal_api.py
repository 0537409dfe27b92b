"""The patient portal's API: sign in by signing a challenge with the patient's
key, see one's records, consents and access log (live, by server-sent events;
the log one page at a time), submit one's own consent grants and revocations,
and fetch one's records' contents sealed to one's key (opened in the browser;
the node that serves the page never holds them in clear unless it is their
custodian). Consents and log entries come with their words beside the
chaincode's fields (node/web/portal_view.py): dates, categories, purpose, who
a grantee or requester is by the registry, a consent's true state.

Every route but the challenge and the login needs a patient's session: a
cookie (or a bearer token for scripts) from ``/api/portal/login`` or
``/api/session/login``, whose key is still an active patient's at each request.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from medchain.node.consensus.driver import Driver
from medchain.node.mempool.pool import PoolReject
from medchain.node.records.service import RecordService
from medchain.node.rpc.chain_api import tx_status
from medchain.node.rpc.events import EventFilter
from medchain.node.rpc.jsonval import to_json
from medchain.node.web.auth import CLEAR_COOKIE, Auth, open_session, session_cookie
from medchain.node.web.limits import WebLimits
from medchain.node.web.portal import PortalError, Session
from medchain.node.web.portal_view import (
    Registry,
    access_page,
    cursor_of,
    describe_access,
    describe_consent,
    grant_options,
    parse_cursor,
)
from medchain.node.web.protocol import (
    HttpError,
    Request,
    Response,
    Router,
    int_param,
    json_response,
)
from medchain.storage.codec import DecodeError
from medchain.storage.tx import Transaction

# What a patient may submit through the portal (signed in the browser).
PORTAL_TXS = {("consent", "grant"), ("consent", "revoke")}
# What a patient may send to fetch records: an access request naming them.
FETCH_TXS = {("access", "request_many")}
ACCESS_WINDOW = 5000  # entries access.by_patient returns at most (its MAX_LIST)
# The patient's own data: never cached or shared.
NO_STORE = [("cache-control", "no-store"), ("vary", "cookie, authorization")]


def wall_ms() -> int:
    return int(time.time() * 1000)


def add_portal_routes(
    r: Router,
    d: Driver,
    auth: Auth,
    records: RecordService | None,
    query: Callable[..., Any],
    limits: WebLimits,
    clock_ms: Callable[[], int] = wall_ms,
) -> None:
    g = d.genesis
    orgs = g.organizations
    org_names = {o.org_id: o.name for o in orgs}
    sessions = auth.sessions
    streams: dict[str, int] = {}  # live event streams per patient

    def now_ms() -> int:
        """What "expired" is judged by: this node's clock (block time when ahead)."""
        return max(clock_ms(), d.ledger.last_timestamp_ms)

    def practitioner(pid: str) -> Mapping[str, Any] | None:
        try:
            rec = query("registry", "practitioner", {"practitioner": pid})
        except HttpError:
            return None
        return rec if isinstance(rec, dict) else None

    def registry() -> Registry:
        return Registry(org_names, practitioner)

    def consents_of(s: Session, reg: Registry) -> list[Any]:
        """The patient's consents, each with its words and true state."""
        args = {"patient": s.subject}
        consents = query("consent", "list_for_patient", args, s.key)
        referrals: dict[str, Any] = {}
        if any(str(c.get("source", "")).startswith("referral/") for c in consents):
            referrals = {r["id"]: r for r in query("referral", "by_patient", args, s.key)}
        now = now_ms()
        for c in consents:
            c.update(describe_consent(c, referrals, reg, now))
        return list(consents)

    def signed_tx(
        req: Request, s: Session, allowed: set[tuple[str, str]]
    ) -> tuple[bytes, Transaction]:
        try:
            raw = bytes.fromhex(str(req.json()["tx"]))
            t = Transaction.decode(raw)
        except (KeyError, ValueError, TypeError, DecodeError) as exc:
            raise HttpError(400, f"send {{tx: hex}} of a signed transaction ({exc})") from None
        if t.sender != s.key:
            raise HttpError(403, "the portal submits only the signed-in patient's own transactions")
        if (t.contract, t.method) not in allowed:
            raise HttpError(403, f"the portal does not submit {t.contract}.{t.method} here")
        return raw, t

    def session(req: Request) -> Session:
        return auth.patient(req)

    @r.route("POST", "/api/portal/challenge")
    async def challenge(req: Request) -> Response:
        return json_response(auth.challenge_json(req))

    @r.route("POST", "/api/portal/login")
    async def login(req: Request) -> Response:
        key, ch, sig = auth.login_body(req)
        who = auth.identity(key)
        if who.kind != "patient" or not who.active:
            raise HttpError(403, "that key is not an active patient of this consortium")
        try:
            sessions.verify(key, ch, sig)
        except PortalError as exc:
            raise HttpError(403, str(exc)) from None
        token = open_session(sessions, key, who.id)
        return json_response({"patient": who.id}, headers=[session_cookie(token)])

    @r.route("POST", "/api/portal/logout")
    async def logout(req: Request) -> Response:
        sessions.logout(auth.token(req))
        return json_response({"ok": True}, headers=[CLEAR_COOKIE])

    @r.route("GET", "/api/portal/me")
    async def me(req: Request) -> Response:
        s = session(req)
        args = {"patient": s.subject}
        recs = query("records", "by_patient", args, s.key)
        for rec in recs:
            rec["custodian_name"] = org_names.get(rec.get("custodian", ""), "")
        options = grant_options(
            [(o.org_id, o.name, o.role) for o in orgs], [r.get("category") for r in recs]
        )
        return json_response(
            {
                "patient": s.subject,
                "public_key": s.key.hex(),
                "chain_id": g.chain_id,
                "records": recs,
                "consents": consents_of(s, registry()),
                "grant_options": options,
            },
            headers=list(NO_STORE),
        )

    @r.route("GET", "/api/portal/accesses")
    async def accesses(req: Request) -> Response:
        """One page of the patient's access log, newest first: ``limit`` entries
        older than the cursor ``before`` (the ``next`` of the page before), each
        with who asked, the decision and its reason in words."""
        s = session(req)
        limit = int_param(req.query, "limit", limits.access_page_default, 1, limits.access_page_max)
        before = None
        if "before" in req.query:
            before = parse_cursor(req.query["before"])
            if before is None:
                raise HttpError(400, "before is a cursor from a page's next")
        args: dict[str, Any] = {"patient": s.subject}
        if before is not None:
            args["before_ms"] = before[0] + 1  # (the entries of that same block too)
        entries = query("access", "by_patient", args, s.key)
        page, older = access_page(entries, before, limit, len(entries) >= ACCESS_WINDOW)
        reg = registry()
        consents = {c["id"]: c for c in consents_of(s, reg)} if page else {}
        return json_response(
            {
                "accesses": [describe_access(e, s.subject, reg, consents) for e in page],
                "next": cursor_of(older) if older is not None else None,
                "limit": limit,
            },
            headers=list(NO_STORE),
        )

    @r.route("GET", "/api/portal/events")
    async def events(req: Request) -> Response:
        s = session(req)
        # A stream holds a connection for as long as the page is open: a few per
        # patient (tabs), refused beyond (an EventSource does not retry a 429).
        if streams.get(s.subject, 0) >= limits.max_streams_per_patient:
            raise HttpError(429, "too many live views open for this patient; close one")
        streams[s.subject] = streams.get(s.subject, 0) + 1

        def release() -> None:
            left = streams.pop(s.subject, 1) - 1
            if left > 0:
                streams[s.subject] = left

        async def stream() -> Any:
            sub = d.events.subscribe(
                EventFilter(kinds=frozenset({"event"}), attrs={"patient": s.subject})
            )
            try:
                yield b"retry: 1000\n: connected\n\n"
                # the key is re-checked at every event and keep-alive: a revoked
                # key's stream ends
                while auth.current(req)[1] is not None:
                    with trio.move_on_after(15) as cs:
                        note = await sub.receive.receive()
                    if cs.cancelled_caught:
                        yield b": keep-alive\n\n"
                        continue
                    data = {
                        "contract": note["contract"],
                        "name": note["name"],
                        "attrs": to_json(note["attrs"]),
                        "tx_id": note["tx_id"],
                        "height": note["height"],
                    }
                    yield f"event: {note['contract']}\ndata: {json.dumps(data)}\n\n".encode()
            except trio.EndOfChannel:
                return  # too slow a reader: dropped; the browser reconnects
            finally:
                sub.close()

        return Response(200, content_type="text/event-stream", stream=stream, release=release)

    @r.route("POST", "/api/portal/submit")
    async def submit(req: Request) -> Response:
        s = session(req)
        raw, _ = signed_tx(req, s, PORTAL_TXS)
        async with req.waiting():  # on consensus: the work slot goes to others meanwhile
            try:
                tx_id = await d.submit(raw)
            except PoolReject as exc:
                raise HttpError(400, f"{exc.code}: {exc}") from None
            await d.wait_committed(tx_id, 10.0)
        return json_response(tx_status(d, tx_id))

    @r.route("POST", "/api/portal/fetch")
    async def fetch(req: Request) -> Response:
        """Fetch the patient's own records from their custodian: the browser signs an
        ``access.request_many`` naming them; the custodian commits the access entry,
        then returns each record sealed to the patient's key (base64), or why not."""
        s = session(req)
        if records is None:
            raise HttpError(503, "this node does not serve records")
        raw, _ = signed_tx(req, s, FETCH_TXS)
        async with req.waiting():  # on the custodian, over the network
            reply = await records.fetch(raw)
        return json_response(
            {
                "tx_id": reply.tx_id.hex(),
                "error": reply.error,
                "items": [
                    {
                        "record_id": it.record_id,
                        "status": it.status,
                        "reason": it.reason,
                        "sealed": base64.b64encode(it.sealed).decode() if it.sealed else "",
                    }
                    for it in reply.items
                ],
            }
        )

    del challenge, login, logout, me, accesses, events, submit, fetch
