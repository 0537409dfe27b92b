"""Hashes, Ed25519 keys and domain-separated signing.

Every signature in medchain is over ``sign_bytes(domain, chain_id, payload)``:
the canonical encoding of ``[domain, chain_id, *payload]``. A signature made
for one purpose (a transaction, a consensus vote, a fetch request) or for one
chain can never be valid for another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from nacl.bindings import (
    crypto_box_seal,
    crypto_box_seal_open,
    crypto_sign,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.utils import random as random_bytes

from medchain.storage.codec import pack

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
HASH_BYTES = 32

# Domain tags: one per kind of signed or hashed object.
DOMAIN_TX = "medchain/tx/v1"
DOMAIN_COMMIT = "medchain/commit/v1"
DOMAIN_STATE_ROOT = "medchain/state-root/v1"
DOMAIN_GENESIS_STATE = "medchain/genesis-state/v1"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sign_bytes(domain: str, chain_id: str, *payload: Any) -> bytes:
    """The exact bytes a signature covers: canonical [domain, chain_id, ...]."""
    return pack([domain, chain_id, *payload])


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key. ``seed`` never appears in repr or logs."""

    seed: bytes = field(repr=False)
    public_key: bytes = field(init=False)
    _secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed is 32 bytes")
        pk, sk = crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "_secret", sk)

    @classmethod
    def generate(cls) -> Signer:
        return cls(random_bytes(SEED_BYTES))

    def sign(self, message: bytes) -> bytes:
        signed: bytes = crypto_sign(message, self._secret)
        return signed[:SIGNATURE_BYTES]

    def unseal(self, box: bytes) -> bytes:
        """Open a box sealed to this key with :func:`seal_to` (X25519 of the same key pair)."""
        pk = crypto_sign_ed25519_pk_to_curve25519(self.public_key)
        sk = crypto_sign_ed25519_sk_to_curve25519(self._secret)
        opened: bytes = crypto_box_seal_open(box, pk, sk)
        return opened

    def __repr__(self) -> str:
        return f"Signer(public_key={self.public_key.hex()[:16]}…)"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


def seal_to(public_key: bytes, data: bytes) -> bytes:
    """Encrypt ``data`` so only the holder of the Ed25519 ``public_key``'s private key can
    read it (libsodium sealed box to the key's X25519 form)."""
    sealed: bytes = crypto_box_seal(data, crypto_sign_ed25519_pk_to_curve25519(public_key))
    return sealed


def short(key: bytes) -> str:
    """A short printable form of a key or hash for logs and tables."""
    return key.hex()[:12]
