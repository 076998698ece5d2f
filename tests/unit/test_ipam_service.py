"""ipam/service.py over MemoryStore: the IpamDriver rules of protocol §4."""

from __future__ import annotations

import threading
import time

import pytest

from pynet.errors import BadRequest, Conflict, Exhausted, NotFound, Retryable
from pynet.ipam.models import PoolResult
from pynet.ipam.pools import parse_pool_id
from pynet.ipam.service import IpamService
from pynet.store.memory import MemoryStore

LOCAL = "pynet-local"
GW = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def ipam(store):
    return IpamService(store)


def pool(ipam, cidr="", sub="", v6=False, space=LOCAL, options=None):
    return ipam.request_pool(space, cidr, sub, options, v6)


# -- address spaces and pools --------------------------------------------------------


def test_default_address_spaces(ipam):
    assert ipam.default_address_spaces() == ("pynet-local", "pynet-global")


def test_explicit_pool_is_canonical_with_deterministic_id(ipam):
    assert pool(ipam, "2001:DB8::/64", options={}, v6=True) == PoolResult(
        "pynet-local/2001:db8::/64", "2001:db8::/64", {})
    got = pool(ipam, "192.168.0.0/16", "192.168.5.0/24")
    assert got.pool_id == "pynet-local/192.168.0.0/16/192.168.5.0/24" and got.pool == "192.168.0.0/16"


def test_explicit_pool_overlap_and_equal_conflict(ipam):
    pool(ipam, "192.168.0.0/24")
    with pytest.raises(Conflict, match="pool 192.168.0.0/16 overlaps with pool 192.168.0.0/24 already in use"):
        pool(ipam, "192.168.0.0/16")
    with pytest.raises(Conflict):
        pool(ipam, "192.168.0.0/24")
    pool(ipam, "192.168.0.0/24", space="pynet-global")  # spaces are independent


@pytest.mark.parametrize("cidr, sub, v6, options, message", [
    ("", "10.0.0.0/24", False, None, "sub-pool"),
    ("10.0.0.0/16", "10.1.0.0/24", False, None, "not inside pool"),
    ("10.0.0.0/16", "", True, None, "IPv4 but an IPv6 pool"),
    ("fd00::/64", "", False, None, "IPv6 but an IPv4 pool"),
    ("10.0.0.0/16", "", False, {"foo": "bar"}, "unknown IPAM option 'foo'"),
    ("nonsense", "", False, None, "invalid pool 'nonsense'"),
    ("10.0.0.0/16", "bad", False, None, "invalid sub-pool 'bad'"),
])
def test_request_pool_bad_requests(ipam, cidr, sub, v6, options, message):
    with pytest.raises(BadRequest, match=message):
        pool(ipam, cidr, sub, v6, options=options)


@pytest.mark.parametrize("space", ["", "a/b"])
def test_request_pool_bad_space(ipam, space):
    with pytest.raises(BadRequest, match="address space"):
        pool(ipam, "10.0.0.0/24", space=space)


def test_default_pools_per_family(ipam):
    assert pool(ipam).pool == "10.200.0.0/24"
    assert pool(ipam, v6=True).pool == "fd70:796e:6574::/64"
    assert pool(ipam, options={}).pool_id == "pynet-local/10.200.1.0/24"


def test_overlap_loop_hands_out_a_new_pool_while_held(ipam):
    # dockerd keeps the first answer while asking again (protocol §4.3).
    first, second = pool(ipam), pool(ipam)
    assert first.pool != second.pool


def test_default_pools_skip_explicit_overlapping_pools(ipam):
    pool(ipam, "10.200.0.0/23")
    pool(ipam, "10.200.2.128/25")
    assert pool(ipam).pool == "10.200.3.0/24"


def test_default_pool_exhaustion():
    ipam = IpamService(MemoryStore(), default_pools="10.9.0.0/23:24")
    assert [pool(ipam).pool for _ in range(2)] == ["10.9.0.0/24", "10.9.1.0/24"]
    with pytest.raises(Exhausted, match="no free default pool .*use --subnet"):
        pool(ipam)
    with pytest.raises(Exhausted):
        pool(ipam, v6=True)  # no v6 defaults configured


def test_released_default_pool_is_reused(ipam):
    first = pool(ipam)
    pool(ipam)
    ipam.release_pool(first.pool_id)
    assert pool(ipam).pool == first.pool


def test_pool_document_contention_is_retryable(store):
    class Contended(MemoryStore):
        def cas(self, key, value, revision):
            return None

    busy = IpamService(Contended())
    pool(busy, "10.0.0.0/24")  # the first write is a create
    with pytest.raises(Retryable):
        pool(busy, "10.0.1.0/24")


def test_concurrent_default_pools_are_distinct(ipam):
    got, lock = [], threading.Lock()

    def worker():
        for _ in range(5):
            result = pool(ipam)
            with lock:
                got.append(result.pool)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40 and len(set(got)) == 40


# -- release_pool -------------------------------------------------------------------


