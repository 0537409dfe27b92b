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

log = logging.getLogger("medchain.memory")

M_ARENA_MAX = -8

_libc: ctypes.CDLL | None = None


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
    """Call before worker threads start."""
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(M_ARENA_MAX, n))


def trim() -> bool:
    """Return free heap pages to the OS (a few ms at most)."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0))
