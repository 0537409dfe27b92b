"""Ordered key-value stores: LevelDB (plyvel) and an in-memory twin.

Both satisfy the same contract (tests/unit/test_kv.py runs against both):
point reads, ordered prefix scans in both directions, and atomic write
batches. ``write(..., sync=True)`` on LevelDB returns only once the batch is
on disk, so a SIGKILL after it returns loses nothing and a SIGKILL before it
returns leaves none of it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

import plyvel


class StoreError(Exception):
    """The store cannot be opened or used (locked, corrupt, missing)."""


class KVStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with ``prefix``, in key order (or reversed).
        ``start`` (a full key) skips keys before it (after it, when reversed)."""
        ...

    def write(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        """Apply all puts (value None = delete) atomically."""
        ...

    def close(self) -> None: ...


class MemoryKV:
    """In-memory twin of :class:`LevelDBKV` for unit and simulation tests."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._lock = threading.Lock()  # writers may run on worker threads, like LevelDB's
        self.closed = False

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys
        lo = bisect.bisect_left(keys, prefix)
        end = _prefix_end(prefix)
        hi = len(keys) if end is None else bisect.bisect_left(keys, end)
        if reverse:
            if start is not None:
                hi = min(hi, bisect.bisect_right(keys, start))
            snapshot = keys[lo:hi][::-1]
        else:
            if start is not None:
                lo = max(lo, bisect.bisect_left(keys, start))
            snapshot = keys[lo:hi]
        for k in snapshot:
            v = self._data.get(k)
            if v is not None:
                yield k, v

    def write(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        with self._lock:
            self._write(puts)

    def _write(self, puts: Mapping[bytes, bytes | None]) -> None:
        for k, v in puts.items():
            if v is None:
                if k in self._data:
                    del self._data[k]
                    del self._keys[bisect.bisect_left(self._keys, k)]
            else:
                if k not in self._data:
                    bisect.insort(self._keys, k)
                self._data[k] = v

    def close(self) -> None:
        self.closed = True


# LevelDB raises any smaller max_open_files to this (64 tables + 10 other files).
MIN_OPEN_FILES = 74


class LevelDBKV:
    """LevelDB through plyvel."""

    def __init__(
        self,
        path: Path,
        create: bool = True,
        bloom_filter_bits: int = 10,
        cache_bytes: int = 8 << 20,
        write_buffer_bytes: int = 4 << 20,
        max_open_files: int = MIN_OPEN_FILES,
        block_size: int = 16 << 10,
        table_bytes: int = 2 << 20,
    ) -> None:
        """``cache_bytes`` bounds LevelDB's block cache (uncompressed blocks read), and
        ``write_buffer_bytes`` its memtable (two exist while one is flushed).

        ``max_open_files`` bounds LevelDB's table cache (it holds that many minus 10
        tables). Each open table keeps its index block, decompressed, on the heap and
        its file mapped, so with LevelDB's default (1,000) a node's memory grows with
        its ledger for the first ~2 GB of tables, about 15 bytes per transaction
        (BENCHMARKS.md, memory). ``block_size`` is the uncompressed size of a data
        block; the index holds one entry per block, so 16 KiB (LevelDB: 4 KiB) makes
        each open table's index a quarter the size (and compresses a little better).
        ``table_bytes`` is the size at which LevelDB starts a new table file."""
        try:
            # Bloom filters: most reads of a node look up keys that do not exist (new tx
            # ids, new record ids, first nonces); without a filter each such read searches
            # a data block in every level, and touches its pages (RSS of mapped tables).
            self._db = plyvel.DB(
                str(path),
                create_if_missing=create,
                bloom_filter_bits=bloom_filter_bits,
                lru_cache_size=cache_bytes,
                write_buffer_size=write_buffer_bytes,
                max_open_files=max_open_files,  # LevelDB raises it to at least 74
                block_size=block_size,
                max_file_size=table_bytes,
            )
        except plyvel.IOError as exc:
            raise StoreError(
                f"cannot open LevelDB at {path}: {exc} (is another node using it?)"
            ) from None
        except plyvel.Error as exc:
            raise StoreError(f"cannot open LevelDB at {path}: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def memory_kb(self) -> int:
        """LevelDB's own estimate of its memory (memtables, block cache, table cache)."""
        v = self._db.get_property(b"leveldb.approximate-memory-usage")
        return int(v) // 1024 if v else 0

    def scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        end = _prefix_end(prefix)
        if reverse:
            stop = end if start is None else start
            it = self._db.iterator(
                start=prefix, stop=stop, include_stop=start is not None, reverse=True
            )
        else:
            it = self._db.iterator(
                start=start if start is not None and start > prefix else prefix, stop=end
            )
        with it:
            yield from it

    def write(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        with self._db.write_batch(sync=sync) as wb:
            for k, v in puts.items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)

    def close(self) -> None:
        self._db.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None
