"""The driver's domain records: what is stored per network and per endpoint.

They are plain dataclasses; ``to_dict``/``from_dict`` are the only
serialisation, used by driver/repository.py.  Everything a later request, a
restart or a garbage collection needs is in here, so nothing has to be asked
of dockerd (which never re-sends CreateNetwork/CreateEndpoint, protocol.md §6.7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pynet.records import known_fields


@dataclass(frozen=True)
class IPAMData:
    """One pool of a network as dockerd passes it in CreateNetwork (CIDR strings)."""

    pool: str
    gateway: str = ""  # CIDR with the pool's prefix length, "" when none was reserved
    address_space: str = ""
    aux_addresses: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkConfig:
    """The parsed, validated options of a network (driver/options.py builds it)."""

    mode: str = "bridge"
    bridge: str = ""  # the Linux bridge's name
    bridge_given: bool = False  # the user named the bridge (pynet.bridge_name)
    mtu: int = 1500
    internal: bool = False
    enable_ipv6: bool = False
    masquerade: bool = True
    icc: bool = True
    host_binding_ipv4: str = "0.0.0.0"
    overlay: str = ""
    vni: int = 0
    parent: str = ""  # pynet.mode=macvlan: the host interface (IFACE or IFACE.VLAN), "" when --internal


@dataclass(frozen=True)
class Network:
    id: str
    config: NetworkConfig
    ipv4: tuple[IPAMData, ...] = ()
    ipv6: tuple[IPAMData, ...] = ()
    bridge_created: bool = True  # False when pynet adopted a bridge that already existed

    def gateways(self) -> list[str]:
        """Every gateway CIDR to put on the bridge."""
        return [d.gateway for d in self.ipv4 + self.ipv6 if d.gateway]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Network":
        return cls(
            id=d["id"],
            config=NetworkConfig(**known_fields(NetworkConfig, d["config"])),
            ipv4=tuple(IPAMData(**x) for x in d.get("ipv4", ())),
            ipv6=tuple(IPAMData(**x) for x in d.get("ipv6", ())),
            bridge_created=d.get("bridge_created", True),
        )


@dataclass(frozen=True)
class Endpoint:
    network_id: str
    id: str
    host_if: str  # host end of the veth pair, on the bridge
    container_if: str  # the end handed to dockerd in Join (SrcName)
    address: str = ""  # CIDR
    address_v6: str = ""  # CIDR
    mac: str = ""
    joined: bool = False
    exposed_ports: list = field(default_factory=list)
    port_bindings: list = field(default_factory=list)
    published: list = field(default_factory=list)  # driver.ports.Binding dicts, set by ProgramExternalConnectivity

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Endpoint":
        return cls(**known_fields(cls, d))
