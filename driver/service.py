"""The network driver: what each NetworkDriver call means for pynet.

Design note.  Every create is a short list of steps -- validate, record the
desired state, make the kernel match it -- and undoes what it did if a later
step fails (style.md §8).  The kernel part of each create (``ensure_network``,
``ensure_endpoint``) is the same function that start-up reconciliation replays
for every stored record (driver/reconcile.py), so "create" and "come back after
a reboot" cannot drift apart.  Deletes tolerate absence: dockerd only logs
their errors (protocol.md §3.4, §3.8) and may send them twice.

Overlay networks (``pynet.mode=overlay``, only with a control plane) are the
same bridge plus what ``self.overlays`` (driver/overlay/networks.py) adds: a
claim in the cluster, a VXLAN device whose tables the reconciler fills, and an
advert per endpoint.  The bridge carries the overlay's gateway with one MAC on
every host (distributed gateway), so traffic for the gateway never crosses the
tunnel.

The veth pair is made in CreateEndpoint (so a failure is reported before the
container starts) and handed over in Join: dockerd moves ``SrcName`` into the
container, renames it eth<N> and configures addresses and routes itself.

Crash consistency.  A create writes its record before the kernel objects, and a
removal forgets the record before it frees anything the record held: firewall
rules first (rebuilt from the records that are left), then host-port claims,
then links.  A crash (SIGKILL, power loss) between two steps therefore leaves
only things *without* a record -- a link, a host-port claim -- never a record
whose port or address another container could be handed meanwhile.  Start-up
replay (driver/reconcile.py) re-programs only what has a record and collects
the rest; records dockerd itself no longer knows are collected by driver/gc.py.
``faults.reached`` marks the steps a crash test stops pynet at.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from dataclasses import dataclass, replace

from pynet import faults
from pynet.driver import names, options
from pynet.driver.external import Publisher
from pynet.driver.firewall import Firewall, check_network
from pynet.driver.kernel import sysctl
from pynet.driver.kernel.links import BridgeSpec, KernelError, Links, VethSpec
from pynet.driver.locks import KeyedLocks
from pynet.driver.macvlan import MacvlanNetworks, check_endpoint as check_macvlan_endpoint
from pynet.driver.models import Endpoint, IPAMData, Network
from pynet.driver.overlay.networks import OverlayNetworks
from pynet.driver.ports import PortReservations
from pynet.driver.repository import Repository
from pynet.errors import BadRequest, Conflict, NotFound, PynetError
from pynet.store.base import Store

log = logging.getLogger("pynet.driver")
_ID = re.compile(r"^[0-9a-f]{12,64}$")
# Held while a create checks that its kernel names are free and writes its record, so two creates
# whose names collide cannot both pass the check (only the store write is inside, never kernel work).
_NAMES = "kernel-names"


@dataclass(frozen=True)
class JoinInfo:
    src_name: str
    dst_prefix: str
    gateway: str = ""
    gateway_v6: str = ""
    routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop): StaticRoutes
    connected: tuple[str, ...] = ()  # CIDRs the container reaches on-link (StaticRoutes, RouteType 1)


def check_id(label: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):  # fullmatch: "$" would let "<id>\n" through
        raise BadRequest(f"{label} {value!r} is not a Docker ID (12 to 64 lowercase hex digits)")
    return value


class NetworkService:
    def __init__(self, store: Store, links: Links, firewall: Firewall, port_probe=None, set_sysctl=None,
                 overlays: OverlayNetworks | None = None):
        self.repo = Repository(store)
        self.overlays = overlays  # None: single host, no overlay mode
        self.links = links
        self.macvlan = MacvlanNetworks(links)  # pynet.mode=macvlan (driver/macvlan.py)
        self.firewall = firewall
        self.set_sysctl = set_sysctl or sysctl.ensure  # a kernel write like the others: tests pass a fake
        self._locks = KeyedLocks()
        self._fw_lock = threading.Lock()
        ports = PortReservations(store, port_probe) if port_probe else PortReservations(store)
        self.publisher = Publisher(self.repo, ports, self._locks, self.sync_firewall)

    # -- networks ------------------------------------------------------------------
    def create_network(self, network_id: str, opts: dict, ipv4: list[IPAMData], ipv6: list[IPAMData]) -> None:
        net = self._parse_network(network_id, opts, ipv4, ipv6)
        with self._locks.hold(network_id):
            self._check_bridge_free(net)  # early, before an overlay's claim; again under _NAMES below
            link = self.links.get(net.config.bridge) if net.config.bridge_given else None
            if link is not None:
                if link.kind != "bridge":
                    raise Conflict(f"option {options.BRIDGE_NAME}={net.config.bridge!r}: that link exists "
                                   f"and is a {link.kind or 'device'}, not a bridge")
                # A user-named bridge that already exists is adopted, and left in place at DeleteNetwork.
                net = replace(net, bridge_created=False)
            claim = None
            if _cluster_wide(net):
                net, claim = self.overlays.claim(net)  # the cluster: the overlay's VNI, pools, gateway
            try:
                with self._locks.hold(_NAMES):
                    self._check_bridge_free(net)
                    existing = self.repo.add_network(net)
            except Exception:
                if claim is not None:
                    self.overlays.undo(claim)
                raise
            if existing is not None:
                if replace(existing, bridge_created=net.bridge_created) != net:
                    raise Conflict(f"network {network_id[:12]} already exists with other settings")
                net = existing  # a retried CreateNetwork: make sure the kernel matches, nothing more
            try:
                self.ensure_network(net)
                self.sync_firewall()
                if _cluster_wide(net):
                    self.overlays.join(net)  # last: nothing after it can fail and need it undone
            except Exception as exc:
                if existing is None:
                    raise self._undo_network(net, exc, claim) from exc
                raise

    def _parse_network(self, network_id: str, opts: dict, ipv4: list[IPAMData], ipv6: list[IPAMData]) -> Network:
        check_id("NetworkID", network_id)
        config = options.parse_network_options(network_id, opts, multi_host=self.overlays is not None)
        ipv4, ipv6 = options.parse_ipam_list("IPv4Data", ipv4, 4), options.parse_ipam_list("IPv6Data", ipv6, 6)
        net = Network(id=network_id, config=config, ipv4=tuple(ipv4), ipv6=tuple(ipv6))
        if config.mode != "macvlan":  # macvlan networks have no bridge and never reach the firewall
            check_network(net)  # what could not become a rule is refused before any record or link
        if config.mode == "overlay":
            net = self.overlays.prepare(net, self.repo.networks())
        elif config.mode == "macvlan":
            net = self.macvlan.prepare(net, self.repo.networks())
        return net

    def _check_bridge_free(self, net: Network) -> None:
        for other in self.repo.networks():
            if other.id != net.id and net.config.bridge and other.config.bridge == net.config.bridge:
                raise Conflict(f"bridge {net.config.bridge!r} is already used by network {other.id[:12]}")
            if other.id != net.id and other.id[:12] == net.id[:12]:
                # Kernel names carry 12 digits of the ID (driver/names.py): both would own pn-/pnv<prefix>.
                raise Conflict(f"network {net.id}: its kernel names (from {net.id[:12]}) are already those "
                               f"of network {other.id}")

    def _check_endpoint_names_free(self, ep: Endpoint) -> None:
        mine = {ep.host_if, ep.container_if} - {""}  # a macvlan endpoint has no host end
        for other in self.repo.endpoints():
            if other.id != ep.id and {other.host_if, other.container_if} & mine:
                raise Conflict(f"endpoint {ep.id}: its interfaces {ep.host_if}/{ep.container_if} are already "
                               f"those of endpoint {other.id} on network {other.network_id[:12]}")

    def restore_network(self, net: Network) -> None:
        """Start-up replay of a stored network: its kernel side, and (overlay) this host's membership
        (a failed write is finished by the control plane later)."""
        self.ensure_network(net)
        if _cluster_wide(net) and self.overlays is not None:
            _best_effort(lambda: self.overlays.join(net), f"joining overlay {net.config.overlay!r}")

    def ensure_network(self, net: Network) -> bool:
        """Make the kernel match ``net`` (its bridge and gateway addresses). True if the bridge was created."""
        if net.config.mode == "macvlan":
            try:
                self.macvlan.ensure(net)  # no bridge, no gateway on the host: the segment has its own
            except KernelError as exc:
                raise PynetError(str(exc)) from None
            return False
        overlay = net.config.mode == "overlay"
        if overlay and self.overlays is None:
            raise PynetError(f"network {net.id[:12]} is overlay {net.config.overlay!r}: "
                             "start pynet with --etcd to bring it back")
        spec = BridgeSpec(
            name=net.config.bridge,
            mtu=net.config.mtu,
            mac=names.overlay_gateway_mac(net.config.overlay) if overlay else names.bridge_mac(net.id),
            addresses=tuple(net.gateways()),
        )
        try:
            created = self.links.ensure_bridge(spec, adopt_foreign=net.config.bridge_given)
            if overlay:
                self.overlays.ensure(net)
        except KernelError as exc:
            raise PynetError(str(exc)) from None
        # Loopback publishing (-p 127.0.0.1:X:Y) DNATs 127.0.0.1 towards the bridge,
        # which the kernel only routes off lo with route_localnet on the way out.
        self.set_sysctl(f"net/ipv4/conf/{net.config.bridge}/route_localnet", "1")
        if net.ipv6 and not net.config.internal:
            # dockerd only turns IPv6 forwarding on when it runs with --ipv6 itself;
            # without it v6 traffic never leaves a pynet bridge (Docker's bridge does the same).
            self.set_sysctl("net/ipv6/conf/all/forwarding", "1")
        return created

    def _undo_network(self, net: Network, exc: Exception, claim=None) -> Exception:
        """Remove what a failed create made; the error says what failed and how the rollback went."""
        try:
            self.repo.remove_network(net.id)  # the record first, as in every removal
            self._remove_network_kernel(net)
            if _cluster_wide(net):
                self.overlays.abandon(net)
                self.overlays.undo(claim)
            self.sync_firewall()
        except Exception as undo_exc:  # report both, never mask the original failure
            return PynetError(f"{exc}; rollback also failed: {undo_exc}")
        cls = type(exc) if isinstance(exc, PynetError) else PynetError
        return cls(f"{exc}; rolled back")

    def _remove_network_kernel(self, net: Network) -> None:
        if net.config.mode == "macvlan":
            return self.macvlan.remove(net, self.repo.networks)
        if net.config.mode == "overlay" and self.overlays is not None:
            self.overlays.remove(net)
        if net.bridge_created:
            self.links.delete(net.config.bridge)

    def delete_network(self, network_id: str, leave_cluster: bool = True) -> None:
        """Remove the network.  ``leave_cluster=False`` (the orphan collector: only this host's dockerd
        lost it) drops this host's membership only: leaving would remove the overlay from every host."""
        with self._locks.hold(network_id):
            net = self.repo.network(network_id)
            if net is None:
                return
            # Records first (endpoints, then the network), then the rules built from them, then what
            # they held: a crash in between leaves links and claims without records, collected at start.
            endpoints = self.repo.endpoints(network_id)
            for ep in endpoints:
                self.repo.remove_endpoint(network_id, ep.id)
            self.repo.remove_network(network_id)
            faults.reached("network-forgotten")
            try:
                self.sync_firewall()
                for ep in endpoints:
                    self.publisher.release(ep)  # only once no rule sends the ports to them
            finally:
                for ep in endpoints:
                    self._delete_links(ep)
                self._remove_network_kernel(net)
        if _cluster_wide(net) and self.overlays is not None:
            # dockerd only logs DeleteNetwork errors and forgets the network: with etcd down,
            # the control plane finishes this (a member key without a network) later.
            if leave_cluster:
                _best_effort(lambda: self.overlays.leave(net), f"leaving overlay {net.config.overlay!r}")
            else:
                _best_effort(lambda: self.overlays.abandon(net), f"dropping membership of {net.config.overlay!r}")

    def sync_firewall(self) -> None:
        with self._fw_lock:
            # macvlan networks have no bridge: nothing of theirs passes the host's FORWARD or NAT
            self.firewall.sync([n for n in self.repo.networks() if n.config.mode != "macvlan"], self.repo.endpoints())

    def keep_firewall_first(self) -> None:
        """dockerd re-inserts its rules at the top when it restarts, without telling pynet."""
        if self.repo.networks():
            self.firewall.keep_first()

    def network(self, network_id: str) -> Network:
        net = self.repo.network(network_id)
        if net is None:
            raise NotFound(f"network {network_id[:12]} not found")
        return net

    # -- endpoints -----------------------------------------------------------------
    def create_endpoint(self, network_id: str, endpoint_id: str, iface: dict, opts: dict) -> str:
        """Create the endpoint; returns the MAC to report back ("" when dockerd gave one)."""
        check_id("EndpointID", endpoint_id)
        net = self.network(network_id)
        epo = options.parse_endpoint_options(opts)
        address = options.validate_cidr("Interface.Address", iface.get("address", ""), 4)
        address_v6 = options.validate_cidr("Interface.AddressIPv6", iface.get("address_v6", ""), 6)
        given_mac = options.validate_mac(iface["mac"]) if iface.get("mac") else ""
        mac = given_mac or epo.mac or names.endpoint_mac(address, endpoint_id)
        ep = Endpoint(network_id=network_id, id=endpoint_id, host_if=names.host_veth(endpoint_id),
                      container_if=names.container_veth(endpoint_id), address=address,
                      address_v6=address_v6, mac=mac, exposed_ports=epo.exposed_ports,
                      port_bindings=epo.port_bindings)
        if net.config.mode == "macvlan":
            check_macvlan_endpoint(epo)
            ep = self.macvlan.endpoint(ep)
        with self._locks.hold(endpoint_id):
            with self._locks.hold(_NAMES):
                self._check_endpoint_names_free(ep)
                existing = self.repo.add_endpoint(ep)
            if existing is not None and existing != ep:
                raise Conflict(f"endpoint {endpoint_id[:12]} already exists with other settings")
            faults.reached("endpoint-recorded")
            try:
                self.ensure_endpoint(net, ep)
                if net.config.mode == "overlay":
                    self.overlays.advertise(net, ep)  # the other hosts program their tunnels from this
            except Exception as exc:
                self._remove_endpoint(ep)
                self._withdraw(net, ep)
                cls = type(exc) if isinstance(exc, PynetError) else PynetError
                raise cls(f"could not create endpoint {endpoint_id[:12]}: {exc}; rolled back") from exc
        return "" if given_mac else mac

    def ensure_endpoint(self, net: Network, ep: Endpoint) -> bool:
        """Make the veth pair exist with its host end on the network's bridge. True if created."""
        if net.config.mode == "macvlan":
            return self.macvlan.ensure_endpoint(net, ep)
        spec = VethSpec(host=ep.host_if, peer=ep.container_if, mtu=net.config.mtu,
                        bridge=net.config.bridge, peer_mac=ep.mac, peer_here=not ep.joined)
        return self.links.ensure_veth(spec)

    def restore_endpoint(self, net: Network, ep: Endpoint, pair_present: bool) -> None:
        """Start-up replay of a stored endpoint: its pair (unless its container is gone with it) and,
        on an overlay, its advert (a failed write is finished by the control plane later)."""
        if pair_present or not ep.joined or net.config.mode == "macvlan":  # macvlan: the host's route, at least
            self.ensure_endpoint(net, ep)
        if net.config.mode == "overlay" and self.overlays is not None:
            _best_effort(lambda: self.overlays.advertise(net, ep), f"advertising endpoint {ep.id[:12]}")

    def _remove_endpoint(self, ep: Endpoint) -> None:
        """Forget the endpoint, then free what it held (the caller holds its lock)."""
        self.repo.remove_endpoint(ep.network_id, ep.id)
        faults.reached("endpoint-forgotten")
        try:
            if ep.published:
                self.sync_firewall()  # no rule sends its host ports to it any more ...
            self.publisher.release(ep)  # ... before another container may claim them
        finally:
            # A failed sync keeps the claims (driver/gc.py releases them once the rules are gone);
            # the links go anyway: nothing else can take their names.
            self._delete_links(ep)

    def _delete_links(self, ep: Endpoint) -> None:
        if not ep.host_if:  # a macvlan endpoint: no pair, a link and the host's route to it
            self.macvlan.remove_endpoint(ep)
            return
        # After Leave dockerd moves the container end back under its SrcName, so
        # either name may be what is left of the pair (protocol.md §3.8).
        self.links.delete(ep.host_if)
        self.links.delete(ep.container_if)

    def _withdraw(self, net: Network, ep: Endpoint) -> None:
        if net.config.mode == "overlay" and self.overlays is not None:
            _best_effort(lambda: self.overlays.withdraw(net, ep), f"withdrawing endpoint {ep.id[:12]}")

    def endpoint(self, network_id: str, endpoint_id: str) -> Endpoint:
        ep = self.repo.endpoint(network_id, endpoint_id)
        if ep is None:
            raise NotFound(f"endpoint {endpoint_id[:12]} not found on network {network_id[:12]}")
        return ep

    def endpoint_info(self, network_id: str, endpoint_id: str) -> dict:
        ep = self.endpoint(network_id, endpoint_id)
        return {"host_interface": ep.host_if, "mac": ep.mac, "address": ep.address, "address_v6": ep.address_v6}

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        with self._locks.hold(endpoint_id):
            ep = self.repo.endpoint(network_id, endpoint_id)
            if ep is not None:
                self._remove_endpoint(ep)
        net = self.repo.network(network_id) if ep is not None else None
        if net is not None:
            self._withdraw(net, ep)

    def join(self, network_id: str, endpoint_id: str, sandbox_key: str, opts: dict) -> JoinInfo:
        net = self.network(network_id)
        with self._locks.hold(endpoint_id):
            ep = self.endpoint(network_id, endpoint_id)
            if not ep.joined:
                if self.links.get(ep.container_if) is None:
                    self.ensure_endpoint(net, ep)  # gone since CreateEndpoint (e.g. by hand): make it again
                self.repo.update_endpoint(network_id, endpoint_id, lambda e: replace(e, joined=True))
        if net.config.mode == "overlay" and self.overlays is not None and not self.overlays.settle(net):
            log.warning("join of %s: the tables of overlay %r are not up to date yet; answering anyway",
                        endpoint_id[:12], net.config.overlay)
        return JoinInfo(src_name=ep.container_if, dst_prefix="eth",
                        gateway=_gateway_for(net.ipv4, ep.address, net.config.internal),
                        gateway_v6=_gateway_for(net.ipv6, ep.address_v6, net.config.internal),
                        routes=self.overlays.resolver_routes(net, _gateway_for(net.ipv4, ep.address, False),
                                                             _gateway_for(net.ipv6, ep.address_v6, False))
                        if net.config.mode == "overlay" and self.overlays is not None else (),
                        connected=self.macvlan.connected(net, ep) if net.config.mode == "macvlan" else ())

    def leave(self, network_id: str, endpoint_id: str) -> None:
        """Unpublish what ProgramExternalConnectivity made; dockerd moves the interface back itself.

        Docker up to 28 always sends Revoke before Leave, so this finds nothing.  Docker 29's remote
        shim remembers in memory only which endpoint it programmed (moby#50283, #50321): after a daemon
        restart with live-restore, no Revoke comes for endpoints joined before it, and without this
        their NAT rules and host ports would outlive the container.  Unknown IDs are success (dockerd
        sends Leave at start-up for endpoints it no longer has, moby#47984)."""
        self.publisher.revoke(network_id, endpoint_id)

    def gateway_skips(self, opts: dict) -> dict:
        """GwAllocCheck (Docker 28+): may IPAM skip reserving the network's gateway addresses?  Never:
        a bridge or overlay network puts its gateway on the bridge (the containers' next hop and the
        address published ports are DNATed through), and a macvlan network's gateway is the segment's
        router, an address IPAM must not hand to a container.  The options are checked as far as they
        can be without a network ID; CreateNetwork checks them in full."""
        generic = opts.get(options.GENERIC) or {}
        if not isinstance(generic, dict):
            raise BadRequest(f"{options.GENERIC} must be an object")
        return {"SkipIPv4": False, "SkipIPv6": False}

    def busy(self, record_id: str) -> bool:
        """Is a request working on this network or endpoint right now? (driver/gc.py leaves it alone)"""
        return self._locks.busy(record_id)

    # -- external connectivity (driver/external.py) --------------------------------------
    def program_external(self, network_id: str, endpoint_id: str, opts: dict) -> None:
        net = self.network(network_id)
        self.publisher.program(net, endpoint_id, opts, lambda: self.endpoint(network_id, endpoint_id))

    def revoke_external(self, network_id: str, endpoint_id: str) -> None:
        self.publisher.revoke(network_id, endpoint_id)

    def published(self) -> list[tuple[Endpoint, dict]]:
        """Every published binding with its endpoint, for `pynet ports`."""
        return [(ep, b) for ep in self.repo.endpoints() for b in ep.published]


def _cluster_wide(net: Network) -> bool:
    """An overlay, or a macvlan network with pynet.overlay: one network of the cluster, claimed in it."""
    return net.config.mode == "overlay" or (net.config.mode == "macvlan" and bool(net.config.overlay))


def _best_effort(fn, what: str) -> None:
    try:
        fn()
    except Exception as exc:  # the control plane finishes it in the background; the local part is done
        log.warning("%s failed (will be finished in the background): %s", what, exc)


def _gateway_for(pools: tuple[IPAMData, ...], address: str, internal: bool) -> str:
    """The plain gateway IP of the pool holding ``address`` ("" if none or internal)."""
    if internal or not address:
        return ""
    ip = ipaddress.ip_interface(address).ip
    for data in pools:
        if data.gateway and ip in ipaddress.ip_network(data.pool, strict=False):
            return str(ipaddress.ip_interface(data.gateway).ip)
    return ""
