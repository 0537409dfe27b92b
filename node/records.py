"""The record service: the vault's front door and the fetch protocol.

Custodian side
  ``put``: canonicalise FHIR resources, store them encrypted in the vault,
  return what must be anchored (content hash, salted-field root, date, type).
  ``serve``: answer a fetch. The request carries an ``access.request_many``
  transaction signed by the requester. The custodian checks it names only its
  own records, commits it (the access-log entry, permit or deny, is on chain
  BEFORE anything is released), reads the decisions from the committed
  result, and returns each permitted record sealed to the requester's key.
  A vault entry that does not decrypt or match its anchor is an integrity
  error naming the record, never data.

Requester side
  ``fetch``: route the signed request to the custodian's node over libp2p
  (``/medchain/records/1``) and wait for the reply; the reply stays sealed,
  so only the requester's own application can open and verify it.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from typing import Any

import trio

from node.driver import Driver
from node.pool import PoolReject
from node.records_wire import (
    DENIED,
    ERROR,
    OK,
    FetchItem,
    FetchReply,
    FetchRequest,
    decode_frame,
    sealed_payload,
)
from node.transport import CHANNEL_RECORDS, Incoming
from storage.codec import DecodeError
from storage.crypto import seal_to, sha256
from storage.fhirdoc import FhirError, canonical_json, clinical_date, fields_root
from storage.tx import Transaction
from storage.vault import Vault, VaultIntegrityError

log = logging.getLogger("medchain.records")

FETCH_METHODS = ("request", "request_many")


class RecordService:
    def __init__(self, driver: Driver, vault: Vault, fetch_timeout_s: float = 30.0) -> None:
        self.driver = driver
        self.vault = vault
        self.org = driver.genesis.organizations[driver.index].org_id
        self.fetch_timeout_s = fetch_timeout_s
        self.resend_s = 3.0
        self._serving: set[bytes] = set()
        self._waiting: dict[bytes, tuple[trio.Event, list[FetchReply]]] = {}
        self.stats = {"served": 0, "released": 0, "denied": 0, "integrity_errors": 0}
        driver.channel_handlers[CHANNEL_RECORDS] = self.on_frame

    # -- custodian: storing ---------------------------------------------------------

    def put(
        self,
        resource: Any,
        patient: str,
        record_id: str | None = None,
        salt_seed: bytes | None = None,
    ) -> dict[str, Any]:
        """Store one FHIR resource; idempotent for the same id and content."""
        rid, rtype, date, content = describe_record(resource, self.org, record_id, self.vault)
        h = sha256(content)
        existing = self.vault.get(rid) if self.vault.has(rid) else None
        if existing is not None and existing.content_hash == h:
            meta = existing.meta
            return {
                "record_id": rid,
                "status": "exists",
                "content_hash": h,
                "fields_root": meta["fields_root"],
                "category": rtype,
                "clinical_date": date,
                "clinical_year": int(date[:4]),
                "patient": meta["patient"],
            }
        if existing is not None:
            raise FhirError(f"{rid} is already stored with different content; amend it instead")
        seed = salt_seed or secrets.token_bytes(32)
        root = fields_root(resource, seed)
        self.vault.put(
            rid,
            content,
            seed,
            {"patient": patient, "category": rtype, "clinical_date": date, "fields_root": root},
        )
        return {
            "record_id": rid,
            "status": "stored",
            "content_hash": h,
            "fields_root": root,
            "category": rtype,
            "clinical_date": date,
            "clinical_year": int(date[:4]),
            "patient": patient,
        }

    def local_date(self, record_id: str) -> str | None:
        """The exact clinical date of a record this node is custodian of (None otherwise)."""
        try:
            rec = self.vault.get(record_id)
        except VaultIntegrityError as exc:
            log.error("%s", exc, extra={"event": "integrity-error", "record": record_id})
            return None
        date = None if rec is None else rec.meta.get("clinical_date")
        return date if isinstance(date, str) else None

    # -- custodian: serving a fetch -------------------------------------------------------

    async def serve(self, req: FetchRequest) -> FetchReply:
        self.stats["served"] += 1
        d = self.driver
        try:
            tx = Transaction.decode(req.tx, d.genesis.consensus.max_tx_bytes)
        except DecodeError as exc:
            return FetchReply(req.request_id, b"", (), f"malformed access transaction: {exc}")
        if (
            tx.chain_id != d.genesis.chain_id
            or tx.contract != "access"
            or tx.method not in FETCH_METHODS
        ):
            return FetchReply(
                req.request_id,
                b"",
                (),
                "a fetch must carry an access.request_many transaction for this chain",
            )
        if not isinstance(tx.args, dict):
            return FetchReply(req.request_id, b"", (), "bad access transaction arguments")
        record_ids = (
            tx.args.get("records") if tx.method == "request_many" else [tx.args.get("record_id")]
        )
        if (
            not isinstance(record_ids, list)
            or not record_ids
            or not all(isinstance(r, str) for r in record_ids)
        ):
            return FetchReply(req.request_id, b"", (), "the access transaction names no records")
        for rid in record_ids:
            head = self._anchor(rid)
            if head is None or head["custodian"] != self.org:
                return FetchReply(
                    req.request_id, b"", (), f"record {rid} is not held by {self.org}"
                )
        tx_id = tx.tx_id
        # The access decision is committed on chain before anything is released.
        if d.ledger.tx(tx_id) is None:
            try:
                await d.submit(req.tx)
            except PoolReject as exc:
                if exc.code != "duplicate":
                    return FetchReply(
                        req.request_id, tx_id, (), f"access transaction refused: {exc}"
                    )
            if not await d.wait_committed(tx_id, self.fetch_timeout_s):
                return FetchReply(
                    req.request_id, tx_id, (), "the access transaction was not committed in time"
                )
        loc = d.ledger.tx(tx_id)
        assert loc is not None
        if not loc.result.ok:
            return FetchReply(
                req.request_id, tx_id, (), f"access transaction failed: {loc.result.data}"
            )
        decisions = loc.result.data if isinstance(loc.result.data, list) else [loc.result.data]
        items = []
        own_patient = None
        for dec in decisions:
            rid = dec["record_id"] if "record_id" in dec else record_ids[0]
            if dec["decision"] != "permit":
                self.stats["denied"] += 1
                items.append(FetchItem(rid, DENIED, dec["reason"]))
                continue
            try:
                rec = self.vault.get(rid)
                if rec is None:
                    raise VaultIntegrityError(rid, "not in this node's vault")
                head = self._anchor(rid)
                if head is None or rec.content_hash != head["content_hash"]:
                    raise VaultIntegrityError(
                        rid, "the stored content does not match its on-chain anchor"
                    )
            except VaultIntegrityError as exc:
                self.stats["integrity_errors"] += 1
                log.error("%s", exc, extra={"event": "integrity-error", "record": rid})
                items.append(FetchItem(rid, ERROR, str(exc)))
                continue
            own_patient = dec["reason"] == "the patient's own record"
            payload = sealed_payload(rec.content, rec.salt_seed if own_patient else b"")
            items.append(FetchItem(rid, OK, dec["reason"], seal_to(tx.sender, payload)))
            self.stats["released"] += 1
        log.info(
            "fetch %s: %d released, %d denied",
            tx_id.hex()[:12],
            sum(1 for i in items if i.status == OK),
            sum(1 for i in items if i.status == DENIED),
            extra={"event": "fetch-served"},
        )
        return FetchReply(req.request_id, tx_id, tuple(items))

    def _anchor(self, record_id: str) -> Any:
        try:
            return self.driver.executor.query(
                self.driver.ledger,
                "records",
                "get",
                {"record_id": record_id},
                self.driver.ledger.height,
                self.driver.ledger.last_timestamp_ms,
            )
        except Exception:
            return None

    # -- requester side ---------------------------------------------------------------

    async def fetch(self, tx_raw: bytes) -> FetchReply:
        """Send a signed access transaction to the custodian of its records; wait for the reply."""
        d = self.driver
        req = FetchRequest(secrets.token_bytes(16), tx_raw)
        try:
            tx = Transaction.decode(tx_raw, d.genesis.consensus.max_tx_bytes)
            records = tx.args.get("records") if isinstance(tx.args, dict) else None
            first = (
                records[0]
                if isinstance(records, list) and records
                else (tx.args or {}).get("record_id")
            )
        except (DecodeError, AttributeError):
            return FetchReply(req.request_id, b"", (), "malformed access transaction")
        anchor = self._anchor(str(first))
        if anchor is None:
            return FetchReply(req.request_id, b"", (), f"record {first} is not anchored")
        custodian = anchor["custodian"]
        if custodian == self.org:
            return await self.serve(req)
        peer = next(
            (i for i, o in enumerate(d.genesis.organizations) if o.org_id == custodian), None
        )
        if peer is None:
            return FetchReply(req.request_id, b"", (), f"unknown custodian {custodian}")
        event = trio.Event()
        slot: list[FetchReply] = []
        self._waiting[req.request_id] = (event, slot)
        try:
            # Resend until answered: a frame can be lost while a connection is being
            # replaced; the custodian treats a repeat of the same transaction idempotently.
            with trio.move_on_after(self.fetch_timeout_s + 5):
                while not event.is_set():
                    d.transport.send(peer, CHANNEL_RECORDS, req.encode())
                    with trio.move_on_after(self.resend_s):
                        await event.wait()
        finally:
            self._waiting.pop(req.request_id, None)
        if not slot:
            return FetchReply(req.request_id, b"", (), f"no answer from {custodian} in time")
        return slot[0]

    async def on_frame(self, msg: Incoming) -> None:
        try:
            frame = decode_frame(msg.payload)
        except DecodeError as exc:
            self.driver._garbage(msg.peer, f"undecodable records frame: {exc}")
            return
        if isinstance(frame, FetchRequest):
            if frame.request_id in self._serving:
                return  # a resend of a request still being served: one answer is enough
            self._serving.add(frame.request_id)
            try:
                reply = await self.serve(frame)
            finally:
                self._serving.discard(frame.request_id)
            self.driver.transport.send(msg.peer, CHANNEL_RECORDS, reply.encode())
        else:
            waiting = self._waiting.get(frame.request_id)
            if waiting is not None:
                waiting[1].append(frame)
                waiting[0].set()


MAX_RECORD_ID = 256


def describe_record(
    resource: Any, org: str, record_id: Any = None, vault: Vault | None = None
) -> tuple[str, str, str, bytes]:
    """Check a resource a member system hands us: (record id, type, clinical date,
    canonical JSON). Raises FhirError, with the reason, for anything else.

    Without an explicit ``record_id`` the id is the vault's opaque id of the
    resource's own id (or of its content, if it has none): the chain never sees
    the source system's identifiers."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirError("not a FHIR resource (no resourceType)")
    if record_id is not None and not isinstance(record_id, str):
        raise FhirError("record_id must be a string")
    rtype = resource["resourceType"]
    date = clinical_date(resource)
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise FhirError(f"{rtype} has a clinical date that is not a date: {date!r}") from None
    try:
        content = canonical_json(resource)
    except (ValueError, TypeError, RecursionError) as exc:  # NaN, Infinity, too deep
        raise FhirError(f"resource is not canonical JSON: {str(exc)[:80]}") from None
    if record_id:
        rid = record_id
    else:
        source = resource.get("id")
        source = source if isinstance(source, str) and source else "sha256:" + sha256(content).hex()
        rid = (
            vault.opaque_id(org, rtype, source) if vault is not None else f"{org}:{rtype}:{source}"
        )
    if not 0 < len(rid) <= MAX_RECORD_ID:
        raise FhirError(f"record id must be 1 to {MAX_RECORD_ID} characters")
    return rid, rtype, date, content
