"""ipam/pools.py: pure parsing, overlap, default candidates and PoolIDs."""

from __future__ import annotations

import inspect
import ipaddress

import pytest

from pynet.errors import BadRequest
from pynet.ipam.models import PoolRef
from pynet.ipam.pools import (DEFAULT_POOLS, DefaultPool, canonical, check_in_pool, check_sub_pool,
                        default_candidates, find_overlap, format_pool_id, overlaps,
                        parse_address, parse_default_pools, parse_network, parse_pool_id)

net = ipaddress.ip_network


@pytest.mark.parametrize("text, expected", [
    ("10.1.0.0/16", "10.1.0.0/16"),
    ("fd00::/64", "fd00::/64"),
    ("FD00:0:0:0::/48", "fd00::/48"),  # dockerd passes --subnet through as typed; IPv6 spellings are unambiguous
    ("2001:DB8::/64", "2001:db8::/64"),
])
def test_canonical(text, expected):
    assert canonical(text) == expected


@pytest.mark.parametrize("text", ["", "10.0.0.0", "10.0.0.0/33", "banana/8", "10.0.0/8x", None, 5,
                                  "10.1.1.1/24", " 192.168.7.0/24", "fd00::1/64", "fe80::%eth0/64"])
def test_parse_network_errors_name_the_value(text):
    with pytest.raises(BadRequest) as err:
        parse_network(text, "pool")
    assert repr(text) in str(err.value) and "pool" in str(err.value)


def test_parse_address():
    assert parse_address("10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address("fd00::1") == ipaddress.ip_address("fd00::1")
    for bad in ["", "10.0.0.1/24", "10.0.0.256", "x"]:
        with pytest.raises(BadRequest, match="address"):
            parse_address(bad)


def test_overlap():
    assert overlaps(net("10.0.0.0/8"), net("10.1.0.0/16"))
    assert overlaps(net("10.1.0.0/16"), net("10.0.0.0/8"))
    assert overlaps(net("10.0.0.0/24"), net("10.0.0.0/24"))
    assert not overlaps(net("10.0.0.0/24"), net("10.0.1.0/24"))
    assert not overlaps(net("10.0.0.0/8"), net("fd00::/8"))
    held = [net("172.16.0.0/12"), net("10.0.0.0/16")]
    assert find_overlap(net("10.0.5.0/24"), held) == net("10.0.0.0/16")
    assert find_overlap(net("10.1.5.0/24"), held) is None


def test_sub_pool_and_address_checks():
    check_sub_pool(net("10.0.0.0/16"), net("10.0.5.0/24"))
    check_sub_pool(net("10.0.0.0/16"), net("10.0.0.0/16"))
    with pytest.raises(BadRequest, match="sub-pool 10.1.0.0/24 is not inside pool 10.0.0.0/16"):
        check_sub_pool(net("10.0.0.0/16"), net("10.1.0.0/24"))
    with pytest.raises(BadRequest):
        check_sub_pool(net("10.0.0.0/16"), net("fd00::/64"))
    check_in_pool(net("10.0.0.0/16"), ipaddress.ip_address("10.0.3.4"))
    with pytest.raises(BadRequest, match="gateway 10.1.0.1 is not inside pool 10.0.0.0/16"):
        check_in_pool(net("10.0.0.0/16"), ipaddress.ip_address("10.1.0.1"), "gateway")
    with pytest.raises(BadRequest):
        check_in_pool(net("10.0.0.0/16"), ipaddress.ip_address("fd00::1"))


def test_parse_default_pools():
    pools = parse_default_pools(DEFAULT_POOLS)
    assert pools == (DefaultPool(net("10.200.0.0/13"), 24), DefaultPool(net("fd70:796e:6574::/48"), 64))
    assert parse_default_pools(" 10.0.0.0/8:16 , ") == (DefaultPool(net("10.0.0.0/8"), 16),)


@pytest.mark.parametrize("text", ["10.0.0.0/8", "10.0.0.0/8:x", "10.0.0.0/16:8", "10.0.0.0/8:33",
                                  "fd00::/48:129", "nope:24"])
def test_parse_default_pools_errors(text):
    with pytest.raises(BadRequest):
        parse_default_pools(text)


def test_default_candidates_in_order_per_family():
    pools = parse_default_pools(DEFAULT_POOLS)
    v4 = default_candidates(pools, v6=False)
    assert [str(next(v4)) for _ in range(3)] == ["10.200.0.0/24", "10.200.1.0/24", "10.200.2.0/24"]
    v6 = default_candidates(pools, v6=True)
    assert [str(next(v6)) for _ in range(2)] == ["fd70:796e:6574::/64", "fd70:796e:6574:1::/64"]


def test_default_candidates_are_lazy():
    assert inspect.isgenerator(default_candidates(parse_default_pools(DEFAULT_POOLS), v6=True))
    # 2**64 candidates: only a lazy generator can yield the first one.
    huge = default_candidates([DefaultPool(net("fd00::/32"), 96)], v6=True)
    assert str(next(huge)) == "fd00::/96"


def test_default_candidates_count_and_end():
    pools = [DefaultPool(net("10.0.0.0/22"), 24)]
    assert [str(c) for c in default_candidates(pools, v6=False)] == [
        "10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]


def test_default_candidates_skip_held_and_overlapping():
    pools = parse_default_pools(DEFAULT_POOLS)
    held = [net("10.200.0.0/24"), net("10.200.1.128/25"), net("10.200.2.0/23"), net("fd00::/64")]
    got = default_candidates(pools, v6=False, held=held)
    assert str(next(got)) == "10.200.4.0/24"
    # A larger held pool is skipped in one jump, not per candidate.
    got = default_candidates(pools, v6=False, held=[net("10.200.0.0/14")])
    assert str(next(got)) == "10.204.0.0/24"


def test_default_candidates_exhausted_when_base_covered():
    pools = [DefaultPool(net("10.0.0.0/16"), 24)]
    assert list(default_candidates(pools, v6=False, held=[net("10.0.0.0/8")])) == []
    v6 = [DefaultPool(net("fd70:796e:6574::/48"), 64)]
    assert list(default_candidates(v6, v6=True, held=[net("fd70::/16")])) == []


def test_pool_ids_round_trip():
    assert format_pool_id("pynet-local", "192.168.0.0/16") == "pynet-local/192.168.0.0/16"
    pid = format_pool_id("pynet-local", "192.168.0.0/16", "192.168.5.0/24")
    assert pid == "pynet-local/192.168.0.0/16/192.168.5.0/24"
    assert parse_pool_id(pid) == PoolRef("pynet-local", "192.168.0.0/16", "192.168.5.0/24")
    assert parse_pool_id("pynet-global/fd00::/64") == PoolRef("pynet-global", "fd00::/64", "")


@pytest.mark.parametrize("pool_id", ["", "pynet-local", "pynet-local/10.0.0.0", "/10.0.0.0/8",
                                     "pynet-local/x/8", "a/10.0.0.0/8/10.0.0.0", None, 7])
def test_parse_pool_id_rejects_foreign_ids(pool_id):
    assert parse_pool_id(pool_id) is None
