"""The firewall against real iptables in a throwaway namespace: idempotent, removable, Docker's rules untouched."""

from __future__ import annotations

import subprocess

import pytest

from pynet.driver.firewall import IptablesFirewall
from pynet.driver.models import Endpoint, IPAMData, Network, NetworkConfig


@pytest.fixture
def firewall(netns):
    return IptablesFirewall(command_prefix=("ip", "netns", "exec", netns))


def save(netns, tool="iptables-save"):
    out = subprocess.run(["ip", "netns", "exec", netns, tool], check=True, capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.startswith("-")]  # rules only, not table headers


def net(nid, v6=False, icc=True, internal=False, masquerade=True):
    return Network(id=nid, config=NetworkConfig(bridge="pn-" + nid[:12], icc=icc, internal=internal,
                                                masquerade=masquerade),
                   ipv4=(IPAMData(pool="10.1.0.0/24", gateway="10.1.0.1/24"),),
                   ipv6=(IPAMData(pool="fd00:1::/64", gateway="fd00:1::1/64"),) if v6 else ())


def endpoint(nid, published):
    return Endpoint(network_id=nid, id="e" * 64, host_if="pnheeeeeeeeeeee", container_if="pnceeeeeeeeeeee",
                    address="10.1.0.2/24", address_v6="fd00:1::2/64", published=published)


PUBLISHED = [
    {"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_ip": "10.1.0.2", "container_port": 80,
     "family": 4},
    {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8081, "container_ip": "10.1.0.2", "container_port": 80,
     "family": 4},
    {"proto": "udp", "host_ip": "::", "host_port": 5353, "container_ip": "fd00:1::2", "container_port": 53,
     "family": 6},
]


def docker_like_rules(netns):
    for argv in (["iptables", "-N", "DOCKER-USER"], ["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"],
                 ["iptables", "-t", "nat", "-N", "DOCKER"],
                 ["iptables", "-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j",
                  "DOCKER"]):
        subprocess.run(["ip", "netns", "exec", netns, *argv], check=True)


def test_sync_is_idempotent_and_removes_everything(firewall, netns):
    docker_like_rules(netns)
    before, before6 = save(netns), save(netns, "ip6tables-save")
    a, b = net("a" * 64), net("b" * 64, v6=True, internal=True)
    eps = [endpoint(a.id, PUBLISHED)]
    firewall.sync([a, b], eps)
    once = save(netns)
    firewall.sync([a, b], eps)
    firewall.sync([a, b], eps)
    assert save(netns) == once
    assert once.count("-A DOCKER-USER -j PYNET-FORWARD") == 1  # Docker keeps DOCKER-USER first
    assert "-A FORWARD -j PYNET-FORWARD" not in once
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j PYNET-PREROUTING" in once
    assert "-A PYNET-FORWARD -i pn-aaaaaaaaaaaa -o pn-aaaaaaaaaaaa -j ACCEPT" in once
    assert "-A PYNET-FORWARD -i pn-aaaaaaaaaaaa -j ACCEPT" in once
    assert "-A PYNET-FORWARD -i pn-bbbbbbbbbbbb -j DROP" in once  # internal: nothing leaves
    assert "-A PYNET-POSTROUTING -s 10.1.0.0/24 ! -o pn-aaaaaaaaaaaa -j MASQUERADE" in once
    assert ("-A PYNET-PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in once)
    assert ("-A PYNET-OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.1.0.2:80"
            in once)
    # Every rule letting traffic enter a bridge comes before any rule letting traffic leave one.
    forward = [l for l in once if l.startswith("-A PYNET-FORWARD")]
    last_enter = max(i for i, l in enumerate(forward) if " -o pn-" in l and " -i " not in l)
    first_leave = min(i for i, l in enumerate(forward) if l.endswith("-i pn-aaaaaaaaaaaa -j ACCEPT"))
    assert last_enter < first_leave
    six = save(netns, "ip6tables-save")
    assert any("pn-bbbbbbbbbbbb" in l for l in six)
    firewall.sync([a], [])
    assert not any("pn-bbbbbbbbbbbb" in l or "--to-destination" in l for l in save(netns))
    assert not any("PYNET" in l for l in save(netns, "ip6tables-save"))
    firewall.sync([], [])
    assert save(netns) == before  # Docker's chains and jumps untouched, nothing of pynet's left
    assert save(netns, "ip6tables-save") == before6


def test_icc_false_and_no_masquerade(firewall, netns):
    firewall.sync([net("c" * 64, icc=False, masquerade=False)], [])
    rules = save(netns)
    assert "-A PYNET-FORWARD -i pn-cccccccccccc -o pn-cccccccccccc -j DROP" in rules
    assert not any("! -o pn-cccccccccccc -j MASQUERADE" in l for l in rules)
    firewall.sync([], [])


def test_jump_lives_in_forward_until_docker_user_appears(firewall, netns):
    ns = ["ip", "netns", "exec", netns]
    firewall.sync([net("d" * 64)], [])  # pynet started before dockerd: no DOCKER-USER yet
    assert "-A FORWARD -j PYNET-FORWARD" in save(netns)
    # dockerd starts: its chain, its jump, and its accept rules inserted at the top.
    docker_like_rules(netns)
    subprocess.run([*ns, "iptables", "-I", "FORWARD", "1", "-i", "docker0", "!", "-o", "docker0", "-j", "ACCEPT"],
                   check=True)
    assert firewall.keep_first() >= 1
    rules = save(netns)
    assert "-A FORWARD -j PYNET-FORWARD" not in rules and rules.count("-A DOCKER-USER -j PYNET-FORWARD") == 1
    assert firewall.keep_first() == 0  # already in place: nothing to do
    firewall.sync([], [])
    assert not any("PYNET" in l for l in save(netns))


def test_overlay_traffic_between_containers_skips_conntrack(firewall, netns):
    from dataclasses import replace

    overlay = net("d" * 64)
    overlay = replace(overlay, config=replace(overlay.config, mode="overlay", overlay="demo"))
    firewall.sync([overlay, net("a" * 64)], [])
    rules = save(netns)
    assert "-A PREROUTING -j PYNET-RAW" in rules
    raw = [l for l in rules if l.startswith("-A PYNET-RAW ")]
    assert raw == ["-A PYNET-RAW -d 10.1.0.1/32 -i pn-dddddddddddd -j RETURN",  # the host stays tracked
                   "-A PYNET-RAW -s 10.1.0.0/24 -d 10.1.0.0/24 -i pn-dddddddddddd -j NOTRACK",
                   "-A PYNET-RAW -p udp -m udp --dport 4789 -m addrtype --dst-type LOCAL -j NOTRACK"]
    assert "-A OUTPUT -j PYNET-RAW-OUTPUT" in rules
    assert "-A PYNET-RAW-OUTPUT -p udp -m udp --dport 4789 -m addrtype --src-type LOCAL -j NOTRACK" in rules
    firewall.sync([net("a" * 64)], [])  # no overlay left: nothing untracked
    assert not any("NOTRACK" in l for l in save(netns))
    firewall.sync([], [])
    assert not any("PYNET" in l for l in save(netns))
