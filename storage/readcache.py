"""A bounded read cache of committed state, safe with one committing thread and
any number of readers.

Only keys that were read and exist are cached; a commit refreshes the
entries it touches and never adds others (most writes, like a new record's
anchor, are not read again soon). When full, the oldest quarter goes. A read
that raced a commit is not cached (the commit epoch changed under it), so the
cache never holds a value older than the committed state.

Absent keys are not cached: on a ledger they are nearly all one-off lookups
(a transaction's nonce, a new record's id) that are never asked again. Caching
them would churn the whole cache under steady load, and short-lived entries
among long-lived ones fragment the Python heap: RSS creeps up while the object
count stays flat.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping

_MISSING = object()


class ReadCache:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._d: dict[bytes, bytes | None] = {}
        self._lock = threading.Lock()
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: bytes, load: Callable[[bytes], bytes | None]) -> bytes | None:
        v = self._d.get(key, _MISSING)
        if v is not _MISSING:
            return v  # type: ignore[return-value]
        epoch = self._epoch
        value = load(key)
        if value is None:
            return None
        with self._lock:
            if self._epoch == epoch:
                if len(self._d) >= self.limit:
                    for k in list(itertools.islice(self._d, self.limit // 4 or 1)):
                        del self._d[k]
                self._d[key] = value
        return value

    def committed(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Call after the writes are in the store."""
        with self._lock:
            d = self._d
            for k, v in writes.items():
                if k in d:
                    d[k] = v
            self._epoch += 1
