"""``pynet ports [CONTAINER-or-NETWORK]``: what pynet publishes where.

dockerd never shows a remote driver's published ports (``docker port`` is empty for them), so the CLI asks
pynet (``POST /Pynet.Ports`` on the plugin socket) for its bindings, names them through the Docker Engine
API at the version the daemon speaks (network and container names; pynet's handlers never call dockerd),
and prints:

    CONTAINER  NETWORK   PROTO  HOST            CONTAINER
    web        frontend  tcp    0.0.0.0:5000    10.200.0.2:5000

Only the standard library: http.client over AF_UNIX for both sockets.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Iterable

from pynet import unixhttp
from pynet.docker_api import DockerApi, DockerApiError
from pynet.plugin.ops_client import CliError, call, find_socket  # noqa: F401 (CliError is part of this API)

DEFAULT_SOCKET = "/run/docker/plugins/pynet.sock"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
TIMEOUT = 30.0
HEADERS = ("CONTAINER", "NETWORK", "PROTO", "HOST", "CONTAINER")




# ------------------------------------------------------------------------------------------------ pure
@dataclass(frozen=True)
class Row:
    container: str       # name, or the endpoint ID's prefix when Docker does not know the endpoint
    container_id: str    # full ID, "" if unknown
    network: str         # name, or the network ID's prefix
    network_id: str
    endpoint_id: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    @property
    def host(self) -> str:
        return join_host_port(self.host_ip, self.host_port)

    @property
    def target(self) -> str:
        return join_host_port(self.container_ip, self.container_port)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["host"], d["target"] = self.host, self.target
        return d


def join_host_port(ip: str, port: int) -> str:
    """``10.0.0.1:80``, ``[::]:80``."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def index_networks(networks: Iterable[dict]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """From Engine API network objects (as ``GET /networks/{id}`` returns them): network ID -> name, and
    endpoint ID -> (container name, container ID)."""
    names: dict[str, str] = {}
    endpoints: dict[str, tuple[str, str]] = {}
    for net in networks:
        if not isinstance(net, dict) or not net.get("Id"):
            continue
        names[net["Id"]] = net.get("Name") or net["Id"][:12]
        for cid, ctr in (net.get("Containers") or {}).items():
            if isinstance(ctr, dict) and ctr.get("EndpointID"):
                endpoints[ctr["EndpointID"]] = ((ctr.get("Name") or cid[:12]).lstrip("/"), cid)
    return names, endpoints


def join(ports: Iterable[dict], networks: Iterable[dict]) -> list[Row]:
    """pynet's rows (``/Pynet.Ports``) named through Docker's networks, sorted."""
    names, endpoints = index_networks(networks)
    rows = []
    for p in ports:
        net_id, ep_id = str(p.get("NetworkID", "")), str(p.get("EndpointID", ""))
        container, container_id = endpoints.get(ep_id, (ep_id[:12] or "-", ""))
        rows.append(Row(
            container=container, container_id=container_id,
            network=names.get(net_id, net_id[:12] or "-"), network_id=net_id, endpoint_id=ep_id,
            proto=str(p.get("Proto", "")), host_ip=str(p.get("HostIP", "")), host_port=int(p.get("HostPort", 0)),
            container_ip=str(p.get("ContainerIP", "")), container_port=int(p.get("ContainerPort", 0)),
        ))
    return sorted(rows, key=sort_key)


def _ip_key(ip: str) -> tuple:
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a))
    except ValueError:
        return (9, 0)


def sort_key(r: Row) -> tuple:
    return (r.container, r.network, r.proto, r.host_port, _ip_key(r.host_ip), r.container_port,
            _ip_key(r.container_ip))


def matches(row: Row, target: str) -> bool:
    """``target`` is a container or network name, or a prefix of its ID (Docker-style lookup)."""
    if target in (row.container, row.network):
        return True
    t = target.lower()
    return any(i and i.startswith(t) for i in (row.container_id, row.network_id))


def select(rows: list[Row], target: str | None) -> list[Row]:
    if not target:
        return rows
    exact = [r for r in rows if target in (r.container, r.network)]
    return exact or [r for r in rows if matches(r, target)]


def format_table(rows: list[Row]) -> str:
    cells = [HEADERS] + [(r.container, r.network, r.proto, r.host, r.target) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    return "\n".join(lines) + "\n"


def format_json(rows: list[Row]) -> str:
    return json.dumps([r.to_dict() for r in rows], indent=2) + "\n"


# ------------------------------------------------------------------------------------------------ transport
def fetch_ports(socket_path: str) -> list[dict]:
    """The plugin's published bindings; CliError when it cannot be asked (the one client of plugin/ops_client.py)."""
    doc = call(socket_path, "/Pynet.Ports")
    ports = doc.get("Ports") or []
    if not isinstance(ports, list):
        raise CliError(f"unexpected answer from pynet on {socket_path}: Ports is not a list")
    return [p for p in ports if isinstance(p, dict)]


def docker_connection(docker_host: str) -> http.client.HTTPConnection:
    """A connection to the Engine API at ``unix:///path``, a bare path, or ``tcp://host:port`` (no TLS)."""
    try:
        return unixhttp.connection(docker_host, TIMEOUT)
    except ValueError as e:
        raise CliError(str(e)) from None


def fetch_networks(docker_host: str, network_ids: Iterable[str]) -> list[dict]:
    """``GET /networks/{id}`` for each network (the list endpoint leaves out containers since API 1.28),
    at the API version the daemon speaks (pynet/docker_api.py negotiates it).  A network Docker no longer
    knows is skipped; an unreachable Docker is a CliError."""
    ids = sorted(set(network_ids))
    if not ids:
        return []
    docker_connection(docker_host)  # a malformed --docker-host is named before anything is sent
    api = DockerApi(docker_host, TIMEOUT)
    out = []
    try:
        for nid in ids:
            doc = api.network(nid)
            if doc is not None:
                out.append(doc)
    except DockerApiError as e:
        raise CliError(f"{e} (--docker-host / DOCKER_HOST)") from None
    return out


# ------------------------------------------------------------------------------------------------ command
def main(args) -> int:
    try:  # --socket, PYNET_SOCKET, the legacy socket, else the managed plugin's (plugin/ops_client.py)
        socket_path = find_socket(getattr(args, "socket", None), DEFAULT_SOCKET)
    except CliError as e:
        print(f"pynet ports: {e}", file=sys.stderr)
        return 1
    docker_host = getattr(args, "docker_host", None) or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    target = getattr(args, "target", None)
    try:
        ports = fetch_ports(socket_path)
        networks = fetch_networks(docker_host, (str(p.get("NetworkID", "")) for p in ports if p.get("NetworkID")))
        rows = select(join(ports, networks), target)
    except CliError as e:
        print(f"pynet ports: {e}", file=sys.stderr)
        return 1
    if target and not rows:
        print(f"pynet ports: no published ports for {target}", file=sys.stderr)
        return 1
    sys.stdout.write(format_json(rows) if getattr(args, "json", False) else format_table(rows))
    return 0

