"""Fixtures of the e2e tier: a real dockerd (in a netns of its own) with the real pynet.

Fixtures
- ``bare_dockerhost`` (session): a started DockerHost with busybox:local and pn-iperf:local, pynet NOT
  started (harness self-tests, tests that manage pynet themselves on their own host should prefer
  ``make_dockerhost``).
- ``dockerhost`` (session): the same host with ``pynet serve`` running on it. Before every test that
  uses it, pynet is restarted if a previous test left it dead.
- ``make_dockerhost`` (function): factory ``make_dockerhost(name, pynet=True, images=True)`` for tests that
  need a fresh or several hosts; each is stopped at the end of the test.
- ``cleanup`` (function): registry of things a test created; removed at teardown, also on failure.
- ``bare_cluster`` (session): a 2-host Cluster (lab/cluster.py): hosts "a" (192.0.2.1) and
  "b" (192.0.2.2) on an underlay with etcd on 192.0.2.10:2379, busybox:local loaded, pynet NOT started.
- ``cluster`` (session): the same cluster with ``pynet serve --etcd ... --vtep-address ...`` on every host
  (``--lease-ttl CLUSTER_LEASE_TTL``). Before every test that uses it, etcd, the underlay links, dockerd
  and pynet are brought back if a previous test left them down.
- ``make_cluster`` (function): factory ``make_cluster(n=3, lease_ttl=4, pynet=True)`` (``secure=True``: etcd
  with TLS, client certificates and RBAC, lab/cluster.py SecureEtcd); each cluster is
  stopped at the end of the test. etcd missing is a failure, not a skip (CI installs etcd-server).

All tests under tests/e2e get ``pytest.mark.e2e``; the tier is skipped with the reason when this is not
root or dockerd & co. are missing.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from pynet.lab.cluster import Cluster, etcd_missing
from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import install_signal_handlers, prerequisites_missing, tail

CLUSTER_LEASE_TTL = 8  # seconds; short, so host-loss tests need not wait pynet's default 15 s

_E2E_DIR = Path(__file__).resolve().parent
_SKIP_REASON = prerequisites_missing()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            if _SKIP_REASON:
                item.add_marker(pytest.mark.skip(reason=_SKIP_REASON))


@pytest.fixture(scope="session")
def e2e_workdir():
    """A short base dir (unix socket paths must stay < 108 bytes) for this session's hosts."""
    if _SKIP_REASON:
        pytest.skip(_SKIP_REASON)
    install_signal_handlers()
    DockerHost.reap_stale()  # leftovers of a run that was SIGKILLed
    base = Path(tempfile.mkdtemp(prefix="pn-e2e-", dir=os.environ.get("PYNET_TEST_TMP", "/tmp")))
    yield base
    try:
        base.rmdir()  # hosts remove their own workdirs; anything left is reported, not force-deleted
    except OSError:
        leftovers = list(base.iterdir()) if base.exists() else []
        if leftovers:
            warnings.warn(f"e2e workdir {base} not empty after teardown: {leftovers}")


def _new_host(base: Path, name: str, images: bool, pynet: bool, **kw) -> DockerHost:
    host = DockerHost(name, base / name, **kw)
    try:
        host.start()
        if images:
            host.load_busybox()
        if pynet:
            host.start_pynet()
    except BaseException:
        host.stop()
        raise
    return host


@pytest.fixture(scope="session")
def bare_dockerhost(e2e_workdir):
    host = _new_host(e2e_workdir, "main", images=True, pynet=False)
    yield host
    host.stop()


@pytest.fixture(scope="session")
def dockerhost(bare_dockerhost):
    """The session's DockerHost with busybox:local loaded and pynet serving."""
    if not bare_dockerhost.pynet_proc or bare_dockerhost.pynet_proc.poll() is not None:
        bare_dockerhost.start_pynet()
    yield bare_dockerhost
    bare_dockerhost.kill_pynet()


@pytest.fixture(autouse=True)
def _pynet_guard(request):
    """Give every test that uses `dockerhost` a serving pynet and a live dockerd."""
    if "dockerhost" in request.fixturenames:
        host: DockerHost = request.getfixturevalue("dockerhost")
        if host._dockerd is None or host._dockerd.poll() is not None:
            host.restart_dockerd()
        if host.pynet_proc is None or host.pynet_proc.poll() is not None:
            host.restart_pynet()
    yield


@pytest.fixture
def make_dockerhost(e2e_workdir):
    hosts: list[DockerHost] = []
    counter = iter(range(1000))

    def make(name: str | None = None, pynet: bool = True, images: bool = True, **kw) -> DockerHost:
        host = _new_host(e2e_workdir, name or f"h{next(counter)}", images=images, pynet=pynet, **kw)
        hosts.append(host)
        return host

    yield make
    for h in reversed(hosts):
        h.stop()


def _require_etcd() -> None:
    why = etcd_missing()
    if why:
        pytest.fail(why, pytrace=False)


