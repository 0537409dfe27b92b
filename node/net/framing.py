"""Length-prefixed frames: a 4-byte big-endian length, then the payload.

``FrameReader`` turns a byte stream that arrives in arbitrary chunks into
whole frames and refuses any frame above its limit before buffering it.
``encode_frames`` coalesces many frames into one write.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_LEN = struct.Struct(">I")
HEADER = _LEN.size


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


def encode_frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def encode_frames(payloads: Iterable[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(p)) + p for p in payloads)


class FrameReader:
    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every frame now complete. Raises FrameTooLarge."""
        self._buf += data
        frames: list[bytes] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            if len(buf) - pos - HEADER < size:
                break
            start = pos + HEADER
            frames.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buf)
