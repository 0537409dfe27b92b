"""The chaincode API's types: the ``Context`` chaincode functions receive, and
what their arguments, results and stored values are. Chaincode imports them
from medchain.contracts.sdk and names them in annotations only
(contracts/sandbox.py); the type checker holds the bundled chaincodes to them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeAlias

from medchain.contracts.identity import Identity as Identity  # the caller's type

Value: TypeAlias = Any
"""A canonical value read back: None, bool, int, text, bytes, and lists and
text-keyed maps of them (state, another chaincode's answer). Its shape is what
the chaincode that wrote it made, so the type checker takes it on trust."""

Record: TypeAlias = dict[str, Value]
"""A text-keyed map of values: what a chaincode stores with ``put_obj`` and reads
back, or builds to store, emit or return."""

Args: TypeAlias = object
"""What a transaction or query is called with: whatever canonical value the
sender sent. ``args_dict`` checks that it is a map, and refuses it if not."""

Result: TypeAlias = object
"""What a transaction or query returns: a canonical value (the runtime encodes
it and fails the call on anything else)."""


class OrganizationView(Protocol):
    """A member organization, as the genesis names it."""

    @property
    def org_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...  # hospital, clinic, exam-centre, insurer, regulator

    @property
    def node_key(self) -> bytes: ...

    @property
    def admin_key(self) -> bytes: ...


class GenesisView(Protocol):
    """What chaincode reads of the genesis: the chain and its members."""

    @property
    def chain_id(self) -> str: ...

    @property
    def organizations(self) -> Sequence[OrganizationView]: ...


class Context(Protocol):
    """What a chaincode function receives as ``ctx``, and all it may use
    (``CONTEXT_API``). Keys are in the chaincode's own namespace; a query's
    context cannot write (state, indexes) and drops what it emits."""

    @property
    def caller(self) -> Identity:
        """The verified identity of the signer (anonymous for an unsigned query)."""
        ...

    @property
    def sender(self) -> bytes:
        """The signer's public key."""
        ...

    @property
    def tx_id(self) -> bytes:
        """The transaction's id (empty in a query)."""
        ...

    @property
    def height(self) -> int:
        """The block's height (in a query: the committed height)."""
        ...

    @property
    def timestamp_ms(self) -> int:
        """The block's consensus time; chaincode never sees the wall clock."""
        ...

    @property
    def origin(self) -> str | None:
        """The chaincode that called this one, or None if the signer sent it."""
        ...

    @property
    def genesis(self) -> GenesisView: ...

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Keys under ``prefix`` and their values, in key order (or reversed)."""
        ...

    def get_obj(self, key: bytes) -> Value:
        """A value stored with ``put_obj`` (None if absent)."""
        ...

    def put_obj(self, key: bytes, value: object) -> None: ...

    def scan_obj(
        self, prefix: bytes, reverse: bool = False, limit: int = 10_000
    ) -> list[tuple[bytes, Value]]: ...

    def read(self, contract: str, key: bytes) -> Value:
        """Another chaincode's stored value (read only)."""
        ...

    def index_put(self, key: bytes, value: bytes = b"") -> None:
        """A secondary-index entry (outside the state root), for queries."""
        ...

    def index_scan(self, prefix: bytes, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Index entries under ``prefix`` (queries only)."""
        ...

    def identity(self, key: bytes) -> Identity:
        """Who holds public key ``key``."""
        ...

    def emit(self, name: str, attrs: object) -> None:
        """An event in this chaincode's name."""
        ...

    def call(self, contract: str, method: str, args: Args) -> Value:
        """Another chaincode's transaction, in this one (same signer, same writes);
        it runs only if it names this chaincode with ``@called_by``."""
        ...

    def query(self, contract: str, method: str, args: Args) -> Value:
        """Another chaincode's query."""
        ...


# The Context's members: the sandbox allows these attribute names (a test keeps the
# list, the Protocol and runtime.ChaincodeContext the same).
CONTEXT_API = (
    "caller",
    "sender",
    "tx_id",
    "height",
    "timestamp_ms",
    "origin",
    "genesis",
    "get",
    "put",
    "delete",
    "scan",
    "get_obj",
    "put_obj",
    "scan_obj",
    "read",
    "index_put",
    "index_scan",
    "identity",
    "emit",
    "call",
    "query",
)
