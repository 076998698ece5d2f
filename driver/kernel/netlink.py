"""The one netlink handle of a host, owned by one thread, and what every kernel operation builds on.

Design note.  The handle is bound to a network namespace when it is opened
(``IPRoute()`` for the one pynet runs in, ``IPRoute(netns=...)`` in tests), so no
serving thread ever changes namespace.  One dedicated thread owns the handle and
runs every call: pyroute2's synchronous IPRoute is not meant to be shared by
threads (from any thread but its owner it builds a new event loop per request,
and remembers each one), and the kernel serialises link changes under the RTNL
lock anyway.  ``owned`` marks a method that runs there; the ``_``-methods below
are for use by such methods only (they run on the owner thread already).

links.py (bridges, veth pairs) and vxlan.py (the overlay's device and tables)
both build on ``NetlinkOwner``; neither imports the other's internals.
"""

from __future__ import annotations

import errno
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

GONE = (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL)  # "not there": a delete's success


class KernelError(Exception):
    """A netlink write failed; the message names the object."""


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
    """Run the method on the handle's owner thread (see the module note)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return self._on_owner(method, self, *args, **kwargs)
    return wrapper


class NetlinkOwner:
    """The handle, its owner thread, and the primitives the operation mixins share."""

    def __init__(self, ipr: IPRoute | None = None):
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynet-netlink")
        self._ipr = ipr or self._thread.submit(open_handle).result()

    def _on_owner(self, fn, *args, **kwargs):
        """Run ``fn`` on the thread that owns the handle, then drop orphaned replies there."""
        def call():
            try:
                return fn(*args, **kwargs)
            finally:
                self._drop_orphans()
        return self._thread.submit(call).result()

    def close(self) -> None:
        self._on_owner(self._ipr.close)
        self._thread.shutdown()

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
