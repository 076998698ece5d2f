"""The cluster records as stored in etcd: plain frozen dataclasses.

``to_dict`` is how they are written; they are read back only through records.py, which validates every
field (nothing read from etcd is trusted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # docker_network.py imports records.py, which imports this module
    from pynet.cluster.docker_network import DockerNetwork

ACTIVE = "active"
REMOVING = "removing"  # `docker network rm` ran on some host: every host drops its copy once unused


@dataclass(frozen=True)
class OverlayPool:
    pool: str  # canonical CIDR
    gateway: str = ""  # CIDR with the pool's length, "" for none


@dataclass(frozen=True)
class Overlay:
    """One overlay network, cluster-wide."""

    name: str
    vni: int
    ipv4: tuple[OverlayPool, ...] = ()
    ipv6: tuple[OverlayPool, ...] = ()
    internal: bool = False
    origin: str = ""  # host id that created it first
    origin_network: str = ""  # the Docker network id on the origin host
    state: str = ACTIVE
    # How the other hosts create its Docker network, learnt from the origin's dockerd in the
    # background (docker_network.py); None until then.
    docker: "DockerNetwork | None" = None

    def pools(self) -> tuple[OverlayPool, ...]:
        return self.ipv4 + self.ipv6

    def with_docker(self, docker: "DockerNetwork") -> "Overlay":
        return replace(self, docker=docker)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ipv4"] = [asdict(p) for p in self.ipv4]
        d["ipv6"] = [asdict(p) for p in self.ipv6]
        d["docker"] = self.docker.to_dict() if self.docker is not None else {}
        return d


@dataclass(frozen=True)
class Host:
    id: str
    vtep: str
    name: str = ""
    version: str = ""  # the pynet release it runs (`pynet hosts`); "" from pynets before it was written

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Advert:
    """A container on some host: what the others need to reach it through the tunnel."""

    overlay: str
    host: str
    endpoint: str
    mac: str
    vtep: str
    ips: tuple[str, ...] = ()  # plain addresses, v4 and/or v6
    # DNS names of the container (name, aliases, hostname, compose service), lower case, learnt from the
    # local Docker API in the background (clusterdns/docker_names.py); () until then.
    names: tuple[str, ...] = ()
    # A tombstone: the owner removed this container and is about to delete the key.  Written first so
    # the other hosts drop it at once; a delete alone may be a lease expiry, which gets the grace
    # (cluster/view.py).
    withdrawn: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ips"] = list(self.ips)
        if not self.withdrawn:
            del d["withdrawn"]  # a live advert's record stays as before
        d["names"] = list(self.names)
        return d


@dataclass(frozen=True)
class Member:
    network_id: str  # the Docker network id of the overlay on that host

    def to_dict(self) -> dict:
        return asdict(self)
