"""HTTP with JSON over a unix socket (the plugin socket, the Docker Engine API); standard library only.

Shared by `pynet ports` (a CLI) and the cluster agent's Docker sync (a background
thread of `pynet serve`): neither needs more than request -> (status, body).
"""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit

TIMEOUT = 30.0


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


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None
            ) -> tuple[int, bytes]:
    """One request on a fresh connection, closed afterwards; OSError/HTTPException propagate."""
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
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
