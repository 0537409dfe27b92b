"""Test-only fault injection over RPC, for chaos runs.

With ``MEDCHAIN_TEST_FAULTS=1`` in its environment a node also serves
``debug.cut`` (cut this node's links to some or all peers, both directions,
for a while) and ``debug.heal``. Off by default; the daemon logs a warning
when it is on.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from medchain.node.net.p2p_state import FaultSwitch
from medchain.node.rpc.connection import Connection
from medchain.node.rpc.errors import INVALID_PARAMS, RpcError
from medchain.node.rpc.params import param_int
from medchain.node.rpc.server import RpcServer

log = logging.getLogger("medchain.faults")

ENV = "MEDCHAIN_TEST_FAULTS"


def enabled(env: dict[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get(ENV, "") == "1"


def register_faults(server: RpcServer, switch: FaultSwitch, n: int, index: int) -> None:
    @server.method("debug.cut")
    async def cut(conn: Connection, params: dict[str, Any]) -> Any:
        """Cut links to ``peers`` (all when absent) for ``ms`` milliseconds."""
        ms = param_int(params, "ms", 5000)
        if not 0 < ms <= 600_000:
            raise RpcError(INVALID_PARAMS, "ms must be in 1..600000")
        peers = params.get("peers")
        if peers is not None and (
            not isinstance(peers, list)
            or not all(type(p) is int and 0 <= p < n and p != index for p in peers)
        ):
            raise RpcError(INVALID_PARAMS, "peers must be a list of other validator indexes")
        switch.set(None if peers is None else set(peers), ms / 1000)
        log.warning(
            "links cut to %s for %d ms",
            "all peers" if peers is None else sorted(peers),
            ms,
            extra={"event": "fault-cut"},
        )
        return {"cut": "all" if peers is None else sorted(peers), "ms": ms}

    @server.method("debug.heal")
    async def heal(conn: Connection, params: dict[str, Any]) -> Any:
        switch.heal()
        log.warning("links healed", extra={"event": "fault-heal"})
        return {"cut": []}
