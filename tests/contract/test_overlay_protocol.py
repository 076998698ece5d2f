"""Overlay networks through the real Flask app: two "hosts" (own local store, own fake kernel) share
one cluster store, as two pynets share etcd.  The control plane's watch and the reconciler are driven
by hand (``sync()``: a fresh listing, then one reconciler pass), so every step is deterministic; the
threads and real etcd are proven in tests/e2e/test_overlay*.py."""

from __future__ import annotations

import pytest

from pynet.cluster.control import EtcdControlPlane
from pynet.cluster.models import REMOVING
from pynet.driver import names
from pynet.driver.overlay.networks import OverlayNetworks
from pynet.driver.overlay.reconciler import Reconciler
from pynet.driver.service import NetworkService
from pynet.ipam.service import IpamService
from pynet.plugin.app import Services, create_app
from pynet.store import keys
from pynet.store.memory import MemoryStore
from tests.contract.conftest import post
from tests.contract.test_protocol import create_network, start_endpoint
from tests.fakes import FakeFirewall, FakeLinks

NA = "a0a0a0a0a0a0" + "0" * 52
NB = "b0b0b0b0b0b0" + "0" * 52
EA = "ea" * 32
EB = "eb" * 32
OVERLAY = {"pynet.mode": "overlay", "pynet.overlay": "demo"}
HA, HB = "a1a1a1a1a1a1", "b2b2b2b2b2b2"  # host ids


class Host:
    def __init__(self, shared: MemoryStore, host_id: str, vtep: str, links: FakeLinks | None = None,
                 local: MemoryStore | None = None):
        self.links = links or FakeLinks()
        self.links.underlay = {vtep: 1500}
        self.control = EtcdControlPlane(shared, host_id, vtep, lease_ttl=10)
        self.reconciler = Reconciler()
        overlays = OverlayNetworks(self.control, self.reconciler, self.links, vtep, join_wait=0)
        self.network = NetworkService(local or MemoryStore(), self.links, FakeFirewall(), port_probe=lambda *a: True,
                                      set_sysctl=lambda *a: True, overlays=overlays)
        services = Services(network=self.network, ipam=IpamService(shared, host_id=host_id))
        self.client = create_app(services).test_client()

    def sync(self) -> None:
        """What the watch and the reconciler threads do: a fresh view, then the tables made to match."""
        self.control.load()
        self.reconciler.pass_once()


def make_host(shared: MemoryStore, host_id: str, vtep: str, **kw) -> Host:
    return Host(shared, host_id, vtep, **kw)


@pytest.fixture
def shared():
    return MemoryStore()


@pytest.fixture
def a(shared):
    return make_host(shared, HA, "192.0.2.1")


@pytest.fixture
def b(shared):
    return make_host(shared, HB, "192.0.2.2")


def test_overlay_spans_hosts_with_one_vni_gateway_and_tunnel_tables(shared, a, b):
    status, body, pool = create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)
    assert status == 200, body
    record = a.control.registry.get("demo")
    vx = a.links.links[names.vxlan_name(NA)]
    assert vx == {"kind": "vxlan", "mtu": 1450, "master": names.bridge_name(NA), "vni": record.vni,
                  "local": "192.0.2.1"}
    bridge = a.links.links[names.bridge_name(NA)]
    assert bridge["mac"] == names.overlay_gateway_mac("demo") and bridge["addresses"] == {"10.10.0.1/24"}
    assert bridge["mtu"] == 1450
    status, _, addr_a = start_endpoint(a.client, pool["PoolID"], eid=EA, nid=NA)
    assert status == 200
    assert shared.get(keys.advert("demo", HA, EA)).value["ips"] == [addr_a.split("/")[0]]

    status, body, pool_b = create_network(b.client, nid=NB, subnet="10.10.0.0/24", generic=OVERLAY)
    assert status == 200, body
    assert pool_b["PoolID"] == pool["PoolID"]
    assert b.links.links[names.bridge_name(NB)]["addresses"] == {"10.10.0.1/24"}  # the same gateway
    assert b.links.links[names.bridge_name(NB)]["mac"] == bridge["mac"]
    assert b.links.links[names.vxlan_name(NB)]["vni"] == record.vni
    status, _, addr_b = start_endpoint(b.client, pool["PoolID"], eid=EB, nid=NB)
    assert status == 200 and addr_b != addr_a

    a.sync()
    b.sync()
    mac_a, mac_b = names.endpoint_mac(addr_a, EA), names.endpoint_mac(addr_b, EB)
    assert a.links.remotes(names.vxlan_name(NA)) == {mac_b: ("192.0.2.2", frozenset({addr_b.split("/")[0]}))}
    assert b.links.remotes(names.vxlan_name(NB)) == {mac_a: ("192.0.2.1", frozenset({addr_a.split("/")[0]}))}
    assert {host for (name, host) in a.control.view.members if name == "demo"} == {HA, HB}

    # The endpoint goes: its advert goes, and B's table follows on the next event/resync.
    assert post(a.client, "NetworkDriver.DeleteEndpoint", {"NetworkID": NA, "EndpointID": EA}) == (200, {})
    assert shared.get(keys.advert("demo", HA, EA)) is None
    b.sync()
    assert b.links.remotes(names.vxlan_name(NB)) == {}

    # `docker network rm` on A: A leaves, the overlay is marked for removal everywhere.
    assert post(a.client, "NetworkDriver.DeleteNetwork", {"NetworkID": NA}) == (200, {})
    assert names.vxlan_name(NA) not in a.links.links
    assert a.control.registry.get("demo").state == REMOVING
    assert post(b.client, "NetworkDriver.DeleteEndpoint", {"NetworkID": NB, "EndpointID": EB}) == (200, {})
    assert post(b.client, "NetworkDriver.DeleteNetwork", {"NetworkID": NB}) == (200, {})
    assert a.control.registry.get("demo") is None and shared.list(keys.cluster_prefix() + "vnis/") == []


