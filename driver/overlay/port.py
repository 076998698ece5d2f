"""The port between the network driver and the overlay control plane.

Design note.  The driver decides what this host has (networks, endpoints, kernel objects); the control
plane shares it with the other hosts and tells the driver what *they* have.  Everything crosses this
seam as the frozen values below, never as the control plane's own records, so the driver does not know
etcd exists and cluster/ (the etcd implementation) never imports the driver's internals.

Calls the driver makes from request handlers (``claim`` ... ``withdraw``) are bounded by the control
plane's store timeout and raise ``pynet.errors`` (Unavailable when the store cannot be reached,
Conflict for an incompatible overlay).  ``join``/``advertise`` record this host's intent *before* they
write, and ``leave``/``withdraw`` drop it before they delete: a write that fails is finished by the
control plane in the background, so the driver never retries.  ``remotes``, ``members`` and ``subscribe`` feed the
reconciler (reconciler.py), the only writer of the kernel tables.  Starting and stopping the control
plane's background work is the composition root's business (plugin/compose.py), not the driver's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

ALL = "*"  # in a change notification: every overlay may have changed (a host, a reload)
Changes = dict  # overlay name or ALL -> frozenset of MACs, or None for "all of them"


@dataclass(frozen=True)
class Pool:
    """One address pool of an overlay."""

    cidr: str  # canonical network, e.g. "10.10.0.0/24"
    gateway: str = ""  # CIDR with the pool's prefix length, "" for none


@dataclass(frozen=True)
class OverlaySpec:
    """What a CreateNetwork on this host asks of the cluster."""

    name: str  # pynet.overlay: the cluster-wide identity
    network_id: str  # this host's Docker network id for it
    vni: int = 0  # 0: the control plane picks a free one
    ipv4: tuple[Pool, ...] = ()
    ipv6: tuple[Pool, ...] = ()
    internal: bool = False


@dataclass(frozen=True)
class Claim:
    name: str
    vni: int
    created: bool  # this claim created the overlay cluster-wide: ``undo`` removes it again


@dataclass(frozen=True)
class LocalEndpoint:
    """A container on this host, as the other hosts need to know it."""

    overlay: str
    endpoint_id: str
    mac: str
    ips: tuple[str, ...]  # plain addresses, v4 and/or v6


@dataclass(frozen=True)
class Remote:
    """A container on another host: where its MAC lives and which addresses it answers."""

    vtep: str
    ips: frozenset[str]


class ControlPlane(Protocol):
    def claim(self, spec: OverlaySpec) -> Claim:
        """The overlay ``spec.name``: the existing one if compatible (same pools, gateways, VNI if given,
        --internal), else a new one with a unique VNI.  Conflict names the difference; safe to race."""

    def undo(self, claim: Claim) -> None:
        """Take back a claim that created the overlay (rollback of a failed CreateNetwork)."""

    def join(self, name: str, network_id: str) -> None:
        """This host has Docker network ``network_id`` for overlay ``name``.  Idempotent."""

    def leave(self, name: str, network_id: str) -> None:
        """This host's copy is gone; the overlay goes cluster-wide once no host has one.  Idempotent."""

    def abandon(self, name: str, network_id: str) -> None:
        """Undo a ``join`` whose CreateNetwork failed: this host's membership goes, the overlay stays."""

    def advertise(self, endpoint: LocalEndpoint) -> None:
        """Make ``endpoint`` known to every other host (and keep it known while this host lives)."""

    def withdraw(self, overlay: str, endpoint_id: str) -> None:
        """Stop advertising an endpoint of this host.  Unknown endpoints are fine."""

    def remotes(self, overlay: str, macs: Iterable[str] | None = None) -> dict[str, Remote] | None:
        """MAC -> Remote of every container of ``overlay`` on another host (of just ``macs``, if given);
        None while the control plane does not know the cluster yet (the tables must then be left as
        they are, not emptied)."""

    def members(self) -> frozenset[str] | None:
        """The VTEP address of every host in the cluster view (this one included): the only sources the
        VXLAN filter accepts; None while the control plane does not know the cluster yet.  A change is
        notified as ``{ALL: None}``."""

    def subscribe(self, listener: Callable[[Changes], None]) -> None:
        """Call ``listener(changes)`` after ``remotes`` changed: overlay name (or ``ALL``) -> the MACs whose
        entries may differ, or None for all of them."""
