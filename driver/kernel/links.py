"""Bridges and veth pairs: idempotent writes on the host's netlink handle (netlink.py).

Design note.  Every write is an ``ensure_*``/``delete_*`` pair (style.md §4):
``ensure`` adopts an existing object only when it is compatible, otherwise it
recreates it and logs why; ``delete`` treats "not there" as success.  ``Links``
is the whole kernel port of the driver: these operations plus the VXLAN ones
(vxlan.py), all run on the handle's one owner thread.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2.netlink.exceptions import NetlinkError

from pynet.driver.kernel.macvlan import MacvlanOps
from pynet.driver.kernel.netlink import KernelError, LinkInfo, NetlinkOwner, open_handle, owned
from pynet.driver.kernel.vxlan import VxlanOps, VxlanSpec

__all__ = ["BridgeSpec", "KernelError", "LinkInfo", "Links", "VethSpec", "VxlanSpec", "open_handle"]

log = logging.getLogger("pynet.kernel")

IFA_F_NODAD = 0x02  # v6 gateway usable at once, no duplicate address detection wait


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


class LinkOps:
    """Bridge and veth operations, mixed into ``Links`` (they use NetlinkOwner's primitives)."""

    # -- reading -------------------------------------------------------------
    @owned
    def get(self, name: str) -> LinkInfo | None:
        return self._get(name)

    @owned
    def names(self) -> list[str]:
        return [m.get("ifname") for m in self._ipr.get_links()]

    @owned
    def addresses(self, name: str) -> set[str]:
        link = self._get(name)
        return self._addresses(link.index) if link else set()

    def _addresses(self, index: int) -> set[str]:
        return {f"{a.get('address')}/{a['prefixlen']}" for a in self._ipr.get_addr(index=index)}

    # -- bridge ----------------------------------------------------------------
    @owned
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

    # -- a host-local address (the cluster DNS's) ------------------------------
    @owned
    def ensure_address(self, name: str, cidr: str) -> bool:
        """``cidr`` on link ``name`` (other addresses untouched); True if it added it."""
        link = self._get(name)
        if link is None:
            raise KernelError(f"could not add address {cidr}: no link {name!r}")
        if cidr in self._addresses(link.index):
            return False
        ip, plen = cidr.split("/")
        self._call(f"add address {cidr} to", name, self._ipr.addr, "add", index=link.index, address=ip,
                   prefixlen=int(plen), flags=IFA_F_NODAD if ":" in ip else 0)
        return True

    # -- veth --------------------------------------------------------------------
    @owned
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
    @owned
    def delete(self, name: str) -> bool:
        """Delete link ``name``; True if it existed.  Absence is success."""
        return self._delete(name)



class Links(LinkOps, VxlanOps, MacvlanOps, NetlinkOwner):
    """The driver's kernel port: links, veth pairs, VXLAN devices and their tables, macvlan links
    (macvlan.py), on one handle."""
