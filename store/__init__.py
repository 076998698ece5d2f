"""State behind a narrow key-value port (see store/base.py).

``open_store`` is the one place that decides which implementation serves a
state dir; today that is always the embedded sqlite store.
"""

from __future__ import annotations

import os

from store.base import Compacted, Entry, Event, Store

DB_NAME = "pynet.db"

__all__ = ["Compacted", "Entry", "Event", "Store", "open_store"]


def open_store(state_dir: str) -> Store:
    """A SqliteStore at ``<state_dir>/pynet.db``; creates the dir (mode 0700) if missing."""
    from store.sqlite import SqliteStore  # imported here: importing the package does no work

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    return SqliteStore(os.path.join(state_dir, DB_NAME))
