"""A minimal key-value chaincode: used by the ledger demo, tests and benchmarks
until (and beside) the healthcare chaincodes."""

from __future__ import annotations

from typing import Any

from medchain.contracts.runtime import ChaincodeError, Context

MAX_KEY = 256
MAX_VALUE = 16 * 1024


class KVChaincode:
    name = "kv"

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        if method == "put":
            key, value = _key_value(args)
            ctx.put(key, value)
            ctx.emit("put", {"key": key.decode()})
            return None
        if method == "delete":
            key = _key(args)
            if ctx.get(key) is None:
                raise ChaincodeError(f"no such key {key.decode()!r}")
            ctx.delete(key)
            return None
        raise ChaincodeError(f"kv has no method {method!r}")

    def query(self, ctx: Context, method: str, args: Any) -> Any:
        if method == "get":
            return ctx.get(_key(args))
        raise ChaincodeError(f"kv has no query {method!r}")


def _key(args: Any) -> bytes:
    if not isinstance(args, dict) or type(args.get("key")) is not str:
        raise ChaincodeError("args must be {key: str}")
    key: str = args["key"]
    if not 0 < len(key) <= MAX_KEY:
        raise ChaincodeError("key must be 1-256 characters")
    return key.encode()


def _key_value(args: Any) -> tuple[bytes, bytes]:
    key = _key(args)
    value = args.get("value")
    if type(value) is str:
        value = value.encode()
    if type(value) is not bytes or len(value) > MAX_VALUE:
        raise ChaincodeError("value must be a string or bytes of at most 16 KiB")
    return key, value
