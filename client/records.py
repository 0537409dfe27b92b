"""Client side of the record protocol: fetch, unseal, verify against the chain.

The node returns records sealed to the requester's key; only the member's
application (which holds the key) opens them, and it checks each one's
SHA-256 against the anchor on chain before trusting a byte of it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.node.records.wire import open_payload
from medchain.node.rpc.jsonval import from_json
from medchain.storage.crypto import sha256
from medchain.storage.fhirdoc import load_json


class IntegrityError(Exception):
    """A record whose content does not match its on-chain anchor."""

    def __init__(self, record_id: str, why: str) -> None:
        super().__init__(f"integrity error: record {record_id}: {why}")
        self.record_id = record_id


@dataclass
class Fetched:
    record_id: str
    status: str  # ok | denied | error
    reason: str
    anchor: dict[str, Any]
    resource: dict[str, Any] | None = None
    salt_seed: bytes = b""


def anchor_of(rpc: RpcClient, record_id: str) -> dict[str, Any]:
    a: dict[str, Any] = from_json(rpc.query("records", "get", {"record_id": record_id}))
    return a


FETCH_BATCH = 400  # records per access request (the chaincode takes 500; the tx stays < 64 KiB)


def fetch_records(
    rpc: RpcClient, requester: TxBuilder, record_ids: list[str], purpose: str = "treatment"
) -> list[Fetched]:
    """Fetch records from their custodians: signed access transactions of at most
    FETCH_BATCH records, each addressed to one custodian (a replay at another
    custodian is denied and logged)."""
    anchors = {r: anchor_of(rpc, r) for r in record_ids}
    by_custodian: dict[str, list[str]] = {}
    for r in dict.fromkeys(record_ids):
        by_custodian.setdefault(anchors[r]["custodian"], []).append(r)
    batches = [
        (custodian, rids[i : i + FETCH_BATCH])
        for custodian, rids in sorted(by_custodian.items())
        for i in range(0, len(rids), FETCH_BATCH)
    ]
    out: list[Fetched] = []
    for custodian, rids in batches:
        tx = requester.build(
            "access",
            "request_many",
            {"records": rids, "purpose": purpose, "custodian": custodian},
        )
        reply = rpc.call("records.fetch", {"tx": base64.b64encode(tx.encode()).decode()})
        if reply.get("error"):
            out.extend(Fetched(r, "error", reply["error"], anchors[r]) for r in rids)
            continue
        for item in reply["items"]:
            rid = item["record_id"]
            f = Fetched(rid, item["status"], item["reason"], anchors[rid])
            if item["status"] == "ok":
                try:
                    content, salt = open_payload(
                        requester.signer.unseal(base64.b64decode(item["sealed"]))
                    )
                    resource = load_json(content)
                except Exception as exc:
                    f.status, f.reason = (
                        "error",
                        str(
                            IntegrityError(
                                rid, f"the sealed record does not open ({type(exc).__name__})"
                            )
                        ),
                    )
                    out.append(f)
                    continue
                # the released bytes are the canonical content: exactly what was anchored
                if sha256(content) != anchors[rid]["content_hash"]:
                    f.status, f.reason = (
                        "error",
                        str(
                            IntegrityError(rid, "its SHA-256 differs from the anchored fingerprint")
                        ),
                    )
                else:
                    f.resource, f.salt_seed = resource, salt
            out.append(f)
    return out
