"""SqliteStore: the embedded single-host implementation of the Store port.

Design note.  One sqlite file in the plugin's state dir, three tables:

    kv(key PRIMARY KEY, value TEXT json, revision)   the current state
    events(revision PRIMARY KEY, key, value)          change log for watch (value NULL = delete)
    meta(name PRIMARY KEY, value)                     'revision' (newest) and 'compacted'

Every write is one ``BEGIN IMMEDIATE`` transaction that reads the revision from
``meta``, bumps it, changes ``kv`` and appends to ``events``.  Because the
revision lives in the file, not in the process, several SqliteStore instances
(or processes, e.g. gunicorn workers) on one file share one revision sequence,
and the IMMEDIATE lock serialises their writes.  The events log keeps the last
``history`` entries; ``compacted`` remembers the newest dropped revision so a
watch that starts at or before it raises Compacted.

One connection per store, guarded by a Condition's lock: sqlite connections
are not safe for concurrent use, and writes serialise on the file lock anyway.
Watchers wait on that Condition (notified by writes of this instance) and poll
every POLL_SECONDS for writes made through other connections.

WAL with synchronous=NORMAL: a crash of the process loses nothing committed;
only a power loss may drop the newest commits, and it never corrupts the file.

Failures.  A write that sqlite refuses (disk or database full, a read-only or
vanished file, an I/O error), in a statement or at COMMIT, is rolled back on
the spot -- the transaction never stays open, so the connection keeps working
once the cause is gone -- and raised as a PynetError that names the file and
the cause ("nothing was changed"); only a busy file is Retryable.  A corrupt
file is refused before pynet serves at all: ``check_file`` is what `pynet
serve` runs first, and its answer is the one line the operator sees.

No leases (``supports_leases = False``): a lease makes a dead host's keys
vanish for the hosts that survive it, and a single-host store has no survivors.
A restarted plugin reconciles its own state instead.  The lease methods, and a
write with ``lease != 0``, raise NotImplementedError rather than quietly
storing a key that would never expire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from typing import Iterator

from pynet.errors import PynetError, Retryable
from pynet.store._common import BATCH, decode, encode, prefix_upper_bound, watch_loop
from pynet.store.base import Compacted, Entry, Event

POLL_SECONDS = 0.5
NO_LEASES = "leases need the etcd store"
BUSY_TIMEOUT_SECONDS = 10.0
log = logging.getLogger("pynet.store")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, revision INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (revision INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0)",
)


class SqliteStore:
    """A Store in the sqlite file at ``path``; safe to share between threads."""

    supports_leases = False

    def __init__(self, path: str, history: int = 10_000) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._history = history
        self._path = path
        self._cond = threading.Condition()
        self._closed = False
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS,
                                   isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            self._db.close()
            raise PynetError(check_file(path) or f"the state store {path} cannot be opened: {err}") from None
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    # -- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed or rolled back whatever happens; caller holds no lock,
        we take it.  Busy → Retryable; any other sqlite failure → PynetError naming it."""
        with self._cond:
            self._check_open()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._failure(err, "could not start a write") from None
            try:
                yield self._db
                self._db.execute("COMMIT")  # a failed COMMIT leaves the transaction open: rolled back below
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise self._failure(exc, "could not save a change; nothing was changed") from None
                raise
            self._cond.notify_all()

    def _rollback(self) -> None:
        # sqlite has already rolled back by itself after some errors (e.g. SQLITE_FULL in a COMMIT).
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error as err:  # nothing more to do: the next BEGIN reports the state
            log.error("rolling back in %s failed: %s", self._path, err)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._cond:
            self._check_open()
            try:
                yield self._db
            except sqlite3.Error as err:
                raise self._failure(err, "could not read") from None

    def _failure(self, err: sqlite3.Error, what: str) -> PynetError:
        text = str(err)
        if "locked" in text or "busy" in text:
            return Retryable(f"the state store {self._path} is busy ({text}); try again")
        return PynetError(f"the state store {self._path} {what}: {text}{_hint(text)}")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")

    def _meta(self, db: sqlite3.Connection, name: str) -> int:
        return db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]

    def _apply(self, db: sqlite3.Connection, key: str, text: str | None) -> int:
        """Inside a transaction: bump the revision, change kv, log the event, trim the log."""
        revision = self._meta(db, "revision") + 1
        db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        if text is None:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO kv (key, value, revision) VALUES (?, ?, ?)",
                       (key, text, revision))
        db.execute("INSERT INTO events (revision, key, value) VALUES (?, ?, ?)", (revision, key, text))
        horizon = revision - self._history
        if horizon > 0:
            db.execute("DELETE FROM events WHERE revision <= ?", (horizon,))
            db.execute("UPDATE meta SET value = MAX(value, ?) WHERE name = 'compacted'", (horizon,))
        return revision

    def _current(self, db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT revision FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- reads ---------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._reading() as db:
            row = db.execute("SELECT value, revision FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else Entry(key, decode(row[0]), row[1])

    def list(self, prefix: str) -> list[Entry]:
        where, args = _prefix_clause(prefix)
        with self._reading() as db:
            rows = db.execute(f"SELECT key, value, revision FROM kv WHERE {where} ORDER BY key", args).fetchall()
        return [Entry(k, decode(v), r) for k, v, r in rows if k.startswith(prefix)]

    def current_revision(self) -> int:
        with self._reading() as db:
            return self._meta(db, "revision")

    # -- writes --------------------------------------------------------------

    def create(self, key: str, value: dict, lease: int = 0) -> int | None:
        _no_lease(lease)
        text = encode(value)
        with self._transaction() as db:
            if self._current(db, key) is not None:
                return None
            return self._apply(db, key, text)

    def cas(self, key: str, value: dict, revision: int, lease: int = 0) -> int | None:
        _no_lease(lease)
        text = encode(value)
        with self._transaction() as db:
            if self._current(db, key) != revision:
                return None
            return self._apply(db, key, text)

    def delete(self, key: str, revision: int | None = None) -> bool:
        with self._transaction() as db:
            current = self._current(db, key)
            if current is None or (revision is not None and current != revision):
                return False
            self._apply(db, key, None)
            return True

    # -- leases: not here (see the design note) ------------------------------

    def grant_lease(self, ttl: int) -> int:
        raise NotImplementedError(NO_LEASES)

    def refresh_lease(self, lease_id: int) -> bool:
        raise NotImplementedError(NO_LEASES)

    def revoke_lease(self, lease_id: int) -> None:
        raise NotImplementedError(NO_LEASES)

    # -- watch ---------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int, timeout: float | None = None) -> Iterator[Event]:
        # Check eagerly so a too-old start revision fails at the call, not at first next().
        with self._cond:
            self._check_open()
            self._check_compacted(max(start_revision, 1))
        return watch_loop(self, prefix, start_revision, timeout)

    def fetch_events(self, prefix: str, scan_from: int) -> tuple[list[Event], int] | None:
        where, args = _prefix_clause(prefix)
        with self._cond:
            if self._closed:
                return None
            # One read transaction so 'revision', 'compacted' and the rows agree.
            self._db.execute("BEGIN")
            try:
                self._check_compacted(scan_from)
                newest = self._meta(self._db, "revision")
                rows = self._db.execute(
                    f"SELECT revision, key, value FROM events WHERE revision >= ? AND {where} "
                    f"ORDER BY revision LIMIT {BATCH}", (scan_from, *args)).fetchall()
            finally:
                self._db.execute("COMMIT")
        events = [Event(k, decode(v), r) for r, k, v in rows if k.startswith(prefix)]
        next_from = rows[-1][0] + 1 if len(rows) == BATCH else newest + 1
        return events, max(next_from, scan_from)

    def wait_for_change(self, scan_from: int, seconds: float | None) -> None:
        # Other connections do not notify us, so never sleep longer than one poll.
        seconds = POLL_SECONDS if seconds is None else min(seconds, POLL_SECONDS)
        with self._cond:
            if self._closed or self._meta(self._db, "revision") >= scan_from:
                return
            self._cond.wait(seconds)

    def _check_compacted(self, scan_from: int) -> None:
        compacted = self._meta(self._db, "compacted")
        if scan_from <= compacted:
            raise Compacted(f"revision {scan_from} is compacted (history starts after {compacted})")

    def close(self) -> None:
        """Close the connection and end every watch iterator; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            self._cond.notify_all()


def _hint(text: str) -> str:
    """What the operator can do about a sqlite failure, when there is something obvious."""
    if "full" in text:
        return " (free space on the file system of the state dir)"
    if "readonly" in text or "read-only" in text:
        return " (the state dir must be writable by pynet)"
    if "malformed" in text or "not a database" in text:
        return " (the file is corrupt: stop pynet and move it aside)"
    return ""


def check_file(path: str) -> str:
    """"" if ``path`` is missing or a usable store, else one line saying what is wrong and what to do.

    Reads the whole file (sqlite's quick_check: every page and index, not the row contents), so a
    corrupt store stops `pynet serve` before it binds the socket instead of failing every request
    or crash-looping the worker."""
    if not os.path.exists(path):
        return ""
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)").fetchall()]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = {"kv", "events", "meta"} - tables
            if problems == ["ok"] and tables and missing:  # no tables at all: a new, empty file
                problems = [f"it is not pynet's: table {', '.join(sorted(missing))} missing"]
            elif problems == ["ok"] and tables:
                db.execute("SELECT key, value, revision FROM kv LIMIT 1").fetchall()
                if db.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone() is None:
                    problems = ["its revision counter is missing"]
        finally:
            db.close()
    except sqlite3.Error as err:
        problems = [str(err)]
    if problems == ["ok"]:
        return ""
    return (f"the state store {path} is unusable ({'; '.join(problems)}): stop pynet, move "
            f"{path}* aside (e.g. into {path}.corrupt/), and start pynet again with an empty store; "
            "Docker networks that use pynet then have to be created again")


def _no_lease(lease: int) -> None:
    if lease:
        raise NotImplementedError(NO_LEASES)


def _prefix_clause(prefix: str) -> tuple[str, tuple[str, ...]]:
    """A key-range condition using the primary-key index for ``prefix``."""
    upper = prefix_upper_bound(prefix)
    if upper is None:
        return "key >= ?", (prefix,)
    return "key >= ? AND key < ?", (prefix, upper)
