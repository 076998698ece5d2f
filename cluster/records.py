"""Every record read from the cluster store is decoded here, field by field, before anything acts on it.

Design note.  etcd is shared: another host, an older or newer pynet, an operator with etcdctl or an
attacker with a stolen certificate may have written any key.  So a record is never used as it was
read: each field is parsed into a typed value (canonical CIDRs and addresses, bounded integers, names
from a fixed alphabet, IDs that match the key they sit under) and anything else raises
``InvalidRecord`` with the reason.  Callers skip that one record, report it (pynet/health.py counts it
by kind) and go on with the others; nothing read from etcd ever reaches the kernel, the firewall or the
Docker API without passing through here.  Unknown *fields* are ignored, so a newer pynet may add some;
the Docker network body (docker_network.py) is stricter: only the fields pynet writes are accepted.
"""

from __future__ import annotations

import ipaddress
import re

from pynet.cluster.models import ACTIVE, REMOVING, Advert, Host, Member, Overlay, OverlayPool
from pynet.store._common import Unreadable

HOST_ID = re.compile(r"^[0-9a-f]{12}$")  # secrets.token_hex(6), made once per host
DOCKER_ID = re.compile(r"^[0-9a-f]{64}$")
OVERLAY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}$")  # a release as importlib.metadata spells it
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
VNI_MAX = 16_777_215
MAX_IPS = 16  # addresses per advert: an endpoint has one v4 and one v6 today
MAX_NAMES = 32  # DNS names per advert: container name, hostname, aliases, compose service, short id
# One DNS name as pynet answers it: lower-case labels of letters, digits, '_' and '-', 1..63 each, at most
# 253 in all (RFC 1035 limits; '_' because Docker allows it in container names and aliases).
DNS_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class InvalidRecord(ValueError):
    """A record that must not be used; the message says which field and why."""


def _dict(value, what: str) -> dict:
    if isinstance(value, Unreadable):
        raise InvalidRecord(f"{what}: {value.reason}")
    if not isinstance(value, dict):
        raise InvalidRecord(f"{what} is not an object")
    return value


def text(value, what: str, pattern: re.Pattern | None = None, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"{what} is not a string")
    if value == "" and empty:
        return value
    if pattern is not None and not pattern.fullmatch(value):  # not match: "$" also matches before a final "\n"
        raise InvalidRecord(f"{what} {value[:80]!r} is not valid")
    return value


