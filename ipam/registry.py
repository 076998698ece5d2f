"""The pools document of an address space: read it, and change it atomically.

Design note.  Every pool of a space lives in ONE document,
``keys.ipam_pools(space)`` = {"pools": {cidr: PoolRecord.to_json()}}.  A change
is read-decide-write with create (first pool) or cas (later ones): the decision
(overlap check, choice of a default pool) and the insert are therefore one
atomic step, across threads, workers and hosts.  On contention the whole
decision is re-run on fresh data (store/update.py, bounded, then Retryable); no
lock is ever held across store calls.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from pynet.ipam.models import PoolRecord, PoolRef
from pynet.store import keys
from pynet.store.base import Entry, Store
from pynet.store.update import Decision, Keep, Write, modify


T = TypeVar("T")
Pools = dict[str, PoolRecord]
# A mutation gets the current pools, may change the dict in place, and returns
# (result, changed).  It may raise (Conflict, Exhausted) to abort without writing.
Mutation = Callable[[Pools], tuple[T, bool]]


class PoolRegistry:
    """Held pools per address space, persisted in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def held(self, space: str) -> Pools:
        """Every pool held in ``space``, by canonical CIDR."""
        entry = self._store.get(keys.ipam_pools(space))
        return _decode(entry.value) if entry else {}

    def lookup(self, ref: PoolRef) -> PoolRecord | None:
        """The held pool ``ref`` names, or None (also if its sub-pool differs:
        such an id belongs to an earlier, released incarnation of the CIDR)."""
        record = self.held(ref.space).get(ref.pool)
        return record if record is not None and record.sub_pool == ref.sub_pool else None

    def update(self, space: str, mutate: Mutation) -> T:
        """Apply ``mutate`` to the space's pools atomically (store/update.py); Retryable after lost races."""
        def decide(entry: Entry | None) -> Decision:
            pools = _decode(entry.value) if entry else {}
            result, changed = mutate(pools)
            return Write(_encode(pools), result) if changed else Keep(result)

        return modify(self._store, keys.ipam_pools(space), decide, f"address space {space!r}")

    def remove(self, ref: PoolRef) -> bool:
        """Forget the pool ``ref`` names; False if it was not held (not an error)."""

        def drop(pools: Pools) -> tuple[bool, bool]:
            record = pools.get(ref.pool)
            if record is None or record.sub_pool != ref.sub_pool:
                return False, False
            del pools[ref.pool]
            return True, True

        return self.update(ref.space, drop)


def _decode(doc: dict) -> Pools:
    return {cidr: PoolRecord.from_json(cidr, body) for cidr, body in (doc.get("pools") or {}).items()}


def _encode(pools: Pools) -> dict:
    return {"pools": {cidr: record.to_json() for cidr, record in pools.items()}}
