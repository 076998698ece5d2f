"""The kernel side of the multi-host VXLAN overlay: the VXLAN device, its remote endpoints, the underlay.

Design note.  Like Docker's classic overlay and flannel's vxlan backend, a
network is a Linux bridge plus one VXLAN device enslaved to it: no multicast
group and no all-zeros FDB entry, so nothing floods through the tunnel; source
learning off, because the control plane (the store) knows every endpoint;
ARP/ND proxy on, so the VXLAN device answers a container's ARP request or
neighbour solicitation from its own neighbour table instead of sending it
across.  A broadcast or a frame for an unknown MAC that reaches the device is
dropped there (counted in tx_dropped), which is also why a gateway that has the
same IP and MAC on every host (distributed gateway) is only ever answered
locally.  Each remote endpoint therefore needs three entries on the device:

* a permanent neighbour entry IP -> MAC (one per address, v4 and/or v6), which
  the proxy answers from;
* a VXLAN FDB entry MAC -> remote VTEP (``self``, ``dst``), which tells the
  device where to tunnel a frame for that MAC;
* a static bridge FDB entry MAC -> the VXLAN port (``master``), so the bridge
  sends that frame only to the VXLAN port instead of flooding it to every local
  port until it has learnt where the MAC lives.  The bridge removes these when
  the device leaves it, so re-attaching the device restores them.

Setting the device down makes the kernel flush its neighbour table, permanent
entries included, while its tunnel entries stay: ``remotes()`` then lists those
MACs without addresses, and the reconciler's diff programs them again.

``VxlanOps`` holds the operations; ``driver.kernel.links.Links`` inherits
them, so they run on the same owner thread and handle as every other link call
(see the note in netlink.py).  The helpers below it are pure: they build the
requests and read the answers.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from dataclasses import dataclass
from socket import AF_INET, AF_INET6

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import rtypes
from pyroute2.netlink.rtnl.ndmsg import NTF_MASTER, NTF_SELF, NUD_NOARP, NUD_PERMANENT

from pynet.driver.kernel.netlink import GONE, KernelError, owned

log = logging.getLogger("pynet.kernel")

VXLAN_PORT = 4789  # IANA
_ZERO_MAC = "00:00:00:00:00:00"
_UNICAST = rtypes["RTN_UNICAST"]


@dataclass(frozen=True)
class VxlanSpec:
    name: str
    vni: int
    local: str  # this host's VTEP address
    bridge: str
    mtu: int
    port: int = VXLAN_PORT


class VxlanOps:
    """The overlay's kernel operations, mixed into ``Links``.

    Relies on what ``NetlinkOwner`` provides: ``_ipr``, ``_on_owner``, ``_get``,
    ``_delete`` and ``_call`` (which turns a NetlinkError into a KernelError
    naming the object).
    """

    # -- the VXLAN device ------------------------------------------------------
    @owned
    def ensure_vxlan(self, spec: VxlanSpec) -> bool:
        """Make ``spec.name`` a VXLAN device as ``spec`` says, attached to ``spec.bridge`` and up.

        Returns True if it created the device; its FDB and neighbour table are
        then empty, so the caller programs the remotes again.  A link of that
        name with another kind, VNI, local address, port, learning or proxy
        setting is deleted and recreated (and the reason logged); a wrong
        master, a wrong MTU or a down device is repaired in place, restoring the
        bridge entries of the remotes if the device had left the bridge.
        Raises KernelError if the bridge does not exist or another device
        already uses the VNI on that port and address.  (A device that was down
        has lost its neighbour entries: see the module note.)
        """
        bridge = self._get(spec.bridge)
        if bridge is None:
            raise KernelError(f"could not attach vxlan {spec.name!r}: bridge {spec.bridge!r} does not exist")
        if self._try_create_vxlan(spec, bridge.index):
            return True
        msg = self._link_msg(spec.name)
        reason = vxlan_mismatch(msg, spec) if msg is not None else "it is missing"
        if reason is None:
            self._repair_vxlan(spec, bridge.index)
            return False
        if msg is not None:
            log.warning("recreating %s: %s", spec.name, reason)
            self._delete(spec.name)
        if not self._try_create_vxlan(spec, bridge.index):
            raise KernelError(f"could not create vxlan {spec.name!r}: another device already uses "
                                f"VNI {spec.vni} on {spec.local} port {spec.port}")
        return True

    def _try_create_vxlan(self, spec: VxlanSpec, master: int) -> bool:
        try:
            self._ipr.link("add", **vxlan_create_args(spec, master))
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise KernelError(f"could not create vxlan {spec.name!r}: {exc.args[-1]}") from None
        return True

    def _link_msg(self, name: str):
        try:
            (msg,) = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code in GONE:
                return None
            raise KernelError(f"could not read link {name!r}: {exc.args[-1]}") from None
        return msg

    def _repair_vxlan(self, spec: VxlanSpec, master: int) -> None:
        link = self._get(spec.name)
        if link.master == master and link.mtu == spec.mtu and link.up:
            return
        log.info("repairing vxlan %s (master %s, mtu %s, up %s)", spec.name, link.master, link.mtu, link.up)
        # Leaving a bridge dropped the port's bridge entries, and going down flushed the neighbours:
        # ``unpinned`` and ``remotes`` show both, and the reconciler (the tables' one writer) restores them.
        self._call("attach vxlan", spec.name, self._ipr.link, "set", index=link.index, master=master,
                   mtu=spec.mtu, state="up")

    # -- remote endpoints ------------------------------------------------------
    @owned
    def ensure_remote(self, dev: str, mac: str, vtep: str, ips: list[str]) -> None:
        """Program one remote endpoint on VXLAN device ``dev`` (the three entries in the module note).

        Replace semantics: an entry of the same MAC or IP that points elsewhere
        is overwritten, and a second call changes nothing.  Addresses the MAC
        had before and not in ``ips`` stay (``delete_remote`` them).  Raises
        KernelError if ``dev`` does not exist or the kernel refuses an entry.
        """
        link = self._get(dev)
        if link is None:
            raise KernelError(f"could not program remote {mac} on {dev!r}: no such device")
        mac = canonical_mac(mac)
        # the tunnel first: once the proxy answers for an address, frames to its MAC must have a way out
        self._call(f"tunnel {mac} to {vtep} on", dev, self._ipr.fdb, "replace", **fdb_self(link.index, mac, vtep))
        if link.master:
            self._call(f"pin {mac} to the bridge port", dev, self._ipr.fdb, "replace", **fdb_master(link.index, mac))
        for ip in ips:
            self._call(f"add neighbour {ip} -> {mac} on", dev, self._ipr.neigh, "replace",
                       **neighbour(link.index, ip, mac))

    @owned
    def delete_remote(self, dev: str, mac: str, vtep: str, ips: list[str]) -> None:
        """Remove what ``ensure_remote`` programmed for ``mac`` at ``vtep``; what is gone already is fine.

        If ``mac`` now tunnels to another VTEP (the endpoint moved and its
        successor was programmed first) nothing is removed, and a neighbour
        entry goes only while it still maps to ``mac`` (an address handed on to
        another endpoint stays).  Missing ``dev`` is success.  Raises
        KernelError if the kernel refuses a delete for another reason.
        """
        link = self._get(dev)
        if link is None:
            return
        mac = canonical_mac(mac)
        tunnel = self._tunnel_of(link.index, mac)
        if tunnel is not None and not _same_ip(tunnel, vtep):
            return
        for ip in ips:
            if self._neighbour_mac(link.index, ip) == mac:
                self._forget(f"remove neighbour {ip} from", dev, self._ipr.neigh, "del", ifindex=link.index,
                             dst=canonical_ip(ip))
        if tunnel is not None:
            self._forget(f"remove tunnel {mac} -> {vtep} from", dev, self._ipr.fdb, "del",
                         **fdb_self(link.index, mac, vtep))
        if link.master:
            self._forget(f"unpin {mac} from the bridge port of", dev, self._ipr.fdb, "del",
                         **fdb_master(link.index, mac))

    @owned
    def remotes(self, dev: str) -> dict[str, tuple[str, frozenset[str]]]:
        """What ``dev`` is programmed with now: MAC -> (VTEP, IPs); empty if ``dev`` does not exist.

        Read from the device's tunnel (``self``) entries and permanent
        neighbour entries, for diffing desired against actual after a restart.
        A neighbour entry whose MAC has no tunnel entry is not listed.
        """
        link = self._get(dev)
        return self._read_remotes(link) if link else {}

    @owned
    def unpinned(self, dev: str) -> set[str]:
        """MACs that tunnel from ``dev`` but lack their bridge entry while ``dev`` is on a bridge
        (it left the bridge and came back): their frames would flood the bridge until re-pinned."""
        link = self._get(dev)
        if link is None or not link.master:
            return set()
        fdb = self._call("read the FDB of", link.name, lambda: list(self._ipr.fdb("dump", ifindex=link.index)))
        return unpinned_macs(fdb, link.address)

    def _read_remotes(self, link) -> dict[str, tuple[str, frozenset[str]]]:
        fdb = self._call("read the FDB of", link.name, lambda: list(self._ipr.fdb("dump", ifindex=link.index)))
        neighbours = self._call("read the neighbours of", link.name,
                                lambda: list(self._ipr.neigh("dump", ifindex=link.index)))
        return collect_remotes(fdb, neighbours, link.address)

    def _neighbour_mac(self, index: int, ip: str) -> str | None:
        answer = self._lookup(self._ipr.neigh, ifindex=index, dst=canonical_ip(ip))
        return answer.get_attr("NDA_LLADDR") if answer else None

    def _tunnel_of(self, index: int, mac: str) -> str | None:
        answer = self._lookup(self._ipr.fdb, ifindex=index, lladdr=mac, flags=NTF_SELF)
        return answer.get_attr("NDA_DST") if answer else None

    def _lookup(self, fn, **kwargs):
        try:
            (answer,) = fn("get", **kwargs)
        except NetlinkError as exc:
            if exc.code in GONE:
                return None
            raise KernelError(f"could not look up {kwargs}: {exc.args[-1]}") from None
        return answer

    def _forget(self, what: str, name: str, fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code not in GONE:
                raise KernelError(f"could not {what} {name!r}: {exc.args[-1]}") from None

    # -- the underlay ------------------------------------------------------------
    @owned
    def underlay_mtu(self, address: str) -> int:
        """MTU of the link that holds ``address`` (this host's VTEP); KernelError if none holds it."""
        want = ipaddress.ip_address(address)
        family = AF_INET6 if want.version == 6 else AF_INET
        for msg in self._call("list addresses to find", address, lambda: list(self._ipr.get_addr(family=family))):
            held = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if held and ipaddress.ip_address(held) == want:
                (link,) = self._call("read the link that holds", address, self._ipr.link, "get", index=msg["index"])
                return link.get_attr("IFLA_MTU")
        raise KernelError(f"no link holds address {address!r}")

    @owned
    def default_source_address(self) -> str:
        """The address this host sends from on its default IPv4 route ("" without one).

        That is the route's own ``src`` if it has one, else the kernel's choice
        towards the route's gateway (as ``ip route get`` shows it), else the
        first IPv4 address of the route's link.  The lowest metric wins.
        """
        routes = self._call("list", "default routes", self._ipr.get_default_routes, family=AF_INET)
        routes = [r for r in routes if r["type"] == _UNICAST]
        if not routes:
            return ""
        route = min(routes, key=lambda r: r.get_attr("RTA_PRIORITY") or 0)
        if route.get_attr("RTA_PREFSRC"):
            return route.get_attr("RTA_PREFSRC")
        gateway, oif = first_hop(route)
        if gateway:
            where = {"oif": oif} if oif else {}
            (answer,) = self._call("find the source towards", gateway, self._ipr.route, "get", dst=gateway, **where)
            return answer.get_attr("RTA_PREFSRC") or ""
        held = [a.get_attr("IFA_LOCAL") for a in self._call("list addresses of link", str(oif), self._ipr.get_addr,
                                                             family=AF_INET, index=oif)]
        return held[0] if held else ""


def vxlan_create_args(spec: VxlanSpec, master: int) -> dict:
    """``link("add", **args)`` that creates the device attached to ``master`` and up, in one request."""
    v6 = ":" in spec.local
    args = {"ifname": spec.name, "kind": "vxlan", "vxlan_id": spec.vni,
            "vxlan_local6" if v6 else "vxlan_local": spec.local,
            "vxlan_port": spec.port, "vxlan_learning": 0, "vxlan_proxy": 1, "master": master,
            "mtu": spec.mtu, "state": "up"}
    if not v6:
        # No outer UDP checksum over IPv4 (allowed there, RFC 7348; the inner frame keeps its own
        # checksums), as Docker's overlay does: on a software path it costs a pass over every packet.
        args["vxlan_udp_csum"] = 0
    return args


def vxlan_mismatch(msg, spec: VxlanSpec) -> str | None:
    """Why the link in ``msg`` cannot serve as ``spec``'s device (None: it can).

    Only what ``link("set")`` cannot change is checked here; master, MTU and
    state are repaired in place.
    """
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    if kind != "vxlan":
        return f"it is a {kind}, not a vxlan device"
    data = linkinfo.get_attr("IFLA_INFO_DATA")
    have = {
        "vni": data.get_attr("IFLA_VXLAN_ID"),
        "local": data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6"),
        "port": data.get_attr("IFLA_VXLAN_PORT"),
        "learning": data.get_attr("IFLA_VXLAN_LEARNING"),
        "proxy": data.get_attr("IFLA_VXLAN_PROXY"),
        "group": data.get_attr("IFLA_VXLAN_GROUP") or data.get_attr("IFLA_VXLAN_GROUP6"),
        "udp_csum": data.get_attr("IFLA_VXLAN_UDP_CSUM"),
    }
    want = {"vni": spec.vni, "local": spec.local, "port": spec.port, "learning": 0, "proxy": 1}
    if ":" not in spec.local:
        want["udp_csum"] = 0
    for key, value in want.items():
        if have[key] != value and not (key == "local" and _same_ip(have[key], value)):
            return f"{key} is {have[key]}, want {value}"
    if have["group"] and not ipaddress.ip_address(have["group"]).is_unspecified:
        return f"it floods to group {have['group']}"
    return None


def fdb_self(index: int, mac: str, vtep: str) -> dict:
    """The VXLAN FDB entry MAC -> remote VTEP (``bridge fdb replace MAC dev VX dst VTEP self permanent``)."""
    return {"ifindex": index, "lladdr": mac, "dst": vtep, "state": NUD_PERMANENT | NUD_NOARP, "flags": NTF_SELF}


def fdb_master(index: int, mac: str) -> dict:
    """The bridge FDB entry MAC -> VXLAN port (``bridge fdb replace MAC dev VX master static``).

    Static is NUD_NOARP without NUD_PERMANENT: a permanent master entry would
    make the bridge take the MAC for one of its own and keep the frames.
    """
    return {"ifindex": index, "lladdr": mac, "state": NUD_NOARP, "flags": NTF_MASTER}


def neighbour(index: int, ip: str, mac: str) -> dict:
    """The proxy's answer IP -> MAC (``ip neigh replace IP lladdr MAC dev VX nud permanent``)."""
    return {"ifindex": index, "dst": canonical_ip(ip), "lladdr": mac, "state": NUD_PERMANENT}


def collect_remotes(fdb, neighbours, own_mac: str) -> dict[str, tuple[str, frozenset[str]]]:
    """MAC -> (VTEP, IPs) from a dump of the device's FDB and of its neighbour table."""
    vteps: dict[str, str] = {}
    for entry in fdb:
        mac, dst = entry.get_attr("NDA_LLADDR"), entry.get_attr("NDA_DST")
        if entry["flags"] & NTF_SELF and dst and mac not in (_ZERO_MAC, own_mac):
            vteps.setdefault(mac, canonical_ip(dst))
    ips: dict[str, set[str]] = {mac: set() for mac in vteps}
    for entry in neighbours:
        mac = entry.get_attr("NDA_LLADDR")
        if entry["state"] & NUD_PERMANENT and mac in ips:
            ips[mac].add(canonical_ip(entry.get_attr("NDA_DST")))
    return {mac: (vtep, frozenset(ips[mac])) for mac, vtep in vteps.items()}


def unpinned_macs(fdb, own_mac: str) -> set[str]:
    """MACs with a tunnel (``self``) entry and no bridge (``master``) entry in a dump of the device's FDB."""
    tunnels, pins = set(), set()
    for entry in fdb:
        mac = entry.get_attr("NDA_LLADDR")
        if mac in (_ZERO_MAC, own_mac):
            continue
        if entry["flags"] & NTF_SELF and entry.get_attr("NDA_DST"):
            tunnels.add(mac)
        elif entry.get_attr("NDA_MASTER"):  # the bridge's entries come back with NDA_MASTER, not NTF_MASTER
            pins.add(mac)
    return tunnels - pins


def first_hop(route) -> tuple[str | None, int | None]:
    """(gateway, output link) of a route, or of its first next hop if it is a multipath one."""
    hops = route.get_attr("RTA_MULTIPATH")
    if hops:
        return hops[0].get_attr("RTA_GATEWAY"), hops[0]["oif"]
    return route.get_attr("RTA_GATEWAY"), route.get_attr("RTA_OIF")


def canonical_ip(ip: str) -> str:
    """``ip`` in the kernel's spelling (lower case, compressed IPv6) so that sets compare."""
    return str(ipaddress.ip_address(ip))


def canonical_mac(mac: str) -> str:
    return mac.lower()


def _same_ip(a: str | None, b: str) -> bool:
    return a is not None and ipaddress.ip_address(a) == ipaddress.ip_address(b)
