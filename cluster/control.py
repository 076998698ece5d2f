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
"""

from __future__ import annotations

import logging
import threading
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
                 health: Health | None = None) -> None:
        self.store = store
        self.host_id = host_id
        self.vtep = vtep
        self.health = health or Health()
        self.registry = OverlayRegistry(store, host_id, reject=self.health.rejected)
        self.membership = Membership(store, Host(host_id, vtep), lease_ttl)
        self.view = ClusterView(reject=self.health.rejected)
        self.changed = threading.Event()  # set when overlays or members may differ: the Docker sync looks
        self._lock = threading.RLock()  # the view and the intent
        self._joined: dict[str, str] = {}  # overlay -> this host's Docker network id for it
        self._adverts: dict[tuple[str, str], Advert] = {}  # (overlay, endpoint) -> advert
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
        with self._lock:
            self._adverts[(endpoint.overlay, endpoint.endpoint_id)] = advert
        self._put_advert(advert, self.membership.current())

    def withdraw(self, overlay: str, endpoint_id: str) -> None:
        with self._lock:
            self._adverts.pop((overlay, endpoint_id), None)
        self.registry.withdraw(overlay, endpoint_id)

    def _put_advert(self, advert: Advert, lease: int) -> None:
        try:
            self.registry.advertise(advert, lease)
        except LeaseNotFound:  # expired while etcd was away; the keep-alive has not noticed yet
            self.registry.advertise(advert, self.membership.replace(lease))

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
        with self._lock:
            changes = self.view.apply(event)
        self._notify(changes)
        parts = keys.parse_cluster_key(event.key)
        if parts is not None and parts[0] in ("overlays", "members"):
            self.changed.set()

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
                want, joined = dict(self._adverts), dict(self._joined)
                mine = {name: m for (name, host), m in self.view.members.items() if host == self.host_id}
            renew = generation != self._generation or lease != self.membership.lease
            for k, advert in want.items():
                if renew or have.get(k) != advert:
                    self._put_advert(advert, lease)
            for overlay, endpoint_id in have.keys() - want.keys():
                self.registry.withdraw(overlay, endpoint_id)
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


class Snapshot:
    def __init__(self, overlays: dict[str, Overlay], wanted: list[Overlay], removing: list[str],
                 joined: dict[str, str]) -> None:
        self.overlays, self.wanted, self.removing, self.joined = overlays, wanted, removing, joined
