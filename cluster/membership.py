"""This host in the cluster: its lease, and its key ``hosts/<id>`` on that lease.

Design note.  The host's registration and every advert of its containers are attached to one lease
(store/base.py has why); the keep-alive refreshes it every ttl/3.  A lease that expired while etcd was
unreachable is replaced by the next write that needs it (``replace``) or by the keep-alive, which bumps
``generation`` so the control plane writes every advert again on the new lease.
"""

from __future__ import annotations

import logging
import threading

from pynet.cluster.models import Host
from pynet.store import keys
from pynet.store.base import Store
from pynet.store.update import put

log = logging.getLogger("pynet.cluster")


class Membership:
    """This host's lease and its key ``hosts/<id>``; adverts ride on the same lease."""

    def __init__(self, store: Store, host: Host, ttl: int) -> None:
        self.store = store
        self.host = host
        self.ttl = ttl
        self.lease = 0
        self.generation = 0  # bumped with every new lease: the agent then re-advertises everything
        self._lock = threading.Lock()

    def current(self) -> int:
        """The live lease id, granting one first if there is none (Unavailable if etcd is down)."""
        with self._lock:
            if not self.lease:
                self._grant()
            return self.lease

    def replace(self, dead: int) -> int:
        """A write found lease ``dead`` gone (expired in an outage): grant a new one unless done already."""
        with self._lock:
            if self.lease == dead:
                self._grant()
            return self.lease

    def keepalive(self) -> bool:
        """Refresh the lease, or grant a new one if it expired; True when it is new."""
        with self._lock:
            if self.lease and self.store.refresh_lease(self.lease):
                return False
            self._grant()
            return True

    def _grant(self) -> None:
        lease = self.store.grant_lease(self.ttl)
        put(self.store, keys.host(self.host.id), self.host.to_dict(), lease)
        if self.lease:
            log.warning("lease of host %s expired (etcd unreachable for more than %d s?): re-registered",
                        self.host.id, self.ttl)
        self.lease = lease
        self.generation += 1
