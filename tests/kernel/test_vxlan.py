"""The VXLAN overlay against the real kernel: two "hosts" (namespaces joined by a veth underlay), each with a
bridge that carries the same gateway IP and MAC, a VXLAN device and one "container" namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from pynet.driver.kernel.links import BridgeSpec, KernelError, Links, VethSpec, VxlanSpec, open_handle

pytestmark = pytest.mark.root

GW_MAC = "02:70:6e:00:00:01"
BRIDGE, VXLAN, MTU, VNI = "pnbr-ov", "pnvx-ov", 1450, 4242
MAC = {"a": "02:70:6e:00:00:02", "b": "02:70:6e:00:00:03"}
IP4 = {"a": "10.99.0.2", "b": "10.99.0.3"}
IP6 = {"a": "fd99::2", "b": "fd99::3"}
VTEP = {"a": "192.0.2.1", "b": "192.0.2.2"}
PAYLOAD4, PAYLOAD6 = MTU - 28, MTU - 48  # ICMP echo data that fills a 1450-byte packet

# One echo request with DF (IP_PMTUDISC_DO, as `ping -M do`): exit 0 on a reply within the timeout.
# Debian's image has no iputils ping, and busybox ping cannot forbid fragmentation.
PING = r"""
import os, select, socket, struct, sys, time
dst, size, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
v6 = ":" in dst
if v6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, 23, 2)  # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO
    kind, reply = 128, 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    kind, reply = 8, 0
ident, data = os.getpid() & 0xFFFF, bytes(range(256)) * (size // 256 + 1)
def checksum(b):
    b += b"\0" * (len(b) % 2)
    total = sum(struct.unpack(f"!{len(b) // 2}H", b))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
packet = struct.pack("!BBHHH", kind, 0, 0, ident, 1) + data[:size]
if not v6:  # the kernel fills in the ICMPv6 checksum itself
    packet = packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]
s.sendto(packet, (dst, 0))
end = time.monotonic() + timeout
while (left := end - time.monotonic()) > 0 and select.select([s], [], [], left)[0]:
    msg = s.recv(65535)
    msg = msg if v6 else msg[(msg[0] & 15) * 4:]
    if msg[0] == reply and struct.unpack("!H", msg[4:6])[0] == ident and len(msg) == 8 + size:
        sys.exit(0)
