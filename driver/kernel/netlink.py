"""The one netlink handle of a host, owned by one thread, and what every kernel operation builds on.

Design note.  The handle is bound to a network namespace when it is opened
(``IPRoute()`` for the one pynet runs in, ``IPRoute(netns=...)`` in tests), so no
serving thread ever changes namespace.  One dedicated thread owns the handle and
runs every call: pyroute2's synchronous IPRoute is not meant to be shared by
threads (from any thread but its owner it builds a new event loop per request,
and remembers each one), and the kernel serialises link changes under the RTNL
lock anyway.  ``owned`` marks a method that runs there; the ``_``-methods below
are for use by such methods only (they run on the owner thread already).

Every call is bounded (``NetlinkOwner``): a request thread of dockerd's plugin
call must never wait on the kernel without end, because dockerd's client for
legacy plugins has none.  A call that hangs fails with ``NetlinkTimeout`` naming
it, and its thread is replaced so the calls after it still work.

links.py (bridges, veth pairs) and vxlan.py (the overlay's device and tables)
both build on ``NetlinkOwner``; neither imports the other's internals.
"""

from __future__ import annotations

import errno
import functools
import logging
import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

GONE = (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL)  # "not there": a delete's success
CALL_TIMEOUT = 5.0  # seconds any one operation may take on the handle; the kernel answers in microseconds
log = logging.getLogger("pynet.kernel")


class KernelError(Exception):
    """A netlink write failed; the message names the object."""


class NetlinkTimeout(KernelError):
    """A netlink operation did not return within the owner's bound; the message names it."""


@dataclass
class LinkInfo:
    name: str
    index: int
    kind: str | None
    mtu: int
    master: int | None
    address: str
    up: bool = False
    extra: dict = field(default_factory=dict)


def open_handle(netns: str | None = None) -> IPRoute:
    """An IPRoute that listens to no multicast group.

    pyroute2 0.9 subscribes a new IPRoute to the link/address/route event groups
    by default; pynet never reads events, so every change on the host would be
    queued in the handle forever (measured: ~12 KiB per endpoint cycle).
    """
    return IPRoute(groups=0, netns=netns) if netns else IPRoute(groups=0)


