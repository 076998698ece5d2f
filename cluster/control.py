"""The overlay control plane on the cluster store: driver/overlay/port.ControlPlane, implemented on etcd.

Design note.  Two kinds of state meet here, each with one owner:

* this host's **intent** -- which overlays it has a Docker network for and which of its endpoints it
  advertises -- set only through the port, by the driver's request handlers and its start-up replay;
* the **view** of the whole cluster (view.py), set only by the watch (watch.py).

A handler's call records the intent first and then writes it to etcd with atomic primitives
(registry.py); it never waits for other hosts and never calls the Docker API, and each etcd call fails
within the store's timeout, so an etcd outage slows dockerd by seconds, never hangs it.  A write that
failed is finished by ``housekeeping``, which makes etcd hold exactly this host's intent: it runs after
every (re)load of the view, every RESYNC seconds, and when the lease had to be replaced.  Records are
read through records.py; one that does not decode is skipped and counted (pynet/health.py), never
acted on.  Whatever changes the remotes of an overlay is passed to the subscribers (the driver's
reconciler), which alone writes the kernel.

Cut off from etcd, not from peers.  A host that loses etcd keeps its view and its tables (the watch
only reloads once a listing succeeds); the others keep its containers for ``grace_period`` seconds after
it went silent (view.py: the lease's deletes are held for grace - lease TTL), and when it is back its
keep-alive grants a new lease, re-registers and re-advertises (housekeeping), which cancels the
departures before they are due.  A container removed here is withdrawn with a tombstone first, so the
others drop it at once rather than after the grace; one whose withdrawal failed while etcd was away is
remembered (``_gone``) and tombstoned by housekeeping once etcd answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable

from pynet.cluster.membership import Membership
from pynet.cluster.models import Advert, Host, Member, Overlay, OverlayPool
from pynet.cluster.registry import OverlayRegistry
from pynet.cluster.view import Changes, ClusterView
from pynet.driver.overlay.port import ALL, Claim, LocalEndpoint, OverlaySpec, Remote
from pynet.health import Health
from pynet.store import keys
from pynet.store.base import Event, LeaseNotFound, Store

log = logging.getLogger("pynet.cluster")


class EtcdControlPlane:
    def __init__(self, store: Store, host_id: str, vtep: str, lease_ttl: int = 15,
                 health: Health | None = None, grace_period: float = 0.0, clock=time.monotonic) -> None:
        self.store = store
        self.host_id = host_id
        self.vtep = vtep
        self.health = health or Health()
        self.registry = OverlayRegistry(store, host_id, reject=self.health.rejected)
        self.membership = Membership(store, Host(host_id, vtep, version=_version()), lease_ttl)
        # grace_period 0: no grace, departures apply at once (the behaviour before it existed)
        self.linger = max(0.0, grace_period - lease_ttl) if grace_period else 0.0
        self.view = ClusterView(reject=self.health.rejected, linger=self.linger, clock=clock)
        self.changed = threading.Event()  # set when overlays or members may differ: the Docker sync looks
        self._lock = threading.RLock()  # the view and the intent
        self._joined: dict[str, str] = {}  # overlay -> this host's Docker network id for it
        self._adverts: dict[tuple[str, str], Advert] = {}  # (overlay, endpoint) -> advert
        self._gone: dict[tuple[str, str], Advert] = {}  # withdrawn here, tombstone not yet written
        self._names: dict[str, tuple[str, ...]] = {}  # endpoint -> its DNS names (clusterdns/docker_names.py)
        self._listeners: list[Callable[[Changes], None]] = []
        self._housekeeping = threading.Lock()
        self._generation = -1  # lease generation the adverts were last written with
        self._loops = None  # cluster.loops.ClusterLoops once started

    # -- the port: CreateNetwork / DeleteNetwork ------------------------------------------
    def claim(self, spec: OverlaySpec) -> Claim:
        wanted = Overlay(name=spec.name, vni=0, ipv4=tuple(OverlayPool(p.cidr, p.gateway) for p in spec.ipv4),
                         ipv6=tuple(OverlayPool(p.cidr, p.gateway) for p in spec.ipv6), internal=spec.internal,
                         origin_network=spec.network_id)
        record, created = self.registry.claim(wanted, spec.vni)
        return Claim(record.name, record.vni, created)

    def undo(self, claim: Claim) -> None:
        self.registry.undo_claim(claim.name, claim.vni)

    def join(self, name: str, network_id: str) -> None:
        with self._lock:
            self._joined[name] = network_id
        self.registry.join(name, network_id)
        self.changed.set()

    def leave(self, name: str, network_id: str) -> None:
        with self._lock:
            if self._joined.get(name) == network_id:
                del self._joined[name]
        self.registry.leave(name, network_id)
        self.changed.set()

    def abandon(self, name: str, network_id: str) -> None:
        with self._lock:
            if self._joined.get(name) == network_id:
                del self._joined[name]
        self.registry.drop_member(name, network_id)

    # -- the port: endpoints --------------------------------------------------------------
    def advertise(self, endpoint: LocalEndpoint) -> None:
        advert = Advert(overlay=endpoint.overlay, host=self.host_id, endpoint=endpoint.endpoint_id,
                        mac=endpoint.mac, vtep=self.vtep, ips=tuple(endpoint.ips))
        key = (endpoint.overlay, endpoint.endpoint_id)
        with self._lock:
            named = endpoint.endpoint_id in self._names
            advert = replace(advert, names=self._names.get(endpoint.endpoint_id, ()))
            self._adverts[key] = advert
            self._gone.pop(key, None)
        written = self._put_advert(advert, self.membership.current(), keep_names=not named)
        if written.names != advert.names:  # the names etcd had (a restart): until Docker is asked again
            with self._lock:
                if self._adverts.get(key) == advert:
                    self._adverts[key] = written
                self._names.setdefault(endpoint.endpoint_id, written.names)

    def withdraw(self, overlay: str, endpoint_id: str) -> None:
        with self._lock:
            advert = self._adverts.pop((overlay, endpoint_id), None)
            if advert is not None:
                self._gone[(overlay, endpoint_id)] = advert
            if not any(eid == endpoint_id for _, eid in self._adverts):
                self._names.pop(endpoint_id, None)
        if advert is None:
            self.registry.withdraw(overlay, endpoint_id)
        else:
            self._tombstone(advert)

    def _tombstone(self, advert: Advert) -> None:
        """Withdraw with a tombstone (module note); forgotten from ``_gone`` once written."""
        tombstone = replace(advert, withdrawn=True)
        lease = self.membership.current()
        try:
            self.registry.withdraw(advert.overlay, advert.endpoint, tombstone, lease)
        except LeaseNotFound:
            self.registry.withdraw(advert.overlay, advert.endpoint, tombstone, self.membership.replace(lease))
        with self._lock:
            if self._gone.get((advert.overlay, advert.endpoint)) == advert:
                del self._gone[(advert.overlay, advert.endpoint)]

    # -- DNS names (not in the port: they come from the Docker API, in the background) ------
    def local_endpoints(self) -> set[str]:
        """The ids of the endpoints this host advertises."""
        with self._lock:
            return {eid for _, eid in self._adverts}

    def name(self, endpoint_id: str, names: tuple[str, ...]) -> None:
        """Give a local endpoint's adverts its DNS names (intent first, like ``advertise``)."""
        with self._lock:
            if self._names.get(endpoint_id) == names:
                return
            changed = {k: replace(a, names=names) for k, a in self._adverts.items() if k[1] == endpoint_id}
            if not changed:
                return  # not (or no longer) advertised here: nothing to name, nothing to keep
            self._names[endpoint_id] = names
            self._adverts.update(changed)
        lease = self.membership.current()
        for key, advert in changed.items():
            self._put_advert(advert, lease)
            with self._lock:
                withdrawn = key not in self._adverts
            if withdrawn:  # a DeleteEndpoint withdrew it while the put was on its way: take it back out
                self._tombstone(advert)

    def names_view(self) -> tuple[int, list[Advert]]:
        """(revision, every advert of the cluster) as the watch has seen it: what the resolver answers from."""
        with self._lock:
            return self.view.revision, self.view.all_adverts()

    def _put_advert(self, advert: Advert, lease: int, keep_names: bool = False) -> Advert:
        try:
            return self.registry.advertise(advert, lease, keep_names)
        except LeaseNotFound:  # expired while etcd was away; the keep-alive has not noticed yet
            return self.registry.advertise(advert, self.membership.replace(lease), keep_names)

    # -- the port: what the reconciler reads ----------------------------------------------
    def remotes(self, overlay: str, macs: Iterable[str] | None = None) -> dict[str, Remote] | None:
        with self._lock:
            if not self.view.loaded:
                return None
            return self.view.remotes(overlay, self.host_id, macs)

    def members(self) -> frozenset[str] | None:
        with self._lock:
            if not self.view.loaded:
                return None
            return frozenset(h.vtep for h in self.view.hosts.values())

    def subscribe(self, listener: Callable[[Changes], None]) -> None:
        self._listeners.append(listener)

    def _notify(self, changes: Changes) -> None:
        if changes:
            for listener in self._listeners:
                listener(changes)

    # -- the port: lifecycle --------------------------------------------------------------
    def start(self, supervisor, docker=None) -> None:
        """Start the keep-alive, the watch and (with ``docker``, a pynet.docker_api.DockerApi) the Docker
        sync, under ``supervisor`` (pynet/background.py)."""
        from pynet.cluster.loops import ClusterLoops

        self._loops = ClusterLoops(self, supervisor, docker)
        self._loops.start()

    def stop(self) -> None:
        self.changed.set()

    # -- the view (the watch) -------------------------------------------------------------
    def load(self) -> None:
        """A fresh view from a listing; then every table is diffed again and etcd made to match intent."""
        revision = self.store.current_revision()  # before the listing: events in between are re-applied
        entries = self.store.list(keys.cluster_prefix())
        with self._lock:
            self.view.load(entries, revision)
        self._notify({ALL: None})
        self.changed.set()
        self.housekeeping()

    def apply(self, event: Event) -> None:
        parts = keys.parse_cluster_key(event.key)
        with self._lock:
            leaving = (self.linger and event.deleted and parts is not None and parts[0] == "hosts"
                       and parts[1] in self.view.hosts and parts[1] != self.host_id)
            changes = self.view.apply(event)
        if leaving:
            log.warning("host %s lost its lease (etcd unreachable from it, or it is gone): its containers stay "
                        "in the tables for %.0f s more unless it comes back", parts[1], self.linger)
        self._notify(changes)
        if parts is not None and parts[0] in ("overlays", "members"):
            self.changed.set()

    def expire(self) -> None:
        """Drop the departed hosts and adverts whose grace is over (a loop runs this every second)."""
        with self._lock:
            changes = self.view.expire()
        if ALL in changes:
            log.warning("a host's grace period ended: its containers left this host's tables")
        self._notify(changes)

    def read_view(self, read: Callable[[ClusterView], object]):
        """``read(view)`` under the lock the watch writes the view under: one consistent look (cluster/hosts.py)."""
        with self._lock:
            return read(self.view)

    def snapshot(self) -> "Snapshot":
        """A consistent copy of what the Docker sync decides from."""
        with self._lock:
            return Snapshot(overlays=dict(self.view.overlays), wanted=self.view.wanted_here(self.host_id),
                            removing=[o.name for o in self.view.removing()], joined=dict(self._joined))

    # -- housekeeping ---------------------------------------------------------------------
    def housekeeping(self) -> None:
        """Make this host's adverts and memberships in etcd match its intent."""
        with self._housekeeping:
            generation = self.membership.generation
            lease = self.membership.current()
            with self._lock:
                overlays = set(self._joined) | {o for o, _ in self._adverts}
                overlays |= {o for o, _ in self.view.adverts_of(self.host_id)}
            # Read etcd before the intent: anything a concurrent handler wrote to etcd was recorded in
            # the intent first, so it is never mistaken for a leftover.
            have = self.registry.my_adverts(overlays)
            with self._lock:
                want, joined, gone = dict(self._adverts), dict(self._joined), dict(self._gone)
                mine = {name: m for (name, host), m in self.view.members.items() if host == self.host_id}
            renew = generation != self._generation or lease != self.membership.lease
            for k, advert in want.items():
                if renew or have.get(k) != advert:
                    self._put_advert(advert, lease)
            for k in have.keys() - want.keys() - gone.keys():
                if have[k] is None:  # unreadable: nothing to make a tombstone of
                    self.registry.withdraw(*k)
                else:
                    self._tombstone(have[k])
            for advert in gone.values():  # withdrawn while etcd was away: even if the lease took it
                self._tombstone(advert)
            self._generation = generation
            for name, network_id in joined.items():
                if mine.get(name) != Member(network_id):
                    self.registry.join(name, network_id)
            for name, member in mine.items():
                if joined.get(name) != member.network_id:
                    log.info("network %s of overlay %r is gone here: leaving it", member.network_id[:12], name)
                    self.registry.leave(name, member.network_id)

    def keepalive(self) -> None:
        """Refresh the lease; a new one (the old expired) gets every advert written again at once."""
        if self.membership.keepalive():
            self.housekeeping()


def _version() -> str:
    """This pynet's release, written into its host record; "" when it is not installed (a test's tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pynet-plugin")
    except PackageNotFoundError:
        return ""


class Snapshot:
    def __init__(self, overlays: dict[str, Overlay], wanted: list[Overlay], removing: list[str],
                 joined: dict[str, str]) -> None:
        self.overlays, self.wanted, self.removing, self.joined = overlays, wanted, removing, joined
