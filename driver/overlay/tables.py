"""The kernel tables of an overlay that the reconciler owns.

``VxlanTable`` is one VXLAN device's view of the other hosts' containers: per remote MAC, the tunnel
entry to its host's VTEP, the bridge entry that pins the MAC to the VXLAN port, and one neighbour entry
per address (driver/kernel/vxlan.py has the three).  Desired comes from the control plane
(``remotes(overlay)``), actual from the device.  A device that is missing holds nothing and is not
written: the network is being created or removed, and its next ``register`` re-reads it.

``MembersTable`` is the kernel set of member VTEPs (driver/kernel/ipset.py) that the firewall's VXLAN
filter accepts: desired is every host's VTEP in the control plane's view (``members()``), so a host
that the view keeps for a while after its lease ended stays a member as long; actual is the set.  Keys
are IPv4Address values parsed here (a VTEP that is not IPv4 is not in the IPv4 set).  The set is created
by the first add if the firewall has not made it yet, and only ever changed entry by entry.  After each
whole pass ``synced`` arms the filter (firewall.IptablesFirewall.arm).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Callable

from pynet.driver.overlay.port import ControlPlane, Remote

log = logging.getLogger("pynet.reconciler")
MEMBERS_TABLE = "members:vteps"


@dataclass(frozen=True)
class Unpinned:
    """An entry the kernel has without its bridge pin (the device left its bridge): never equal to a
    desired Remote, so the diff removes it and programs it whole again."""

    vtep: str
    ips: frozenset[str]


def vxlan_table_name(device: str) -> str:
    return f"fdb:{device}"


@dataclass
class VxlanTable:
    device: str  # the VXLAN device, pnv<network id[:12]>
    overlay: str  # its overlay's name, the key of the control plane's remotes
    control: ControlPlane
    links: object  # driver.kernel.links.Links (get, remotes, ensure_remote, delete_remote)

    @property
    def name(self) -> str:
        return vxlan_table_name(self.device)

    def desired(self) -> dict[str, Remote] | None:
        return self.control.remotes(self.overlay)

    def desired_for(self, macs: frozenset[str]) -> dict[str, Remote] | None:
        return self.control.remotes(self.overlay, macs)

    def actual(self) -> dict[str, Remote | Unpinned]:
        unpinned = self.links.unpinned(self.device)
        return {mac: (Unpinned if mac in unpinned else Remote)(vtep, frozenset(ips))
                for mac, (vtep, ips) in self.links.remotes(self.device).items()}

    def add(self, mac: str, remote: Remote) -> None:
        if self.links.get(self.device) is not None:
            self.links.ensure_remote(self.device, mac, remote.vtep, sorted(remote.ips))

    def remove(self, mac: str, remote: Remote | Unpinned) -> None:
        self.links.delete_remote(self.device, mac, remote.vtep, sorted(remote.ips))


@dataclass
class MembersTable:
    control: ControlPlane
    sets: object  # driver.kernel.ipset.IpSets (ensure, members, add, delete)
    set_name: str
    on_synced: Callable[[], object] = lambda: None  # the firewall's ``arm``
    name: str = MEMBERS_TABLE

    def desired(self) -> dict[ipaddress.IPv4Address, bool] | None:
        vteps = self.control.members()
        if vteps is None:
            return None
        out = {}
        for vtep in vteps:
            try:
                ip = ipaddress.ip_address(vtep)
            except ValueError:
                log.warning("member VTEP %r is not an address: not accepted", vtep)
                continue
            if ip.version == 4:
                out[ip] = True
        return out

    def desired_for(self, keys: frozenset) -> dict[ipaddress.IPv4Address, bool] | None:
        desired = self.desired()
        return None if desired is None else {k: v for k, v in desired.items() if k in keys}

    def actual(self) -> dict[ipaddress.IPv4Address, bool]:
        return dict.fromkeys(self.sets.members(self.set_name) or (), True)

    def add(self, ip: ipaddress.IPv4Address, _value: bool) -> None:
        self.sets.ensure(self.set_name)
        self.sets.add(self.set_name, ip)

    def remove(self, ip: ipaddress.IPv4Address, _value: bool) -> None:
        self.sets.delete(self.set_name, ip)

    def synced(self) -> None:
        self.on_synced()
