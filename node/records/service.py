"""The record service: the vault's front door and the fetch protocol.

Custodian side
  ``put``: canonicalise FHIR resources, store them encrypted in the vault
  (a call's resources in one synced batch, written on a worker thread), and
  return what must be anchored (content hash, salted-field root, date, type).
  ``serve``: answer a fetch. The request carries an ``access.request_many``
  transaction signed by the requester. The custodian commits it (the
  access-log entry, permit or deny, is on chain BEFORE anything is released),
  reads the decisions from the committed result, and returns each permitted
  record of its own sealed to the requester's key — only for a decision it
  has not redeemed before, committed within the release window, and still
  permitted at the head (node/records/release.py); what it refuses, it logs on chain
  (``access.refuse_release``). A vault entry that does not decrypt or match
  its anchor is an integrity error naming the record, never data.

Requester side
  ``fetch``: route the signed request to the custodian's node over libp2p
  (``/medchain/records/1``) — the custodian it is addressed to, or each
  custodian of a record it names — and merge the replies; they stay sealed,
  so only the requester's own application can open and verify them.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from medchain.node.consensus.driver import Driver
from medchain.node.mempool.pool import PoolReject
from medchain.node.net.transport import CHANNEL_RECORDS, Incoming
from medchain.node.records.release import (
    NO_LONGER_PERMITTED,
    REDEEMED,
    REDEEMED_REASON,
    STALE,
    Redemptions,
    RefusalGate,
    ReleasePolicy,
    ReplyCache,
    StoredRedemptions,
    no_longer_reason,
    stale_reason,
)
from medchain.node.records.wire import (
    DENIED,
    ERROR,
    OK,
    FetchItem,
    FetchReply,
    FetchRequest,
    decode_frame,
    parse_request,
    sealed_payload,
)
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import seal_to, sha256
from medchain.storage.fhirdoc import FhirError, canonical_json, clinical_date, fields_root
from medchain.storage.tx import Transaction, make_tx
from medchain.storage.vault import Vault, VaultIntegrityError, VaultPut

log = logging.getLogger("medchain.records")

OWN_RECORD = "the patient's own record"  # consent.OWN_RECORD: the patient also gets the field salts


@dataclass(frozen=True)
class PutItem:
    """One resource a member system hands over for storing."""

    resource: Any
    patient: str
    record_id: Any = None  # a string or None; describe_record refuses anything else
    salt_seed: bytes | None = None


class RecordService:
    def __init__(
        self,
        driver: Driver,
        vault: Vault,
        fetch_timeout_s: float = 30.0,
        policy: ReleasePolicy | None = None,
        redemptions: Redemptions | None = None,
    ) -> None:
        self.driver = driver
        self.vault = vault
        self.org = driver.genesis.organizations[driver.index].org_id
        self.fetch_timeout_s = fetch_timeout_s
        self.policy = policy or ReleasePolicy()
        self.redemptions: Redemptions = (
            redemptions if redemptions is not None else StoredRedemptions(driver.local)
        )
        self.refusals = RefusalGate(self.policy.refusal_logs_per_minute)
        self.resend_s = 3.0
        self._serving: set[bytes] = set()
        self._put_lock = threading.Lock()
        self._waiting: dict[bytes, tuple[trio.Event, list[FetchReply]]] = {}
        self._replies = ReplyCache()
        self._nonce = 0
        self._pruned_ms = 0
        self.stats = {
            "served": 0,
            "released": 0,
            "denied": 0,
            "refused": 0,
            "integrity_errors": 0,
        }
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
        out = self.put_many([PutItem(resource, patient, record_id, salt_seed)])[0]
        if isinstance(out, FhirError):
            raise out
        return out

    async def put_many_off_loop(self, items: Sequence[PutItem]) -> list[dict[str, Any] | FhirError]:
        """:meth:`put_many` on a worker thread, so the node serves other calls while
        it encrypts and syncs; returns (and the caller replies) only once synced.
        Not abandoned on cancellation: a batch being written is finished first."""
        return await trio.to_thread.run_sync(self.put_many, items)

    def put_many(self, items: Sequence[PutItem]) -> list[dict[str, Any] | FhirError]:
        """Store FHIR resources, in one synced vault batch; for each item its
        result, or the FhirError saying why it is not stored. Idempotent per item:
        an id already stored (or earlier in ``items``) with the same content is
        "exists", with other content an error. Safe from several threads."""
        out: list[dict[str, Any] | FhirError] = []
        with self._put_lock:  # the exists-check and the write are one step
            batch: list[VaultPut] = []
            pending: dict[str, dict[str, Any]] = {}
            for it in items:
                try:
                    r, new = self._prepare(it, pending)
                except FhirError as exc:
                    out.append(exc)
                    continue
                if new is not None:
                    pending[new.record_id] = r
                    batch.append(new)
                out.append(r)
            self.vault.put_many(batch)
        return out

    def _prepare(
        self, it: PutItem, pending: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], VaultPut | None]:
        """The result of storing ``it``, and what to write for it (None: stored already)."""
        rid, rtype, date, content = describe_record(it.resource, self.org, it.record_id, self.vault)
        h = sha256(content)
        known = pending.get(rid)
        if known is not None:
            if known["content_hash"] != h:
                raise FhirError(f"{rid} is given twice with different content")
            return {**known, "status": "exists"}, None
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
            }, None
        if existing is not None:
            raise FhirError(f"{rid} is already stored with different content; amend it instead")
        seed = it.salt_seed or secrets.token_bytes(32)
        root = fields_root(it.resource, seed)
        meta = {
            "patient": it.patient,
            "category": rtype,
            "clinical_date": date,
            "fields_root": root,
        }
        return {
            "record_id": rid,
            "status": "stored",
            "content_hash": h,
            "fields_root": root,
            "category": rtype,
            "clinical_date": date,
            "clinical_year": int(date[:4]),
            "patient": it.patient,
        }, VaultPut(rid, content, seed, meta)

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
        """Commit the request's access decision (the log entry) if it is not yet
        on chain, then release what it permits of this node's records — once,
        while fresh, and only what still holds now; log what is refused."""
        self.stats["served"] += 1
        d = self.driver
        parsed = parse_request(req.tx, d.genesis.chain_id, d.genesis.consensus.max_tx_bytes)
        if isinstance(parsed, str):
            return FetchReply(req.request_id, b"", (), parsed)
        tx, record_ids, _ = parsed
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
        block = d.ledger.block(loc.height)
        assert block is not None
        data = loc.result.data
        decisions = data if isinstance(data, list) else [data]
        # From here to the redemption nothing awaits: two fetches of one decision
        # cannot both pass the single-use check.
        items, refused = self._release(tx, block.header.timestamp_ms, decisions)
        if refused:
            await self._log_refusals(tx, block.header.timestamp_ms, refused)
        log.info(
            "fetch %s: %d released, %d denied, %d refused",
            tx_id.hex()[:12],
            sum(1 for i in items if i.status == OK),
            sum(1 for i in items if i.status == DENIED) - len(refused),
            len(refused),
            extra={"event": "fetch-served"},
        )
        return FetchReply(req.request_id, tx_id, tuple(items))

    def _release(
        self, tx: Transaction, decided_ms: int, decisions: list[Any]
    ) -> tuple[list[FetchItem], list[tuple[str, str, str]]]:
        """Items for the reply, and the refusals (record, code, reason) to log."""
        now = self.driver.clock()
        age_ms = now - decided_ms
        stale = age_ms > self.policy.window_ms
        redeemed = self.redemptions.redeemed(tx.tx_id)
        purpose = tx.args.get("purpose") if isinstance(tx.args, dict) else None
        items: list[FetchItem] = []
        refused: list[tuple[str, str, str]] = []
        released = False
        for dec in decisions:
            rid = dec["record_id"]
            if dec["decision"] != "permit":  # as logged on chain, wherever the record is
                self.stats["denied"] += 1
                items.append(FetchItem(rid, DENIED, dec["reason"]))
                continue
            head = self._anchor(rid)
            holder = head["custodian"] if head is not None else None
            if holder != self.org:  # its own custodian answers for it
                items.append(FetchItem(rid, ERROR, f"record {rid} is held by {holder}, not here"))
                continue
            refusal = None
            if stale:
                refusal = (STALE, stale_reason(self.policy.window_s))
            else:
                now_verdict = self._recheck(tx.sender, rid, purpose, now, dec.get("consent_id"))
                if now_verdict["decision"] != "permit":
                    refusal = (NO_LONGER_PERMITTED, no_longer_reason(now_verdict["reason"]))
                elif redeemed:
                    refusal = (REDEEMED, REDEEMED_REASON)
            if refusal is not None:
                self.stats["refused"] += 1
                items.append(FetchItem(rid, DENIED, refusal[1]))
                refused.append((rid, *refusal))
                continue
            item = self._sealed(tx, rid, head, dec["reason"])
            released = released or item.status == OK
            items.append(item)
        if released:
            self.redemptions.redeem(tx.tx_id, decided_ms)
            self._prune(now)
        if refused:
            log.warning(
                "refused to release %d records for access decision %s (%s; %d s old)",
                len(refused),
                tx.tx_id.hex()[:12],
                ", ".join(sorted({code for _, code, _ in refused})),
                age_ms // 1000,
                extra={"event": "release-refused"},
            )
        return items, refused

    def _recheck(
        self, requester: bytes, record_id: str, purpose: Any, now_ms: int, under: Any = None
    ) -> Any:
        """The consent check re-run against the head's state, judged at this node's
        time and by the record's exact date (the chain knows its year only); a
        refusal names what fails of ``under``, the consent the decision permitted under."""
        d = self.driver
        args: dict[str, Any] = {"record_id": record_id, "purpose": purpose, "requester": requester}
        if isinstance(under, str):
            args["granted_under"] = under
        date = self.local_date(record_id)
        if date is not None:
            args["clinical_date"] = date
        try:
            return d.executor.query(
                d.ledger,
                "consent",
                "check",
                args,
                d.ledger.height,
                max(now_ms, d.ledger.last_timestamp_ms),
            )
        except Exception as exc:  # a chaincode refusal: the release is not confirmed
            return {"decision": "deny", "reason": f"the check failed: {exc}"}

    def _sealed(self, tx: Transaction, rid: str, head: Any, reason: str) -> FetchItem:
        """The record sealed to the requester, or the integrity error naming it."""
        try:
            rec = self.vault.get(rid)
            if rec is None:
                raise VaultIntegrityError(rid, "not in this node's vault")
            if rec.content_hash != head["content_hash"]:
                raise VaultIntegrityError(
                    rid, "the stored content does not match its on-chain anchor"
                )
        except VaultIntegrityError as exc:
            self.stats["integrity_errors"] += 1
            log.error("%s", exc, extra={"event": "integrity-error", "record": rid})
            return FetchItem(rid, ERROR, str(exc))
        own_patient = reason == OWN_RECORD
        payload = sealed_payload(rec.content, rec.salt_seed if own_patient else b"")
        self.stats["released"] += 1
        return FetchItem(rid, OK, reason, seal_to(tx.sender, payload))

    def _prune(self, now_ms: int) -> None:
        # Entries of decisions older than twice the window: they are refused as
        # stale anyway (the margin covers this node's clock stepping back).
        window = self.policy.window_ms
        if now_ms - self._pruned_ms >= window:
            self._pruned_ms = now_ms
            self.redemptions.prune(now_ms - 2 * window)

    async def _log_refusals(
        self, tx: Transaction, decided_ms: int, refused: list[tuple[str, str, str]]
    ) -> None:
        """Submit ``access.refuse_release`` for what was refused (not waiting for it)."""
        d = self.driver
        todo = self.refusals.fresh(tx.tx_id, refused)
        if not todo:
            return
        if not self.refusals.admit(tx.sender, time.monotonic()):
            log.warning(
                "not logging refusals of %s on chain: over %d a minute for this requester",
                tx.tx_id.hex()[:12],
                self.policy.refusal_logs_per_minute,
                extra={"event": "refusal-log-limited"},
            )
            return
        for i in range(0, len(todo), REFUSALS_PER_TX):
            part = todo[i : i + REFUSALS_PER_TX]
            self._nonce = max(self._nonce + 1, time.time_ns() // 1000)
            entry = make_tx(
                d.signer,
                d.genesis.chain_id,
                self._nonce,
                "access",
                "refuse_release",
                {
                    "decision": tx.tx_id,
                    "decided_ms": decided_ms,
                    "items": [
                        {"record_id": r, "refusal": code, "reason": why} for r, code, why in part
                    ],
                },
            )
            try:
                await d.submit(entry.encode())
            except PoolReject as exc:
                log.warning(
                    "could not log refused release of %s: %s",
                    tx.tx_id.hex()[:12],
                    exc,
                    extra={"event": "refusal-log-failed"},
                )
                return
            self.refusals.logged(tx.tx_id, part)

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
        """Send a signed access transaction to the custodians of its records (the
        one it is addressed to, or each custodian of a record it names) and merge
        their replies: each custodian answers for its own records."""
        d = self.driver
        request_id = secrets.token_bytes(16)
        parsed = parse_request(tx_raw, d.genesis.chain_id, d.genesis.consensus.max_tx_bytes)
        if isinstance(parsed, str):
            return FetchReply(request_id, b"", (), parsed)
        tx, record_ids, addressed = parsed
        holders: dict[str, str] = {}
        for rid in record_ids:
            anchor = self._anchor(rid)
            if anchor is None:
                return FetchReply(request_id, b"", (), f"record {rid} is not anchored")
            holders[rid] = addressed or anchor["custodian"]
        custodians = sorted(set(holders.values()))
        if len(custodians) == 1:
            return await self._ask(custodians[0], FetchRequest(request_id, tx_raw))
        replies: dict[str, FetchReply] = {}

        async def ask(custodian: str) -> None:
            replies[custodian] = await self._ask(
                custodian, FetchRequest(secrets.token_bytes(16), tx_raw)
            )

        async with trio.open_nursery() as nursery:
            for custodian in custodians:
                nursery.start_soon(ask, custodian)
        items = []
        for rid in record_ids:
            reply = replies[holders[rid]]
            mine = [i for i in reply.items if i.record_id == rid]
            items.append(mine[0] if mine else FetchItem(rid, ERROR, reply.error or "no answer"))
        return FetchReply(request_id, tx.tx_id, tuple(items))

    async def _ask(self, custodian: str, req: FetchRequest) -> FetchReply:
        """One custodian's reply to ``req`` (this node's own, or over libp2p)."""
        d = self.driver
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
            # replaced; the custodian answers a repeat of a request it served with the
            # same reply (ReplyCache), not a second release.
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
            key = (msg.peer, frame.request_id)
            cached = self._replies.get(key, frame.tx)
            if cached is not None:  # a resend of a request already answered
                self.driver.transport.send(msg.peer, CHANNEL_RECORDS, cached)
                return
            if frame.request_id in self._serving:
                return  # a resend of a request still being served: one answer is enough
            self._serving.add(frame.request_id)
            try:
                reply = await self.serve(frame)
            finally:
                self._serving.discard(frame.request_id)
            encoded = reply.encode()
            self._replies.put(key, frame.tx, encoded, time.monotonic() + self.policy.window_s)
            self.driver.transport.send(msg.peer, CHANNEL_RECORDS, encoded)
        else:
            waiting = self._waiting.get(frame.request_id)
            if waiting is not None:
                waiting[1].append(frame)
                waiting[0].set()


REFUSALS_PER_TX = 100


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
