"""The netlink owner's bound: a call that never returns fails its caller, names itself, and the calls after
it still work (on a new handle).  Fake handles that block on demand stand in for pyroute2's IPRoute."""

from __future__ import annotations

import threading
import time

import pytest

from pynet.driver.kernel.netlink import NetlinkOwner, NetlinkTimeout, owned

BOUND = 0.3


class FakeHandle:
    def __init__(self, name: str) -> None:
        self.name = name
        self.release = threading.Event()
        self.calls: list[str] = []
        self.closed = False

    def block(self, what: str) -> str:
        self.calls.append(what)
        assert self.release.wait(30), "the test never released the hung call"
        return what

    def work(self, what: str) -> str:
        self.calls.append(what)
        return f"{what} on {self.name}"

    def close(self) -> None:
        self.closed = True


class Kernel(NetlinkOwner):
    @owned
    def hang(self, name: str) -> str:
        self._ipr.block(name)
        return self._ipr.work(f"after {name}")  # still on the handle it started with

    @owned
    def get(self, name: str) -> str:
        return self._ipr.work(name)


@pytest.fixture
def handles():
    made = [FakeHandle("first")]

    def opener():
        made.append(FakeHandle(f"handle{len(made) + 1}"))
        return made[-1]
    yield made, opener
    for h in made:
        h.release.set()


def test_a_call_that_hangs_fails_after_the_bound_naming_itself(handles):
    made, opener = handles
    kernel = Kernel(made[0], opener=opener, timeout=BOUND)
    t0 = time.monotonic()
    with pytest.raises(NetlinkTimeout, match=r"netlink call hang\('pnv2f234f73c230'\) did not return within 0.3 s"):
        kernel.hang("pnv2f234f73c230")
    assert BOUND <= time.monotonic() - t0 < BOUND + 3.0


def test_the_calls_after_a_hang_work_on_a_new_handle_and_the_hung_one_is_closed(handles):
    made, opener = handles
    kernel = Kernel(made[0], opener=opener, timeout=BOUND)
    assert kernel.get("pn-1") == "pn-1 on first"
    with pytest.raises(NetlinkTimeout):
        kernel.hang("pnv1")
    assert kernel.get("pn-2") == "pn-2 on handle2"
    made[0].release.set()  # the hung call comes back: it finishes on ITS handle, which is then closed
    assert _eventually(lambda: made[0].closed)
    assert made[0].calls == ["pn-1", "pnv1", "after pnv1"] and made[1].calls == ["pn-2"]
    assert kernel.get("pn-3") == "pn-3 on handle2" and not made[1].closed


def test_calls_queued_behind_a_hung_one_move_to_the_new_handle(handles):
    made, opener = handles
    kernel = Kernel(made[0], opener=opener, timeout=1.0)  # slack for a loaded machine's thread scheduling
    results, errors = [], []

    def hang():
        try:
            kernel.hang("pnv1")
        except NetlinkTimeout as exc:
            errors.append(str(exc))

    t = threading.Thread(target=hang)
    t.start()
    assert _eventually(lambda: made[0].calls == ["pnv1"])
    waiting = threading.Thread(target=lambda: results.append(kernel.get("pn-queued")))
    waiting.start()  # submitted while the worker is stuck: it must not wait for the hung call
    t.join(5)
    waiting.join(5)
    assert errors and results == ["pn-queued on handle2"]


def test_without_a_way_to_reopen_later_calls_fail_fast_until_the_hung_one_returns():
    handle = FakeHandle("given")
    kernel = Kernel(handle, timeout=BOUND)
    with pytest.raises(NetlinkTimeout, match="without a way to open another"):
        kernel.hang("pnv1")
    with pytest.raises(NetlinkTimeout, match=r"get\('pn-1'\) did not start within 0.6 s: .*stuck in hang\('pnv1'\)"):
        kernel.get("pn-1")
    handle.release.set()
    assert _eventually(lambda: _works(kernel))  # recovered: the same worker serves again
    assert not handle.closed


def _works(kernel: Kernel) -> bool:
    try:
        return kernel.get("pn-2") == "pn-2 on given"
    except NetlinkTimeout:
        return False


def _eventually(check, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False
