"""Canonical msgpack encoding.

Every signed or hashed object is a msgpack *array* with a fixed field order,
packed with ``use_bin_type=True``. Decoding is strict: the bytes must be the
one canonical encoding of the value they decode to (minimal integer widths,
str vs bin respected, maps with sorted unique string keys), contain no floats
and no extension types, and stay within a size limit. Anything else raises
:class:`DecodeError` and only that.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

__all__ = [
    "DecodeError",
    "as_bytes",
    "as_int",
    "as_list",
    "as_str",
    "as_value",
    "fields",
    "pack",
    "unpack",
]

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
MAX_DEPTH = 32


class DecodeError(ValueError):
    """Bytes that are not a valid canonical encoding of the expected type."""


def fail(what: str, why: str) -> NoReturn:
    raise DecodeError(f"{what}: {why}")


def pack(obj: Any) -> bytes:
    """Pack a value; callers are responsible for passing canonical values."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack_accepted(data: bytes) -> Any:
    """Decode bytes that :func:`unpack` has already accepted, without its checks
    (the caller knows them to be the same bytes, e.g. by their hash). It is also
    the one place that sets msgpack's decoder options."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, max_ext_len=0)


def unpack(data: bytes, max_size: int, what: str = "value") -> Any:
    """Decode canonical msgpack bytes of at most ``max_size`` bytes.

    Checks that re-encoding gives back exactly ``data`` (so there is one and
    only one encoding of every value), and that no float or ext is present.
    Map keys are checked for order by :func:`as_value` where maps are allowed.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        fail(what, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        fail(what, f"{len(data)} bytes exceeds the limit of {max_size}")
    if len(data) == 0:
        fail(what, "empty input")
    try:
        obj = unpack_accepted(data)
    except Exception as exc:  # msgpack raises many types; callers see one
        fail(what, f"malformed msgpack ({type(exc).__name__}: {exc})")
    try:
        again = pack(obj)
    except Exception as exc:  # pragma: no cover - decoded values always pack
        fail(what, f"cannot re-encode ({exc})")
    if again != data:
        fail(what, "not the canonical encoding")
    return obj


def fields(obj: Any, count: int, what: str) -> list[Any]:
    if type(obj) is not list:
        fail(what, f"expected an array, got {type(obj).__name__}")
    if len(obj) != count:
        fail(what, f"expected {count} fields, got {len(obj)}")
    return obj


def as_int(v: Any, what: str, lo: int = 0, hi: int = U64_MAX) -> int:
    if type(v) is not int:
        fail(what, f"expected an integer, got {type(v).__name__}")
    if v < lo or v > hi:
        fail(what, f"{v} out of range [{lo}, {hi}]")
    return v


def as_bytes(v: Any, what: str, size: int | None = None, max_len: int | None = None) -> bytes:
    if type(v) is not bytes:
        fail(what, f"expected bytes, got {type(v).__name__}")
    if size is not None and len(v) != size:
        fail(what, f"expected {size} bytes, got {len(v)}")
    if max_len is not None and len(v) > max_len:
        fail(what, f"{len(v)} bytes exceeds {max_len}")
    return v


def as_str(v: Any, what: str, max_len: int = 256, min_len: int = 0) -> str:
    if type(v) is not str:
        fail(what, f"expected a string, got {type(v).__name__}")
    if len(v) > max_len or len(v) < min_len:
        fail(what, f"length {len(v)} outside [{min_len}, {max_len}]")
    return v


def as_list(v: Any, what: str, max_len: int) -> list[Any]:
    if type(v) is not list:
        fail(what, f"expected an array, got {type(v).__name__}")
    if len(v) > max_len:
        fail(what, f"{len(v)} items exceeds {max_len}")
    return v


def as_value(v: Any, what: str, depth: int = 0) -> Any:
    """Check a free-form value (chaincode arguments and results).

    Allowed: None, bool, int in [-2**63, 2**64), str, bytes, lists, and maps
    whose keys are strings in strictly ascending order. No floats.
    """
    t = type(v)
    if v is None or t is bool or t is str or t is bytes:
        return v
    if t is int:
        if v < I64_MIN or v > U64_MAX:
            fail(what, "integer out of range")
        return v
    if depth >= MAX_DEPTH:
        fail(what, "nested too deeply")
    if t is list:
        for item in v:
            as_value(item, what, depth + 1)
        return v
    if t is dict:
        prev: str | None = None
        for key, item in v.items():
            if type(key) is not str:
                fail(what, "map keys must be strings")
            if prev is not None and key <= prev:
                fail(what, "map keys must be sorted and unique")
            prev = key
            as_value(item, what, depth + 1)
        return v
    fail(what, f"type {t.__name__} not allowed (floats are never allowed)")


def canonical(v: Any, what: str = "value", depth: int = 0) -> Any:
    """Return ``v`` in canonical form for encoding: maps sorted by key,
    tuples as lists. Raises TypeError for values that can never be encoded."""
    t = type(v)
    if v is None or t is bool or t is str or t is bytes:
        return v
    if t is int:
        if v < I64_MIN or v > U64_MAX:
            raise TypeError(f"{what}: integer {v} out of range")
        return v
    if depth >= MAX_DEPTH:
        raise TypeError(f"{what}: nested too deeply")
    if t is list or t is tuple:
        return [canonical(x, what, depth + 1) for x in v]
    if t is dict:
        out = {}
        for key in sorted(v):
            if type(key) is not str:
                raise TypeError(f"{what}: map keys must be strings")
            out[key] = canonical(v[key], what, depth + 1)
        return out
    raise TypeError(f"{what}: type {t.__name__} cannot be encoded (no floats)")
