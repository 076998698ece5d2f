"""A netlink call that never returns fails dockerd's request within the bound, with an error naming the
call, and the rollback runs on a fresh handle: the real app, service and Links over fake netlink handles
(the first hangs on every request, the ones opened after it answer "no such device")."""

from __future__ import annotations

import errno
import threading
import time

from pyroute2.netlink.exceptions import NetlinkError

from pynet.driver.kernel.links import Links
from pynet.driver.service import NetworkService
from pynet.ipam.service import IpamService
from pynet.plugin.app import Services, create_app
from pynet.store.memory import MemoryStore
from tests.contract.conftest import post
from tests.contract.test_protocol import NID, create_network
from tests.fakes import FakeFirewall

BOUND = 0.5


class Handle:
    """Stands in for IPRoute: ``hang`` blocks every call until released; otherwise nothing exists."""

    def __init__(self, hang: bool) -> None:
        self.hang, self.release, self.calls = hang, threading.Event(), []

    def __getattr__(self, method):
        def call(*args, **kwargs):
            self.calls.append((method, args[:1]))
            if self.hang:
                self.release.wait(30)
            raise NetlinkError(errno.ENODEV, "No such device")
        return call

    def close(self) -> None:
        pass


def test_a_hung_netlink_call_fails_the_request_in_time_naming_it_and_the_rollback_uses_a_new_handle():
    hung, fresh = Handle(hang=True), []

    def opener():
        fresh.append(Handle(hang=False))
        return fresh[-1]

    store = MemoryStore()
    links = Links(hung, opener=opener, timeout=BOUND)
    network = NetworkService(store, links, FakeFirewall(), set_sysctl=lambda path, value: True)
    client = create_app(Services(network=network, ipam=IpamService(store))).test_client()
    try:
        t0 = time.monotonic()
        status, body, _ = create_network(client)
        took = time.monotonic() - t0
    finally:
        hung.release.set()
    assert status == 500, body
    assert f"netlink call ensure_bridge('pn-{NID[:12]}') did not return within {BOUND:g} s" in body["Err"], body
    assert took < BOUND + 2, f"the request took {took:.1f} s"
    assert fresh and fresh[0].calls, "the rollback did not run on a new handle"
    assert post(client, "NetworkDriver.DeleteNetwork", {"NetworkID": NID})[0] in (200, 404)
