"""The key schema: every key pynet writes is built here and nowhere else.

Layout (version prefix first so a future schema can live beside this one):

    /pynet/v1/networks/<network-id>                       network record (driver)
    /pynet/v1/endpoints/<network-id>/<endpoint-id>        endpoint record (driver)
    /pynet/v1/ipam/<space>/pools                          one document: every pool of the space
    /pynet/v1/ipam/<space>/addrs/<pool-key>/<ip>          one claimed address (create-if-absent)
    /pynet/v1/ipam/<space>/cursor/<pool-key>              round-robin position of a pool
    /pynet/v1/ports/v<family>/<proto>/<port>               every binding of one host port (local store)

Multi-host (the etcd store; cluster/ owns these):

    /pynet/v1/cluster/hosts/<host-id>                     a live host and its VTEP (leased)
    /pynet/v1/cluster/overlays/<overlay>                  an overlay network: VNI, pools, how to create it
    /pynet/v1/cluster/vnis/<vni>                          a claimed VNI (create-if-absent: unique)
    /pynet/v1/cluster/members/<overlay>/<host-id>         this host has a Docker network for the overlay
    /pynet/v1/cluster/endpoints/<overlay>/<host-id>/<eid> a container's MAC and addresses (leased)

Host-scoped keys carry the host id, so one watch on ``cluster_prefix()`` sees
everything a host needs and leases can make a vanished host's keys disappear.

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


def host_ports_prefix() -> str:
    return f"{ROOT}/ports/"


# -- multi-host ---------------------------------------------------------------------


def cluster_prefix() -> str:
    return f"{ROOT}/cluster/"


def host(host_id: str) -> str:
    return f"{ROOT}/cluster/hosts/{host_id}"


def hosts_prefix() -> str:
    return f"{ROOT}/cluster/hosts/"


def overlay(name: str) -> str:
    return f"{ROOT}/cluster/overlays/{name}"


def overlays_prefix() -> str:
    return f"{ROOT}/cluster/overlays/"


def vni(number: int) -> str:
    return f"{ROOT}/cluster/vnis/{number}"


def member(overlay_name: str, host_id: str) -> str:
    return f"{ROOT}/cluster/members/{overlay_name}/{host_id}"


def members_prefix(overlay_name: str | None = None) -> str:
    if overlay_name is None:
        return f"{ROOT}/cluster/members/"
    return f"{ROOT}/cluster/members/{overlay_name}/"


def advert(overlay_name: str, host_id: str, endpoint_id: str) -> str:
    return f"{ROOT}/cluster/endpoints/{overlay_name}/{host_id}/{endpoint_id}"


def adverts_prefix(overlay_name: str | None = None) -> str:
    if overlay_name is None:
        return f"{ROOT}/cluster/endpoints/"
    return f"{ROOT}/cluster/endpoints/{overlay_name}/"


def host_adverts_prefix(overlay_name: str, host_id: str) -> str:
    return f"{ROOT}/cluster/endpoints/{overlay_name}/{host_id}/"


def parse_cluster_key(key: str) -> tuple[str, ...] | None:
    """('hosts', id) / ('overlays', name) / ('vnis', n) / ('members', overlay, host) /
    ('endpoints', overlay, host, eid) for a cluster key, else None."""
    prefix = cluster_prefix()
    if not key.startswith(prefix):
        return None
    parts = tuple(key[len(prefix):].split("/"))
    sizes = {"hosts": 2, "overlays": 2, "vnis": 2, "members": 3, "endpoints": 4}
    return parts if parts and sizes.get(parts[0]) == len(parts) and all(parts) else None


def local_host_id() -> str:
    """This host's id in a cluster (local store only)."""
    return f"{ROOT}/host-id"


def pending_release(token: str) -> str:
    """An IPAM release the cluster store did not take during an outage (local store only)."""
    return f"{ROOT}/pending/ipam/{token}"


def pending_releases_prefix() -> str:
    return f"{ROOT}/pending/ipam/"
