"""ensure_* / delete of bridges and veths against the real kernel: running twice changes nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from pynet.driver.kernel.links import BridgeSpec, KernelError, VethSpec

BR = BridgeSpec(name="pn-0123456789ab", mtu=1400, mac="02:11:22:33:44:55",
                addresses=("10.9.0.1/24", "fd00:9::1/64"))


def ip_json(netns, *args):
    out = subprocess.run(["ip", "-n", netns, "-j", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def snapshot(netns):
    links = ip_json(netns, "-d", "link", "show")
    addrs = ip_json(netns, "addr", "show")
    keep = ("ifname", "mtu", "address", "master", "operstate")
    return ([{k: l.get(k) for k in keep} for l in links],
            sorted((a["ifname"], i["local"], i["prefixlen"]) for a in addrs for i in a.get("addr_info", [])
                   if not i["local"].startswith("fe80")))


def test_bridge_created_then_unchanged(links, netns):
    assert links.ensure_bridge(BR) is True
    first = snapshot(netns)
    assert links.ensure_bridge(BR) is False
    assert snapshot(netns) == first
    br = links.get(BR.name)
    assert br.kind == "bridge" and br.mtu == 1400 and br.address == BR.mac and br.up
    assert {"10.9.0.1/24", "fd00:9::1/64"} <= links.addresses(BR.name)


def test_bridge_stray_address_removed_and_missing_one_restored(links, netns):
    links.ensure_bridge(BR)
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.77.0.1/24", "dev", BR.name], check=True)
    subprocess.run(["ip", "-n", netns, "addr", "del", "10.9.0.1/24", "dev", BR.name], check=True)
    links.ensure_bridge(BR)
    addrs = links.addresses(BR.name)
    assert "10.9.0.1/24" in addrs and "10.77.0.1/24" not in addrs


def test_non_bridge_with_our_name_is_replaced(links, netns):
    subprocess.run(["ip", "-n", netns, "link", "add", BR.name, "type", "veth", "peer", "name", "pnx-peer"],
                   check=True)
    assert links.ensure_bridge(BR) is True
    assert links.get(BR.name).kind == "bridge"


def test_foreign_non_bridge_is_refused(links, netns):
    subprocess.run(["ip", "-n", netns, "link", "add", "userbr0", "type", "veth", "peer", "name", "userbr0p"],
                   check=True)
    with pytest.raises(KernelError, match="not a bridge"):
        links.ensure_bridge(BridgeSpec(name="userbr0", mtu=1500, mac="02:00:00:00:00:01"), adopt_foreign=True)
    assert links.get("userbr0").kind == "veth"


def test_veth_pair_attached_idempotently(links, netns):
    links.ensure_bridge(BR)
    spec = VethSpec(host="pnh0123456789ab", peer="pnc0123456789ab", mtu=1400, bridge=BR.name,
                    peer_mac="02:42:0a:09:00:02")
    assert links.ensure_veth(spec) is True
    first = snapshot(netns)
    assert links.ensure_veth(spec) is False
    assert snapshot(netns) == first
    host, peer = links.get(spec.host), links.get(spec.peer)
    assert host.master == links.get(BR.name).index and host.up and host.mtu == 1400
    hairpin = subprocess.run(["ip", "netns", "exec", netns, "cat", f"/sys/class/net/{spec.host}/brport/hairpin_mode"],
                             capture_output=True, text=True).stdout.strip()
    assert hairpin == "1"
    assert peer.mtu == 1400 and peer.address == "02:42:0a:09:00:02"


def test_host_end_that_is_not_a_veth_is_recreated(links, netns):
    links.ensure_bridge(BR)
    spec = VethSpec(host="pnh0123456789ab", peer="pnc0123456789ab", mtu=1500, bridge=BR.name)
    subprocess.run(["ip", "-n", netns, "link", "add", spec.host, "type", "bridge"], check=True)
    assert links.ensure_veth(spec) is True
    assert links.get(spec.host).kind == "veth" and links.get(spec.peer) is not None


def test_veth_without_bridge_fails_and_leaves_nothing(links, netns):
    spec = VethSpec(host="pnh0123456789ab", peer="pnc0123456789ab", mtu=1500, bridge="pn-missing0000")
    with pytest.raises(KernelError, match="does not exist"):
        links.ensure_veth(spec)
    assert links.get(spec.host) is None and links.get(spec.peer) is None


def test_delete_is_idempotent(links):
    links.ensure_bridge(BR)
    assert links.delete(BR.name) is True
    assert links.delete(BR.name) is False
    assert links.get(BR.name) is None


def test_joined_pair_whose_peer_left_is_kept(links, netns):
    """After Join the peer lives in the container: re-ensuring must not recreate (and cut) the pair."""
    links.ensure_bridge(BR)
    spec = VethSpec(host="pnh0123456789ab", peer="pnc0123456789ab", mtu=1500, bridge=BR.name)
    links.ensure_veth(spec)
    other = netns + "-c"
    subprocess.run(["ip", "netns", "add", other], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", spec.peer, "netns", other], check=True)
        index = links.get(spec.host).index
        assert links.ensure_veth(VethSpec(**{**spec.__dict__, "peer_here": False})) is False
        assert links.get(spec.host).index == index
        assert "pnc0123456789ab" in subprocess.run(["ip", "-n", other, "link"], capture_output=True,
                                                   text=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", other], check=False)


def test_handle_keeps_no_orphaned_replies(links):
    """pyroute2 leaves a reply per link("get") in a queue nobody reads; Links must drop them (leak guard)."""
    links.ensure_bridge(BR)
    for i in range(50):
        spec = VethSpec(host=f"pnh{i:012x}", peer=f"pnc{i:012x}", mtu=1500, bridge=BR.name)
        links.ensure_veth(spec)
        links.get(spec.host)
        links.delete(spec.host)
    assert links.queued() == 0
