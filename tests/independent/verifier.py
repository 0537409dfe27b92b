"""Independent verifier of medchain evidence certificates (`medchain-evidence/v2`).

Written from docs/evidence.md alone (plus the MessagePack spec, RFC 9162 and
RFC 8032 / RFC 8785). Standard library and PyNaCl only.

    python -m tests.independent.verifier FILE [--genesis-hash HEX] [--content FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


class Fail(Exception):
    """A verification step failed; the message names what failed."""


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


# ---------------------------------------------------------------- MessagePack (§1.1)

MAX_DEPTH = 64  # garbage such as 0x91 0x91 0x91 ... must not exhaust the stack


def unpack(data: bytes) -> Any:
    """Decode exactly one value (no trailing bytes) of the subset of §1.1.

    Strict on purpose: a map key that is not a string or appears twice is
    refused, so no two readers can see different facts in the same signed bytes.
    """
    value, pos = _dec(data, 0, 0)
    if pos != len(data):
        raise Fail(f"{len(data) - pos} trailing bytes")
    return value


def unpack_canonical(data: bytes, what: str) -> Any:
    """Decode and require that the bytes are the canonical encoding (§1.1)."""
    try:
        value = unpack(data)
    except Fail as e:
        raise Fail(f"{what}: not valid MessagePack ({e})") from None
    if pack(value) != data:
        raise Fail(f"{what}: not canonically encoded")
    return value


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise Fail("truncated")
    return data[pos:pos + n], pos + n


def _uint_at(data: bytes, pos: int, size: int) -> tuple[int, int]:
    raw, pos = _take(data, pos, size)
    return int.from_bytes(raw, "big"), pos


def _dec(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise Fail("nested too deeply")
    t, pos = _uint_at(data, pos, 1)
    if t <= 0x7F:
        return t, pos
    if t >= 0xE0:
        return t - 0x100, pos
    if 0x80 <= t <= 0x8F:
        return _dec_map(data, pos, t & 0x0F, depth)
    if 0x90 <= t <= 0x9F:
        return _dec_array(data, pos, t & 0x0F, depth)
    if 0xA0 <= t <= 0xBF:
        return _dec_str(data, pos, t & 0x1F)
    if t == 0xC0:
        return None, pos
    if t in (0xC2, 0xC3):
        return t == 0xC3, pos
    if t in (0xC4, 0xC5, 0xC6):  # bin 8/16/32
        n, pos = _uint_at(data, pos, 1 << (t - 0xC4))
        return _take(data, pos, n)
    if t in (0xCC, 0xCD, 0xCE, 0xCF):  # uint 8/16/32/64
        return _uint_at(data, pos, 1 << (t - 0xCC))
    if t in (0xD0, 0xD1, 0xD2, 0xD3):  # int 8/16/32/64
        size = 1 << (t - 0xD0)
        raw, pos = _take(data, pos, size)
        return int.from_bytes(raw, "big", signed=True), pos
    if t in (0xD9, 0xDA, 0xDB):  # str 8/16/32
        n, pos = _uint_at(data, pos, 1 << (t - 0xD9))
        return _dec_str(data, pos, n)
    if t in (0xDC, 0xDD):  # array 16/32
        n, pos = _uint_at(data, pos, 2 if t == 0xDC else 4)
        return _dec_array(data, pos, n, depth)
    if t in (0xDE, 0xDF):  # map 16/32
        n, pos = _uint_at(data, pos, 2 if t == 0xDE else 4)
        return _dec_map(data, pos, n, depth)
    raise Fail(f"type byte 0x{t:02x} not allowed (float, ext or reserved)")


def _dec_str(data: bytes, pos: int, n: int) -> tuple[str, int]:
    raw, pos = _take(data, pos, n)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise Fail("string is not UTF-8") from None


def _dec_array(data: bytes, pos: int, n: int, depth: int) -> tuple[list, int]:
    if n > len(data) - pos:  # every item takes at least one byte
        raise Fail("truncated")
    items = []
    for _ in range(n):
        item, pos = _dec(data, pos, depth + 1)
        items.append(item)
    return items, pos


def _dec_map(data: bytes, pos: int, n: int, depth: int) -> tuple[dict, int]:
    if 2 * n > len(data) - pos:
        raise Fail("truncated")
    out: dict[str, Any] = {}
    for _ in range(n):
        key, pos = _dec(data, pos, depth + 1)
        if not isinstance(key, str):
            raise Fail("map key is not a string")
        if key in out:
            raise Fail(f"duplicate map key {key!r}")
        out[key], pos = _dec(data, pos, depth + 1)
    return out, pos


def _len_prefix(n: int, small: tuple[int, int] | None, codes: tuple[int, ...]) -> bytes:
    """Header for str/bin/array/map: fix form if allowed, else the shortest sized form."""
    if small is not None and n < small[1]:
        return bytes([small[0] + n])
    for code, size in zip(codes, (1, 2, 4) if len(codes) == 3 else (2, 4)):
        if n < 1 << (8 * size):
            return bytes([code]) + n.to_bytes(size, "big")
    raise ValueError("too long for MessagePack")


def pack(x: Any) -> bytes:
    """Canonical encoding, exactly the table of §1.1."""
    if x is None:
        return b"\xc0"
    if isinstance(x, bool):  # before int: bool is an int subclass
        return b"\xc3" if x else b"\xc2"
    if isinstance(x, int):
        if 0 <= x <= 0x7F or -32 <= x < 0:
            return struct.pack(">b" if x < 0 else ">B", x)
        if x > 0:
            for code, fmt, top in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16),
                                   (0xCE, ">I", 1 << 32), (0xCF, ">Q", 1 << 64)):
                if x < top:
                    return bytes([code]) + struct.pack(fmt, x)
        for code, fmt, bot in ((0xD0, ">b", -(1 << 7)), (0xD1, ">h", -(1 << 15)),
                               (0xD2, ">i", -(1 << 31)), (0xD3, ">q", -(1 << 63))):
            if x >= bot:
                return bytes([code]) + struct.pack(fmt, x)
        raise ValueError("integer out of range")
    if isinstance(x, str):
        raw = x.encode("utf-8")
        return _len_prefix(len(raw), (0xA0, 32), (0xD9, 0xDA, 0xDB)) + raw
    if isinstance(x, (bytes, bytearray)):
        return _len_prefix(len(x), None, (0xC4, 0xC5, 0xC6)) + bytes(x)
    if isinstance(x, (list, tuple)):
        return _len_prefix(len(x), (0x90, 16), (0xDC, 0xDD)) + b"".join(pack(i) for i in x)
    if isinstance(x, dict):
        keys = sorted(x, key=lambda k: k.encode("utf-8"))  # str keys only (§1.1)
        body = b"".join(pack(k) + pack(x[k]) for k in keys)
        return _len_prefix(len(x), (0x80, 16), (0xDE, 0xDF)) + body
    raise ValueError(f"cannot encode {type(x).__name__}")
