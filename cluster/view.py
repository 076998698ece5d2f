"""The cluster as this host's watch has seen it (pure; no I/O).

Design note.  The control plane lists ``/pynet/v1/cluster/`` once, then applies watch events in revision
order; after a compaction or a lost connection it loads a fresh listing.  Every entry goes through
records.py first: one that does not decode is reported (``reject``) and skipped -- and whatever an
earlier version of that key said is forgotten, since its writer no longer stands by it -- while every
other entry is applied as usual.  Everything the control plane decides is a function of this view, so it
is unit-tested without etcd.

Adverts are indexed by overlay and by MAC, so the remote entries of one MAC, or of one overlay, are found
without scanning the whole cluster: the work per watch event does not grow with the cluster's size.

Departures and the grace (``linger``).  A host that loses etcd but not the underlay still carries its
containers' traffic; etcd only sees its lease run out and deletes its key and adverts.  So a *delete* of a
host or an advert does not take it out of the view at once: it stays, marked departing, for ``linger``
seconds (the control plane sets it to the grace period minus the lease TTL, so peers drop a silent host
``grace`` seconds after it went silent), and ``expire`` removes what is due.  A put of the same key in
the meantime (the host re-registered, re-advertised on its new lease) cancels the departure, so nothing
on the data plane flaps.  A container removed on its host must go at once, and etcd's watch cannot tell
an owner's delete from a lease expiry, so the owner says so: it first overwrites the advert with
``withdrawn: true`` (a tombstone), which removes it here immediately, then deletes the key (a no-op
here).  Everything departing stays in ``hosts`` and the advert tables, so whatever is derived from them
(remote entries, the member VTEPs) follows the same grace; a live advert of the same MAC wins over a
departing one, and so does a live advert holding one of its addresses (handed on meanwhile).  A fresh listing (``load``) keeps what it no longer shows as departing, except an advert
whose host's registration is unchanged (same revision: its lease never ended, so the owner withdrew it
while this host was not watching).  ``linger=0`` is the old behaviour: deletes apply at once.
"""

from __future__ import annotations

