"""MemoryStore: the dict-backed fake of the Store port, for unit tests.

Design note.  It has the same semantics as the real stores and passes the same
conformance suite (tests/store): one store-wide revision bumped by every write,
an event history for ``watch`` bounded to ``history`` entries (older start
revisions raise Compacted, so tests can provoke compaction cheaply), and values
stored as JSON text.  One Condition guards everything; writers notify it so
watchers wake at once.

Leases behave like etcd's, on an injectable ``clock`` so cluster tests can
expire a host without sleeping: ``MemoryStore(clock=fake.now)``, advance the
fake, and the next call of ANY public method (or a watcher's next poll, every
LEASE_POLL_SECONDS) deletes the keys of every lease past its deadline, in one
revision per lease, with ordinary delete events.  Expiring lazily keeps the
fake free of timer threads; nothing can observe a lease that should have
ended, because every observation goes through a public method.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from pynet.store._common import BATCH, decode, encode, watch_loop
from pynet.store.base import Compacted, Entry, Event, LeaseNotFound

LEASE_POLL_SECONDS = 0.05  # how often a waiting watcher checks the clock while leases exist


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """An in-process Store; safe to share between threads."""

    supports_leases = True

    def __init__(self, history: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._history = history
        self._clock = clock
        self._cond = threading.Condition()
        self._data: dict[str, tuple[str, int, int]] = {}  # key -> (json text, revision, lease id)
        self._events: deque[tuple[int, str, str | None]] = deque()
        self._revision = 0
        self._compacted = 0  # newest revision whose event was dropped
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(1)
        self._closed = False

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._cond:
            self._expire()
            item = self._data.get(key)
        return None if item is None else Entry(key, decode(item[0]), item[1])

    def list(self, prefix: str) -> list[Entry]:
        with self._cond:
            self._expire()
            items = [(k, v[:2]) for k, v in self._data.items() if k.startswith(prefix)]
        items.sort()
        return [Entry(k, decode(text), rev) for k, (text, rev) in items]

    def current_revision(self) -> int:
        with self._cond:
            self._expire()
            return self._revision

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: dict, lease: int = 0) -> int | None:
        text = encode(value)
        with self._cond:
            self._expire()
            if key in self._data:
                return None
            self._check_lease(lease)  # after the compare, as etcd checks only the branch it takes
            return self._apply(key, text, lease)

    def cas(self, key: str, value: dict, revision: int, lease: int = 0) -> int | None:
        text = encode(value)
        with self._cond:
            self._expire()
            item = self._data.get(key)
            if item is None or item[1] != revision:
                return None
            self._check_lease(lease)
            return self._apply(key, text, lease)

    def delete(self, key: str, revision: int | None = None) -> bool:
        with self._cond:
            self._expire()
            item = self._data.get(key)
            if item is None or (revision is not None and item[1] != revision):
                return False
            self._apply(key, None)
            return True

    def _apply(self, key: str, text: str | None, lease: int = 0) -> int:
        """Record one change under the lock: new revision, data, event, wake-up."""
        self._revision += 1
        self._write(key, text, lease)
        self._cond.notify_all()
        return self._revision

    def _write(self, key: str, text: str | None, lease: int) -> None:
        """Change one key at the current revision, keeping lease membership and history."""
        old = self._data.get(key)
        if old is not None and old[2] in self._leases:
            self._leases[old[2]].keys.discard(key)
        if text is None:
            del self._data[key]
        else:
            self._data[key] = (text, self._revision, lease)
            if lease:
                self._leases[lease].keys.add(key)
        self._events.append((self._revision, key, text))
        if len(self._events) > self._history:
            self._compacted = self._events.popleft()[0]

    # -- leases --------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        if ttl < 1:
            raise ValueError(f"lease TTL must be at least 1 second, got {ttl}")
        with self._cond:
            self._expire()
            lease_id = next(self._lease_ids)
            self._leases[lease_id] = _Lease(ttl, self._clock() + ttl)
            return lease_id

    def refresh_lease(self, lease_id: int) -> bool:
        with self._cond:
            self._expire()
            lease = self._leases.get(lease_id)
            if lease is None:
                return False
            lease.deadline = self._clock() + lease.ttl
            return True

    def revoke_lease(self, lease_id: int) -> None:
        with self._cond:
            self._expire()
            self._end_lease(lease_id)

    def _check_lease(self, lease_id: int) -> None:
        if lease_id and lease_id not in self._leases:
            raise LeaseNotFound(f"lease {lease_id} does not exist (expired or revoked)")

    def _expire(self) -> None:
        """Under the lock: end every lease whose deadline has passed, oldest first."""
        if not self._leases:
            return
        now = self._clock()
        due = sorted((lease.deadline, lease_id) for lease_id, lease in self._leases.items()
                     if lease.deadline <= now)
        for _, lease_id in due:
            self._end_lease(lease_id)

    def _end_lease(self, lease_id: int) -> None:
        """Drop the lease and delete its keys, all in one new revision (as etcd does)."""
        lease = self._leases.pop(lease_id, None)
        if lease is None or not lease.keys:
            return
        self._revision += 1
        for key in sorted(lease.keys):
            self._write(key, None, 0)
        self._cond.notify_all()

    # -- watch ---------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, timeout: float | None = None) -> Iterator[Event]:
        # Check eagerly so a too-old start revision fails at the call, not at first next().
        with self._cond:
            self._expire()
            self._check_compacted(max(start_revision, 1))
        return watch_loop(self, prefix, start_revision, timeout)

    def fetch_events(self, prefix: str, scan_from: int) -> tuple[list[Event], int] | None:
        with self._cond:
            if self._closed:
                return None
            self._expire()
            self._check_compacted(scan_from)
            found: list[Event] = []
            next_from = self._revision + 1
            for rev, key, text in self._events:
                if rev < scan_from or not key.startswith(prefix):
                    continue
                if len(found) >= BATCH and rev != found[-1].revision:
                    next_from = rev  # never split one revision's events between two batches
                    break
                found.append(Event(key, decode(text), rev))
            return found, max(next_from, scan_from)

    def wait_for_change(self, scan_from: int, seconds: float | None) -> None:
        with self._cond:
            if self._leases:
                # Expiry is driven by the (possibly fake) clock, not by a notify: poll it.
                seconds = LEASE_POLL_SECONDS if seconds is None else min(seconds, LEASE_POLL_SECONDS)
            self._cond.wait_for(lambda: self._closed or self._revision >= scan_from, seconds)

    def _check_compacted(self, scan_from: int) -> None:
        if scan_from <= self._compacted:
            raise Compacted(f"revision {scan_from} is compacted (history starts after {self._compacted})")

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
