"""The explorer's block, transaction, record and search routes, each shaped for
the request's viewer (node/web/visibility.py).

A stranger gets heights, hashes, times, counts and, of each transaction, its
contract, method, size and outcome. Records are never shown to a stranger,
and a stranger's answer about a record id is the same whether or not it
exists ("sign in to see it"): record ids come from clinical systems, and
knowing that one exists at a custodian already says something about a
person. A signed-in viewer who may not see a record gets the same answer as
for an id that does not exist.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from medchain.contracts.app import ChaincodeError
from medchain.contracts.identity import Identity, resolve
from medchain.contracts.sdk import pseudonym_of
from medchain.node.consensus.driver import Driver
from medchain.node.rpc.chain_api import block_json, tx_status
from medchain.node.rpc.jsonval import to_json
from medchain.node.web.auth import Auth
from medchain.node.web.limits import WebLimits
from medchain.node.web.protocol import (
    HttpError,
    Request,
    Response,
    Router,
    int_param,
    json_response,
)
from medchain.node.web.visibility import (
    FULL,
    PUBLIC,
    TxView,
    Viewer,
    record_visible,
    shape_tx,
    tx_view,
)
from medchain.storage.block import Block
from medchain.storage.codec import DecodeError
from medchain.storage.ledger import TxLocation
from medchain.storage.tx import Transaction

HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
DIGITS = re.compile(r"^[0-9]{1,19}$")  # ASCII only: int() also takes "²" for a digit
BLOCK_CACHE = 8  # decoded blocks kept for their pages (the heavy part of a page)
MAX_RECORD_ID = 128
NO_STORE = [("cache-control", "no-store"), ("vary", "cookie, authorization")]
SIGN_IN_FOR_RECORDS = "records are shown only after signing in: sign in to see it"


def viewer_json(value: Any) -> Response:
    """A response that depends on who asks: never cached or shared."""
    return json_response(value, headers=list(NO_STORE))


class BlockCache:
    """The last few blocks decoded, by height: a committed block never changes,
    and the pages of one big block are read one after another."""

    def __init__(self, d: Driver, size: int = BLOCK_CACHE) -> None:
        self.d = d
        self.size = size
        self._blocks: OrderedDict[int, Block] = OrderedDict()

    def get(self, height: int) -> Block | None:
        b = self._blocks.get(height)
        if b is not None:
            self._blocks.move_to_end(height)
            return b
        b = self.d.ledger.block(height)
        if b is not None:
            self._blocks[height] = b
            while len(self._blocks) > self.size:
                self._blocks.popitem(last=False)
        return b


def add_explorer_routes(
    r: Router, d: Driver, auth: Auth, limits: WebLimits, blocks: BlockCache
) -> None:
    g = d.genesis
    orgs = g.organizations

    def sender_of(key: bytes) -> Identity:
        return resolve(d.ledger.state_get, g, key)

    def identity_json(who: Identity) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": who.kind, "id": who.id, "org": who.org}
        if who.kind == "unknown":
            out["id"] = pseudonym_of(who.key, "key")[:16]
        return out

    def view_of(viewer: Viewer, t: Transaction, loc: TxLocation) -> TxView:
        if viewer.kind == "anonymous":
            return TxView(PUBLIC)  # (no need to decode anything for a stranger)
        res = loc.result
        events = [to_json(e.attrs) for e in res.events]
        result = to_json(res.data) if res.ok else None
        return tx_view(viewer, sender_of(t.sender), to_json(t.args), result, events)

    @r.route("GET", "/api/blocks/{ref}")
    async def block(req: Request) -> Response:
        """A block's header, certificate and one page of its transactions
        (``offset``, ``limit``; at most ``tx_page_max`` a page)."""
        viewer = auth.viewer(req)
        ref = req.params["ref"]
        height = _block_height(d, ref)
        b = blocks.get(height) if height is not None else None
        if b is None:
            raise HttpError(404, f"no block {ref}")
        offset = int_param(req.query, "offset", 0, 0, len(b.txs))
        limit = int_param(req.query, "limit", limits.tx_page_default, 1, limits.tx_page_max)
        page = slice(offset, offset + limit)
        # The block with this page's transactions only: hash, header and certificate
        # are the block's own (its hash covers the header), tx_ids the page's.
        out = block_json(d, replace(b, txs=b.txs[page], ids=b.ids[page]))
        txs = []
        for i, (raw, tx_id) in enumerate(zip(b.txs[page], out["tx_ids"], strict=True)):
            if i and i % limits.render_batch == 0:
                await req.checkpoint()  # let consensus run between batches
            entry: dict[str, Any] = {"tx_id": tx_id, "size": len(raw)}
            try:
                t = Transaction.decode(raw)
            except DecodeError:
                entry.update(contract=None, method=None, ok=False, detail=PUBLIC)
                txs.append(entry)
                continue
            loc = d.ledger.tx(bytes.fromhex(tx_id))
            entry.update(contract=t.contract, method=t.method, ok=loc is not None and loc.result.ok)
            level = view_of(viewer, t, loc).level if loc is not None else PUBLIC
            if level == FULL:
                entry["sender"] = identity_json(sender_of(t.sender))
            entry["detail"] = level
            txs.append(entry)
        out["txs"] = txs
        out.update(tx_count=len(b.txs), offset=offset, limit=limit)
        out["quorum"] = 2 * ((len(orgs) - 1) // 3) + 1
        return viewer_json(out)

    @r.route("GET", "/api/tx/{tx_id}")
    async def tx(req: Request) -> Response:
        viewer = auth.viewer(req)
        tx_id = req.params["tx_id"]
        if not HEX64.match(tx_id):
            raise HttpError(400, "a transaction id is 64 hex digits")
        raw_id = bytes.fromhex(tx_id)
        full = tx_status(d, raw_id)
        if full["status"] == "unknown":
            raise HttpError(404, f"no transaction {tx_id}")
        view = TxView(FULL) if viewer.kind == "regulator" else TxView(PUBLIC)
        loc = d.ledger.tx(raw_id)
        b = d.ledger.block(loc.height) if loc is not None else None
        if loc is not None and b is not None:
            raw = b.txs[loc.index]
            t = Transaction.decode(raw)
            full.update(
                contract=t.contract,
                method=t.method,
                size=len(raw),
                args=to_json(t.args),
                sender=identity_json(sender_of(t.sender)),
                nonce=t.nonce,
                block_hash=b.hash.hex(),
                tx_root=b.header.tx_root.hex(),
            )
            view = view_of(viewer, t, loc)
        return viewer_json(shape_tx(full, view))

    def visible_record(viewer: Viewer, rid: str) -> tuple[Any, list[Any]] | None:
        """The record's head and versions this viewer may see, or None."""
        try:
            head = to_json(d.query("records", "get", {"record_id": rid}))
            versions = to_json(d.query("records", "history", {"record_id": rid}))
        except ChaincodeError:
            return None
        if not isinstance(versions, list):
            versions = []
        shown = [v for v in versions if record_visible(viewer, v)]
        if not record_visible(viewer, head):
            if not shown:
                return None
            head = None
        return head, shown

    def record_id_param(rid: str) -> str:
        if not rid or len(rid) > MAX_RECORD_ID:
            raise HttpError(400, f"a record id is 1 to {MAX_RECORD_ID} characters")
        return rid

    @r.route("GET", "/api/records/{record_id}")
    async def record(req: Request) -> Response:
        viewer = auth.viewer(req)
        rid = record_id_param(req.params["record_id"])
        if not viewer.signed_in:
            raise HttpError(401, SIGN_IN_FOR_RECORDS)
        found = visible_record(viewer, rid)
        if found is None:
            raise HttpError(404, f"no record {rid} in your view")
        return viewer_json({"record": found[0], "history": found[1]})

    @r.route("GET", "/api/search")
    async def search(req: Request) -> Response:
        viewer = auth.viewer(req)
        q = req.query.get("q", "").strip()
        if not q:
            raise HttpError(400, "search for a height, block hash, tx id or record id")
        if DIGITS.match(q):
            if d.ledger.block_bytes(int(q)) is not None:
                return viewer_json({"kind": "block", "ref": str(int(q))})
        elif HEX64.match(q):
            raw = bytes.fromhex(q)
            if d.ledger.height_of(raw) is not None:
                return viewer_json({"kind": "block", "ref": q.lower()})
            if tx_status(d, raw)["status"] != "unknown":
                return viewer_json({"kind": "tx", "ref": q.lower()})
        # Anything else may be a record id: a stranger is told the same for any
        # query (existing or not), a viewer only about the records in their view.
        if not viewer.signed_in:
            raise HttpError(401, f"no public block or transaction matches; {SIGN_IN_FOR_RECORDS}")
        if len(q) <= MAX_RECORD_ID and visible_record(viewer, q) is not None:
            return viewer_json({"kind": "record", "ref": q})
        raise HttpError(404, f"nothing found for {q!r} in your view")

    del block, tx, record, search


def _block_height(d: Driver, ref: str) -> int | None:
    if ref.isascii() and ref.isdigit():
        return int(ref) if DIGITS.match(ref) else None
    if HEX64.match(ref):
        return d.ledger.height_of(bytes.fromhex(ref))
    raise HttpError(400, "a block is named by its height or its 64-hex-digit hash")
