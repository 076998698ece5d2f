"""A real etcd of our own for tests: one member, its own data dir, optionally in a netns.

    with EtcdProcess(tmp_path / "etcd") as etcd:          # 127.0.0.1, free ports, started
        store = EtcdStore([etcd.url])
        ...
        etcd.restart()                                     # same data, same ports
        etcd.compact(store.current_revision())

    # multi-host e2e: etcd inside the underlay netns, reached by every host there
    etcd = EtcdProcess(workdir, host="192.0.2.10", netns="pn-t-underlay-1a2b").start()
    ... EtcdStore(["http://192.0.2.10:2379"]) ...
    etcd.stop()

    # secured: TLS with client certificates (lab/pki.py), then RBAC and auth on
    etcd = EtcdProcess(workdir, tls=EtcdTls(ca.cert, server, admin), auth_token_ttl=2).start()
    etcd.enable_auth("root-pw", {"pynet": ("pw", "/pynet/")})   # post() logs in as root from then on

Design note.  The system binary (Debian's etcd-server, 3.4) runs with test
settings: fast raft timers (heartbeat 25 ms, election 250 ms: a single member
elects itself in well under a second; the minimum lease TTL becomes 1 s) and no
auto-compaction (tests compact explicitly with ``compact``).  Ports on
127.0.0.1 are found by binding port 0; inside a netns the defaults are 2379 and
2380 (the netns is the test's own).  Everything this class talks to etcd with
(readiness, ``post``, ``compact``) runs inside the netns when there is one, so
the caller's process needs no route to it.

Only the process this object started is ever signalled, by its PID (``ip netns
exec`` execs etcd, so the PID is etcd's).  An atexit hook stops any instance a
crashed test left running.  The log goes to ``<workdir>/etcd.log``; a failed
start quotes its tail.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path

from pynet.lab.pki import Cert

ETCD_BINARY = os.environ.get("PYNET_TEST_ETCD", "/usr/bin/etcd")  # Debian: apt-get install etcd-server
HEARTBEAT_MS = 25
ELECTION_MS = 250

# etcd 3.4 refuses to start on an architecture it does not list as supported
# unless ETCD_UNSUPPORTED_ARCH names it (amd64 and ppc64le are supported).
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
           "i686": "386", "armv7l": "arm"}

# Run with ``ip netns exec``: the same POST as in this process (``_post``), JSON in and out, exit 1
# with the reason on failure.
_POST_SCRIPT = "import sys; from pynet.lab.etcd import _post_main; _post_main(sys.argv[1:])"


def _post(url: str, body: dict, timeout: float, tls: dict | None, auth: tuple[str, str] | None) -> dict:
    """One POST to the gateway, over TLS when ``tls`` ({"ca", "cert", "key"}) is given, with a
    token for ``auth`` (user, password) when given.  EtcdError on any failure."""
    context = None
    if tls:
        context = ssl.create_default_context(cafile=tls["ca"])
        if tls.get("cert"):
            context.load_cert_chain(tls["cert"], tls["key"])
    headers = {}
    if auth:
        base = url.split("/v3/", 1)[0]
        token = _post(f"{base}/v3/auth/authenticate", {"name": auth[0], "password": auth[1]}, timeout, tls, None)
        headers["Authorization"] = token["token"]
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError) as err:
        detail = err.read().decode(errors="replace") if isinstance(err, urllib.error.HTTPError) else ""
        raise EtcdError(f"POST {url}: {err} {detail}") from err


def _post_main(argv: list[str]) -> None:
    url, body, timeout, tls, auth = argv
    try:
        answer = _post(url, json.loads(body), float(timeout), json.loads(tls), json.loads(auth))
    except EtcdError as err:
        sys.exit(str(err))
    sys.stdout.write(json.dumps(answer))


@dataclass(frozen=True)
class EtcdTls:
    """TLS for an EtcdProcess: its server certificate (``server.cert``/``server.key``), the CA it
    trusts for clients (``ca``, also the one clients verify it with), whether it requires client
    certificates, and the client certificate the lab itself talks to it with (``client``)."""

    ca: Path
    server: Cert
    client: Cert | None = None
    client_cert_auth: bool = True


_live: weakref.WeakSet[EtcdProcess] = weakref.WeakSet()


class EtcdError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EtcdProcess:
    """One etcd member.  ``start()`` returns self; also a context manager (start/stop)."""

    def __init__(self, workdir: str | Path, host: str = "127.0.0.1", client_port: int | None = None,
                 peer_port: int | None = None, netns: str | None = None, name: str = "pynet-test",
                 tls: EtcdTls | None = None, auth_token_ttl: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.auth_token_ttl = auth_token_ttl
        self._root: tuple[str, str] | None = None  # set by enable_auth: post() then authenticates
        self.host = host
        self.netns = netns
        self.name = name
        self.client_port = client_port or (2379 if netns else free_port(host))
        self.peer_port = peer_port or (2380 if netns else free_port(host))
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The client URL, e.g. ``http://127.0.0.1:41234`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "etcd.log"

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> EtcdProcess:
        """Start etcd (keeping any data already in the workdir); return once it answers a
        linearizable read (it has a leader).  EtcdError if it exits or stays silent."""
        if self._proc is not None and self._proc.poll() is None:
            raise EtcdError(f"etcd {self.name} is already running (pid {self._proc.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not os.access(ETCD_BINARY, os.X_OK):
            raise EtcdError(f"no etcd binary at {ETCD_BINARY} (apt-get install etcd-server, or set PYNET_TEST_ETCD)")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        _live.add(self)
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (etcd shuts down cleanly in about a second), SIGKILL after ``timeout``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 15.0) -> EtcdProcess:
        """stop() then start(): same data dir, same ports, so the same URL and revisions."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EtcdProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- talking to it ---------------------------------------------------------------

    def post(self, path: str, body: dict, timeout: float = 5.0) -> dict:
        """POST ``body`` to the v3 JSON gateway (``path`` like ``kv/range``); the decoded
        answer.  Runs inside the netns if there is one.  EtcdError on any failure."""
        url = f"{self.url}/v3/{path.lstrip('/')}"
        tls = None
        if self.tls:
            client = self.tls.client
            tls = {"ca": str(self.tls.ca), "cert": str(client.cert) if client else None,
                   "key": str(client.key) if client else None}
        if self.netns is None:
            return _post(url, body, timeout, tls, self._root)
        argv = ["ip", "netns", "exec", self.netns, sys.executable, "-c", _POST_SCRIPT, url, json.dumps(body),
                str(timeout), json.dumps(tls), json.dumps(self._root)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
        if proc.returncode != 0:
            raise EtcdError(f"POST {url} in netns {self.netns}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def enable_auth(self, root_password: str, users: dict[str, tuple[str, str]]) -> None:
        """RBAC, then ``auth enable``: a root user (with the root role, as ``etcdctl auth enable``
        sets it up), and per entry ``user -> (password, prefix)`` a role of the user's name with
        readwrite on ``prefix`` only.  post() authenticates as root from then on."""
        for user, (password, prefix) in users.items():
            self.post("auth/role/add", {"name": user})
            self.post("auth/role/grant", {"name": user, "perm": {
                "permType": "READWRITE", "key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}})
            self.post("auth/user/add", {"name": user, "password": password})
            self.post("auth/user/grant", {"user": user, "role": user})
        self.post("auth/user/add", {"name": "root", "password": root_password})
        self.post("auth/role/add", {"name": "root"})
        self.post("auth/user/grant", {"user": "root", "role": "root"})
        self.post("auth/enable", {})
        self._root = ("root", root_password)

    def compact(self, revision: int) -> None:
        """Drop history before ``revision`` (a watch from an older one then fails)."""
        self.post("kv/compaction", {"revision": revision, "physical": True})

    # -- internals -------------------------------------------------------------------

    def _argv(self) -> list[str]:
        peer = f"http://{self.host}:{self.peer_port}"
        argv = [
            ETCD_BINARY, "--name", self.name, "--data-dir", str(self.workdir / "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"{self.name}-{os.getpid()}-{self.client_port}",
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--auto-compaction-retention", "0",
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]
        if self.tls:
            argv += ["--cert-file", str(self.tls.server.cert), "--key-file", str(self.tls.server.key),
                     "--trusted-ca-file", str(self.tls.ca)]
            if self.tls.client_cert_auth:
                argv += ["--client-cert-auth"]
        if self.auth_token_ttl is not None:
            argv += ["--auth-token", "simple", "--auth-token-ttl", str(self.auth_token_ttl)]
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def _env(self) -> dict[str, str]:
        # An inherited ETCD_* variable would configure (or, shadowed by a flag, abort) etcd.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        arch = _GOARCH.get(platform.machine(), platform.machine())
        if arch not in ("amd64", "ppc64le"):
            env["ETCD_UNSUPPORTED_ARCH"] = arch
        return env

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise EtcdError(f"etcd {self.name} exited with {code} while starting:\n{self._log_tail()}")
            try:
                self.post("kv/range", {"key": "AA=="}, timeout=1.0)  # linearizable: needs a leader
                return
            except EtcdError as err:
                last = str(err)
            time.sleep(0.05)
        self.stop()
        raise EtcdError(f"etcd {self.name} not ready at {self.url} after {timeout} s ({last}):\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix`` (its last byte + 1)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


@atexit.register
def _stop_leftovers() -> None:
    for etcd in list(_live):
        etcd.stop(timeout=3)
