"""Request limits of the real `pynet serve` (gunicorn on its unix socket): body cap and read deadline.

pynet runs inside a throwaway namespace (as in test_process.py), with two request threads, so two
misbehaving clients are enough to take every thread if nothing bounds them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pynet.plugin.http import MAX_BODY
from pynet.plugin.worker import READ_DEADLINE
from tests.kernel.test_process import PYNET, wait_for_socket

SLACK = 5.0  # seconds past the deadline allowed for a loaded 2-core machine


@pytest.fixture
def plugin(netns, tmp_path):
    sock = tmp_path / "pynet.sock"
    proc = subprocess.Popen(["ip", "netns", "exec", netns, PYNET, "serve", "--socket", str(sock),
                             "--state-dir", str(tmp_path / "state"), "--threads", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_socket(sock, proc)
        yield sock
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def connect(path: Path, timeout: float = READ_DEADLINE + SLACK) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def answer(s: socket.socket) -> tuple[int, dict | None]:
    """(status, JSON body) of the answer on ``s``; (0, None) if the server closed without one."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                           if l.lower().startswith(b"content-length:")), None)
            if sep and length is not None and len(body) >= length:
                break
    except ConnectionResetError:
        pass
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


def request(path: Path, head: bytes, body: bytes = b"") -> tuple[int, dict | None]:
    with connect(path) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        return answer(s)


def test_stalled_and_trickling_clients_cannot_hold_the_request_threads(plugin):
    stalled = connect(plugin)  # half its headers, then silence
    stalled.sendall(b"POST /NetworkDriver.GetCapabilities HTTP/1.1\r\nHost: x\r\n")
    trickler = connect(plugin)  # a whole header block, then its body one byte a second
    trickler.sendall(b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    stop = threading.Event()

    def trickle():
        while not stop.wait(1.0):
            try:
                trickler.send(b" ")
            except OSError:
                return

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    started = time.monotonic()
    try:
        time.sleep(0.5)  # both threads are now taken
        # Answered once the deadline has freed a thread (without it: never).
        assert request(plugin, b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\nContent-Length: 0") == (
            200, {"Implements": ["NetworkDriver", "IpamDriver"]})
        assert time.monotonic() - started < READ_DEADLINE + SLACK
        assert answer(stalled) == (0, None)  # gunicorn drops a request whose headers never completed
        status, body = answer(trickler)
        assert status == 400 and "request body not received" in body["Err"], body
        assert time.monotonic() - started < READ_DEADLINE + SLACK
    finally:
        stop.set()
        stalled.close()
        trickler.close()
        feeder.join(timeout=5)


def test_bodies_over_one_mib_get_the_json_envelope(plugin):
    status, body = request(plugin, b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: %d" % (MAX_BODY + 1))  # refused before any body is sent
    assert status == 413 and "at most 1048576 bytes (1 MiB)" in body["Err"] and body["Err"] == body["Error"]
    # Chunked (no Content-Length): refused once the cap is passed, also as JSON.
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1))
    status, body = request(plugin, b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked", chunks + b"0\r\n\r\n")
    assert status == 413 and "1 MiB" in body["Err"]
    # A body just under the cap is read and judged on its content.
    padded = json.dumps({"AddressSpace": "pynet-local", "Pool": "10.9.0.0/24", "Options": {}, "V6": False})
    padded = padded[:-1] + "," + '"Pad": "' + "x" * (MAX_BODY - len(padded) - 20) + '"}'
    status, body = request(plugin, b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                           % len(padded), padded.encode())
    assert status == 200 and body["Pool"] == "10.9.0.0/24"