def test_release_pool_frees_everything(ipam, store):
    p = pool(ipam, "10.5.0.0/24")
    ipam.request_address(p.pool_id, "", GW)
    for _ in range(3):
        ipam.request_address(p.pool_id, "", None)
    ipam.release_pool(p.pool_id)
    assert store.list("/pynet/v1/ipam/pynet-local/addrs/") == []
    assert store.list("/pynet/v1/ipam/pynet-local/cursor/") == []
    with pytest.raises(NotFound):
        ipam.request_address(p.pool_id, "", None)
    again = pool(ipam, "10.5.0.0/24")
    assert ipam.request_address(again.pool_id, "", None) == "10.5.0.1/24"


def test_release_unknown_pool_succeeds(ipam):
    ipam.release_pool("pynet-local/10.99.0.0/16")
    ipam.release_pool("garbage")
    p = pool(ipam, "10.6.0.0/16", "10.6.1.0/24")
    ipam.release_pool("pynet-local/10.6.0.0/16")  # different sub-pool: a stale id, not this pool
    assert ipam.request_address(p.pool_id, "", None) == "10.6.1.0/16"


# -- request_address ------------------------------------------------------------------


def test_addresses_are_cidr_with_pool_length(ipam):
    p = pool(ipam, "192.168.0.0/16")
    assert ipam.request_address(p.pool_id, "", GW) == "192.168.0.1/16"
    assert ipam.request_address(p.pool_id, "", None) == "192.168.0.2/16"
    assert ipam.request_address(p.pool_id, "", {}) == "192.168.0.3/16"
    mac = {"com.docker.network.endpoint.macaddress": "aa:bb:cc:dd:ee:ff"}
    assert ipam.request_address(p.pool_id, "", mac) == "192.168.0.4/16"


def test_gateway_is_lowest_free_not_round_robin(ipam):
    p = pool(ipam, "10.7.0.0/24", "10.7.0.64/26")
    assert ipam.request_address(p.pool_id, "", None) == "10.7.0.64/24"
    assert ipam.request_address(p.pool_id, "", None) == "10.7.0.65/24"
    ipam.release_address(p.pool_id, "10.7.0.64")
    assert ipam.request_address(p.pool_id, "", GW) == "10.7.0.64/24"


def test_explicit_gateway_and_aux_are_never_handed_out(ipam):
    p = pool(ipam, "10.8.0.0/29")
    assert ipam.request_address(p.pool_id, "10.8.0.1", GW) == "10.8.0.1/29"
    assert ipam.request_address(p.pool_id, "10.8.0.3", None) == "10.8.0.3/29"  # aux address
    got = {ipam.request_address(p.pool_id, "", None) for _ in range(4)}
    assert got == {"10.8.0.2/29", "10.8.0.4/29", "10.8.0.5/29", "10.8.0.6/29"}
    with pytest.raises(Exhausted):
        ipam.request_address(p.pool_id, "", None)


def test_specific_address_rules(ipam):
    p = pool(ipam, "192.168.0.0/16", "192.168.5.0/24")
    assert ipam.request_address(p.pool_id, "192.168.0.50", None) == "192.168.0.50/16"
    with pytest.raises(Conflict, match="address 192.168.0.50 is already in use in pool 192.168.0.0/16"):
        ipam.request_address(p.pool_id, "192.168.0.50", None)
    with pytest.raises(BadRequest, match="not inside pool"):
        ipam.request_address(p.pool_id, "10.0.0.1", None)
    with pytest.raises(BadRequest, match="invalid address"):
        ipam.request_address(p.pool_id, "192.168.0.x", None)
    with pytest.raises(BadRequest):
        ipam.request_address(p.pool_id, "192.168.0.0", None)  # network address


def test_unknown_pool_is_not_found(ipam):
    for pool_id in ["pynet-local/10.0.0.0/8", "nonsense"]:
        with pytest.raises(NotFound, match="no such pool"):
            ipam.request_address(pool_id, "", None)


def test_exhaustion_of_slash_30(ipam):
    p = pool(ipam, "10.0.0.0/30")
    assert [ipam.request_address(p.pool_id, "", None) for _ in range(2)] == ["10.0.0.1/30", "10.0.0.2/30"]
    with pytest.raises(Exhausted, match=r"no free address left in pool 10.0.0.0/30 \(range "):
        ipam.request_address(p.pool_id, "", None)


def test_exhaustion_of_sub_pool_allows_specific_outside(ipam):
    p = pool(ipam, "10.10.0.0/24", "10.10.0.8/30")
    got = [ipam.request_address(p.pool_id, "", None) for _ in range(4)]
    assert got == ["10.10.0.8/24", "10.10.0.9/24", "10.10.0.10/24", "10.10.0.11/24"]
    with pytest.raises(Exhausted, match=r"range 10.10.0.8-10.10.0.11"):
        ipam.request_address(p.pool_id, "", None)
    assert ipam.request_address(p.pool_id, "10.10.0.100", None) == "10.10.0.100/24"


def test_round_robin_after_release(ipam):
    p = pool(ipam, "10.11.0.0/24")
    a = ipam.request_address(p.pool_id, "", None)
    ipam.release_address(p.pool_id, a.split("/")[0])
    assert ipam.request_address(p.pool_id, "", None) != a


