"""What the node needs of the application it replicates: run a committed block,
answer a read-only query, and tell which (sender, nonce) pairs are spent.

node/ depends on this Protocol only; contracts.runtime.Executor implements it
(node/daemon.py builds one). How the application lays out its state — where
nonces are kept, how chaincode namespaces are keyed — stays behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any, Protocol

from medchain.contracts.identity import Identity
from medchain.contracts.sdk import Reject
from medchain.storage.block import Block
from medchain.storage.executed import ExecutedBlock

ChaincodeError = Reject  # what a query raises when the chaincode refuses it


class StateReader(Protocol):
    """Committed state as the application reads it (a ledger, an overlay)."""

    def state_get(self, key: bytes) -> bytes | None: ...

    def state_scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]: ...


class Application(Protocol):
    def execute(
        self, state: StateReader, block: Block, checked: Container[bytes] = ()
    ) -> ExecutedBlock:
        """``block`` executed on top of ``state``: its results and write set, for the
        caller to commit. ``checked``: ids of transactions whose encoding already
        passed its checks."""
        ...

    def query(
        self,
        state: StateReader,
        contract: str,
        method: str,
        args: Any,
        height: int,
        timestamp_ms: int,
        caller: bytes | Identity = b"",
    ) -> Any:
        """A read-only chaincode call against ``state`` at ``height`` and time
        ``timestamp_ms``; raises ChaincodeError when refused. ``caller``: an
        identity the node authenticated, a bare key, or nothing (anonymous)."""
        ...

    def nonce_used(self, get: Callable[[bytes], bytes | None], sender: bytes, nonce: int) -> bool:
        """Whether a committed transaction of ``sender`` used ``nonce``; ``get``
        reads committed state (the caller chooses whether through a cache)."""
        ...

    def committed_nonces(self, writes: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
        """The (sender, nonce) pairs that the keys of an executed block's write
        set spend."""
        ...
