"""How an overlay's Docker network is created on the hosts that do not have it yet.

Design note.  The host that creates an overlay first describes its Docker network in the overlay's record
(name, drivers, IPAM config, --internal, --ipv6, pynet's options); every other host's control plane then
POSTs ``/networks/create`` to its own dockerd from that description.  The body that reaches a dockerd is
therefore written by another host, and it is never passed on as read: ``DockerNetwork`` holds only the
fields below, each validated (records.py), it accepts no other field, and ``request()`` builds the Engine
API body from those values alone.  Its pools must be the overlay's own pools, and its options are only
the driver options pynet itself takes, so a record cannot smuggle a different network, a label, a
different driver's options or a second IPAM config onto another host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass

from pynet.cluster import records
from pynet.cluster.records import InvalidRecord

ORIGIN_LABEL = "org.pynet.overlay.origin"
# moby's RestrictedNamePattern, which docker network create applies to names as well
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$")
# a plugin reference: "pynet", "pynet:latest", "registry.example/pynet:1.2"
DRIVER = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,127}(:[A-Za-z0-9._-]{1,64})?$")
# The -o options pynet's driver takes (driver/options.py); pynet.mode and pynet.overlay are set here.
OPTIONS = frozenset({
    "pynet.vni", "pynet.bridge_name", "com.docker.network.driver.mtu",
    "com.docker.network.bridge.enable_ip_masquerade", "com.docker.network.bridge.enable_icc",
    "com.docker.network.bridge.host_binding_ipv4",
    "pynet.mode", "parent",  # a cluster-wide macvlan network (driver/macvlan.py): its mode and parent
})
MODES = frozenset({"overlay", "macvlan"})  # what pynet.mode may say in a replicated network
OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]{0,64}$")
FIELDS = {"name", "driver", "ipam_driver", "pools", "internal", "ipv6", "options"}
POOL_FIELDS = {"subnet", "ip_range", "gateway"}


@dataclass(frozen=True)
class IpamPool:
    subnet: str  # canonical network
    ip_range: str = ""  # canonical network inside subnet, or ""
    gateway: str = ""  # plain address inside subnet, or ""


@dataclass(frozen=True)
class DockerNetwork:
    name: str
    driver: str
    ipam_driver: str
    pools: tuple[IpamPool, ...]
    internal: bool = False
    ipv6: bool = False
    options: tuple[tuple[str, str], ...] = ()  # sorted (key, value)

    # -- from the origin's dockerd ---------------------------------------------------------
    @classmethod
    def describe(cls, inspected: dict, overlay: str) -> "DockerNetwork":
        """The description of ``inspected`` (``GET /networks/{id}``), validated; InvalidRecord if the
        local network is not one pynet could re-create elsewhere."""
        ipam = inspected.get("IPAM") if isinstance(inspected.get("IPAM"), dict) else {}
        pools = [{"subnet": c.get("Subnet", ""), "ip_range": c.get("IPRange", ""), "gateway": c.get("Gateway", "")}
                 for c in ipam.get("Config") or [] if isinstance(c, dict)]
        opts = {k: v for k, v in (inspected.get("Options") or {}).items() if k in OPTIONS}
        if opts.get("pynet.mode") == "overlay":
            del opts["pynet.mode"]  # the default: an overlay's record stays readable by a pynet without macvlan
        return cls.from_dict({"name": inspected.get("Name", overlay), "driver": inspected.get("Driver", ""),
                              "ipam_driver": ipam.get("Driver") or "", "pools": pools,
                              "internal": bool(inspected.get("Internal")), "ipv6": bool(inspected.get("EnableIPv6")),
                              "options": opts})

    # -- stored form -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["pools"] = [asdict(p) for p in self.pools]
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DockerNetwork":
        extra = set(d) - FIELDS
        if extra:
            raise InvalidRecord(f"Docker network has fields pynet does not write: {', '.join(sorted(extra))}")
        pools = d.get("pools")
        if not isinstance(pools, list) or not 1 <= len(pools) <= 8:
            raise InvalidRecord("Docker network pools are not a list of 1 to 8")
        opts = d.get("options", {})
        if not isinstance(opts, dict):
            raise InvalidRecord("Docker network options are not an object")
        return cls(name=records.text(d.get("name"), "Docker network name", NAME),
                   driver=records.text(d.get("driver"), "network driver", DRIVER),
                   ipam_driver=records.text(d.get("ipam_driver"), "IPAM driver", DRIVER),
                   pools=tuple(_pool(p) for p in pools),
                   internal=records.flag(d.get("internal", False), "internal"),
                   ipv6=records.flag(d.get("ipv6", False), "ipv6"),
                   options=tuple(sorted(_option(k, v) for k, v in opts.items())))

    def check_against(self, overlay) -> None:
        """InvalidRecord unless this describes ``overlay`` (a cluster.models.Overlay): its pools, its
        --internal."""
        mine = sorted(p.subnet for p in self.pools)
        theirs = sorted(p.pool for p in overlay.pools())
        if mine != theirs:
            raise InvalidRecord(f"Docker network subnets {mine} are not the overlay's {theirs}")
        if self.internal != overlay.internal:
            raise InvalidRecord("Docker network --internal differs from the overlay's")

    # -- to another host's dockerd -----------------------------------------------------------
    def request(self, overlay: str, origin: str) -> dict:
        """The Engine API ``NetworkCreateRequest``, from the validated fields only."""
        config = [{k: v for k, v in (("Subnet", p.subnet), ("IPRange", p.ip_range), ("Gateway", p.gateway)) if v}
                  for p in self.pools]
        return {
            "Name": self.name, "CheckDuplicate": True, "Driver": self.driver,
            "Internal": self.internal, "EnableIPv6": self.ipv6, "Attachable": False,
            "IPAM": {"Driver": self.ipam_driver, "Options": {}, "Config": config},
            "Options": {"pynet.mode": "overlay", **dict(self.options), "pynet.overlay": overlay},
            "Labels": {ORIGIN_LABEL: origin},
        }


def _pool(value) -> IpamPool:
    p = records._dict(value, "Docker network pool")
    extra = set(p) - POOL_FIELDS
    if extra:
        raise InvalidRecord(f"Docker network pool has fields pynet does not write: {', '.join(sorted(extra))}")
    subnet = records.network(p.get("subnet"), "subnet")
    ip_range = p.get("ip_range", "") and records.network(p["ip_range"], "ip range")
    gateway = p.get("gateway", "") and records.address(p["gateway"], "gateway")
    net = ipaddress.ip_network(subnet)
    rng = ipaddress.ip_network(ip_range) if ip_range else None
    if rng is not None and (rng.version != net.version or not rng.subnet_of(net)):
        raise InvalidRecord(f"ip range {ip_range} is not inside {subnet}")
    if gateway and ipaddress.ip_address(gateway) not in net:
        raise InvalidRecord(f"gateway {gateway} is not inside {subnet}")
    return IpamPool(subnet, ip_range, gateway)


def _option(key, value) -> tuple[str, str]:
    if key not in OPTIONS:
        raise InvalidRecord(f"Docker network option {str(key)[:80]!r} is not one pynet replicates")
    if key == "pynet.mode" and value not in MODES:
        raise InvalidRecord(f"Docker network option pynet.mode={str(value)[:80]!r} is not one pynet replicates")
    return key, records.text(value, f"option {key}", OPTION_VALUE)
