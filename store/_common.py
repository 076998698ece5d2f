"""Pieces shared by the store implementations: value encoding and the watch loop.

Design note.  Both implementations encode values as JSON text on the way in and
decode on the way out, so a caller never shares a mutable dict with the store
and the fake rejects exactly what sqlite (or etcd) would reject.

``watch`` is the same loop everywhere: fetch the next batch of matching events
at or after a scan position, yield them, otherwise sleep until a write (or a
poll interval) and look again.  Each implementation supplies a ``WatchSource``;
the loop owns timeout and close semantics so they cannot drift apart.
"""

from __future__ import annotations

import json
import time
from typing import Iterator, Protocol

from pynet.store.base import Event

BATCH = 1000  # events fetched per look; bounds the work done under a store's lock


def encode(value: dict) -> str:
    """JSON text of ``value``; TypeError if it is not a JSON-serialisable dict."""
    if not isinstance(value, dict):
        raise TypeError(f"store values must be dicts, got {type(value).__name__}")
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Unreadable(dict):
    """The value of a key that is not a JSON object (another writer put it there): an empty dict that
    says why, so one such key never breaks a listing or a watch; records.py refuses it by ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def decode(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        return Unreadable(f"the value is not JSON ({exc})")
    return value if isinstance(value, dict) else Unreadable(f"the value is a JSON {type(value).__name__}, not an object")


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    None when there is no such bound (empty prefix: everything matches).
    """
    if not prefix:
        return None
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    return prefix[:-1] + chr(last + 1)


class WatchSource(Protocol):
    def fetch_events(self, prefix: str, scan_from: int) -> tuple[list[Event], int] | None:
        """Matching events with revision >= ``scan_from`` (at most BATCH) and the
        next scan position; None once the store is closed.  Raises Compacted if
        history at ``scan_from`` is gone."""

    def wait_for_change(self, scan_from: int, seconds: float | None) -> None:
        """Return when the store has a revision >= ``scan_from``, is closed, or
        ``seconds`` have passed (implementations may also return earlier)."""


def watch_loop(source: WatchSource, prefix: str, start_revision: int,
               timeout: float | None) -> Iterator[Event]:
    """The body of ``Store.watch``; see store/base.py for the contract."""
    scan_from = max(start_revision, 1)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        batch = source.fetch_events(prefix, scan_from)
        if batch is None:
            return
        events, scan_from = batch
        if events:
            yield from events
            # The timeout counts quiet time, so it restarts after every delivery.
            deadline = None if timeout is None else time.monotonic() + timeout
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        source.wait_for_change(scan_from, remaining)
