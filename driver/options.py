"""Parsing and validation of the options dockerd passes (pure functions).

Design note.  ``docker network create -o k=v`` values arrive as strings inside
``Options["com.docker.network.generic"]``; Docker's own flags arrive as typed
top-level keys (protocol.md §3.0).  pynet refuses what it does not know or
cannot honour with an error that names the option (contract.md: nothing is
silently ignored).  Keys under ``com.docker.network.`` that dockerd itself
adds at the top level are Docker's business and pass through.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field, replace

from pynet import parsing
from pynet.errors import BadRequest
from pynet.driver import names
from pynet.driver.models import IPAMData, NetworkConfig

GENERIC = "com.docker.network.generic"
MTU = "com.docker.network.driver.mtu"
MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
ICC = "com.docker.network.bridge.enable_icc"
HOST_BINDING = "com.docker.network.bridge.host_binding_ipv4"
MODE, OVERLAY, VNI, BRIDGE_NAME = "pynet.mode", "pynet.overlay", "pynet.vni", "pynet.bridge_name"
PARENT = "parent"  # pynet.mode=macvlan (driver/macvlan.py)

KNOWN_GENERIC = {MTU, MASQUERADE, ICC, HOST_BINDING, MODE, OVERLAY, VNI, BRIDGE_NAME, PARENT}

MAC_OPTION = "com.docker.network.endpoint.macaddress"
EXPOSED = "com.docker.network.endpoint.exposedports"
PORTMAP = "com.docker.network.portmap"
# Docker 28 (moby#49155): the container-side interface name.  The remote driver shim never passes a
# DstName on to the daemon (it sets the interface's names from SrcName and DstPrefix only), so the name
# cannot be honoured: refused by name rather than silently ignored.
IFNAME = "com.docker.network.endpoint.ifname"
# Docker 29's ProgramExternalConnectivity sets this when another endpoint is the IPv6 gateway (moby#50321):
# that one publishes on the host's IPv6 addresses, so this endpoint must publish on IPv4 only.
NO_PROXY_6TO4 = "com.docker.network.driver.private.no_proxy_6to4"


def _bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"option {key}={value!r}: expected true or false")


def _int(key: str, value, lo: int, hi: int) -> int:
    try:
        n = int(str(value).strip(), 10)
    except ValueError:
        raise BadRequest(f"option {key}={value!r}: expected an integer") from None
    if not lo <= n <= hi:
        raise BadRequest(f"option {key}={value!r}: must be between {lo} and {hi}")
    return n


OVERLAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VNI_MAX = 16_777_215


def parse_network_options(network_id: str, options: dict, multi_host: bool = False) -> NetworkConfig:
    """The NetworkConfig for CreateNetwork's ``Options``; BadRequest names any bad option.

    ``multi_host``: pynet runs with a cluster store (--etcd), so overlay mode is
    available.  An overlay without ``pynet.overlay`` is named after the network
    ID; its MTU stays 0 here and the service derives it from the underlay.
    """
    generic = options.get(GENERIC) or {}
    if not isinstance(generic, dict):
        raise BadRequest(f"{GENERIC} must be an object")
    unknown = sorted(set(generic) - KNOWN_GENERIC)
    if unknown:
        raise BadRequest(f"unknown network option {unknown[0]!r} (pynet knows: {', '.join(sorted(KNOWN_GENERIC))})")
    mode = str(generic.get(MODE, "bridge"))
    if mode not in ("bridge", "overlay", "macvlan"):
        raise BadRequest(f"option {MODE}={mode!r}: expected bridge, overlay or macvlan")
    if mode == "macvlan":
        from pynet.driver import macvlan  # its options are its own; imported here: macvlan imports this module

        return macvlan.parse_options(network_id, generic, options, multi_host)
    if PARENT in generic:
        raise BadRequest(f"option {PARENT} only applies to {MODE}=macvlan networks")
    overlay, vni = "", 0
    if mode == "overlay":
        if not multi_host:
            raise BadRequest(f"option {MODE}=overlay needs a multi-host pynet (pynet serve --etcd URLS); "
                             "this one is single-host")
        overlay = str(generic.get(OVERLAY, "")) or network_id
        if not OVERLAY_NAME.fullmatch(overlay):  # fullmatch: "$" lets a trailing newline through
            raise BadRequest(f"option {OVERLAY}={overlay!r}: 1-63 letters, digits, '_', '.' or '-', "
                             "starting with a letter or digit")
        vni = _int(VNI, generic[VNI], 1, VNI_MAX) if VNI in generic else 0
    else:
        for key in (OVERLAY, VNI):
            if key in generic:
                raise BadRequest(f"option {key} only applies to {MODE}=overlay networks")
    bridge = parse_bridge_name(network_id, generic[BRIDGE_NAME]) if BRIDGE_NAME in generic \
        else names.bridge_name(network_id)
    host_ip = str(parsing.parse_ip(generic.get(HOST_BINDING, "0.0.0.0"), f"option {HOST_BINDING}", version=4))
    default_mtu = 0 if mode == "overlay" else 1500
    return NetworkConfig(
        mode=mode,
        bridge=bridge,
        bridge_given=BRIDGE_NAME in generic,
        mtu=_int(MTU, generic[MTU], 68, 65535) if MTU in generic else default_mtu,
        internal=_bool("--internal", options.get("com.docker.network.internal", False)),
        enable_ipv6=_bool("--ipv6", options.get("com.docker.network.enable_ipv6", False)),
        masquerade=_bool(MASQUERADE, generic.get(MASQUERADE, True)),
        icc=_bool(ICC, generic.get(ICC, True)),
        host_binding_ipv4=host_ip,
        overlay=overlay,
        vni=vni,
    )


@dataclass(frozen=True)
class EndpointOptions:
    mac: str = ""  # colon form, "" when the user gave none
    exposed_ports: list = field(default_factory=list)
    port_bindings: list = field(default_factory=list)
    ipv4_only: bool = False  # NO_PROXY_6TO4 (Program's options only)


def decode_mac(value) -> str:
    """The user's MAC: base64 of 6 raw bytes in endpoint options (Go net.HardwareAddr, §3.0)."""
    if not isinstance(value, str):
        raise BadRequest(f"{MAC_OPTION} must be a string")
    if value.count(":") == 5:
        return validate_mac(value, MAC_OPTION)
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise BadRequest(f"{MAC_OPTION}={value!r} is neither base64 nor a colon MAC") from None
    if len(raw) != 6:
        raise BadRequest(f"{MAC_OPTION}={value!r} does not hold 6 bytes")
    return validate_mac(":".join(f"{b:02x}" for b in raw), MAC_OPTION)


