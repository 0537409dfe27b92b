"""Keep the heap from creeping: glibc's malloc gives each thread that allocates
its own arena and rarely hands freed pages back. A node allocates in its trio
thread and in worker threads (verification, execution, commits) and churns
through short-lived objects, so RSS would creep up with a flat Python heap.
Limiting arenas and trimming now and then keeps RSS at what is in use.
No-ops where glibc is absent."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import tracemalloc
from typing import Any

log = logging.getLogger("medchain.memory")

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1

_libc: ctypes.CDLL | None = None

# jemalloc, when the system has it (Debian: libjemalloc2), replaces glibc's malloc in
# the node process: under sustained load glibc's heap fragments and the node's RSS
# creeps although nothing in use grows; jemalloc keeps it flat at no cost in commit
# latency (BENCHMARKS.md, memory). MEDCHAIN_ALLOCATOR=glibc keeps glibc.
ALLOCATOR_ENV = "MEDCHAIN_ALLOCATOR"
JEMALLOC_CONF = "background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0"
_JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)


def jemalloc_path() -> str | None:
    """The system's jemalloc shared library, if installed."""
    for path in _JEMALLOC_PATHS:
        if os.path.exists(path):
            return path
    return None


def allocator_env(environ: dict[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute the node with so that jemalloc is its allocator,
    or None to run as is (no jemalloc, already chosen, or MEDCHAIN_ALLOCATOR=glibc)."""
    if library is None or environ.get(ALLOCATOR_ENV):
        return None
    env = dict(environ)
    env[ALLOCATOR_ENV] = "jemalloc"
    env["LD_PRELOAD"] = " ".join(x for x in (library, environ.get("LD_PRELOAD", "")) if x)
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return env


def allocator() -> str:
    """Which malloc this process runs on: "jemalloc" or "glibc"."""
    try:
        with open("/proc/self/maps") as f:
            return "jemalloc" if "libjemalloc" in f.read() else "glibc"
    except OSError:
        return "glibc"


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
            lib.malloc_trim  # noqa: B018 - glibc only
            lib.mallopt  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def limit_arenas(n: int = 2) -> bool:
    """Call before worker threads start: at most ``n`` malloc arenas, and buffers of
    128 KiB and more (frames, blocks) in their own mappings, returned when freed
    (glibc's default raises that threshold as big buffers come and go, and big
    buffers of varying sizes then fragment the heap)."""
    lib = _glibc()
    return bool(
        lib is not None
        and lib.mallopt(M_ARENA_MAX, n)
        and lib.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        and lib.mallopt(M_TRIM_THRESHOLD, 1024 * 1024)
    )


def trim() -> bool:
    """Return free heap pages to the OS (a few ms at most)."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0))


_base: Any = None


def start_tracing() -> bool:
    """Diagnostics only: with MEDCHAIN_TRACEMALLOC=1, trace Python allocations. Slow
    enough that a loaded cluster stalls under it: use it at a few tx/s."""
    if os.environ.get("MEDCHAIN_TRACEMALLOC") != "1":
        return False
    tracemalloc.start(8)
    return True


def log_growth(top: int = 12) -> None:
    """The first call takes a baseline; each later one logs where traced memory grew
    since it (growth that only ever adds up stands out from churn)."""
    global _base
    snap = tracemalloc.take_snapshot()
    if _base is None:
        _base = snap
        return
    total = sum(s.size for s in snap.statistics("filename"))
    for st in snap.compare_to(_base, "traceback")[:top]:
        frames = " <- ".join(
            f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in list(st.traceback)[::-1][:8]
        )
        log.warning(
            "heap growth %+d KiB (%+d blocks) at %s; traced total %d KiB",
            st.size_diff // 1024,
            st.count_diff,
            frames,
            total // 1024,
            extra={"event": "heap-growth"},
        )


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_JEMALLOC_STATS = ("allocated", "active", "resident", "metadata", "mapped", "retained")
_jemalloc: ctypes.CDLL | None = None
_jemalloc_probed = False


def _jemalloc_lib() -> ctypes.CDLL | None:
    """jemalloc's control interface when this process runs on jemalloc."""
    global _jemalloc, _jemalloc_probed
    if not _jemalloc_probed:
        _jemalloc_probed = True
        if allocator() == "jemalloc":
            try:
                lib = ctypes.CDLL(None)  # the preloaded library's symbols come first
                lib.mallctl.argtypes = [
                    ctypes.c_char_p,
                    ctypes.c_void_p,
                    ctypes.POINTER(ctypes.c_size_t),
                    ctypes.c_void_p,
                    ctypes.c_size_t,
                ]
                _jemalloc = lib
            except (OSError, AttributeError):
                pass
    return _jemalloc


def jemalloc_stats() -> dict[str, int]:
    """jemalloc's view (KiB): ``allocated`` is what the program holds; ``active`` the
    pages its allocations occupy (active - allocated: fragmentation inside pages);
    ``resident`` what jemalloc keeps in RAM, its own ``metadata`` included; ``mapped``
    and ``retained`` address space. Empty when not on jemalloc."""
    lib = _jemalloc_lib()
    if lib is None:
        return {}
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(ctypes.sizeof(epoch))
    # Statistics are a snapshot taken when the epoch advances.
    if lib.mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size):
        return {}
    out: dict[str, int] = {}
    for name in _JEMALLOC_STATS:
        value = ctypes.c_size_t(0)
        size = ctypes.c_size_t(ctypes.sizeof(value))
        if (
            lib.mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, 0)
            == 0
        ):
            out[f"jemalloc_{name}_kb"] = value.value // 1024
    return out


def malloc_info() -> dict[str, int]:
    """The allocator's view (KiB). On jemalloc: :func:`jemalloc_stats`. On glibc: heap
    obtained by brk/arenas, in mmapped chunks, in use, free; free heap that does not go
    back to the OS is fragmentation."""
    if _jemalloc_lib() is not None:
        return jemalloc_stats()
    lib = _glibc()
    if lib is None or not hasattr(lib, "mallinfo2"):
        return {}
    lib.mallinfo2.restype = _Mallinfo2
    m = lib.mallinfo2()
    return {
        "malloc_heap_kb": m.arena // 1024,
        "malloc_mmap_kb": m.hblkhd // 1024,
        "malloc_used_kb": m.uordblks // 1024,
        "malloc_free_kb": m.fordblks // 1024,
    }
