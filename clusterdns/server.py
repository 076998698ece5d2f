"""The resolver: UDP and TCP on one host-local address, overlay names from the table, the rest forwarded.

``Resolver.answer`` is the whole decision (unit-tested without sockets): a well-formed QUERY for one A,
AAAA or ANY name that the table has for the asking container gets an authoritative answer with ``TTL``;
another type of such a name gets NOERROR with no records (the name exists, that type does not), as
Docker answers; everything else -- other names, other classes and opcodes, a query from an address that
is no overlay container -- is forwarded untouched (upstream.py).  A datagram that does not parse is
dropped: nothing is sent back to what may be a spoofed source.

The UDP loop answers table hits inline (microseconds) and hands forwarding to a small pool, bounded by
``MAX_PENDING`` queued queries beyond which new ones are dropped (a client retries), so a slow upstream
never delays overlay names.  TCP connections (a client that got a truncated answer) are served by a pool
of their own (so idle connections cannot starve forwarding), each bounded by ``TCP_IDLE``.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from dnslib import AAAA, CLASS, OPCODE, QTYPE, RCODE, RR, A, DNSError, DNSRecord

from pynet.clusterdns import upstream
from pynet.clusterdns.table import NameTable

log = logging.getLogger("pynet.dns")
TTL = 5  # seconds: a client that caches finds a moved or re-created container again this soon
WORKERS = 8
TCP_WORKERS = 4
MAX_PENDING = 256
TCP_IDLE = 5.0
MAX_ANSWERS = 32
UDP_PLAIN = 512  # RFC 1035: a client without EDNS takes at most this much over UDP
FORWARD = object()  # ``answer``'s verdict: forward the query


class Resolver:
    def __init__(self, table: Callable[[], NameTable], upstreams: upstream.Upstreams,
                 forward=upstream.forward) -> None:
        self.table = table  # the current table (service.py rebuilds it when the cluster view changed)
        self.upstreams = upstreams
        self._forward = forward

    def answer(self, wire: bytes, source: str, tcp: bool = False):
        """Response bytes, FORWARD, or None (drop)."""
        query = _parse(wire)
        if query is None or query.header.qr:
            return None  # garbage, or a response rather than a query: never answered (reflection)
        if query.header.opcode != OPCODE.QUERY or len(query.questions) != 1:
            return FORWARD
        q = query.q
        if q.qclass != CLASS.IN:
            return FORWARD
        found = self.table().lookup(source, str(q.qname))
        if found is None:
            return FORWARD
        response = query.reply()  # QR, AA, RA; the id, RD and the question copied
        response.header.rcode = RCODE.NOERROR
        for qtype, rdata, ips in ((QTYPE.A, A, found.v4), (QTYPE.AAAA, AAAA, found.v6)):
            if q.qtype in (qtype, QTYPE.ANY):
                for ip in ips[:MAX_ANSWERS]:
                    response.add_answer(RR(q.qname, qtype, rdata=rdata(ip), ttl=TTL))
        return _render(response, query, tcp)

    def resolve(self, wire: bytes, source: str, tcp: bool = False) -> bytes | None:
        """The bytes to send back for ``wire`` (forwarding included), or None for no answer."""
        verdict = self.answer(wire, source, tcp)
        if verdict is not FORWARD:
            return verdict
        outcome = self._forward(wire, self.upstreams.servers(), tcp)
        if outcome.answer is not None or not outcome.refused:
            return outcome.answer
        return _servfail(wire)


def _parse(wire: bytes) -> DNSRecord | None:
    try:
        return DNSRecord.parse(wire)
    except (DNSError, ValueError, IndexError, UnicodeError):  # dnslib's own, and what slips past it
        return None


def _render(response: DNSRecord, query: DNSRecord, tcp: bool) -> bytes:
    edns = [rr.rclass for rr in query.ar if rr.rtype == QTYPE.OPT]  # an OPT record's class: its UDP size
    limit = 65535 if tcp else max(UDP_PLAIN, edns[0] if edns else UDP_PLAIN)
    wire = bytes(response.pack())
    if len(wire) > limit:  # over UDP: say so, the client asks again over TCP
        response.rr = []
        response.header.tc = 1
        wire = bytes(response.pack())
    return wire


def _servfail(wire: bytes) -> bytes | None:
    query = _parse(wire)
    if query is None:
        return None
    response = query.reply()
    response.header.aa = 0
    response.header.rcode = RCODE.SERVFAIL
    return bytes(response.pack())


# -- the sockets ------------------------------------------------------------------------------
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def bind(kind: int, address: str) -> socket.socket:
    """A socket on ``address``:53; FREEBIND so it binds before (or after a loss of) the address itself."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
        s.setsockopt(level, IP_FREEBIND, 1)
        s.bind((address, upstream.PORT))
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        s.settimeout(1.0)  # the loops look at their stop signal this often
        return s
    except BaseException:
        s.close()
        raise


