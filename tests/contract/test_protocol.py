"""Both protocols over HTTP exactly as dockerd speaks them (protocol.md §1-§6)."""

from __future__ import annotations

import pytest

from tests.contract.conftest import post

NID = "2f234f73" + "0" * 55 + "1"
EID = "2688ccdb" + "0" * 55 + "2"
EID2 = "3799ddec" + "0" * 55 + "3"


def create_network(client, nid=NID, subnet="192.168.0.0/16", gateway="", generic=None, **extra):
    status, pool = post(client, "IpamDriver.RequestPool",
                        {"AddressSpace": "pynet-local", "Pool": subnet, "SubPool": "", "Options": {}, "V6": False})
    assert status == 200, pool
    status, gw = post(client, "IpamDriver.RequestAddress",
                      {"PoolID": pool["PoolID"], "Address": gateway,
                       "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert status == 200, gw
    options = {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": generic or {}, **extra}
    status, body = post(client, "NetworkDriver.CreateNetwork",
                        {"NetworkID": nid, "Options": options,
                         "IPv4Data": [{"AddressSpace": "pynet-local", "Pool": pool["Pool"], "Gateway": gw["Address"]}],
                         "IPv6Data": []})
    return status, body, pool


def start_endpoint(client, pool_id, eid=EID, nid=NID, address=""):
    status, addr = post(client, "IpamDriver.RequestAddress", {"PoolID": pool_id, "Address": address, "Options": None})
    assert status == 200, addr
    status, ep = post(client, "NetworkDriver.CreateEndpoint",
                      {"NetworkID": nid, "EndpointID": eid,
                       "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""},
                       "Options": {"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": []}})
    return status, ep, addr["Address"]


def test_activate_and_capabilities(client):
    assert post(client, "Plugin.Activate") == (200, {"Implements": ["NetworkDriver", "IpamDriver"]})
    assert post(client, "NetworkDriver.GetCapabilities") == (
        200, {"Scope": "local", "ConnectivityScope": "local", "GwAllocChecker": True})
    status, caps = post(client, "IpamDriver.GetCapabilities")
    assert status == 200 and caps == {"RequiresMACAddress": False, "RequiresRequestReplay": False}
    status, spaces = post(client, "IpamDriver.GetDefaultAddressSpaces")
    assert spaces == {"LocalDefaultAddressSpace": "pynet-local", "GlobalDefaultAddressSpace": "pynet-global"}


def test_full_lifecycle_as_dockerd_sends_it(world, client):
    status, body, pool = create_network(client)
    assert (status, body) == (200, {})
    assert pool == {"PoolID": "pynet-local/192.168.0.0/16", "Pool": "192.168.0.0/16", "Data": {}}
    assert world.links.links[f"pn-{NID[:12]}"]["addresses"] == {"192.168.0.1/16"}
    assert world.sysctls == {f"net/ipv4/conf/pn-{NID[:12]}/route_localnet": "1"}  # v4 only: no v6 forwarding
    status, ep, address = start_endpoint(client, pool["PoolID"])
    assert status == 200 and address == "192.168.0.2/16"
    assert ep == {"Interface": {"MacAddress": "02:42:c0:a8:00:02"}}  # derived from the IP, like Docker
    status, join = post(client, "NetworkDriver.Join",
                        {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/var/run/docker/netns/x",
                         "Options": {}})
    assert status == 200
    assert join == {"InterfaceName": {"SrcName": f"pnc{EID[:12]}", "DstPrefix": "eth"},
                    "Gateway": "192.168.0.1", "StaticRoutes": []}
    assert post(client, "NetworkDriver.ProgramExternalConnectivity",
                {"NetworkID": NID, "EndpointID": EID, "Options": {"com.docker.network.portmap": []}}) == (200, {})
    status, info = post(client, "NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EID})
    assert status == 200 and "Value" in info
    for method in ("RevokeExternalConnectivity", "Leave", "DeleteEndpoint"):
        assert post(client, "NetworkDriver." + method, {"NetworkID": NID, "EndpointID": EID}) == (200, {})
    assert f"pnh{EID[:12]}" not in world.links.links
    assert post(client, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": "192.168.0.2"}) == (200, {})
    assert post(client, "IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": "192.168.0.1"}) == (200, {})
    assert post(client, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]}) == (200, {})
    assert post(client, "NetworkDriver.DeleteNetwork", {"NetworkID": NID}) == (200, {})
    assert world.links.links == {}
    assert world.firewall.current == []


def test_given_mac_is_never_echoed(client):
    _, _, pool = create_network(client)
    status, ep = post(client, "NetworkDriver.CreateEndpoint",
                      {"NetworkID": NID, "EndpointID": EID,
                       "Interface": {"Address": "192.168.0.9/16", "AddressIPv6": "", "MacAddress": "ca:fe:00:00:10:02"},
                       "Options": {"com.docker.network.endpoint.macaddress": "yv4AABAC"}})
    assert (status, ep) == (200, {})


def test_mac_from_options_is_used(world, client):
    create_network(client)
    status, ep = post(client, "NetworkDriver.CreateEndpoint",
                      {"NetworkID": NID, "EndpointID": EID, "Interface": {"Address": "192.168.0.9/16"},
                       "Options": {"com.docker.network.endpoint.macaddress": "yv4AABAC"}})
    assert ep == {"Interface": {"MacAddress": "ca:fe:00:00:10:02"}}


def test_repeated_creates_are_idempotent(world, client):
    status, _, pool = create_network(client)
    body = {"NetworkID": NID, "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "pynet-local", "Pool": "192.168.0.0/16", "Gateway": "192.168.0.1/16"}]}
    assert post(client, "NetworkDriver.CreateNetwork", body) == (200, {})
    ep_body = {"NetworkID": NID, "EndpointID": EID, "Interface": {"Address": "192.168.0.7/16"}, "Options": {}}
    first = post(client, "NetworkDriver.CreateEndpoint", ep_body)
    assert post(client, "NetworkDriver.CreateEndpoint", ep_body) == first
    for _ in range(2):
        assert post(client, "NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EID}) == (200, {})
        assert post(client, "NetworkDriver.DeleteNetwork", {"NetworkID": NID}) == (200, {})


@pytest.mark.parametrize("raw,needle", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"NetworkID": 5}', "NetworkID must be a string"),
    (b'{"Options": {}}', "NetworkID is required"),
    (b'{"NetworkID": "zz", "Options": {}}', "not a Docker ID"),
    (b'{"NetworkID": "' + NID.encode() + b'", "Options": "x"}', "Options must be an object"),
    (b'{"NetworkID": "' + NID.encode() + b'", "IPv4Data": [{"Pool": 3}]}', "IPv4Data[0].Pool must be a string"),
])
def test_bad_create_network_bodies_get_clear_errors(client, raw, needle):
    status, body = post(client, "NetworkDriver.CreateNetwork", raw=raw)
    assert status == 400
    assert needle in body["Err"] and body["Err"] == body["Error"]


def test_unknown_ids(client):
    create_network(client)
    status, body = post(client, "NetworkDriver.CreateEndpoint",
                        {"NetworkID": "f" * 64, "EndpointID": EID, "Interface": {}})
    assert status == 404 and "network ffffffffffff not found" in body["Err"]
    status, body = post(client, "NetworkDriver.Join", {"NetworkID": NID, "EndpointID": "e" * 64})
    assert status == 404 and "endpoint eeeeeeeeeeee not found" in body["Err"]
    # libnetwork reads 404 from these two as "not implemented" = success, so a real error is another 4xx.
    status, body = post(client, "NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": "e" * 64})
    assert status == 400 and "not found" in body["Err"]
    # Deletes of unknown things succeed: dockerd only logs their errors and may send them twice.
    assert post(client, "NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": "e" * 64}) == (200, {})
    assert post(client, "NetworkDriver.DeleteNetwork", {"NetworkID": "f" * 64}) == (200, {})
    status, body = post(client, "IpamDriver.RequestAddress", {"PoolID": "pynet-local/10.99.0.0/16", "Address": ""})
    assert status == 404 and body["Error"]


