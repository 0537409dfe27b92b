"""FHIR resources as evidence: canonical bytes, salted field commitments, and
selective-disclosure proofs.

- Canonical content: the JSON Canonicalization Scheme, RFC 8785 (the ``rfc8785``
  library); its SHA-256 is the ``content_hash`` anchored on chain. Numbers are
  IEEE doubles there, so integers beyond 2**53 and NaN are refused.
- Salted fields: each top-level field ``k`` of the resource becomes a leaf
  ``pack(["medchain/field/v2", k, salt_k, canonical(value)])`` (MessagePack:
  every part length-prefixed, so no bytes can move between name, salt and
  value) with ``salt_k = HMAC-SHA256(salt_seed, k)[:16]``; the RFC 6962 Merkle
  root over the leaves in field-name order is the ``fields_root`` anchored on
  chain. A disclosure's salt must be exactly 16 bytes.
  Revealing one field with its salt and Merkle path proves it without
  revealing the others (the salts keep them from being guessed).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import rfc8785

from medchain.storage.codec import pack
from medchain.storage.merkle import inclusion_proof, merkle_root, verify_inclusion

SALT_BYTES = 16
FIELD_DOMAIN = "medchain/field/v2"
DISCLOSURE_FORMAT = 2


class FhirError(ValueError):
    """Not a FHIR resource we can notarize, with the reason."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value; FhirError for what JCS cannot represent (an
    integer beyond 2**53, NaN, a lone surrogate, a non-string key)."""
    try:
        data: bytes = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise FhirError(f"not representable as canonical JSON (RFC 8785): {exc}") from None
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise FhirError(f"the JSON has the key {k!r} twice (RFC 8785 / I-JSON forbid it)")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise FhirError(f"{name} is not JSON")


def load_json(data: bytes | str) -> Any:
    """Parse JSON strictly: FhirError for duplicate keys (two readers could see two
    records), NaN/Infinity, malformed text or nesting too deep."""
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except FhirError:
        raise
    except (ValueError, RecursionError) as exc:
        raise FhirError(f"not JSON: {str(exc)[:80]}") from None


def content_hash(resource: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(resource)).digest()


def field_salt(salt_seed: bytes, field: str) -> bytes:
    return hmac.new(salt_seed, field.encode(), hashlib.sha256).digest()[:SALT_BYTES]


def field_leaf(field: str, salt: bytes, value: Any) -> bytes:
    return pack([FIELD_DOMAIN, field, salt, canonical_json(value)])


def field_leaves(resource: dict[str, Any], salt_seed: bytes) -> tuple[list[str], list[bytes]]:
    names = sorted(resource)
    return names, [field_leaf(k, field_salt(salt_seed, k), resource[k]) for k in names]


def fields_root(resource: dict[str, Any], salt_seed: bytes) -> bytes:
    return merkle_root(field_leaves(resource, salt_seed)[1])


@dataclass(frozen=True)
class Disclosure:
    """One field of a notarized record, provable against the anchor's fields_root."""

    record_id: str
    version: int
    field: str
    value: Any
    salt: bytes
    index: int
    size: int
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "medchain_disclosure": DISCLOSURE_FORMAT,
            "record_id": self.record_id,
            "version": self.version,
            "field": self.field,
            "value": self.value,
            "salt": self.salt.hex(),
            "index": self.index,
            "size": self.size,
            "path": [p.hex() for p in self.path],
        }

    @classmethod
    def from_json(cls, doc: Any) -> Disclosure:
        try:
            if doc.get("medchain_disclosure") != DISCLOSURE_FORMAT:
                raise ValueError(
                    f"not a medchain disclosure proof of format {DISCLOSURE_FORMAT}"
                    + (
                        " (format 1 is no longer accepted: disclose again)"
                        if doc.get("medchain_disclosure") == 1
                        else ""
                    )
                )
            canonical_json(doc["value"])  # NaN, Infinity: not JSON, so never a field's value
            strings = [doc[k] for k in ("record_id", "field", "salt")]
            numbers = [doc[k] for k in ("version", "index", "size")]
            if not all(type(x) is str for x in strings) or not all(type(x) is int for x in numbers):
                raise ValueError(
                    "record_id, field and salt are strings; version, index, size integers"
                )
            salt = bytes.fromhex(doc["salt"])
            if len(salt) != SALT_BYTES:
                raise ValueError(f"the salt is {SALT_BYTES} bytes ({2 * SALT_BYTES} hex digits)")
            return cls(
                doc["record_id"],
                doc["version"],
                doc["field"],
                doc["value"],
                salt,
                doc["index"],
                doc["size"],
                tuple(bytes.fromhex(p) for p in doc["path"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:
            raise FhirError(f"malformed disclosure proof: {exc}") from None

    def verify(self, anchored_fields_root: bytes) -> bool:
        if len(self.salt) != SALT_BYTES:
            return False
        leaf = field_leaf(self.field, self.salt, self.value)
        return verify_inclusion(leaf, self.index, self.size, self.path, anchored_fields_root)


def disclose(
    record_id: str, version: int, resource: dict[str, Any], salt_seed: bytes, field: str
) -> Disclosure:
    names, leaves = field_leaves(resource, salt_seed)
    if field not in resource:
        raise FhirError(f"the record has no field {field!r} (it has {', '.join(names)})")
    i = names.index(field)
    return Disclosure(
        record_id,
        version,
        field,
        resource[field],
        field_salt(salt_seed, field),
        i,
        len(leaves),
        tuple(inclusion_proof(leaves, i)),
    )


# -- what a resource says about itself -----------------------------------------------

# The date a record is about, by FHIR R4 element, most telling first: onset,
# recording, ordering, performing, occurrence, effective time, then what each
# remaining resource type dates itself by (dispensing, claims, imaging, goals,
# communications, questionnaires, specimens, devices' manufacture).
DATE_FIELDS = (
    "onsetDateTime",
    "recordedDate",
    "authoredOn",
    "performedDateTime",
    "occurrenceDateTime",
    "effectiveDateTime",
    "issued",
    "date",
    "effectiveInstant",
    "lastOccurrence",
    "dateAsserted",
    "whenHandedOver",
    "whenPrepared",
    "created",
    "started",
    "startDate",
    "sent",
    "authored",
    "dateTime",
    "recorded",
    "recordedOn",
    "receivedTime",
    "statusDate",
    "manufactureDate",
)
PERIOD_FIELDS = (
    "performedPeriod",
    "period",
    "effectivePeriod",
    "occurrencePeriod",
    "onsetPeriod",
    "billablePeriod",
    "timingPeriod",
)


def _day(value: Any) -> str | None:
    """yyyy-mm-dd of a FHIR date/dateTime/instant; a partial date (yyyy or yyyy-mm)
    counts from its first day."""
    if not isinstance(value, str):
        return None
    head = value[:10]
    if len(head) == 4:
        head += "-01-01"
    elif len(head) == 7:
        head += "-01"
    try:
        return datetime.date.fromisoformat(head).isoformat() if len(head) == 10 else None
    except ValueError:
        return None


def clinical_date(resource: dict[str, Any]) -> str:
    """The date the record is about (ISO yyyy-mm-dd); when a resource carries none of
    the clinical elements, the time it was recorded (meta.lastUpdated)."""
    for k in DATE_FIELDS:
        day = _day(resource.get(k))
        if day:
            return day
    for k in PERIOD_FIELDS:
        v = resource.get(k)
        day = _day(v.get("start")) if isinstance(v, dict) else None
        if day:
            return day
    for outer, inner in (("context", "period"), ("collection", "collectedPeriod")):
        v = resource.get(outer)
        v = v.get(inner) if isinstance(v, dict) else None
        day = _day(v.get("start")) if isinstance(v, dict) else None
        if day:
            return day
    collection = resource.get("collection")
    if isinstance(collection, dict) and (day := _day(collection.get("collectedDateTime"))):
        return day
    meta = resource.get("meta")
    if isinstance(meta, dict) and (day := _day(meta.get("lastUpdated"))):
        return day
    raise FhirError(f"{resource.get('resourceType')}/{resource.get('id')} has no clinical date")


def reference_id(ref: Any) -> str | None:
    """The id in a FHIR reference like ``{"reference": "Patient/123"}`` (or a list of them)."""
    if isinstance(ref, list):
        ref = ref[0] if ref else None
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        return str(ref["reference"]).rsplit("/", 1)[-1].split(":")[-1]
    return None


def subject_id(resource: dict[str, Any]) -> str | None:
    return reference_id(resource.get("subject") or resource.get("patient"))


def encounter_id(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Encounter":
        return str(resource.get("id"))
    enc = resource.get("encounter")
    if enc is None and isinstance(resource.get("context"), dict):
        enc = resource["context"].get("encounter")
    return reference_id(enc)


def summary(resource: dict[str, Any]) -> str:
    """A one-line human description (the code's display, or the type)."""
    for k in ("code", "medicationCodeableConcept", "vaccineCode", "type"):
        v = resource.get(k)
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, dict):
            if isinstance(v.get("text"), str):
                return str(v["text"])
            codings = v.get("coding")
            if (
                isinstance(codings, list)
                and codings
                and isinstance(codings[0], dict)
                and codings[0].get("display")
            ):
                return str(codings[0]["display"])
    return str(resource.get("resourceType", "record"))
