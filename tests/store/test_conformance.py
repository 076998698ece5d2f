"""One conformance suite for every Store implementation (parametrized in conftest.py).

The contract is store/base.py; a new backend joins by adding itself to the
``make_store`` fixture and must pass every test here unchanged.  Revisions are
compared relative to ``current_revision()`` at the start of a test: an etcd
keyspace is wiped between tests, but its revision keeps growing (and a fresh
etcd starts at 1, not 0).  Leases: test_leases.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from pynet.store.base import Compacted, Entry, Event


def drain(iterator, count, limit=5.0):
    """Take ``count`` events from a watch iterator (which must have a timeout)."""
    got = []
    deadline = time.monotonic() + limit
    for event in iterator:
        got.append(event)
        if len(got) == count or time.monotonic() > deadline:
            break
    return got


# -- get / create / cas / delete -------------------------------------------------


def test_get_absent(store):
    base = store.current_revision()
    assert store.get("/k") is None
    assert store.current_revision() == base


def test_create_then_get(store):
    base = store.current_revision()
    rev = store.create("/k", {"a": 1, "b": [1, 2]})
    assert rev == base + 1
    entry = store.get("/k")
    assert entry.key == "/k" and entry.value == {"a": 1, "b": [1, 2]} and entry.revision == rev


def test_create_twice_second_returns_none(store):
    assert store.create("/k", {"n": 1}) is not None
    assert store.create("/k", {"n": 2}) is None
    assert store.get("/k").value == {"n": 1}


def test_values_are_copied(store):
    value = {"list": [1]}
    store.create("/k", value)
    value["list"].append(2)
    store.get("/k").value["list"].append(3)
    assert store.get("/k").value == {"list": [1]}


def test_cas_success(store):
    rev = store.create("/k", {"n": 1})
    new = store.cas("/k", {"n": 2}, rev)
    assert new is not None and new > rev
    assert store.get("/k").value == {"n": 2} and store.get("/k").revision == new


def test_cas_mismatch(store):
    rev = store.create("/k", {"n": 1})
    store.cas("/k", {"n": 2}, rev)
    assert store.cas("/k", {"n": 3}, rev) is None
    assert store.get("/k").value == {"n": 2}


def test_cas_absent(store):
    assert store.cas("/k", {"n": 1}, 1) is None
    assert store.get("/k") is None


def test_delete_without_revision(store):
    store.create("/k", {})
    assert store.delete("/k") is True
    assert store.get("/k") is None


def test_delete_with_revision(store):
    rev = store.create("/k", {})
    store.cas("/k", {"n": 1}, rev)
    assert store.delete("/k", rev) is False
    assert store.get("/k") is not None
    assert store.delete("/k", store.get("/k").revision) is True
    assert store.get("/k") is None


def test_delete_absent(store):
    base = store.current_revision()
    assert store.delete("/nothing") is False
    assert store.delete("/nothing", 5) is False
    assert store.current_revision() == base


def test_failed_writes_do_not_bump_revision(store):
    store.create("/k", {})
    before = store.current_revision()
    store.create("/k", {})
    store.cas("/k", {}, 999)
    store.delete("/absent")
    assert store.current_revision() == before


# -- list ---------------------------------------------------------------------


def test_list_prefix_sorted_and_isolated(store):
    for key in ["/a/z", "/ab/x", "/a/b", "/a", "/a/m/n", "/b/a"]:
        store.create(key, {"k": key})
    assert [e.key for e in store.list("/a/")] == ["/a/b", "/a/m/n", "/a/z"]
    assert [e.key for e in store.list("/ab/")] == ["/ab/x"]
    assert store.list("/c/") == []
    assert [e.value["k"] for e in store.list("/a/")] == ["/a/b", "/a/m/n", "/a/z"]
    assert len(store.list("")) == 6


def test_non_ascii_keys_and_values(store):
    rev = store.create("/ü/ß", {"v": "é 😀"})
    store.create("/ü/z", {})
    store.create("/üa", {})
    assert store.get("/ü/ß") == Entry("/ü/ß", {"v": "é 😀"}, rev)
    assert [e.key for e in store.list("/ü/")] == ["/ü/z", "/ü/ß"]  # sorted by code point
    assert [e.key for e in store.watch("/ü/", rev, timeout=0.2)] == ["/ü/ß", "/ü/z"]


def test_list_entries_carry_revisions(store):
    r1 = store.create("/p/1", {})
    r2 = store.create("/p/2", {})
    assert [(e.key, e.revision) for e in store.list("/p/")] == [("/p/1", r1), ("/p/2", r2)]


# -- revisions ----------------------------------------------------------------


def test_revisions_strictly_increase_across_keys(store):
    revs = [store.create("/x/1", {}), store.create("/y/1", {})]
    revs.append(store.cas("/x/1", {"n": 1}, revs[0]))
    store.delete("/y/1")
    revs.append(store.current_revision())
    revs.append(store.create("/y/1", {}))
    assert revs == sorted(set(revs))
    assert store.current_revision() == revs[-1]


# -- watch --------------------------------------------------------------------


def test_watch_sees_changes_in_order(store):
    start = store.current_revision() + 1
    r1 = store.create("/w/a", {"n": 1})
    r2 = store.cas("/w/a", {"n": 2}, r1)
    store.create("/other/x", {})
    store.delete("/w/a")
    events = drain(store.watch("/w/", start, timeout=0.2), 3)
    assert events == [Event("/w/a", {"n": 1}, r1), Event("/w/a", {"n": 2}, r2),
                      Event("/w/a", None, r2 + 2)]
    assert events[-1].deleted and not events[0].deleted


def test_watch_resumes_from_last_plus_one(store):
    start = store.current_revision() + 1
    store.create("/w/a", {})
    store.create("/w/b", {})
    first = drain(store.watch("/w/", start, timeout=0.2), 1)
    store.create("/w/c", {})
    rest = drain(store.watch("/w/", first[-1].revision + 1, timeout=0.2), 5)
    assert [e.key for e in first + rest] == ["/w/a", "/w/b", "/w/c"]


def test_watch_times_out_when_quiet(store):
    began = time.monotonic()
    assert list(store.watch("/w/", store.current_revision() + 1, timeout=0.3)) == []
    assert 0.25 <= time.monotonic() - began < 3


def test_watch_delivers_later_writes_from_another_thread(store):
    start = store.current_revision() + 1

    def writer():
        time.sleep(0.2)
        store.create("/w/late", {"n": 1})

    thread = threading.Thread(target=writer)
    thread.start()
    events = drain(store.watch("/w/", start, timeout=3), 1)
    thread.join()
    assert [e.key for e in events] == ["/w/late"]


def test_watch_ends_on_close_from_another_thread(store):
    seen = []
    done = threading.Event()

    def watcher():
        for event in store.watch("/w/", store.current_revision() + 1, timeout=None):
            seen.append(event)
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(0.2)
    store.close()
    assert done.wait(3), "watch iterator did not end after close()"
    assert seen == []


def test_watch_compacted_start_revision(make_compacting_store):
    store, compact = make_compacting_store(keep=5)
    base = store.current_revision()
    for i in range(20):
        store.create(f"/c/{i}", {})
    compact()
    with pytest.raises(Compacted):
        list(store.watch("/c/", base + 1, timeout=0.1))
    # The retained tail is still watchable.
    events = drain(store.watch("/c/", base + 16, timeout=0.1), 10)
    assert [e.revision - base for e in events] == [16, 17, 18, 19, 20]


def test_watch_from_current_plus_one_after_compaction(make_compacting_store):
    store, compact = make_compacting_store(keep=3)
    for i in range(10):
        store.create(f"/c/{i}", {})
    compact()
    assert list(store.watch("/c/", store.current_revision() + 1, timeout=0.1)) == []


# -- concurrency --------------------------------------------------------------


def test_concurrent_creates_each_key_once(store):
    base = store.current_revision()
    keys = [f"/race/{i}" for i in range(50)]
    wins = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n):
        barrier.wait()
        mine = sum(store.create(key, {"by": n}) is not None for key in keys)
        with lock:
            wins.append(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 50
    assert len(store.list("/race/")) == 50
    assert store.current_revision() == base + 50


def test_concurrent_cas_increments_are_not_lost(store):
    store.create("/counter", {"n": 0})

    def worker():
        for _ in range(25):
            while True:
                entry = store.get("/counter")
                if store.cas("/counter", {"n": entry.value["n"] + 1}, entry.revision):
                    break

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("/counter").value == {"n": 100}