def test_unknown_path_is_404_with_err(client):
    status, body = post(client, "NetworkDriver.SomethingNew", {})
    assert status == 404 and "Err" in body


def test_empty_and_null_bodies(client):
    assert post(client, "NetworkDriver.GetCapabilities", raw=b"null")[0] == 200
    assert post(client, "IpamDriver.GetCapabilities", raw=b"")[0] == 200
    status, body = post(client, "IpamDriver.RequestPool", raw=b"null")
    assert status == 400 and "address space" in body["Error"]


def test_unknown_network_option_is_refused_and_nothing_is_left(world, client):
    status, body, _ = create_network(client, generic={"pynet.colour": "blue"})
    assert status == 400 and "unknown network option 'pynet.colour'" in body["Err"]
    assert world.links.links == {}


@pytest.mark.parametrize("generic,needle", [
    ({"com.docker.network.driver.mtu": "abc"}, "expected an integer"),
    ({"com.docker.network.driver.mtu": "10"}, "between 68 and 65535"),
    ({"pynet.mode": "mesh"}, "expected bridge, overlay or macvlan"),
    ({"pynet.mode": "overlay"}, "needs a multi-host pynet"),
    ({"pynet.vni": "5"}, "only applies to pynet.mode=overlay"),
    ({"pynet.bridge_name": "this-name-is-far-too-long"}, "not a valid interface name"),
    ({"com.docker.network.bridge.enable_icc": "maybe"}, "expected true or false"),
    ({"com.docker.network.bridge.host_binding_ipv4": "nope"}, "not an IPv4 address"),
])
def test_bad_option_values(client, generic, needle):
    status, body, _ = create_network(client, generic=generic)
    assert status == 400 and needle in body["Err"]


