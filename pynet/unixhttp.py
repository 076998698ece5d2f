"""HTTP with JSON over a unix socket (the plugin socket, the Docker Engine API); standard library only.

Shared by `pynet ports` (a CLI) and the cluster agent's Docker sync (a background
thread of `pynet serve`): neither needs more than request -> (status, body).

A socket timeout bounds each read, not a call: a server that sends one byte now and
then would hold it for ever.  ``request(..., total=seconds)`` bounds the whole call
(every send and receive waits at most for what is left of it), and ``limit`` caps the
answer's size.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import time
from urllib.parse import urlsplit

TIMEOUT = 30.0


class _DeadlineSocket(socket.socket):
    """A socket whose every send and receive waits at most until ``deadline`` (time.monotonic())."""

    deadline = math.inf

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(left)

    def recv_into(self, *args, **kwargs):
        self._arm()
        return super().recv_into(*args, **kwargs)

    def recv(self, *args, **kwargs):
        self._arm()
        return super().recv(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._arm()
        return super().sendall(*args, **kwargs)


def _with_deadline(sock: socket.socket, deadline: float) -> _DeadlineSocket:
    bounded = _DeadlineSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    bounded.deadline = deadline
    return bounded


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def connection(address: str, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    """A connection to ``unix:///path``, a bare path, or ``tcp://host:port`` (no TLS); ValueError otherwise."""
    if address.startswith("unix://"):
        return UnixConnection(address[len("unix://"):], timeout)
    if address.startswith("/"):
        return UnixConnection(address, timeout)
    if address.startswith(("tcp://", "http://")):
        u = urlsplit(address)
        return http.client.HTTPConnection(u.hostname or "localhost", u.port or 2375, timeout=timeout)
    raise ValueError(f"unsupported Docker host {address!r} (use unix:///path or tcp://host:port)")


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None,
            total: float | None = None, limit: int | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection, closed afterwards; OSError/HTTPException propagate.

    ``total``: seconds the whole call may take once connected (the connection's own timeout
    bounds the connect); TimeoutError past it.  ``limit``: HTTPException for a larger answer."""
    try:
        data = json.dumps(body).encode() if body is not None else None
        if total is not None:
            deadline = time.monotonic() + total
            conn.connect()
            conn.sock = _with_deadline(conn.sock, deadline)
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read() if limit is None else resp.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise http.client.HTTPException(f"the answer to {method} {path} is larger than {limit} bytes")
        return resp.status, raw
    finally:
        conn.close()


def error_text(raw: bytes) -> str:
    """The message of an error body (pynet's Err/Error, Docker's message), else the raw text."""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict):
            return str(doc.get("Err") or doc.get("Error") or doc.get("message") or doc)
    except ValueError:
        pass
    return raw.decode(errors="replace").strip()[:200]
