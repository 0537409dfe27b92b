"""Storing many records: one synced vault batch, written off the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import trio

from medchain.node.records.service import RecordService
from medchain.node.records.store import PutItem, RecordStore
from medchain.storage.fhirdoc import FhirError
from medchain.storage.kv import MemoryKV
from medchain.storage.vault import Vault, VaultPut
from tests.helpers import Consortium
from tests.rpcnode import one_node_driver


class RecordingKV(MemoryKV):
    """MemoryKV that records each write: its size, sync flag and thread; and can be slow."""

    def __init__(self, write_s: float = 0.0) -> None:
        super().__init__()
        self.write_s = write_s
        self.writes: list[tuple[int, bool, str]] = []
        self.synced_at = 0.0

    def write(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        time.sleep(self.write_s)  # stands for the fsync
        super().write(puts, sync)
        self.writes.append((len(puts), sync, threading.current_thread().name))
        self.synced_at = time.monotonic()


def observation(i: int, date: str = "2024-05-01") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"obs-{i}", "effectiveDateTime": date}


def service(store: RecordingKV) -> RecordStore:
    return RecordService(one_node_driver(Consortium.make(n=1)), Vault(store, bytes(32))).store


def test_vault_put_many_is_one_synced_batch() -> None:
    store = RecordingKV()
    vault = Vault(store, bytes(32))
    puts = [VaultPut(f"r{i}", b'{"n":%d}' % i, bytes(32), {"i": i}) for i in range(300)]
    hashes = vault.put_many(puts)
    # 300 records and the count written with them
    assert store.writes == [(301, True, threading.current_thread().name)]
    rec = vault.get("r7")
    assert rec is not None and rec.content == b'{"n":7}' and rec.content_hash == hashes[7]
    assert vault.put_many([]) == [] and len(store.writes) == 1  # nothing to write: no sync


def test_a_put_of_many_items_issues_one_synced_batch() -> None:
    store = RecordingKV()
    svc = service(store)
    first = svc.put(observation(0), "p-1")
    assert first["status"] == "stored" and len(store.writes) == 1
    items = [PutItem(observation(i), "p-1") for i in range(1000)]
    items.append(PutItem(observation(5), "p-1"))  # repeated in the same call: same content
    items.append(PutItem(observation(6, "2020-01-01"), "p-1"))  # same id, other content
    items.append(PutItem({"resourceType": "Observation"}, "p-1"))  # no date
    out = svc.put_many(items)
    assert store.writes[1:] == [(1000, True, threading.current_thread().name)]  # + the count
    assert out[0]["status"] == "exists" and out[0]["fields_root"] == first["fields_root"]
    assert all(r["status"] == "stored" for r in out[1:1000])
    assert out[1000]["status"] == "exists" and out[1000]["fields_root"] == out[5]["fields_root"]
    assert isinstance(out[1001], FhirError) and "twice" in str(out[1001])
    assert isinstance(out[1002], FhirError)
    assert svc.vault.count() == 1000
    # the next call sees the stored ones: nothing new, nothing written
    again = svc.put_many(items[:10])
    assert [r["status"] for r in again] == ["exists"] * 10 and len(store.writes) == 2


@pytest.mark.trio
async def test_the_batch_is_written_off_the_event_loop_and_awaited_until_synced() -> None:
    store = RecordingKV(write_s=0.5)
    svc = service(store)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        t0 = time.monotonic()
        out = await svc.put_many_off_loop([PutItem(observation(i), "p-1") for i in range(200)])
        done = time.monotonic()
        nursery.cancel_scope.cancel()
    assert [r["status"] for r in out] == ["stored"] * 200
    ((n, synced, thread),) = store.writes
    assert n == 201 and synced and thread != threading.current_thread().name
    assert done >= store.synced_at  # the caller hears back only after the sync
    during = [t for t in ticks if t0 <= t <= store.synced_at]
    assert len(during) >= 10  # the loop kept running while the batch was written
