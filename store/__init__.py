"""State behind a narrow key-value port (see store/base.py).

``open_store`` and ``open_cluster_store`` are the one place that decides which
implementation serves: the embedded sqlite store in a state dir for a single
host, the etcd store for a cluster of hosts.
"""

from __future__ import annotations

import os

from pynet.store.base import Compacted, Entry, Event, LeaseNotFound, Store

DB_NAME = "pynet.db"

__all__ = ["Compacted", "Entry", "Event", "LeaseNotFound", "Store", "check_store", "open_cluster_store", "open_store"]


def open_store(state_dir: str) -> Store:
    """A SqliteStore at ``<state_dir>/pynet.db``; creates the dir (mode 0700) if missing."""
    from pynet.store.sqlite import SqliteStore  # imported here: importing the package does no work

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    return SqliteStore(os.path.join(state_dir, DB_NAME))


def check_store(state_dir: str) -> str:
    """"" if the embedded store in ``state_dir`` is usable (or not made yet), else what is wrong and
    what to do, in one line (`pynet serve` stops with it before binding its socket)."""
    from pynet.store.sqlite import check_file

    return check_file(os.path.join(state_dir, DB_NAME))


def open_cluster_store(endpoints: str | list[str], timeout: float = 2.0, security=None) -> Store:
    """An EtcdStore on ``endpoints``: URLs (``http://host:port``) as a list or comma-separated;
    ``security`` (a pynet.store.etcd_auth.EtcdSecurity): TLS files and etcd user, or None.

    Connects lazily (nothing is sent before the first call).  ValueError for a
    malformed or empty endpoint list; each call raises pynet.errors.Unavailable
    when no endpoint answers within ``timeout`` seconds.
    """
    from pynet.store.etcd import EtcdStore  # imported here: etcd3gw loads only when a cluster is used

    return EtcdStore(endpoints, timeout=timeout, security=security)
