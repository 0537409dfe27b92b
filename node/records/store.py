"""Storing FHIR resources in the custodian's vault.

``RecordStore.put_many`` canonicalises the resources a member system hands
over, stores them encrypted (a call's resources in one synced batch, written
on a worker thread by ``put_many_off_loop``), and returns what must be
anchored on chain: content hash, salted-field root, date, type.
``describe_record`` is the check every resource passes first. Apart from the
fetch protocol (node.records.custodian, node.records.requester): storing
needs only the vault, not the chain.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from medchain.storage.crypto import sha256
from medchain.storage.fhirdoc import FhirError, canonical_json, clinical_date, fields_root
from medchain.storage.vault import Vault, VaultIntegrityError, VaultPut

log = logging.getLogger("medchain.records")

MAX_RECORD_ID = 256


@dataclass(frozen=True)
class PutItem:
    """One resource a member system hands over for storing."""

    resource: Any
    patient: str
    record_id: Any = None  # a string or None; describe_record refuses anything else
    salt_seed: bytes | None = None


class RecordStore:
    """The vault's front door for the resources of this node's organization ``org``."""

    def __init__(self, vault: Vault, org: str) -> None:
        self.vault = vault
        self.org = org
        self._put_lock = threading.Lock()

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
            if known["patient"] != it.patient:
                raise RecordConflict(f"{rid} is given twice, for two patients")
            return {**known, "status": "exists"}, None
        existing = self.vault.get(rid) if self.vault.has(rid) else None
        if existing is not None and existing.meta.get("patient") != it.patient:
            raise RecordConflict(f"{rid} is already stored for another patient")
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


class RecordConflict(FhirError):
    """A resource id this custodian already holds for another patient: kept as it
    is, and reported (a source system that reuses ids, or a mistaken patient)."""


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