@pytest.fixture(scope="session")
def bare_cluster(e2e_workdir):
    """Two hosts, the underlay and etcd; pynet not started (see ``cluster``)."""
    _require_etcd()
    cl = Cluster(e2e_workdir / "cluster", n=2, lease_ttl=CLUSTER_LEASE_TTL, pynet=False)
    cl.start()
    yield cl
    cl.stop()


@pytest.fixture(scope="session")
def cluster(bare_cluster):
    """The session's 2-host cluster with pynet serving in overlay mode on both hosts."""
    bare_cluster.start_pynet()
    yield bare_cluster
    for h in bare_cluster.hosts:
        h.kill_pynet()


def _heal_cluster(cl: Cluster) -> None:
    """Undo what an earlier (failed) test may have left broken: etcd down, a host cut off, a dead
    dockerd or pynet."""
    if cl.etcd is not None and not cl.etcd_running():
        cl.etcd.stop()  # forget a crashed process
        cl.etcd.start()
    for h in cl.hosts:
        cl.restore_host_link(h)
        if h._dockerd is None or h._dockerd.poll() is not None:
            h.restart_dockerd()
    cl.start_pynet()  # only where it is not running


@pytest.fixture(autouse=True)
def _cluster_guard(request):
    if "cluster" in request.fixturenames:
        _heal_cluster(request.getfixturevalue("cluster"))
    yield


@pytest.fixture
def make_cluster(e2e_workdir, request):
    _require_etcd()
    clusters: list[Cluster] = []
    request.node._pn_clusters = clusters  # for the failure report below
    counter = iter(range(1000))

    def make(n: int = 3, lease_ttl: float | None = 4, pynet: bool = True, **kw) -> Cluster:
        cl = Cluster(e2e_workdir / f"cluster{n}-{next(counter)}", n=n, lease_ttl=lease_ttl, pynet=pynet, **kw)
        clusters.append(cl)
        return cl.start()

    yield make
    for cl in reversed(clusters):
        cl.stop()


class Cleanup:
    """Things a test created on a DockerHost, removed at teardown in a safe order:
    containers, then networks, then registered callables (last registered first)."""

    def __init__(self, default_host: DockerHost | None = None):
        self.default_host = default_host
        self._containers: list[tuple[DockerHost, str]] = []
        self._networks: list[tuple[DockerHost, str]] = []
        self._callables: list = []

    def container(self, name: str, host: DockerHost | None = None) -> str:
        self._containers.append((host or self.default_host, name))
        return name

    def network(self, name: str, host: DockerHost | None = None) -> str:
        self._networks.append((host or self.default_host, name))
        return name

    def add(self, fn, *args, **kwargs):
        self._callables.append((fn, args, kwargs))
        return fn

    def run(self) -> list[str]:
        errors = []
        for host, name in reversed(self._containers):
            p = host.docker("rm", "-f", "-v", name, check=False, timeout=60)
            if p.returncode != 0 and "No such container" not in p.stderr:
                errors.append(f"rm container {name}: {p.stderr.strip()}")
        for host, name in reversed(self._networks):
            # An overlay removed on one host is also being removed by pynet on the others: dockerd may
            # answer a concurrent rm of the same network with "has active endpoints"; look again.
            for _ in range(10):
                p = host.docker("network", "rm", name, check=False, timeout=60)
                if p.returncode == 0 or "not found" in p.stderr:
                    break
                time.sleep(0.5)
            else:
                if "has active endpoints" in p.stderr and not _has_containers(host, name):
                    # dockerd's own endpoint-count leak after concurrent container removals
                    # (moby/moby#42119, seen with Docker's bridge too): nothing of pynet's is left
                    # in use, and the whole daemon goes with the test host.
                    continue
                errors.append(f"rm network {name}: {p.stderr.strip()}")
        for fn, args, kwargs in reversed(self._callables):
            try:
                fn(*args, **kwargs)
            except Exception as e:
                errors.append(f"{getattr(fn, '__name__', fn)}: {e}")
        self._containers.clear()
        self._networks.clear()
        self._callables.clear()
        return errors


def _has_containers(host: DockerHost, network: str) -> bool:
    count = host.docker("network", "inspect", network, "-f", "{{len .Containers}}", check=False).stdout.strip()
    return count != "0"


@pytest.fixture
def cleanup(request):
    host = None
    for fx in ("dockerhost", "bare_dockerhost"):
        if fx in request.fixturenames:
            host = request.getfixturevalue(fx)
            break
    reg = Cleanup(host)
    yield reg
    errors = reg.run()
    if errors:
        warnings.warn("e2e cleanup incomplete: " + "; ".join(errors))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of dockerd's and pynet's logs to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        for fx in ("dockerhost", "bare_dockerhost"):
            host = item.funcargs.get(fx) if hasattr(item, "funcargs") else None
            if isinstance(host, DockerHost):
                rep.sections.append((f"dockerd log ({host.netns})", tail(host.dockerd_log, 60)))
                if host.pynet_log.exists():
                    rep.sections.append((f"pynet log ({host.netns})", tail(host.pynet_log, 80)))
                break
        clusters = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Cluster)]
        clusters += getattr(item, "_pn_clusters", [])
        for cl in clusters:
            rep.sections.extend(cl.log_sections())
