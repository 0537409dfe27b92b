"""Signed queries: a member proves who asks, without committing anything.

A read-only query may carry ``auth = {key, ts, sig}``: an Ed25519 signature
over ``sign_bytes("medchain/query/v1", chain_id, key, ts, contract, method,
args)`` with ``ts`` the signer's clock in ms. The node accepts it within a
few minutes of its own clock. The domain tag differs from a transaction's,
so a signed query can never be replayed as a transaction.
"""

from __future__ import annotations

from typing import Any

from medchain.storage.codec import canonical
from medchain.storage.crypto import Signer, sign_bytes, verify

DOMAIN_QUERY = "medchain/query/v1"
MAX_SKEW_MS = 5 * 60 * 1000


def query_sign_bytes(
    chain_id: str, key: bytes, ts: int, contract: str, method: str, args: Any
) -> bytes:
    return sign_bytes(DOMAIN_QUERY, chain_id, key, ts, contract, method, canonical(args, "args"))


def sign_query(
    signer: Signer, chain_id: str, contract: str, method: str, args: Any, ts: int
) -> dict[str, Any]:
    sig = signer.sign(query_sign_bytes(chain_id, signer.public_key, ts, contract, method, args))
    return {"key": signer.public_key.hex(), "ts": ts, "sig": sig.hex()}


def verify_query(
    auth: Any, chain_id: str, contract: str, method: str, args: Any, now_ms: int
) -> bytes:
    """The authenticated key, or ValueError saying why not."""
    if not isinstance(auth, dict):
        raise ValueError("auth must be {key, ts, sig}")
    try:
        key = bytes.fromhex(auth["key"])
        sig = bytes.fromhex(auth["sig"])
        ts = auth["ts"]
    except (KeyError, TypeError, ValueError):
        raise ValueError("auth must be {key: hex, ts: ms, sig: hex}") from None
    if not isinstance(ts, int) or abs(ts - now_ms) > MAX_SKEW_MS:
        raise ValueError("auth timestamp is too far from the node's clock")
    try:
        message = query_sign_bytes(chain_id, key, ts, contract, method, args)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not verify(key, message, sig):
        raise ValueError("auth signature does not verify")
    return key
