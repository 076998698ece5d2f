"""pynet.mode=macvlan (issue 16): option parsing, endpoint checks, the service's create/delete with fake
links (VLAN ownership and its last user, rollback), and the replicated Docker network body."""

from __future__ import annotations

import pytest

from pynet.cluster.docker_network import DockerNetwork
from pynet.cluster.records import InvalidRecord
from pynet.driver import macvlan, names, options
from pynet.driver.kernel.links import KernelError
from pynet.driver.models import IPAMData
from pynet.driver.service import NetworkService
from pynet.errors import BadRequest, Conflict
from pynet.store.memory import MemoryStore
from tests.fakes import FakeFirewall, FakeLinks

NET1, NET2 = "1" * 64, "2" * 64
EP1, EP2 = "a" * 64, "b" * 64
POOL = [IPAMData(pool="192.0.2.0/24", gateway="192.0.2.10/24")]


def generic(**kw) -> dict:
    return {options.GENERIC: {"pynet.mode": "macvlan", **{k.replace("_", "."): v for k, v in kw.items()}}}


def parse(opts: dict, multi_host: bool = False):
    return options.parse_network_options(NET1, opts, multi_host=multi_host)


# -- options --------------------------------------------------------------------------------------------
def test_parent_is_required_unless_internal():
    with pytest.raises(BadRequest, match="needs -o parent=IFACE"):
        parse(generic())
    config = parse({**generic(), "com.docker.network.internal": True})
    assert config.mode == "macvlan" and config.internal and config.parent == "" and config.bridge == ""


def test_internal_with_a_parent_is_refused_by_name():
    with pytest.raises(BadRequest, match="option parent='eth0': an --internal macvlan network has no parent"):
        parse({**generic(parent="eth0"), "com.docker.network.internal": True})


@pytest.mark.parametrize("key", ["pynet.bridge_name", "com.docker.network.bridge.enable_ip_masquerade",
                                 "com.docker.network.bridge.enable_icc", "pynet.vni",
                                 "com.docker.network.bridge.host_binding_ipv4"])
def test_bridge_options_are_refused_by_name(key):
    opts = generic(parent="eth0")
    opts[options.GENERIC][key] = "1"
    with pytest.raises(BadRequest, match=f"option {key} does not apply to pynet.mode=macvlan"):
        parse(opts)


@pytest.mark.parametrize("parent, needle", [
    ("eth0.4095", "VLAN id 4095 is not in 1..4094"),
    ("eth0.0", "VLAN id 0"),
    ("a-very-long-name0", "not a valid interface name"),
    ("eth 0", "not a valid interface name"),
    ("eth0/1", "not a valid interface name"),
])
def test_bad_parents_are_refused(parent, needle):
    with pytest.raises(BadRequest, match=needle):
        parse(generic(parent=parent))


def test_parent_only_applies_to_macvlan():
    with pytest.raises(BadRequest, match="option parent only applies to pynet.mode=macvlan"):
        parse({options.GENERIC: {"parent": "eth0"}})


def test_cluster_wide_needs_a_multi_host_pynet_and_a_good_name():
    with pytest.raises(BadRequest, match="needs a multi-host pynet"):
        parse(generic(parent="eth0", pynet_overlay="lan"))
    with pytest.raises(BadRequest, match="invalid option pynet.overlay '-x'"):
        parse(generic(parent="eth0", pynet_overlay="-x"), multi_host=True)
    with pytest.raises(BadRequest, match="invalid option pynet.overlay"):  # a trailing newline, too
        parse(generic(parent="eth0", pynet_overlay="lan\n"), multi_host=True)
    assert parse(generic(parent="eth0.5", pynet_overlay="lan"), multi_host=True).overlay == "lan"


@pytest.mark.parametrize("parent, message", [
    ("eth0.05", "without leading zeros"),
    ("lo", "loopback or one of pynet's own"),
    ("pnm2f234f730000", "loopback or one of pynet's own"),
    ("pnh2f234f730000", "loopback or one of pynet's own"),
])
def test_parents_that_cannot_work_are_refused_by_name(parent, message):
    with pytest.raises(BadRequest, match=message):
        macvlan.check_parent(parent)
    macvlan.check_parent("eth0.5")


def test_split_vlan():
    assert macvlan.split_vlan("eth0.5") == ("eth0", 5)
    assert macvlan.split_vlan("eth0") is None
    assert macvlan.split_vlan("br.lan.12") == ("br.lan", 12)


