"""Signed transactions.

Encoding: ``[chain_id, sender, nonce, contract, method, args, signature]``.
The signature covers ``sign_bytes(DOMAIN_TX, chain_id, sender, nonce,
contract, method, args)``. The tx id is SHA-256 of the encoding; since the
encoding is canonical and Ed25519 signatures from libsodium are
non-malleable, a transaction has exactly one id.

``nonce`` is chosen by the sender; each (sender, nonce) pair can be committed
once, which is what stops a captured transaction from being replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from medchain.storage.codec import (
    DecodeError,
    as_bytes,
    as_int,
    as_str,
    as_value,
    canonical,
    fields,
    pack,
    unpack,
    unpack_accepted,
)
from medchain.storage.crypto import (
    DOMAIN_TX,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Signer,
    sha256,
    sign_bytes,
    verify,
)

MAX_TX_BYTES = 64 * 1024
MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class Transaction:
    chain_id: str
    sender: bytes
    nonce: int
    contract: str
    method: str
    args: Any
    signature: bytes = b""

    def sign_bytes(self) -> bytes:
        return sign_bytes(
            DOMAIN_TX, self.chain_id, self.sender, self.nonce, self.contract, self.method, self.args
        )

    def encode(self) -> bytes:
        return pack(
            [
                self.chain_id,
                self.sender,
                self.nonce,
                self.contract,
                self.method,
                self.args,
                self.signature,
            ]
        )

    @property
    def tx_id(self) -> bytes:
        return sha256(self.encode())

    def verify_signature(self) -> bool:
        return verify(self.sender, self.sign_bytes(), self.signature)

    @classmethod
    def decode(cls, data: bytes, max_size: int = MAX_TX_BYTES) -> Transaction:
        f = fields(unpack(data, max_size, "transaction"), 7, "transaction")
        return cls(
            chain_id=as_str(f[0], "transaction.chain_id", MAX_NAME, 1),
            sender=as_bytes(f[1], "transaction.sender", PUBLIC_KEY_BYTES),
            nonce=as_int(f[2], "transaction.nonce"),
            contract=as_str(f[3], "transaction.contract", MAX_NAME, 1),
            method=as_str(f[4], "transaction.method", MAX_NAME, 1),
            args=as_value(f[5], "transaction.args"),
            signature=as_bytes(f[6], "transaction.signature", SIGNATURE_BYTES),
        )

    @classmethod
    def decode_checked(cls, data: bytes) -> Transaction:
        """Decode bytes that :meth:`decode` has already accepted (the same bytes: the
        caller knows them by their tx id), without checking them again, at a fraction
        of the cost. The values are the same objects :meth:`decode` builds (its checks
        return what they check), so execution cannot tell the two apart."""
        return cls(*unpack_accepted(data))


def make_tx(
    signer: Signer, chain_id: str, nonce: int, contract: str, method: str, args: Any
) -> Transaction:
    """Build and sign a transaction; ``args`` is canonicalised (maps sorted)."""
    unsigned = Transaction(
        chain_id, signer.public_key, nonce, contract, method, canonical(args, "args")
    )
    return replace(unsigned, signature=signer.sign(unsigned.sign_bytes()))


def decode_verified(data: bytes, chain_id: str, max_size: int = MAX_TX_BYTES) -> Transaction:
    """Decode and check chain id and signature; raises DecodeError with a reason."""
    tx = Transaction.decode(data, max_size)
    if tx.chain_id != chain_id:
        raise DecodeError(f"transaction: chain id {tx.chain_id!r} is not {chain_id!r}")
    if not tx.verify_signature():
        raise DecodeError("transaction: bad signature")
    return tx
