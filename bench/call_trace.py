"""A timing relay between dockerd and pynet: which plugin calls a ``docker run`` makes, and how long each takes.

Used only by the profile step, after every other measurement: pynet is restarted on another socket and
this relay listens on the one dockerd knows, forwarding each HTTP request unchanged and timing the
round trip to pynet (request forwarded -> response fully read).  dockerd sends one request at a time
per connection with a Content-Length, and gunicorn answers with one, so messages are framed by that.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Call:
    at: float        # time.monotonic() when the request was forwarded
    path: str        # e.g. /NetworkDriver.Join
    status: int
    seconds: float   # round trip to pynet


def _read_message(f) -> bytes | None:
    """One HTTP/1.1 message (head + body) from the buffered reader ``f``; None at EOF."""
    head = b""
    while True:
        line = f.readline()
        if not line:
            if head:
                raise ConnectionError("connection closed inside an HTTP message head")
            return None
        head += line
        if line in (b"\r\n", b"\n") and head.strip():
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding":
            raise ConnectionError("chunked messages are not supported by the relay")
    return head + (f.read(length) if length else b"")


class CallTrace:
    def __init__(self, listen_path: Path, upstream_path: Path):
        self.listen_path = Path(listen_path)
        self.upstream_path = Path(upstream_path)
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._clients: set[socket.socket] = set()

    def start(self) -> "CallTrace":
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.listen_path))
        os.chmod(self.listen_path, 0o600)
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        threading.Thread(target=self._accept_loop, name="trace-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and end every relayed connection, so dockerd drops the ones it keeps idle
        (reused after pynet moved, they would fail, and dockerd 20.10 retries a POST with an empty body)."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        self.listen_path.unlink(missing_ok=True)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def since(self, t: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.at >= t]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self._clients.add(conn)
            threading.Thread(target=self._relay, args=(conn,), name="trace-conn", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.upstream_path))
            cf, uf = client.makefile("rb"), upstream.makefile("rb")
            while (request := _read_message(cf)) is not None:
                at, t0 = time.monotonic(), time.perf_counter()
                upstream.sendall(request)
                response = _read_message(uf)
                seconds = time.perf_counter() - t0
                if response is None:
                    break
                client.sendall(response)
                self._record(Call(at, request.split(b" ", 2)[1].decode(), int(response.split(b" ", 2)[1]), seconds))
        except OSError:
            pass  # either side went away: drop the connection like a proxy would
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()
            upstream.close()

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
