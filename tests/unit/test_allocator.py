"""The node re-executes itself on jemalloc when the machine has it (node/ops/memory.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medchain.node.ops import memory


def test_allocator_env_preloads_jemalloc_once() -> None:
    env = memory.allocator_env({"PATH": "/bin", "LD_PRELOAD": "/x.so"}, "/lib/libjemalloc.so.2")
    assert env is not None
    assert env["LD_PRELOAD"] == "/lib/libjemalloc.so.2 /x.so"
    assert env["MALLOC_CONF"] == memory.JEMALLOC_CONF and env["PATH"] == "/bin"
    assert memory.allocator_env(env, "/lib/libjemalloc.so.2") is None  # no exec loop


def test_allocator_env_respects_glibc_choice_and_absence() -> None:
    assert memory.allocator_env({"MEDCHAIN_ALLOCATOR": "glibc"}, "/lib/libjemalloc.so.2") is None
    assert memory.allocator_env({}, None) is None
    env = memory.allocator_env({"MALLOC_CONF": "narenas:1"}, "/lib/libjemalloc.so.2")
    assert env is not None and env["MALLOC_CONF"] == "narenas:1"  # the operator's own


@pytest.mark.skipif(memory.jemalloc_path() is None, reason="libjemalloc2 not installed")
def test_a_child_started_with_that_env_runs_on_jemalloc() -> None:
    env = memory.allocator_env({}, memory.jemalloc_path())
    assert env is not None
    out = subprocess.run(
        [sys.executable, "-c", "from node.ops import memory; print(memory.allocator())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "jemalloc"
    assert memory.allocator() == "glibc"  # this test process was not re-executed


_PROBE = """
import json
from medchain.node.ops import memory
before = memory.malloc_info()
held = [bytes(4096) for _ in range(10_000)]  # 40 MiB through malloc (over pymalloc's 512 B)
after = memory.malloc_info()
print(json.dumps([before, after]))
"""


@pytest.mark.skipif(memory.jemalloc_path() is None, reason="libjemalloc2 not installed")
def test_on_jemalloc_malloc_info_reports_jemalloc_statistics() -> None:
    env = memory.allocator_env({}, memory.jemalloc_path())
    assert env is not None
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    before, after = json.loads(out.stdout)
    assert set(before) == {f"jemalloc_{k}_kb" for k in memory._JEMALLOC_STATS}
    grew = after["jemalloc_allocated_kb"] - before["jemalloc_allocated_kb"]
    assert 39_000 <= grew <= 60_000, grew  # 40 MiB requested, in 5 KiB size classes
    assert (
        after["jemalloc_resident_kb"]
        >= after["jemalloc_active_kb"]
        >= after["jemalloc_allocated_kb"]
    )


def test_on_glibc_malloc_info_reports_glibc_statistics() -> None:
    info = memory.malloc_info()  # this test process runs on glibc's malloc
    assert memory.allocator() == "glibc"
    assert set(info) == {"malloc_heap_kb", "malloc_mmap_kb", "malloc_used_kb", "malloc_free_kb"}
    assert info["malloc_used_kb"] > 0
