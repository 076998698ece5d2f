"""The member-VTEP set over netlink and the firewall rules that use it, in a throwaway namespace."""

from __future__ import annotations

import ipaddress
import subprocess

import pytest

from pynet.driver.firewall import IptablesFirewall, MemberFilter
from pynet.driver.kernel.ipset import IpSets
from pynet.driver.kernel.netlink import KernelError
from pynet.driver.models import IPAMData, Network, NetworkConfig

A, B = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")


@pytest.fixture
def sets(netns):
    s = IpSets(netns=netns)
    yield s
    s.close()


def overlay():
    return Network(id="d" * 64, config=NetworkConfig(bridge="pn-dddddddddddd", mode="overlay", overlay="o", vni=42),
                   ipv4=(IPAMData(pool="10.1.0.0/24", gateway="10.1.0.1/24"),))


def rules(netns, table):
    out = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", table], check=True,
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


def kernel_sets(netns) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "ipset", "list", "-n"], capture_output=True,
                          text=True).stdout.strip()


def test_set_operations_are_idempotent_pairs(sets, netns):
    assert sets.members("pynet-vteps") is None
    sets.ensure("pynet-vteps")
    sets.ensure("pynet-vteps")
    sets.add("pynet-vteps", A)
    sets.add("pynet-vteps", A)
    sets.add("pynet-vteps", B)
    assert sets.members("pynet-vteps") == {A, B}
    sets.ensure("pynet-vteps")  # an existing set keeps its entries
    sets.delete("pynet-vteps", B)
    sets.delete("pynet-vteps", B)
    assert sets.members("pynet-vteps") == {A}
    sets.destroy("pynet-vteps")
    sets.destroy("pynet-vteps")
    sets.delete("pynet-vteps", A)  # no set: nothing to delete
    assert sets.members("pynet-vteps") is None and kernel_sets(netns) == ""
    with pytest.raises(KernelError, match="pynet-vteps"):
        sets.add("pynet-vteps", A)
    with pytest.raises(ValueError):
        sets.add("pynet-vteps", "192.0.2.1 -j ACCEPT")
    with pytest.raises(ValueError):
        sets.ensure("other set")


def test_firewall_filter_armed_only_after_fill_and_removed_with_the_last_overlay(sets, netns):
    firewall = IptablesFirewall(command_prefix=("ip", "netns", "exec", netns), members=MemberFilter(sets))
    firewall.sync([overlay()])
    assert sets.members("pynet-vteps") == set()  # made before any rule names it, empty
    assert not any("match-set" in r for r in rules(netns, "raw"))  # an empty set is not enforced
    loop = [r for r in rules(netns, "filter") if r.startswith("-A PYNET-INPUT")]
    assert loop == ["-A PYNET-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -i pn-dddddddddddd -m conntrack ! --ctstate "
                    "RELATED,ESTABLISHED,DNAT -j DROP"], loop
    assert "-A INPUT -j PYNET-INPUT" in rules(netns, "filter")

    sets.add("pynet-vteps", A)
    sets.add("pynet-vteps", B)
    assert firewall.arm() is True
    raw = [r for r in rules(netns, "raw") if r.startswith("-A PYNET-RAW ")]
    assert raw[0] == ("-A PYNET-RAW -p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL "
                      "-m set ! --match-set pynet-vteps src -j DROP"), raw
    firewall.sync([overlay()])  # idempotent
    assert [r for r in rules(netns, "raw") if r.startswith("-A PYNET-RAW ")] == raw

    # a new firewall (pynet restarted) over the surviving set keeps the filter from its first sync
    again = IptablesFirewall(command_prefix=("ip", "netns", "exec", netns), members=MemberFilter(sets))
    again.sync([overlay()])
    assert [r for r in rules(netns, "raw") if r.startswith("-A PYNET-RAW ")] == raw

    again.sync([])
    assert not any("PYNET" in r for t in ("raw", "filter") for r in rules(netns, t))
    assert kernel_sets(netns) == ""
