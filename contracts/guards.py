"""The guards contracts/sandbox.py routes chaincode operations through: what
they refuse and why is in that module's doc. A refusal raises ``Reject``."""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from typing import Any

from medchain.contracts.sdk import Reject

MAX_INT_BITS = 4096
MAX_ITEMS = 1 << 18
MAX_TEXT = 4 << 20  # characters or bytes of one text or bytes value made by an operation
MAX_TEXT_DEPTH = 32
MAX_CALL_DEPTH = 100  # chaincode function frames
ITEMS_PER_STEP = 32  # what making a sequence costs: one step per this many items
BYTES_PER_STEP = 256  # ... and per this many characters or bytes
GUARD = "__medchain_{}__"


class StepBudgetExceeded(BaseException):
    """The transaction used more steps (or deeper calls) than allowed. A BaseException:
    chaincode's ``except Exception`` cannot catch it."""


_budget = threading.local()


def step() -> None:
    left = getattr(_budget, "left", 1) - 1
    _budget.left = left
    if left < 0:
        raise StepBudgetExceeded("step budget exhausted: the transaction runs too long")


def charge(n: int, per: int) -> None:
    """Charge the steps that making ``n`` items (or bytes, ``per`` each step) costs."""
    if n >= per:
        left = getattr(_budget, "left", 1) - n // per
        _budget.left = left
        if left < 0:
            raise StepBudgetExceeded("step budget exhausted: the transaction builds too much")


def enter() -> None:
    depth = getattr(_budget, "depth", 0) + 1
    _budget.depth = depth
    if depth > MAX_CALL_DEPTH:
        raise StepBudgetExceeded(f"chaincode calls nest deeper than {MAX_CALL_DEPTH}")


def leave() -> None:
    _budget.depth = getattr(_budget, "depth", 1) - 1


