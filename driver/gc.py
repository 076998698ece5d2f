"""Orphan collection: records dockerd no longer knows, found against dockerd's own lists.

Design note.  dockerd calls CreateNetwork / CreateEndpoint *before* it stores the network or endpoint
itself.  If it is killed in between, or gives up on a slow answer, pynet holds a record dockerd will never
send a Delete for: a bridge or a veth pair, host-port claims, firewall rules.  This loop (a background
thread under pynet/background.py, never a handler: protocol.md §1.6) compares pynet's records with what
dockerd lists and removes the ones it has lost through the normal removal path (DeleteEndpoint,
DeleteNetwork), so the removal order of driver/service.py holds here too.

What dockerd knows: ``GET /networks`` for the networks; ``GET /networks/{id}`` "Containers" for the
endpoints of a network -- moby lists every endpoint of the network there, joined ones under their
container's ID and the others (created, not joined) as ``ep-<endpoint id>``, each with its
"EndpointID"; an --internal network is no different.  A stopped container has no endpoint left (dockerd
removed it, and pynet's record, at the stop).

Races, and why a record is collected only when it is
* missing in dockerd's answers on two passes in a row, the first at least ``min_age`` seconds before:
  a record of a create still in flight (dockerd has not stored it yet), or one moby leaves out of an
  answer for a moment (an endpoint half-way through a join), shows up again by the next pass;
* read *before* dockerd is asked: a record created after the question is not judged on its answer;
* not being worked on by a request right now (its lock, driver/locks.py): a create that hangs for
  longer than ``min_age`` is left alone until it has answered;
* of a network dockerd knows, for an endpoint; and a network is only collected while dockerd still
  knows at least one of pynet's networks -- a dockerd that knows none of them is more likely not the one
  using this pynet (a wrong ``--docker-host``) than one that lost them all, and removing everything on
  that guess is not a risk worth taking (the pass says so in /Pynet.Health).

Each pass also collects what crashes leave without a record (driver/external.py, driver/reconcile.py):
host-port claims no record names, pynet-named links no record owns, and (with ``ipam``) address claims
of pools nobody holds.  Address claims and pools of a collected record are not released: dockerd made
them and only dockerd knows whether another container uses them now, so they stay claimed (a leak,
never a double claim).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from pynet.driver.reconcile import collect_garbage
from pynet.driver.service import NetworkService

log = logging.getLogger("pynet.gc")
NAME = "orphan-gc"


@dataclass
class _Sighting:
    first_missing: float  # monotonic time of the first pass that missed it
    passes: int = 1


class WrongDockerd(Exception):
    """dockerd knows none of pynet's networks: network records are not collected (see the note)."""


class OrphanCollector:
    def __init__(self, service: NetworkService, docker, min_age: float, ipam=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.docker = docker  # pynet.docker_api.DockerApi (tests pass a fake with the same two calls)
        self.ipam = ipam  # pynet.ipam.service.IpamService, or None
        self.min_age = min_age
        self._clock = clock
        self._missing: dict[tuple[str, ...], _Sighting] = {}

    def step(self) -> dict:
        """One pass; returns what it collected.  Raises (a failed pass, in /Pynet.Health) when dockerd
        cannot be asked, or when it knows none of pynet's networks (after collecting the rest)."""
        links = self.service.links.names()  # before the records, as at start-up (driver/reconcile.py)
        networks = self.service.repo.networks()
        endpoints = self.service.repo.endpoints()
        known_networks = set(self.docker.network_names().values())
        missing, suspicious = self._missing_now(networks, endpoints, known_networks)
        now = self._clock()
        self._missing = {key: self._seen(key, now) for key in missing}
        counts = {"networks": 0, "endpoints": 0}
        for key, sighting in list(self._missing.items()):
            if sighting.passes >= 2 and now - sighting.first_missing >= self.min_age:
                counts[f"{key[0]}s"] += self._collect(key)
        counts["ports"] = self.service.publisher.collect_orphan_claims()
        counts["links"] = collect_garbage(self.service, links, self.service.repo.networks(),
                                          self.service.repo.endpoints())
        counts["addresses"] = self.ipam.collect_orphan_claims() if self.ipam is not None else 0
        if any(counts.values()):
            log.info("collected orphans: %s", counts)
        if suspicious:
            raise WrongDockerd(f"dockerd at {self.docker.docker_host} knows none of pynet's {len(networks)} "
                               "network(s): not collecting them (is --docker-host the dockerd that uses pynet?)")
        return counts

    def _missing_now(self, networks, endpoints, known_networks: set[str]) -> tuple[set, bool]:
        missing: set[tuple[str, ...]] = set()
        ours = {n.id for n in networks}
        suspicious = bool(ours) and not ours & known_networks
        for net in networks:
            if net.id not in known_networks and not suspicious:
                missing.add(("network", net.id))
        known_endpoints: dict[str, set[str] | None] = {}
        for ep in endpoints:
            if ep.network_id not in known_networks:
                continue  # collected with its network, or not at all
            if ep.network_id not in known_endpoints:
                known_endpoints[ep.network_id] = self._endpoints_of(ep.network_id)
            seen = known_endpoints[ep.network_id]
            if seen is not None and ep.id not in seen:
                missing.add(("endpoint", ep.network_id, ep.id))
        return missing, suspicious

    def _endpoints_of(self, network_id: str) -> set[str] | None:
        """Endpoint IDs dockerd lists on the network; None if it is gone since the list (next pass)."""
        doc = self.docker.network(network_id)
        if doc is None:
            return None
        containers = doc.get("Containers") or {}
        if not isinstance(containers, dict):
            raise ValueError(f"dockerd's GET /networks/{network_id[:12]}: Containers is not an object")
        return {c.get("EndpointID") for c in containers.values() if isinstance(c, dict)}

    def _seen(self, key: tuple[str, ...], now: float) -> _Sighting:
        before = self._missing.get(key)
        return _Sighting(now) if before is None else _Sighting(before.first_missing, before.passes + 1)

    def _collect(self, key: tuple[str, ...]) -> int:
        kind, network_id, *rest = key
        record_id = rest[0] if rest else network_id
        if self.service.busy(record_id):
            return 0  # a request is working on it: look again next pass
        self._missing.pop(key, None)
        if kind == "network":
            log.warning("network %s is not known to dockerd: removing it", network_id[:12])
            # this host's copy only: the overlay stays in the cluster, and docker sync makes the copy again
            self.service.delete_network(network_id, leave_cluster=False)
        else:
            log.warning("endpoint %s of network %s is not known to dockerd: removing it",
                        record_id[:12], network_id[:12])
            self.service.delete_endpoint(network_id, record_id)
        return 1
