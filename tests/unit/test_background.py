"""Supervised background loops: a dead loop is restarted with backoff and its health shows it."""

from __future__ import annotations

import threading

from pynet.background import Supervisor
from pynet.health import Health
from pynet.lab.wait import wait_until


def test_a_loop_that_dies_is_restarted_and_reported():
    health = Health()
    sup = Supervisor(health, first_backoff=0.01, max_backoff=0.05)
    runs = []
    alive = threading.Event()

    def body(ctx):
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")
        alive.set()
        ctx.ok()
        ctx.wait(10)

    sup.spawn("flaky", body)
    try:
        assert alive.wait(5)
        state = health.loop("flaky")
        assert state.running and state.restarts == 2 and state.failures == 2
        assert state.last_error == "died: RuntimeError: boom 2" and state.consecutive_failures == 0
    finally:
        sup.stop()
    assert wait_until(lambda: not health.loop("flaky").running, 2)


def test_every_counts_failed_passes_without_dying():
    health = Health()
    sup = Supervisor(health)
    calls = []

    def step():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("etcd unreachable")

    sup.every("step", 0.01, step, retry=0.01)
    try:
        assert wait_until(lambda: len(calls) >= 3, 5)
        state = health.loop("step")
        assert state.restarts == 0 and state.failures == 1 and state.last_error == "etcd unreachable"
        assert state.last_ok is not None and state.consecutive_failures == 0
    finally:
        sup.stop()


def test_a_one_shot_job_is_not_restarted_after_it_succeeds():
    health = Health()
    sup = Supervisor(health, first_backoff=0.01)
    calls = []
    sup.once("startup", lambda: calls.append(1))
    sup.stop(timeout=2)
    assert calls == [1] and health.loop("startup").restarts == 0


def test_refused_records_are_counted_by_kind_and_listed():
    health = Health(clock=lambda: 1.0)
    health.rejected("endpoints", "/k/1", "bad MAC")
    health.rejected("endpoints", "/k/1", "bad MAC")
    health.rejected("hosts", "/k/2", "bad VTEP")
    snap = health.snapshot()["rejected"]
    assert snap["endpoints"]["count"] == 2 and snap["endpoints"]["last"] == [
        {"key": "/k/1", "reason": "bad MAC", "at": 1.0}]
    assert health.rejected_count() == 3
