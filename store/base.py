"""The key-value port every piece of pynet state goes through.

Design note.  The port is deliberately tiny so that the embedded single-host
store (sqlite) and the multi-host one (etcd) can implement exactly the same
semantics and pass one conformance suite (tests/store).  The primitives are
atomic: ``create`` is create-if-absent and ``cas`` is compare-and-swap on the
key's modification revision.  Higher layers build allocation ("claim this
address") out of ``create`` and read-modify-write documents out of
``get`` + ``cas`` with a bounded retry; nobody holds a lock across a call to
another process.

Values are JSON-serialisable dicts; the store encodes them.  Keys are
``/``-separated strings built only by store/keys.py.

Revisions are a single store-wide, strictly increasing integer (like etcd's):
every successful write (create, cas, delete) gets a new one.  ``Entry.revision``
is the revision of the key's last modification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol


@dataclass(frozen=True)
class Entry:
    key: str
    value: dict
    revision: int


@dataclass(frozen=True)
class Event:
    """One change seen by ``watch``: ``value`` is None for a delete."""

    key: str
    value: dict | None
    revision: int

    @property
    def deleted(self) -> bool:
        return self.value is None


class Store(Protocol):
    def get(self, key: str) -> Entry | None:
        """Return the entry at ``key``, or None if absent."""

    def create(self, key: str, value: dict) -> int | None:
        """Create ``key`` only if it is absent.

        Returns the new revision on success, None if the key already exists.
        Atomic: of two concurrent creates of one key exactly one succeeds.
        """

    def cas(self, key: str, value: dict, revision: int) -> int | None:
        """Replace ``key`` only if its current revision equals ``revision``.

        Returns the new revision, or None if the key is absent or was modified
        since (the caller re-reads and retries, a bounded number of times).
        """

    def delete(self, key: str, revision: int | None = None) -> bool:
        """Delete ``key``; with ``revision``, only if unmodified since.

        Returns True if this call deleted it, False if it was absent (or the
        revision did not match).  Deleting an absent key is not an error.
        """

    def list(self, prefix: str) -> list[Entry]:
        """All entries whose key starts with ``prefix``, sorted by key."""

    def watch(self, prefix: str, start_revision: int, timeout: float | None = None) -> Iterator[Event]:
        """Yield changes under ``prefix`` with revision >= ``start_revision``, in order.

        Blocks waiting for new events; returns (ends the iterator) once
        ``timeout`` seconds pass with nothing new, or when the store is closed.
        A caller resumes with ``start_revision = last_seen.revision + 1``.
        Raises ``Compacted`` if history before ``start_revision`` is gone; the
        caller then re-lists and watches from ``current_revision() + 1``.
        """

    def current_revision(self) -> int:
        """The store's newest revision (0 for an empty, never-written store)."""

    def close(self) -> None:
        """Release connections and wake any watchers."""


class Compacted(Exception):
    """The watch start revision is older than the retained history."""
