"""Kernel object names, derived deterministically from Docker's IDs.

Design note.  Delete, Leave, a restart and garbage collection must find every
object pynet made without consulting anything, so each name is a pure function
of a Docker ID under the ``pn`` prefix, and the patterns below recognise
pynet's leftovers.  Linux caps interface names at 15 bytes:

    bridge        pn-<network-id[:12]>     e.g. pn-2f234f73c230
    host veth     pnh<endpoint-id[:12]>    stays on the bridge
    container     pnc<endpoint-id[:12]>    handed to dockerd (SrcName), renamed eth<N>
    vxlan         pnv<network-id[:12]>     overlay networks: the tunnel port on the bridge
    macvlan host  pnm<network-id[:12]>     macvlan networks: the host's own interface on the parent
    no-uplink     pnd<network-id[:12]>     --internal macvlan networks: the parent, a veth pair attached
                  pne<network-id[:12]>     to nothing (its other end)

Twelve hex digits are 48 bits; a collision between two live IDs is refused
when the second network is created rather than silently sharing a bridge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

IFNAME_MAX = 15
BRIDGE_RE = re.compile(r"^pn-([0-9a-f]{12})$")
VETH_RE = re.compile(r"^pn([hc])([0-9a-f]{12})$")
VXLAN_RE = re.compile(r"^pn[vmde]([0-9a-f]{12})$")  # vxlan, macvlan host side, no-uplink parent (2 ends)


def bridge_name(network_id: str) -> str:
    return f"pn-{network_id[:12]}"


def vxlan_name(network_id: str) -> str:
    return f"pnv{network_id[:12]}"


def macvlan_host(network_id: str) -> str:
    return f"pnm{network_id[:12]}"


def isolated_parent(network_id: str) -> str:
    return f"pnd{network_id[:12]}"


def isolated_peer(network_id: str) -> str:
    return f"pne{network_id[:12]}"


def host_veth(endpoint_id: str) -> str:
    return f"pnh{endpoint_id[:12]}"


def container_veth(endpoint_id: str) -> str:
    return f"pnc{endpoint_id[:12]}"


def owner_of(ifname: str) -> tuple[str, str] | None:
    """("network", id-prefix) or ("endpoint", id-prefix) for a pynet-made name, else None."""
    m = BRIDGE_RE.fullmatch(ifname)
    if m:
        return ("network", m.group(1))
    m = VXLAN_RE.fullmatch(ifname)
    if m:
        return ("network", m.group(1))
    m = VETH_RE.fullmatch(ifname)
    if m:
        return ("endpoint", m.group(2))
    return None


def endpoint_mac(address_cidr: str, endpoint_id: str) -> str:
    """A container MAC the way Docker's bridge driver derived it before 26.0.

    02:42 followed by the four bytes of the IPv4 address (locally administered,
    unicast, and stable for a given address so neighbours' caches stay right).
    Without an IPv4 address the last four bytes come from the endpoint ID.
    """
    if address_cidr:
        ip = ipaddress.ip_interface(address_cidr).ip
        if ip.version == 4:
            tail = ip.packed
            return "02:42:" + ":".join(f"{b:02x}" for b in tail)
    tail = hashlib.sha256(endpoint_id.encode()).digest()[:4]
    return "02:42:" + ":".join(f"{b:02x}" for b in tail)


def bridge_mac(network_id: str) -> str:
    """A fixed MAC for the bridge: without one, Linux gives the bridge the lowest
    MAC of its ports, so it would change as containers come and go and every
    container's ARP entry for the gateway would go stale."""
    raw = hashlib.sha256(("bridge:" + network_id).encode()).digest()[:5]
    return "02:" + ":".join(f"{b:02x}" for b in raw)


# The kernel (dev_valid_name) takes 1-15 bytes except ".", "..", '/', ':' and whitespace -- as its own
# ctype sees it, where byte 0xa0 is a space too.  pynet takes fewer: letters, digits, '_', '.', '-',
# starting with a letter or digit.  The rest is either invisible in `ip link` output ('@' reads as a
# veth's peer) or means something to iptables when the name lands in a rule ('+' is its wildcard:
# "-i br+" matches every br* link; a leading '!' or '-' reads as negation or an option).
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")


def valid_ifname(name: str) -> bool:
    return isinstance(name, str) and IFNAME_RE.fullmatch(name) is not None  # fullmatch: "$" lets "\n" through


def overlay_gateway_mac(overlay: str) -> str:
    """The distributed gateway's MAC: one per overlay, the same on every host.

    Every host's bridge answers for the gateway with this MAC, so a container
    that moves or whose ARP entry outlives a host keeps a valid gateway, and no
    frame for the gateway ever needs to cross the tunnel."""
    raw = hashlib.sha256(("overlay-gateway:" + overlay).encode()).digest()[:5]
    return "02:" + ":".join(f"{b:02x}" for b in raw)