def test_published_ports_are_refused_exposed_ports_are_not():
    macvlan.check_endpoint(options.EndpointOptions(exposed_ports=[{"Proto": 6, "Port": 80}]))
    with pytest.raises(BadRequest, match="published ports .* do not apply to pynet.mode=macvlan"):
        macvlan.check_endpoint(options.EndpointOptions(port_bindings=[{"Proto": 6, "Port": 80, "HostPort": 8080}]))


# -- the service with fake links --------------------------------------------------------------------------
class MacvlanLinks(FakeLinks):
    """FakeLinks plus the macvlan operations, with a marker for pynet-made VLAN sub-interfaces."""

    def __init__(self) -> None:
        super().__init__()
        self.links["eth0"] = {"kind": "veth", "mtu": 1500}
        self.routes: dict[str, dict] = {}
        self.vlan_support = True

    def link_mtu(self, name):
        link = self.links.get(name)
        return link["mtu"] if link else None

    def ipv4_addresses(self, name):
        return sorted(self.links.get(name, {}).get("addresses", ()))

    def ensure_macvlan(self, spec) -> bool:
        if spec.parent not in self.links:
            raise KernelError(f"parent {spec.parent!r} does not exist")
        if spec.name in self.fail_on:
            raise KernelError(f"could not create macvlan {spec.name!r}: injected failure")
        created = spec.name not in self.links
        self.links[spec.name] = {"kind": "macvlan", "mtu": spec.mtu or self.links[spec.parent]["mtu"],
                                 "parent": spec.parent, "mac": spec.mac}
        return created

    def ensure_vlan(self, name, lower, vid) -> bool:
        if name in self.links:
            return False
        if not self.vlan_support:
            raise KernelError(f"could not create VLAN sub-interface {name!r}: this kernel has no 802.1Q")
        self.links[name] = {"kind": "vlan", "mtu": self.links[lower]["mtu"], "ours": True, "vid": vid}
        return True

    def delete_vlan(self, name) -> bool:
        if self.links.get(name, {}).get("ours"):
            return self.delete(name)
        return False

    def ensure_isolated(self, name, peer, mtu) -> bool:
        created = name not in self.links
        self.links[name] = {"kind": "veth", "mtu": mtu}
        self.links[peer] = {"kind": "veth", "mtu": mtu}
        return created

    def ensure_host_route(self, route) -> None:
        if route.dev not in self.links:
            raise KernelError(f"{route.dev!r} does not exist")
        self.routes[route.ip] = {"dev": route.dev, "mac": route.mac, "src": route.src}

    def delete_host_route(self, dev, ip) -> None:
        if self.routes.get(ip, {}).get("dev") == dev:
            del self.routes[ip]

    def delete(self, name) -> bool:
        for ip in [ip for ip, r in self.routes.items() if r["dev"] == name]:
            del self.routes[ip]
        return super().delete(name)


@pytest.fixture
def world():
    links = MacvlanLinks()
    return NetworkService(MemoryStore(), links, FakeFirewall()), links


def create(svc, net_id, parent="eth0", pool=POOL, **kw):
    svc.create_network(net_id, generic(parent=parent, **kw), list(pool), [])


def test_a_port_map_in_program_is_refused_too_and_nothing_is_claimed(world):
    """Docker 29 may send the port map only with ProgramExternalConnectivity: refused there as well."""
    svc, links = world
    create(svc, NET1)
    svc.create_endpoint(NET1, EP1, {"address": "192.0.2.130/24"}, {})
    portmap = {"com.docker.network.portmap": [
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 18080, "HostPortEnd": 18080}]}
    with pytest.raises(BadRequest, match="macvlan network: ports cannot be published"):
        svc.program_external(NET1, EP1, portmap)
    assert not svc.endpoint(NET1, EP1).published


def test_network_and_endpoint_lifecycle(world):
    svc, links = world
    links.links["eth0"]["addresses"] = {"192.0.2.1/24"}
    create(svc, NET1)
    pnm = names.macvlan_host(NET1)
    assert links.links[pnm]["parent"] == "eth0" and names.bridge_name(NET1) not in links.links
    mac = svc.create_endpoint(NET1, EP1, {"address": "192.0.2.130/24"}, {})
    assert mac == "02:42:c0:00:02:82"
    assert links.links[names.container_veth(EP1)] == {"kind": "macvlan", "mtu": 1500, "parent": "eth0", "mac": mac}
    assert links.routes["192.0.2.130"] == {"dev": pnm, "mac": mac, "src": "192.0.2.1"}
    info = svc.join(NET1, EP1, "/var/run/docker/netns/x", {})
    assert (info.src_name, info.gateway) == (names.container_veth(EP1), "192.0.2.10")
    svc.delete_endpoint(NET1, EP1)
    assert names.container_veth(EP1) not in links.links and "192.0.2.130" not in links.routes
    svc.delete_network(NET1)
    assert set(links.links) == {"eth0"}