import time
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
    def __init__(self, reject: Reject = lambda kind, key, reason: None, linger: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reject = reject
        self._linger, self._clock = linger, clock
        self._reset()

    def _reset(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.overlays: dict[str, Overlay] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self._adverts: dict[str, dict[tuple[str, str], Advert]] = {}  # overlay -> (host, eid) -> advert
        self._by_mac: dict[str, dict[str, set[tuple[str, str]]]] = {}  # overlay -> mac -> {(host, eid)}
        self._departing: dict[tuple[str, ...], float] = {}  # parsed key of a host/advert -> clock time it goes
        self._host_revisions: dict[str, int] = {}  # host id -> revision of its registration
        self.revision = 0
        self.loaded = False  # until the first listing, the view knows nothing: decide nothing from it

    def load(self, entries: Iterable[Entry], revision: int) -> None:
        """Replace everything with a fresh listing taken at ``revision`` (departures carried over)."""
        old = (dict(self.hosts), {o: dict(t) for o, t in self._adverts.items()}, dict(self._departing),
               dict(self._host_revisions))
        self._reset()
        listed = set()
        for e in entries:
            listed.add(keys.parse_cluster_key(e.key))
            self._set(e.key, e.value, e.revision)
        if self._linger > 0:
            self._carry_over(listed, *old)
        self.revision = revision
        self.loaded = True

    def _carry_over(self, listed: set, hosts: dict, adverts: dict, departing: dict, revisions: dict) -> None:
        """What the old view had and the listing lacks leaves only after the grace (module note)."""
        later = self._clock() + self._linger
        for host_id, host in hosts.items():
            if ("hosts", host_id) not in listed:
                self.hosts[host_id] = host
                self._departing[("hosts", host_id)] = departing.get(("hosts", host_id), later)
        for overlay, table in adverts.items():
            for (host_id, eid), advert in table.items():
                key = ("endpoints", overlay, host_id, eid)
                if key in listed:
                    continue
                same_lease = host_id in revisions and self._host_revisions.get(host_id) == revisions[host_id]
                if key not in departing and same_lease:
                    continue  # withdrawn by its owner while we were not watching
                self._set_advert(key[1:], advert)
                self._departing[key] = departing.get(key, later)

    def apply(self, event: Event) -> Changes:
        """Apply one watch event; what it changed, for the reconciler."""
        self.revision = max(self.revision, event.revision)
        parts = keys.parse_cluster_key(event.key)
        if event.value is None and self._linger > 0 and parts is not None and parts[0] in ("hosts", "endpoints"):
            return self._depart(parts)
        return self._set(event.key, event.value, event.revision)

    # -- departures (the grace) --------------------------------------------------------
    def _depart(self, parts: tuple[str, ...]) -> Changes:
        """A host or advert deleted without a tombstone (its lease ended): keep it ``linger`` seconds."""
        present = parts[1] in self.hosts if parts[0] == "hosts" else self._advert(parts[1:]) is not None
        if present and parts not in self._departing:
            self._departing[parts] = self._clock() + self._linger
        return {}  # nothing the tables hold changes yet

    def expire(self) -> Changes:
        """Remove every departing host and advert whose grace is over; what that changed."""
        now = self._clock()
        changes: Changes = {}
        for parts in [p for p, until in self._departing.items() if until <= now]:
            del self._departing[parts]
            if parts[0] == "hosts":
                self.hosts.pop(parts[1], None)
                self._host_revisions.pop(parts[1], None)
                changes[ALL] = None
            else:
                for overlay, macs in self._set_advert(parts[1:], None).items():
                    changes[overlay] = macs | changes.get(overlay, frozenset())
        return changes

    def departing(self) -> dict[tuple[str, ...], float]:
        """Parsed key -> seconds left, of every host and advert in its grace."""
        now = self._clock()
        return {parts: max(0.0, until - now) for parts, until in self._departing.items()}

    def _advert(self, key: tuple[str, ...]) -> Advert | None:
        return self._adverts.get(key[0], {}).get((key[1], key[2]))

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
        gone = self._departing_in(overlay)
        taken = self._live_ips(overlay) if gone else frozenset()
        # The same MAC on two hosts (a move): the same winner everywhere, and a live advert beats a
        # departing one (sorted first, so the live one overwrites it); an address a live advert holds
        # is not a departing one's any more (it was handed on).
        for key in sorted(chosen, key=lambda k: (k not in gone, k)):
            a = adverts[key]
            if a.host != me:
                host = self.hosts.get(a.host)
                ips = frozenset(a.ips) - taken if key in gone else frozenset(a.ips)
                out[a.mac] = Remote(host.vtep if host else a.vtep, ips)
        return out

    def _departing_in(self, overlay: str) -> set[tuple[str, str]]:
        """(host, eid) of the departing adverts of ``overlay`` (few, and only during a grace)."""
        return {(p[2], p[3]) for p in self._departing if p[0] == "endpoints" and p[1] == overlay}

    def _live_ips(self, overlay: str) -> frozenset[str]:
        gone = self._departing_in(overlay)
        return frozenset(ip for k, a in self._adverts.get(overlay, {}).items() if k not in gone for ip in a.ips)

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
    def _set(self, key: str, value: dict | None, revision: int = 0) -> Changes:
        parts = keys.parse_cluster_key(key)
        if parts is None:
            return {}
        kind = parts[0]
        self._departing.pop(parts, None)  # whatever the key says now, it is no longer departing
        try:
            if kind == "hosts":
                before = self.hosts.get(parts[1])
                _assign(self.hosts, parts[1], value is not None and records.host(parts[1], value))
                _assign(self._host_revisions, parts[1], value is not None and revision)
                # the same host written again (a new lease after an outage) changes no entry
                return {ALL: None} if self.hosts.get(parts[1]) != before else {}
            if kind == "overlays":
                _assign(self.overlays, parts[1], value is not None and records.overlay(parts[1], value))
                return {}
            if kind == "members":
                _assign(self.members, (parts[1], parts[2]), value is not None and records.member(value))
                return {}
            if kind == "endpoints":
                advert = value is not None and records.advert(parts[1:], value)
                return self._set_advert(parts[1:], None if advert and advert.withdrawn else advert)
        except InvalidRecord as exc:
            self._reject(kind, key, str(exc))
            return self._forget(parts)
        return {}

    def _forget(self, parts: tuple[str, ...]) -> Changes:
        """Drop what the key said before it turned invalid."""
        kind = parts[0]
        if kind == "hosts":
            self.hosts.pop(parts[1], None)
            self._host_revisions.pop(parts[1], None)
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
        ips = set(old.ips if old else ()) | set(advert.ips if advert else ())
        for k in self._departing_in(overlay) - {(host_id, eid)}:  # their addresses may be taken or freed
            if k in table and ips & set(table[k].ips):
                touched.add(table[k].mac)
        if not table:
            self._adverts.pop(overlay, None)
            self._by_mac.pop(overlay, None)
        return {overlay: frozenset(touched)} if touched else {}


def _assign(table: dict, key, value) -> None:
    if value:
        table[key] = value
    else:
        table.pop(key, None)

