"""`pynet serve` as a process: socket handling and shutdown.

pynet runs inside a throwaway namespace, so its start-up reconciliation (which
garbage-collects pn* links and owns the PYNET-* chains) only ever sees what the
test created.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYNET = str(Path(sys.executable).with_name("pynet"))


def serve(netns: str, sock: Path, state: Path) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, PYNET, "serve", "--socket", str(sock),
                             "--state-dir", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait_for_socket(path: Path, proc: subprocess.Popen, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            activate(path)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{path} never answered")


def activate(path: Path) -> dict:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(str(path))
    s.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    return json.loads(data.partition(b"\r\n\r\n")[2])


@pytest.fixture
def stop_later():
    procs = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_stale_socket_is_replaced_and_sigterm_is_clean(netns, tmp_path, stop_later):
    sock = tmp_path / "pynet.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # a socket file with nobody behind it, as a SIGKILLed pynet leaves
    proc = serve(netns, sock, tmp_path / "state")
    stop_later(proc)
    wait_for_socket(sock, proc)
    assert activate(sock) == {"Implements": ["NetworkDriver", "IpamDriver"]}
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert not sock.exists()


def test_a_live_socket_is_not_stolen(netns, tmp_path, stop_later):
    sock = tmp_path / "pynet.sock"
    first = serve(netns, sock, tmp_path / "s1")
    stop_later(first)
    wait_for_socket(sock, first)
    second = serve(netns, sock, tmp_path / "s2")
    stop_later(second)
    out, _ = second.communicate(timeout=15)
    assert second.returncode != 0 and "already serving" in out
    assert activate(sock)["Implements"]  # the first one is unharmed
