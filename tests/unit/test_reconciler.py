"""The reconciler on fakes: desired vs programmed, keyed nudges, unknown desired, failures and settle."""

from __future__ import annotations

import threading

import pytest

from pynet.background import Supervisor
from pynet.driver.overlay.port import ALL
from pynet.driver.overlay.reconciler import Reconciler
from pynet.health import Health


class FakeTable:
    """A kernel table in a dict, with the desired state set by the test."""

    def __init__(self, name="fdb:pnv1", desired=None, kernel=None):
        self.name = name
        self.want = desired
        self.kernel = dict(kernel or {})
        self.reads = 0
        self.writes: list[tuple] = []
        self.fail_on: set = set()

    def desired(self):
        return None if self.want is None else dict(self.want)

    def desired_for(self, keys):
        return None if self.want is None else {k: v for k, v in self.want.items() if k in keys}

    def actual(self):
        self.reads += 1
        return dict(self.kernel)

    def add(self, key, value):
        if key in self.fail_on:
            raise OSError(f"kernel refused {key}")
        self.writes.append(("add", key, value))
        self.kernel[key] = value

    def remove(self, key, value):
        self.writes.append(("remove", key, value))
        self.kernel.pop(key, None)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_a_new_table_is_read_from_the_kernel_and_made_to_match(clock):
    r = Reconciler(clock=clock)
    t = FakeTable(desired={"m1": "a", "m2": "b"}, kernel={"m2": "stale", "m3": "gone"})
    r.register(t)
    changed, failures = r.pass_once()
    assert failures == [] and changed == 4  # m2 and m3 removed, m1 and m2 added
    assert t.kernel == {"m1": "a", "m2": "b"} and r.programmed(t.name) == t.kernel and t.reads == 1
    assert r.pass_once() == (None, [])  # nothing due: nothing read, nothing written


def test_later_passes_diff_against_what_was_programmed_not_the_kernel(clock):
    r = Reconciler(clock=clock)
    t = FakeTable(desired={"m1": "a"})
    r.register(t)
    r.pass_once()
    t.want = {"m1": "a", "m2": "b"}
    r.nudge([t.name])
    assert r.pass_once() == (1, []) and t.reads == 1 and t.writes[-1] == ("add", "m2", "b")


def test_a_keyed_nudge_compares_only_those_keys(clock):
    r = Reconciler(clock=clock)
    t = FakeTable(desired={f"m{i}": i for i in range(100)})
    r.register(t)
    r.pass_once()
    t.want = {**t.want, "m5": "moved", "new": 1}
    del t.want["m7"]
    t.writes.clear()
    r.nudge([t.name], keys={"m5", "m7", "new"})
    assert r.pass_once() == (4, [])
    assert sorted(t.writes) == [("add", "m5", "moved"), ("add", "new", 1), ("remove", "m5", 5), ("remove", "m7", 7)]


def test_an_unknown_desired_state_leaves_the_table_alone(clock):
    """Before the first listing of the cluster (etcd down at start) the kernel keeps what it has."""
    r = Reconciler(clock=clock)
    t = FakeTable(desired=None, kernel={"m1": "running"})
    r.register(t)
    assert r.pass_once() == (0, []) and t.kernel == {"m1": "running"} and t.writes == []
    t.want = {"m1": "running", "m2": "new"}
    r.nudge([ALL])
    assert r.pass_once() == (1, []) and t.writes == [("add", "m2", "new")]


def test_a_failed_pass_is_retried_later_with_a_fresh_read(clock):
    r = Reconciler(clock=clock, retry=1.0)
    t = FakeTable(desired={"m1": "a", "m2": "b"})
    t.fail_on = {"m2"}
    r.register(t)
    changed, failures = r.pass_once()
    assert failures == ["table fdb:pnv1: kernel refused m2"]
    assert r.pass_once() == (None, [])  # not before the retry time
    t.fail_on.clear()
    clock.now = 1.5
    assert r.pass_once() == (1, []) and t.reads == 2 and t.kernel == {"m1": "a", "m2": "b"}


def test_the_periodic_resync_rereads_the_kernel(clock):
    r = Reconciler(clock=clock, resync=30.0)
    t = FakeTable(desired={"m1": "a"})
    r.register(t)
    r.pass_once()
    t.kernel.clear()  # someone flushed the device behind pynet's back
    clock.now = 31
    assert r.pass_once() == (1, []) and t.kernel == {"m1": "a"}


def test_an_unregistered_table_is_never_written_again(clock):
    r = Reconciler(clock=clock)
    t = FakeTable(desired={"m1": "a"})
    r.register(t)
    r.unregister(t.name)
    r.nudge([ALL])
    assert r.pass_once() == (None, []) and t.writes == [] and r.tables() == []


def test_settle_waits_for_a_pass_begun_after_the_nudge_and_is_bounded():
    r = Reconciler()
    t = FakeTable(desired={"m1": "a"})
    r.register(t)
    assert r.settle(t.name, 0.05) is False  # nobody runs the reconciler: the bound holds
    sup = Supervisor(Health())
    sup.spawn("reconciler", r.run)
    try:
        assert r.settle(t.name, 5.0) is True and t.kernel == {"m1": "a"}
        t.want = {"m1": "a", "m2": "b"}
        r.nudge([t.name])
        assert r.settle(t.name, 5.0) is True and t.kernel == {"m1": "a", "m2": "b"}
    finally:
        r.stop()
        sup.stop()


def test_only_the_reconciler_thread_writes():
    writers = set()

    class Recording(FakeTable):
        def add(self, key, value):
            writers.add(threading.current_thread().name)
            super().add(key, value)

    r = Reconciler()
    t = Recording(desired={f"m{i}": i for i in range(20)})
    sup = Supervisor(Health())
    sup.spawn("reconciler", r.run)
    try:
        r.register(t)
        for i in range(20, 40):  # "handlers" change the desired state and nudge, from this thread
            t.want = {**t.want, f"m{i}": i}
            r.nudge([t.name], keys={f"m{i}"})
        assert r.settle(t.name, 5.0) and len(t.kernel) == 40
    finally:
        r.stop()
        sup.stop()
    assert writers == {"pynet-reconciler"}