def parse_endpoint_options(options: dict) -> EndpointOptions:
    """Endpoint options: dockerd's own keys, plus any ``--driver-opt`` (none known yet)."""
    unknown = sorted(k for k in options if not k.startswith("com.docker."))
    if unknown:
        raise BadRequest(f"unknown endpoint option {unknown[0]!r} (pynet takes no --driver-opt yet)")
    if IFNAME in options:
        raise BadRequest(f"endpoint option {IFNAME}={options[IFNAME]!r}: a remote network driver cannot choose "
                         "the container's interface name (Docker names it eth<N>); leave it out")
    ports = options.get(PORTMAP) or []
    exposed = options.get(EXPOSED) or []
    if not isinstance(ports, list) or not isinstance(exposed, list):
        raise BadRequest(f"{PORTMAP} and {EXPOSED} must be lists")
    mac = decode_mac(options[MAC_OPTION]) if options.get(MAC_OPTION) else ""
    return EndpointOptions(mac=mac, exposed_ports=exposed, port_bindings=ports,
                           ipv4_only=_bool(NO_PROXY_6TO4, options.get(NO_PROXY_6TO4, False)))


def validate_mac(mac: str, label: str = "MacAddress") -> str:
    """A unicast Ethernet MAC in colon form, lower case.  The kernel refuses a multicast or all-zero
    address on a veth (is_valid_ether_addr), which would surface as pynet's own failure."""
    parts = mac.split(":") if isinstance(mac, str) else []
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise BadRequest(f"{label} {mac!r} is not a MAC address")
    if int(parts[0], 16) & 1 or mac.strip("0:") == "":
        raise BadRequest(f"{label} {mac!r} is not a unicast MAC address (multicast bit set, or all zero)")
    return mac.lower()