def with_budget(steps: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with a fresh step budget and call depth for this thread."""
    prev = getattr(_budget, "left", None), getattr(_budget, "depth", None)
    _budget.left, _budget.depth = steps, 0
    try:
        return fn()
    finally:
        for name, value in zip(("left", "depth"), prev, strict=True):
            if value is None:
                delattr(_budget, name)
            else:
                setattr(_budget, name, value)


SEQUENCES = (str, bytes, list, tuple)
SET_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "Sub": lambda a, b: a - b,
    "BitAnd": lambda a, b: a & b,
    "BitOr": lambda a, b: a | b,
    "BitXor": lambda a, b: a ^ b,
}


def check_text(v: Any) -> None:
    """Refuse to make text of anything but plain values (see the module doc); each
    value visited costs, so a structure that shares its parts cannot make it cheap."""
    stack: list[tuple[Any, int]] = [(v, 0)]
    seen = 0
    while stack:
        x, depth = stack.pop()
        seen += 1
        if x is None or isinstance(x, bool | int):
            continue
        if isinstance(x, str | bytes):
            seen += len(x) // 8
            continue
        if depth < MAX_TEXT_DEPTH and isinstance(x, list | tuple):
            stack.extend((y, depth + 1) for y in x)
        elif depth < MAX_TEXT_DEPTH and isinstance(x, dict):
            for k, y in x.items():
                stack.append((k, depth + 1))
                stack.append((y, depth + 1))
        else:
            raise Reject(
                "only plain values (numbers, text, bytes, lists, maps) nested at most "
                f"{MAX_TEXT_DEPTH} deep can be turned into text"
            )
        if seen > MAX_ITEMS:
            raise Reject("the value is too large to be turned into text")
    charge(seen, ITEMS_PER_STEP)


def _made(out: Any) -> Any:
    """Charge for a value an operation made, and refuse one too large."""
    if isinstance(out, str | bytes):
        if len(out) > MAX_TEXT:
            raise Reject(f"text and bytes are limited to {MAX_TEXT} in chaincode")
        charge(len(out), BYTES_PER_STEP)
    elif isinstance(out, list | tuple | dict):
        _too_long(len(out))
        charge(len(out), ITEMS_PER_STEP)
    return out


def _too_big_int(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise Reject(f"integers are limited to {MAX_INT_BITS} bits in chaincode")


def _too_long(n: int) -> None:
    if n > MAX_ITEMS:
        raise Reject(f"sequences are limited to {MAX_ITEMS} items in chaincode")


def _size_limit(a: Any) -> int:
    return MAX_TEXT if isinstance(a, str | bytes) else MAX_ITEMS


def guard_mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _too_big_int(a.bit_length() + b.bit_length())
        return a * b
    seq, n = (a, b) if isinstance(a, SEQUENCES) else (b, a)
    if (
        isinstance(seq, SEQUENCES)
        and isinstance(n, int)
        and len(seq) * max(n, 0) > _size_limit(seq)
    ):
        raise Reject(f"sequences are limited to {MAX_ITEMS} items, text and bytes to {MAX_TEXT}")
    return _made(a * b)


def guard_add(a: Any, b: Any) -> Any:
    if isinstance(a, SEQUENCES) and isinstance(b, SEQUENCES):
        if len(a) + len(b) > _size_limit(a):
            raise Reject(
                f"sequences are limited to {MAX_ITEMS} items, text and bytes to {MAX_TEXT}"
            )
        return _made(operator.add(a, b))
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
        raise Reject("'%' formatting is not available in chaincode: use f-strings")
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
    if isinstance(v, str):
        charge(len(v), BYTES_PER_STEP)  # an f-string copies each part
    return v


def guard_str(*args: Any, **kwargs: Any) -> str:
    if args:
        check_text(args[0])
    out: str = _made(str(*args, **kwargs))
    return out


def guard_bytes(*args: Any) -> bytes:
    if args and isinstance(args[0], int) and args[0] > MAX_TEXT:
        raise Reject(f"text and bytes are limited to {MAX_TEXT} in chaincode")
    out: bytes = _made(bytes(*args))
    return out


def guard_range(*args: Any) -> range:
    r = range(*args)
    _too_long(len(r))
    return r


def _made_by(kind: Callable[..., Any]) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        return _made(kind(*args, **kwargs))

    return guard


def guard_star(v: Any) -> Any:
    if isinstance(v, list | tuple | dict | str | bytes | range):
        _too_long(len(v))
        charge(len(v), ITEMS_PER_STEP)
        return v
    out = list(v)
    _too_long(len(out))
    charge(len(out), ITEMS_PER_STEP)
    return out


def guard_sum(*args: Any) -> Any:
    if len(args) > 1 and not isinstance(args[1], int):
        raise Reject("sum adds numbers only in chaincode")
    return sum(*args)


def guard_slice(obj: Any, lower: Any, upper: Any, stride: Any) -> Any:
    out = obj[lower:upper:stride]
    return _made(out) if isinstance(out, SEQUENCES) else out


def _width(n: Any) -> None:
    if isinstance(n, int) and n > MAX_TEXT:
        raise Reject(f"text and bytes are limited to {MAX_TEXT} in chaincode")


def _before_method(obj: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Refuse a method call whose result would be too large, before it is made."""
    if name == "join" and isinstance(obj, str | bytes) and args:
        parts = list(args[0])
        _too_long(len(parts))
        size = sum(len(x) for x in parts if isinstance(x, str | bytes))
        if size + len(obj) * len(parts) > MAX_TEXT:
            raise Reject(f"text and bytes are limited to {MAX_TEXT} in chaincode")
        return (parts, *args[1:])
    if name == "extend" and isinstance(obj, list) and args:
        items = args[0] if isinstance(args[0], list | tuple | str | bytes) else list(args[0])
        _too_long(len(obj) + len(items))
        charge(len(items), ITEMS_PER_STEP)
        return (items, *args[1:])
    if name in ("ljust", "rjust", "center", "zfill") and args:
        _width(args[0])
    elif name == "to_bytes" and args:
        if isinstance(args[0], int) and args[0] > MAX_INT_BITS // 8:
            raise Reject(f"integers are limited to {MAX_INT_BITS} bits in chaincode")
    elif name == "from_bytes" and args and isinstance(args[0], bytes | list | tuple):
        _too_big_int(8 * len(args[0]))
    elif name == "replace" and isinstance(obj, str | bytes) and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str | bytes) and isinstance(new, str | bytes):
            worst = len(obj) + (len(obj) + 1) * max(len(new) - len(old), 0)
            if len(old) == 0:
                worst = len(obj) + (len(obj) + 1) * len(new)
            if worst > MAX_TEXT:
                raise Reject(f"text and bytes are limited to {MAX_TEXT} in chaincode")
    return args


def guard_method(obj: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """``obj.name(*args)`` for the methods that make values (sandbox.GUARDED_METHODS)."""
    args = _before_method(obj, name, args)
    return _made(getattr(obj, name)(*args, **kwargs))


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
    GUARD.format("list"): _made_by(list),
    GUARD.format("tuple"): _made_by(tuple),
    GUARD.format("dict"): _made_by(dict),
    GUARD.format("sorted"): _made_by(sorted),
    GUARD.format("sum"): guard_sum,
    GUARD.format("star"): guard_star,
    GUARD.format("slice"): guard_slice,
    GUARD.format("method"): guard_method,
    GUARD.format("step"): step,
    GUARD.format("enter"): enter,
    GUARD.format("leave"): leave,
}
