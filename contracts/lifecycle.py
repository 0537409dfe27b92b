"""Chaincode lifecycle: installing or upgrading chaincode is a governance
proposal that takes effect only once a majority of member organizations'
admins approved it.

State (namespace ``lifecycle``)::

    prop/<id>      {name, version, hash, proposer, approvals: [org ids], status, height}
    src/<hash>     the chaincode source (UTF-8)
    active/<name>  {version, hash, proposal, height}   -- what the executor runs
"""

from __future__ import annotations

import re
from typing import Any

from medchain.contracts.loader import ChaincodeLoadError, check_source, source_hash
from medchain.contracts.runtime import LIFECYCLE, Context
from medchain.contracts.sdk import Reject, arg_int, arg_str, args_dict, require

RESERVED = {"lifecycle", "kv"}
NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # as in the genesis
MAX_SOURCE = 512 * 1024


class LifecycleChaincode:
    name = LIFECYCLE

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        a = args_dict(args)
        if method == "propose":
            return self._propose(ctx, a)
        if method == "approve":
            return self._approve(ctx, a)
        raise Reject(f"lifecycle has no transaction {method!r}")

    def query(self, ctx: Context, method: str, args: Any) -> Any:
        a = args_dict(args)
        if method == "active":
            return ctx.get_obj(b"active/" + arg_str(a, "name").encode())
        if method == "proposal":
            return ctx.get_obj(b"prop/" + arg_str(a, "id").encode())
        if method == "proposals":
            return [v for _, v in ctx.scan_obj(b"prop/")]
        raise Reject(f"lifecycle has no query {method!r}")

    def _propose(self, ctx: Context, a: dict[str, Any]) -> Any:
        who = ctx.caller
        require(who.is_admin_of(), "only an organization's admin may propose chaincode")
        name = a.get("name")
        require(
            isinstance(name, str) and NAME_RE.fullmatch(name) is not None,
            "a chaincode name is 1-32 of [a-z0-9_-], starting with a letter (its state "
            "namespace must not overlap another's)",
        )
        assert isinstance(name, str)
        require(name not in RESERVED, f"{name!r} is built in and cannot be replaced")
        source = arg_str(a, "source", MAX_SOURCE)
        version = arg_int(a, "version", 1)
        current = ctx.get_obj(b"active/" + name.encode())
        require(current is None or version > current["version"], "the version must increase")
        try:
            check_source(source, name)
        except ChaincodeLoadError as exc:
            raise Reject(str(exc)) from None
        h = source_hash(source)
        pid = ctx.tx_id.hex()[:16]
        ctx.put(b"src/" + h, source.encode())
        proposal = {
            "id": pid,
            "name": name,
            "version": version,
            "hash": h,
            "proposer": who.org,
            "approvals": [who.org],
            "status": "open",
            "height": ctx.height,
        }
        ctx.put_obj(b"prop/" + pid.encode(), proposal)
        ctx.emit("proposed", {"id": pid, "name": name, "version": version, "by": who.org})
        return self._maybe_activate(ctx, proposal)

    def _approve(self, ctx: Context, a: dict[str, Any]) -> Any:
        who = ctx.caller
        require(who.is_admin_of(), "only an organization's admin may approve chaincode")
        pid = arg_str(a, "id", 64)
        proposal = ctx.get_obj(b"prop/" + pid.encode())
        require(proposal is not None, f"no proposal {pid}")
        require(proposal["status"] == "open", f"proposal {pid} is {proposal['status']}")
        require(who.org not in proposal["approvals"], f"{who.org} already approved proposal {pid}")
        proposal["approvals"] = sorted([*proposal["approvals"], who.org])
        ctx.emit("approved", {"id": pid, "by": who.org})
        return self._maybe_activate(ctx, proposal)

    def _maybe_activate(self, ctx: Context, proposal: dict[str, Any]) -> Any:
        members = len(ctx.genesis.organizations)
        if len(proposal["approvals"]) * 2 > members:
            current = ctx.get_obj(b"active/" + proposal["name"].encode())
            if current is not None and proposal["version"] <= current["version"]:
                proposal["status"] = "superseded"
            else:
                proposal["status"] = "active"
                ctx.put_obj(
                    b"active/" + proposal["name"].encode(),
                    {
                        "version": proposal["version"],
                        "hash": proposal["hash"],
                        "proposal": proposal["id"],
                        "height": ctx.height,
                    },
                )
                ctx.emit(
                    "activated",
                    {
                        "name": proposal["name"],
                        "version": proposal["version"],
                        "id": proposal["id"],
                    },
                )
        ctx.put_obj(b"prop/" + proposal["id"].encode(), proposal)
        return {
            "id": proposal["id"],
            "status": proposal["status"],
            "approvals": proposal["approvals"],
            "needed": members // 2 + 1,
        }
