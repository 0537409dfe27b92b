"""The node's web UI and its JSON API (``/api/...``): the consortium explorer
and the patient portal. Off unless ``http_port`` is set in the node config;
bound to 127.0.0.1 unless ``http_host`` says otherwise.

Operators see pseudonyms only: the explorer shows what is on chain (which
holds no personal data in clear). A patient's records, consents and access
log are shown only to a session that proved it holds the patient's key
(node/web/portal.py), and live updates reach only that session.
"""

from __future__ import annotations

import re
import time
from collections import deque
from importlib import resources
from typing import Any

import trio

from contracts.identity import resolve
from contracts.runtime import ChaincodeError
from contracts.sdk import pseudonym_of
from node.api import block_json, tx_status
from node.driver import Driver
from node.jsonval import to_json
from node.records import RecordService
from node.web.http import HttpError, Request, Response, Router, json_response
from node.web.portal import Sessions
from node.web.portal_api import add_portal_routes
from storage.codec import DecodeError
from storage.tx import Transaction

HISTORY_EVERY_S = 5.0
HISTORY_SAMPLES = 180  # 15 minutes
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "msgpack.js": "text/javascript; charset=utf-8",
    "nacl.js": "text/javascript; charset=utf-8",
}
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class History:
    """Commit rate and latency over the last minutes, for the explorer's chart."""

    def __init__(self, driver: Driver) -> None:
        self.d = driver
        self.samples: deque[dict[str, Any]] = deque(maxlen=HISTORY_SAMPLES)
        self._last: tuple[float, int] | None = None

    def sample(self) -> None:
        now = time.time()
        m = self.d.metrics
        rate = None
        if self._last is not None and now > self._last[0]:
            rate = (m.txs - self._last[1]) / (now - self._last[0])
        self._last = (now, m.txs)
        self.samples.append(
            {
                "t_ms": int(now * 1000),
                "height": self.d.ledger.height,
                "tx_per_s": None if rate is None else round(rate, 1),
                "p50_ms": m.percentile(0.5),
                "p99_ms": m.percentile(0.99),
            }
        )

    async def run(self) -> None:
        while True:
            self.sample()
            await trio.sleep(HISTORY_EVERY_S)


def _static(name: str) -> bytes:
    return (resources.files("node.web") / "static" / name).read_bytes()


