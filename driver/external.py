"""External connectivity: the published ports of a gateway endpoint (Program/RevokeExternalConnectivity).

Design note.  dockerd sends the sandbox's port map to the endpoint that is its gateway; pynet reserves
the host ports atomically in the store (driver/ports.py), records the bindings on the endpoint, and
rewrites its NAT rules from the stored state (driver/firewall.py).  A repeated Program with the same
map keeps the ports it picked; a failure releases every port the call reserved.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Callable

from pynet.driver import options
from pynet.driver.locks import KeyedLocks
from pynet.driver.models import Endpoint, Network
from pynet.driver.ports import Binding, PortReservations, families_for, parse_requests
from pynet.driver.repository import Repository
from pynet.errors import BadRequest


class Publisher:
    def __init__(self, repo: Repository, ports: PortReservations, locks: KeyedLocks,
                 sync_firewall: Callable[[], None]) -> None:
        self.repo, self.ports, self._locks, self._sync = repo, ports, locks, sync_firewall

    def program(self, net: Network, endpoint_id: str, opts: dict, endpoint: Callable[[], Endpoint]) -> None:
        """Publish the port map in ``opts`` on the endpoint; ``endpoint()`` reads it (NotFound if gone)."""
        requests = parse_requests(options.parse_endpoint_options(opts).port_bindings)
        if requests and net.config.internal:
            raise BadRequest(f"network {net.id[:12]} is internal (--internal): ports cannot be published")
        with self._locks.hold(endpoint_id):
            ep = endpoint()
            bindings = self._claim(net, ep, requests)
            stale = [b for b in ep.published if b not in bindings]
            self.repo.update_endpoint(net.id, endpoint_id, lambda e: replace(e, published=bindings))
            self.release(replace(ep, published=stale))
        if bindings or stale:
            try:
                self._sync()
            except Exception:
                self.revoke(net.id, endpoint_id)
                raise

    def revoke(self, network_id: str, endpoint_id: str) -> None:
        """Unpublish the endpoint's ports; nothing published is success."""
        with self._locks.hold(endpoint_id):
            ep = self.repo.endpoint(network_id, endpoint_id)
            if ep is None or not ep.published:
                return
            self.repo.update_endpoint(network_id, endpoint_id, lambda e: replace(e, published=[]))
            self.release(ep)
        self._sync()

    def release(self, ep: Endpoint) -> None:
        for b in ep.published:
            self.ports.release(ep.id, b["family"], b["proto"], b["host_ip"], b["host_port"])

    def _claim(self, net: Network, ep: Endpoint, requests) -> list[dict]:
        bindings: list[dict] = []
        try:
            for req in requests:
                pairs = families_for(req, bool(ep.address), bool(ep.address_v6), net.config.host_binding_ipv4)
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
