"""What the authoring practitioner signs for a record anchor — in one place, for the
records chaincode (through medchain.contracts.sdk) and the evidence verifier (docs/evidence.md)."""

from __future__ import annotations

from medchain.storage.crypto import sign_bytes

ANCHOR_DOMAIN = "medchain/anchor/v2"


def anchor_sign_bytes(
    chain_id: str,
    record_id: str,
    version: int,
    patient: str,
    custodian: str,
    category: str,
    clinical_year: int,
    content_hash: bytes,
    fields_root: bytes,
) -> bytes:
    """The bytes an anchor's author signs."""
    return sign_bytes(
        ANCHOR_DOMAIN,
        chain_id,
        record_id,
        version,
        patient,
        custodian,
        category,
        clinical_year,
        content_hash,
        fields_root,
    )