class Servers:
    """The UDP and TCP loops of one resolver address, run under pynet/background.py."""

    def __init__(self, resolver: Resolver, address: str) -> None:
        self.resolver = resolver
        self.address = address
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pynet-dns")
        self._tcp_pool = ThreadPoolExecutor(max_workers=TCP_WORKERS, thread_name_prefix="pynet-dns-tcp")
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._tcp_pending = threading.BoundedSemaphore(TCP_WORKERS * 4)
        self.dropped = 0

    def udp(self, ctx) -> None:
        with bind(socket.SOCK_DGRAM, self.address) as s:
            log.info("cluster DNS on %s:53 (udp)", self.address)
            ctx.ok()
            while not ctx.stopping.is_set():
                try:
                    wire, peer = s.recvfrom(65535)
                except (socket.timeout, TimeoutError):
                    continue
                verdict = self.resolver.answer(wire, peer[0])
                if verdict is FORWARD:
                    self._submit(self._pool, self._pending, self._forward_udp, s, wire, peer)
                elif verdict is not None:
                    _send(s, verdict, peer)

    def _forward_udp(self, s: socket.socket, wire: bytes, peer) -> None:
        answer = self.resolver.resolve(wire, peer[0])
        if answer is not None:
            _send(s, answer, peer)

    def tcp(self, ctx) -> None:
        with bind(socket.SOCK_STREAM, self.address) as s:
            log.info("cluster DNS on %s:53 (tcp)", self.address)
            ctx.ok()
            while not ctx.stopping.is_set():
                try:
                    conn, peer = s.accept()
                except (socket.timeout, TimeoutError):
                    continue
                if not self._submit(self._tcp_pool, self._tcp_pending, self._serve_tcp, conn, peer):
                    conn.close()

    def _serve_tcp(self, conn: socket.socket, peer) -> None:
        with conn:
            conn.settimeout(TCP_IDLE)
            try:
                while True:
                    head = upstream._read(conn, 2)
                    wire = upstream._read(conn, struct.unpack("!H", head)[0]) if head else b""
                    if not wire:
                        return
                    answer = self.resolver.resolve(wire, peer[0], tcp=True)
                    if answer is None:
                        return
                    conn.sendall(struct.pack("!H", len(answer)) + answer)
            except OSError:
                return

    def _submit(self, pool: ThreadPoolExecutor, pending: threading.BoundedSemaphore, fn, *args) -> bool:
        if not pending.acquire(blocking=False):
            self.dropped += 1
            return False

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("cluster DNS: a query failed")
            finally:
                pending.release()

        pool.submit(run)
        return True




def _send(s: socket.socket, data: bytes, peer) -> None:
    try:
        s.sendto(data, peer)
    except OSError as exc:  # the container went away, a full buffer: its client retries
        log.debug("cluster DNS: no answer to %s: %s", peer[0], exc)
