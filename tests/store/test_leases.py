"""Leases, on every implementation with ``supports_leases`` (sqlite skips: see test_sqlite.py).

Memory runs on a fake clock (instant); etcd on real time with TTL 1 s, its
minimum with the test server's raft timers, and expires a lease within about
0.5 s after its TTL: the tests that wait for an expiry cost about 2 s each on
etcd, so each checks everything there is to check about one expiry.
"""

from __future__ import annotations

import threading

import pytest

from pynet.store.base import LeaseNotFound


def test_grant_gives_distinct_nonzero_ids(leases):
    first, second = leases.store.grant_lease(10), leases.store.grant_lease(10)
    assert first and second and first != second
    assert leases.store.supports_leases is True


def test_expiry_deletes_attached_keys_with_delete_events(leases):
    store = leases.store
    lease = store.grant_lease(1)
    start = store.current_revision() + 1
    created = store.create("/l/a", {"n": 1}, lease=lease)
    store.cas("/l/b", {"n": 2}, store.create("/l/b", {}), lease=lease)
    kept = store.create("/l/keep", {})
    seen, watching = [], threading.Event()

    def watcher():  # waiting in the watch while the lease ends: expiry must wake it
        watching.set()
        for event in store.watch("/l/", kept + 1, timeout=5):
            seen.append(event)
            if len(seen) == 2:
                return

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    watching.wait()
    leases.advance(1.2)
    thread.join(6)
    assert [(e.key, e.deleted) for e in seen] == [("/l/a", True), ("/l/b", True)]
    assert seen[0].revision == seen[1].revision > kept  # both in one revision
    assert [e.key for e in store.list("/l/")] == ["/l/keep"]
    events = list(store.watch("/l/", start, timeout=0.2))
    assert [(e.key, e.deleted) for e in events][0] == ("/l/a", False) and events[0].revision == created
    # The lease is gone for good: refresh says so, writes naming it fail, failed compares still just fail.
    assert store.refresh_lease(lease) is False
    with pytest.raises(LeaseNotFound):
        store.create("/l/new", {}, lease=lease)
    keep = store.get("/l/keep")
    with pytest.raises(LeaseNotFound):
        store.cas("/l/keep", {}, keep.revision, lease=lease)
    assert store.create("/l/keep", {}, lease=lease) is None
    assert store.get("/l/keep") == keep


def test_refresh_keeps_the_lease_alive(leases):
    store = leases.store
    lease = store.grant_lease(1)
    store.create("/l/a", {}, lease=lease)
    for _ in range(4):  # 2 s in all, twice the TTL
        leases.advance(0.5)
        assert store.refresh_lease(lease) is True
    assert store.get("/l/a") is not None
    store.revoke_lease(lease)


def test_revoke_deletes_attached_keys_at_once(leases):
    store = leases.store
    lease, other = store.grant_lease(60), store.grant_lease(60)
    store.create("/l/a", {}, lease=lease)
    store.create("/l/b", {}, lease=lease)
    store.create("/l/c", {}, lease=other)
    before = store.current_revision()
    store.revoke_lease(lease)
    assert [e.key for e in store.list("/l/")] == ["/l/c"]
    assert store.current_revision() == before + 1
    events = list(store.watch("/l/", before + 1, timeout=0.2))
    assert [(e.key, e.deleted, e.revision) for e in events] == [("/l/a", True, before + 1),
                                                               ("/l/b", True, before + 1)]
    assert store.refresh_lease(lease) is False
    store.revoke_lease(lease)  # twice, and an id never granted: not errors
    store.revoke_lease(123456789)
    assert store.refresh_lease(123456789) is False
    with pytest.raises(LeaseNotFound):
        store.create("/l/d", {}, lease=lease)


def test_revoke_without_keys_writes_nothing(leases):
    store = leases.store
    lease = store.grant_lease(60)
    before = store.current_revision()
    store.revoke_lease(lease)
    assert store.current_revision() == before


def test_a_key_belongs_only_to_the_lease_of_its_last_write(leases):
    store = leases.store
    first, second = store.grant_lease(60), store.grant_lease(60)
    rev = store.create("/l/moved", {}, lease=first)
    store.cas("/l/moved", {"n": 1}, rev, lease=second)
    rev = store.create("/l/freed", {}, lease=first)
    store.cas("/l/freed", {"n": 1}, rev)  # lease=0 detaches, as etcd's put does
    store.revoke_lease(first)
    assert [e.key for e in store.list("/l/")] == ["/l/freed", "/l/moved"]
    store.revoke_lease(second)
    assert [e.key for e in store.list("/l/")] == ["/l/freed"]


def test_delete_of_a_leased_key_is_an_ordinary_delete(leases):
    store = leases.store
    lease = store.grant_lease(60)
    store.create("/l/a", {}, lease=lease)
    assert store.delete("/l/a") is True
    store.create("/l/a", {})  # recreated without a lease: the old lease no longer owns it
    store.revoke_lease(lease)
    assert store.get("/l/a") is not None


def test_bad_ttl_is_refused(leases):
    with pytest.raises(ValueError):
        leases.store.grant_lease(0)
