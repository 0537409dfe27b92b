"""What chaincode modules may import: ``from medchain.contracts.sdk import ...``.

Everything here is deterministic: no clock (use ``ctx.timestamp_ms``, the
block's consensus time), no randomness, no floats (money is integer cents,
ratios are basis points), dates as ISO strings or day numbers.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Mapping
from typing import Any as Any  # re-exported for chaincode annotations
from typing import Literal, TypeVar, overload

from medchain.contracts.sdk_types import (  # the chaincode API's types, re-exported
    CONTEXT_API as CONTEXT_API,
)
from medchain.contracts.sdk_types import Args as Args
from medchain.contracts.sdk_types import Context as Context
from medchain.contracts.sdk_types import GenesisView as GenesisView
from medchain.contracts.sdk_types import Identity as Identity
from medchain.contracts.sdk_types import OrganizationView as OrganizationView
from medchain.contracts.sdk_types import Record as Record
from medchain.contracts.sdk_types import Result as Result
from medchain.contracts.sdk_types import Value as Value
from medchain.storage.anchor import (
    anchor_sign_bytes as anchor_sign_bytes,  # part of the chaincode API
)
from medchain.storage.crypto import verify as _verify

F = TypeVar("F", bound=Callable[..., Any])

DAY_MS = 86_400_000
BASIS_POINTS = 10_000


class Reject(Exception):
    """Refuse the transaction (or query); the message is recorded as the failure reason."""


def transaction(fn: F) -> F:
    """Mark a function ``fn(ctx, args)`` as a transaction method."""
    fn._medchain_kind = "transaction"  # type: ignore[attr-defined]
    return fn


def called_by(*contracts: str) -> Callable[[F], F]:
    """Let the named chaincodes call this transaction (``ctx.call``); no other may.
    A call acts with the signer's identity, so by default a transaction runs only
    when its signer sent it directly: a chaincode cannot make a patient consent,
    or a practitioner anchor, by a transaction they signed for something else."""

    def mark(fn: F) -> F:
        fn._medchain_callers = contracts  # type: ignore[attr-defined]
        return fn

    return mark


def query(fn: F) -> F:
    """Mark a function ``fn(ctx, args)`` as a read-only query method."""
    fn._medchain_kind = "query"  # type: ignore[attr-defined]
    return fn


def require(condition: object, message: str) -> None:
    if not condition:
        raise Reject(message)


# -- arguments ---------------------------------------------------------------------
# Each ``arg_*`` reads ``args[name]``, refuses it unless it is what is asked for, and
# returns it; with ``optional=True`` a missing (None) value is returned as None.


def args_dict(args: Args) -> dict[str, Value]:
    if not isinstance(args, dict):
        raise Reject("arguments must be a map")
    return args


@overload
def arg_str(
    args: Mapping[str, object], name: str, max_len: int = 256, optional: Literal[False] = False
) -> str: ...
@overload
def arg_str(
    args: Mapping[str, object], name: str, max_len: int = 256, *, optional: bool
) -> str | None: ...
def arg_str(
    args: Mapping[str, object], name: str, max_len: int = 256, optional: bool = False
) -> str | None:
    v = args.get(name)
    if v is None and optional:
        return None
    if type(v) is not str or not v or len(v) > max_len:
        raise Reject(f"{name} must be a non-empty string of at most {max_len} characters")
    return v


@overload
def arg_int(
    args: Mapping[str, object],
    name: str,
    lo: int = 0,
    hi: int = 2**62,
    optional: Literal[False] = False,
) -> int: ...
@overload
def arg_int(
    args: Mapping[str, object], name: str, lo: int = 0, hi: int = 2**62, *, optional: bool
) -> int | None: ...
def arg_int(
    args: Mapping[str, object], name: str, lo: int = 0, hi: int = 2**62, optional: bool = False
) -> int | None:
    v = args.get(name)
    if v is None and optional:
        return None
    if type(v) is not int or not lo <= v <= hi:
        raise Reject(f"{name} must be an integer in [{lo}, {hi}]")
    return v


@overload
def arg_bytes(
    args: Mapping[str, object],
    name: str,
    size: int | None = None,
    optional: Literal[False] = False,
) -> bytes: ...
@overload
def arg_bytes(
    args: Mapping[str, object], name: str, size: int | None = None, *, optional: bool
) -> bytes | None: ...
def arg_bytes(
    args: Mapping[str, object], name: str, size: int | None = None, optional: bool = False
) -> bytes | None:
    v = args.get(name)
    if v is None and optional:
        return None
    if type(v) is not bytes or (size is not None and len(v) != size):
        raise Reject(f"{name} must be {size if size is not None else 'some'} bytes")
    return v


def arg_list(
    args: Mapping[str, object], name: str, max_len: int = 10_000, optional: bool = False
) -> list[Value]:
    """The list ``args[name]`` (with ``optional=True``, a missing one is empty)."""
    v = args.get(name)
    if v is None and optional:
        return []
    if type(v) is not list or len(v) > max_len:
        raise Reject(f"{name} must be a list of at most {max_len} items")
    return v


@overload
def arg_choice(
    args: Mapping[str, object],
    name: str,
    choices: tuple[str, ...],
    optional: Literal[False] = False,
) -> str: ...
@overload
def arg_choice(
    args: Mapping[str, object], name: str, choices: tuple[str, ...], *, optional: bool
) -> str | None: ...
def arg_choice(
    args: Mapping[str, object], name: str, choices: tuple[str, ...], optional: bool = False
) -> str | None:
    v = args.get(name)
    if v is None and optional:
        return None
    if type(v) is not str or v not in choices:  # (only text equals text)
        raise Reject(f"{name} must be one of {', '.join(choices)}")
    return v


# -- hashing and signatures ----------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return (
        type(signature) is bytes
        and type(public_key) is bytes
        and _verify(public_key, message, signature)
    )


def pseudonym_of(public_key: bytes, kind: str = "patient") -> str:
    """A stable member id derived from the key it registered with (no personal data)."""
    return hashlib.sha256(b"medchain/" + kind.encode() + b"/v1" + public_key).hexdigest()[:32]


# -- dates ------------------------------------------------------------------------


def day_of(date: str) -> int:
    """Days since 1970-01-01 of an ISO date ``YYYY-MM-DD`` (a date-time's date part is used)."""
    if type(date) is not str or len(date) < 10:
        raise Reject(f"{date!r} is not an ISO date")
    try:
        d = datetime.date.fromisoformat(date[:10])
    except ValueError:
        raise Reject(f"{date!r} is not an ISO date") from None
    return d.toordinal() - 719_163


def day_of_ms(ms: int) -> int:
    return ms // DAY_MS


def date_of_day(day: int) -> str:
    return datetime.date.fromordinal(day + 719_163).isoformat()


def year_of_day(day: int) -> int:
    return datetime.date.fromordinal(day + 719_163).year


def ms_to_iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def apply_ratio(amount: int, basis_points: int) -> int:
    """``amount * basis_points / 10000``, rounded down (integers only)."""
    return amount * basis_points // BASIS_POINTS


# -- identifiers and keys -----------------------------------------------------------

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


@overload
def arg_id(args: Mapping[str, object], name: str, optional: Literal[False] = False) -> str: ...
@overload
def arg_id(args: Mapping[str, object], name: str, *, optional: bool) -> str | None: ...
def arg_id(args: Mapping[str, object], name: str, optional: bool = False) -> str | None:
    """An identifier: 1-128 of [A-Za-z0-9._:-] (no '/', which separates key parts)."""
    v = args.get(name)
    if v is None and optional:
        return None
    if type(v) is not str or not 0 < len(v) <= 128 or not set(v) <= _ID_CHARS:
        raise Reject(f"{name} must be an identifier of 1-128 characters [A-Za-z0-9._:-]")
    return v


def be4(n: int) -> bytes:
    return n.to_bytes(4, "big")


def be8(n: int) -> bytes:
    return n.to_bytes(8, "big")


def rotation_sign_bytes(chain_id: str, old_key: bytes, new_key: bytes) -> bytes:
    """What a new key signs to prove possession when it replaces ``old_key``."""
    from medchain.storage.crypto import sign_bytes

    return sign_bytes("medchain/rotate-key/v1", chain_id, old_key, new_key)


# Types chaincode may import to annotate with. The sandbox lets it name them in
# annotations only: as values they are classes and aliases (``Record`` would make a
# dict no guard charges for, ``Args`` is ``object``). ``Any`` is not among them:
# importable from the start, it stays allowed anywhere, as installed chaincode may use it.
TYPES = (
    "Args",
    "Context",
    "GenesisView",
    "Identity",
    "OrganizationView",
    "Record",
    "Result",
    "Value",
)

# What chaincode may import from this module (contracts/sandbox.py checks it).
CHAINCODE_API = (
    *TYPES,
    "Any",
    "BASIS_POINTS",
    "DAY_MS",
    "Reject",
    "anchor_sign_bytes",
    "apply_ratio",
    "arg_bytes",
    "arg_choice",
    "arg_id",
    "arg_int",
    "arg_list",
    "arg_str",
    "args_dict",
    "be4",
    "be8",
    "called_by",
    "date_of_day",
    "day_of",
    "day_of_ms",
    "ms_to_iso",
    "pseudonym_of",
    "query",
    "require",
    "rotation_sign_bytes",
    "sha256",
    "transaction",
    "verify_signature",
    "year_of_day",
)
