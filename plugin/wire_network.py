"""The NetworkDriver protocol: wire types and the route table.

Mirrors libnetwork ``drivers/remote/api/api.go`` (protocol.md §3) under
Docker's own names.  Each route decodes a request, calls one NetworkService
method and encodes the result; nothing else happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pynet.driver.models import IPAMData
from pynet.parsing import parse_docker_id as docker_id
from pynet.driver.service import NetworkService
from pynet.plugin.http import Route
from pynet.plugin.wire import wire


@dataclass
class IPAMDataWire:
    address_space: str = wire("AddressSpace", "")
    pool: str = wire("Pool", "")
    gateway: str = wire("Gateway", "")
    aux_addresses: dict = wire("AuxAddresses", default_factory=dict)

    def domain(self) -> IPAMData:
        return IPAMData(pool=self.pool, gateway=self.gateway, address_space=self.address_space,
                        aux_addresses=dict(self.aux_addresses))


@dataclass
class CreateNetworkRequest:
    """``{"NetworkID": "...", "Options": {...}, "IPv4Data": [...], "IPv6Data": [...]}`` (§3.3)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)
    options: dict = wire("Options", default_factory=dict)
    ipv4_data: list[IPAMDataWire] = wire("IPv4Data", default_factory=list)
    ipv6_data: list[IPAMDataWire] = wire("IPv6Data", default_factory=list)


@dataclass
class NetworkRequest:
    """``{"NetworkID": "..."}``: DeleteNetwork, FreeNetwork (§3.4, §3.5)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)


@dataclass
class InterfaceWire:
    address: str = wire("Address", "")
    address_ipv6: str = wire("AddressIPv6", "")
    mac_address: str = wire("MacAddress", "")


@dataclass
class CreateEndpointRequest:
    """``{"NetworkID", "EndpointID", "Interface": {"Address", "AddressIPv6", "MacAddress"}, "Options"}`` (§3.6)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)
    endpoint_id: str = wire("EndpointID", required=True, parse=docker_id)
    interface: InterfaceWire = wire("Interface", default_factory=InterfaceWire)
    options: dict = wire("Options", default_factory=dict)


@dataclass
class EndpointRequest:
    """``{"NetworkID", "EndpointID"}``: DeleteEndpoint, EndpointOperInfo, Leave, Revoke (§3.7-3.12)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)
    endpoint_id: str = wire("EndpointID", required=True, parse=docker_id)


@dataclass
class JoinRequest:
    """``{"NetworkID", "EndpointID", "SandboxKey", "Options"}`` (§3.9)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)
    endpoint_id: str = wire("EndpointID", required=True, parse=docker_id)
    sandbox_key: str = wire("SandboxKey", "")
    options: dict = wire("Options", default_factory=dict)


@dataclass
class ExternalRequest:
    """``{"NetworkID", "EndpointID", "Options"}``: ProgramExternalConnectivity (§3.11)."""

    network_id: str = wire("NetworkID", required=True, parse=docker_id)
    endpoint_id: str = wire("EndpointID", required=True, parse=docker_id)
    options: dict = wire("Options", default_factory=dict)


@dataclass
class DiscoveryRequest:
    """``{"DiscoveryType": 1, "DiscoveryData": {...}}`` (§3.13)."""

    discovery_type: int = wire("DiscoveryType", 0)
    discovery_data: dict = wire("DiscoveryData", default_factory=dict)


@dataclass
class GwAllocCheckRequest:
    """``{"Options": {...}}`` (Docker 28+, moby#49372): the CreateNetwork options, before IPAM runs."""

    options: dict = wire("Options", default_factory=dict)


@dataclass
class InterfaceName:
    src_name: str = wire("SrcName")
    dst_prefix: str = wire("DstPrefix")


@dataclass
class JoinResponse:
    """``{"InterfaceName": {"SrcName", "DstPrefix"}, "Gateway", "GatewayIPv6", "StaticRoutes"}``.

    Gateways are plain IPs, not CIDR (§3.9)."""

    interface_name: InterfaceName = wire("InterfaceName")
    gateway: str | None = wire("Gateway", None)
    gateway_ipv6: str | None = wire("GatewayIPv6", None)
    static_routes: list = wire("StaticRoutes", default_factory=list)


# GwAllocChecker (Docker 28+): dockerd asks /NetworkDriver.GwAllocCheck before CreateNetwork whether IPAM
# may skip reserving a gateway address.  Older daemons ignore the key.
CAPABILITIES = {"Scope": "local", "ConnectivityScope": "local", "GwAllocChecker": True}


def routes(svc: NetworkService) -> list[Route]:
    def create_network(r: CreateNetworkRequest):
        svc.create_network(r.network_id, r.options, [d.domain() for d in r.ipv4_data],
                           [d.domain() for d in r.ipv6_data])

    def create_endpoint(r: CreateEndpointRequest):
        i = r.interface
        mac = svc.create_endpoint(r.network_id, r.endpoint_id,
                                  {"address": i.address, "address_v6": i.address_ipv6, "mac": i.mac_address},
                                  r.options)
        # Only fields dockerd left empty may be filled in, or it rolls back (§3.6).
        return {"Interface": {"MacAddress": mac}} if mac else {}

    def join(r: JoinRequest):
        info = svc.join(r.network_id, r.endpoint_id, r.sandbox_key, r.options)
        return JoinResponse(interface_name=InterfaceName(info.src_name, info.dst_prefix),
                            gateway=info.gateway or None, gateway_ipv6=info.gateway_v6 or None,
                            # RouteType 0: via NextHop; 1: on-link (libnetwork types.NEXTHOP, CONNECTED)
                            static_routes=[{"Destination": d, "RouteType": 0, "NextHop": hop} for d, hop in info.routes]
                            + [{"Destination": d, "RouteType": 1, "NextHop": ""} for d in info.connected])

    p = "/NetworkDriver."
    return [
        Route(p + "GetCapabilities", None, lambda: CAPABILITIES),
        Route(p + "GwAllocCheck", GwAllocCheckRequest, lambda r: svc.gateway_skips(r.options)),
        Route(p + "CreateNetwork", CreateNetworkRequest, create_network),
        Route(p + "DeleteNetwork", NetworkRequest, lambda r: svc.delete_network(r.network_id)),
        Route(p + "AllocateNetwork", CreateNetworkRequest, lambda r: {"Options": {}}),
        Route(p + "FreeNetwork", NetworkRequest, lambda r: None),
        Route(p + "CreateEndpoint", CreateEndpointRequest, create_endpoint),
        Route(p + "EndpointOperInfo", EndpointRequest,
              lambda r: {"Value": svc.endpoint_info(r.network_id, r.endpoint_id)}),
        Route(p + "DeleteEndpoint", EndpointRequest, lambda r: svc.delete_endpoint(r.network_id, r.endpoint_id)),
        Route(p + "Join", JoinRequest, join),
        Route(p + "Leave", EndpointRequest, lambda r: svc.leave(r.network_id, r.endpoint_id)),
        Route(p + "ProgramExternalConnectivity", ExternalRequest,
              lambda r: svc.program_external(r.network_id, r.endpoint_id, r.options)),
        Route(p + "RevokeExternalConnectivity", EndpointRequest,
              lambda r: svc.revoke_external(r.network_id, r.endpoint_id)),
        Route(p + "DiscoverNew", DiscoveryRequest, lambda r: None),
        Route(p + "DiscoverDelete", DiscoveryRequest, lambda r: None),
    ]


__all__ = ["routes", "field"]
