"""What a member signs with its own key: transactions (``TxBuilder``) and
queries (``query_params``, the params of a signed ``state.query``).

Signing happens here, in the member's process: the node never sees a member's
private key. Both clients in ``client.rpc`` use these.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from medchain.storage.crypto import Signer
from medchain.storage.keyfile import load_key
from medchain.storage.signed_query import sign_query
from medchain.storage.tx import Transaction, make_tx


def query_params(contract: str, method: str, args: Any, signer: TxBuilder | None) -> dict[str, Any]:
    from medchain.node.rpc.jsonval import from_json, to_json

    params: dict[str, Any] = {"contract": contract, "method": method, "args": to_json(args)}
    if signer is not None:
        params["auth"] = sign_query(
            signer.signer,
            signer.chain_id,
            contract,
            method,
            from_json(to_json(args)),
            int(time.time() * 1000),
        )
    return params


class TxBuilder:
    """Builds and signs transactions for one key. Nonces: microseconds since the
    epoch, strictly increasing within the process, so restarts and several
    builders on one key practically never collide (a collision is refused as
    a replay, never executed twice)."""

    def __init__(self, signer: Signer, chain_id: str) -> None:
        self.signer = signer
        self.chain_id = chain_id
        self._last = 0
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(
        cls, path: Path | str, chain_id: str, passphrase: str | None = None
    ) -> TxBuilder:
        return cls(load_key(Path(path), passphrase), chain_id)

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    def next_nonce(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last

    def build(self, contract: str, method: str, args: Any = None) -> Transaction:
        return make_tx(self.signer, self.chain_id, self.next_nonce(), contract, method, args)
