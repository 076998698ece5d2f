"""The host's own resolvers: what every name that is not an overlay name is forwarded to.

They are the ``nameserver`` lines of the host's resolv.conf (at most three, as the C library reads), read
again when the file changes (checked at most once a ``RECHECK``); the resolver's own address is never
among them, so a resolv.conf that names pynet cannot make a loop.  A query goes to each in turn, as the
bytes that came in; the first answer is passed back as the bytes it came in.  The outcome is passed back
faithfully: an answer as it is (NXDOMAIN, SERVFAIL, a truncated answer over UDP included), every upstream
silent within ``TIMEOUT`` -- no answer at all (the client times out, as it would have asking them
itself), every upstream refusing or unreachable -- SERVFAIL.  Every socket call is bounded by TIMEOUT.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("pynet.dns")
TIMEOUT = 2.0  # seconds per upstream and query (glibc's default is 5 s per server, Docker's 4 s)
RECHECK = 1.0  # seconds between looks at resolv.conf
MAX_SERVERS = 3
PORT = 53


def parse_resolv_conf(text: str, exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The nameserver addresses of a resolv.conf, canonical, without ``exclude`` and scoped v6 ones."""
    servers: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver" or "%" in fields[1]:
            continue  # a scoped v6 address (fe80::1%eth0) names an interface of the host's, not ours
        try:
            ip = str(ipaddress.ip_address(fields[1]))
        except ValueError:  # fe80::1%eth0 and garbage: not something to send queries to
            continue
        if ip not in exclude and ip not in servers:
            servers.append(ip)
    return tuple(servers[:MAX_SERVERS])


class Upstreams:
    """The nameservers of ``path``, re-read when the file's identity, size or mtime changes."""

    def __init__(self, path: str, exclude: frozenset[str] = frozenset(), clock=time.monotonic) -> None:
        self.path = path
        self.exclude = exclude
        self._clock = clock
        self._stamp: tuple | None = None
        self._servers: tuple[str, ...] = ()
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def servers(self) -> tuple[str, ...]:
        with self._lock:
            now = self._clock()
            if now - self._checked >= RECHECK:
                self._checked = now
                self._reread()
            return self._servers

    def _reread(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read(64 * 1024)
        except OSError as exc:
            if self._stamp is not None or self._servers:
                log.warning("cannot read %s (%s): no upstream resolvers", self.path, exc)
            self._stamp, self._servers = None, ()
            return
        self._stamp, self._servers = stamp, parse_resolv_conf(text, self.exclude)
        log.info("upstream resolvers from %s: %s", self.path, ", ".join(self._servers) or "none")


@dataclass(frozen=True)
class Outcome:
    answer: bytes | None  # the upstream's answer as it came, or None
    refused: bool = False  # no answer because every upstream refused or was unreachable (else: silent)


def forward(wire: bytes, servers: tuple[str, ...], tcp: bool = False, timeout: float = TIMEOUT) -> Outcome:
    """Ask each server in turn; the first answer whose id matches the query's."""
    if not servers:
        return Outcome(None, refused=True)
    refused = True
    for server in servers:
        try:
            answer = (_tcp if tcp else _udp)(wire, server, timeout)
        except (socket.timeout, TimeoutError):
            refused = False
            continue
        except OSError:
            continue
        if answer is not None and answer[:2] == wire[:2]:
            return Outcome(answer)
    return Outcome(None, refused=refused)


def _udp(wire: bytes, server: str, timeout: float) -> bytes | None:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((server, PORT))  # a connected socket takes datagrams from that server only
        s.send(wire)
        deadline = time.monotonic() + timeout
        while True:
            answer = s.recv(65535)
            if answer[:2] == wire[:2]:
                return answer
            s.settimeout(max(0.001, deadline - time.monotonic()))  # a stray datagram: keep waiting


def _tcp(wire: bytes, server: str, timeout: float) -> bytes | None:
    with socket.create_connection((server, PORT), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        head = _read(s, 2)
        return _read(s, struct.unpack("!H", head)[0]) if head else None


def _read(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