def build_app(
    d: Driver, sessions: Sessions, history: History, records: RecordService | None = None
) -> Router:
    g = d.genesis
    orgs = g.organizations
    r = Router()

    def identity_json(key: bytes) -> dict[str, Any]:
        who = resolve(d.ledger.state_get, g, key)
        out: dict[str, Any] = {"kind": who.kind, "id": who.id, "org": who.org}
        if who.kind == "unknown":
            out["id"] = pseudonym_of(key, "key")[:16]
        return out

    def query(contract: str, method: str, args: Any, caller: bytes = b"") -> Any:
        try:
            return to_json(d.query(contract, method, args, caller))
        except ChaincodeError as exc:
            raise HttpError(404 if "not anchored" in str(exc) else 400, str(exc)) from None

    def block_summary(height: int) -> dict[str, Any] | None:
        b = d.ledger.block(height)
        if b is None:
            return None
        p = g.org_by_node_key(b.header.proposer)
        return {
            "height": height,
            "hash": b.hash.hex(),
            "txs": len(b.txs),
            "timestamp_ms": b.header.timestamp_ms,
            "proposer": p.org_id if p else None,
        }

    # -- pages ----------------------------------------------------------------------

    @r.route("GET", "/")
    async def index(req: Request) -> Response:
        return Response(200, _static("index.html"), STATIC["index.html"])

    @r.route("GET", "/static/{name}")
    async def static(req: Request) -> Response:
        name = req.params["name"]
        if name not in STATIC:
            raise HttpError(404, f"no file {name}")
        return Response(200, _static(name), STATIC[name], [("cache-control", "no-cache")])

    # -- consortium -----------------------------------------------------------------

    @r.route("GET", "/api/status")
    async def status(req: Request) -> Response:
        s = d.status()
        s["members"] = len(orgs)
        s["f"] = (len(orgs) - 1) // 3
        s["txs_committed_here"] = d.metrics.txs
        return json_response(s)

    @r.route("GET", "/api/members")
    async def members(req: Request) -> Response:
        connected = d.transport.connected()
        primary = d.replica.primary
        return json_response(
            [
                {
                    "org_id": o.org_id,
                    "name": o.name,
                    "role": o.role,
                    "node_key": o.node_key.hex(),
                    "this_node": i == d.index,
                    "up": i == d.index or i in connected,
                    "primary": i == primary,
                }
                for i, o in enumerate(orgs)
            ]
        )

    @r.route("GET", "/api/history")
    async def hist(req: Request) -> Response:
        return json_response({"every_s": HISTORY_EVERY_S, "samples": list(history.samples)})

    @r.route("GET", "/api/blocks")
    async def blocks(req: Request) -> Response:
        limit = _int(req.query.get("limit", "20"), 1, 100)
        top = _int(req.query.get("before", str(d.ledger.height + 1)), 1, 2**62) - 1
        top = min(top, d.ledger.height)
        out = []
        for h in range(top, max(0, top - limit), -1):
            s = block_summary(h)
            if s is not None:
                out.append(s)
        return json_response({"height": d.ledger.height, "blocks": out})

    @r.route("GET", "/api/blocks/{ref}")
    async def block(req: Request) -> Response:
        ref = req.params["ref"]
        height = _block_height(d, ref)
        b = d.ledger.block(height) if height is not None else None
        if b is None:
            raise HttpError(404, f"no block {ref}")
        out = block_json(d, b)
        txs = []
        for raw, tx_id in zip(b.txs, out["tx_ids"], strict=True):
            try:
                tx = Transaction.decode(raw)
            except DecodeError:
                continue
            loc = d.ledger.tx(bytes.fromhex(tx_id))
            txs.append(
                {
                    "tx_id": tx_id,
                    "contract": tx.contract,
                    "method": tx.method,
                    "sender": identity_json(tx.sender),
                    "ok": loc is not None and loc.result.code == 0,
                }
            )
        out["txs"] = txs
        out["quorum"] = 2 * ((len(orgs) - 1) // 3) + 1
        return json_response(out)

    @r.route("GET", "/api/tx/{tx_id}")
    async def tx(req: Request) -> Response:
        tx_id = req.params["tx_id"]
        if not HEX64.match(tx_id):
            raise HttpError(400, "a transaction id is 64 hex digits")
        st = tx_status(d, bytes.fromhex(tx_id))
        if st["status"] == "unknown":
            raise HttpError(404, f"no transaction {tx_id}")
        loc = d.ledger.tx(bytes.fromhex(tx_id))
        if loc is not None:
            b = d.ledger.block(loc.height)
            if b is not None:
                t = Transaction.decode(b.txs[loc.index])
                st.update(
                    contract=t.contract,
                    method=t.method,
                    args=to_json(t.args),
                    sender=identity_json(t.sender),
                    nonce=t.nonce,
                    block_hash=b.hash.hex(),
                    tx_root=b.header.tx_root.hex(),
                )
        return json_response(st)

    @r.route("GET", "/api/records/{record_id}")
    async def record(req: Request) -> Response:
        rid = req.params["record_id"]
        head = query("records", "get", {"record_id": rid})
        history_ = query("records", "history", {"record_id": rid})
        return json_response({"record": head, "history": history_})

    @r.route("GET", "/api/search")
    async def search(req: Request) -> Response:
        q = req.query.get("q", "").strip()
        if not q:
            raise HttpError(400, "search for a height, block hash, tx id or record id")
        if q.isdigit():
            if d.ledger.block(int(q)) is not None:
                return json_response({"kind": "block", "ref": str(int(q))})
        elif HEX64.match(q):
            raw = bytes.fromhex(q)
            if d.ledger.height_of(raw) is not None:
                return json_response({"kind": "block", "ref": q.lower()})
            if tx_status(d, raw)["status"] != "unknown":
                return json_response({"kind": "tx", "ref": q.lower()})
        if len(q) <= 128:
            try:
                d.query("records", "get", {"record_id": q})
                return json_response({"kind": "record", "ref": q})
            except ChaincodeError:
                pass
        raise HttpError(404, f"nothing found for {q!r}")

    del index, static, status, members, hist, blocks, block, tx, record, search
    add_portal_routes(r, d, sessions, records, query)
    return r


def _int(v: str, lo: int, hi: int) -> int:
    try:
        n = int(v)
    except ValueError:
        raise HttpError(400, f"{v!r} is not a number") from None
    return max(lo, min(hi, n))


def _block_height(d: Driver, ref: str) -> int | None:
    if ref.isdigit():
        return int(ref)
    if HEX64.match(ref):
        return d.ledger.height_of(bytes.fromhex(ref))
    raise HttpError(400, "a block is named by its height or its 64-hex-digit hash")
