"""Hostile and non-canonical inputs over HTTP: refused by name, nothing half-created (issue 11, item 4)."""

from __future__ import annotations

import json

import pytest

from pynet.plugin.http import MAX_BODY
from tests.contract.conftest import post
from tests.contract.test_protocol import EID, NID, create_network, start_endpoint


def test_uppercase_ipv6_subnet_as_dockerd_passes_it_works_and_is_answered_canonical(client):
    # `docker network create --ipv6 --subnet 2001:DB8::/64`: dockerd 20.10 passes the text through.
    status, pool = post(client, "IpamDriver.RequestPool",
                        {"AddressSpace": "pynet-local", "Pool": "2001:DB8::/64", "SubPool": "", "Options": {}, "V6": True})
    assert status == 200 and pool == {"PoolID": "pynet-local/2001:db8::/64", "Pool": "2001:db8::/64", "Data": {}}
    status, gw = post(client, "IpamDriver.RequestAddress",
                      {"PoolID": pool["PoolID"], "Address": "2001:DB8::1",
                       "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert (status, gw["Address"]) == (200, "2001:db8::1/64")


@pytest.mark.parametrize("method, body, field", [
    ("IpamDriver.RequestPool", {"AddressSpace": "pynet-local", "Pool": "10.1.1.1/24"}, "invalid pool '10.1.1.1/24': host bits"),
    ("IpamDriver.RequestPool", {"AddressSpace": "pynet-local", "Pool": "fe80::%eth0/64", "V6": True}, "IPv6 scope"),
    ("IpamDriver.RequestPool", {"AddressSpace": "pynet-local", "Pool": "10.1.0.0/16", "SubPool": " 10.1.2.0/24"},
     "invalid sub-pool"),
    ("IpamDriver.RequestPool", {"AddressSpace": "../x", "Pool": ""}, "invalid address space"),
    ("IpamDriver.RequestAddress", {"PoolID": "pynet-local/10.1.0.0/16", "Address": "::ffff:10.1.0.5"}, "IPv4-mapped"),
    ("IpamDriver.ReleaseAddress", {"PoolID": "pynet-local/10.1.0.0/16", "Address": "10.1.0.5/16"}, "without a prefix"),
    ("NetworkDriver.DeleteNetwork", {"NetworkID": NID + "\n"}, "invalid NetworkID"),
    ("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": "../../" + EID}, "invalid EndpointID"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": NID, "IPv4Data": [{"Pool": "10.2.0.0/16", "Gateway": "10.2.0.1"}]},
     "IPv4Data[0].Gateway '10.2.0.1': expected CIDR"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": NID, "IPv4Data": [{"Pool": "fd00::/64"}]},
     "IPv4Data[0].Pool 'fd00::/64': expected an IPv4"),
    # found by the fuzz test: the same pool twice put its gateway on the bridge twice (EEXIST, a 500)
    ("NetworkDriver.CreateNetwork", {"NetworkID": NID, "IPv4Data": [{"Pool": "10.2.0.0/16", "Gateway": "10.2.0.1/16"},
                                                                    {"Pool": "10.2.0.0/16", "Gateway": "10.2.0.1/16"}]},
     "IPv4Data[1].Pool 10.2.0.0/16 overlaps IPv4Data[0].Pool"),
])
def test_refusals_name_the_field(client, method, body, field):
    status, reply = post(client, method, body)
    assert status == 400 and field in reply["Err"], reply


def test_endpoint_address_with_a_scope_is_refused_and_nothing_is_made(world, client):
    _, _, pool = create_network(client)
    before = set(world.links.links)
    status, body = post(client, "NetworkDriver.CreateEndpoint",
                        {"NetworkID": NID, "EndpointID": EID,
                         "Interface": {"Address": "192.168.0.2/16", "AddressIPv6": "fe80::2%pn-x/64"}})
    assert status == 400 and "Interface.AddressIPv6" in body["Err"] and "scope" in body["Err"]
    assert set(world.links.links) == before and world.services.network.repo.endpoints() == []


def test_endpoint_whose_kernel_names_collide_is_refused_and_nothing_is_made(world, client):
    _, _, pool = create_network(client)
    assert start_endpoint(client, pool["PoolID"])[0] == 200
    twin = EID[:12] + "f" * 52  # another ID, the same first 12 digits: the same pnh/pnc names
    links_before = {k: dict(v) for k, v in world.links.links.items()}
    status, body, _ = start_endpoint(client, pool["PoolID"], eid=twin)
    assert status == 409 and f"pnh{EID[:12]}" in body["Err"] and EID in body["Err"]
    assert world.links.links == links_before  # the first endpoint's pair untouched
    assert [e.id for e in world.services.network.repo.endpoints()] == [EID]


def test_network_whose_kernel_names_collide_is_refused_and_nothing_is_made(world, client):
    create_network(client)
    twin = NID[:12] + "e" * 52
    status, body, _ = create_network(client, nid=twin, subnet="10.6.0.0/24", generic={"pynet.bridge_name": "br-twin"})
    assert status == 409 and "kernel names" in body["Err"] and NID in body["Err"]
    assert "br-twin" not in world.links.links and world.services.network.repo.network(twin) is None


@pytest.mark.parametrize("bridge", ["docker0", "br-0123456789ab", f"pnh{EID[:12]}"])
def test_bridge_name_never_docker_or_pynet_namespace(world, client, bridge):
    status, body, _ = create_network(client, generic={"pynet.bridge_name": bridge})
    assert status == 400 and "pynet.bridge_name" in body["Err"]
    assert world.links.links == {}


def test_bridge_name_of_an_existing_non_bridge_is_a_conflict(world, client):
    world.links.links["eth7"] = {"kind": "veth", "mtu": 1500}
    status, body, _ = create_network(client, generic={"pynet.bridge_name": "eth7"})
    assert status == 409 and "is a veth, not a bridge" in body["Err"]
    assert world.links.links == {"eth7": {"kind": "veth", "mtu": 1500}}


def test_body_over_one_mib_is_413_with_the_envelope(client):
    status, body = post(client, "NetworkDriver.CreateNetwork", raw=b" " * (MAX_BODY + 1))
    assert status == 413 and "at most 1048576 bytes" in body["Err"] and body["Err"] == body["Error"]


def test_deeply_nested_json_is_a_400_not_a_500(client):
    status, body = post(client, "NetworkDriver.CreateNetwork", raw=b"[" * 100_000)
    assert status == 400 and "nested too deeply" in body["Err"]
    status, body = post(client, "IpamDriver.RequestPool",
                        raw=json.dumps({"AddressSpace": "pynet-local", "Options": {}}).encode()[:-1] + b',"x":'
                        + b"{\"a\":" * 50_000 + b"1" + b"}" * 50_001)
    assert status == 400


def test_program_external_for_an_unknown_endpoint_is_a_4xx_but_not_404(client):
    create_network(client)
    status, body = post(client, "NetworkDriver.ProgramExternalConnectivity", {"NetworkID": NID, "EndpointID": EID})
    assert status == 400 and "not found" in body["Err"]
