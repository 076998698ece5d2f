"""What the network driver does for ``pynet.mode=macvlan`` networks: containers straight on a parent's segment.

Design note.  A macvlan network has no bridge: each container's interface is a bridge-mode macvlan link
on the parent (``pnc<endpoint>``, made in CreateEndpoint and handed to dockerd in Join like a veth's
container end), with the MAC derived from its address as on a bridge network.  What pynet adds to
Docker's own macvlan driver:

* ``parent=IFACE.VLAN`` that does not exist is created as an 802.1Q sub-interface and deleted with the
  last network that uses it -- only if pynet made it (the kernel holds the mark: kernel/macvlan.py);
* the host reaches its own containers: a macvlan parent never sees its children's frames, so every
  network gets a host-side macvlan ``pnm<network>`` on the same parent, with a /32 route and a permanent
  neighbour entry per container of this host (other hosts' containers are reached over the parent, as
  any station on the segment);
* with ``pynet.overlay=NAME`` (multi-host only) the network is cluster-wide like an overlay: claimed
  in etcd through the control-plane port (driver/service.py does that, as for overlays), created by
  pynet on every host, and its pools and addresses are one address space in the cluster's IPAM, so
  two hosts on one segment never hand out the same address.  Nothing is advertised: the segment
  itself carries the frames.

``--internal`` means no parent, as with Docker's macvlan: the containers of one host sit on a veth pair
attached to nothing (``pnd<network>``/``pne<network>``; Docker uses a dummy link, which this kernel
lacks) and reach only each other.  Published ports
do not apply (the containers are on the segment) and are refused by name.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import replace

from pynet.driver import names, options
from pynet.driver.kernel.links import KernelError
from pynet.driver.kernel.macvlan import HostRoute, MacvlanSpec
from pynet.driver.models import Endpoint, Network, NetworkConfig
from pynet.errors import BadRequest, Conflict
from pynet.parsing import parse_name

MODE = "macvlan"
PARENT = options.PARENT
VLAN = re.compile(r"^(?P<lower>.+)\.(?P<vid>[0-9]{1,4})$")
VLAN_MAX = 4094
PYNET_SPACES = ("pynet-local", "pynet-global")
# Options of a bridge network that mean nothing without a bridge: refused rather than ignored.
NOT_FOR_MACVLAN = (options.BRIDGE_NAME, options.MASQUERADE, options.ICC, options.HOST_BINDING, options.VNI)


# -- CreateNetwork's options (pure) -----------------------------------------------------------------
def parse_options(network_id: str, generic: dict, opts: dict, multi_host: bool) -> NetworkConfig:
    """The NetworkConfig of a macvlan network; BadRequest names the option that is wrong."""
    for key in NOT_FOR_MACVLAN:
        if key in generic:
            raise BadRequest(f"option {key} does not apply to {options.MODE}=macvlan networks (they have no bridge)")
    internal = options._bool("--internal", opts.get("com.docker.network.internal", False))
    parent = str(generic.get(PARENT, ""))
    if internal and parent:
        raise BadRequest(f"option {PARENT}={parent!r}: an --internal macvlan network has no parent "
                         "(as with Docker's macvlan); leave it out")
    if not internal and not parent:
        raise BadRequest(f"{options.MODE}=macvlan needs -o {PARENT}=IFACE (or IFACE.VLAN), or --internal")
    if parent:
        check_parent(parent)
    overlay = ""
    if options.OVERLAY in generic:
        if not multi_host:
            raise BadRequest(f"option {options.OVERLAY} (a cluster-wide macvlan network) needs a multi-host pynet "
                             "(pynet serve --etcd URLS); this one is single-host")
        # fullmatch (pynet/parsing.py): a pattern ending in $ with match() also takes a trailing newline
        overlay = parse_name(generic[options.OVERLAY], f"option {options.OVERLAY}")
    return NetworkConfig(
        mode=MODE, bridge="", mtu=options._int(options.MTU, generic[options.MTU], 68, 65535)
        if options.MTU in generic else 0,  # 0: the parent's
        internal=internal, enable_ipv6=options._bool("--ipv6", opts.get("com.docker.network.enable_ipv6", False)),
        masquerade=False, overlay=overlay, parent=parent)


def check_parent(parent: str) -> None:
    if not names.valid_ifname(parent):
        raise BadRequest(f"option {PARENT}={parent!r}: not a valid interface name (1-15 bytes, no spaces, '/' or ':')")
    vlan = split_vlan(parent)
    if vlan is not None and not 1 <= vlan[1] <= VLAN_MAX:
        raise BadRequest(f"option {PARENT}={parent!r}: VLAN id {vlan[1]} is not in 1..{VLAN_MAX}")
    if vlan is not None and parent.rsplit(".", 1)[1] != str(vlan[1]):
        # eth0.05 and eth0.5 would be the same VLAN under two names (the second create: EEXIST)
        raise BadRequest(f"option {PARENT}={parent!r}: write the VLAN id without leading zeros "
                         f"({vlan[0]}.{vlan[1]})")
    lower = vlan[0] if vlan is not None else parent
    if lower == "lo" or names.owner_of(lower) is not None:
        # a macvlan on another network's pynet interface would die with that network
        raise BadRequest(f"option {PARENT}={parent!r}: {lower!r} is the loopback or one of pynet's own "
                         "interfaces; give the host's physical (or VLAN) interface")


def split_vlan(parent: str) -> tuple[str, int] | None:
    """("eth0", 5) for "eth0.5", None for a parent without a VLAN suffix."""
    m = VLAN.match(parent)
    return (m.group("lower"), int(m.group("vid"))) if m else None


def check_endpoint(epo: options.EndpointOptions) -> None:
    if epo.port_bindings:
        raise BadRequest(f"published ports ({options.PORTMAP}, docker run -p) do not apply to {options.MODE}=macvlan "
                         "networks: the container is on the segment with its own address (as with Docker's macvlan)")


class MacvlanNetworks:
    def __init__(self, links) -> None:
        self.links = links  # driver.kernel.links.Links
        # Held while a VLAN sub-interface is ensured, and while the last user's removal decides to delete
        # it, so a network being created on it concurrently is either seen or finds it deleted.
        self._parents = threading.Lock()

    # -- CreateNetwork ------------------------------------------------------------------
    def prepare(self, net: Network, others: list[Network]) -> Network:
        """Check a macvlan create against this host: the parent, the MTU, a cluster-wide one's IPAM."""
        config = net.config
        if config.overlay:
            for data in net.ipv4 + net.ipv6:
                if data.address_space not in PYNET_SPACES:
                    raise BadRequest(f"{options.OVERLAY} (a cluster-wide macvlan network) needs --ipam-driver pynet "
                                     "(addresses must be unique across hosts); this network uses the "
                                     f"{data.address_space or 'default'!r} address space")
            if not net.ipv4 and not net.ipv6:
                raise BadRequest(f"{options.OVERLAY} (a cluster-wide macvlan network) needs an address pool")
            for other in others:
                if other.id != net.id and other.config.overlay == config.overlay:
                    raise Conflict(f"{options.OVERLAY}={config.overlay!r} already has network {other.id[:12]} here")
        if config.parent:
            vlan = split_vlan(config.parent)
            lower = config.parent if vlan is None or self.links.get(config.parent) else vlan[0]
            limit = self.links.link_mtu(lower)
            if limit is None:
                raise BadRequest(f"option {PARENT}={config.parent!r}: no interface {lower!r} on this host")
            if config.mtu > limit:
                raise BadRequest(f"option {options.MTU}={config.mtu}: parent {lower!r} carries at most {limit}")
        return net

    def parent_of(self, net: Network) -> str:
        return names.isolated_parent(net.id) if net.config.internal else net.config.parent

    def ensure(self, net: Network) -> None:
        """The parent (a VLAN sub-interface, or the no-uplink bridge of --internal) and the host's side."""
        config = net.config
        if config.internal:
            self.links.ensure_isolated(names.isolated_parent(net.id), names.isolated_peer(net.id), config.mtu or 1500)
            return  # isolated: the host does not reach the containers either
        vlan = split_vlan(config.parent)
        if vlan is not None:
            with self._parents:
                self.links.ensure_vlan(config.parent, vlan[0], vlan[1])
        self.links.ensure_macvlan(MacvlanSpec(name=names.macvlan_host(net.id), parent=config.parent,
                                              mac=names.bridge_mac(net.id), mtu=config.mtu, up=True))

    def remove(self, net: Network, stored) -> None:
        """What ``ensure`` made; a VLAN sub-interface goes when no other stored network (``stored()``,
        read under the lock) uses it and pynet made it.  Absence is fine."""
        self.links.delete(names.macvlan_host(net.id))
        self.links.delete(names.isolated_parent(net.id))  # takes its peer along; the peer's delete is for a half-made pair
        self.links.delete(names.isolated_peer(net.id))
        if split_vlan(net.config.parent) is None:
            return
        with self._parents:
            users = [o for o in stored() if o.id != net.id and o.config.mode == MODE
                     and o.config.parent == net.config.parent and not o.config.internal]
            if not users:
                self.links.delete_vlan(net.config.parent)

    # -- endpoints ------------------------------------------------------------------------
    def endpoint(self, ep: Endpoint) -> Endpoint:
        """A macvlan endpoint has no host end: only the link handed to dockerd."""
        return replace(ep, host_if="")

    def ensure_endpoint(self, net: Network, ep: Endpoint) -> bool:
        """The container's link (until dockerd has taken it) and the host's route to it.  True if created."""
        created = False
        if not ep.joined:
            created = self.links.ensure_macvlan(MacvlanSpec(name=ep.container_if, parent=self.parent_of(net),
                                                            mac=ep.mac, mtu=net.config.mtu))
        route = self.host_route(net, ep)
        if route is not None:
            try:
                self.links.ensure_host_route(route)
            except KernelError:
                if created:
                    self.links.delete(ep.container_if)
                raise
        return created

    def host_route(self, net: Network, ep: Endpoint) -> HostRoute | None:
        address = ipaddress.ip_interface(ep.address) if ep.address else None
        if net.config.internal or address is None:
            return None
        return HostRoute(dev=names.macvlan_host(net.id), ip=str(address.ip), mac=ep.mac,
                         src=self._source(net.config.parent, address))

    def connected(self, net: Network, ep: Endpoint) -> tuple[str, ...]:
        """The host's source address as an on-link /32 in the container, when it lies outside the
        container's subnet: otherwise the container would send its replies to the host via its gateway,
        and the host would not reach its own container (the host-side interface answers its ARP)."""
        route = self.host_route(net, ep)
        if route is None or not route.src or ipaddress.ip_address(route.src) in ipaddress.ip_interface(ep.address).network:
            return ()
        return (f"{route.src}/32",)

    def _source(self, parent: str, address) -> str:
        """The host's own address on the segment (in the container's subnet), so the container answers it
        on-link; else the parent's first address; else "" (the kernel picks)."""
        mine = [ipaddress.ip_interface(c) for c in self.links.ipv4_addresses(parent)]
        for iface in mine:
            if address.ip in iface.network or iface.ip in address.network:
                return str(iface.ip)
        return str(mine[0].ip) if mine else ""

    def remove_endpoint(self, ep: Endpoint) -> None:
        if ep.address:
            self.links.delete_host_route(names.macvlan_host(ep.network_id), str(ipaddress.ip_interface(ep.address).ip))
        self.links.delete(ep.container_if)
