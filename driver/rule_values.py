"""The values written into iptables text, parsed again from the records into typed values.

Design note.  firewall.py builds iptables-restore text from stored networks and endpoints; those records
came from dockerd's requests (and, for overlays, other hosts via etcd), so nothing in them is trusted by
the time it becomes a rule.  Each helper here takes the record's raw value and returns a typed one
(ipaddress objects, ints in range, a protocol from a fixed list, an interface name of a strict alphabet),
or raises BadRequest naming the network or endpoint and the field; the rule is then written from the
typed value, so no text from a request ever lands in a rule.  Interface names exclude iptables'
``+`` wildcard (``pn+`` would match every pynet interface) and anything that reads as an option.
"""

from __future__ import annotations

import ipaddress
import re

from pynet.driver import names
from pynet.driver.models import Network
from pynet.errors import BadRequest

_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # no iptables wildcard (+), no option-like name
_PROTOS = ("tcp", "udp", "sctp")
_SET_NAME = re.compile(r"^pynet-[a-z0-9-]{1,24}$")


def refuse(owner: str, field: str, value) -> BadRequest:
    return BadRequest(f"refusing to write firewall rules: {owner} has {field} {value!r}, which is not "
                      f"{_WHAT[field]}")


_WHAT = {"bridge": "a valid interface name", "pool": "a canonical CIDR of the network's family",
         "gateway": "an address in CIDR form of the network's family",
         "host_ip": "a plain address of the binding's family",
         "container_ip": "a plain address of the binding's family", "host_port": "a port (1-65535)",
         "container_port": "a port (1-65535)", "proto": "one of tcp, udp, sctp", "family": "4 or 6",
         "set": "a pynet ip set name"}


def ifname(owner: str, value) -> str:
    if not isinstance(value, str) or not names.valid_ifname(value) or not _IFNAME.match(value):
        raise refuse(owner, "bridge", value)
    return value


def no_scope(owner: str, field: str, value) -> str:
    # ipaddress accepts "fe80::1%eth0"; a scope has no place in a rule, and "%" none in the text.
    if not isinstance(value, str) or "%" in value or value != value.strip():
        raise refuse(owner, field, value)
    return value


def pool(owner: str, value, family: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(no_scope(owner, "pool", value))
    except ValueError:
        raise refuse(owner, "pool", value) from None
    if net.version != family or str(net) != value:  # "10.1.0.0" (a /32), "fd00:0::/64": not what was meant
        raise refuse(owner, "pool", value)
    return net


def gateway(owner: str, value, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        iface = ipaddress.ip_interface(no_scope(owner, "gateway", value))
    except ValueError:
        raise refuse(owner, "gateway", value) from None
    if "/" not in value or iface.version != family:
        raise refuse(owner, "gateway", value)
    return iface.ip


def address(owner: str, field: str, value, family: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(no_scope(owner, field, value))
    except ValueError:
        raise refuse(owner, field, value) from None
    if ip.version != family:
        raise refuse(owner, field, value)
    return ip


def port(owner: str, field: str, value) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise refuse(owner, field, value)
    return value


def proto(owner: str, value) -> str:
    if value not in _PROTOS:
        raise refuse(owner, "proto", value)
    return _PROTOS[_PROTOS.index(value)]  # our own constant, not the record's string


def set_name(value) -> str:
    if not isinstance(value, str) or not _SET_NAME.match(value):
        raise refuse("the member filter", "set", value)
    return value


def owner(net: Network) -> str:
    return f"network {str(net.id)[:12]!r}"
