"""Kernel IP sets (``hash:ip``, IPv4) over netlink: the member VTEPs the firewall's VXLAN filter matches.

Design note.  The VXLAN filter (driver/firewall.py) is one iptables rule that matches a set, so a host
joining or leaving the cluster changes one set entry and never the rule set (kube-proxy and Calico do
the same with ipset).  The set is written over netlink with pyroute2's ``IPSet`` (nfnetlink), so the
managed plugin needs no ``ipset`` binary.  Like the rtnetlink handle (netlink.py), the socket belongs
to one thread; unlike it, every call here is bounded: a caller waits at most ``timeout`` seconds and
then gets ``pynet.errors.Timeout`` naming the set and the operation (the owner thread may still be
stuck, and later calls queue behind it and time out the same way).

Writes are idempotent pairs: ``ensure``/``destroy`` for the set, ``add``/``delete`` for an entry;
absence is a delete's success.  Names and addresses are typed and checked here, so nothing but a
``pynet-`` name and an ``IPv4Address`` ever reaches the kernel.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from socket import AF_INET

from pynet.driver.kernel.netlink import KernelError
from pynet.errors import Timeout

CALL_TIMEOUT = 5.0  # seconds a caller waits for one netlink answer
SET_NAME = re.compile(r"^pynet-[a-z0-9-]{1,24}$")  # ipset names are at most 31 bytes
_ENOENT = 2  # the set does not exist
_IPSET_ERR_EXIST = 4103  # add: already there / del: not there (without the "exist" flag)
_IPSET_ERR_BUSY = 4100  # destroy: a rule still references the set


def check_name(name: str) -> str:
    if not isinstance(name, str) or not SET_NAME.match(name):
        raise ValueError(f"ip set name {name!r} is not a pynet set name (pynet-[a-z0-9-]{{1,24}})")
    return name


def check_ip(ip) -> ipaddress.IPv4Address:
    if not isinstance(ip, ipaddress.IPv4Address):
        raise ValueError(f"ip set entry {ip!r} is not an IPv4Address")
    return ip


class IpSets:
    def __init__(self, netns: str | None = None, timeout: float = CALL_TIMEOUT, opener=None) -> None:
        # ``netns`` (tests only): pyroute2's IPSet takes no netns argument, so the owner thread -- never a
        # serving thread -- enters the namespace once to open the socket (setns affects that thread only),
        # and the socket stays bound to it.  pynet itself never passes one.
        self._timeout = timeout
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynet-ipset")
        self._swap = threading.Lock()  # guards _thread (and _handle) when a hung call's thread is replaced
        self._netns = netns
        self._opener = opener
        self._handle = None

    # -- the operations ----------------------------------------------------------------
    def ensure(self, name: str) -> None:
        """Make ``name`` exist as an IPv4 ``hash:ip`` set (an existing one is kept with its entries)."""
        check_name(name)
        self._call(f"create ip set {name!r}", lambda h: h.create(name, stype="hash:ip", family=AF_INET,
                                                                   exclusive=False))

    def destroy(self, name: str) -> None:
        """Remove set ``name``; absence is success.  KernelError while a rule still uses it."""
        check_name(name)

        def destroy(h):
            try:
                h.destroy(name)
            except Exception as exc:
                if getattr(exc, "code", None) != _ENOENT:
                    raise
        self._call(f"destroy ip set {name!r}", destroy)

    def members(self, name: str) -> frozenset[ipaddress.IPv4Address] | None:
        """The addresses in set ``name``; None if there is no such set."""
        check_name(name)

        def read(h):
            try:
                msgs = list(h.list(name))
            except Exception as exc:
                if getattr(exc, "code", None) == _ENOENT:
                    return None
                raise
            return frozenset(_entries(msgs))
        return self._call(f"list ip set {name!r}", read)

    def add(self, name: str, ip: ipaddress.IPv4Address) -> None:
        """Put ``ip`` in set ``name`` (already there is fine).  KernelError if the set does not exist."""
        check_name(name)
        check_ip(ip)
        self._call(f"add {ip} to ip set {name!r}", lambda h: h.add(name, str(ip), exclusive=False))

    def delete(self, name: str, ip: ipaddress.IPv4Address) -> None:
        """Take ``ip`` out of set ``name``; an absent entry or set is success."""
        check_name(name)
        check_ip(ip)

        def delete(h):
            try:
                h.delete(name, str(ip))
            except Exception as exc:
                if getattr(exc, "code", None) not in (_ENOENT, _IPSET_ERR_EXIST):
                    raise
        self._call(f"delete {ip} from ip set {name!r}", delete)

    def close(self) -> None:
        if self._handle is not None:
            self._call("close the ip set socket", lambda h: h.close())
        self._thread.shutdown(wait=False)

    # -- the owner thread --------------------------------------------------------------
    def _call(self, what: str, fn):
        with self._swap:
            thread = self._thread
            future = thread.submit(self._run, what, fn)
        try:
            return future.result(self._timeout)
        except FutureTimeout:
            # As netlink.py's owner: a hung call must not wedge every later one (each firewall sync of a
            # multi-host pynet touches the set).  A new thread opens a new socket; the hung one keeps the
            # old socket until its call returns, and nothing else uses that socket again.
            with self._swap:
                if self._thread is thread:
                    self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pynet-ipset")
                    self._handle = None
            thread.shutdown(wait=False, cancel_futures=True)
            raise Timeout(f"could not {what}: the kernel did not answer within {self._timeout:g} s; "
                          "the ip set socket was replaced") from None

    def _run(self, what: str, fn):
        try:
            return fn(self._open())
        except KernelError:
            raise
        except Exception as exc:
            reason = exc.args[-1] if getattr(exc, "args", None) else exc
            raise KernelError(f"could not {what}: {reason}") from None

    def _open(self):
        if self._handle is None:
            if self._opener is not None:
                self._handle = self._opener()
            elif self._netns:
                from pyroute2 import IPSet
                from pyroute2.netns import popns, pushns

                pushns(self._netns)  # this thread only; the socket stays in the namespace it was made in
                try:
                    self._handle = IPSet()
                finally:
                    popns()
            else:
                from pyroute2 import IPSet

                self._handle = IPSet()
        return self._handle


def _entries(msgs) -> list[ipaddress.IPv4Address]:
    """The IPv4 entries of an IPSET_CMD_LIST answer (one or more messages per set)."""
    out = []
    for msg in msgs:
        adt = msg.get_attr("IPSET_ATTR_ADT")
        if adt is None:
            continue
        for data in adt.get_attrs("IPSET_ATTR_DATA"):
            ip = data.get_attr("IPSET_ATTR_IP_FROM")
            value = ip.get_attr("IPSET_ATTR_IPADDR_IPV4") if ip is not None else None
            if value:
                out.append(ipaddress.IPv4Address(value))
    return out
