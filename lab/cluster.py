"""Several Docker hosts on one machine, joined by an underlay with etcd on it: the overlay tier's "cluster".

    with Cluster(Path("/tmp/pn-e2e-xyz/cl"), n=2, lease_ttl=15) as cl:
        a, b = cl.hosts                       # DockerHost "a" (192.0.2.1), "b" (192.0.2.2), busybox:local loaded
        a.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet",
                 "-o", "pynet.mode=overlay", "-o", "pynet.overlay=demo", "--subnet", "10.10.0.0/24", "demo")
        cl.etcd.stop(); cl.etcd.start()       # an etcd outage
        cl.remove_host_link(b)                # b is cut off the underlay
    # stop(): pynet, dockerd, containers, etcd, every netns, mount and file; idempotent, also on failure

    Cluster(..., secure=True)                 # etcd with TLS, --client-cert-auth and RBAC (see SecureEtcd)

Topology (environment.md, "Several hosts on one machine")::

    netns pn-t-u-XXXX (underlay): bridge br-u 192.0.2.10/24, etcd on 192.0.2.10:2379 (lab/etcd.py)
     ├─ veth u-a ── ul0 in netns pn-t-a-XXXX: 192.0.2.1/24, dockerd + pynet serve --etcd ... --vtep-address 192.0.2.1
     └─ veth u-b ── ul0 in netns pn-t-b-XXXX: 192.0.2.2/24, dockerd + pynet serve ... --vtep-address 192.0.2.2

Every link is created inside a namespace of ours (``ip -n U link add ... peer ... netns H``), so nothing
ever appears in the machine's own netns. The underlay netns is recorded in /run/pynet-tests like a
DockerHost (it *is* a DockerHost without a dockerd), so ``DockerHost.reap_stale()`` removes it, and the
etcd in it, after a run that was SIGKILLed. Only processes we started, or that live in our namespaces,
are ever killed.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterable, Sequence

from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import DockerHostError, LIVE, LIVE_LOCK, binary, pid_alive, run, tail
from pynet.lab.images import build_busybox_tar, cached_tar
from pynet.lab.etcd import EtcdProcess, EtcdTls
from pynet.lab.pki import Cert, Pki

UNDERLAY_BRIDGE = "br-u"
UNDERLAY_PREFIX = "192.0.2"
UNDERLAY_MASK = 24
ETCD_ADDRESS = f"{UNDERLAY_PREFIX}.10"
ETCD_PORT = 2379
ETCD_URL = f"http://{ETCD_ADDRESS}:{ETCD_PORT}"
SECURE_ETCD_URL = f"https://{ETCD_ADDRESS}:{ETCD_PORT}"
PYNET_PREFIX = "/pynet/"  # what the README's etcd role grants pynet: its whole key space, nothing else
HOST_UNDERLAY_IF = "ul0"  # the host's side of its underlay veth
HOST_NAMES = "abcdefghi"


def etcd_missing() -> str | None:
    """Why an etcd cannot be started here, or None. (Callers fail on it: CI installs etcd-server.)"""
    try:
        binary("etcd")
    except DockerHostError:
        return "overlay tests need `etcd` (apt-get install etcd-server etcd-client)"
    return None


class Underlay(DockerHost):
    """The underlay "switch": a netns with bridge br-u 192.0.2.10/24 and no dockerd.

    It reuses DockerHost's naming (``pn-t-u-XXXX``), crash record and stop(): stop() kills whatever
    still runs in the netns (etcd), deletes the netns (and with it every veth to the hosts) and the
    workdir (etcd's data)."""

    def start(self, timeout: float = 0) -> "Underlay":
        if self._stopped:
            raise DockerHostError("a stopped Underlay cannot be started again")
        with LIVE_LOCK:
            LIVE.add(self)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            run([binary("ip"), "netns", "add", self.netns])
            self._netns_created = True
            self._write_record()
            ip = [binary("ip"), "-n", self.netns]
            run([*ip, "link", "set", "lo", "up"])
            run([*ip, "link", "add", UNDERLAY_BRIDGE, "type", "bridge"])
            run([*ip, "addr", "add", f"{ETCD_ADDRESS}/{UNDERLAY_MASK}", "dev", UNDERLAY_BRIDGE])
            run([*ip, "link", "set", UNDERLAY_BRIDGE, "up"])
        except BaseException:
            self.stop()
            raise
        return self


class SecureEtcd:
    """The files of a secured cluster, made by the test in the underlay's workdir (removed with it):
    a CA, etcd's server certificate for 192.0.2.10, a client certificate per host and one for the lab
    (no CN: etcd's gateway refuses CNs under auth, lab/pki.py), and the ``pynet`` user's password file.
    etcd then runs with TLS and ``--client-cert-auth``, root and ``pynet`` users, and a ``pynet`` role
    with readwrite on PYNET_PREFIX only."""

    USER = "pynet"

    def __init__(self, workdir: Path, host_names: Iterable[str]) -> None:
        import secrets

        pki = Pki(workdir)
        self.ca = pki.ca("cluster")
        self.server = pki.issue(self.ca, "pn-etcd-server", ips=[ETCD_ADDRESS])
        self.admin = pki.issue(self.ca, "lab-admin")
        self.hosts: dict[str, Cert] = {name: pki.issue(self.ca, f"host-{name}") for name in host_names}
        self.password = secrets.token_hex(16)
        self.root_password = secrets.token_hex(16)
        self.password_file = workdir / "etcd-password"
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)

    def tls(self) -> EtcdTls:
        return EtcdTls(self.ca.cert, self.server, self.admin, client_cert_auth=True)

    def pynet_args(self, host_name: str) -> list[str]:
        cert = self.hosts[host_name]
        return ["--etcd-ca", str(self.ca.cert), "--etcd-cert", str(cert.cert), "--etcd-key", str(cert.key),
                "--etcd-user", self.USER, "--etcd-password-file", str(self.password_file)]


