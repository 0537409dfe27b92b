"""The guards contracts/sandbox.py routes chaincode operations through: what
they refuse and why is in that module's doc. A refusal raises ``Reject``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.sdk import Reject

MAX_INT_BITS = 4096
MAX_ITEMS = 1 << 20
MAX_TEXT_DEPTH = 32
GUARD = "__medchain_{}__"

SEQUENCES = (str, bytes, list, tuple)
SET_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "Sub": lambda a, b: a - b,
    "BitAnd": lambda a, b: a & b,
    "BitOr": lambda a, b: a | b,
    "BitXor": lambda a, b: a ^ b,
}


def check_text(v: Any, depth: int = 0) -> None:
    """Refuse to make text of anything but plain values (see the module doc)."""
    if v is None or isinstance(v, bool | int | str | bytes):
        return
    if depth < MAX_TEXT_DEPTH and isinstance(v, list | tuple):
        for x in v:
            check_text(x, depth + 1)
        return
    if depth < MAX_TEXT_DEPTH and isinstance(v, dict):
        for k, x in v.items():
            check_text(k, depth + 1)
            check_text(x, depth + 1)
        return
    raise Reject("only plain values (numbers, text, bytes, lists, maps) can be turned into text")


def _too_big_int(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise Reject(f"integers are limited to {MAX_INT_BITS} bits in chaincode")


def _too_long(n: int) -> None:
    if n > MAX_ITEMS:
        raise Reject(f"sequences are limited to {MAX_ITEMS} items in chaincode")


def guard_mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _too_big_int(a.bit_length() + b.bit_length())
    elif isinstance(a, SEQUENCES) and isinstance(b, int):
        _too_long(len(a) * max(b, 0))
    elif isinstance(b, SEQUENCES) and isinstance(a, int):
        _too_long(len(b) * max(a, 0))
    return a * b


def guard_add(a: Any, b: Any) -> Any:
    if isinstance(a, SEQUENCES) and isinstance(b, SEQUENCES):
        _too_long(len(a) + len(b))
    return a + b


def guard_lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0:
        _too_big_int(a.bit_length() + b)
    return a << b


def _big_division(a: Any, b: Any) -> None:
    # Dividing two long integers costs the product of their lengths; one short
    # side keeps it linear.
    ints = isinstance(a, int) and isinstance(b, int)
    if ints and min(a.bit_length(), b.bit_length()) > MAX_INT_BITS:
        raise Reject(f"integers are limited to {MAX_INT_BITS} bits in chaincode")


def guard_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        check_text(b)
    _big_division(a, b)
    return a % b


def guard_div(a: Any, b: Any) -> Any:
    _big_division(a, b)
    return a // b


def guard_setop(op: str, a: Any, b: Any) -> Any:
    out = SET_OPS[op](a, b)
    if isinstance(out, set | frozenset):
        try:
            return sorted(out)  # a set's order differs between processes
        except TypeError:
            raise Reject("a set of values of mixed types cannot be ordered") from None
    return out


def guard_text(v: Any) -> Any:
    check_text(v)
    return v


def guard_str(*args: Any, **kwargs: Any) -> str:
    if args:
        check_text(args[0])
    return str(*args, **kwargs)


def guard_bytes(*args: Any) -> bytes:
    if args and isinstance(args[0], int):
        _too_long(args[0])
    return bytes(*args)


def guard_range(*args: Any) -> range:
    r = range(*args)
    _too_long(len(r))
    return r


GUARDS: dict[str, Callable[..., Any]] = {
    GUARD.format("mul"): guard_mul,
    GUARD.format("add"): guard_add,
    GUARD.format("lshift"): guard_lshift,
    GUARD.format("mod"): guard_mod,
    GUARD.format("div"): guard_div,
    GUARD.format("setop"): guard_setop,
    GUARD.format("text"): guard_text,
    GUARD.format("str"): guard_str,
    GUARD.format("bytes"): guard_bytes,
    GUARD.format("range"): guard_range,
}