def test_host_source_outside_the_subnet_is_given_to_the_container_on_link(world):
    svc, links = world
    links.links["eth0"]["addresses"] = {"192.0.2.1/24"}
    create(svc, NET1, pool=[IPAMData("10.5.0.0/24", "10.5.0.1/24")])
    create(svc, NET2, pool=[IPAMData("192.0.2.0/24", "192.0.2.10/24")])
    svc.create_endpoint(NET1, EP1, {"address": "10.5.0.2/24"}, {})
    svc.create_endpoint(NET2, EP2, {"address": "192.0.2.130/24"}, {})
    assert svc.join(NET1, EP1, "/x", {}).connected == ("192.0.2.1/32",)
    assert svc.join(NET2, EP2, "/x", {}).connected == ()  # on-link already


def test_macvlan_networks_never_reach_the_firewall(world):
    """No bridge: the firewall's per-bridge rules would name an interface "" (-i  -j DROP)."""
    svc, _ = world
    svc.create_network("3" * 64, {}, [IPAMData("10.9.0.0/24", "10.9.0.1/24")], [])  # a bridge network
    create(svc, NET1)
    assert svc.firewall.synced and svc.firewall.current == ["3" * 64]


def test_vlan_sub_interface_goes_with_the_last_network_that_used_it(world):
    svc, links = world
    create(svc, NET1, parent="eth0.5", pool=[IPAMData("10.1.0.0/24")])
    create(svc, NET2, parent="eth0.5", pool=[IPAMData("10.2.0.0/24")])
    assert links.links["eth0.5"]["vid"] == 5
    svc.delete_network(NET1)
    assert "eth0.5" in links.links, "removed while network 2 still uses it"
    svc.delete_network(NET2)
    assert "eth0.5" not in links.links


def test_a_users_vlan_sub_interface_is_never_deleted(world):
    svc, links = world
    links.links["eth0.7"] = {"kind": "vlan", "mtu": 1500}  # made by the user, not marked
    create(svc, NET1, parent="eth0.7")
    svc.delete_network(NET1)
    assert "eth0.7" in links.links


def test_missing_vlan_support_rolls_back_and_says_why(world):
    svc, links = world
    links.vlan_support = False
    with pytest.raises(Exception, match="802.1Q.*rolled back"):
        create(svc, NET1, parent="eth0.5")
    assert set(links.links) == {"eth0"} and svc.repo.networks() == []


def test_missing_parent_and_too_large_mtu_are_refused(world):
    svc, _ = world
    with pytest.raises(BadRequest, match="option parent='eth9': no interface 'eth9' on this host"):
        create(svc, NET1, parent="eth9")
    with pytest.raises(BadRequest, match="parent 'eth0' carries at most 1500"):
        create(svc, NET1, com_docker_network_driver_mtu="9000")


def test_failed_endpoint_create_rolls_back(world):
    svc, links = world
    create(svc, NET1)
    links.fail_on.add(names.container_veth(EP1))
    with pytest.raises(Exception, match="rolled back"):
        svc.create_endpoint(NET1, EP1, {"address": "192.0.2.130/24"}, {})
    assert svc.repo.endpoints() == [] and links.routes == {}


def test_two_macvlan_networks_share_a_parent(world):
    svc, links = world
    create(svc, NET1, pool=[IPAMData("10.1.0.0/24")])
    create(svc, NET2, pool=[IPAMData("10.2.0.0/24")])  # no bridge: the bridge-name check must not fire
    assert names.macvlan_host(NET1) in links.links and names.macvlan_host(NET2) in links.links


def test_internal_network_has_an_isolated_parent_and_no_host_route(world):
    svc, links = world
    svc.create_network(NET1, {**generic(), "com.docker.network.internal": True}, [IPAMData("10.3.0.0/24")], [])
    assert names.isolated_parent(NET1) in links.links and names.macvlan_host(NET1) not in links.links
    svc.create_endpoint(NET1, EP1, {"address": "10.3.0.2/24"}, {})
    assert links.links[names.container_veth(EP1)]["parent"] == names.isolated_parent(NET1)
    assert links.routes == {}
    assert svc.join(NET1, EP1, "/x", {}).gateway == ""
    svc.delete_network(NET1)
    assert set(links.links) == {"eth0"}


