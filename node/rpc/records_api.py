"""RPC methods for records: put, fetch, disclose, timeline, evidence."""

from __future__ import annotations

import base64
from typing import Any

import trio

from medchain.contracts.app import ChaincodeError
from medchain.node.records.service import RecordService
from medchain.node.records.store import PutItem, RecordConflict
from medchain.node.rpc.connection import Connection
from medchain.node.rpc.errors import INVALID_PARAMS, NOT_FOUND, RpcError
from medchain.node.rpc.jsonval import to_json
from medchain.node.rpc.params import param_b64, param_str
from medchain.node.rpc.server import RpcServer
from medchain.storage.evidence import EvidenceUnavailable, build_evidence
from medchain.storage.fhirdoc import FhirError, disclose

EVIDENCE_WAIT_S = 10.0


def register_records(server: RpcServer, svc: RecordService) -> None:
    d = svc.driver

    def query(contract: str, method: str, args: Any) -> Any:
        try:
            return d.executor.query(
                d.ledger, contract, method, args, d.ledger.height, d.ledger.last_timestamp_ms
            )
        except ChaincodeError as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None

    @server.method("records.put")
    async def put(conn: Connection, params: dict[str, Any]) -> Any:
        """Store FHIR resources in this node's vault (this node's organization is their custodian).
        params: {items: [{resource, patient, record_id?}]} or a FHIR Bundle as {bundle, patient}."""
        items = params.get("items")
        if items is None and isinstance(params.get("bundle"), dict):
            entries = params["bundle"].get("entry") or []
            items = [
                {"resource": e.get("resource"), "patient": params.get("patient")}
                for e in entries
                if isinstance(e, dict)
            ]
        if not isinstance(items, list) or not items or len(items) > 5000:
            raise RpcError(INVALID_PARAMS, "items must be a list of 1 to 5000 {resource, patient}")
        bad = {
            "status": "invalid",
            "reason": "each item needs a resource and the patient's pseudonym",
        }
        valid = [isinstance(it, dict) and isinstance(it.get("patient"), str) for it in items]
        todo = [
            PutItem(it.get("resource"), it["patient"], it.get("record_id"))
            for it, ok in zip(items, valid, strict=True)
            if ok
        ]
        # One synced batch, off the event loop; the reply waits for the sync.
        done = iter(await svc.store.put_many_off_loop(todo))
        out: list[Any] = []
        for ok in valid:
            r = next(done) if ok else bad
            if isinstance(r, RecordConflict):
                r = {"status": "conflict", "reason": str(r)}
            elif isinstance(r, FhirError):
                r = {"status": "invalid", "reason": str(r)}
            out.append(to_json(r))
        return out

    @server.method("records.fetch")
    async def fetch(conn: Connection, params: dict[str, Any]) -> Any:
        """Fetch records from their custodian with a signed access.request_many transaction.
        Returns each record sealed to the signer (base64), or the reason it was denied."""
        reply = await svc.fetch(param_b64(params, "tx"))
        return {
            "tx_id": reply.tx_id.hex(),
            "error": reply.error or None,
            "items": [
                {
                    "record_id": i.record_id,
                    "status": i.status,
                    "reason": i.reason,
                    "sealed": base64.b64encode(i.sealed).decode() if i.sealed else None,
                }
                for i in reply.items
            ],
        }

    @server.method("records.disclose")
    async def disclose_field(conn: Connection, params: dict[str, Any]) -> Any:
        """The custodian's proof revealing one field of a record it holds (its member
        systems decide, with the patient's consent, when to ask)."""
        rid, field = param_str(params, "record_id"), param_str(params, "field")
        rec = svc.vault.get(rid) if svc.vault.has(rid) else None
        if rec is None:
            raise RpcError(NOT_FOUND, f"{rid} is not in this node's vault")
        import json

        anchor = query("records", "get", {"record_id": rid})
        try:
            proof = disclose(rid, anchor["version"], json.loads(rec.content), rec.salt_seed, field)
        except FhirError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        return proof.to_json()

    @server.method("records.timeline")
    async def timeline(conn: Connection, params: dict[str, Any]) -> Any:
        """Every anchor of a patient across custodians, with whether ``requester`` (a
        public key, hex) may read each. The chain knows each record's clinical year; this
        node adds the exact date of the records it is custodian of (``clinical_date``) and
        orders by year, then date (records of other custodians last within their year:
        their dates come with the records, fetched under consent)."""
        patient = param_str(params, "patient")
        requester = params.get("requester")
        who = None
        if isinstance(requester, str):
            try:
                who = bytes.fromhex(requester)
            except ValueError:
                raise RpcError(INVALID_PARAMS, "requester must be a public key in hex") from None
        anchors = query("records", "by_patient", {"patient": patient})
        out = []
        for a in anchors:
            row = {
                k: to_json(a[k])
                for k in (
                    "record_id",
                    "version",
                    "custodian",
                    "category",
                    "clinical_year",
                    "content_hash",
                    "author_id",
                    "height",
                )
            }
            row["clinical_date"] = svc.store.local_date(a["record_id"])
            if who is not None:
                verdict = query(
                    "consent",
                    "check",
                    {
                        "record_id": a["record_id"],
                        "purpose": params.get("purpose", "treatment"),
                        "requester": who,
                    },
                )
                row.update(decision=verdict["decision"], reason=verdict["reason"])
            out.append(row)
        out.sort(
            key=lambda r: (
                r["clinical_year"],
                r["clinical_date"] or f"{r['clinical_year']}-99",
                r["record_id"],
            )
        )
        return out

    @server.method("evidence.get")
    async def evidence(conn: Connection, params: dict[str, Any]) -> Any:
        """A self-contained evidence certificate (base64) for a record version. Block h+1
        certifies block h's outcomes: for a record anchored in the newest block, this
        waits (a few seconds at most) for the next one."""
        rid = param_str(params, "record_id")
        args: dict[str, Any] = {"record_id": rid}
        if isinstance(params.get("version"), int):
            args["version"] = params["version"]
        anchor = query("records", "get", args)
        height = anchor["height"]
        with trio.move_on_after(EVIDENCE_WAIT_S):
            while d.ledger.height <= height:
                await trio.sleep(0.05)
        try:
            ev = build_evidence(d.ledger, height, anchor["tx_id"], rid, anchor["version"])
        except EvidenceUnavailable as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None
        return {
            "evidence": base64.b64encode(ev.encode()).decode(),
            "height": height,
            "genesis_hash": d.genesis.hash().hex(),
        }

    del put, fetch, disclose_field, timeline, evidence
