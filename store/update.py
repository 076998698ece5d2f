"""Read-modify-write on top of the Store port: the compare-and-swap loops every record type needs.

A change is re-run on fresh data when another writer (thread, worker or host)
got in between, a bounded number of times, then Retryable: nobody holds a lock
across store calls.
"""

from __future__ import annotations

from typing import Callable

from pynet.errors import Retryable
from pynet.store.base import Store

RETRIES = 20


def update(store: Store, key: str, change: Callable[[dict], dict], what: str) -> dict | None:
    """Apply ``change(value) -> value`` to ``key`` atomically; None if the key is absent.
    ``what`` names the record in the Retryable message."""
    for _ in range(RETRIES):
        entry = store.get(key)
        if entry is None:
            return None
        new = change(entry.value)
        if new == entry.value or store.cas(key, new, entry.revision) is not None:
            return new
    raise Retryable(f"{what} kept changing; try again")


def put(store: Store, key: str, value: dict, lease: int = 0) -> None:
    """Write ``value`` whatever is there (create, else compare-and-swap on what was read)."""
    for _ in range(RETRIES):
        if store.create(key, value, lease=lease) is not None:
            return
        entry = store.get(key)
        if entry is not None and store.cas(key, value, entry.revision, lease=lease) is not None:
            return
    raise Retryable(f"{key} kept changing; try again")
