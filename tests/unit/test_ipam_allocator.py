"""ipam/allocator.py over MemoryStore: reserved addresses, round robin, exhaustion, races."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from pynet.errors import BadRequest, Conflict, Exhausted
from pynet.ipam import allocator
from pynet.ipam.allocator import AddressRange
from pynet.store import keys
from pynet.store.memory import MemoryStore

SPACE = "pynet-local"


def rng(pool, sub=None):
    return AddressRange.of(SPACE, ipaddress.ip_network(pool), ipaddress.ip_network(sub) if sub else None)


def ip(text):
    return ipaddress.ip_address(text)


@pytest.fixture
def store():
    return MemoryStore()


def drain(store, r):
    got = []
    while True:
        try:
            got.append(str(allocator.claim_next(store, r)))
        except Exhausted:
            return got


@pytest.mark.parametrize("pool, reserved, free", [
    ("10.0.0.0/24", ["10.0.0.0", "10.0.0.255"], ["10.0.0.1", "10.0.0.254"]),
    ("10.0.0.0/30", ["10.0.0.0", "10.0.0.3"], ["10.0.0.1", "10.0.0.2"]),
    ("10.0.0.0/31", [], ["10.0.0.0", "10.0.0.1"]),
    ("10.0.0.7/32", [], ["10.0.0.7"]),
    ("fd00::/64", ["fd00::"], ["fd00::1", "fd00::ffff:ffff:ffff:ffff"]),
    ("fd00::/127", [], ["fd00::", "fd00::1"]),
])
def test_reserved_addresses(pool, reserved, free):
    r = rng(pool)
    assert [a for a in reserved if r.reserved(int(ip(a)))] == reserved
    assert [a for a in free if not r.reserved(int(ip(a)))] == free


def test_tiny_pools_hand_out_everything(store):
    assert drain(store, rng("10.0.0.0/31")) == ["10.0.0.0", "10.0.0.1"]
    assert drain(store, rng("10.0.1.9/32")) == ["10.0.1.9"]
    assert drain(store, rng("10.0.2.0/30")) == ["10.0.2.1", "10.0.2.2"]


def test_claim_specific_rules(store):
    r = rng("192.168.0.0/16", "192.168.5.0/24")
    assert allocator.claim_specific(store, r, ip("192.168.0.50")) == ip("192.168.0.50")  # outside sub-pool is fine
    with pytest.raises(Conflict, match="address 192.168.0.50 is already in use in pool 192.168.0.0/16"):
        allocator.claim_specific(store, r, ip("192.168.0.50"))
    with pytest.raises(BadRequest, match="not inside pool"):
        allocator.claim_specific(store, r, ip("10.0.0.1"))
    with pytest.raises(BadRequest, match="reserved"):
        allocator.claim_specific(store, r, ip("192.168.255.255"))
    assert store.get(keys.ipam_address(SPACE, "192.168.0.0/16", "192.168.0.50")).value == {"kind": "endpoint"}


def test_next_stays_in_sub_pool_and_skips_claims(store):
    r = rng("192.168.0.0/16", "192.168.5.0/30")
    allocator.claim_specific(store, r, ip("192.168.5.1"))
    got = drain(store, r)
    # The sub-pool's own edge addresses are usable: only the pool's network/broadcast are reserved.
    assert got == ["192.168.5.0", "192.168.5.2", "192.168.5.3"]


def test_round_robin_does_not_reuse_released_at_once(store):
    r = rng("10.0.0.0/24")
    first = [allocator.claim_next(store, r) for _ in range(3)]
    assert [str(a) for a in first] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    allocator.release(store, r, first[1])
    assert str(allocator.claim_next(store, r)) == "10.0.0.4"


def test_round_robin_wraps_to_released(store):
    r = rng("10.0.0.0/29")  # usable .1-.6
    assert drain(store, r) == [f"10.0.0.{i}" for i in range(1, 7)]
    allocator.release(store, r, ip("10.0.0.3"))
    allocator.release(store, r, ip("10.0.0.5"))
    assert str(allocator.claim_next(store, r)) == "10.0.0.3"  # cursor at .6 wraps, skips .0
    assert str(allocator.claim_next(store, r)) == "10.0.0.5"


def test_claim_lowest_is_deterministic_and_leaves_cursor(store):
    r = rng("10.0.0.0/24", "10.0.0.128/25")
    assert str(allocator.claim_lowest(store, r)) == "10.0.0.128"
    assert str(allocator.claim_next(store, r)) == "10.0.0.129"
    allocator.release(store, r, ip("10.0.0.128"))
    assert str(allocator.claim_lowest(store, r)) == "10.0.0.128"
    assert store.get(keys.ipam_address(SPACE, "10.0.0.0/24", "10.0.0.128")).value == {"kind": "gateway"}
    assert store.get(keys.ipam_cursor(SPACE, "10.0.0.0/24")).value == {"last": "10.0.0.129"}


def test_exhaustion_message(store):
    r = rng("10.0.0.0/30")
    drain(store, r)
    with pytest.raises(Exhausted, match=r"no free address left in pool 10.0.0.0/30 \(range 10.0.0.0-10.0.0.3\)"):
        allocator.claim_next(store, r)
    with pytest.raises(Exhausted):
        allocator.claim_lowest(store, r)


def test_lost_race_is_skipped():
    class RacyStore(MemoryStore):
        """Someone else grabs 10.0.0.1 just before each create of it."""

        def create(self, key, value):
            if key.endswith("/10.0.0.1"):
                super().create(key, {"kind": "endpoint"})
            return super().create(key, value)

    store = RacyStore()
    assert str(allocator.claim_next(store, rng("10.0.0.0/24"))) == "10.0.0.2"


def test_big_pools_cost_nothing_up_front(store):
    r8 = rng("10.0.0.0/8")
    got = {str(allocator.claim_next(store, r8)) for _ in range(300)}
    assert len(got) == 300
    r6 = rng("fd00::/64")
    assert str(allocator.claim_next(store, r6)) == "fd00::1"
    assert str(allocator.claim_lowest(store, r6)) == "fd00::2"
    assert len(store.list("/pynet/v1/ipam/")) == 300 + 2 + 2  # claims + two cursors


def test_release_all(store):
    r = rng("10.0.0.0/24")
    assert len(drain(store, rng("10.0.0.0/24", "10.0.0.0/29"))) == 7
    allocator.claim_next(store, r)
    allocator.claim_next(store, rng("10.0.1.0/24"))  # another pool: untouched
    assert allocator.release_all(store, SPACE, r.pool) == 8
    assert [e.key for e in store.list("/pynet/v1/ipam/")] == [
        keys.ipam_address(SPACE, "10.0.1.0/24", "10.0.1.1"), keys.ipam_cursor(SPACE, "10.0.1.0/24")]
    assert allocator.release(store, r, ip("10.0.0.1")) is False


def test_concurrent_claims_never_duplicate(store):
    r = rng("10.1.0.0/24")
    results, lock = [], threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        mine = [str(allocator.claim_next(store, r)) for _ in range(25)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and len(set(results)) == 200
