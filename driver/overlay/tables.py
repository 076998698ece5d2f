"""The kernel tables of an overlay that the reconciler owns.

``VxlanTable`` is one VXLAN device's view of the other hosts' containers: per remote MAC, the tunnel
entry to its host's VTEP, the bridge entry that pins the MAC to the VXLAN port, and one neighbour entry
per address (driver/kernel/vxlan.py has the three).  Desired comes from the control plane
(``remotes(overlay)``), actual from the device.  A device that is missing holds nothing and is not
written: the network is being created or removed, and its next ``register`` re-reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynet.driver.overlay.port import ControlPlane, Remote


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
