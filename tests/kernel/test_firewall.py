"""The firewall against real iptables in a throwaway namespace: idempotent, removable, Docker's rules untouched."""

from __future__ import annotations

import subprocess

import pytest

from driver.firewall import IptablesFirewall
from driver.models import IPAMData, Network, NetworkConfig


@pytest.fixture
def firewall(netns):
    return IptablesFirewall(command_prefix=("ip", "netns", "exec", netns))


def save(netns, tool="iptables-save"):
    out = subprocess.run(["ip", "netns", "exec", netns, tool], check=True, capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if not l.startswith("#") and not l.startswith(":")]


def net(nid, v6=False, icc=True, internal=False):
    return Network(id=nid, config=NetworkConfig(bridge="pn-" + nid[:12], icc=icc, internal=internal),
                   ipv4=(IPAMData(pool="10.1.0.0/24", gateway="10.1.0.1/24"),),
                   ipv6=(IPAMData(pool="fd00:1::/64", gateway="fd00:1::1/64"),) if v6 else ())


def test_sync_is_idempotent_and_removes_everything(firewall, netns):
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-N", "DOCKER-USER"], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", "FORWARD", "-j", "DOCKER-USER"], check=True)
    before = save(netns)
    a, b = net("a" * 64), net("b" * 64, v6=True, internal=True)
    firewall.sync([a, b])
    once = save(netns)
    firewall.sync([a, b])
    firewall.sync([a, b])
    assert save(netns) == once
    assert once.count("-A FORWARD -j PYNET-FORWARD") == 1
    assert "-A PYNET-FORWARD -i pn-aaaaaaaaaaaa -o pn-aaaaaaaaaaaa -j ACCEPT" in once
    assert "-A PYNET-FORWARD -i pn-aaaaaaaaaaaa ! -o pn-aaaaaaaaaaaa -j ACCEPT" in once
    assert "-A PYNET-FORWARD -i pn-bbbbbbbbbbbb ! -o pn-bbbbbbbbbbbb -j ACCEPT" not in once  # internal
    assert any("pn-bbbbbbbbbbbb" in l for l in save(netns, "ip6tables-save"))
    firewall.sync([a])
    assert not any("pn-bbbbbbbbbbbb" in l for l in save(netns))
    assert not any("PYNET" in l for l in save(netns, "ip6tables-save"))
    firewall.sync([])
    assert save(netns) == before  # Docker's chain and jump untouched, nothing of pynet's left


def test_icc_false_drops_within_the_bridge(firewall, netns):
    firewall.sync([net("c" * 64, icc=False)])
    assert "-A PYNET-FORWARD -i pn-cccccccccccc -o pn-cccccccccccc -j DROP" in save(netns)
    firewall.sync([])
