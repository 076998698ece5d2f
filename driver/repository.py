"""Networks and endpoints in the store (the driver's only store access).

Records are created with create-if-absent, so a retried CreateNetwork or
CreateEndpoint (dockerd re-sends on a client timeout, protocol.md §1.5) finds
its own record instead of making a second one.  Updates are compare-and-swap.
"""

from __future__ import annotations

from pynet.driver.models import Endpoint, Network
from pynet.store import keys
from pynet.store.base import Store
from pynet.store.update import update


class Repository:
    def __init__(self, store: Store):
        self._store = store

    # -- networks ----------------------------------------------------------------
    def add_network(self, net: Network) -> Network | None:
        """Store ``net``; returns None on success, or the network already stored under its ID."""
        if self._store.create(keys.network(net.id), net.to_dict()) is not None:
            return None
        return self.network(net.id) or self.add_network(net)

    def network(self, network_id: str) -> Network | None:
        entry = self._store.get(keys.network(network_id))
        return Network.from_dict(entry.value) if entry else None

    def networks(self) -> list[Network]:
        return [Network.from_dict(e.value) for e in self._store.list(keys.networks_prefix())]

    def remove_network(self, network_id: str) -> None:
        self._store.delete(keys.network(network_id))

    # -- endpoints -------------------------------------------------------------
    def add_endpoint(self, ep: Endpoint) -> Endpoint | None:
        """Store ``ep``; returns None on success, or the endpoint already stored under its ID."""
        if self._store.create(keys.endpoint(ep.network_id, ep.id), ep.to_dict()) is not None:
            return None
        return self.endpoint(ep.network_id, ep.id) or self.add_endpoint(ep)

    def endpoint(self, network_id: str, endpoint_id: str) -> Endpoint | None:
        entry = self._store.get(keys.endpoint(network_id, endpoint_id))
        return Endpoint.from_dict(entry.value) if entry else None

    def endpoints(self, network_id: str | None = None) -> list[Endpoint]:
        return [Endpoint.from_dict(e.value) for e in self._store.list(keys.endpoints_prefix(network_id))]

    def update_endpoint(self, network_id: str, endpoint_id: str, change) -> Endpoint | None:
        """Apply ``change(Endpoint) -> Endpoint`` atomically; None if the endpoint is gone."""
        doc = update(self._store, keys.endpoint(network_id, endpoint_id),
                     lambda value: change(Endpoint.from_dict(value)).to_dict(), f"endpoint {endpoint_id[:12]}")
        return Endpoint.from_dict(doc) if doc is not None else None

    def remove_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._store.delete(keys.endpoint(network_id, endpoint_id))
