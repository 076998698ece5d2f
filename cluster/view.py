"""The cluster as this host's watcher has seen it (pure; no I/O).

Design note.  The agent lists ``/pynet/v1/cluster/`` once, then applies watch
events in revision order; after a compaction or a lost connection it simply
loads a fresh listing.  Everything the agent decides -- which FDB/neighbour
entries a VXLAN device should hold, which overlays this host lacks or should
drop -- is a function of this view, so it is unit-tested without etcd.
"""

from __future__ import annotations

from pynet.cluster.models import ACTIVE, Advert, Host, Member, Overlay
from pynet.store import keys
from pynet.store.base import Entry, Event

Remote = tuple[str, frozenset[str]]  # (vtep, plain IPs)


class ClusterView:
    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.overlays: dict[str, Overlay] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.adverts: dict[tuple[str, str, str], Advert] = {}
        self.revision = 0
        self.loaded = False  # until the first listing, the view knows nothing: decide nothing from it

    def load(self, entries: list[Entry], revision: int) -> None:
        """Replace everything with a fresh listing taken at ``revision``."""
        self.__init__()
        for e in entries:
            self._set(e.key, e.value)
        self.revision = revision
        self.loaded = True

    def apply(self, event: Event) -> set[str]:
        """Apply one watch event; returns the overlay names it concerns ({'*'} for a host change)."""
        self.revision = max(self.revision, event.revision)
        return self._set(event.key, event.value)

    def _set(self, key: str, value: dict | None) -> set[str]:
        parts = keys.parse_cluster_key(key)
        if parts is None:
            return set()
        kind = parts[0]
        try:
            if kind == "hosts":
                _assign(self.hosts, parts[1], value and Host.from_dict(value))
                return {"*"}
            if kind == "overlays":
                _assign(self.overlays, parts[1], value and Overlay.from_dict(value))
                return {parts[1]}
            if kind == "members":
                _assign(self.members, (parts[1], parts[2]), value and Member.from_dict(value))
                return {parts[1]}
            if kind == "endpoints":
                _assign(self.adverts, parts[1:], value and Advert.from_dict(value))
                return {parts[1]}
        except (KeyError, TypeError, ValueError):
            return set()  # a record this version cannot read: ignore rather than crash the watcher
        return set()

    # -- decisions -----------------------------------------------------------------
    def remotes(self, overlay: str, me: str) -> dict[str, Remote]:
        """MAC -> (VTEP, IPs) of every container of ``overlay`` on another host."""
        out: dict[str, Remote] = {}
        for (name, host, _eid), a in self.adverts.items():
            if name != overlay or host == me or not a.mac or not a.vtep:
                continue
            vtep = self.hosts[host].vtep if host in self.hosts else a.vtep
            out[a.mac] = (vtep, frozenset(a.ips))
        return out

    def wanted_here(self, me: str) -> list[Overlay]:
        """Active overlays this host has no copy of yet, that can be created (origin described them)."""
        return [o for o in self.overlays.values()
                if o.state == ACTIVE and o.docker and (o.name, me) not in self.members]

    def removing(self) -> list[Overlay]:
        return [o for o in self.overlays.values() if o.state != ACTIVE]


def _assign(table: dict, key, value) -> None:
    if value:
        table[key] = value
    else:
        table.pop(key, None)
