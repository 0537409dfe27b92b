"""Reading a call's params in the method handlers: each helper returns the value
or raises ``RpcError`` (invalid params) saying what the param must be.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from medchain.node.rpc.errors import INVALID_PARAMS, RpcError
from medchain.node.rpc.events import EventFilter
from medchain.node.rpc.jsonval import from_json


def param_b64(params: dict[str, Any], name: str) -> bytes:
    v = params.get(name)
    if not isinstance(v, str):
        raise RpcError(INVALID_PARAMS, f"{name} must be a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise RpcError(INVALID_PARAMS, f"{name} is not valid base64") from None


def param_hex(params: dict[str, Any], name: str, size: int | None = None) -> bytes:
    v = params.get(name)
    try:
        b = bytes.fromhex(v) if isinstance(v, str) else None
    except ValueError:
        b = None
    if b is None or (size is not None and len(b) != size):
        raise RpcError(INVALID_PARAMS, f"{name} must be {size or 'some'} bytes of hex")
    return b


def param_int(params: dict[str, Any], name: str, default: int | None = None, lo: int = 0) -> int:
    v = params.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise RpcError(INVALID_PARAMS, f"{name} must be an integer >= {lo}")
    return v


def param_str(params: dict[str, Any], name: str) -> str:
    v = params.get(name)
    if not isinstance(v, str) or not v:
        raise RpcError(INVALID_PARAMS, f"{name} must be a non-empty string")
    return v


def event_filter(params: dict[str, Any]) -> EventFilter:
    kinds = params.get("kinds", ["block", "event"])
    if not isinstance(kinds, list) or not set(kinds) <= {"block", "event"} or not kinds:
        raise RpcError(INVALID_PARAMS, 'kinds must be a non-empty subset of ["block", "event"]')
    attrs = params.get("attrs", {})
    if not isinstance(attrs, dict):
        raise RpcError(INVALID_PARAMS, "attrs must be an object")
    contract, name = params.get("contract"), params.get("name")
    if not all(x is None or isinstance(x, str) for x in (contract, name)):
        raise RpcError(INVALID_PARAMS, "contract and name must be strings")
    return EventFilter(frozenset(kinds), contract, name, from_json(attrs))
