"""The pure parts of `pynet status / hosts / hosts rm / doctor` (issue 14): the eviction on a MemoryStore
with two control planes (cluster/hosts.py), the IPAM's forget_host, the probe's parsing, the socket
lookup, the daemon.json check and the renderers.  The real thing runs in tests/e2e/test_ops_cli.py."""

from __future__ import annotations

import json
import struct

import pytest

from pynet import vxlan_probe
from pynet.cluster import records
from pynet.cluster.control import EtcdControlPlane
from pynet.cluster.hosts import ClusterHosts
from pynet.cluster.models import Host
from pynet.cluster.records import InvalidRecord
from pynet.driver.overlay.port import LocalEndpoint
from pynet.errors import BadRequest, Conflict
from pynet.ipam.service import IpamService
from pynet.plugin import ops_client, ops_doctor, ops_hosts, ops_status
from pynet.store import keys
from pynet.store.memory import MemoryStore

H1, H2 = "111111111111", "222222222222"
NET = "ab" * 32
EID = "cd" * 32
MAC = "02:00:00:00:00:02"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def follow(control: EtcdControlPlane, store: MemoryStore) -> None:
    for event in store.watch(keys.cluster_prefix(), control.view.revision + 1, timeout=0.01):
        control.apply(event)


@pytest.fixture
def pair():
    """A (H1) evicts B (H2): B joined overlay demo and advertised one container with 10.10.0.2."""
    clock = Clock()
    store = MemoryStore(clock=clock)
    a = EtcdControlPlane(store, H1, "192.0.2.1", lease_ttl=5, grace_period=30, clock=clock)
    b = EtcdControlPlane(store, H2, "192.0.2.2", lease_ttl=5, grace_period=30, clock=clock)
    b.join("demo", NET)
    b.advertise(LocalEndpoint("demo", EID, MAC, ("10.10.0.2",)))
    a.load()
    follow(a, store)
    return clock, store, a, b


def test_a_live_host_is_refused_without_force_and_nothing_is_removed(pair):
    _, store, a, _ = pair
    with pytest.raises(Conflict, match="is live.*--force"):
        ClusterHosts(a).evict(H2)
    assert store.get(keys.member("demo", H2)) is not None
    assert store.list(keys.host_adverts_prefix("demo", H2))


def test_a_dead_host_loses_memberships_and_adverts_and_names_its_addresses(pair):
    clock, store, a, _ = pair
    clock.now += 6  # B's lease (5 s) ends: etcd drops its registration and adverts, not its membership
    a.keepalive()
    follow(a, store)
    assert store.get(keys.host(H2)) is None and store.get(keys.member("demo", H2)) is not None
    assert {h["ID"]: h["State"] for h in ClusterHosts(a).hosts()}[H2] == "departing"
    report = ClusterHosts(a).evict(H2)
    assert report.memberships == ["demo"] and report.addresses == ["10.10.0.2"]  # from a's view, in its grace
    assert store.get(keys.member("demo", H2)) is None


def test_force_removes_a_registration_and_its_adverts_too(pair):
    _, store, a, _ = pair
    report = ClusterHosts(a).evict(H2, force=True)
    assert report.registration and report.adverts == 1 and report.addresses == ["10.10.0.2"]
    assert store.get(keys.host(H2)) is None and not store.list(keys.host_adverts_prefix("demo", H2))


@pytest.mark.parametrize("bad", ["", "1111", "../../x", "ABCDEFABCDEF", H1 + "\n", 12])
def test_a_malformed_host_id_is_refused_by_name(pair, bad):
    _, _, a, _ = pair
    with pytest.raises(BadRequest, match="not a pynet host id"):
        ClusterHosts(a).evict(bad)


def test_this_host_and_an_unknown_host_are_refused(pair):
    _, _, a, _ = pair
    with pytest.raises(Conflict, match="this host"):
        ClusterHosts(a).evict(H1)
    with pytest.raises(Conflict, match="not known"):
        ClusterHosts(a).evict("333333333333")


def test_ipam_forget_host_drops_holders_and_addresses_but_never_the_shared_gateway():
    store = MemoryStore()
    ipam_a = IpamService(store, host_id=H1)
    ipam_b = IpamService(store, host_id=H2)
    pool = ipam_a.request_pool("pynet-global", "10.10.0.0/24", "", {}, False).pool_id
    ipam_b.request_pool("pynet-global", "10.10.0.0/24", "", {}, False)
    gateway = ipam_a.request_address(pool, "", {"RequestAddressType": "com.docker.network.gateway"})
    mine = ipam_b.request_address(pool, "", {}).split("/")[0]
    freed = ipam_a.forget_host(H2, [mine, gateway.split("/")[0]])
    assert freed == {"Pools": ["pynet-global/10.10.0.0/24"], "Addresses": [mine]}
    held = store.get(keys.ipam_pools("pynet-global")).value["pools"]["10.10.0.0/24"]
    assert held["holders"] == [H1] and held["gateway"] == gateway.split("/")[0]
    assert store.get(keys.ipam_address("pynet-global", "10.10.0.0/24", mine)) is None


