"""MemoryStore specifics: a fresh store, its fake-clock leases, watch batches."""

from __future__ import annotations

import pynet.store.memory as memory
from pynet.store.memory import MemoryStore
from tests.store.conftest import FakeClock


def test_fresh_store_starts_at_revision_zero():
    assert MemoryStore().current_revision() == 0


def test_leases_follow_the_injected_clock():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    lease = store.grant_lease(10)
    store.create("/k", {}, lease=lease)
    clock.advance(9.9)
    assert store.get("/k") is not None
    assert store.refresh_lease(lease)
    clock.advance(9.9)
    assert store.get("/k") is not None
    clock.advance(0.1)  # deadline reached: gone at the next call, whichever it is
    assert store.list("/") == []
    assert store.refresh_lease(lease) is False


def test_one_revision_is_never_split_between_watch_batches(monkeypatch):
    monkeypatch.setattr(memory, "BATCH", 2)
    store = MemoryStore()
    lease = store.grant_lease(10)
    store.create("/a", {})
    for key in ("/b", "/c", "/d"):
        store.create(key, {}, lease=lease)
    store.revoke_lease(lease)  # three deletes in revision 5
    store.create("/e", {})
    events, next_from = store.fetch_events("/", 4)
    assert [(e.key, e.revision) for e in events] == [("/d", 4), ("/b", 5), ("/c", 5), ("/d", 5)]
    assert next_from == 6
    assert [e.key for e in store.watch("/", 1, timeout=0.1)] == ["/a", "/b", "/c", "/d", "/b", "/c", "/d", "/e"]
