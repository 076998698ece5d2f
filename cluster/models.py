"""The cluster records as stored in etcd (plain dataclasses, JSON via to_dict/from_dict)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pynet.records import known_fields

ACTIVE = "active"
REMOVING = "removing"  # `docker network rm` ran on some host: every host drops its copy once unused


@dataclass(frozen=True)
class OverlayPool:
    pool: str  # canonical CIDR
    gateway: str = ""  # CIDR with the pool's length, "" for none

    @classmethod
    def from_dict(cls, d: dict) -> "OverlayPool":
        return cls(d["pool"], d.get("gateway", ""))


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
    # How to create the Docker network on another host (Engine API NetworkCreateRequest),
    # learnt from the origin's dockerd in the background; {} until then.
    docker: dict = field(default_factory=dict)

    def pools(self) -> tuple[OverlayPool, ...]:
        return self.ipv4 + self.ipv6

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Overlay":
        return cls(
            name=d["name"], vni=int(d["vni"]),
            ipv4=tuple(OverlayPool.from_dict(p) for p in d.get("ipv4", ())),
            ipv6=tuple(OverlayPool.from_dict(p) for p in d.get("ipv6", ())),
            internal=bool(d.get("internal", False)), origin=d.get("origin", ""),
            origin_network=d.get("origin_network", ""), state=d.get("state", ACTIVE),
            docker=dict(d.get("docker") or {}),
        )


@dataclass(frozen=True)
class Host:
    id: str
    vtep: str
    name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Host":
        return cls(**known_fields(cls, d))


@dataclass(frozen=True)
class Advert:
    """A container on some host: what the others need to reach it through the tunnel."""

    overlay: str
    host: str
    endpoint: str
    mac: str
    vtep: str
    ips: tuple[str, ...] = ()  # plain addresses, v4 and/or v6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ips"] = list(self.ips)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Advert":
        d = known_fields(cls, d)
        d["ips"] = tuple(d.get("ips", ()))
        return cls(**d)


@dataclass(frozen=True)
class Member:
    network_id: str  # the Docker network id of the overlay on that host

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Member":
        return cls(**known_fields(cls, d))