def test_failed_bridge_create_rolls_back(world, client):
    world.links.fail_on.add(f"pn-{NID[:12]}")
    status, body, _ = create_network(client)
    assert status == 500 and "injected failure" in body["Err"] and "rolled back" in body["Err"]
    assert world.services.network.repo.network(NID) is None


def test_failed_firewall_sync_rolls_back_the_network(world, client):
    """iptables-restore refusing the new rules: neither the record nor the bridge stays behind."""
    from pynet.driver.firewall import FirewallError

    def refuse(networks, endpoints=()):
        if any(n.id == NID for n in networks):
            raise FirewallError("iptables-restore failed: injected")
        world.firewall.synced.append(sorted(n.id for n in networks))

    world.firewall.sync = refuse
    status, body, _ = create_network(client)
    assert status == 500 and "iptables-restore failed: injected" in body["Err"] and "rolled back" in body["Err"]
    assert world.services.network.repo.network(NID) is None and f"pn-{NID[:12]}" not in world.links.links
    assert world.firewall.current == []  # and the rules were written again without it


def test_health_lists_loops_and_refused_records(world, client):
    world.services.health.failed("watch", "etcd unreachable at http://x:2379")
    world.services.health.rejected("endpoints", "/pynet/v1/cluster/endpoints/x/y/z", "advert MAC 42")
    status, body = post(client, "Pynet.Health")
    assert status == 200
    assert body["loops"]["watch"]["last_error"] == "etcd unreachable at http://x:2379"
    assert body["rejected"]["endpoints"]["count"] == 1


def test_failed_veth_create_rolls_back(world, client):
    _, _, pool = create_network(client)
    world.links.fail_on.add(f"pnh{EID[:12]}")
    status, body, _ = start_endpoint(client, pool["PoolID"])
    assert status == 500 and "rolled back" in body["Err"]
    assert world.services.network.repo.endpoint(NID, EID) is None
    assert f"pnc{EID[:12]}" not in world.links.links


