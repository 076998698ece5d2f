"""MemoryStore: the dict-backed fake of the Store port, for unit tests.

Design note.  It has the same semantics as the real stores and passes the same
conformance suite (tests/store): one store-wide revision bumped by every write,
an event history for ``watch`` bounded to ``history`` entries (older start
revisions raise Compacted, so tests can provoke compaction cheaply), and values
stored as JSON text.  One Condition guards everything; writers notify it so
watchers wake at once.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Iterator

from store._common import BATCH, decode, encode, watch_loop
from store.base import Compacted, Entry, Event


class MemoryStore:
    """An in-process Store; safe to share between threads."""

    def __init__(self, history: int = 1000) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._history = history
        self._cond = threading.Condition()
        self._data: dict[str, tuple[str, int]] = {}
        self._events: deque[tuple[int, str, str | None]] = deque()
        self._revision = 0
        self._compacted = 0  # newest revision whose event was dropped
        self._closed = False

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._cond:
            item = self._data.get(key)
        return None if item is None else Entry(key, decode(item[0]), item[1])

    def list(self, prefix: str) -> list[Entry]:
        with self._cond:
            items = [(k, v) for k, v in self._data.items() if k.startswith(prefix)]
        items.sort()
        return [Entry(k, decode(text), rev) for k, (text, rev) in items]

    def current_revision(self) -> int:
        with self._cond:
            return self._revision

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: dict) -> int | None:
        text = encode(value)
        with self._cond:
            if key in self._data:
                return None
            return self._apply(key, text)

    def cas(self, key: str, value: dict, revision: int) -> int | None:
        text = encode(value)
        with self._cond:
            item = self._data.get(key)
            if item is None or item[1] != revision:
                return None
            return self._apply(key, text)

    def delete(self, key: str, revision: int | None = None) -> bool:
        with self._cond:
            item = self._data.get(key)
            if item is None or (revision is not None and item[1] != revision):
                return False
            self._apply(key, None)
            return True

    def _apply(self, key: str, text: str | None) -> int:
        """Record one change under the lock: new revision, data, event, wake-up."""
        self._revision += 1
        if text is None:
            del self._data[key]
        else:
            self._data[key] = (text, self._revision)
        self._events.append((self._revision, key, text))
        if len(self._events) > self._history:
            self._compacted = self._events.popleft()[0]
        self._cond.notify_all()
        return self._revision

    # -- watch ---------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, timeout: float | None = None) -> Iterator[Event]:
        # Check eagerly so a too-old start revision fails at the call, not at first next().
        with self._cond:
            self._check_compacted(max(start_revision, 1))
        return watch_loop(self, prefix, start_revision, timeout)

    def fetch_events(self, prefix: str, scan_from: int) -> tuple[list[Event], int] | None:
        with self._cond:
            if self._closed:
                return None
            self._check_compacted(scan_from)
            found: list[Event] = []
            next_from = self._revision + 1
            for rev, key, text in self._events:
                if rev < scan_from or not key.startswith(prefix):
                    continue
                found.append(Event(key, decode(text), rev))
                if len(found) == BATCH:
                    next_from = rev + 1
                    break
            return found, max(next_from, scan_from)

    def wait_for_change(self, scan_from: int, seconds: float | None) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._revision >= scan_from, seconds)

    def _check_compacted(self, scan_from: int) -> None:
        if scan_from <= self._compacted:
            raise Compacted(f"revision {scan_from} is compacted (history starts after {self._compacted})")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
