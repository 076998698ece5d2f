"""Multi-host IPAM: one address space for every host; an overlay's copies share their pool."""

from __future__ import annotations

import pytest

from pynet.errors import Conflict
from pynet.ipam.service import IpamService
from pynet.store import keys
from pynet.store.memory import MemoryStore

GW = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture
def hosts():
    store = MemoryStore()
    return store, IpamService(store, host_id="ha"), IpamService(store, host_id="hb")


def test_identical_pool_is_shared_across_hosts_with_one_gateway(hosts):
    store, a, b = hosts
    pa = a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    pb = b.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    assert pa.pool_id == pb.pool_id
    assert a.request_address(pa.pool_id, "", GW) == "10.10.0.1/24"
    assert b.request_address(pb.pool_id, "", GW) == "10.10.0.1/24"
    assert b.request_address(pb.pool_id, "10.10.0.1", GW) == "10.10.0.1/24"
    with pytest.raises(Conflict, match="its gateway is 10.10.0.1"):
        b.request_address(pb.pool_id, "10.10.0.254", GW)


def test_same_host_twice_and_overlaps_still_conflict(hosts):
    _, a, b = hosts
    a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    with pytest.raises(Conflict, match="already in use on this host"):
        a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    with pytest.raises(Conflict, match="overlaps"):
        b.request_pool("pynet-local", "10.10.0.0/16", "", {}, False)
    with pytest.raises(Conflict, match="overlaps"):
        b.request_pool("pynet-local", "10.10.0.0/24", "10.10.0.128/25", {}, False)  # another sub-pool


def test_addresses_are_unique_across_hosts(hosts):
    _, a, b = hosts
    pid = a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False).pool_id
    b.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    a.request_address(pid, "", GW)
    got = [a.request_address(pid, "", None) if i % 2 else b.request_address(pid, "", None) for i in range(100)]
    assert len(set(got)) == 100
    with pytest.raises(Conflict):
        b.request_address(pid, got[0].split("/")[0], None)


def test_pool_and_gateway_stay_until_the_last_holder_releases(hosts):
    store, a, b = hosts
    pid = a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False).pool_id
    b.request_pool("pynet-local", "10.10.0.0/24", "", {}, False)
    a.request_address(pid, "", GW)
    ip_b = b.request_address(pid, "", None).split("/")[0]
    a.release_address(pid, "10.10.0.1")  # a's network goes away first
    a.release_pool(pid)
    assert store.get(keys.ipam_address("pynet-local", "10.10.0.0/24", "10.10.0.1")) is not None
    assert store.get(keys.ipam_address("pynet-local", "10.10.0.0/24", ip_b)) is not None
    assert b.request_address(pid, "", GW) == "10.10.0.1/24"  # b still gets the shared gateway
    b.release_address(pid, "10.10.0.1")
    b.release_pool(pid)
    assert store.list(keys.ipam_addresses_prefix("pynet-local", "10.10.0.0/24")) == []
    assert a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False).pool_id == pid  # free again


def test_default_pools_are_never_shared(hosts):
    _, a, b = hosts
    assert a.request_pool("pynet-local", "", "", {}, False).pool != b.request_pool("pynet-local", "", "", {}, False).pool


def test_releases_during_an_outage_are_journaled_and_replayed(hosts):
    from pynet.errors import Unavailable

    store, _, _ = hosts
    journal = MemoryStore()
    a = IpamService(store, host_id="ha", journal=journal)
    pid = a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False).pool_id
    ip = a.request_address(pid, "", None).split("/")[0]
    real = store.get
    store.get = lambda key: (_ for _ in ()).throw(Unavailable("etcd unreachable at http://x:2379"))
    a.release_address(pid, ip)  # dockerd would only log an error: pynet keeps it instead
    a.release_pool(pid)
    assert len(journal.list(keys.pending_releases_prefix())) == 2
    with pytest.raises(Unavailable):
        a.replay_deferred()  # still down: nothing lost
    assert len(journal.list(keys.pending_releases_prefix())) == 2
    store.get = real
    assert a.replay_deferred() == 2
    assert journal.list(keys.pending_releases_prefix()) == []
    assert store.list(keys.ipam_addresses_prefix("pynet-local", "10.10.0.0/24")) == []
    assert a.request_pool("pynet-local", "10.10.0.0/24", "", {}, False).pool_id == pid
