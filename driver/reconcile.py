"""Start-up reconciliation: replay stored state through the create path, then collect garbage.

Design note.  dockerd never re-sends CreateNetwork, CreateEndpoint or Join
(protocol.md §6.7), so after a reboot or a plugin crash pynet rebuilds the
kernel from its own records, through the very ``ensure_network`` /
``ensure_endpoint`` that CreateNetwork and CreateEndpoint use (style.md §9).

* A network's bridge and gateway addresses are ensured.
* An endpoint's pair is re-attached when its host end exists.  When the host
  end is gone and the endpoint had joined a container, the container's
  namespace (and the pair with it) is gone too, and dockerd will send Leave /
  DeleteEndpoint for it later; nothing is recreated.  A pair of an endpoint that
  never joined is recreated, so the coming Join finds it.
* Overlay networks and endpoints are joined and advertised again through the
  control-plane port (``restore_network``/``restore_endpoint``): that is how the
  control plane learns, after a restart, what this host has.  Its background
  work starts only after this replay, so it never mistakes this host's adverts
  for leftovers.
* The firewall is rewritten from the records, and only then are host-port
  claims that no record names released (driver/external.py): what a crash
  between a claim and its record, or between forgetting a record and freeing
  its ports, left behind.
* Then every link whose name pynet would have made (driver/names.py) but that
  no record owns is deleted.  Links are listed *before* records are read, so a
  link created by a request running concurrently is never mistaken for garbage
  (its record is written before its link).
"""

from __future__ import annotations

import logging

from pynet.driver import names
from pynet.driver.service import NetworkService

log = logging.getLogger("pynet.reconcile")


def reconcile(service: NetworkService) -> dict:
    """Bring the kernel in line with the store; returns counts for the log."""
    links_before = service.links.names()
    networks = service.repo.networks()
    counts = {"networks": 0, "endpoints": 0, "removed": 0, "ports_released": 0, "failed": 0}
    by_id = {}
    for net in networks:
        by_id[net.id] = net
        counts["networks"] += _try(lambda: service.restore_network(net), f"network {net.id[:12]}", counts)
    if _safe(service.sync_firewall, "firewall"):
        released = []
        counts["failed"] += not _safe(lambda: released.append(service.publisher.collect_orphan_claims()),
                                      "host-port claims")
        counts["ports_released"] = sum(released)
    else:
        counts["failed"] += 1  # claims stay until the rules can be rewritten (driver/gc.py)
    endpoints = service.repo.endpoints()
    present = set(links_before)
    for ep in endpoints:
        net = by_id.get(ep.network_id)
        if net is None:
            continue
        counts["endpoints"] += _try(lambda: service.restore_endpoint(net, ep, ep.host_if in present),
                                    f"endpoint {ep.id[:12]}", counts)
    counts["removed"] = collect_garbage(service, links_before, networks, endpoints)
    log.info("reconciled: %s", counts)
    return counts


def collect_garbage(service: NetworkService, link_names: list[str], networks, endpoints) -> int:
    """Delete pynet-named links that no stored network or endpoint owns."""
    bridges = {n.config.bridge for n in networks}
    network_ids = {n.id[:12] for n in networks}
    endpoint_ids = {e.id[:12] for e in endpoints}
    removed = 0
    for name in link_names:
        owner = names.owner_of(name)
        if owner is None or name in bridges:
            continue
        kind, prefix = owner
        orphan = prefix not in (network_ids if kind == "network" else endpoint_ids)
        if orphan and _safe(lambda: service.links.delete(name), f"orphan link {name}"):
            log.info("removed orphan link %s", name)
            removed += 1
    return removed


def _try(fn, what: str, counts: dict) -> int:
    if _safe(fn, what):
        return 1
    counts["failed"] += 1
    return 0


def _safe(fn, what: str) -> bool:
    try:
        fn()
        return True
    except Exception:
        log.exception("reconciling %s failed", what)
        return False
