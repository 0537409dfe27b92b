"""The custodian's side of a fetch: answering an access request for records
this node holds.

The request carries an ``access.request_many`` transaction signed by the
requester. The custodian commits it (the access-log entry, permit or deny, is
on chain BEFORE anything is released), reads the decisions from the committed
result, and returns each permitted record of its own sealed to the
requester's key — only for a decision it has not redeemed before, committed
within the release window, and still permitted at the head
(node/records/release.py); what it refuses, it logs on chain
(``access.refuse_release``). A vault entry that does not decrypt or match its
anchor is an integrity error naming the record, never data. A repeated
request is answered from ``ReplyCache``, never released twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from medchain.node.consensus.driver import Driver
from medchain.node.mempool.pool import PoolReject
from medchain.node.net.transport import CHANNEL_RECORDS
from medchain.node.records.release import (
    NO_LONGER_PERMITTED,
    REDEEMED,
    REDEEMED_REASON,
    STALE,
    Redemptions,
    RefusalGate,
    ReleasePolicy,
    ReplyCache,
    no_longer_reason,
    stale_reason,
)
from medchain.node.records.store import RecordStore
from medchain.node.records.wire import (
    DENIED,
    ERROR,
    OK,
    FetchItem,
    FetchReply,
    FetchRequest,
    parse_request,
    sealed_payload,
)
from medchain.storage.crypto import seal_to
from medchain.storage.tx import Transaction, make_tx
from medchain.storage.vault import VaultIntegrityError

log = logging.getLogger("medchain.records")

OWN_RECORD = "the patient's own record"  # consent.OWN_RECORD: the patient also gets the field salts
REFUSALS_PER_TX = 100


class Custodian:
    """Serves fetches of the records in this node's vault (``store``)."""

    def __init__(
        self,
        driver: Driver,
        store: RecordStore,
        fetch_timeout_s: float,
        policy: ReleasePolicy,
        redemptions: Redemptions,
    ) -> None:
        self.driver = driver
        self.store = store
        self.vault = store.vault
        self.org = store.org
        self.fetch_timeout_s = fetch_timeout_s
        self.policy = policy
        self.redemptions = redemptions
        self.refusals = RefusalGate(self.policy.refusal_logs_per_minute)
        self._serving: set[bytes] = set()
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

    async def on_request(self, peer: int, frame: FetchRequest) -> None:
        """Answer a request another node sent on the records channel."""
        key = (peer, frame.request_id)
        cached = self._replies.get(key, frame.tx)
        if cached is not None:  # a resend of a request already answered
            self.driver.transport.send(peer, CHANNEL_RECORDS, cached)
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
        self.driver.transport.send(peer, CHANNEL_RECORDS, encoded)

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
            head = anchor(self.driver, rid)
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
        date = self.store.local_date(record_id)
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


def anchor(driver: Driver, record_id: str) -> Any:
    """The record's anchor at the head (records.get), or None."""
    try:
        return driver.executor.query(
            driver.ledger,
            "records",
            "get",
            {"record_id": record_id},
            driver.ledger.height,
            driver.ledger.last_timestamp_ms,
        )
    except Exception:
        return None
