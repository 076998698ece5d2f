"""Read-modify-write on one key of the Store port: the one compare-and-swap loop every record type uses.

Design note.  A change to a stored document is a decision on what was read --
keep it, write a new value, or delete it -- applied with the store's atomic
primitive that matches what was read: ``create`` when the key was absent,
``cas`` or ``delete(key, revision)`` when it was there.  When another writer
(thread, worker or host) got in between, the primitive fails and the decision
is taken again on fresh data, after a short, growing, jittered pause so that
writers that collided do not collide again in lockstep.  After RETRIES lost
races the caller gets Retryable naming the record: nobody ever holds a lock
across store calls, and no loop is unbounded.

``modify`` is the loop; ``update`` and ``put`` are the two shapes most callers
need.  A decision that has side effects to take back when its write loses the
race (a VNI claimed for a record that another host created first) passes
``undo``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pynet.errors import Retryable
from pynet.store.base import Entry, Store

RETRIES = 20
FIRST_PAUSE = 0.001  # seconds; doubled per lost race up to MAX_PAUSE, each pause jittered by up to 100 %
MAX_PAUSE = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class Keep(Generic[T]):
    """Leave the key as it is and return ``result``."""

    result: T = None


@dataclass(frozen=True)
class Write(Generic[T]):
    """Store ``value`` (create if the key was absent, else compare-and-swap), then return ``result``."""

    value: dict
    result: T = None
    lease: int = 0
    undo: Callable[[], None] | None = None  # run when this write lost the race, before deciding again


@dataclass(frozen=True)
class Delete(Generic[T]):
    """Delete the key if it is unchanged since it was read, then return ``result``."""

    result: T = None


Decision = Keep | Write | Delete


def modify(store: Store, key: str, decide: Callable[[Entry | None], Decision], what: str) -> Any:
    """Apply ``decide(entry)`` to ``key`` atomically; its result.  ``decide`` may raise (Conflict...)
    to abort without writing.  Retryable naming ``what`` after RETRIES lost races."""
    pause = FIRST_PAUSE
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(pause * (1 + random.random()))
            pause = min(pause * 2, MAX_PAUSE)
        entry = store.get(key)
        decision = decide(entry)
        if isinstance(decision, Keep):
            return decision.result
        if isinstance(decision, Delete):
            if entry is None or store.delete(key, entry.revision):
                return decision.result
            continue
        lease = {"lease": decision.lease} if decision.lease else {}  # stores without leases take none
        if entry is None:
            written = store.create(key, decision.value, **lease)
        else:
            written = store.cas(key, decision.value, entry.revision, **lease)
        if written is not None:
            return decision.result
        if decision.undo is not None:
            decision.undo()
    raise Retryable(f"{what} kept changing; try again")


def update(store: Store, key: str, change: Callable[[dict], dict], what: str) -> dict | None:
    """Apply ``change(value) -> value`` to ``key`` atomically; None if the key is absent.
    ``what`` names the record in the Retryable message."""

    def decide(entry: Entry | None) -> Decision:
        if entry is None:
            return Keep(None)
        new = change(entry.value)
        return Keep(new) if new == entry.value else Write(new, new)

    return modify(store, key, decide, what)


def put(store: Store, key: str, value: dict, lease: int = 0) -> None:
    """Write ``value`` whatever is there (create, else compare-and-swap on what was read)."""
    modify(store, key, lambda entry: Write(value, None, lease=lease), key)
