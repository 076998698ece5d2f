"""The cluster as this host's watch has seen it (pure; no I/O).

Design note.  The control plane lists ``/pynet/v1/cluster/`` once, then applies watch events in revision
order; after a compaction or a lost connection it loads a fresh listing.  Every entry goes through
records.py first: one that does not decode is reported (``reject``) and skipped -- and whatever an
earlier version of that key said is forgotten, since its writer no longer stands by it -- while every
other entry is applied as usual.  Everything the control plane decides is a function of this view, so it
is unit-tested without etcd.

Adverts are indexed by overlay and by MAC, so the remote entries of one MAC, or of one overlay, are found
without scanning the whole cluster: the work per watch event does not grow with the cluster's size.
"""

from __future__ import annotations

from typing import Callable, Iterable

from pynet.cluster import records
from pynet.cluster.models import ACTIVE, Advert, Host, Member, Overlay
from pynet.cluster.records import InvalidRecord
from pynet.driver.overlay.port import ALL, Remote
from pynet.store import keys
from pynet.store.base import Entry, Event

Reject = Callable[[str, str, str], None]  # (kind, key, reason)
Changes = dict[str, frozenset[str] | None]  # overlay (or ALL) -> MACs whose remote entry may differ; None: all


class ClusterView:
    def __init__(self, reject: Reject = lambda kind, key, reason: None) -> None:
        self._reject = reject
        self.hosts: dict[str, Host] = {}
        self.overlays: dict[str, Overlay] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self._adverts: dict[str, dict[tuple[str, str], Advert]] = {}  # overlay -> (host, eid) -> advert
        self._by_mac: dict[str, dict[str, set[tuple[str, str]]]] = {}  # overlay -> mac -> {(host, eid)}
        self.revision = 0
        self.loaded = False  # until the first listing, the view knows nothing: decide nothing from it

    def load(self, entries: Iterable[Entry], revision: int) -> None:
        """Replace everything with a fresh listing taken at ``revision``."""
        self.__init__(self._reject)
        for e in entries:
            self._set(e.key, e.value)
        self.revision = revision
        self.loaded = True

    def apply(self, event: Event) -> Changes:
        """Apply one watch event; what it changed, for the reconciler."""
        self.revision = max(self.revision, event.revision)
        return self._set(event.key, event.value)

    # -- decisions -----------------------------------------------------------------
    def remotes(self, overlay: str, me: str, macs: Iterable[str] | None = None) -> dict[str, Remote]:
        """MAC -> Remote of the containers of ``overlay`` on other hosts (only ``macs``, if given)."""
        adverts = self._adverts.get(overlay, {})
        if macs is None:
            chosen: Iterable[tuple[str, str]] = adverts
        else:
            by_mac = self._by_mac.get(overlay, {})
            chosen = [k for m in macs for k in by_mac.get(m, ())]
        out: dict[str, Remote] = {}
        for key in sorted(chosen):  # the same MAC on two hosts (a move): the same winner everywhere
            a = adverts[key]
            if a.host != me:
                host = self.hosts.get(a.host)
                out[a.mac] = Remote(host.vtep if host else a.vtep, frozenset(a.ips))
        return out

    def adverts_of(self, host_id: str) -> dict[tuple[str, str], Advert]:
        """(overlay, endpoint) -> advert of every endpoint ``host_id`` advertises."""
        return {(o, eid): a for o, table in self._adverts.items() for (h, eid), a in table.items() if h == host_id}

    def all_adverts(self) -> list[Advert]:
        return [a for table in self._adverts.values() for a in table.values()]

    def wanted_here(self, me: str) -> list[Overlay]:
        """Active overlays this host has no copy of yet, that can be created (the origin described them)."""
        return [o for o in self.overlays.values()
                if o.state == ACTIVE and o.docker is not None and (o.name, me) not in self.members]

    def removing(self) -> list[Overlay]:
        return [o for o in self.overlays.values() if o.state != ACTIVE]

    # -- applying entries ------------------------------------------------------------
    def _set(self, key: str, value: dict | None) -> Changes:
        parts = keys.parse_cluster_key(key)
        if parts is None:
            return {}
        kind = parts[0]
        try:
            if kind == "hosts":
                _assign(self.hosts, parts[1], value is not None and records.host(parts[1], value))
                return {ALL: None}
            if kind == "overlays":
                _assign(self.overlays, parts[1], value is not None and records.overlay(parts[1], value))
                return {}
            if kind == "members":
                _assign(self.members, (parts[1], parts[2]), value is not None and records.member(value))
                return {}
            if kind == "endpoints":
                return self._set_advert(parts[1:], value is not None and records.advert(parts[1:], value))
        except InvalidRecord as exc:
            self._reject(kind, key, str(exc))
            return self._forget(parts)
        return {}

    def _forget(self, parts: tuple[str, ...]) -> Changes:
        """Drop what the key said before it turned invalid."""
        kind = parts[0]
        if kind == "hosts":
            self.hosts.pop(parts[1], None)
            return {ALL: None}
        if kind == "overlays":
            self.overlays.pop(parts[1], None)
        elif kind == "members":
            self.members.pop((parts[1], parts[2]), None)
        elif kind == "endpoints":
            return self._set_advert(parts[1:], None)
        return {}

    def _set_advert(self, key: tuple[str, str, str], advert: Advert | None) -> Changes:
        overlay, host_id, eid = key
        table = self._adverts.setdefault(overlay, {})
        macs = self._by_mac.setdefault(overlay, {})
        old = table.pop((host_id, eid), None)
        touched = set()
        if old is not None:
            touched.add(old.mac)
            holders = macs.get(old.mac, set())
            holders.discard((host_id, eid))
            if not holders:
                macs.pop(old.mac, None)
        if advert:
            table[(host_id, eid)] = advert
            macs.setdefault(advert.mac, set()).add((host_id, eid))
            touched.add(advert.mac)
        if not table:
            self._adverts.pop(overlay, None)
            self._by_mac.pop(overlay, None)
        return {overlay: frozenset(touched)} if touched else {}


def _assign(table: dict, key, value) -> None:
    if value:
        table[key] = value
    else:
        table.pop(key, None)

