"""One contract, two stores: LevelDB (plyvel) and the in-memory twin."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchain.storage.kv import KVStore, LevelDBKV, MemoryKV, StoreError, StoreReadOnly


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KVStore]:
    s: KVStore = MemoryKV() if request.param == "memory" else LevelDBKV(tmp_path / "db")
    yield s
    s.close()


def test_get_put_delete(store: KVStore) -> None:
    assert store.get(b"a") is None
    store.write({b"a": b"1", b"b": b"2"})
    assert store.get(b"a") == b"1"
    store.write({b"a": None, b"c": b"3"})
    assert store.get(b"a") is None and store.get(b"c") == b"3"
    store.write({b"zz": None})  # deleting a missing key is fine


def test_scan_prefix_order_start_reverse(store: KVStore) -> None:
    store.write({k: k.upper() for k in [b"a1", b"a2", b"a3", b"b1", b"a\xff", b"\xff\xff", b"a"]})
    assert [k for k, _ in store.scan(b"a")] == [b"a", b"a1", b"a2", b"a3", b"a\xff"]
    assert [k for k, _ in store.scan(b"a", reverse=True)] == [b"a\xff", b"a3", b"a2", b"a1", b"a"]
    assert [k for k, _ in store.scan(b"a", start=b"a2")] == [b"a2", b"a3", b"a\xff"]
    assert [k for k, _ in store.scan(b"a", start=b"a2", reverse=True)] == [b"a2", b"a1", b"a"]
    assert [k for k, _ in store.scan(b"\xff")] == [b"\xff\xff"]
    assert len(list(store.scan(b""))) == 7
    assert dict(store.scan(b"b")) == {b"b1": b"B1"}


def test_batch_is_atomic_unit(store: KVStore) -> None:
    store.write({b"k%d" % i: b"v" for i in range(100)}, sync=True)
    assert len(list(store.scan(b"k"))) == 100


def test_leveldb_lock_gives_clear_error(tmp_path: Path) -> None:
    db = LevelDBKV(tmp_path / "db")
    with pytest.raises(StoreError, match="another node"):
        LevelDBKV(tmp_path / "db")
    db.close()


def test_a_read_only_store_reads_refuses_writes_and_is_never_created(tmp_path: Path) -> None:
    db = LevelDBKV(tmp_path / "db")
    db.write({b"a": b"1"})
    db.close()
    ro = LevelDBKV(tmp_path / "db", read_only=True)
    assert ro.get(b"a") == b"1" and dict(ro.scan(b"")) == {b"a": b"1"}
    with pytest.raises(StoreReadOnly, match=r"the db store at .* is open read-only"):
        ro.write({b"b": b"2"})
    ro.close()
    again = LevelDBKV(tmp_path / "db", create=False)
    assert again.get(b"b") is None
    again.close()
    with pytest.raises(StoreError, match="is missing"):
        LevelDBKV(tmp_path / "none", create=True, read_only=True)
    assert not (tmp_path / "none").exists()


def test_leveldb_keeps_a_bounded_number_of_tables_open(tmp_path: Path) -> None:
    """LevelDB's default keeps up to ~1,000 tables open, each with its index on the heap
    and its file mapped, so memory grows with the ledger; ours stays at 64 tables."""
    path = tmp_path / "db"
    db = LevelDBKV(path, table_bytes=1 << 20)  # LevelDB's smallest tables
    values = {b"%08d" % i: os.urandom(400) for i in range(300_000)}  # incompressible
    items = sorted(values.items(), key=lambda kv: kv[1])  # random key order: compactions merge
    for at in range(0, len(items), 5_000):
        db.write(dict(items[at : at + 5_000]), sync=False)
    db._db.compact_range()  # into 1 MiB tables
    assert all(db.get(k) == v for k, v in items[::10])  # reads reach every table
    tables = sum(1 for f in path.iterdir() if f.suffix == ".ldb")
    held = _open_tables(path)
    db.close()
    assert tables > 64
    # the table cache (max_open_files - 10), plus the output a background compaction
    # (started by our reads) may be writing at this moment
    assert 0 < len(held) <= 64 + 2


def _open_tables(path: Path) -> set[str]:
    """Table files this process has open or mapped (LevelDB maps a table and closes
    its descriptor)."""
    names = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()}
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # closed since it was listed
            names.add(str(fd.readlink()))
    return {n for n in names if n.startswith(str(path)) and n.endswith(".ldb")}
