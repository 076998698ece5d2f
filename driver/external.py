"""External connectivity: the published ports of a gateway endpoint (Program/RevokeExternalConnectivity).

Design note.  dockerd sends the sandbox's port map to the endpoint that is its gateway; pynet reserves
the host ports atomically in the store (driver/ports.py), records the bindings on the endpoint, and
rewrites its NAT rules from the stored state (driver/firewall.py).  A repeated Program with the same
map keeps the ports it picked; a failure releases every port the call reserved.

Docker 29 (moby#50283, #50321) sends Program whenever the endpoint becomes the IPv4 or IPv6 gateway,
again without a Revoke between: each call's bindings replace the last one's (what the new map no
longer names is unpublished and its ports released, in the order below), and with
``no_proxy_6to4`` (another endpoint is the IPv6 gateway) only IPv4 is published.  Its shim keeps that
state in memory only, so Leave revokes too (service.leave): after a live-restore restart no Revoke
may come.

Crash consistency: a host port is claimed before the record names it, and released only after the
record no longer names it *and* the rules were rewritten without it.  So a crash never leaves a rule
(or a record that start-up would turn into one) for a port nobody holds; what it can leave is a claim
that no record names, which ``collect_orphan_claims`` releases (at start-up and from driver/gc.py).
A failed rewrite keeps the claims for the same reason: the old rules may still send the ports here.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace
from typing import Callable

from pynet import faults
from pynet.driver import options
from pynet.driver.locks import KeyedLocks
from pynet.driver.models import Endpoint, Network
from pynet.driver.ports import Binding, Claim, PortReservations, families_for, parse_requests
from pynet.driver.repository import Repository
from pynet.errors import BadRequest, Conflict

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, repo: Repository, ports: PortReservations, locks: KeyedLocks,
                 sync_firewall: Callable[[], None]) -> None:
        self.repo, self.ports, self._locks, self._sync = repo, ports, locks, sync_firewall

    def program(self, net: Network, endpoint_id: str, opts: dict, endpoint: Callable[[], Endpoint]) -> None:
        """Publish the port map in ``opts`` on the endpoint; ``endpoint()`` reads it (NotFound if gone)."""
        epo = options.parse_endpoint_options(opts)
        requests = parse_requests(epo.port_bindings)
        if requests and net.config.mode == "macvlan":  # as CreateEndpoint: no bridge, no NAT, nothing to publish
            raise BadRequest(f"network {net.id[:12]} is a macvlan network: ports cannot be published (-p); "
                             "its containers are on the segment, reachable at their own addresses")
        if requests and net.config.internal:
            raise BadRequest(f"network {net.id[:12]} is internal (--internal): ports cannot be published")
        with self._locks.hold(endpoint_id):
            ep = endpoint()
            try:
                bindings = self._claim(net, ep, requests, ipv6=not epo.ipv4_only)
            except Conflict:
                if not self._free_dead_claims(ep.id):
                    raise
                # once: a conflict now is a live container's
                bindings = self._claim(net, ep, requests, ipv6=not epo.ipv4_only)
            faults.reached("ports-claimed")
            stale = [b for b in ep.published if b not in bindings]
            self.repo.update_endpoint(net.id, endpoint_id, lambda e: replace(e, published=bindings))
            if not (bindings or stale):
                return
            try:
                self._sync()
            except Exception:
                try:
                    self._unpublish(net.id, endpoint_id, replace(ep, published=bindings + stale))
                except Exception:  # the rules could not be rewritten twice: the claims wait for the GC
                    pass
                raise
            self.release(replace(ep, published=stale))  # their rules are gone now

    def revoke(self, network_id: str, endpoint_id: str) -> None:
        """Unpublish the endpoint's ports; nothing published is success."""
        with self._locks.hold(endpoint_id):
            ep = self.repo.endpoint(network_id, endpoint_id)
            if ep is None or not ep.published:
                return
            self._unpublish(network_id, endpoint_id, ep)

    def _unpublish(self, network_id: str, endpoint_id: str, held: Endpoint) -> None:
        """Record first, rules next, claims last (the caller holds the endpoint's lock)."""
        self.repo.update_endpoint(network_id, endpoint_id, lambda e: replace(e, published=[]))
        faults.reached("ports-unpublished")
        self._sync()  # raises: the claims stay until collect_orphan_claims sees the rules gone
        self.release(held)

    def release(self, ep: Endpoint) -> None:
        for b in ep.published:
            self.ports.release(ep.id, b["family"], b["proto"], b["host_ip"], b["host_port"])

    def collect_orphan_claims(self) -> int:
        """Release host-port claims that no endpoint record names; returns how many.

        What a crash between a claim and its record (or between forgetting a record and releasing
        its claims) leaves.  Claims are listed before records are read, and each one is looked at
        again under its endpoint's lock: a Program claims before it records, under that lock, so a
        claim of a Program still running is never taken for an orphan.  The rules are rewritten from
        the records first, so no rule is left for a port that becomes free.
        """
        claims = self.ports.claims()
        orphans = [c for c in claims if c not in self._recorded()]
        if not orphans:
            return 0
        self._sync()
        released = 0
        for claim in orphans:
            with self._locks.hold(claim.owner):
                if claim in self._recorded():
                    continue
                self.ports.release(claim.owner, claim.family, claim.proto, claim.host_ip, claim.port)
                released += 1
        return released

    def _free_dead_claims(self, me: str) -> bool:
        """Release the claims of endpoints that no longer exist at all, after rewriting the rules from the
        records; True if there were any.

        A removal whose rule rewrite failed (a held xtables lock) keeps its claims, since the old rules may
        still send the ports to the old container; the GC frees them later.  A Program that runs into
        such a claim need not wait for the GC: once its own rewrite succeeds, no rule of a vanished
        endpoint is left.  An endpoint without a record has no request running (Program reads the record
        under the endpoint's lock, and deletion holds it), and ``busy`` skips one whose removal is under
        way, so no lock is waited for here (two Programs never wait on each other)."""
        claims = self.ports.claims()  # before the records, as in collect_orphan_claims
        alive = {e.id for e in self.repo.endpoints()}
        dead = [c for c in claims if c.owner != me and c.owner not in alive and not self._locks.busy(c.owner)]
        if not dead:
            return False
        self._sync()
        for c in dead:
            self.ports.release(c.owner, c.family, c.proto, c.host_ip, c.port)
        log.info("released %d host-port claim(s) of removed endpoints", len(dead))
        return True

    def _recorded(self) -> set[Claim]:
        return {Claim(ep.id, b["family"], b["proto"], b["host_ip"], b["host_port"])
                for ep in self.repo.endpoints() for b in ep.published}

    def _claim(self, net: Network, ep: Endpoint, requests, ipv6: bool) -> list[dict]:
        bindings: list[dict] = []
        try:
            for req in requests:
                pairs = families_for(req, bool(ep.address), ipv6 and bool(ep.address_v6),
                                     net.config.host_binding_ipv4)
                for family, host_ip in pairs:
                    bindings.append(self._claim_one(ep, req, family, host_ip))
        except Exception:
            mine = [b for b in bindings if b not in ep.published]
            self.release(replace(ep, published=mine))
            raise
        return bindings

    def _claim_one(self, ep: Endpoint, req, family: int, host_ip: str) -> dict:
        container_ip = str(ipaddress.ip_interface(ep.address if family == 4 else ep.address_v6).ip)
        for old in ep.published:  # a repeat of an earlier call keeps its (possibly picked) port
            if (old["proto"], old["host_ip"], old["container_port"], old["family"]) == (
                    req.proto, host_ip, req.container_port, family) and (
                    not req.host_port or req.host_port <= old["host_port"] <= req.host_port_end):
                return old
        port = self.ports.claim(ep.id, family, req, host_ip)
        return Binding(req.proto, host_ip, port, container_ip, req.container_port, family).to_dict()