def test_a_host_record_carries_a_checked_version():
    assert records.host(H1, Host(H1, "192.0.2.1", version="0.4.0").to_dict()).version == "0.4.0"
    assert records.host(H1, {"id": H1, "vtep": "192.0.2.1"}).version == ""  # an older pynet's record
    with pytest.raises(InvalidRecord, match="host version"):
        records.host(H1, {"id": H1, "vtep": "192.0.2.1", "version": "1.0\n; rm -rf"})


# -- the probe's wire format ---------------------------------------------------------------------------
def ip_udp(dport: int, payload: bytes, sport: int = 40000) -> bytes:
    ip = bytes([0x45, 0]) + struct.pack("!H", 20 + 8 + len(payload)) + b"\0" * 16
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def test_a_probe_is_answered_from_4789_to_the_probers_port_with_its_nonce():
    nonce = bytes(range(16))
    reply = vxlan_probe.answer(ip_udp(4789, vxlan_probe.HEADER + vxlan_probe.PROBE + nonce + b"\0" * 1400))
    assert reply is not None
    sport, dport, length, _ = struct.unpack("!HHHH", reply[:8])
    assert (sport, dport, length) == (4789, 40000, len(reply)) and reply[8:] == vxlan_probe.ANSWER + nonce


@pytest.mark.parametrize("packet", [
    ip_udp(4789, b"\x08\0\0\0\0\0\x2a\0" + b"x" * 40),  # real VXLAN (I flag set): never answered
    ip_udp(4790, vxlan_probe.HEADER + vxlan_probe.PROBE + b"n" * 16),
    ip_udp(4789, vxlan_probe.HEADER + vxlan_probe.PROBE + b"short"),
    b"\x60" + b"\0" * 60,  # not IPv4
    b"",
])
def test_anything_but_a_probe_is_not_answered(packet):
    assert vxlan_probe.answer(packet) is None


def test_the_probe_refuses_a_non_ipv4_vtep():
    with pytest.raises(ValueError):
        vxlan_probe.probe("192.0.2.1", "2001:db8::1")


# -- the CLI's pieces ----------------------------------------------------------------------------------
def test_the_socket_is_the_given_one_then_legacy_then_the_one_managed_plugin(tmp_path, monkeypatch):
    monkeypatch.delenv("PYNET_SOCKET", raising=False)
    legacy = tmp_path / "pynet.sock"
    managed = tmp_path / "abc123" / "pynet.sock"
    pattern = str(tmp_path / "*" / "pynet.sock")
    assert ops_client.find_socket("/given", str(legacy), pattern) == "/given"
    assert ops_client.find_socket(None, str(legacy), pattern) == str(legacy)  # nothing: the usual place
    managed.parent.mkdir()
    managed.touch()
    assert ops_client.find_socket(None, str(legacy), pattern) == str(managed)
    (tmp_path / "def456").mkdir()
    (tmp_path / "def456" / "pynet.sock").touch()
    with pytest.raises(ops_client.CliError, match="several managed"):
        ops_client.find_socket(None, str(legacy), pattern)
    legacy.touch()
    assert ops_client.find_socket(None, str(legacy), pattern) == str(legacy)
    monkeypatch.setenv("PYNET_SOCKET", "/env")
    assert ops_client.find_socket(None, str(legacy), pattern) == "/env"


@pytest.mark.parametrize("content, ok", [
    ({"dns": ["169.254.53.53", "1.1.1.1"]}, True),
    ({"dns": ["1.1.1.1", "169.254.53.53"]}, False),
    ({}, False),
    ("not json", False),
    (None, False),  # no file
])
def test_daemon_json_must_name_the_resolver_first(tmp_path, content, ok):
    path = tmp_path / "daemon.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    check = ops_doctor.daemon_dns_check(str(path), "169.254.53.53")
    assert check["OK"] is ok and (ok or "169.254.53.53" in check["Fix"])


def test_renderers_show_every_host_and_the_failure_count():
    hosts = [{"ID": H1, "VTEP": "192.0.2.1", "Version": "0.4", "State": "this host", "Endpoints": 1,
              "Overlays": ["demo"], "LastSeen": 2.0, "GraceLeft": None},
             {"ID": H2, "VTEP": "192.0.2.2", "Version": "0.4", "State": "departing", "Endpoints": 1,
              "Overlays": ["demo"], "LastSeen": 9.0, "GraceLeft": 21.0}]
    text = ops_hosts.render(hosts)
    assert H1 in text and H2 in text and "21s grace left" in text
    out = ops_doctor.render([{"Name": "a", "OK": True, "Detail": "fine", "Fix": ""},
                             {"Name": "b", "OK": False, "Detail": "broken", "Fix": "mend it"}])
    assert "PASS  a: fine" in out and "FAIL  b: broken" in out and "fix: mend it" in out
    assert out.rstrip().endswith("1 passed, 1 failed")
    status = ops_status.render({"Host": {"ID": H1}, "Store": {"Kind": "etcd", "Reachable": False, "Error": "down"},
                                "Health": {"loops": {}}, "Networks": [], "Hosts": hosts})
    assert "UNREACHABLE: down" in status and H2 in status