def integer(value, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidRecord(f"{what} {value!r} is not an integer in {lo}..{hi}")
    return value


def flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord(f"{what} {value!r} is not true or false")
    return value


def address(value, what: str) -> str:
    """A plain IP address in its canonical spelling (no scope, no leading zeros, lower case)."""
    text(value, what)
    if "%" in value:  # Python's ipaddress accepts fe80::1%eth0; nothing pynet stores has a scope
        raise InvalidRecord(f"{what} {value[:80]!r} carries an IPv6 scope")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise InvalidRecord(f"{what} {value[:80]!r} is not an IP address") from None
    if str(ip) != value:
        raise InvalidRecord(f"{what} {value!r} is not in canonical form ({ip})")
    return value


def network(value, what: str) -> str:
    """A CIDR naming a network (host bits zero) in canonical form."""
    text(value, what)
    if "%" in value:
        raise InvalidRecord(f"{what} {value[:80]!r} carries an IPv6 scope")
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise InvalidRecord(f"{what} {value[:80]!r} is not a network in CIDR form") from None
    if str(net) != value:
        raise InvalidRecord(f"{what} {value!r} is not in canonical form ({net})")
    return value


def interface(value, what: str, inside: str) -> str:
    """A CIDR holding an address of network ``inside``, with its prefix length (a gateway)."""
    text(value, what)
    if "%" in value:
        raise InvalidRecord(f"{what} {value[:80]!r} carries an IPv6 scope")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise InvalidRecord(f"{what} {value[:80]!r} is not an address in CIDR form") from None
    net = ipaddress.ip_network(inside)
    if str(iface) != value or iface.network != net:
        raise InvalidRecord(f"{what} {value!r} is not an address of {inside}")
    return value


def mac(value, what: str) -> str:
    text(value, what, MAC)
    first = int(value[:2], 16)
    if first & 1 or value == "00:00:00:00:00:00":
        raise InvalidRecord(f"{what} {value!r} is not a unicast MAC address")
    return value


# -- one decoder per kind of record ---------------------------------------------------------------
def host(key_id: str, value) -> Host:
    d = _dict(value, "host record")
    if text(d.get("id"), "host id", HOST_ID) != key_id:
        raise InvalidRecord(f"host id {d['id']!r} does not match its key {key_id!r}")
    name = text(d.get("name", ""), "host name", re.compile(r"^[\w.-]{1,64}$"), empty=True)
    version = text(d.get("version", ""), "host version", VERSION, empty=True)
    return Host(id=key_id, vtep=address(d.get("vtep"), "host VTEP"), name=name, version=version)


def _pools(value, what: str, version: int) -> tuple[OverlayPool, ...]:
    if not isinstance(value, list) or len(value) > 8:
        raise InvalidRecord(f"{what} is not a list of at most 8 pools")
    pools = []
    for item in value:
        p = _dict(item, f"{what} entry")
        cidr = network(p.get("pool"), f"{what} pool")
        if ipaddress.ip_network(cidr).version != version:
            raise InvalidRecord(f"{what} pool {cidr} is not IPv{version}")
        gateway = p.get("gateway", "")
        pools.append(OverlayPool(cidr, interface(gateway, f"gateway of {cidr}", cidr) if gateway else ""))
    return tuple(pools)


def overlay(key_name: str, value) -> Overlay:
    from pynet.cluster.docker_network import DockerNetwork  # it uses the validators above

    d = _dict(value, "overlay record")
    if text(d.get("name"), "overlay name", OVERLAY_NAME) != key_name:
        raise InvalidRecord(f"overlay name {d['name']!r} does not match its key {key_name!r}")
    state = d.get("state", ACTIVE)
    if state not in (ACTIVE, REMOVING):
        raise InvalidRecord(f"overlay state {state!r} is not {ACTIVE!r} or {REMOVING!r}")
    record = Overlay(
        name=key_name, vni=integer(d.get("vni"), "VNI", 1, VNI_MAX),
        ipv4=_pools(d.get("ipv4", []), "IPv4 pools", 4), ipv6=_pools(d.get("ipv6", []), "IPv6 pools", 6),
        internal=flag(d.get("internal", False), "internal"),
        origin=text(d.get("origin", ""), "origin host", HOST_ID, empty=True),
        origin_network=text(d.get("origin_network", ""), "origin network", DOCKER_ID, empty=True),
        state=state,
    )
    docker = d.get("docker") or {}
    if docker:
        described = DockerNetwork.from_dict(_dict(docker, "Docker network"))
        described.check_against(record)
        record = record.with_docker(described)
    return record


def member(value) -> Member:
    d = _dict(value, "member record")
    return Member(network_id=text(d.get("network_id"), "member network id", DOCKER_ID))


def advert(key: tuple[str, str, str], value) -> Advert:
    """An endpoint advert at ``(overlay, host, endpoint)``: the record must name the same three."""
    d = _dict(value, "endpoint advert")
    name, host_id, endpoint_id = key
    got = (text(d.get("overlay"), "advert overlay", OVERLAY_NAME), text(d.get("host"), "advert host", HOST_ID),
           text(d.get("endpoint"), "advert endpoint", DOCKER_ID))
    if got != key:
        raise InvalidRecord(f"advert for {got} does not match its key {key}")
    ips = d.get("ips", [])
    if not isinstance(ips, list) or len(ips) > MAX_IPS:
        raise InvalidRecord(f"advert addresses are not a list of at most {MAX_IPS}")
    names = d.get("names", [])
    if not isinstance(names, list) or len(names) > MAX_NAMES:
        raise InvalidRecord(f"advert names are not a list of at most {MAX_NAMES}")
    return Advert(overlay=name, host=host_id, endpoint=endpoint_id, mac=mac(d.get("mac"), "advert MAC"),
                  vtep=address(d.get("vtep"), "advert VTEP"), ips=tuple(address(ip, "advert address") for ip in ips),
                  withdrawn=flag(d.get("withdrawn", False), "advert withdrawn"),
                  names=tuple(dns_name(n, "advert name") for n in names))


def dns_name(value, what: str) -> str:
    """A DNS name in pynet's canonical form (lower case, no trailing dot), or InvalidRecord."""
    text(value, what)
    if not value or len(value) > 253 or not all(DNS_LABEL.fullmatch(label) for label in value.split(".")):
        raise InvalidRecord(f"{what} {value[:80]!r} is not a lower-case DNS name")
    return value


def vni_owner(value) -> str:
    return text(_dict(value, "VNI record").get("overlay"), "VNI owner", OVERLAY_NAME)
