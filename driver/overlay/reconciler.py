"""The one writer of every kernel table of an overlay: desired state in, the difference applied.

Design note.  Before, three kinds of thread wrote the VXLAN tables (request handlers, start-up replay, the
cluster watch) under a lock.  Now a table -- a VXLAN device's tunnel entries today; member VTEPs,
WireGuard peers and DNS records as later features add them -- is registered here once, and everyone
else only says that its desired state may have changed (``nudge``).  One thread (``run``) then, per
table that needs it:

1. asks the table what it should hold (``desired()``, from the control plane's view); None means "not
   known yet" (no listing of the cluster so far), and the table is left exactly as it is;
2. takes what it programmed last time, or reads the kernel (``actual()``) when told to (a new device, a
   periodic resync every RESYNC seconds, a failed pass);
3. removes what should not be there and adds what is missing, entry by entry.

A nudge may name the keys that changed (one container's MAC, from one watch event): then only those
entries are compared (``desired_for``), so the work per change does not grow with the table's size.
Anything else -- a new table, a host's VTEP changing, a reload, the periodic resync -- diffs the table
whole.

A failed pass is retried after RETRY seconds with a fresh read of the kernel, so an entry half-written
when the kernel refused the next one is found and finished.  A request that needs a table up to date
before it answers (Join) calls ``settle`` with a bound: it waits until a pass that began after the last
nudge of that table has ended (also a failed one), and never writes itself.

A table may also have ``synced()``: called after every pass that made the whole table equal to a known
desired state (the member VTEPs use it to arm the firewall's VXLAN filter only once the set is full).
``unregister`` waits (bounded) for a pass of that table that is under way, so nothing writes a table
after its owner let it go (its kernel object may be destroyed next).

Modelled on libnetwork's ``peerOpRoutine`` (one goroutine owns the peer database) and flannel's
subnet watch (list, watch, diff, apply; resync on a period).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable, Iterable, Protocol

from pynet.driver.overlay.port import ALL

log = logging.getLogger("pynet.reconciler")
RESYNC = 30.0  # seconds between full re-reads of every table from the kernel
RETRY = 1.0  # seconds before a table whose pass failed is tried again
UNREGISTER_WAIT = 10.0  # seconds ``unregister`` waits for a pass of that table under way
NAME = "reconciler"  # its name in pynet/health.py


class Table(Protocol):
    """One kernel table: entries keyed by something hashable, values comparable with ``==``."""

    name: str  # unique among the reconciler's tables, e.g. "fdb:pnv2f234f73c230"

    def desired(self) -> dict[Hashable, object] | None:
        """What the table should hold; None when that is not known yet (leave it alone)."""

    def desired_for(self, keys: frozenset) -> dict[Hashable, object] | None:
        """The desired entries of just ``keys`` (a key missing from the answer should be absent)."""

    def actual(self) -> dict[Hashable, object]:
        """What the kernel holds now (a read; may raise)."""

    def add(self, key: Hashable, value: object) -> None:
        """Program one entry (replace semantics: an entry of that key pointing elsewhere is overwritten)."""

    def remove(self, key: Hashable, value: object) -> None:
        """Remove one entry that ``actual`` or an earlier ``add`` reported; absence is success."""

    # optional: def synced(self) -> None -- the whole table now equals a known desired state


class Reconciler:
    def __init__(self, health=None, resync: float = RESYNC, retry: float = RETRY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._health = health
        self._resync, self._retry, self._clock = resync, retry, clock
        self._cond = threading.Condition()
        self._tables: dict[str, Table] = {}
        self._programmed: dict[str, dict] = {}  # name -> what this reconciler last wrote / read
        self._dirty: dict[str, bool] = {}  # name -> read the kernel first
        self._keys: dict[str, frozenset | None] = {}  # name -> only these keys changed (None: diff it whole)
        self._not_before: dict[str, float] = {}  # name -> clock time of a retry after a failure
        self._asked: dict[str, int] = {}  # name -> sequence number of its newest nudge
        self._done: dict[str, int] = {}  # name -> newest sequence number a finished pass covered
        self._seq = 0
        self._thread: threading.Thread | None = None  # the one running passes
        self._running: str | None = None  # the table a pass is reconciling right now
        self._next_resync = clock() + resync
        self._stopped = False

    # -- desired state (any thread) ----------------------------------------------------
    def register(self, table: Table) -> None:
        """Own ``table`` from now on (idempotent: a second call replaces the table, and re-reads it)."""
        with self._cond:
            self._tables[table.name] = table
            self._mark(table.name, reread=True)

    def unregister(self, name: str) -> None:
        """Stop owning the table (its device is going away); what it holds is left alone.  Waits (at most
        UNREGISTER_WAIT) for a pass of that table under way, unless called from the reconciler's thread."""
        with self._cond:
            self._tables.pop(name, None)
            if threading.current_thread() is not self._thread:
                self._cond.wait_for(lambda: self._running != name, UNREGISTER_WAIT)
            for table in (self._programmed, self._dirty, self._keys, self._not_before):
                table.pop(name, None)
            self._done[name] = self._asked.get(name, 0)
            self._cond.notify_all()

    def nudge(self, names: Iterable[str] = (ALL,), reread: bool = False, keys: Iterable | None = None) -> None:
        """The desired state of these tables (``ALL``: every table) may have changed -- only for
        ``keys``, if given."""
        with self._cond:
            wanted = set(names)
            targets = list(self._tables) if ALL in wanted else [n for n in wanted if n in self._tables]
            for name in targets:
                self._mark(name, reread, None if keys is None else frozenset(keys))

    def settle(self, name: str, timeout: float) -> bool:
        """Wait until a pass begun after the newest nudge of ``name`` has ended; False on timeout."""
        with self._cond:
            target = self._asked.get(name, 0)
            return self._cond.wait_for(lambda: self._done.get(name, 0) >= target or name not in self._tables,
                                       timeout)

    def tables(self) -> list[str]:
        with self._cond:
            return sorted(self._tables)

    def table(self, name: str):
        """The registered table ``name`` or None (`pynet doctor` compares its desired and actual)."""
        with self._cond:
            return self._tables.get(name)

    def programmed(self, name: str) -> dict:
        """A copy of what the reconciler believes ``name`` holds (for status and tests)."""
        with self._cond:
            return dict(self._programmed.get(name, {}))

    def _mark(self, name: str, reread: bool, keys: frozenset | None = None) -> None:
        self._seq += 1
        self._asked[name] = self._seq
        pending = name in self._dirty
        self._dirty[name] = self._dirty.get(name, False) or reread
        if reread or keys is None or (pending and self._keys.get(name) is None):
            self._keys[name] = None
        else:
            self._keys[name] = self._keys.get(name, frozenset()) | keys
        self._not_before.pop(name, None)
        self._cond.notify_all()

    # -- the writer (one thread) -------------------------------------------------------
    def run(self, ctx) -> None:
        """The loop (pynet/background.py runs it): wait for work, do it, until stopping."""
        while not ctx.stopping.is_set() and not self._stopped:
            with self._cond:
                self._cond.wait(min(self._idle(), 1.0))  # wakes for a nudge; 1 s bounds the stop check
            changed, failures = self.pass_once()
            if failures:
                ctx.failed("; ".join(failures))
            elif changed is not None:
                ctx.ok()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def pass_once(self) -> tuple[int | None, list[str]]:
        """Reconcile every table that is due; (entries changed or None if nothing was due, failures)."""
        due = self._take_due()
        if not due:
            return None, []
        changed, failures = 0, []
        self._thread = threading.current_thread()
        for name, reread, keys, seq in due:
            with self._cond:
                self._running = name
            try:
                changed += self._reconcile(name, reread, keys)
            except Exception as exc:
                failures.append(f"table {name}: {exc}")
                with self._cond:
                    if name in self._tables:
                        self._dirty[name], self._keys[name] = True, None
                        self._not_before[name] = self._clock() + self._retry
            with self._cond:
                self._running = None
                self._done[name] = max(self._done.get(name, 0), seq)
                self._cond.notify_all()
        return changed, failures

    def _idle(self) -> float:
        """Seconds until something is due (0 if something is)."""
        now = self._clock()
        with self._cond:
            if any(self._not_before.get(n, 0) <= now for n in self._dirty):
                return 0.0
            waits = [self._next_resync - now] + [t - now for t in self._not_before.values()]
        return max(0.0, min(waits))

    def _take_due(self) -> list[tuple[str, bool, frozenset | None, int]]:
        now = self._clock()
        with self._cond:
            if now >= self._next_resync:
                self._next_resync = now + self._resync
                for name in self._tables:
                    self._dirty[name], self._keys[name] = True, None
            due = [(n, r, self._keys.get(n), self._asked.get(n, 0)) for n, r in self._dirty.items()
                   if self._not_before.get(n, 0) <= now]
            for name, *_ in due:
                del self._dirty[name]
                self._keys.pop(name, None)
                self._not_before.pop(name, None)
        return due

    def _reconcile(self, name: str, reread: bool, keys: frozenset | None = None) -> int:
        with self._cond:
            table = self._tables.get(name)
            known = None if reread else self._programmed.get(name)
        if table is None:
            return 0
        if keys is not None and known is None:
            keys = None  # nothing programmed to compare a few keys with: diff the table whole
        desired = table.desired() if keys is None else table.desired_for(keys)
        if desired is None:
            return 0  # the cluster is not known yet: never empty a table from an empty view
        actual = dict(table.actual()) if known is None else dict(known)
        changed = 0
        try:
            for key in list(actual) if keys is None else [k for k in keys if k in actual]:
                value = actual[key]
                if desired.get(key) != value:
                    table.remove(key, value)
                    del actual[key]
                    changed += 1
            for key, value in desired.items():
                if key not in actual:
                    table.add(key, value)
                    actual[key] = value
                    changed += 1
        finally:
            with self._cond:
                if name in self._tables:
                    self._programmed[name] = actual
        if changed:
            log.debug("table %s: %d entries changed", name, changed)
        if keys is None and hasattr(table, "synced"):
            table.synced()
        return changed
