"""The IpamDriver protocol: wire types and the route table.

Mirrors libnetwork ``ipams/remote/api/api.go`` (protocol.md §4).  IPAM errors
travel like network errors: non-2xx with both ``Err`` and ``Error`` (see
plugin/http.py), never a 200 that dockerd's IPAM proxy would read as success.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynet.ipam.service import IpamService
from pynet.plugin.http import Route
from pynet.plugin.wire import wire


@dataclass
class RequestPoolRequest:
    """``{"AddressSpace", "Pool", "SubPool", "Options", "V6"}`` (§4.3)."""

    address_space: str = wire("AddressSpace", "")
    pool: str = wire("Pool", "")
    sub_pool: str = wire("SubPool", "")
    options: dict = wire("Options", default_factory=dict)
    v6: bool = wire("V6", False)


@dataclass
class ReleasePoolRequest:
    pool_id: str = wire("PoolID", required=True)


@dataclass
class RequestAddressRequest:
    """``{"PoolID", "Address", "Options"}``; the gateway carries ``RequestAddressType`` (§4.5)."""

    pool_id: str = wire("PoolID", required=True)
    address: str = wire("Address", "")
    options: dict = wire("Options", default_factory=dict)


@dataclass
class ReleaseAddressRequest:
    pool_id: str = wire("PoolID", required=True)
    address: str = wire("Address", required=True)


CAPABILITIES = {"RequiresMACAddress": False, "RequiresRequestReplay": False}


def routes(svc: IpamService) -> list[Route]:
    def spaces():
        local, global_ = svc.default_address_spaces()
        return {"LocalDefaultAddressSpace": local, "GlobalDefaultAddressSpace": global_}

    def request_pool(r: RequestPoolRequest):
        res = svc.request_pool(r.address_space, r.pool, r.sub_pool, r.options, r.v6)
        return {"PoolID": res.pool_id, "Pool": res.pool, "Data": dict(res.data or {})}

    def request_address(r: RequestAddressRequest):
        return {"Address": svc.request_address(r.pool_id, r.address, r.options), "Data": {}}

    p = "/IpamDriver."
    return [
        Route(p + "GetCapabilities", None, lambda: CAPABILITIES),
        Route(p + "GetDefaultAddressSpaces", None, spaces),
        Route(p + "RequestPool", RequestPoolRequest, request_pool),
        Route(p + "ReleasePool", ReleasePoolRequest, lambda r: svc.release_pool(r.pool_id)),
        Route(p + "RequestAddress", RequestAddressRequest, request_address),
        Route(p + "ReleaseAddress", ReleaseAddressRequest, lambda r: svc.release_address(r.pool_id, r.address)),
    ]
