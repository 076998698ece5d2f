"""What Docker 28 and 29 send a remote driver that 20.10 did not (docs/docker-versions.md in ../shared).

Each test replays the wire sequence the newer daemon produces (read off moby's
daemon/libnetwork/drivers/remote/driver.go and api/api.go) against the real app.
"""

from __future__ import annotations

from tests.contract.conftest import post
from tests.contract.test_protocol import EID, EID2, NID, create_network, portmap, start_endpoint

IFNAME = "com.docker.network.endpoint.ifname"
NO_PROXY_6TO4 = "com.docker.network.driver.private.no_proxy_6to4"
PROGRAM, REVOKE = "NetworkDriver.ProgramExternalConnectivity", "NetworkDriver.RevokeExternalConnectivity"


def program(client, opts, eid=EID):
    return post(client, PROGRAM, {"NetworkID": NID, "EndpointID": eid, "Options": opts})


def claims(world) -> set:
    return {(c.owner, c.family, c.proto, c.port) for c in world.services.network.publisher.ports.claims()}


# -- Docker 28: GwAllocChecker ------------------------------------------------------------------------
def test_gw_alloc_checker_is_offered_and_keeps_the_gateway(client):
    status, caps = post(client, "NetworkDriver.GetCapabilities")
    assert status == 200 and caps["GwAllocChecker"] is True
    # dockerd 28+ sends the CreateNetwork options before IPAM runs (moby#49372).
    body = {"Options": {"com.docker.network.enable_ipv4": True, "com.docker.network.enable_ipv6": False,
                        "com.docker.network.generic": {"pynet.mode": "macvlan", "parent": "eth0"}}}
    assert post(client, "NetworkDriver.GwAllocCheck", body) == (200, {"SkipIPv4": False, "SkipIPv6": False})
    assert post(client, "NetworkDriver.GwAllocCheck", {}) == (200, {"SkipIPv4": False, "SkipIPv6": False})


def test_gw_alloc_check_refuses_malformed_options(client):
    status, err = post(client, "NetworkDriver.GwAllocCheck", {"Options": {"com.docker.network.generic": "x"}})
    assert status == 400 and "com.docker.network.generic" in err["Err"]
    status, err = post(client, "NetworkDriver.GwAllocCheck", {"Options": ["x"]})
    assert status == 400 and "Options" in err["Err"]


# -- Docker 28: com.docker.network.endpoint.ifname ----------------------------------------------------
def test_endpoint_ifname_is_refused_by_name_and_nothing_is_left(world, client):
    _, _, pool = create_network(client)
    status, addr = post(client, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "", "Options": None})
    links_before = set(world.links.links)
    status, err = post(client, "NetworkDriver.CreateEndpoint",
                       {"NetworkID": NID, "EndpointID": EID,
                        "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""},
                        "Options": {IFNAME: "app0", "com.docker.network.portmap": []}})
    assert status == 400 and IFNAME in err["Err"] and "interface name" in err["Err"]
    assert world.services.network.repo.endpoint(NID, EID) is None
    assert set(world.links.links) == links_before


# -- Docker 28: --ipv4=false --------------------------------------------------------------------------
def _ipv6_only_network(client, internal=False):
    pool, gateway = _pool(client, "fd00:28::/64", True)
    status, body = post(client, "NetworkDriver.CreateNetwork",
                        {"NetworkID": NID, "IPv4Data": [],  # what --ipv4=false sends
                         "Options": {"com.docker.network.enable_ipv4": False, "com.docker.network.enable_ipv6": True,
                                     "com.docker.network.internal": internal, "com.docker.network.generic": {}},
                         "IPv6Data": [{"AddressSpace": "pynet-local", "Pool": pool["Pool"], "Gateway": gateway}]})
    assert (status, body) == (200, {}), body
    address = _address(client, pool)
    status, ep = post(client, "NetworkDriver.CreateEndpoint",  # an endpoint without Address
                      {"NetworkID": NID, "EndpointID": EID,
                       "Interface": {"Address": "", "AddressIPv6": address, "MacAddress": ""},
                       "Options": {"com.docker.network.portmap": []}})
    assert status == 200 and ep["Interface"]["MacAddress"].startswith("02:42:"), ep
    return gateway, address


