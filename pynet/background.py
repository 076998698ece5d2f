"""Background loops that report their health and come back when they die.

Design note.  Every thread pynet runs besides the request threads is started here, under a name.  A loop
is a function that runs until the supervisor stops it; it reports each pass through its ``Context``
(``ok()``, ``failed(exc)``) and sleeps with ``ctx.wait()``, which returns True once stopping.  If the
function raises, or returns while nobody asked it to stop, the loop has died: the failure is recorded in
pynet/health.py and the function is started again after a backoff that doubles from ``FIRST_BACKOFF`` up
to ``MAX_BACKOFF`` (reset once a run has lasted ``STABLE`` seconds), so a bug that kills a loop costs a
log line and a counter, never the cluster's convergence until the next restart of pynet.

``every(name, seconds, step)`` is the common shape: ``step()`` on a period, a raised exception counting as
a failed pass (retried sooner, after ``retry`` seconds) rather than a death.  ``once`` runs a one-shot job
(start-up replay) the same way: restarted only if it raises.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pynet.health import Health

log = logging.getLogger("pynet.background")
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE = 60.0


@dataclass
class Context:
    """What a loop gets: its name, the stop signal and its health reporting."""

    name: str
    stopping: threading.Event
    health: Health

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the supervisor is stopping (the loop should return)."""
        return self.stopping.wait(seconds)

    def ok(self) -> None:
        self.health.ok(self.name)

    def failed(self, error: BaseException | str) -> None:
        self.health.failed(self.name, error)


class Supervisor:
    def __init__(self, health: Health, first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF,
                 stable: float = STABLE) -> None:
        self.health = health
        self._stopping = threading.Event()
        self._first, self._max, self._stable = first_backoff, max_backoff, stable
        self._threads: list[threading.Thread] = []

    def spawn(self, name: str, body: Callable[[Context], None], once: bool = False) -> threading.Thread:
        """Run ``body(ctx)`` in a daemon thread named ``pynet-<name>``, restarted when it dies."""
        ctx = Context(name, self._stopping, self.health)
        thread = threading.Thread(target=self._run, args=(ctx, body, once), name=f"pynet-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def every(self, name: str, seconds: float, step: Callable[[], object], retry: float | None = None,
              first: float = 0.0) -> threading.Thread:
        """``step()`` every ``seconds`` (the first after ``first``); a failure is retried after ``retry``."""
        def body(ctx: Context) -> None:
            delay = first
            while not ctx.wait(delay):
                try:
                    step()
                    ctx.ok()
                    delay = seconds
                except Exception as exc:
                    ctx.failed(exc)
                    delay = seconds if retry is None else retry

        return self.spawn(name, body)

    def once(self, name: str, job: Callable[[], object]) -> threading.Thread:
        def body(ctx: Context) -> None:
            job()
            ctx.ok()

        return self.spawn(name, body, once=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every loop to stop and wait up to ``timeout`` seconds in all for them."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self, ctx: Context, body: Callable[[Context], None], once: bool) -> None:
        backoff, restart = self._first, False
        while not self._stopping.is_set():
            self.health.started(ctx.name, restart=restart)
            began = time.monotonic()
            try:
                body(ctx)
                if once or self._stopping.is_set():
                    break
                ctx.failed("the loop returned; starting it again")
            except Exception as exc:  # a dead loop: record it, start it again
                log.exception("background loop %s died", ctx.name)
                ctx.failed(f"died: {type(exc).__name__}: {exc}")
            if time.monotonic() - began >= self._stable:
                backoff = self._first
            if ctx.wait(backoff):
                break
            backoff, restart = min(backoff * 2, self._max), True
        self.health.stopped(ctx.name)
