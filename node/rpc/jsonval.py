"""Canonical values <-> JSON for the RPC interface.

Bytes travel as ``{"$bytes": "<hex>"}``; floats are refused (nothing signed
or hashed may hold one); everything else maps one to one.
"""

from __future__ import annotations

from typing import Any


class JsonValueError(ValueError):
    pass


def to_json(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    return v


def from_json(v: Any, depth: int = 0) -> Any:
    if depth > 32:
        raise JsonValueError("value nested too deeply")
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        raise JsonValueError("floats are not allowed (use integers, e.g. cents)")
    if isinstance(v, list):
        return [from_json(x, depth + 1) for x in v]
    if isinstance(v, dict):
        if set(v) == {"$bytes"}:
            try:
                return bytes.fromhex(v["$bytes"])
            except (TypeError, ValueError):
                raise JsonValueError("$bytes must be a hex string") from None
        return {str(k): from_json(x, depth + 1) for k, x in v.items()}
    raise JsonValueError(f"unsupported value of type {type(v).__name__}")
