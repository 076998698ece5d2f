"""The key schema: every key pynet writes is built here and nowhere else.

Layout (version prefix first so a future schema can live beside this one):

    /pynet/v1/networks/<network-id>                       network record (driver)
    /pynet/v1/endpoints/<network-id>/<endpoint-id>        endpoint record (driver)
    /pynet/v1/ipam/<space>/pools                          one document: every pool of the space
    /pynet/v1/ipam/<space>/addrs/<pool-key>/<ip>          one claimed address (create-if-absent)
    /pynet/v1/ipam/<space>/cursor/<pool-key>              round-robin position of a pool

All pools of an address space live in ONE document updated by compare-and-swap,
so the overlap check and the insert are a single atomic step, also across hosts.
Addresses are one key each, so claiming an address is a single create-if-absent
and nothing proportional to the pool's size is ever stored or scanned.
"""

from __future__ import annotations

ROOT = "/pynet/v1"


def network(network_id: str) -> str:
    return f"{ROOT}/networks/{network_id}"


def networks_prefix() -> str:
    return f"{ROOT}/networks/"


def endpoint(network_id: str, endpoint_id: str) -> str:
    return f"{ROOT}/endpoints/{network_id}/{endpoint_id}"


def endpoints_prefix(network_id: str | None = None) -> str:
    if network_id is None:
        return f"{ROOT}/endpoints/"
    return f"{ROOT}/endpoints/{network_id}/"


def pool_key(cidr: str) -> str:
    """A CIDR as one key segment: '192.168.0.0/16' -> '192.168.0.0_16'."""
    return cidr.replace("/", "_")


def ipam_pools(space: str) -> str:
    return f"{ROOT}/ipam/{space}/pools"


def ipam_address(space: str, cidr: str, ip: str) -> str:
    return f"{ROOT}/ipam/{space}/addrs/{pool_key(cidr)}/{ip}"


def ipam_addresses_prefix(space: str, cidr: str) -> str:
    return f"{ROOT}/ipam/{space}/addrs/{pool_key(cidr)}/"


def ipam_cursor(space: str, cidr: str) -> str:
    return f"{ROOT}/ipam/{space}/cursor/{pool_key(cidr)}"


def host_port(family: int, proto: str, port: int) -> str:
    """Every binding of one host port (all host addresses) in one document, so a
    conflict check and a reservation are a single compare-and-swap."""
    return f"{ROOT}/ports/v{family}/{proto}/{port}"
