"""Published ports: what ``-p``/``-P`` asks for, and atomic host-port reservation.

Design note.  dockerd hands the port map to the gateway endpoint's
ProgramExternalConnectivity as ``com.docker.network.portmap``, already expanded
per port (protocol.md §3.0); ``HostPort`` 0 means "any free port", and
``HostPort < HostPortEnd`` means "any free port of that range".  pynet then owns
the job Docker's bridge does with its port allocator: a host port is taken at
most once per protocol and family, where 0.0.0.0 (or ::) overlaps every
specific host address.  All bindings of one host port live in one store
document, so checking and reserving it is one compare-and-swap, also across
concurrent containers.  What was picked is stored with the endpoint, so a
restart rebuilds the same rules and ``pynet ports`` can show it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import asdict, dataclass

from pynet import parsing
from pynet.errors import BadRequest, Conflict
from pynet.store import keys
from pynet.store.base import Entry, Store
from pynet.store.update import Decision, Delete, Keep, Write, modify

PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
DYNAMIC = range(49153, 61000)  # like Docker's dynamic range, below the kernel's ephemeral ports


@dataclass(frozen=True)
class Request:
    proto: str
    container_port: int
    host_ip: str  # "" = every address of the family
    host_port: int  # 0 = any
    host_port_end: int


@dataclass(frozen=True)
class Binding:
    """One published port: host (address, port) -> container (address, port)."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    family: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """One host-port reservation in the store: ``owner`` (an endpoint ID) holds (host_ip, port)."""

    owner: str
    family: int
    proto: str
    host_ip: str
    port: int


def parse_requests(portmap: list) -> list[Request]:
    """The ``com.docker.network.portmap`` entries as Requests; BadRequest names a bad one."""
    out = []
    for entry in portmap:
        if not isinstance(entry, dict):
            raise BadRequest(f"port binding {entry!r} is not an object")
        proto = PROTOS.get(entry.get("Proto"))
        port, host_port = entry.get("Port"), entry.get("HostPort") or 0
        end = entry.get("HostPortEnd") or host_port
        if proto is None or not isinstance(port, int) or not 0 < port < 65536:
            raise BadRequest(f"port binding {entry!r}: unsupported protocol or port")
        if not isinstance(host_port, int) or not 0 <= host_port <= end < 65536:
            raise BadRequest(f"port binding {entry!r}: bad host port range")
        host_ip = entry.get("HostIP") or ""
        if host_ip:  # canonical from here on: it is a store key and lands in iptables rules
            host_ip = str(parsing.parse_ip(host_ip, f"port binding {proto}/{port} HostIP"))
        out.append(Request(proto, port, host_ip, host_port, end))
    return out


def families_for(req: Request, has_v4: bool, has_v6: bool, default_ip: str) -> list[tuple[int, str]]:
    """(family, host address) pairs a request publishes on: "" means both families the endpoint has."""
    if req.host_ip:
        family = ipaddress.ip_address(req.host_ip).version
        return [(family, req.host_ip)] if (has_v4 if family == 4 else has_v6) else []
    out = []
    if has_v4:
        out.append((4, default_ip or "0.0.0.0"))
    if has_v6 and (not default_ip or default_ip == "0.0.0.0"):
        out.append((6, "::"))
    return out


def _overlaps(a: str, b: str) -> bool:
    return a == b or ipaddress.ip_address(a).is_unspecified or ipaddress.ip_address(b).is_unspecified


def host_port_free(family: int, proto: str, host_ip: str, port: int) -> bool:
    """Is nobody on this host listening there?  (A DNAT rule would silently shadow them.)"""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    if proto == "sctp":
        return True
    with socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, kind) as s:
        try:
            s.bind((host_ip, port))
            return True
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BadRequest(f"host address {host_ip} is not an address of this host") from None
            return False


class PortReservations:
    """Host ports held by endpoints, in the store."""

    def __init__(self, store: Store, probe=host_port_free):
        # ``probe`` asks the host whether a port is free; tests of pure logic pass a stand-in.
        self._store = store
        self._probe = probe

    def reserve(self, owner: str, family: int, proto: str, host_ip: str, port: int) -> bool:
        """Claim (host_ip, port) for ``owner``; False if another owner holds an overlapping binding."""
        def decide(entry: Entry | None) -> Decision:
            held = entry.value["bindings"] if entry else []
            if any(b["owner"] == owner and b["host_ip"] == host_ip for b in held):
                return Keep(True)
            if any(_overlaps(b["host_ip"], host_ip) for b in held):
                return Keep(False)
            return Write({"bindings": held + [{"owner": owner, "host_ip": host_ip}]}, True)

        return modify(self._store, keys.host_port(family, proto, port), decide, f"host port {port}/{proto}")

    def release(self, owner: str, family: int, proto: str, host_ip: str, port: int) -> None:
        def decide(entry: Entry | None) -> Decision:
            if entry is None:
                return Keep()
            rest = [b for b in entry.value["bindings"] if not (b["owner"] == owner and b["host_ip"] == host_ip)]
            if len(rest) == len(entry.value["bindings"]):
                return Keep()
            return Write({"bindings": rest}) if rest else Delete()

        modify(self._store, keys.host_port(family, proto, port), decide, f"host port {port}/{proto}")

    def claims(self) -> list[Claim]:
        """Every reservation in the store (a key or binding that does not parse is skipped)."""
        out = []
        prefix = keys.host_ports_prefix()
        for entry in self._store.list(prefix):
            parts = entry.key[len(prefix):].split("/")
            if len(parts) != 3 or parts[0] not in ("v4", "v6") or not parts[2].isdigit():
                continue
            family, proto, port = int(parts[0][1:]), parts[1], int(parts[2])
            for b in entry.value.get("bindings") or ():
                if isinstance(b, dict) and isinstance(b.get("owner"), str) and isinstance(b.get("host_ip"), str):
                    out.append(Claim(b["owner"], family, proto, b["host_ip"], port))
        return out

    def claim(self, owner: str, family: int, req: Request, host_ip: str) -> int:
        """Reserve the requested host port (or a free one of its range / the dynamic range)."""
        if req.host_port:
            candidates = range(req.host_port, req.host_port_end + 1)
        else:
            candidates = DYNAMIC
        for port in candidates:
            if not self._probe(family, req.proto, host_ip, port):
                if req.host_port and req.host_port == req.host_port_end:
                    raise Conflict(f"host port {host_ip}:{port}/{req.proto} is already in use on the host")
                continue
            if self.reserve(owner, family, req.proto, host_ip, port):
                return port
            if req.host_port and req.host_port == req.host_port_end:
                raise Conflict(f"host port {host_ip}:{port}/{req.proto} is already published by another container")
        what = f"{req.host_port}-{req.host_port_end}" if req.host_port else "the dynamic range"
        raise Conflict(f"no free host port in {what} for {host_ip}/{req.proto}")
