"""Every Docker API call is bounded: a dockerd that accepts and never answers, or answers a byte at a time,
or sends an endless answer, costs the call's bound and no more.  A fake Engine API on a unix socket in
the test's tmp dir answers ``GET /version`` and then misbehaves as each test asks."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pynet.docker_api import DockerApi, DockerApiError

VERSION = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{"ApiVersion":"1.41"}'


class FakeDocker:
    """Answers /version; every other request gets ``behaviour(conn)``."""

    def __init__(self, path: str, behaviour) -> None:
        self.path, self.behaviour = path, behaviour
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:  # closed by close()
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            if request.startswith(b"GET /version "):
                conn.sendall(VERSION)
            else:
                self.behaviour(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.threads[0].join(2)
        self.sock.close()


@pytest.fixture
def docker(tmp_path):
    servers = []

    def make(behaviour) -> DockerApi:
        server = FakeDocker(str(tmp_path / "docker.sock"), behaviour)
        servers.append(server)
        return DockerApi(f"unix://{server.path}", timeout=0.5, connect_timeout=0.5)
    yield make
    for s in servers:
        s.close()


def silent(conn, stop):
    stop.wait(30)


def trickle(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    while not stop.wait(0.05):  # a byte every 50 ms: each read succeeds, the call never ends on its own
        try:
            conn.sendall(b" ")
        except OSError:
            return


def endless(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    chunk = b"[" + b" " * 65536
    while not stop.is_set():
        try:
            conn.sendall(chunk)
        except OSError:
            return


@pytest.mark.parametrize("behaviour", [silent, trickle], ids=["never answers", "a byte at a time"])
def test_a_call_that_gets_no_complete_answer_fails_after_the_bound_naming_it(docker, behaviour):
    api = docker(behaviour)
    t0 = time.monotonic()
    with pytest.raises(DockerApiError, match=r"did not answer GET /v1.41/networks within 0.5 s"):
        api.network_names()
    assert time.monotonic() - t0 < 1.5


def test_an_endless_answer_is_cut_at_the_size_limit(docker, monkeypatch):
    monkeypatch.setattr("pynet.docker_api.MAX_ANSWER", 1 << 20)
    api = docker(endless)
    api.timeout = 10.0  # the size limit, not the time, ends this one
    t0 = time.monotonic()
    with pytest.raises(DockerApiError, match="larger than 1048576 bytes"):
        api.network_names()
    assert time.monotonic() - t0 < 5


def test_no_daemon_at_all_fails_at_once(tmp_path):
    api = DockerApi(f"unix://{tmp_path}/nothing.sock", timeout=0.5, connect_timeout=0.5)
    with pytest.raises(DockerApiError, match="cannot reach Docker"):
        api.network_names()
