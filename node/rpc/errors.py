"""The errors the node's RPC answers with: the JSON-RPC codes, ``RpcError``, and
what the pool's and the chaincode's refusals become.

Apart from the server so that method handlers, the daemon's error translation
and the test fault switches can raise and name these without the socket code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medchain.contracts.app import ChaincodeError
from medchain.node.mempool.pool import REJECT_BUSY, PoolReject

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
BUSY = -32001
REJECTED = -32002
NOT_FOUND = -32003
QUERY_FAILED = -32004
STORAGE_DAMAGED = -32010  # the node read damaged data (its operator runs node verify)
STORAGE_FAILED = -32011  # the node could not write to its disk and is stopping


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


# Maps an exception a handler raised to the RPC error the caller should see, or
# None for the generic rules (invalid params, internal error). The node uses it
# for its own exception types, so they get codes of their own.
ErrorTranslator = Callable[[Exception], "RpcError | None"]


def pool_error(exc: PoolReject) -> RpcError:
    code = BUSY if exc.code == REJECT_BUSY else REJECTED
    return RpcError(code, str(exc), {"reason": exc.code})


def query_error(exc: ChaincodeError) -> RpcError:
    return RpcError(QUERY_FAILED, str(exc))
