"""Each local overlay endpoint's DNS names, from the local Docker API, in the background.

A remote driver never learns a container's name (CreateEndpoint and Join carry none), so this loop asks
dockerd every ``PERIOD``: ``GET /containers/json`` for the running containers and their endpoint ids, and
``GET /containers/{id}/json`` once for each container whose endpoints changed.  The names of an endpoint
are what Docker's embedded resolver answers for it locally: the container name, its hostname, its
``--network-alias`` names, the compose service, each also as ``NAME.NETWORK``.  Docker's values are
parsed like any input (records.dns_name): a name that is no DNS name is left out, never passed on.  They
go into the endpoint's advert (cluster/control.py ``name``) and so reach every host with it; a removed
container's advert -- names included -- is withdrawn by DeleteEndpoint, not by this loop.
"""

from __future__ import annotations

import logging

from pynet.cluster.records import MAX_NAMES, InvalidRecord, dns_name
from pynet.errors import BadRequest
from pynet.parsing import parse_docker_id

log = logging.getLogger("pynet.dns")
PERIOD = 1.0  # seconds: a new container's names reach the other hosts within about this plus etcd's delay
COMPOSE_SERVICE = "com.docker.compose.service"


def names_of(inspected: dict, network: str) -> tuple[str, ...]:
    """The DNS names of ``inspected`` (GET /containers/{id}/json) on its network called ``network``."""
    config = inspected.get("Config") if isinstance(inspected.get("Config"), dict) else {}
    labels = config.get("Labels") if isinstance(config.get("Labels"), dict) else {}
    settings = _networks(inspected).get(network, {})
    aliases = settings.get("Aliases") if isinstance(settings.get("Aliases"), list) else []
    dns_names = settings.get("DNSNames") if isinstance(settings.get("DNSNames"), list) else []  # dockerd 25+
    raw = [str(inspected.get("Name", "")).lstrip("/"), config.get("Hostname"), *aliases, *dns_names,
           labels.get(COMPOSE_SERVICE)]
    plain: list[str] = []
    for value in raw:
        name = _name(value)
        if name and name not in plain:
            plain.append(name)
    qualified = [q for q in (_name(f"{n}.{network}") for n in plain) if q and q not in plain]
    return tuple((plain + qualified)[:MAX_NAMES])


def _name(value) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return dns_name(value.lower().rstrip("."), "name")
    except InvalidRecord:
        return ""


def _networks(container: dict) -> dict[str, dict]:
    settings = container.get("NetworkSettings")
    nets = settings.get("Networks") if isinstance(settings, dict) else None
    return {k: v for k, v in nets.items() if isinstance(v, dict)} if isinstance(nets, dict) else {}


class DockerNames:
    def __init__(self, control, docker) -> None:
        self.control = control  # cluster.control.EtcdControlPlane: local_endpoints, name
        self.docker = docker  # pynet.docker_api.DockerApi
        self._seen: dict[str, tuple] = {}  # container id -> (its endpoint ids, {endpoint id: names})

    def step(self) -> None:
        local = self.control.local_endpoints()
        if not local:
            self._seen.clear()
            return
        seen: dict[str, tuple] = {}
        for c in self.docker.containers():
            cid = c.get("Id")
            endpoints = {net: s.get("EndpointID") for net, s in _networks(c).items() if s.get("EndpointID") in local}
            if not endpoints or not _is_docker_id(cid):  # it goes into a URL path: a Docker ID or nothing
                continue
            signature = tuple(sorted(endpoints.items()))
            known = self._seen.get(cid)
            if known is None or known[0] != signature:
                inspected = self.docker.container(cid)
                if inspected is None:
                    continue
                known = (signature, {eid: names_of(inspected, net) for net, eid in endpoints.items()})
            seen[cid] = known
            for eid, names in known[1].items():
                self.control.name(eid, names)
        self._seen = seen


def _is_docker_id(value) -> bool:
    try:
        parse_docker_id(value, "container Id")
        return True
    except BadRequest:
        return False