def validate_cidr(label: str, value: str, version: int | None = None) -> str:
    """An address with its prefix length (CreateEndpoint's Interface) in canonical form, "" if none."""
    iface = parsing.optional(parsing.parse_interface, value, label, version)
    return str(iface) if iface is not None else ""


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# dockerd's marker for an aux address its IPAM did not return (IPAMData.MarshalJSON of a nil IPNet).
_NO_ADDRESS = "<nil>"


def parse_ipam_data(label: str, data: IPAMData, version: int) -> IPAMData:
    """One element of CreateNetwork's IPv4Data/IPv6Data, checked and canonical: the pool a network of
    ``version``, the gateway (CIDR with the pool's length) and every aux address inside it."""
    pool = parsing.parse_network(data.pool, f"{label}.Pool", version)
    gateway = parsing.optional(parsing.parse_interface, data.gateway, f"{label}.Gateway", version)
    if pool.is_loopback or pool.is_multicast:
        raise BadRequest(f"{label}.Pool {pool}: a loopback or multicast range cannot be a network")
    if gateway is not None and gateway.ip not in pool:
        raise BadRequest(f"{label}.Gateway {gateway} is not inside pool {pool}")
    ip = gateway.ip if gateway is not None else None
    if ip is not None and (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip == _BROADCAST):
        # the kernel refuses these on the bridge, which would surface as pynet's own failure
        raise BadRequest(f"{label}.Gateway {gateway}: not an address a bridge can hold")
    if not isinstance(data.address_space, str):
        raise BadRequest(f"{label}.AddressSpace must be a string")
    aux = {}
    for name, value in data.aux_addresses.items():
        if value != _NO_ADDRESS:
            aux[name] = str(parsing.parse_interface(value, f"{label}.AuxAddresses[{name!r}]", version))
    return replace(data, pool=str(pool), gateway=str(gateway) if gateway else "", aux_addresses=aux)


def parse_ipam_list(label: str, datas: list[IPAMData], version: int) -> list[IPAMData]:
    """CreateNetwork's IPv4Data or IPv6Data, each element checked (parse_ipam_data) and no two pools
    overlapping: dockerd never sends that, and two copies of one gateway on the bridge would fail."""
    parsed = [parse_ipam_data(f"{label}[{i}]", d, version) for i, d in enumerate(datas)]
    nets = [ipaddress.ip_network(d.pool) for d in parsed]
    for i, net in enumerate(nets):
        for j in range(i):
            if net.overlaps(nets[j]):
                raise BadRequest(f"{label}[{i}].Pool {net} overlaps {label}[{j}].Pool {nets[j]}")
    return parsed


# Docker's own bridges: its default bridge, the gateway bridge of swarm/overlay containers, and the
# bridge driver's user networks (br-<first 12 hex digits of the network ID>).
DOCKER_BRIDGE = re.compile(r"^(docker0|docker_gwbridge|br-[0-9a-f]{12})$")


def parse_bridge_name(network_id: str, value) -> str:
    """``pynet.bridge_name``: a valid Linux interface name (the kernel's dev_valid_name: 1-15 bytes,
    not "." or "..", no '/', ':' or whitespace), never one of Docker's bridges, and never a name pynet
    derives for another object (start-up garbage collection would take it for a leftover)."""
    if not isinstance(value, str) or not names.valid_ifname(value):
        raise BadRequest(f"option {BRIDGE_NAME}={value!r}: not a valid interface name "
                         "(1-15 bytes, not '.' or '..', no whitespace, '/' or ':')")
    if DOCKER_BRIDGE.fullmatch(value):
        raise BadRequest(f"option {BRIDGE_NAME}={value!r}: that is one of Docker's own bridges")
    if names.owner_of(value) is not None and value != names.bridge_name(network_id):
        raise BadRequest(f"option {BRIDGE_NAME}={value!r}: names of the form pn-/pnh/pnc/pnv + 12 hex digits "
                         "are pynet's own for other networks and endpoints")
    return value
