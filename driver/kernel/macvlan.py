"""Macvlan links, 802.1Q sub-interfaces and the host's routes to its own macvlan containers.

Design note.  Same rules as links.py (style.md §4): every write is an ``ensure_*``/``delete_*`` pair,
``ensure`` keeps a compatible object and recreates an incompatible one, ``delete`` treats absence as
success.  Three objects are pynet's here:

* the parent of an ``--internal`` network: a veth pair attached to nothing (``ensure_isolated``);
* a macvlan link (bridge mode) on a parent: a container's interface (handed to dockerd in Join, like a
  veth's container end) or the host-side interface ``pnm<net>`` through which the host reaches its own
  containers (a macvlan parent never sees its children's frames, the known gap of Docker's macvlan);
* a VLAN sub-interface ``IFACE.VID`` the user named as parent.  The kernel itself records that pynet
  made it (``ifalias`` = ``OWNER_ALIAS``), so a sub-interface the user made is never deleted, and the
  mark survives a restart and outlives the network that created it;
* per container of this host, a /32 route and a permanent neighbour entry on ``pnm<net>``.  The
  neighbour entry matters: without it the host would ARP through ``pnm<net>`` with its own address
  as sender, and every other station on the segment would re-learn that address at ``pnm<net>``'s MAC.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from pynet.driver.kernel.netlink import GONE, KernelError, owned

log = logging.getLogger("pynet.kernel")

OWNER_ALIAS = "pynet: 802.1Q sub-interface"
NUD_PERMANENT = 0x80
SCOPE_LINK = 253  # on-link: the container is on the segment, no gateway


@dataclass(frozen=True)
class MacvlanSpec:
    name: str
    parent: str
    mac: str
    mtu: int = 0  # 0: the parent's
    up: bool = False  # the host-side interface is up; a container's is brought up by dockerd


@dataclass(frozen=True)
class HostRoute:
    """The host's way to one of its own containers: ``ip``/32 via ``dev``, ``ip`` at ``mac``."""

    dev: str
    ip: str
    mac: str
    src: str = ""  # preferred source: the host's address on the segment, "" to let the kernel pick


