"""The cluster DNS of one host, wired: its address, its table, its loops (started by plugin/compose.py).

The resolver's address is a /32 (/128) on ``lo``: a local address of the host, so a container reaches it
through its own gateway (the host routes it in; an --internal overlay, which has no default route, gets a
static route to it through its gateway in Join).  ``lo`` rather than a dummy link of pynet's own (what
node-local DNS caches use) because the dummy driver is not in every kernel (not in this machine's); the
address is only ever added, never removed, so nothing else on ``lo`` is touched.  A host firewall whose
INPUT policy drops must accept UDP and TCP 53 to this address from pynet's bridges (README).

Loops, under the supervisor (each in /Pynet.Health):
    dns-udp, dns-tcp   the resolver (server.py); they bind with FREEBIND, so the address may come later
    dns-address        keeps the address on lo (every 10 s: a removed address comes back)
    dns-names          the local containers' names into their adverts (docker_names.py), every second
"""

from __future__ import annotations

import logging

from pynet.clusterdns.docker_names import PERIOD, DockerNames
from pynet.clusterdns.server import Resolver, Servers
from pynet.clusterdns.table import NameTable
from pynet.clusterdns.upstream import Upstreams
from pynet.errors import BadRequest
from pynet.parsing import parse_ip

log = logging.getLogger("pynet.dns")
LINK = "lo"
DEFAULT_ADDRESS = "169.254.53.53"
OFF = "off"
ADDRESS_CHECK = 10.0


def parse_address(value: str) -> str | None:
    """--dns-address: a plain IP address (canonical), or None for ``off``."""
    if value.strip().lower() == OFF:
        return None
    try:
        ip = parse_ip(value, "--dns-address")  # canonical text only: no %scope, no mapped form, no spaces
    except BadRequest as exc:
        raise BadRequest(f"--dns-address {value[:80]!r} is neither an IP address nor {OFF!r} ({exc})") from None
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        raise BadRequest(f"--dns-address {ip} cannot be a resolver's address (multicast, unspecified or loopback)")
    return str(ip)


class LiveTable:
    """The current NameTable, rebuilt only when the cluster view's revision moved."""

    def __init__(self, control) -> None:
        self.control = control  # cluster.control.EtcdControlPlane
        self._revision = -1
        self._table = NameTable()

    def __call__(self) -> NameTable:
        if self.control.view.revision != self._revision:  # an int read: no lock on the hot path
            revision, adverts = self.control.names_view()
            self._table, self._revision = NameTable(adverts), revision
        return self._table


class ClusterDns:
    def __init__(self, address: str, control, links, resolv_conf: str) -> None:
        self.address = address
        self.control = control
        self.links = links  # driver.kernel.links.Links
        self.resolver = Resolver(LiveTable(control), Upstreams(resolv_conf, exclude=frozenset({address})))
        self.servers = Servers(self.resolver, address)

    def cidr(self) -> str:
        return f"{self.address}/{32 if ':' not in self.address else 128}"

    def ensure_address(self) -> None:
        if self.links.ensure_address(LINK, self.cidr()):
            log.info("cluster DNS address %s on link %s", self.address, LINK)

    def start(self, supervisor) -> None:
        """The address and the resolver: at once (queries for other names are forwarded meanwhile)."""
        supervisor.every("dns-address", ADDRESS_CHECK, self.ensure_address, retry=1.0)
        supervisor.spawn("dns-udp", self.servers.udp)
        supervisor.spawn("dns-tcp", self.servers.tcp)

    def start_names(self, supervisor, docker) -> None:
        """The names loop (after the start-up replay: it names the endpoints the replay advertised)."""
        names = DockerNames(self.control, docker)
        supervisor.every("dns-names", PERIOD, names.step, retry=PERIOD)
