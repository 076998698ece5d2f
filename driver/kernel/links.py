"""Idempotent link writes over one pyroute2 IPRoute handle.

Design note.  Every write is an ``ensure_*``/``delete_*`` pair (style.md §4):
``ensure`` adopts an existing object only when it is compatible, otherwise it
recreates it and logs why; ``delete`` treats "not there" as success.  The
handle is bound to a network namespace when it is opened (``IPRoute()`` for
the one pynet runs in, ``IPRoute(netns=...)`` in tests), so no serving thread
ever changes namespace.  One dedicated thread owns the handle and runs every
call: pyroute2's synchronous IPRoute is not meant to be shared by threads (from
any thread but its owner it builds a new event loop per request, and remembers
each one), and the kernel serialises link changes under the RTNL lock anyway.
"""

from __future__ import annotations

import errno
import logging
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from pynet.driver.kernel.overlay import OverlayLinks, VxlanSpec  # noqa: F401  (VxlanSpec: re-exported)

log = logging.getLogger("pynet.kernel")

IFA_F_NODAD = 0x02  # v6 gateway usable at once, no duplicate address detection wait
_GONE = (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL)


class KernelError(Exception):
    """A netlink write failed; the message names the object."""


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    mtu: int
    mac: str
    addresses: tuple[str, ...] = ()  # CIDRs (gateways)


@dataclass(frozen=True)
class VethSpec:
    host: str
    peer: str
    mtu: int
    bridge: str
    peer_mac: str = ""
    # False once dockerd has moved the peer into a container (after Join): it is
    # then eth<N> in another namespace, and its absence here is expected.
    peer_here: bool = True


@dataclass
class LinkInfo:
    name: str
    index: int
    kind: str | None
    mtu: int
    master: int | None
    address: str
    up: bool = False
    extra: dict = field(default_factory=dict)


def open_handle(netns: str | None = None) -> IPRoute:
    """An IPRoute that listens to no multicast group.

    pyroute2 0.9 subscribes a new IPRoute to the link/address/route event groups
    by default; pynet never reads events, so every change on the host would be
    queued in the handle forever (measured: ~12 KiB per endpoint cycle).
    """
    return IPRoute(groups=0, netns=netns) if netns else IPRoute(groups=0)