def test_release_address_tolerates_unknowns(ipam):
    p = pool(ipam, "10.12.0.0/24")
    ipam.release_address(p.pool_id, "10.12.0.77")
    ipam.release_address("pynet-local/10.99.0.0/24", "10.99.0.1")
    ipam.release_address("garbage", "10.99.0.1")
    ipam.release_address(p.pool_id, "fd00::1")
    with pytest.raises(BadRequest):
        ipam.release_address(p.pool_id, "not-an-ip")


def test_v6_pool_and_addresses(ipam):
    p = pool(ipam, "fd00:1::/64", v6=True)
    assert p.pool_id == "pynet-local/fd00:1::/64"
    assert ipam.request_address(p.pool_id, "", GW) == "fd00:1::1/64"
    assert ipam.request_address(p.pool_id, "", None) == "fd00:1::2/64"
    assert ipam.request_address(p.pool_id, "fd00:1::abcd", None) == "fd00:1::abcd/64"
    with pytest.raises(BadRequest):
        ipam.request_address(p.pool_id, "fd00:1::", None)  # subnet-router anycast
    d = pool(ipam, v6=True)
    assert ipam.request_address(d.pool_id, "", None) == "fd70:796e:6574::1/64"


# -- scale, concurrency, restart ----------------------------------------------------------


def test_slash_8_is_cheap(ipam, store):
    began = time.monotonic()
    p = pool(ipam, "10.0.0.0/8")
    got = {ipam.request_address(p.pool_id, "", None) for _ in range(1000)}
    assert len(got) == 1000
    assert time.monotonic() - began < 5
    assert len(store.list("/pynet/v1/ipam/pynet-local/addrs/")) == 1000
    assert len(store.list("")) == 1002  # + the pools document and the cursor


def test_concurrent_allocation_no_duplicates(ipam):
    p = pool(ipam, "10.20.0.0/24")
    got, lock = [], threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        mine = [ipam.request_address(p.pool_id, "", None) for _ in range(30)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 240 and len(set(got)) == 240


def test_restart_continues_without_duplicates(store):
    old = IpamService(store)
    p = pool(old, "10.30.0.0/24")
    before = [old.request_address(p.pool_id, "", None) for _ in range(5)]
    old.release_address(p.pool_id, before[0].split("/")[0])
    new = IpamService(store)
    after = [new.request_address(p.pool_id, "", None) for _ in range(5)]
    assert after[0] == "10.30.0.6/24"  # continues after the old cursor
    assert not set(before[1:]) & set(after)
    with pytest.raises(Conflict):
        pool(new, "10.30.0.0/24")
    held_default = pool(old)
    assert pool(new).pool != held_default.pool


# -- crash consistency of ReleasePool --------------------------------------------------------------


class _Crash(BaseException):
    pass


class _CrashOnClaimDelete(MemoryStore):
    """Dies (like a SIGKILLed process) at the first delete of an address claim."""

    armed = False

    def delete(self, key, revision=None):
        if self.armed and "/addrs/" in key:
            raise _Crash(key)
        return super().delete(key, revision)


def test_release_pool_forgets_the_pool_before_its_claims():
    store = _CrashOnClaimDelete()
    ipam = IpamService(store)
    p = pool(ipam, "10.7.0.0/24")
    ipam.request_address(p.pool_id, "", GW)
    ipam.request_address(p.pool_id, "", None)
    store.armed = True
    with pytest.raises(_Crash):
        ipam.release_pool(p.pool_id)
    store.armed = False
    restarted = IpamService(store)
    with pytest.raises(NotFound):  # the pool is gone first: no address of it can be handed out
        restarted.request_address(p.pool_id, "", None)
    assert restarted.collect_orphan_claims() == 2  # what the crash left, collected
    again = pool(restarted, "10.7.0.0/24")
    assert restarted.request_address(again.pool_id, "", GW) == "10.7.0.1/24"
    assert restarted.request_address(again.pool_id, "", None) == "10.7.0.2/24"


def test_dropping_claims_of_a_released_pool_never_touches_a_new_incarnation(ipam, store):
    p = pool(ipam, "10.8.0.0/24")
    ipam.request_address(p.pool_id, "", GW)
    ipam._registry.remove(parse_pool_id(p.pool_id))  # a release that has forgotten the pool, not its claims yet
    again = pool(ipam, "10.8.0.0/24")  # a new network takes the CIDR before the old release goes on
    assert ipam._drop_claims(LOCAL, "10.8.0.0/24") == 0  # held again: left alone (a leak, not a double claim)
    with pytest.raises(Conflict):
        ipam.request_address(again.pool_id, "10.8.0.1", GW)
    assert ipam.collect_orphan_claims() == 0


def test_orphan_claims_older_than_the_pool_document_only(ipam, store):
    p = pool(ipam, "10.9.0.0/24")
    ipam.request_address(p.pool_id, "", None)
    ipam.release_pool(p.pool_id)
    assert ipam.collect_orphan_claims() == 0  # release_pool already dropped everything
    assert store.list("/pynet/v1/ipam/pynet-local/addrs/") == []
