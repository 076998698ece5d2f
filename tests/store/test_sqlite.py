"""SqliteStore specifics: persistence and sharing one file between instances."""

from __future__ import annotations

import os
import stat
import time

import pytest

from pynet.store import open_store
from pynet.store.sqlite import SqliteStore


def test_persistence_across_reopen(tmp_path):
    path = str(tmp_path / "p.db")
    first = SqliteStore(path)
    first.create("/k", {"n": 1})
    rev = first.create("/j", {"n": 2})
    first.close()
    second = SqliteStore(path)
    try:
        assert second.current_revision() == rev
        assert second.get("/k").value == {"n": 1}
        assert second.create("/new", {}) == rev + 1
        events = list(second.watch("/", 1, timeout=0.1))
        assert [e.key for e in events] == ["/k", "/j", "/new"]
    finally:
        second.close()


def test_two_instances_share_one_file(tmp_path):
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    try:
        ra = a.create("/k", {"from": "a"})
        assert b.get("/k").value == {"from": "a"}
        assert b.create("/k", {"from": "b"}) is None
        rb = b.create("/k2", {"from": "b"})
        assert rb == ra + 1 and a.current_revision() == rb
        assert [e.key for e in a.list("/")] == ["/k", "/k2"]
    finally:
        a.close()
        b.close()


def test_watch_sees_writes_of_another_instance(tmp_path):
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    try:
        start = b.current_revision() + 1
        watch = b.watch("/w/", start, timeout=3)
        began = time.monotonic()
        a.create("/w/x", {})
        event = next(watch)
        assert event.key == "/w/x" and time.monotonic() - began < 2
    finally:
        a.close()
        b.close()


def test_open_store_creates_private_state_dir(tmp_path):
    state = tmp_path / "state" / "pynet"
    store = open_store(str(state))
    try:
        store.create("/k", {})
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert (state / "pynet.db").exists()
    finally:
        store.close()


def test_ipam_state_survives_reopen_and_threads(tmp_path):
    """End to end over the real backend: concurrent claims, then a restart."""
    import threading

    from pynet.ipam.service import IpamService

    path = str(tmp_path / "ipam.db")
    store = SqliteStore(path)
    ipam = IpamService(store)
    pool = ipam.request_pool("pynet-local", "10.40.0.0/16", "", None, False)
    got, lock = [], threading.Lock()

    def worker():
        mine = [ipam.request_address(pool.pool_id, "", None) for _ in range(20)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    store = SqliteStore(path)
    try:
        later = IpamService(store).request_address(pool.pool_id, "", None)
        assert len(set(got + [later])) == 161
    finally:
        store.close()


def test_no_leases_on_a_single_host(tmp_path):
    """Leases clean up after a dead host for the survivors; one host has none (see sqlite.py)."""
    store = SqliteStore(str(tmp_path / "l.db"))
    try:
        assert store.supports_leases is False
        for call in (lambda: store.grant_lease(10), lambda: store.refresh_lease(1),
                     lambda: store.revoke_lease(1), lambda: store.create("/k", {}, lease=1),
                     lambda: store.cas("/k", {}, 1, lease=1)):
            with pytest.raises(NotImplementedError, match="leases need the etcd store"):
                call()
        assert store.current_revision() == 0  # nothing was written
        rev = store.create("/k", {}, lease=0)
        assert store.cas("/k", {"n": 1}, rev, lease=0) == rev + 1
    finally:
        store.close()