def test_replay_restores_the_host_side_and_the_route_of_a_joined_endpoint(world):
    from pynet.driver.reconcile import reconcile

    svc, links = world
    create(svc, NET1)
    svc.create_endpoint(NET1, EP1, {"address": "192.0.2.130/24"}, {})
    svc.join(NET1, EP1, "/x", {})
    del links.links[names.container_veth(EP1)]  # dockerd moved it into the container
    links.delete(names.macvlan_host(NET1))      # lost (e.g. deleted by hand) while pynet was down
    reconcile(svc)
    assert names.macvlan_host(NET1) in links.links and links.routes["192.0.2.130"]["dev"] == names.macvlan_host(NET1)
    assert names.container_veth(EP1) not in links.links  # the container has it: not recreated here


def test_garbage_collection_knows_the_macvlan_names(world):
    assert names.owner_of(names.macvlan_host(NET1)) == ("network", NET1[:12])
    assert names.owner_of(names.isolated_parent(NET1)) == ("network", NET1[:12])
    assert names.owner_of(names.isolated_peer(NET1)) == ("network", NET1[:12])


def test_one_copy_of_a_cluster_wide_name_per_host():
    svc = NetworkService(MemoryStore(), MacvlanLinks(), FakeFirewall())
    first = options.parse_network_options(NET1, generic(parent="eth0", pynet_overlay="lan"), multi_host=True)
    from pynet.driver.models import Network

    svc.repo.add_network(Network(NET1, first, (IPAMData("10.1.0.0/24", address_space="pynet-local"),)))
    second = Network(NET2, first, (IPAMData("10.1.0.0/24", address_space="pynet-local"),))
    with pytest.raises(Conflict, match="already has network 111111111111"):
        svc.macvlan.prepare(second, svc.repo.networks())
    with pytest.raises(BadRequest, match="needs --ipam-driver pynet"):
        svc.macvlan.prepare(Network(NET2, first, (IPAMData("10.1.0.0/24", address_space="LocalDefault"),)), [])


# -- the Docker network another host creates -------------------------------------------------------------
INSPECTED = {
    "Name": "lan", "Id": "n" * 64, "Driver": "pynet", "EnableIPv6": False, "Internal": False,
    "IPAM": {"Driver": "pynet", "Options": {},
             "Config": [{"Subnet": "192.0.2.0/24", "IPRange": "192.0.2.128/25", "Gateway": "192.0.2.10"}]},
    "Options": {"pynet.mode": "macvlan", "pynet.overlay": "lan", "parent": "ul0"},
    "Labels": {}, "Containers": {},
}


def test_a_cluster_wide_macvlan_network_is_replicated_as_macvlan_with_its_parent():
    body = DockerNetwork.describe(INSPECTED, "lan").request("lan", "a1a1a1a1a1a1")
    assert body["Options"] == {"pynet.mode": "macvlan", "parent": "ul0", "pynet.overlay": "lan"}
    assert body["IPAM"]["Config"] == [{"Subnet": "192.0.2.0/24", "IPRange": "192.0.2.128/25", "Gateway": "192.0.2.10"}]


def test_an_overlay_is_described_without_a_mode_as_before():
    """A pynet from before macvlan refuses any option it does not replicate: an overlay's record must not
    start carrying pynet.mode, or those hosts would stop creating new overlays during a rolling upgrade."""
    inspected = {**INSPECTED, "Options": {"pynet.mode": "overlay", "pynet.overlay": "lan"}}
    assert DockerNetwork.describe(inspected, "lan").options == ()


def test_an_overlay_description_without_a_mode_stays_an_overlay():
    d = DockerNetwork.from_dict({"name": "demo", "driver": "pynet", "ipam_driver": "pynet",
                                 "pools": [{"subnet": "10.10.0.0/24"}]})
    assert d.request("demo", "a1a1a1a1a1a1")["Options"]["pynet.mode"] == "overlay"


@pytest.mark.parametrize("mode", ["bridge", "ipvlan", "macvlan;rm"])
def test_a_record_cannot_choose_another_mode(mode):
    with pytest.raises(InvalidRecord, match="pynet.mode"):
        DockerNetwork.from_dict({"name": "lan", "driver": "pynet", "ipam_driver": "pynet",
                                 "pools": [{"subnet": "10.10.0.0/24"}], "options": {"pynet.mode": mode}})


@pytest.mark.parametrize("parent", ["ul0; rm -rf /", "ul0 up", "$(id)", "x" * 65])
def test_a_record_cannot_smuggle_a_parent(parent):
    with pytest.raises(InvalidRecord, match="option parent"):
        DockerNetwork.from_dict({"name": "lan", "driver": "pynet", "ipam_driver": "pynet",
                                 "pools": [{"subnet": "10.10.0.0/24"}],
                                 "options": {"pynet.mode": "macvlan", "parent": parent}})
