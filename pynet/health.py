"""The health of what pynet does in the background, and of what it read: one registry per process.

Design note.  Nothing in the background may fail silently (flannel's log-and-continue with no status is the
anti-pattern, style.md): every loop reports each pass as a success or a failure, and every record read
from the shared store that is refused is counted by kind.  ``snapshot()`` is what ``POST /Pynet.Health``
answers and what ``pynet status`` shows.  Logging is edge-triggered: a loop's error is logged when it
first appears or changes, and once more when the loop works again, so an etcd outage writes two lines,
not one a second.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

log = logging.getLogger("pynet.health")
REJECTED_KEYS_KEPT = 20  # the last refused keys kept per kind, for the operator to look at


@dataclass
class LoopState:
    name: str
    running: bool = False
    started_at: float | None = None  # wall clock of the current run of the loop
    last_ok: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    failures: int = 0  # passes that failed, in all
    consecutive_failures: int = 0
    restarts: int = 0  # times the loop died and was started again


@dataclass
class Rejections:
    count: int = 0
    last: list[dict] = field(default_factory=list)  # {"key", "reason", "at"}, newest last


class Health:
    """Thread-safe; ``clock`` is wall time (tests pass a fake)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: dict[str, LoopState] = {}
        self._rejected: dict[str, Rejections] = {}

    # -- loops -----------------------------------------------------------------------
    def started(self, name: str, restart: bool = False) -> None:
        with self._lock:
            state = self._loops.setdefault(name, LoopState(name))
            state.running, state.started_at = True, self._clock()
            state.restarts += int(restart)

    def stopped(self, name: str) -> None:
        with self._lock:
            if name in self._loops:
                self._loops[name].running = False

    def ok(self, name: str) -> None:
        """A pass of ``name`` succeeded."""
        with self._lock:
            state = self._loops.setdefault(name, LoopState(name))
            recovered = state.consecutive_failures > 0
            state.last_ok, state.consecutive_failures = self._clock(), 0
        if recovered:
            log.info("%s: working again", name)

    def failed(self, name: str, error: BaseException | str) -> None:
        """A pass of ``name`` failed with ``error`` (logged when it is new)."""
        text = error if isinstance(error, str) else (str(error) or type(error).__name__)
        with self._lock:
            state = self._loops.setdefault(name, LoopState(name))
            new = text != state.last_error or state.consecutive_failures == 0
            state.last_error, state.last_error_at = text, self._clock()
            state.failures += 1
            state.consecutive_failures += 1
        if new:
            log.warning("%s: %s", name, text)

    def loop(self, name: str) -> LoopState:
        with self._lock:
            return LoopState(**asdict(self._loops.setdefault(name, LoopState(name))))

    # -- records ---------------------------------------------------------------------
    def rejected(self, kind: str, key: str, reason: str) -> None:
        """A record of ``kind`` at ``key`` was refused on read; the others are used as usual."""
        with self._lock:
            seen = self._rejected.setdefault(kind, Rejections())
            repeat = any(r["key"] == key and r["reason"] == reason for r in seen.last)
            seen.count += 1
            seen.last = [r for r in seen.last if r["key"] != key][-(REJECTED_KEYS_KEPT - 1):]
            seen.last.append({"key": key, "reason": reason, "at": self._clock()})
        if not repeat:
            log.warning("refused %s record %s: %s", kind, key, reason)

    def rejected_count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is not None:
                return self._rejected.get(kind, Rejections()).count
            return sum(r.count for r in self._rejected.values())

    # -- report ----------------------------------------------------------------------
    def snapshot(self) -> dict:
        """``{"loops": {name: LoopState fields}, "rejected": {kind: {"count", "last"}}}``."""
        with self._lock:
            return {"loops": {n: asdict(s) for n, s in sorted(self._loops.items())},
                    "rejected": {k: asdict(r) for k, r in sorted(self._rejected.items())}}