class Cluster:
    """N DockerHosts on one underlay with etcd; see the module docstring.

    ``pynet=False`` leaves pynet stopped (harness self-tests; ``start_pynet()`` starts it later).
    ``lease_ttl`` is passed as ``--lease-ttl``; ``pynet_args`` are appended to every host's pynet.
    ``secure``: etcd with TLS, client certificates and RBAC, pynet with the matching flags (SecureEtcd)."""

    def __init__(self, workdir: Path, n: int = 2, lease_ttl: float | None = 15, pynet: bool = True,
                 iperf: bool = False, pynet_args: Sequence[str] = (), pynet_env: dict | None = None,
                 secure: bool = False,
                 daemon_config: dict | None = None):
        if not 1 <= n <= len(HOST_NAMES):
            raise ValueError(f"1..{len(HOST_NAMES)} hosts")
        self.workdir = Path(workdir).absolute()
        self.n = n
        self.lease_ttl = lease_ttl
        self.with_pynet = pynet
        self.iperf = iperf
        self.extra_pynet_args = list(pynet_args)
        self.pynet_env = pynet_env
        self.secure = secure
        self.secrets: SecureEtcd | None = None  # made at start when secure
        self.underlay = Underlay("u", self.workdir / "u")
        self.hosts: list[DockerHost] = [DockerHost(HOST_NAMES[i], self.workdir / HOST_NAMES[i],
                                                   daemon_config=daemon_config) for i in range(n)]
        self.etcd: EtcdProcess | None = None
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Cluster({[h.netns for h in self.hosts]}, underlay={self.underlay.netns!r})"

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __getitem__(self, name: str) -> DockerHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    # ---------------------------------------------------------------- addresses
    def vtep(self, host: DockerHost) -> str:
        """The host's underlay (VTEP) address: 192.0.2.1 for the first host, .2 for the second, ..."""
        return f"{UNDERLAY_PREFIX}.{self.hosts.index(host) + 1}"

    @property
    def etcd_url(self) -> str:
        return SECURE_ETCD_URL if self.secure else ETCD_URL

    def _veth_name(self, host: DockerHost) -> str:
        return f"u-{host.name}"  # the underlay's side

    def pynet_args(self, host: DockerHost) -> list[str]:
        args = ["--etcd", self.etcd_url, "--vtep-address", self.vtep(host), "--docker-host", host.host]
        if self.secrets is not None:
            args += self.secrets.pynet_args(host.name)
        if self.lease_ttl is not None:
            args += ["--lease-ttl", str(self.lease_ttl)]
        return args + self.extra_pynet_args

    # ---------------------------------------------------------------- start
    def start(self) -> "Cluster":
        if self._started:
            raise DockerHostError("a Cluster starts once; make a new one")
        self._started = True
        try:
            self.underlay.start()
            self._start_etcd()
            cached_tar("busybox", build_busybox_tar)  # built once here, not raced by the threads below
            self._parallel(self._start_host, self.hosts)
            for h in self.hosts:
                self.restore_host_link(h)
            if self.with_pynet:
                self.start_pynet()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_etcd(self) -> None:
        tls = None
        if self.secure:
            self.secrets = SecureEtcd(self.underlay.workdir / "pki", [h.name for h in self.hosts])
            tls = self.secrets.tls()
        self.etcd = EtcdProcess(self.underlay.workdir / "etcd", host=ETCD_ADDRESS, client_port=ETCD_PORT,
                                netns=self.underlay.netns, name="pn-underlay", tls=tls)
        self.etcd.start()
        if self.secrets is not None:
            self.etcd.enable_auth(self.secrets.root_password,
                                  {SecureEtcd.USER: (self.secrets.password, PYNET_PREFIX)})

    def etcd_running(self) -> bool:
        """Whether the cluster's etcd process is alive (``cluster.etcd.stop()``/``start()`` toggle it)."""
        return self.etcd is not None and self.etcd.pid is not None and pid_alive(self.etcd.pid)

    def _start_host(self, host: DockerHost) -> None:
        host.start()
        host.load_busybox(iperf=self.iperf)

    @staticmethod
    def _parallel(fn: Callable[[DockerHost], object], hosts: Iterable[DockerHost]) -> None:
        """Run fn(host) for every host in its own thread; raise the first failure after all are done."""
        errors: list[tuple[DockerHost, BaseException]] = []

        def call(h: DockerHost) -> None:
            try:
                fn(h)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append((h, e))

        threads = [threading.Thread(target=call, args=(h,), name=f"cluster-{h.name}") for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            h, e = errors[0]
            more = "".join(f"\n  also {o.name}: {oe}" for o, oe in errors[1:])
            raise DockerHostError(f"host {h.name} ({h.netns}): {e}{more}") from e

    # ---------------------------------------------------------------- pynet
    def start_pynet(self, host: DockerHost | None = None, timeout: float = 10) -> None:
        """Start pynet (overlay mode) on `host`, or on every host whose pynet is not running."""
        targets = [host] if host else [h for h in self.hosts if not h.pynet_proc or h.pynet_proc.poll() is not None]
        self._parallel(lambda h: h.start_pynet(self.pynet_args(h), env=self.pynet_env, timeout=timeout), targets)

    def restart_pynet(self, host: DockerHost, sig: int = signal.SIGTERM) -> None:
        host.kill_pynet(sig)
        host.start_pynet(self.pynet_args(host), env=self.pynet_env)

    # ---------------------------------------------------------------- underlay links
    def _ul(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return run([binary("ip"), "-n", self.underlay.netns, *args], check=check)

    def _link_state(self, host: DockerHost) -> str | None:
        """'up', 'down' (cut) or None (never connected) for the underlay's side of the host's veth."""
        p = self._ul("-o", "link", "show", self._veth_name(host), check=False)
        if p.returncode != 0:
            return None
        flags = p.stdout.split("<", 1)[1].split(">", 1)[0].split(",")
        return "up" if "UP" in flags else "down"

    def host_link_present(self, host: DockerHost) -> bool:
        """Whether `host` is plugged into the underlay (not cut off by remove_host_link())."""
        return self._link_state(host) == "up"

    def remove_host_link(self, host: DockerHost) -> None:
        """Cut `host` off the underlay, as if its cable were pulled: the underlay's end of its veth
        goes down, so the host's ``ul0`` loses carrier but keeps its 192.0.2.<i> address and MAC.
        Idempotent; restore_host_link() plugs it back in."""
        if self._link_state(host) == "up":
            self._ul("link", "set", self._veth_name(host), "down")

    def restore_host_link(self, host: DockerHost) -> None:
        """Connect `host` to br-u (first time: veth ``u-<name>`` ↔ ``ul0`` with 192.0.2.<i>/24), or plug
        it back in after remove_host_link(). Idempotent."""
        state = self._link_state(host)
        veth = self._veth_name(host)
        if state is None:
            self._ul("link", "add", veth, "type", "veth", "peer", "name", HOST_UNDERLAY_IF, "netns", host.netns)
            self._ul("link", "set", veth, "master", UNDERLAY_BRIDGE)
            hip = [binary("ip"), "-n", host.netns]
            run([*hip, "addr", "add", f"{self.vtep(host)}/{UNDERLAY_MASK}", "dev", HOST_UNDERLAY_IF])
            run([*hip, "link", "set", HOST_UNDERLAY_IF, "up"])
        if state != "up":
            self._ul("link", "set", veth, "up")

    # ---------------------------------------------------------------- commands
    def underlay_exec(self, *argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run([binary("ip"), "netns", "exec", self.underlay.netns, *argv], check=check, timeout=timeout)

    def etcdctl(self, *args, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        """etcdctl (v3 API) against the cluster's etcd, from inside the underlay netns (as root, over
        TLS, when the cluster is secure)."""
        secure = []
        if self.secrets is not None:
            s = self.secrets
            secure = ["--cacert", s.ca.cert, "--cert", s.admin.cert, "--key", s.admin.key,
                      "--user", f"root:{s.root_password}"]
        return run(["env", "ETCDCTL_API=3", binary("ip"), "netns", "exec", self.underlay.netns, binary("etcdctl"),
                     "--endpoints", self.etcd_url, "--dial-timeout=3s", "--command-timeout=10s", *secure, *args],
                    check=check, timeout=timeout)

    def log_sections(self, lines: int = 60) -> list[tuple[str, str]]:
        """(title, tail) of every log worth reading after a failure: pynet, dockerd, etcd."""
        out = []
        for h in self.hosts:
            if h.pynet_log.exists():
                out.append((f"pynet log, host {h.name} ({h.netns})", tail(h.pynet_log, lines)))
            if h.dockerd_log.exists():
                out.append((f"dockerd log, host {h.name} ({h.netns})", tail(h.dockerd_log, lines // 2)))
        if self.etcd is not None and self.etcd.log_path.exists():
            out.append(("etcd log", tail(self.etcd.log_path, lines // 2)))
        return out

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop and remove everything (hosts in parallel, then etcd, then the underlay). Idempotent;
        each step runs even if an earlier one failed; the failures are raised together at the end."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        errors: list[str] = []
        # Hosts first: their containers' removal still reaches pynet, which still reaches etcd.
        threads = []
        for h in self.hosts:
            def stop_host(h=h):
                try:
                    h.stop()
                except Exception as e:  # noqa: BLE001
                    errors.append(f"host {h.name}: {e}")
            threads.append(threading.Thread(target=stop_host, name=f"cluster-stop-{h.name}"))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.etcd is not None:
            try:
                self.etcd.stop()
            except Exception as e:  # noqa: BLE001
                errors.append(f"etcd: {e}")
        try:
            self.underlay.stop()
        except Exception as e:  # noqa: BLE001
            errors.append(f"underlay: {e}")
        try:
            self.workdir.rmdir()  # hosts and underlay removed their own dirs; anything left is evidence
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(f"workdir {self.workdir}: {e}")
        if errors:
            raise DockerHostError("cluster stop incomplete: " + "; ".join(errors))

