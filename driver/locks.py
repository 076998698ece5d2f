"""Per-ID locks, so two requests for one endpoint (a retry racing the original,
or start-up reconciliation racing a live request) never interleave, while
requests for different endpoints run in parallel."""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import contextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = defaultdict(lambda: [threading.Lock(), 0])

    @contextmanager
    def hold(self, key: str):
        with self._guard:
            slot = self._locks[key]
            slot[1] += 1
        try:
            with slot[0]:
                yield
        finally:
            with self._guard:
                slot[1] -= 1
                if slot[1] == 0:
                    del self._locks[key]

    def busy(self, key: str) -> bool:
        """Is a request holding (or waiting for) ``key`` right now?  A hint for background work
        that should leave a record alone while a request works on it."""
        with self._guard:
            return key in self._locks