def test_ipv4_less_network_joins_with_an_ipv6_gateway_only_and_publishes_on_ipv6(world, client):
    gateway, _ = _ipv6_only_network(client)
    assert world.links.links[f"pn-{NID[:12]}"]["addresses"] == {gateway}
    status, join = post(client, "NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "Options": {}})
    assert status == 200 and "Gateway" not in join and join["GatewayIPv6"] == gateway.split("/")[0]
    assert program(client, portmap((6, 80, "", 18280, 18280))) == (200, {})
    assert [(b["family"], b["host_ip"], b["host_port"]) for b in world.firewall.published] == [(6, "::", 18280)]


def test_internal_ipv6_network_gets_no_gateway_either(client):
    _ipv6_only_network(client, internal=True)
    status, join = post(client, "NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "Options": {}})
    assert status == 200 and "Gateway" not in join and "GatewayIPv6" not in join


# -- Docker 29: ProgramExternalConnectivity reworked ---------------------------------------------------
def test_program_twice_without_revoke_replaces_the_bindings(world, client):
    _, _, pool = create_network(client)
    start_endpoint(client, pool["PoolID"])
    start_endpoint(client, pool["PoolID"], eid=EID2)
    assert program(client, portmap((6, 80, "", 18180, 18180), (6, 443, "", 0, 0))) == (200, {})
    picked = [b["host_port"] for b in world.firewall.published if b["container_port"] == 443][0]
    # The same map again (29 re-sends when the endpoint's gateway role changes): nothing moves.
    assert program(client, portmap((6, 80, "", 18180, 18180), (6, 443, "", 0, 0))) == (200, {})
    assert sorted(b["host_port"] for b in world.firewall.published) == sorted([18180, picked])
    # Another map, no Revoke between: it replaces the first; the dropped port is released.
    assert program(client, portmap((6, 443, "", 0, 0), (17, 53, "", 18153, 18153))) == (200, {})
    assert sorted((b["proto"], b["host_port"]) for b in world.firewall.published) == [("tcp", picked), ("udp", 18153)]
    assert claims(world) == {(EID, 4, "tcp", picked), (EID, 4, "udp", 18153)}
    assert [b["host_port"] for b in world.services.network.repo.endpoint(NID, EID).published] == [picked, 18153]
    assert program(client, portmap((6, 80, "", 18180, 18180)), eid=EID2) == (200, {})  # 18180 is free again
    # An empty map unpublishes everything the endpoint had.
    assert program(client, {}) == (200, {})
    assert claims(world) == {(EID2, 4, "tcp", 18180)}
    assert [b["host_port"] for b in world.firewall.published] == [18180]


def _pool(client, cidr: str, v6: bool) -> tuple[dict, str]:
    """(pool, gateway) as dockerd asks IPAM for them."""
    status, pool = post(client, "IpamDriver.RequestPool",
                        {"AddressSpace": "pynet-local", "Pool": cidr, "SubPool": "", "Options": {}, "V6": v6})
    assert status == 200, pool
    status, gw = post(client, "IpamDriver.RequestAddress",
                      {"PoolID": pool["PoolID"], "Address": "",
                       "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert status == 200, gw
    return pool, gw["Address"]


def _address(client, pool) -> str:
    status, addr = post(client, "IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Address": "", "Options": None})
    assert status == 200, addr
    return addr["Address"]


def test_program_with_no_proxy_6to4_publishes_ipv4_only(world, client):
    """29 sets no_proxy_6to4 when another endpoint became the IPv6 gateway: it publishes the IPv6 side."""
    (p4, gw4), (p6, gw6) = _pool(client, "192.168.29.0/24", False), _pool(client, "fd00:29::/64", True)
    status, body = post(client, "NetworkDriver.CreateNetwork",
                        {"NetworkID": NID,
                         "Options": {"com.docker.network.enable_ipv6": True, "com.docker.network.generic": {}},
                         "IPv4Data": [{"AddressSpace": "pynet-local", "Pool": p4["Pool"], "Gateway": gw4}],
                         "IPv6Data": [{"AddressSpace": "pynet-local", "Pool": p6["Pool"], "Gateway": gw6}]})
    assert status == 200, body
    status, _ = post(client, "NetworkDriver.CreateEndpoint",
                     {"NetworkID": NID, "EndpointID": EID, "Options": {},
                      "Interface": {"Address": _address(client, p4), "AddressIPv6": _address(client, p6),
                                    "MacAddress": ""}})
    assert status == 200
    ports = portmap((6, 80, "", 18290, 18290))
    assert program(client, ports) == (200, {})  # the IPv4 and the IPv6 gateway
    assert sorted(b["family"] for b in world.firewall.published) == [4, 6]
    assert program(client, {**ports, NO_PROXY_6TO4: True}) == (200, {})  # another endpoint took IPv6
    assert [(b["family"], b["host_port"]) for b in world.firewall.published] == [(4, 18290)]
    assert claims(world) == {(EID, 4, "tcp", 18290)}
    status, err = program(client, {**ports, NO_PROXY_6TO4: "maybe"})
    assert status == 400 and NO_PROXY_6TO4 in err["Err"]


def test_leave_removes_what_program_made_when_no_revoke_comes(world, client):
    """After a live-restore restart Docker 29's shim forgot the endpoint was a gateway: Leave, no Revoke."""
    _, _, pool = create_network(client)
    start_endpoint(client, pool["PoolID"])
    assert post(client, "NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EID, "Options": {}})[0] == 200
    assert program(client, portmap((6, 80, "", 18380, 18380))) == (200, {})
    assert world.firewall.published
    assert post(client, "NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID}) == (200, {})
    assert world.firewall.published == [] and claims(world) == set()
    assert world.services.network.repo.endpoint(NID, EID).published == []
    # A late Revoke, and Leave for IDs pynet does not know (dockerd's start-up clean-up), are success.
    assert post(client, REVOKE, {"NetworkID": NID, "EndpointID": EID}) == (200, {})
    assert post(client, "NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EID2}) == (200, {})
    start_endpoint(client, pool["PoolID"], eid=EID2)
    assert program(client, portmap((6, 80, "", 18380, 18380)), eid=EID2) == (200, {})  # the port is free
