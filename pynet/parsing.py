"""Typed parsers for the values that reach pynet from outside: IP addresses, CIDRs, Docker IDs, names.

Pure functions, one place: the plugin's wire decoding (IDs), driver/options.py (network and endpoint
options, CreateNetwork's IPAM data, endpoint addresses), driver/ports.py (published-port host
addresses) and ipam/pools.py (pools, sub-pools, addresses).  Each refuses with a BadRequest that names
the field and the value, so a caller can pass dockerd's text straight in.

Addresses.  Python's ``ipaddress`` is more liberal than what pynet may hand to the kernel, the
firewall or the store: since 3.9 it accepts IPv6 scope IDs (``fe80::1%eth0``), it keeps an
IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) as IPv6 although Go's ``net.IP`` -- dockerd's -- reads
it as the IPv4 address, and ``ip_network(..., strict=False)`` silently drops host bits.  Each of those
makes one text mean two things to two programs, so every value that reaches the kernel, the firewall
or the store goes through this module and comes out as an ``ipaddress`` object, which is written back
in its canonical form only.  What is refused, with an error that names the field:

* anything but a string; empty text where a value is required; whitespace anywhere;
* an IPv6 scope (``%...``), IPv4 with leading zeros (``010.0.0.1``: octal to inet_aton), an
  IPv4-mapped IPv6 address where one family is meant (use the IPv4 address);
* a prefix where a bare IP is meant, a bare IP where a CIDR is meant, a prefix length that is not
  plain decimal (``/024``, ``/+24``);
* host bits set where a network is meant (``10.1.1.1/24``: the pool 10.1.1.0/24, or the gateway
  10.1.1.1 of it?  Docker 28's API refuses it too).

What is accepted although it is not canonical: IPv6 in any RFC 4291 spelling (``2001:DB8::/64``,
``2001:0db8:0:0::1``).  dockerd passes ``--subnet``, ``--ip-range``, ``--gateway`` and
``--aux-address`` text through to the IPAM driver as the user typed it (20.10's API fields are
strings), those spellings are unambiguous hexadecimal, and pynet answers and stores the canonical
form (``2001:db8::/64``).  Values dockerd formats itself (CreateNetwork's IPAM data, CreateEndpoint's
Interface, ReleaseAddress, port bindings) are canonical anyway.
"""

from __future__ import annotations

import ipaddress
import re

from pynet.errors import BadRequest

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"invalid {field} {_show(value)}: expected a string, got {type(value).__name__}")
    if not value:
        raise BadRequest(f"invalid {field} '': a value is required")
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        raise BadRequest(f"invalid {field} {_show(value)}: only ASCII without whitespace or control characters")
    if "%" in value:
        raise BadRequest(f"invalid {field} {_show(value)}: an IPv6 scope ('%...') is not accepted")
    return value


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _version(ip: IP, field: str, text: str, version: int | None) -> IP:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        raise BadRequest(f"invalid {field} {_show(text)}: an IPv4-mapped IPv6 address is ambiguous; "
                         f"write the IPv4 address {ip.ipv4_mapped}")
    if version is not None and ip.version != version:
        raise BadRequest(f"invalid {field} {_show(text)}: expected an IPv{version} address")
    return ip


def _ip(text: str, field: str, version: int | None, whole: str = "") -> IP:
    whole = whole or text
    try:
        ip = ipaddress.IPv6Address(text) if ":" in text else ipaddress.IPv4Address(text)
    except ValueError as exc:
        kind = f"an IPv{version}" if version else "an IP"
        raise BadRequest(f"invalid {field} {_show(whole)}: not {kind} address ({exc})") from None
    return _version(ip, field, whole, version)


def parse_ip(value, field: str, version: int | None = None) -> IP:
    """A bare IP address (no prefix): ``10.0.0.1``, ``fd00::1``."""
    text = _text(value, field)
    if "/" in text:
        raise BadRequest(f"invalid {field} {_show(text)}: expected a plain IP address, without a prefix length")
    return _ip(text, field, version)


def _split(value, field: str) -> tuple[str, str, int]:
    text = _text(value, field)
    address, slash, length = text.partition("/")
    if not slash:
        raise BadRequest(f"invalid {field} {_show(text)}: expected CIDR notation (address/prefix length)")
    if not length.isdigit() or (len(length) > 1 and length[0] == "0") or len(length) > 3:
        raise BadRequest(f"invalid {field} {_show(text)}: the prefix length must be a plain decimal number")
    return text, address, int(length)


def parse_interface(value, field: str, version: int | None = None) -> Interface:
    """An address with its prefix length, host bits allowed: ``10.0.0.2/24`` (an endpoint, a gateway)."""
    text, address, length = _split(value, field)
    ip = _ip(address, field, version, text)
    if length > ip.max_prefixlen:
        raise BadRequest(f"invalid {field} {_show(text)}: prefix length {length} is longer than {ip.max_prefixlen}")
    return ipaddress.ip_interface((ip, length))


def parse_network(value, field: str, version: int | None = None) -> Network:
    """A network, host bits zero: ``10.1.0.0/16``, ``fd00::/64``."""
    iface = parse_interface(value, field, version)
    if iface.ip != iface.network.network_address:
        raise BadRequest(f"invalid {field} {_show(value)}: host bits set (the network is {iface.network})")
    return iface.network


def optional(parser, value, field: str, version: int | None = None):
    """``parser``'s value, or None for an absent value ("" or None, as dockerd sends for "not set")."""
    if value is None or value == "":
        return None
    return parser(value, field, version)


# Docker's IDs are 64 lowercase hex digits; 12 is the shortest form a user can give and the part
# pynet's kernel names carry (driver/names.py).  fullmatch: with re.match, "$" also matches before a
# trailing newline, and "<id>\n" would pass.
_DOCKER_ID = re.compile(r"[0-9a-f]{12,64}")
# Address spaces (IPAM) and overlay names end up in store keys: no '/', nothing a key could hide.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def parse_docker_id(value, field: str) -> str:
    """A Docker object ID (a NetworkID, an EndpointID)."""
    if not isinstance(value, str) or not _DOCKER_ID.fullmatch(value):
        raise BadRequest(f"invalid {field} {_show(value)}: "
                         "not a Docker ID (12 to 64 lowercase hex digits)")
    return value


def parse_name(value, field: str) -> str:
    """A name that becomes part of a store key: 1-63 letters, digits, '_', '.', '-', starting with a
    letter or digit."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BadRequest(f"invalid {field} {_show(value)}: 1-63 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return value