class MacvlanOps:
    """Mixed into ``Links`` (uses NetlinkOwner's primitives on the owner thread)."""

    @owned
    def link_mtu(self, name: str) -> int | None:
        link = self._get(name)
        return link.mtu if link else None

    @owned
    def ipv4_addresses(self, name: str) -> list[str]:
        """The IPv4 CIDRs on ``name`` (the parent's own addresses), [] when it is absent."""
        link = self._get(name)
        if link is None:
            return []
        return [f"{a.get('address')}/{a['prefixlen']}" for a in self._ipr.get_addr(index=link.index, family=2)]

    # -- macvlan -------------------------------------------------------------------
    @owned
    def ensure_macvlan(self, spec: MacvlanSpec) -> bool:
        """Make ``spec.name`` a bridge-mode macvlan on ``spec.parent`` with ``spec.mac``; True if created."""
        parent = self._get(spec.parent)
        if parent is None:
            raise KernelError(f"could not create macvlan {spec.name!r}: parent {spec.parent!r} does not exist")
        mtu = spec.mtu or parent.mtu
        have = self._raw(spec.name)
        if have is not None:
            if _compatible(have, parent.index, spec.mac):
                if spec.up or have.get_attr("IFLA_MTU") != mtu:
                    self._call("configure macvlan", spec.name, self._ipr.link, "set", index=have["index"], mtu=mtu,
                               **({"state": "up"} if spec.up else {}))
                return False
            log.warning("recreating %s: not a bridge-mode macvlan on %s with MAC %s", spec.name, spec.parent, spec.mac)
            self._delete(spec.name)
        extra = {"state": "up"} if spec.up else {}
        self._call("create macvlan", spec.name, self._ipr.link, "add", ifname=spec.name, kind="macvlan",
                   link=parent.index, macvlan_mode="bridge", address=spec.mac, mtu=mtu, **extra)
        return True

    def _raw(self, name: str):
        try:
            (msg,) = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code in GONE:
                return None
            raise
        return msg

    # -- the parent of an --internal network ------------------------------------------------
    @owned
    def ensure_isolated(self, name: str, peer: str, mtu: int) -> bool:
        """A veth pair whose ends are up and attached to nothing: a parent with carrier and no uplink.
        (Docker uses a dummy link, which this kernel lacks; an empty bridge has no carrier, and a
        macvlan on a lower without carrier does not transmit.)  True if created."""
        link, other = self._get(name), self._get(peer)
        if link is not None and link.kind == "veth" and other is not None:
            for end in (link, other):
                if not end.up:
                    self._call("bring up", end.name, self._ipr.link, "set", index=end.index, state="up")
            return False
        if link is not None or other is not None:
            log.warning("recreating %s: not a veth pair with %s", name, peer)
            self._delete(name)
            self._delete(peer)
        self._call("create", name, self._ipr.link, "add", ifname=name, kind="veth", mtu=mtu, state="up",
                   peer={"ifname": peer, "mtu": mtu})
        other = self._get(peer)
        self._call("bring up", peer, self._ipr.link, "set", index=other.index, state="up")
        return True

    # -- 802.1Q ----------------------------------------------------------------------
    @owned
    def ensure_vlan(self, name: str, lower: str, vid: int) -> bool:
        """Make ``name`` exist and be up; created (and marked as pynet's) as VLAN ``vid`` on ``lower`` when
        absent.  An existing link of that name is used as it is: it may be the user's.  True if created."""
        if self._get(name) is not None:
            link = self._get(name)
            if not link.up:
                self._call("bring up", name, self._ipr.link, "set", index=link.index, state="up")
            return False
        base = self._get(lower)
        if base is None:
            raise KernelError(f"could not create VLAN sub-interface {name!r}: {lower!r} does not exist")
        try:
            self._ipr.link("add", ifname=name, kind="vlan", link=base.index, vlan_id=vid)
        except NetlinkError as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise KernelError(f"could not create VLAN sub-interface {name!r}: this kernel has no 802.1Q "
                                  "(vlan) support") from None
            raise KernelError(f"could not create VLAN sub-interface {name!r}: {exc.args[-1]}") from None
        link = self._get(name)
        self._call("mark and bring up", name, self._ipr.link, "set", index=link.index, ifalias=OWNER_ALIAS, state="up")
        return True

    @owned
    def delete_vlan(self, name: str) -> bool:
        """Delete ``name`` if pynet made it (its ifalias says so); True if deleted.  Absence is success."""
        msg = self._raw(name)
        if msg is None or msg.get_attr("IFLA_IFALIAS") != OWNER_ALIAS:
            return False
        return self._delete(name)

    # -- the host's routes to its containers -----------------------------------------------
    @owned
    def ensure_host_route(self, route: HostRoute) -> None:
        link = self._get(route.dev)
        if link is None:
            raise KernelError(f"could not route {route.ip} to its container: {route.dev!r} does not exist")
        self._call(f"add neighbour {route.ip} on", route.dev, self._ipr.neigh, "replace", dst=route.ip,
                   lladdr=route.mac, ifindex=link.index, state=NUD_PERMANENT)
        src = {"prefsrc": route.src} if route.src else {}
        self._call(f"add route {route.ip}/32 on", route.dev, self._ipr.route, "replace", dst=route.ip,
                   dst_len=32, oif=link.index, scope=SCOPE_LINK, **src)

    @owned
    def delete_host_route(self, dev: str, ip: str) -> None:
        link = self._get(dev)
        if link is None:
            return  # the device took its routes and neighbours with it
        # The scope must be given: the kernel only deletes a route whose scope matches (or is "nowhere"),
        # and "no such route" is success here, so a mismatch would leave the route silently.
        route = {"dst": ip, "dst_len": 32, "oif": link.index, "scope": SCOPE_LINK}
        for what, fn, kwargs in (("route", self._ipr.route, route),
                                 ("neighbour", self._ipr.neigh, {"dst": ip, "ifindex": link.index})):
            try:
                fn("del", **kwargs)
            except NetlinkError as exc:
                if exc.code not in GONE + (errno.ESRCH,):
                    raise KernelError(f"could not delete {what} {ip} on {dev!r}: {exc.args[-1]}") from None


def _compatible(msg, parent_index: int, mac: str) -> bool:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_KIND") != "macvlan":
        return False
    data = info.get_attr("IFLA_INFO_DATA")
    mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None
    return (msg.get_attr("IFLA_LINK") == parent_index and (msg.get_attr("IFLA_ADDRESS") or "").lower() == mac.lower()
            and mode in (None, 4, "bridge"))  # MACVLAN_MODE_BRIDGE