def owned(method):
    """Run the method on the handle's owner thread (see the module note), within the owner's bound."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self._on_owner(method, self, *args, what=_describe(method.__name__, args), **kwargs)
    return wrapper


def _describe(name: str, args: tuple) -> str:
    """``ensure_vxlan('pnv2f234f73c230')``: the call as an error names it (first argument only)."""
    first = args[0] if args else ""
    first = getattr(first, "name", None) or getattr(first, "host", first)  # a spec: its link's name
    return f"{name}({first!r})" if first != "" else f"{name}()"


class _Worker:
    """One thread and the netlink handle it opened (or was given); it runs queued calls in order.

    Retired once a call on it hung: it is then left to finish that call, close its handle and end,
    while a new worker serves everything else."""

    def __init__(self, local: threading.local, handle: IPRoute | None, opener) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.running: tuple[str, Future] | None = None  # (what, future) of the call in progress
        self.retired = False
        self._local, self._handle, self._opener = local, handle, opener
        self._opened: Future = Future()
        threading.Thread(target=self._run, name="pynet-netlink", daemon=True).start()

    def handle(self, timeout: float) -> IPRoute:
        return self._opened.result(timeout)

    def submit(self, fn, what: str) -> Future:
        future: Future = Future()
        future.started = threading.Event()  # set, with started_at and worker, when the call begins
        self.queue.put((fn, what, future))
        return future

    def _run(self) -> None:
        try:
            self._local.ipr = self._handle if self._handle is not None else self._opener()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the handle
            self._opened.set_exception(exc)
            return
        self._opened.set_result(self._local.ipr)
        while not self.retired:
            item = self.queue.get()
            if item is None:
                break
            fn, what, future = item
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up before it started
            future.worker, future.started_at = self, time.monotonic()  # the caller's bound runs from here
            future.started.set()
            self.running = (what, future)
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                future.set_exception(exc)
            finally:
                self.running = None
        if self.retired:  # the hung call came back: nobody else will ever use this handle
            try:
                self._local.ipr.close()
            except Exception:  # noqa: BLE001 - a handle that hung may not close cleanly either
                log.warning("closing a retired netlink handle failed", exc_info=True)

    def drain(self) -> list:
        """Take every call not started yet (for the worker that replaces this one)."""
        items = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return items
            if item is not None:
                items.append(item)


class NetlinkOwner:
    """The handle, its owner thread, and the primitives the operation mixins share.

    Every call is bounded (``timeout`` seconds from when it begins, CALL_TIMEOUT by default, and at
    most twice that in the queue): a netlink request that never returns fails its caller with
    NetlinkTimeout naming the call, and the worker that hung is retired
    and replaced by a new thread with a new handle (from ``opener``; by default one in pynet's own
    namespace), so the calls after it work.  A handle passed in without an ``opener`` cannot be
    re-opened: the calls after a hang then fail, each after its bound, until the hung one returns.
    What the hung call was doing may still happen when it returns; every write here is an idempotent
    ensure/delete, and the caller has already been told it failed (and rolled back, or will retry).
    """

    def __init__(self, ipr: IPRoute | None = None, opener=None, timeout: float = CALL_TIMEOUT):
        self._timeout = timeout
        self._opener = opener if opener is not None or ipr is not None else open_handle
        self._local = threading.local()  # the handle of the worker thread reading it (see ``_ipr``)
        self._swap = threading.Lock()
        self._worker = _Worker(self._local, ipr, self._opener)
        try:
            self._worker.handle(timeout)
        except FutureTimeout:
            raise NetlinkTimeout(f"opening the netlink handle took more than {timeout:g} s") from None

    @property
    def _ipr(self) -> IPRoute:
        """The handle of the worker this runs on: a retired worker finishing a hung call keeps its own,
        never touching the one its successor owns."""
        try:
            return self._local.ipr
        except AttributeError:
            raise RuntimeError("the netlink handle is used only on its owner thread (an @owned method)") from None

    def _on_owner(self, fn, *args, what: str = "", **kwargs):
        """Run ``fn`` on the thread that owns the handle, then drop orphaned replies there; NetlinkTimeout
        naming ``what`` if it takes longer than the bound."""
        what = what or getattr(fn, "__name__", "netlink call")

        def call():
            try:
                return fn(*args, **kwargs)
            finally:
                self._drop_orphans()
        with self._swap:  # never onto a worker being retired: its queue was drained already
            worker = self._worker
            future = worker.submit(call, what)
        # The bound runs from when the call begins.  A call queued behind one that hangs is moved to the
        # new worker when that one is replaced (a bound after the hung call began); its wait in the
        # queue is bounded by twice the bound, so the move always comes first.
        if not future.started.wait(2 * self._timeout) and future.cancel():
            busy = worker.running[0] if worker.running else "another call"  # stuck, and not replaced
            raise NetlinkTimeout(f"netlink call {what} did not start within {2 * self._timeout:g} s: "
                                 f"the netlink handle is stuck in {busy}") from None
        future.started.wait(self._timeout)  # set at once if cancel() lost the race: it had just begun
        try:
            began = getattr(future, "started_at", time.monotonic())
            return future.result(max(0.0, began + self._timeout - time.monotonic()))
        except FutureTimeout:
            pass
        if future.done():  # finished just as the bound ran out
            return future.result()
        replaced = self._replace(getattr(future, "worker", worker), what)
        raise NetlinkTimeout(f"netlink call {what} did not return within {self._timeout:g} s; {replaced}") from None

    def _replace(self, hung: _Worker, what: str) -> str:
        """Retire the worker stuck in ``what`` and start another; what happened, for the error."""
        if self._opener is None:
            return "the handle was given without a way to open another: later calls wait for it"
        with self._swap:
            if self._worker is hung:
                fresh = _Worker(self._local, None, self._opener)
                hung.retired = True
                for item in hung.drain():  # calls queued behind the hung one run on the new handle
                    fresh.queue.put(item)
                hung.queue.put(None)
                self._worker = fresh
                log.error("netlink call %s hung for more than %g s: replaced the netlink handle", what,
                          self._timeout)
        return "the netlink handle was replaced"

    def close(self) -> None:
        worker = self._worker
        self._on_owner(lambda: self._ipr.close(), what="close()")
        worker.queue.put(None)  # the thread ends

    def _drop_orphans(self) -> None:
        """Empty the handle's queue of replies that no request is waiting for.

        pyroute2 0.9.7 asks for an ACK on ``link("get")``, returns after the
        first message and frees the request's tag; the ACK that follows then
        lands in the socket's root queue, which only event listeners read.
        pynet listens to no events (``groups=0``), so everything there is such an
        orphan, and without this the queue grows by one message per call
        (measured: ~12 KiB of RSS per endpoint cycle).  Called with the lock
        on the owner thread between requests, when the handle's event loop is idle.
        """
        queue = getattr(getattr(getattr(self._ipr, "asyncore", None), "msg_queue", None), "root", None)
        while queue is not None and not queue.empty():
            queue.get_nowait()
            queue.task_done()

    @owned
    def queued(self) -> int:
        """Messages waiting in the handle's root queue (tests assert this stays 0)."""
        queue = getattr(getattr(getattr(self._ipr, "asyncore", None), "msg_queue", None), "root", None)
        return queue.qsize() if queue is not None else 0

    def _get(self, name: str) -> LinkInfo | None:
        try:
            (msg,) = self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code in GONE:
                return None
            raise
        return _info(msg)

    def _delete(self, name: str) -> bool:
        try:
            self._ipr.link("del", ifname=name)
            return True
        except NetlinkError as exc:
            if exc.code in GONE:
                return False
            raise KernelError(f"could not delete link {name!r}: {exc.args[-1]}") from None

    def _call(self, what: str, name: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST and args and args[0] == "add" and fn == self._ipr.addr:
                return None
            raise KernelError(f"could not {what} {name!r}: {exc.args[-1]}") from None



def _info(msg) -> LinkInfo:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
    return LinkInfo(
        name=msg.get_attr("IFLA_IFNAME"),
        index=msg["index"],
        kind=kind,
        mtu=msg.get_attr("IFLA_MTU"),
        master=msg.get_attr("IFLA_MASTER"),
        address=msg.get_attr("IFLA_ADDRESS"),
        up=bool(msg["flags"] & 1),
    )
