"""ClusterService: what the driver's request handlers need from the cluster, and the shared state
(view, lease, programmed tables) the background agent keeps current.

Design note.  A handler only makes atomic writes to etcd (claim an overlay,
join it, advertise an endpoint) and programs this host's kernel from the view
it already has; it never waits for other hosts and never calls the Docker API.
Each etcd call fails within the store's timeout (Unavailable -> HTTP 503 with a
message naming etcd), so an etcd outage can slow dockerd by seconds, never hang it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from pynet.cluster.models import Advert, Host, Overlay, OverlayPool
from pynet.cluster.registry import OverlayRegistry
from pynet.cluster.view import ClusterView, Remote
from pynet.driver import names
from pynet.store.base import LeaseNotFound
from pynet.driver.kernel.links import KernelError, Links
from pynet.driver.models import Endpoint, Network
from pynet.store import keys
from pynet.store.base import Store
from pynet.store.update import put

log = logging.getLogger("pynet.cluster")
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (Docker's overlay uses the same)


class Membership:
    """This host's lease and its key ``hosts/<id>``; adverts ride on the same lease."""

    def __init__(self, store: Store, host: Host, ttl: int) -> None:
        self.store = store
        self.host = host
        self.ttl = ttl
        self.lease = 0
        self.generation = 0  # bumped with every new lease: the agent then re-advertises everything
        self._lock = threading.Lock()

    def current(self) -> int:
        """The live lease id, granting one first if there is none (Unavailable if etcd is down)."""
        with self._lock:
            if not self.lease:
                self._grant()
            return self.lease

    def replace(self, dead: int) -> int:
        """A write found lease ``dead`` gone (expired in an outage): grant a new one unless done already."""
        with self._lock:
            if self.lease == dead:
                self._grant()
            return self.lease

    def keepalive(self) -> bool:
        """Refresh the lease, or grant a new one if it expired; True when it is new."""
        with self._lock:
            if self.lease and self.store.refresh_lease(self.lease):
                return False
            self._grant()
            return True

    def _grant(self) -> None:
        lease = self.store.grant_lease(self.ttl)
        put(self.store, keys.host(self.host.id), self.host.to_dict(), lease)
        if self.lease:
            log.warning("lease of host %s expired (etcd unreachable for more than %d s?): re-registered",
                        self.host.id, self.ttl)
        self.lease = lease
        self.generation += 1


class ClusterService:
    def __init__(self, store: Store, links: Links, host_id: str, vtep: str, lease_ttl: int = 15) -> None:
        self.store = store
        self.links = links
        self.host_id = host_id
        self.vtep = vtep
        self.registry = OverlayRegistry(store, host_id)
        self.membership = Membership(store, Host(host_id, vtep), lease_ttl)
        self.view = ClusterView()
        self.view_lock = threading.Lock()
        self._programmed: dict[str, dict[str, Remote]] = {}  # vxlan device -> what it holds
        self._tables_lock = threading.Lock()
        self._mtu = 0
        self.wakeup = threading.Event()  # handlers poke the agent's Docker sync after a change

    # -- handler side --------------------------------------------------------------
    def default_mtu(self) -> int:
        """The underlay's MTU minus the VXLAN overhead (1450 on a 1500 underlay)."""
        if not self._mtu:
            try:
                self._mtu = self.links.underlay_mtu(self.vtep) - VXLAN_OVERHEAD
            except KernelError as exc:
                raise KernelError(f"VTEP address {self.vtep}: {exc} (set --vtep-address to this host's "
                                  "underlay address)") from None
        return self._mtu

    def claim(self, net: Network) -> tuple[Overlay, bool]:
        wanted = Overlay(
            name=net.config.overlay, vni=0,
            ipv4=tuple(OverlayPool(_canonical(d.pool), d.gateway) for d in net.ipv4),
            ipv6=tuple(OverlayPool(_canonical(d.pool), d.gateway) for d in net.ipv6),
            internal=net.config.internal, origin_network=net.id)
        return self.registry.claim(wanted, net.config.vni)

    def join(self, net: Network) -> None:
        self.registry.join(net.config.overlay, net.id)
        self.wakeup.set()

    def undo(self, record: Overlay) -> None:
        self.registry.undo_claim(record)

    def leave(self, net: Network) -> None:
        self.registry.leave(net.config.overlay, net.id)
        with self._tables_lock:
            self._programmed.pop(names.vxlan_name(net.id), None)

    def view_members(self) -> dict:
        """(overlay, host) -> Member as the view has them (housekeeping's snapshot)."""
        with self.view_lock:
            return dict(self.view.members)

    def advert(self, net: Network, ep: Endpoint) -> Advert:
        ips = tuple(str(ipaddress.ip_interface(a).ip) for a in (ep.address, ep.address_v6) if a)
        return Advert(overlay=net.config.overlay, host=self.host_id, endpoint=ep.id, mac=ep.mac,
                      vtep=self.vtep, ips=ips)

    def advertise(self, net: Network, ep: Endpoint) -> None:
        self.put_advert(self.advert(net, ep), self.membership.current())

    def put_advert(self, advert: Advert, lease: int) -> None:
        try:
            self.registry.advertise(advert, lease)
        except LeaseNotFound:  # expired while etcd was away; the keep-alive has not noticed yet
            self.registry.advertise(advert, self.membership.replace(lease))

    def withdraw(self, net: Network, ep: Endpoint) -> None:
        self.registry.withdraw(net.config.overlay, ep.id)

    # -- kernel tables (handlers after creating a VXLAN device, and the agent) ------------
    def program(self, net: Network, reread: bool = False) -> int:
        """Make the network's VXLAN device hold exactly the remote containers the view knows.
        Returns the number of entries changed."""
        dev = names.vxlan_name(net.id)
        with self.view_lock:
            if not self.view.loaded:
                # Start-up replay runs before the agent's first listing (and etcd may be down):
                # an empty view must not wipe the tables the kernel kept for running containers.
                return 0
            desired = self.view.remotes(net.config.overlay, self.host_id)
        with self._tables_lock:
            actual = self._programmed.get(dev)
            if actual is None or reread:
                if self.links.get(dev) is None:
                    return 0
                actual = dict(self.links.remotes(dev))
            changed = 0
            for mac, (vtep, ips) in list(actual.items()):
                if desired.get(mac) != (vtep, ips):
                    self.links.delete_remote(dev, mac, vtep, sorted(ips))
                    del actual[mac]
                    changed += 1
            for mac, (vtep, ips) in desired.items():
                if mac not in actual:
                    self.links.ensure_remote(dev, mac, vtep, sorted(ips))
                    actual[mac] = (vtep, ips)
                    changed += 1
            self._programmed[dev] = actual
            return changed


def _canonical(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))
