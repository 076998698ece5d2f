"""gunicorn's threaded worker, with a deadline on reading each request.

Design note.  gthread hands a connection to a request thread as soon as the first bytes arrive, and
that thread then reads the headers and (through the app) the body with blocking reads that have no
timeout.  Measured with gunicorn 27.0.1 and 2 threads on a unix socket: one client that sent half
its headers and one that sent 10 of 100 body bytes, both then silent, held both threads, and a
normal request went unanswered for 30 s and more -- for ever, in fact.  dockerd's legacy-plugin
client has no timeout either, so every docker command that needs pynet would hang behind them.
(gunicorn 27 only defers connections that send nothing at all; its ``timeout`` is the worker's
heartbeat, not a read timeout.)

So every read of a request shares one deadline, ``READ_DEADLINE`` seconds from the moment a thread
takes the request: headers and body together, however they trickle in, a byte at a time included.
When it passes the read returns end-of-file, as if the client had hung up: gunicorn drops a request
whose headers are incomplete without a word, and a body cut short ends in plugin/http.py as a 400
naming the deadline.  The time the app then spends on the request is not limited here (its outbound
calls are bounded where they are made); writing the answer is, by ``SEND_TIMEOUT``.  dockerd sends a
request in one write, so the deadline never touches it.
"""

from __future__ import annotations

import logging
import math
import socket
import time

from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger("pynet.server")

READ_DEADLINE = 10.0  # seconds to receive one whole request, headers and body
SEND_TIMEOUT = 10.0  # seconds to hand one answer to the client


class DeadlineSocket:
    """A connection whose reads stop at ``deadline`` (time.monotonic()); everything else passes through."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = math.inf

    def recv(self, size: int, flags: int = 0) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            return b"" if self.deadline == -math.inf else self._expired()
        self._sock.settimeout(left)
        try:
            return self._sock.recv(size, flags)
        except socket.timeout:
            return self._expired()

    def _expired(self) -> bytes:
        log.warning("closing a connection: its request was not received within %g s", READ_DEADLINE)
        self.deadline = -math.inf  # every later read of this request ends at once, and quietly
        return b""

    def send(self, data, flags: int = 0) -> int:
        self._sock.settimeout(SEND_TIMEOUT)
        return self._sock.send(data, flags)

    def sendall(self, data, flags: int = 0) -> None:
        self._sock.settimeout(SEND_TIMEOUT)
        self._sock.sendall(data, flags)

    def __getattr__(self, name):  # fileno, setblocking, close, shutdown, ... of the real socket
        return getattr(self._sock, name)


class BoundedThreadWorker(ThreadWorker):
    """gthread with ``DeadlineSocket`` connections and a fresh deadline for every request."""

    def enqueue_req(self, conn) -> None:
        # Wrapped before the first enqueue: older gunicorn (22) builds the request parser on the
        # connection's socket right here, newer ones in the request thread.
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock)
        super().enqueue_req(conn)

    def handle(self, conn):
        conn.sock.deadline = time.monotonic() + READ_DEADLINE
        try:
            return super().handle(conn)
        finally:
            conn.sock.deadline = math.inf  # between requests the poller, not a thread, waits on it