def _owned(method):
    """Run the method on the handle's owner thread (see the module note)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self._on_owner(method, self, *args, **kwargs)
    return wrapper


class Links(OverlayLinks):  # + the VXLAN overlay's operations (overlay.py)
    def __init__(self, ipr: IPRoute | None = None):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynet-netlink")
        self._ipr = ipr or self._thread.submit(open_handle).result()

    def _on_owner(self, fn, *args, **kwargs):
        """Run ``fn`` on the thread that owns the handle, then drop orphaned replies there."""
        def call():
            try:
                return fn(*args, **kwargs)
            finally:
                self._drop_orphans()
        return self._thread.submit(call).result()


    def close(self) -> None:
        self._on_owner(self._ipr.close)
        self._thread.shutdown()

    def _drop_orphans(self) -> None:
        """Empty the handle's queue of replies that no request is waiting for.

        pyroute2 0.9.7 asks for an ACK on ``link("get")``, returns after the
        first message and frees the request's tag; the ACK that follows then
        lands in the socket's root queue, which only event listeners read.
        pynet listens to no events (``groups=0``), so everything there is such an
        orphan, and without this the queue grows by one message per call
        (measured: ~12 KiB of RSS per endpoint cycle).  Called with the lock
        on the owner thread between requests, when the handle's event loop is idle.
        """
        queue = getattr(getattr(getattr(self._ipr, "asyncore", None), "msg_queue", None), "root", None)
        while queue is not None and not queue.empty():
            queue.get_nowait()
            queue.task_done()

    @_owned
    def queued(self) -> int:
        """Messages waiting in the handle's root queue (tests assert this stays 0)."""
        queue = getattr(getattr(getattr(self._ipr, "asyncore", None), "msg_queue", None), "root", None)
        return queue.qsize() if queue is not None else 0

    # -- reading -------------------------------------------------------------
    @_owned
    def get(self, name: str) -> LinkInfo | None:
        return self._get(name)

    def _get(self, name: str) -> LinkInfo | None:
        try:
            (msg,) = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise
        return _info(msg)

    @_owned
    def names(self) -> list[str]:
        return [m.get("ifname") for m in self._ipr.get_links()]

    @_owned
    def addresses(self, name: str) -> set[str]:
        link = self._get(name)
        return self._addresses(link.index) if link else set()

    def _addresses(self, index: int) -> set[str]:
        return {f"{a.get('address')}/{a['prefixlen']}" for a in self._ipr.get_addr(index=index)}

    # -- bridge ----------------------------------------------------------------
    @_owned
    def ensure_bridge(self, spec: BridgeSpec, adopt_foreign: bool = False) -> bool:
        """Make ``spec.name`` a bridge that is up with ``spec``'s MTU, MAC and addresses.

        Returns True if it created the bridge.  A non-bridge link of that name is
        replaced (it is ours by name) unless ``adopt_foreign`` (a user-named
        bridge), where it is refused.  Addresses other than the wanted ones are
        left alone on an adopted bridge and removed on a pynet-named one.
        """
        link = self._get(spec.name)
        created = False
        if link and link.kind != "bridge":
            if adopt_foreign:
                raise KernelError(f"link {spec.name!r} exists and is not a bridge ({link.kind})")
            log.warning("replacing link %s: it is a %s, not a bridge", spec.name, link.kind)
            self._delete(spec.name)
            link = None
        if link is None:
            self._call("create bridge", spec.name, self._ipr.link, "add", ifname=spec.name, kind="bridge",
                       mtu=spec.mtu, address=spec.mac)
            created = True
            link = self._get(spec.name)
        self._call("configure bridge", spec.name, self._ipr.link, "set", index=link.index, mtu=spec.mtu, state="up")
        self._sync_addresses(link, spec.addresses, prune=not adopt_foreign)
        return created

    def _sync_addresses(self, link: LinkInfo, wanted: tuple[str, ...], prune: bool) -> None:
        have = self._addresses(link.index)
        for cidr in wanted:
            if cidr not in have:
                ip, plen = cidr.split("/")
                flags = IFA_F_NODAD if ":" in ip else 0
                self._call(f"add address {cidr} to", link.name, self._ipr.addr, "add", index=link.index,
                           address=ip, prefixlen=int(plen), flags=flags)
        for cidr in have - set(wanted) if prune else ():
            if cidr.startswith("fe80:"):
                continue  # the kernel's own link-local address
            ip, plen = cidr.split("/")
            self._call(f"remove stray address {cidr} from", link.name, self._ipr.addr, "del", index=link.index,
                       address=ip, prefixlen=int(plen))

    # -- veth --------------------------------------------------------------------
    @_owned
    def ensure_veth(self, spec: VethSpec) -> bool:
        """Make the pair exist, the host end up on ``spec.bridge``, both ends at ``spec.mtu``.

        Returns True if it created the pair.  An existing host end that is not a
        veth, or whose peer should be here and is not, is recreated.  The common
        case (nothing there yet) is one netlink request that creates the pair
        already attached and up; anything in the way sends it down the full
        check-and-repair path.
        """
        bridge = self._get(spec.bridge)
        if bridge is None:
            raise KernelError(f"could not attach {spec.host!r}: bridge {spec.bridge!r} does not exist")
        if self._try_create_veth(spec, bridge.index):
            return True
        return self._repair_veth(spec, bridge)

    def _try_create_veth(self, spec: VethSpec, master: int) -> bool:
        peer = {"ifname": spec.peer, "mtu": spec.mtu}
        if spec.peer_mac:
            peer["address"] = spec.peer_mac
        try:
            self._ipr.link("add", ifname=spec.host, kind="veth", mtu=spec.mtu, master=master, state="up", peer=peer)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise KernelError(f"could not create veth {spec.host!r}: {exc.args[-1]}") from None
        self._hairpin(spec.host)
        return True

    def _hairpin(self, name: str) -> None:
        """Let the bridge send a frame back out the port it came in on.

        With br_netfilter, a container reaching its own published port through a
        host address is DNATed at the bridge layer, back towards its own port,
        which a bridge refuses unless the port is in hairpin mode (Docker's bridge
        sets it for the same reason when it runs without the userland proxy).
        """
        index = self._get(name).index
        self._call("set hairpin mode on", name, self._ipr.brport, "set", index=index, mode=1)

    def _repair_veth(self, spec: VethSpec, bridge: LinkInfo) -> bool:
        host = self._get(spec.host)
        if host and (host.kind != "veth" or (spec.peer_here and self._get(spec.peer) is None)):
            log.warning("recreating %s: %s", spec.host, "not a veth" if host.kind != "veth" else "peer missing")
            self._delete(spec.host)
            host = None
        if host is None:
            self._delete(spec.peer)  # a stray peer from a half-made pair
            if not self._try_create_veth(spec, bridge.index):
                raise KernelError(f"could not create veth {spec.host!r}: {spec.peer!r} is in the way")
            return True
        if host.master != bridge.index or host.mtu != spec.mtu or not host.up:
            self._call("attach veth", spec.host, self._ipr.link, "set", index=host.index, master=bridge.index,
                       mtu=spec.mtu, state="up")
        self._hairpin(spec.host)
        return False

    # -- delete ------------------------------------------------------------------
    @_owned
    def delete(self, name: str) -> bool:
        """Delete link ``name``; True if it existed.  Absence is success."""
        return self._delete(name)

    def _delete(self, name: str) -> bool:
        try:
            self._ipr.link("del", ifname=name)
            return True
        except NetlinkError as exc:
            if exc.code in _GONE:
                return False
            raise KernelError(f"could not delete link {name!r}: {exc.args[-1]}") from None

    def _call(self, what: str, name: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST and args and args[0] == "add" and fn == self._ipr.addr:
                return None
            raise KernelError(f"could not {what} {name!r}: {exc.args[-1]}") from None


def _info(msg) -> LinkInfo:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    return LinkInfo(
        name=msg.get_attr("IFLA_IFNAME"),
        index=msg["index"],
        kind=kind,
        mtu=msg.get_attr("IFLA_MTU"),
        master=msg.get_attr("IFLA_MASTER"),
        address=msg.get_attr("IFLA_ADDRESS"),
        up=bool(msg["flags"] & 1),
    )
