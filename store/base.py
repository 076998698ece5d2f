"""The key-value port every piece of pynet state goes through.

Design note.  The port is deliberately tiny so that the embedded single-host
store (sqlite) and the multi-host one (etcd) can implement exactly the same
semantics and pass one conformance suite (tests/store).  The primitives are
atomic: ``create`` is create-if-absent and ``cas`` is compare-and-swap on the
key's modification revision.  Higher layers build allocation ("claim this
address") out of ``create`` and read-modify-write documents out of
``get`` + ``cas`` with a bounded retry; nobody holds a lock across a call to
another process.

Leases are for state that must vanish with its owner.  A host writes its
registration and its containers' adverts attached to a lease it keeps alive;
if the host dies or loses the store for longer than the TTL, the store itself
deletes those keys and every other host sees ordinary delete events.  No
survivor has to guess who is dead, and nobody needs a garbage collector with a
clock of its own.  Only a store shared between hosts needs this, so only the
etcd implementation has it for real (``supports_leases``); MemoryStore fakes it
faithfully (with an injectable clock) so cluster logic can be unit-tested, and
the single-host SqliteStore refuses (there is nobody else to clean up after).

Values are JSON-serialisable dicts; the store encodes them.  Keys are
``/``-separated strings built only by store/keys.py.

Revisions are a single store-wide, strictly increasing integer (like etcd's):
every successful write (create, cas, delete) gets a new one.  ``Entry.revision``
is the revision of the key's last modification.  The one write that changes
several keys at once is a lease ending: all its keys are deleted in ONE new
revision (as etcd does), so several delete events may share a revision; they
are always delivered together, one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from pynet.errors import Retryable


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
    supports_leases: bool
    """True when ``grant_lease`` & co. work; False: they raise NotImplementedError."""

    def get(self, key: str) -> Entry | None:
        """Return the entry at ``key``, or None if absent."""

    def create(self, key: str, value: dict, lease: int = 0) -> int | None:
        """Create ``key`` only if it is absent.

        Returns the new revision on success, None if the key already exists.
        Atomic: of two concurrent creates of one key exactly one succeeds.
        With ``lease`` (an id from ``grant_lease``) the key is attached to that
        lease and deleted when it ends; LeaseNotFound if it already has.
        """

    def cas(self, key: str, value: dict, revision: int, lease: int = 0) -> int | None:
        """Replace ``key`` only if its current revision equals ``revision``.

        Returns the new revision, or None if the key is absent or was modified
        since (the caller re-reads and retries, a bounded number of times).
        The key is attached to ``lease`` afterwards, and ONLY to it: a cas with
        ``lease=0`` detaches the key from the lease it had (etcd's put does the
        same).  LeaseNotFound if ``lease`` has already ended.
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
        A store reached over the network raises ``pynet.errors.Unavailable``
        (at the call or from the iterator) when it cannot be reached or the
        connection drops; the caller re-watches later from last revision + 1.
        """

    def current_revision(self) -> int:
        """The store's newest revision.

        0 for a never-written embedded store; a fresh etcd cluster starts at 1.
        """

    # -- leases: supports_leases implementations only ------------------------

    def grant_lease(self, ttl: int) -> int:
        """A new lease (its id, never 0) that ends ``ttl`` seconds from now unless refreshed.

        etcd may round ``ttl`` up to its minimum (about 1.5 election timeouts).
        """

    def refresh_lease(self, lease_id: int) -> bool:
        """Restart the lease's full TTL; False if it no longer exists (expired, revoked).

        A False means every key attached to it is gone (or going): the owner
        grants a new lease and writes its keys again.
        """

    def revoke_lease(self, lease_id: int) -> None:
        """End the lease now, deleting every key attached to it (one new revision,
        one delete event per key).  An unknown or already ended lease is not an error.
        """

    def close(self) -> None:
        """Release connections and wake any watchers."""


class Compacted(Exception):
    """The watch start revision is older than the retained history."""


class LeaseNotFound(Retryable):
    """A write named a lease that no longer exists (expired or revoked).

    Retryable (HTTP 503 if it escapes): the lease owner's keep-alive grants a
    new lease and the same request then succeeds.
    """
