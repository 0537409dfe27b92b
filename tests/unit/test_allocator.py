"""The node re-executes itself on jemalloc when the machine has it (node/memory.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from node import memory


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
        [sys.executable, "-c", "from node import memory; print(memory.allocator())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "jemalloc"
    assert memory.allocator() == "glibc"  # this test process was not re-executed
