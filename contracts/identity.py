"""Who signed a transaction: public key -> member, organization and role.

Organizations and their admin and node keys come from the genesis. Everything
registered later (practitioners, patients, rotated or revoked keys) lives in
the registry chaincode's state under ``registry 0x00 key/<public key>`` as a
canonical map ``{kind, id, org, role, status}``; a record there overrides the
genesis (that is how a genesis admin key is rotated or revoked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medchain.storage.codec import DecodeError, as_value, unpack
from medchain.storage.genesis import Genesis

REGISTRY_KEY_PREFIX = b"registry\x00key/"

ADMIN = "org-admin"
NODE = "node"
PRACTITIONER = "practitioner"
PATIENT = "patient"
UNKNOWN = "unknown"  # a key nobody registered (may self-register as a patient)
ANONYMOUS = "anonymous"  # an unauthenticated query


@dataclass(frozen=True, slots=True)
class Identity:
    key: bytes
    kind: str
    id: str = ""
    org: str | None = None  # the organization the member acts for
    org_role: str | None = None  # hospital, clinic, exam-centre, insurer, regulator
    role: str | None = None  # a practitioner's role (physician, nurse, ...)
    status: str = "active"

    @property
    def active(self) -> bool:
        return self.status == "active"

    def is_admin_of(self, org: str | None = None) -> bool:
        return self.kind == ADMIN and self.active and (org is None or self.org == org)

    def is_practitioner_of(self, org: str | None = None) -> bool:
        return self.kind == PRACTITIONER and self.active and (org is None or self.org == org)

    def acts_for(self, org: str) -> bool:
        """An active admin or practitioner of ``org``."""
        return self.active and self.org == org and self.kind in (ADMIN, PRACTITIONER)

    def to_value(self) -> dict[str, object]:
        return {
            "key": self.key,
            "kind": self.kind,
            "id": self.id,
            "org": self.org,
            "org_role": self.org_role,
            "role": self.role,
            "status": self.status,
        }


ANONYMOUS_IDENTITY = Identity(b"", ANONYMOUS, status="none")


_CACHE: dict[tuple[int, bytes, bytes | None], tuple[Genesis, Identity]] = {}


def resolve(state_get: Callable[[bytes], bytes | None], genesis: Genesis, key: bytes) -> Identity:
    """The identity of ``key`` given the registry state (memoised on the exact record)."""
    if not key:
        return ANONYMOUS_IDENTITY
    raw = state_get(REGISTRY_KEY_PREFIX + key)
    cache_key = (id(genesis), key, raw)
    hit = _CACHE.get(cache_key)
    if hit is None or hit[0] is not genesis:  # (holding the genesis keeps its id from being reused)
        if len(_CACHE) > 50_000:
            _CACHE.clear()
        hit = _CACHE[cache_key] = (genesis, _resolve(raw, genesis, key))
    return hit[1]


def _resolve(raw: bytes | None, genesis: Genesis, key: bytes) -> Identity:
    if raw is not None:
        try:
            rec = as_value(unpack(raw, 64 * 1024, "identity"), "identity")
        except DecodeError:
            rec = None
        if isinstance(rec, dict):
            org = rec.get("org")
            org_role = None
            if isinstance(org, str):
                try:
                    org_role = genesis.org(org).role
                except KeyError:
                    org_role = None
            return Identity(
                key,
                str(rec.get("kind", UNKNOWN)),
                str(rec.get("id", "")),
                org if isinstance(org, str) else None,
                org_role,
                rec.get("role") if isinstance(rec.get("role"), str) else None,
                str(rec.get("status", "active")),
            )
    o = genesis.org_by_admin_key(key)
    if o is not None:
        return Identity(key, ADMIN, o.org_id, o.org_id, o.role)
    o = genesis.org_by_node_key(key)
    if o is not None:
        return Identity(key, NODE, o.org_id, o.org_id, o.role)
    return Identity(key, UNKNOWN)
