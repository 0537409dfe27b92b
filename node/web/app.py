"""The node's web UI and its JSON API (``/api/...``): the consortium explorer
and the patient portal. Off unless ``http_port`` is set in the node config;
bound to 127.0.0.1 unless ``http_host`` says otherwise.

Without a login the explorer shows only what a stranger may see (heights,
hashes, times, counts, members, consensus status and throughput; of a
transaction its contract, method, size and outcome). A patient, a member
organization's admin and the regulator sign in with their key
(node/web/auth.py) and see their own scope in detail
(node/web/visibility.py). A patient's records, consents and access log (the
portal) are shown only to that patient's session, and live updates reach
only that session.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from importlib import resources
from typing import Any

import trio

from medchain.contracts.app import ChaincodeError
from medchain.node.consensus.driver import Driver
from medchain.node.records.service import RecordService
from medchain.node.rpc.jsonval import to_json
from medchain.node.web.auth import Auth, add_session_routes
from medchain.node.web.explorer import BlockCache, add_explorer_routes
from medchain.node.web.limits import WebLimits
from medchain.node.web.portal import Sessions
from medchain.node.web.portal_api import add_portal_routes, wall_ms
from medchain.node.web.protocol import (
    HttpError,
    Request,
    Response,
    Router,
    int_param,
    json_response,
)

log = logging.getLogger("medchain.http")

HISTORY_EVERY_S = 5.0
SUMMARIES = 4096  # block summaries kept (a committed block's summary never changes)
HISTORY_SAMPLES = 180  # 15 minutes
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "msgpack.js": "text/javascript; charset=utf-8",
    "nacl.js": "text/javascript; charset=utf-8",
}


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
            try:
                self.sample()
            except Exception as exc:  # a chart sample is not worth the node
                log.error(
                    "explorer history sample failed: %s",
                    type(exc).__name__,
                    extra={"event": "http-history-failed"},
                )
            await trio.sleep(HISTORY_EVERY_S)


def _static(name: str) -> bytes:
    return (resources.files("medchain.node.web") / "static" / name).read_bytes()


def build_app(
    d: Driver,
    sessions: Sessions,
    history: History,
    records: RecordService | None = None,
    limits: WebLimits | None = None,
    clock_ms: Callable[[], int] = wall_ms,
) -> Router:
    g = d.genesis
    orgs = g.organizations
    lim = limits or WebLimits()
    cache = BlockCache(d)
    summaries: OrderedDict[int, dict[str, Any]] = OrderedDict()
    r = Router()

    def query(contract: str, method: str, args: Any, caller: bytes = b"") -> Any:
        try:
            return to_json(d.query(contract, method, args, caller))
        except ChaincodeError as exc:
            raise HttpError(404 if "not anchored" in str(exc) else 400, str(exc)) from None

    def block_summary(height: int) -> dict[str, Any] | None:
        s = summaries.get(height)
        if s is not None:
            return s
        b = cache.get(height)
        if b is None:
            return None
        p = g.org_by_node_key(b.header.proposer)
        s = {
            "height": height,
            "hash": b.hash.hex(),
            "txs": len(b.txs),
            "timestamp_ms": b.header.timestamp_ms,
            "proposer": p.org_id if p else None,
        }
        summaries[height] = s
        while len(summaries) > SUMMARIES:
            summaries.popitem(last=False)
        return s

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
        limit = int_param(req.query, "limit", 20, 1, 100)
        top = int_param(req.query, "before", d.ledger.height + 1, 1, 2**62) - 1
        top = min(top, d.ledger.height)
        out = []
        for h in range(top, max(0, top - limit), -1):
            if h not in summaries:
                await req.checkpoint()  # a block to decode: let consensus run first
            s = block_summary(h)
            if s is not None:
                out.append(s)
        return json_response({"height": d.ledger.height, "blocks": out})

    del index, static, status, members, hist, blocks
    auth = Auth(d, sessions)
    add_session_routes(r, auth)
    add_explorer_routes(r, d, auth, lim, cache)
    add_portal_routes(r, d, auth, records, query, lim, clock_ms)
    return r
