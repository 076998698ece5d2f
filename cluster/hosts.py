"""The cluster's hosts as an operator sees them (``pynet hosts``, ``pynet status``) and the eviction of a
dead one (``pynet hosts rm``).

Design note.  What a host leaves in etcd has two lifetimes: its registration and its adverts ride on its
lease and go when it stops (after --lease-ttl), but its memberships (members/<overlay>/<host>), its part
in the pools' holders and the addresses its containers claimed stay, by design, so that a host that
restarts is still a member and gets its addresses back.  A host that never comes back holds them
forever: ``evict`` removes them, each with the store's atomic primitives (delete at the revision read),
and refuses while the host's registration is there -- a live host would write them again at its next
housekeeping, and evicting it would cut its containers off -- unless ``force`` (a host known to be dead
whose lease has not run out yet).  Which addresses were the dead host's is known from its adverts: those
still in etcd (force) and those this host's view still holds in their grace period; once both are gone,
the addresses are no longer attributable and stay claimed (README: run ``hosts rm`` within the grace).

Everything read from etcd passes records.py; a record that does not decode is skipped here as
everywhere, except that an unreadable membership or advert under the evicted host's id is deleted too:
it is that host's, and unreadable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pynet.cluster import records
from pynet.cluster.records import InvalidRecord
from pynet.errors import BadRequest, Conflict
from pynet.store import keys
from pynet.store.update import Delete, Keep, modify


@dataclass
class Eviction:
    host: str
    forced: bool = False
    registration: bool = False  # its hosts/<id> key was deleted (only with force)
    adverts: int = 0
    memberships: list[str] = field(default_factory=list)  # overlays it was a member of
    addresses: list[str] = field(default_factory=list)  # its containers' addresses (for the IPAM)
    overlays_removed: list[str] = field(default_factory=list)  # overlays being removed that it was last in

    def to_dict(self) -> dict:
        return {"Host": self.host, "Forced": self.forced, "Registration": self.registration,
                "Adverts": self.adverts, "Memberships": sorted(self.memberships),
                "Addresses": sorted(self.addresses), "OverlaysRemoved": sorted(self.overlays_removed)}


class ClusterHosts:
    """Reads the control plane's view (cluster/control.py) and writes etcd through its store."""

    def __init__(self, control, version: str = "", clock=time.monotonic) -> None:
        self.control = control  # cluster.control.EtcdControlPlane
        self.version = version
        self._clock = clock

    # -- what the view knows ----------------------------------------------------------------
    def hosts(self) -> list[dict]:
        """Every host the view knows: live (registered), departing (lease gone, in its grace) or gone
        (lease and grace over, memberships left behind: what ``hosts rm`` is for)."""
        c = self.control
        # the view's tables change under the watch: one consistent copy
        registered, departing, member_keys, all_adverts, loaded = c.read_view(lambda v: (
            dict(v.hosts), {p[1]: left for p, left in v.departing().items() if p[0] == "hosts"},
            list(v.members), v.all_adverts(), v.loaded))
        members: dict[str, list[str]] = {}
        for (overlay, host_id) in member_keys:
            members.setdefault(host_id, []).append(overlay)
        adverts: dict[str, int] = {}
        for a in all_adverts:
            adverts[a.host] = adverts.get(a.host, 0) + 1
        lease_ok = c.health.loop("lease").last_ok
        ttl, linger = c.membership.ttl, c.linger
        out = []
        for host_id in sorted(set(registered) | set(members) | set(adverts)):
            h = registered.get(host_id)
            if host_id == c.host_id:
                state = "this host"
            elif host_id in departing:
                state = "departing"
            elif h is not None:
                state = "live"
            else:
                state = "gone"
            row = {"ID": host_id, "VTEP": h.vtep if h else "", "Version": getattr(h, "version", "") if h else "",
                   "State": state, "Endpoints": adverts.get(host_id, 0), "Overlays": sorted(members.get(host_id, [])),
                   "LastSeen": None, "GraceLeft": None}
            if state == "this host":
                row["LastSeen"] = round(time.time() - lease_ok, 1) if lease_ok else None
            elif state == "live":
                row["LastSeen"] = 0.0  # its lease is there now: it refreshed within --lease-ttl
            elif state == "departing":
                left = departing[host_id]
                row["GraceLeft"] = round(left, 1)
                row["LastSeen"] = round(ttl + linger - left, 1)  # its silence began a lease TTL before
            out.append(row)
        return out if loaded else []

    def overlays(self) -> list[dict]:
        """Every overlay of the view: VNI, state, member hosts (with their state) and endpoints."""
        states = {h["ID"]: h for h in self.hosts()}
        overlays, members, adverts = self.control.read_view(
            lambda v: (dict(v.overlays), list(v.members), v.all_adverts()))
        out = []
        for name, o in sorted(overlays.items()):
            hosts = sorted(h for (ov, h) in members if ov == name)
            out.append({"Name": name, "VNI": o.vni, "State": o.state, "Internal": o.internal,
                        "Subnets": [p.pool for p in o.pools()],
                        "Members": [{"ID": h, "State": states.get(h, {}).get("State", "gone"),
                                     "VTEP": states.get(h, {}).get("VTEP", ""),
                                     "LastSeen": states.get(h, {}).get("LastSeen"),
                                     "Endpoints": sum(1 for a in adverts if a.overlay == name and a.host == h)}
                                    for h in hosts]})
        return out

    # -- eviction ---------------------------------------------------------------------------
    def evict(self, host_id: str, force: bool = False) -> Eviction:
        """Remove what dead host ``host_id`` left in etcd (see the design note).  BadRequest for a
        malformed id, Conflict for this host or (without ``force``) a live one, or an unknown one."""
        if not isinstance(host_id, str) or not records.HOST_ID.fullmatch(host_id):
            raise BadRequest(f"host {str(host_id)[:40]!r} is not a pynet host id (12 hex digits, as "
                             "`pynet hosts` shows them)")
        c, store = self.control, self.control.store
        if host_id == c.host_id:
            raise Conflict(f"host {host_id} is this host: a host cannot evict itself")
        report = Eviction(host_id, forced=force)
        registration = store.get(keys.host(host_id))
        if registration is not None and not force:
            raise Conflict(f"host {host_id} is live (its lease is in etcd): stop its pynet and wait "
                           f"{c.membership.ttl} s (--lease-ttl) for the lease to end, or use --force "
                           "for a host known to be dead")
        ips, live_ips = c.read_view(lambda v: (
            {ip for a in v.adverts_of(host_id).values() for ip in a.ips},
            {ip for a in v.all_adverts() if a.host != host_id for ip in a.ips}))
        for e in store.list(keys.adverts_prefix()):
            parts = keys.parse_cluster_key(e.key)
            if parts is None or parts[2] != host_id:
                continue
            try:
                ips.update(records.advert(parts[1:], e.value).ips)
            except InvalidRecord:
                pass  # unreadable, and this host's: deleted all the same
            if _delete(store, e.key):
                report.adverts += 1
        for e in store.list(keys.members_prefix()):
            parts = keys.parse_cluster_key(e.key)
            if parts is not None and parts[2] == host_id and _delete(store, e.key):
                report.memberships.append(parts[1])
        for overlay in report.memberships:  # it may have been the last member of an overlay being removed
            try:
                if c.registry.forget_if_unused(overlay):
                    report.overlays_removed.append(overlay)
            except Conflict:
                pass  # an unreadable overlay record: counted where it was read, left for the operator
        if registration is not None and _delete(store, registration.key):
            report.registration = True
        if not (report.registration or report.adverts or report.memberships or ips
                or host_id in {h["ID"] for h in self.hosts()}):
            raise Conflict(f"host {host_id} is not known to the cluster (nothing of it in etcd)")
        report.addresses = sorted(ips - live_ips)  # an address in another host's advert is not its own
        return report


def _delete(store, key: str) -> bool:
    """Delete ``key`` at the revision read (a concurrent rewrite is decided on again); True if it was there."""
    return modify(store, key, lambda entry: Delete(True) if entry is not None else Keep(False), key)
