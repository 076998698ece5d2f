"""What the network driver does for ``pynet.mode=overlay`` networks, on top of the bridge every network has.

Design note.  An overlay network here is the network's bridge plus one VXLAN device on it (``pnv<id>``),
whose tables (remote MAC -> VTEP, IP -> MAC) the reconciler owns.  This class is the driver's one user
of the control-plane port: it turns the driver's records into the port's values (OverlaySpec,
LocalEndpoint) and back, checks what only an overlay needs (pynet's IPAM, one copy per host, an MTU the
underlay can carry), and registers each device's table with the reconciler.  It never writes a table.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import replace

from pynet.driver import names, options
from pynet.driver.kernel.links import KernelError, VxlanSpec
from pynet.driver.models import Endpoint, Network
from pynet.driver.overlay.port import ALL, Claim, ControlPlane, LocalEndpoint, OverlaySpec, Pool
from pynet.driver.overlay.reconciler import Reconciler
from pynet.driver.overlay.tables import VxlanTable, vxlan_table_name
from pynet.errors import BadRequest, Conflict, PynetError

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (Docker's overlay uses the same)
JOIN_WAIT = 2.0  # seconds a Join waits for its network's tables before answering anyway
PYNET_SPACES = ("pynet-local", "pynet-global")


class OverlayNetworks:
    def __init__(self, control: ControlPlane, reconciler: Reconciler, links, vtep: str,
                 join_wait: float = JOIN_WAIT, dns_address: str = "", members=None) -> None:
        self.control = control
        self.dns_address = dns_address  # the cluster resolver's (clusterdns/), "" for none
        self.members = members  # tables.MembersTable: registered while this host has an overlay
        self.join_wait = join_wait
        self.reconciler = reconciler
        self.links = links  # driver.kernel.links.Links: the VXLAN device and the underlay's MTU
        self.vtep = vtep
        self._mtu = 0
        self._tables: dict[str, str] = {}  # overlay name -> its table's name on this host
        self._lock = threading.Lock()
        control.subscribe(self._changed)

    def _changed(self, changes: dict) -> None:
        """The control plane's remotes changed: nudge the tables concerned (only the MACs named)."""
        for overlay, macs in changes.items():
            if overlay == ALL:
                self.reconciler.nudge([ALL])
                continue
            with self._lock:
                table = self._tables.get(overlay)
            if table is not None:
                self.reconciler.nudge([table], keys=macs)

    # -- CreateNetwork ------------------------------------------------------------------
    def default_mtu(self) -> int:
        """The underlay's MTU minus the VXLAN overhead (1450 on a 1500 underlay)."""
        if not self._mtu:
            try:
                self._mtu = self.links.underlay_mtu(self.vtep) - VXLAN_OVERHEAD
            except KernelError as exc:
                raise PynetError(f"VTEP address {self.vtep}: {exc} (set --vtep-address to this host's "
                                 "underlay address)") from None
        return self._mtu

    def prepare(self, net: Network, others: list[Network]) -> Network:
        """Check an overlay create against this host, and settle its MTU (underlay - 50 by default)."""
        config = net.config
        for data in net.ipv4 + net.ipv6:
            if data.address_space not in PYNET_SPACES:
                raise BadRequest(f"pynet.mode=overlay needs --ipam-driver pynet (addresses must be unique across "
                                 f"hosts); this network uses the {data.address_space or 'default'!r} address space")
        if not net.ipv4 and not net.ipv6:
            raise BadRequest("pynet.mode=overlay needs an address pool")
        for other in others:
            if other.id != net.id and other.config.overlay == config.overlay:
                raise Conflict(f"overlay {config.overlay!r} already has network {other.id[:12]} on this host")
        limit = self.default_mtu()
        if config.mtu > limit:
            raise BadRequest(f"option {options.MTU}={config.mtu}: the underlay carries at most {limit} "
                             f"inside VXLAN (underlay MTU - 50)")
        return replace(net, config=replace(config, mtu=config.mtu or limit))

    def claim(self, net: Network) -> tuple[Network, Claim]:
        """Claim the overlay cluster-wide (its VNI, pools and gateways); the network with its VNI."""
        claim = self.control.claim(spec_of(net))
        return replace(net, config=replace(net.config, vni=claim.vni)), claim

    def undo(self, claim: Claim | None) -> None:
        if claim is not None and claim.created:
            self.control.undo(claim)

    def join(self, net: Network) -> None:
        self.control.join(net.config.overlay, net.id)

    # -- the kernel ---------------------------------------------------------------------
    def ensure(self, net: Network) -> None:
        """The network's VXLAN device, on its bridge; its table registered (and re-read) with the reconciler."""
        self.links.ensure_vxlan(VxlanSpec(name=names.vxlan_name(net.id), vni=net.config.vni, local=self.vtep,
                                          bridge=net.config.bridge, mtu=net.config.mtu))
        table = VxlanTable(names.vxlan_name(net.id), net.config.overlay, self.control, self.links)
        with self._lock:  # decide and register under one lock, as ``remove`` decides and unregisters
            first = not self._tables
            self._tables[net.config.overlay] = table.name
            if self.members is not None and (first or self.members.name not in self.reconciler.tables()):
                self.reconciler.register(self.members)
        self.reconciler.register(table)

    def remove(self, net: Network) -> None:
        """The device goes (and its table with it); absence is fine."""
        name = vxlan_table_name(names.vxlan_name(net.id))
        with self._lock:
            if self._tables.get(net.config.overlay) == name:
                del self._tables[net.config.overlay]
            last = not self._tables
        self.reconciler.unregister(name)  # may wait for a pass under way
        if last and self.members is not None:
            with self._lock:
                # re-checked: an overlay created while this one was unregistering has registered the
                # members table again, and taking it away would leave that overlay's filter unarmed
                still_last = not self._tables
                if still_last:
                    self.reconciler.unregister(self.members.name)  # the firewall destroys the set after its rule
        self.links.delete(names.vxlan_name(net.id))

    def settle(self, net: Network) -> bool:
        """Wait (at most ``join_wait``) until the reconciler has caught up with this network's table."""
        return self.reconciler.settle(vxlan_table_name(names.vxlan_name(net.id)), self.join_wait)

    def resolver_routes(self, net: Network, gateway: str, gateway_v6: str) -> tuple[tuple[str, str], ...]:
        """An --internal overlay has no default route: a static one to the cluster resolver through the
        network's gateway (the host's address on the bridge), so its names resolve too."""
        if not net.config.internal or not self.dns_address:
            return ()
        v6 = ":" in self.dns_address
        hop = gateway_v6 if v6 else gateway
        return ((f"{self.dns_address}/{128 if v6 else 32}", hop),) if hop else ()

    # -- endpoints and departures ---------------------------------------------------------
    def advertise(self, net: Network, ep: Endpoint) -> None:
        ips = tuple(str(ipaddress.ip_interface(a).ip) for a in (ep.address, ep.address_v6) if a)
        self.control.advertise(LocalEndpoint(overlay=net.config.overlay, endpoint_id=ep.id, mac=ep.mac, ips=ips))

    def withdraw(self, net: Network, ep: Endpoint) -> None:
        self.control.withdraw(net.config.overlay, ep.id)

    def leave(self, net: Network) -> None:
        self.control.leave(net.config.overlay, net.id)

    def abandon(self, net: Network) -> None:
        self.control.abandon(net.config.overlay, net.id)


def spec_of(net: Network) -> OverlaySpec:
    def pools(datas):
        return tuple(Pool(str(ipaddress.ip_network(d.pool, strict=False)), d.gateway) for d in datas)

    return OverlaySpec(name=net.config.overlay, network_id=net.id, vni=net.config.vni, ipv4=pools(net.ipv4),
                       ipv6=pools(net.ipv6), internal=net.config.internal)
