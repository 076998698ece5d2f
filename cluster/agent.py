"""The cluster agent: background threads that keep this host in step with the cluster.

Design note.  Three threads, none of them ever inside a request handler:

* keepalive -- refreshes this host's lease every ttl/3; a lease lost to a long
  etcd outage is replaced and everything is re-advertised on the new one.
* watch -- lists ``/pynet/v1/cluster/`` into the view, then follows a watch from
  the listed revision; each event reprograms the VXLAN tables of the overlay it
  concerns (remote MAC -> VTEP, IP -> MAC).  After a compaction, a lost
  connection or etcd coming back it lists again: catching up is "load a fresh
  view and diff", the same path as start-up.  Every RESYNC seconds it also
  re-reads the kernel tables and runs housekeeping: this host's adverts and
  memberships are made to match its local records, and IPAM releases deferred
  while etcd was down are applied (writes that failed during an outage are
  finished here).
* docker -- the only thread that calls the Docker API: it describes overlays
  this host created (name, IPAM config) into their record, creates the Docker
  network for overlays this host lacks, and removes unused copies of overlays
  that were removed somewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from pynet.cluster.docker_api import DockerApi, DockerApiError, create_request
from pynet.cluster.models import Member
from pynet.cluster.service import ClusterService
from pynet.store import keys
from pynet.store.base import Compacted

log = logging.getLogger("pynet.cluster")
RESYNC = 30.0
WATCH_IDLE = 5.0
RETRY = 1.0


class ClusterAgent:
    def __init__(self, cluster: ClusterService, network, docker: DockerApi | None, ipam=None) -> None:
        self.cluster = cluster
        self.ipam = ipam  # ipam.service.IpamService: replays releases deferred during an outage
        self.network = network  # driver.service.NetworkService: local records and the kernel
        self.docker = docker
        self._stop = threading.Event()
        self._generation = -1  # lease generation the adverts were last written with
        self._failing: dict[str, str] = {}  # what -> last error, so an outage logs once
        self._docker_backoff: dict[str, float] = {}

    def start(self) -> None:
        for name, fn in (("keepalive", self._keepalive_loop), ("watch", self._watch_loop),
                         ("docker", self._docker_loop)):
            threading.Thread(target=fn, name=f"pynet-cluster-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.cluster.wakeup.set()

    # -- keepalive ---------------------------------------------------------------------
    def _keepalive_loop(self) -> None:
        every = max(1.0, self.cluster.membership.ttl / 3)
        while not self._stop.is_set():
            self._guard("lease", self.cluster.membership.keepalive)
            self._stop.wait(every if "lease" not in self._failing else RETRY)

    # -- watch -------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        store = self.cluster.store
        loaded = False
        next_resync = 0.0
        while not self._stop.is_set():
            try:
                if not loaded:
                    self.load()
                    loaded = True
                    next_resync = time.monotonic() + RESYNC
                for event in store.watch(keys.cluster_prefix(), self.cluster.view.revision + 1, WATCH_IDLE):
                    with self.cluster.view_lock:
                        touched = self.cluster.view.apply(event)
                    self._program(touched)
                    if touched & {"*"} or _is(event.key, "overlays", "members"):
                        self.cluster.wakeup.set()
                    if time.monotonic() > next_resync:
                        break
                if time.monotonic() > next_resync:
                    self.resync()
                    next_resync = time.monotonic() + RESYNC
                self._failing.pop("watch", None)
            except Compacted:
                loaded = False
            except Exception as exc:
                self._note("watch", exc)
                loaded = False
                self._stop.wait(RETRY)

    def load(self) -> None:
        """A fresh view from a listing, then kernel tables, adverts and members made to match it."""
        store = self.cluster.store
        revision = store.current_revision()  # before the listing: events in between are re-applied, harmlessly
        entries = store.list(keys.cluster_prefix())
        with self.cluster.view_lock:
            self.cluster.view.load(entries, revision)
        self.resync()
        self.cluster.wakeup.set()

    def resync(self) -> None:
        for net in self._overlays():
            self._guard(f"tables of {net.config.overlay}", lambda: self.cluster.program(net, reread=True))
        self.housekeeping()

    def _program(self, touched: set[str]) -> None:
        for net in self._overlays():
            if "*" in touched or net.config.overlay in touched:
                self._guard(f"tables of {net.config.overlay}", lambda: self.cluster.program(net))

    def housekeeping(self) -> None:
        """Make this host's adverts and memberships in etcd match its local records."""
        c = self.cluster
        me = c.host_id
        generation = c.membership.generation
        lease = c.membership.current()
        # Read etcd before the local records: anything a concurrent handler wrote to etcd
        # was written to the local store first, so it is never mistaken for a leftover.
        have = c.registry.my_adverts()
        mine = {name: m for (name, host), m in c.view_members().items() if host == me}
        overlays = {n.id: n for n in self._overlays()}
        want = {}
        for ep in self.network.repo.endpoints():
            net = overlays.get(ep.network_id)
            if net is not None:
                want[(net.config.overlay, ep.id)] = c.advert(net, ep)
        renew = generation != self._generation or lease != c.membership.lease
        for k, advert in want.items():
            if renew or k not in have or have[k][0] != advert:
                c.put_advert(advert, lease)
        for k in have.keys() - want.keys():
            c.registry.withdraw(*k)
        self._generation = generation
        if self.ipam is not None and self.ipam.replay_deferred():
            log.info("applied IPAM releases deferred while etcd was unreachable")
        local_ids = set(overlays)
        for net in overlays.values():
            if mine.get(net.config.overlay) != Member(net.id):
                c.join(net)
        for name, member in mine.items():
            if member.network_id not in local_ids:
                log.info("network %s of overlay %r is gone here: leaving it", member.network_id[:12], name)
                c.registry.leave(name, member.network_id)

    # -- docker ------------------------------------------------------------------------
    def _docker_loop(self) -> None:
        soon = False
        while not self._stop.is_set():
            self.cluster.wakeup.wait(0.25 if soon else 10.0)
            self.cluster.wakeup.clear()
            if self._stop.is_set() or self.docker is None:
                continue
            soon = False
            try:
                soon = self.docker_sync()
                self._failing.pop("docker sync", None)
            except Exception as exc:
                self._note("docker sync", exc)

    def docker_sync(self) -> bool:
        """One pass; True when something should be looked at again shortly (a network dockerd is
        still creating: the handler that woke us runs before dockerd has stored the network)."""
        c = self.cluster
        me = c.host_id
        again = False
        local = self._overlays()
        with c.view_lock:
            records = dict(c.view.overlays)
            wanted = c.view.wanted_here(me)
            removing = c.view.removing()
        # 1. Describe overlays created here, so the other hosts can create the same Docker network.
        for net in local:
            rec = records.get(net.config.overlay)
            if rec is not None and not rec.docker and rec.origin == me and rec.origin_network == net.id:
                inspected = self.docker.network(net.id)
                if inspected is None:
                    again = True
                else:
                    body = create_request(inspected, rec.name, me)
                    c.registry.update(rec.name, lambda o: o if o.docker else replace(o, docker=body))
                    log.info("overlay %r is Docker network %r: other hosts will create it", rec.name, body["Name"])
        # 2. Create the Docker network of overlays this host lacks.
        have = {n.config.overlay for n in local}
        names = None
        for rec in wanted:
            if rec.name in have or self._docker_backoff.get(rec.name, 0) > time.monotonic():
                continue
            names = names if names is not None else self.docker.network_names()
            name = rec.docker.get("Name", rec.name)
            if name in names:
                self._backoff(rec.name, f"overlay {rec.name!r}: a Docker network named {name!r} already exists "
                                        "here and is not this overlay; not creating it")
                continue
            try:
                self.docker.create_network(rec.docker)
                log.info("created Docker network %r for overlay %r", name, rec.name)
            except DockerApiError as exc:
                self._backoff(rec.name, f"overlay {rec.name!r}: {exc}")
        # 3. Remove this host's unused copies of overlays removed elsewhere.
        gone = {r.name for r in removing}
        for net in local:
            if net.config.overlay in gone:
                inspected = self.docker.network(net.id)
                if inspected is not None and not inspected.get("Containers"):
                    what = f"removing Docker network {inspected.get('Name')!r} of overlay {net.config.overlay!r}"
                    # A refusal (e.g. dockerd's endpoint-count leak, moby/moby#42119) is logged once
                    # and tried again on the next pass.
                    self._guard(what, lambda: self._remove_copy(net.id, what))
        return again

    def _remove_copy(self, network_id: str, what: str) -> None:
        if self.docker.remove_network(network_id):
            log.info("%s: done", what)

    def _backoff(self, name: str, message: str, seconds: float = 30.0) -> None:
        if self._docker_backoff.get(name, 0) == 0:
            log.warning("%s", message)
        self._docker_backoff[name] = time.monotonic() + seconds

    # -- helpers -----------------------------------------------------------------------
    def _overlays(self):
        return [n for n in self.network.repo.networks() if n.config.mode == "overlay"]

    def _guard(self, what: str, fn) -> None:
        try:
            fn()
            if self._failing.pop(what, None) is not None:
                log.info("%s: working again", what)
        except Exception as exc:
            self._note(what, exc)

    def _note(self, what: str, exc: Exception) -> None:
        text = str(exc) or type(exc).__name__
        if self._failing.get(what) != text:
            log.warning("%s: %s", what, text)
        self._failing[what] = text


def _is(key: str, *kinds: str) -> bool:
    parts = keys.parse_cluster_key(key)
    return parts is not None and parts[0] in kinds