def test_two_networks_cannot_share_a_user_bridge(client):
    create_network(client, generic={"pynet.bridge_name": "br-shared"})
    status, body, _ = create_network(client, nid="a" * 64, subnet="10.5.0.0/24",
                                     generic={"pynet.bridge_name": "br-shared"})
    assert status == 409 and "already used by network" in body["Err"]


PORTMAP = "com.docker.network.portmap"


def portmap(*entries):
    return {PORTMAP: [{"Proto": p, "IP": "", "Port": cp, "HostIP": hip, "HostPort": hp, "HostPortEnd": hpe}
                      for p, cp, hip, hp, hpe in entries]}


def test_ports_are_published_reserved_and_released(world, client):
    _, _, pool = create_network(client)
    start_endpoint(client, pool["PoolID"])
    start_endpoint(client, pool["PoolID"], eid=EID2)
    opts = portmap((6, 80, "", 18080, 18080), (6, 80, "127.0.0.1", 0, 0), (17, 53, "", 18053, 18053))
    body = {"NetworkID": NID, "EndpointID": EID, "Options": opts}
    assert post(client, "NetworkDriver.ProgramExternalConnectivity", body) == (200, {})
    first = list(world.firewall.published)
    assert {(b["proto"], b["host_ip"], b["container_port"]) for b in first} == {
        ("tcp", "0.0.0.0", 80), ("tcp", "127.0.0.1", 80), ("udp", "0.0.0.0", 53)}
    picked = [b["host_port"] for b in first if b["host_ip"] == "127.0.0.1"][0]
    assert picked >= 49153
    # Repeating the call keeps what was picked (dockerd may resend; Docker 29 re-programs).
    assert post(client, "NetworkDriver.ProgramExternalConnectivity", body) == (200, {})
    assert world.firewall.published == first
    # The same host port for another container is refused and leaves nothing behind.
    status, err = post(client, "NetworkDriver.ProgramExternalConnectivity",
                       {"NetworkID": NID, "EndpointID": EID2, "Options": portmap((6, 80, "", 18080, 18080))})
    assert status == 409 and "18080" in err["Err"] and "already published" in err["Err"]
    assert world.services.network.repo.endpoint(NID, EID2).published == []
    status, listed = post(client, "Pynet.Ports")
    assert status == 200 and len(listed["Ports"]) == 3 and listed["Ports"][0]["EndpointID"] == EID
    assert post(client, "NetworkDriver.RevokeExternalConnectivity", {"NetworkID": NID, "EndpointID": EID}) == (200, {})
    assert world.firewall.published == []
    status, _ = post(client, "NetworkDriver.ProgramExternalConnectivity",
                     {"NetworkID": NID, "EndpointID": EID2, "Options": portmap((6, 80, "", 18080, 18080))})
    assert status == 200  # free again after the revoke
    world.taken.add(18090)  # a host process listens there
    status, err = post(client, "NetworkDriver.ProgramExternalConnectivity",
                       {"NetworkID": NID, "EndpointID": EID, "Options": portmap((6, 80, "", 18090, 18090))})
    assert status == 409 and "in use on the host" in err["Err"]


def test_ports_on_internal_network_are_refused(client):
    _, _, pool = create_network(client, **{"com.docker.network.internal": True})
    start_endpoint(client, pool["PoolID"])
    status, body = post(client, "NetworkDriver.ProgramExternalConnectivity",
                        {"NetworkID": NID, "EndpointID": EID, "Options": portmap((6, 80, "", 18081, 18081))})
    assert status == 400 and "internal" in body["Err"]


def test_internal_network_gets_no_gateway(client):
    _, _, pool = create_network(client, **{"com.docker.network.internal": True})
    start_endpoint(client, pool["PoolID"])
    status, join = post(client, "NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID})
    assert status == 200 and "Gateway" not in join


def test_overlapping_subnet_is_refused(client):
    create_network(client)
    status, body = post(client, "IpamDriver.RequestPool",
                        {"AddressSpace": "pynet-local", "Pool": "192.168.5.0/24", "V6": False})
    assert status == 409 and "overlaps" in body["Err"] and body["Error"] == body["Err"]