def test_overlay_refusals_name_the_problem(a):
    assert create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)[0] == 200
    status, body, _ = create_network(a.client, nid=NB, subnet="10.20.0.0/24",
                                     generic={"pynet.mode": "overlay", "pynet.overlay": "demo2", "pynet.vni": "0"})
    assert status == 400 and "pynet.vni" in body["Err"]
    status, body = post(a.client, "NetworkDriver.CreateNetwork", {
        "NetworkID": NB, "Options": {"com.docker.network.generic": OVERLAY},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.30.0.0/24", "Gateway": "10.30.0.1/24"}],
        "IPv6Data": []})
    assert status == 400 and "--ipam-driver pynet" in body["Err"]
    status, body, _ = create_network(a.client, nid=NB, subnet="10.40.0.0/24",
                                     generic={**OVERLAY, "pynet.overlay": "demo3",
                                              "com.docker.network.driver.mtu": "1500"})
    assert status == 400 and "at most 1450" in body["Err"]
    status, body, _ = create_network(a.client, nid=NB, subnet="10.50.0.0/24", generic=OVERLAY)
    assert status == 409 and "overlay 'demo' already has network a0a0a0a0a0a0 on this host" in body["Err"]


def test_a_second_copy_on_one_host_and_a_different_subnet_are_conflicts(shared, a, b):
    assert create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)[0] == 200
    status, body, _ = create_network(b.client, nid=NB, subnet="10.11.0.0/24", generic=OVERLAY)
    assert status == 409 and "overlay 'demo' already exists with subnet(s) 10.10.0.0/24" in body["Err"]
    assert names.vxlan_name(NB) not in b.links.links and b.network.repo.networks() == []


def test_etcd_failure_during_create_endpoint_rolls_back(a, shared, monkeypatch):
    from pynet.errors import Unavailable

    _, _, pool = create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)
    monkeypatch.setattr(a.control.registry, "advertise",
                        lambda *args: (_ for _ in ()).throw(Unavailable("etcd unreachable at http://x:2379")))
    status, body, _ = start_endpoint(a.client, pool["PoolID"], eid=EA, nid=NA)
    assert status == 503 and "etcd unreachable" in body["Err"]
    assert names.host_veth(EA) not in a.links.links and a.network.repo.endpoints() == []


def test_replay_before_the_first_listing_keeps_the_tunnel_tables(a, b):
    """pynet restarting while etcd is down must not cut running containers off."""
    _, _, pool = create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)
    create_network(b.client, nid=NB, subnet="10.10.0.0/24", generic=OVERLAY)
    start_endpoint(b.client, pool["PoolID"], eid=EB, nid=NB)
    a.sync()
    before = a.links.remotes(names.vxlan_name(NA))
    assert len(before) == 1
    restarted = make_host(a.control.store, HA, "192.0.2.1", links=a.links, local=a.network.repo._store)
    from pynet.driver.reconcile import reconcile

    reconcile(restarted.network)  # a new process: empty view, etcd not listed yet
    restarted.reconciler.pass_once()
    assert a.links.remotes(names.vxlan_name(NA)) == before


def test_join_of_an_internal_overlay_routes_to_the_cluster_resolver(shared):
    """An --internal overlay has no default route; Join hands a static route to the resolver's address
    through the gateway, and only there (a routed overlay reaches it through its default route)."""
    host = make_host(shared, HA, "192.0.2.1")
    host.network.overlays.dns_address = "169.254.53.53"
    status, body, pool = create_network(host.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY,
                                        **{"com.docker.network.internal": True})
    assert status == 200, body
    assert start_endpoint(host.client, pool["PoolID"], eid=EA, nid=NA)[0] == 200
    join = {"NetworkID": NA, "EndpointID": EA, "SandboxKey": "/var/run/docker/netns/x", "Options": {}}
    status, body = post(host.client, "NetworkDriver.Join", join)
    assert status == 200 and "Gateway" not in body, body
    assert body["StaticRoutes"] == [{"Destination": "169.254.53.53/32", "RouteType": 0, "NextHop": "10.10.0.1"}]

    routed = make_host(MemoryStore(), HB, "192.0.2.2")
    routed.network.overlays.dns_address = "169.254.53.53"
    status, body, pool = create_network(routed.client, nid=NB, subnet="10.30.0.0/24", generic=OVERLAY)
    assert start_endpoint(routed.client, pool["PoolID"], eid=EB, nid=NB)[0] == 200
    status, body = post(routed.client, "NetworkDriver.Join", {**join, "NetworkID": NB, "EndpointID": EB})
    assert status == 200 and body["Gateway"] == "10.30.0.1" and not body.get("StaticRoutes"), body


def test_collecting_a_copy_dockerd_lost_keeps_the_overlay_in_the_cluster(shared, a, b):
    """The orphan collector (driver/gc.py) removes only this host's copy: dropping the membership, never
    marking the overlay for removal, which would tear down every other host's copy too."""
    assert create_network(a.client, nid=NA, subnet="10.10.0.0/24", generic=OVERLAY)[0] == 200
    assert create_network(b.client, nid=NB, subnet="10.10.0.0/24", generic=OVERLAY)[0] == 200
    a.network.delete_network(NA, leave_cluster=False)
    assert names.vxlan_name(NA) not in a.links.links
    record = a.control.registry.get("demo")
    assert record is not None and record.state != REMOVING
    assert shared.get(keys.member("demo", HA)) is None and shared.get(keys.member("demo", HB)) is not None