sys.exit(1)
"""


def ping(netns: str, dst: str, size: int, timeout: float = 2) -> bool:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", PING, dst, str(size), str(timeout)]
    return subprocess.run(argv, capture_output=True).returncode == 0


def ns_run(netns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def ip_json(netns: str, *args: str):
    out = subprocess.run(["ip", "-n", netns, "-j", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def tx_packets(netns: str, dev: str) -> int:
    return ip_json(netns, "-s", "link", "show", dev)[0]["stats64"]["tx"]["packets"]


def vxlan_data(netns: str, dev: str) -> dict:
    return ip_json(netns, "-d", "link", "show", dev)[0]["linkinfo"]["info_data"]


@dataclass
class Host:
    name: str  # "a" or "b"
    netns: str
    container: str
    links: Links

    def remote_args(self, other: Host) -> tuple:
        return VXLAN, MAC[other.name], VTEP[other.name], [IP4[other.name], IP6[other.name]]


def new_netns(stack: ExitStack, tag: str) -> str:
    name = f"pnt-o{tag}-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", name)
    stack.callback(subprocess.run, ["ip", "netns", "del", name], check=False)
    ip("-n", name, "link", "set", "lo", "up")
    return name


def open_links(stack: ExitStack, netns: str) -> Links:
    links = Links(open_handle(netns))
    stack.callback(links.close)
    return links


def build_host(stack: ExitStack, name: str, netns: str) -> Host:
    """Bridge with the shared gateway, VXLAN device, and a container on a veth into the bridge."""
    container = new_netns(stack, "c" + name)
    links = open_links(stack, netns)
    links.ensure_bridge(BridgeSpec(name=BRIDGE, mtu=MTU, mac=GW_MAC, addresses=("10.99.0.1/24", "fd99::1/64")))
    assert links.ensure_vxlan(VxlanSpec(name=VXLAN, vni=VNI, local=VTEP[name], bridge=BRIDGE, mtu=MTU)) is True
    links.ensure_veth(VethSpec(host=f"pnh-ov{name}", peer=f"pnc-ov{name}", mtu=MTU, bridge=BRIDGE,
                               peer_mac=MAC[name]))
    ip("-n", netns, "link", "set", f"pnc-ov{name}", "netns", container, "name", "eth0")
    ip("-n", container, "addr", "add", f"{IP4[name]}/24", "dev", "eth0")
    ip("-n", container, "addr", "add", f"{IP6[name]}/64", "dev", "eth0", "nodad")
    ip("-n", container, "link", "set", "eth0", "up")
    return Host(name, netns, container, links)


@pytest.fixture
def hosts():
    """Two hosts whose underlay is a veth pair 192.0.2.1/24 <-> 192.0.2.2/24 (MTU 1500)."""
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root")
    with ExitStack() as stack:
        ns = {name: new_netns(stack, name) for name in "ab"}
        ip("-n", ns["a"], "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", ns["b"])
        for name in "ab":
            ip("-n", ns[name], "addr", "add", f"{VTEP[name]}/24", "dev", "ul0")
            ip("-n", ns[name], "link", "set", "ul0", "up")
        yield tuple(build_host(stack, name, ns[name]) for name in "ab")


@pytest.fixture
def host(hosts):
    return hosts[0]


def connect(a: Host, b: Host) -> None:
    a.links.ensure_remote(*a.remote_args(b))
    b.links.ensure_remote(*b.remote_args(a))


# -- the data path ---------------------------------------------------------------------------------------------
def test_full_size_packets_cross_and_stop_after_delete(hosts):
    a, b = hosts
    connect(a, b)
    assert ping(a.container, IP4["b"], PAYLOAD4), "1450-byte IPv4 ping with DF did not cross the overlay"
    assert ping(b.container, IP6["a"], PAYLOAD6), "1450-byte IPv6 ping with DF did not cross the overlay"
    assert not ping(a.container, IP4["b"], PAYLOAD4 + 1, timeout=0.5)  # DF really is set: 1451 bytes is refused
    a.links.delete_remote(*a.remote_args(b))
    ns_run(a.container, "ip", "neigh", "flush", "dev", "eth0")
    assert not ping(a.container, IP4["b"], 56, timeout=1)
    assert a.links.remotes(VXLAN) == {}


def test_gateway_is_answered_locally_and_nothing_crosses(hosts):
    a, b = hosts
    connect(a, b)
    ns_run(a.container, "ip", "neigh", "flush", "dev", "eth0")  # so the ping starts with an ARP broadcast
    before = tx_packets(a.netns, VXLAN), tx_packets(b.netns, VXLAN)
    assert ping(a.container, "10.99.0.1", 56)
    assert ping(a.container, "fd99::1", 56)
    assert (tx_packets(a.netns, VXLAN), tx_packets(b.netns, VXLAN)) == before
    assert ping(a.container, IP4["b"], 56)  # the counter does count what crosses
    assert tx_packets(a.netns, VXLAN) > before[0]


# -- idempotency and what is programmed ------------------------------------------------------------------------
def state(host: Host) -> tuple:
    """The VXLAN device as `ip -d link` shows it (less counters and timers), its FDB and its neighbours."""
    (link,) = ip_json(host.netns, "-d", "link", "show", VXLAN)
    link.pop("stats64", None)
    slave = link["linkinfo"].get("info_slave_data", {})
    for key in [k for k in slave if k.endswith("_timer")]:
        del slave[key]
    fdb = subprocess.run(["bridge", "-n", host.netns, "fdb", "show", "dev", VXLAN], capture_output=True,
                         text=True).stdout
    neigh = subprocess.run(["ip", "-n", host.netns, "neigh", "show", "dev", VXLAN], capture_output=True,
                           text=True).stdout
    return link, sorted(fdb.splitlines()), sorted(neigh.splitlines())


def test_ensure_twice_changes_nothing(hosts):
    a, b = hosts
    connect(a, b)
    first = state(a)
    spec = VxlanSpec(name=VXLAN, vni=VNI, local=VTEP["a"], bridge=BRIDGE, mtu=MTU)
    assert a.links.ensure_vxlan(spec) is False
    a.links.ensure_remote(*a.remote_args(b))
    assert state(a) == first
    assert a.links.queued() == 0


def test_remotes_reports_exactly_what_was_programmed(host):
    links = host.links
    assert links.remotes(VXLAN) == {}
    links.ensure_remote(VXLAN, "02:AA:00:00:00:01", "192.0.2.7", ["10.99.0.7", "FD99:0::7"])
    links.ensure_remote(VXLAN, "02:aa:00:00:00:02", "192.0.2.8", ["10.99.0.8"])
    links.ensure_remote(VXLAN, "02:aa:00:00:00:03", "192.0.2.8", [])
    assert links.remotes(VXLAN) == {
        "02:aa:00:00:00:01": ("192.0.2.7", frozenset({"10.99.0.7", "fd99::7"})),
        "02:aa:00:00:00:02": ("192.0.2.8", frozenset({"10.99.0.8"})),
        "02:aa:00:00:00:03": ("192.0.2.8", frozenset()),
    }
    fdb = subprocess.run(["bridge", "-n", host.netns, "fdb", "show", "dev", VXLAN], capture_output=True,
                         text=True).stdout
    assert "02:aa:00:00:00:01 master pnbr-ov static" in fdb and "02:aa:00:00:00:01 dst 192.0.2.7 self" in fdb
    # the endpoint moves to another host: replace, and the stale delete does not cut the new entries
    links.ensure_remote(VXLAN, "02:aa:00:00:00:01", "192.0.2.9", ["10.99.0.7", "fd99::7"])
    links.delete_remote(VXLAN, "02:aa:00:00:00:01", "192.0.2.7", ["10.99.0.7", "fd99::7"])
    assert links.remotes(VXLAN)["02:aa:00:00:00:01"] == ("192.0.2.9", frozenset({"10.99.0.7", "fd99::7"}))
    assert "02:aa:00:00:00:01 master pnbr-ov static" in subprocess.run(
        ["bridge", "-n", host.netns, "fdb", "show", "dev", VXLAN], capture_output=True, text=True).stdout
    for mac, (vtep, ips) in links.remotes(VXLAN).items():
        links.delete_remote(VXLAN, mac, vtep, sorted(ips))
        links.delete_remote(VXLAN, mac, vtep, sorted(ips))  # absent is fine
    assert links.remotes(VXLAN) == {}
    assert "02:aa" not in subprocess.run(["bridge", "-n", host.netns, "fdb", "show", "dev", VXLAN],
                                         capture_output=True, text=True).stdout
    assert links.remotes("pnvx-missing") == {}
    links.delete_remote("pnvx-missing", "02:aa:00:00:00:01", "192.0.2.7", ["10.99.0.7"])
    with pytest.raises(KernelError, match="pnvx-missing"):
        links.ensure_remote("pnvx-missing", "02:aa:00:00:00:01", "192.0.2.7", ["10.99.0.7"])


# -- repair ----------------------------------------------------------------------------------------------------
def test_vxlan_created_with_the_wanted_settings(host):
    data = vxlan_data(host.netns, VXLAN)
    assert (data["id"], data["local"], data["port"], data["learning"], data["proxy"]) == (
        VNI, VTEP["a"], 4789, False, True)
    assert data["udp_csum"] is False  # no outer UDP checksum over IPv4, as Docker's overlay
    assert "group" not in data
    link = host.links.get(VXLAN)
    assert link.kind == "vxlan" and link.mtu == MTU and link.up and link.master == host.links.get(BRIDGE).index
    fdb = subprocess.run(["bridge", "-n", host.netns, "fdb", "show", "dev", VXLAN], capture_output=True,
                         text=True).stdout
    assert "00:00:00:00:00:00" not in fdb


def test_vxlan_detached_down_and_wrong_mtu_is_repaired_in_place(hosts):
    a, b = hosts
    connect(a, b)
    index = a.links.get(VXLAN).index
    ip("-n", a.netns, "link", "set", VXLAN, "nomaster")  # this also drops the bridge's entries for the port
    ip("-n", a.netns, "link", "set", VXLAN, "down", "mtu", "1400")  # down: the kernel flushes its neighbours
    spec = VxlanSpec(name=VXLAN, vni=VNI, local=VTEP["a"], bridge=BRIDGE, mtu=MTU)
    assert a.links.ensure_vxlan(spec) is False
    link = a.links.get(VXLAN)
    assert link.index == index and link.master == a.links.get(BRIDGE).index and link.mtu == MTU and link.up
    # The tables are the reconciler's: the device is repaired, and what it lost shows in a read of it.
    # The tunnel entry survived the down, the neighbour entries did not; the bridge entry went with nomaster.
    assert a.links.remotes(VXLAN) == {MAC["b"]: (VTEP["b"], frozenset())}
    assert a.links.unpinned(VXLAN) == {MAC["b"]}
    a.links.ensure_remote(*a.remote_args(b))  # what the reconciler's diff does with that read
    fdb = subprocess.run(["bridge", "-n", a.netns, "fdb", "show", "dev", VXLAN], capture_output=True,
                         text=True).stdout
    assert f"{MAC['b']} master {BRIDGE} static" in fdb and a.links.unpinned(VXLAN) == set()
    assert ping(a.container, IP4["b"], PAYLOAD4)


@pytest.mark.parametrize("change", [{"vni": VNI + 1}, {"local": "192.0.2.11"}, {"port": 8472}])
def test_vxlan_with_other_identity_is_recreated(host, change):
    spec = VxlanSpec(**{"name": VXLAN, "vni": VNI, "local": VTEP["a"], "bridge": BRIDGE, "mtu": MTU, **change})
    index = host.links.get(VXLAN).index
    assert host.links.ensure_vxlan(spec) is True
    assert host.links.get(VXLAN).index != index
    data = vxlan_data(host.netns, VXLAN)
    assert (data["id"], data["local"], data["port"]) == (spec.vni, spec.local, spec.port)
    assert host.links.ensure_vxlan(spec) is False


def test_vxlan_that_learns_or_floods_is_recreated(host):
    ip("-n", host.netns, "link", "del", VXLAN)
    ip("-n", host.netns, "link", "add", VXLAN, "type", "vxlan", "id", str(VNI), "local", VTEP["a"],
       "dstport", "4789", "group", "239.1.1.1", "dev", "ul0")
    spec = VxlanSpec(name=VXLAN, vni=VNI, local=VTEP["a"], bridge=BRIDGE, mtu=MTU)
    assert host.links.ensure_vxlan(spec) is True
    data = vxlan_data(host.netns, VXLAN)
    assert not data["learning"] and data["proxy"] and "group" not in data


def test_non_vxlan_with_our_name_is_replaced(host):
    ip("-n", host.netns, "link", "del", VXLAN)
    ip("-n", host.netns, "link", "add", VXLAN, "type", "bridge")
    spec = VxlanSpec(name=VXLAN, vni=VNI, local=VTEP["a"], bridge=BRIDGE, mtu=MTU)
    assert host.links.ensure_vxlan(spec) is True
    assert host.links.get(VXLAN).kind == "vxlan"


def test_vxlan_errors_name_the_object(host):
    with pytest.raises(KernelError, match="bridge 'pnbr-missing' does not exist"):
        host.links.ensure_vxlan(VxlanSpec(name="pnvx-2", vni=7, local=VTEP["a"], bridge="pnbr-missing", mtu=MTU))
    assert host.links.get("pnvx-2") is None
    with pytest.raises(KernelError, match=f"'pnvx-2'.*VNI {VNI}"):  # same VNI, address and port as pnvx-ov
        host.links.ensure_vxlan(VxlanSpec(name="pnvx-2", vni=VNI, local=VTEP["a"], bridge=BRIDGE, mtu=MTU))


# -- the underlay ------------------------------------------------------------------------------------------------
def test_underlay_mtu_and_default_source(host):
    links, netns = host.links, host.netns
    ip("-n", netns, "link", "set", "ul0", "mtu", "1480")
    assert links.underlay_mtu(VTEP["a"]) == 1480
    with pytest.raises(KernelError, match="203.0.113.9"):
        links.underlay_mtu("203.0.113.9")
    assert links.default_source_address() == ""
    ip("-n", netns, "route", "add", "default", "via", VTEP["b"])
    assert links.default_source_address() == VTEP["a"]
    ip("-n", netns, "addr", "add", "198.51.100.1/32", "dev", "ul0")
    ip("-n", netns, "route", "replace", "default", "via", VTEP["b"], "src", "198.51.100.1")
    assert links.default_source_address() == "198.51.100.1"
    ip("-n", netns, "route", "add", "default", "via", "192.0.2.3", "metric", "10")  # a worse one is ignored
    assert links.default_source_address() == "198.51.100.1"
