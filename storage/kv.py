"""Ordered key-value stores: LevelDB (plyvel) and an in-memory twin.

Both satisfy the same contract (tests/unit/test_kv.py runs against both):
point reads, ordered prefix scans in both directions, and atomic write
batches. ``write(..., sync=True)`` on LevelDB returns only once the batch is
on disk, so a SIGKILL after it returns loses nothing and a SIGKILL before it
returns leaves none of it.
"""

from __future__ import annotations

import bisect
import errno
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import plyvel


class StoreError(Exception):
    """The store cannot be opened or used (locked, corrupt, missing)."""


class StorageDamaged(StoreError):
    """A read found the store's data damaged (a checksum, a missing file, bytes that do
    not decode): the data is not what was written, and nothing read from it is served."""


class StorageWriteFailed(StoreError):
    """A write did not reach the disk (disk full, I/O error, read-only file system).
    The node cannot keep what it promised: it halts (see node.daemon)."""

    def __init__(self, message: str, path: Path, code: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = code


class StoreUnwritable(StoreError):
    """The store cannot be opened for writing (read-only file system, permissions, a
    full disk): its data is not damaged; the file system needs fixing."""


class StoreLocked(StoreError):
    """Another process (a node already running on this data dir) holds the store."""


class StoreReadOnly(StoreError):
    """A write to a store opened read-only (an offline check must leave the data as it
    found it)."""


UNWRITABLE = ("Read-only file system", "Permission denied", "No space left on device")

FailureHook = Callable[[StoreError], None]


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
    """LevelDB through plyvel.

    Opened with LevelDB's paranoid checks, so a damaged write-ahead log or a missing
    table is refused at open instead of skipped. ``create=False`` refuses a store whose
    files are gone rather than starting an empty one in its place. A read or write
    error raises :class:`StorageDamaged` or :class:`StorageWriteFailed` naming the
    store (``name``), and is passed to ``on_failure`` first (the daemon halts on it).

    ``read_only``: for a tool that only reads (``medchain node verify``): the store
    must exist (as with ``create=False``) and every write raises StoreReadOnly. LevelDB
    itself still takes the store's lock and may turn its log into a table at open."""

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
        name: str | None = None,
        on_failure: FailureHook | None = None,
        read_only: bool = False,
    ) -> None:
        """``cache_bytes`` bounds LevelDB's block cache (uncompressed blocks read), and
        ``write_buffer_bytes`` its memtable (two exist while one is flushed).

        ``max_open_files`` bounds LevelDB's table cache (it holds that many minus 10
        tables). Each open table keeps its index block, decompressed, on the heap and
        its file mapped, so with LevelDB's default (1,000) a node's memory grows with
        its ledger until that many tables are open (BENCHMARKS.md, memory).
        ``block_size`` is the uncompressed size of a data block; the index holds one
        entry per block, so 16 KiB (LevelDB: 4 KiB) makes each open table's index a
        quarter the size (and compresses a little better).
        ``table_bytes`` is the size at which LevelDB starts a new table file."""
        self.path = path
        self.name = name or path.name
        self._on_failure = on_failure
        self.read_only = read_only
        create = create and not read_only
        if not create and not (path / "CURRENT").exists():
            raise StoreError(
                f"the {self.name} store at {path} is missing"
                + (" (its CURRENT file is gone)" if path.is_dir() else "")
            )
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
                paranoid_checks=True,
            )
        except plyvel.IOError as exc:
            text = _text(exc)
            if any(u in text for u in UNWRITABLE):
                raise StoreUnwritable(
                    f"cannot open the {self.name} store at {path} for writing: {text}; "
                    f"{device_of(path)}"
                ) from None
            if "lock" in text.lower():
                raise StoreLocked(
                    f"cannot open the {self.name} store at {path}: {text} "
                    "(is another node running on this data dir?)"
                ) from None
            raise StoreError(f"cannot open the {self.name} store at {path}: {text}") from None
        except plyvel.CorruptionError as exc:
            raise StorageDamaged(
                f"the {self.name} store at {path} is damaged: {_text(exc)}"
            ) from None
        except plyvel.Error as exc:
            raise StoreError(f"cannot open the {self.name} store at {path}: {_text(exc)}") from None

    def _damaged(self, exc: plyvel.Error) -> StorageDamaged:
        err = StorageDamaged(f"the {self.name} store at {self.path} is damaged: {_text(exc)}")
        if self._on_failure is not None:
            self._on_failure(err)
        return err

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key)
        except plyvel.Error as exc:
            raise self._damaged(exc) from None
        return value

    def check_all(self, progress: Callable[[int], None] | None = None) -> int:
        """Read every entry with LevelDB's checksums verified; return the number read.
        Raises StorageDamaged at the first damaged block."""
        n = 0
        try:
            with self._db.iterator(verify_checksums=True, fill_cache=False) as it:
                for _ in it:
                    n += 1
                    if progress is not None and n % 4096 == 0:
                        progress(4096)
        except plyvel.Error as exc:
            raise self._damaged(exc) from None
        if progress is not None:
            progress(n % 4096)
        return n

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
        try:
            with it:
                yield from it
        except plyvel.Error as exc:
            raise self._damaged(exc) from None

    def write(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        if self.read_only:
            raise StoreReadOnly(f"the {self.name} store at {self.path} is open read-only")
        try:
            with self._db.write_batch(sync=sync) as wb:
                for k, v in puts.items():
                    if v is None:
                        wb.delete(k)
                    else:
                        wb.put(k, v)
        except plyvel.Error as exc:
            err = write_failure(self.name, self.path, _text(exc))
            if self._on_failure is not None:
                self._on_failure(err)
            raise err from None

    def close(self) -> None:
        self._db.close()


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def write_failure(name: str, path: Path, detail: str) -> StorageWriteFailed:
    """The failure of a write to the store ``name`` at ``path``, with the device, the
    file system's free space and the errno LevelDB reported (by its text)."""
    code = next((c for c in errno.errorcode if os.strerror(c) in detail), None)
    where = device_of(path)
    named = f" ({errno.errorcode[code]})" if code is not None else ""
    return StorageWriteFailed(
        f"cannot write the {name} store at {path}{named}: {detail}; {where}", path, code
    )


def device_of(path: Path) -> str:
    """Which file system holds ``path``: mount point, device and free bytes."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.stat(p)
        vfs = os.statvfs(p)
    except OSError as exc:
        return f"device unknown ({exc.strerror})"
    mount = p.resolve()
    while mount != mount.parent and os.stat(mount.parent).st_dev == st.st_dev:
        mount = mount.parent
    free = vfs.f_bavail * vfs.f_frsize
    return (
        f"device {os.major(st.st_dev)}:{os.minor(st.st_dev)} mounted at {mount}, "
        f"{free // 1024} KiB free"
    )


def _prefix_end(prefix: bytes) -> bytes | None:
    """Smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None
