"""Self-tests of the multi-host harness (lab/cluster.py): the topology, without pynet."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from pynet.lab.cluster import ETCD_ADDRESS, ETCD_URL, HOST_UNDERLAY_IF, UNDERLAY_BRIDGE
from pynet.lab.dockerhost import RECORD_DIR
from pynet.lab.proc import CommandError

pytestmark = pytest.mark.e2e


def host_etcdctl(host, *args, check=True):
    """etcdctl run from a host's netns: what pynet on that host sees of etcd."""
    return host.ns_exec("env", "ETCDCTL_API=3", "etcdctl", "--endpoints", ETCD_URL, "--dial-timeout=2s",
                        "--command-timeout=3s", *args, check=check, timeout=20)


def ping(host, target, check=True):
    return host.ns_exec("busybox", "ping", "-c1", "-W2", target, check=check)


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def test_hosts_reach_each_other_and_etcd_over_the_underlay(bare_cluster):
    cl = bare_cluster
    for i, h in enumerate(cl.hosts):
        assert cl.vtep(h) == f"192.0.2.{i + 1}"
        addr = h.ns_exec("ip", "-o", "-4", "addr", "show", "dev", HOST_UNDERLAY_IF).stdout
        assert f"{cl.vtep(h)}/24" in addr, addr
        assert "mtu 1500" in h.ns_exec("ip", "link", "show", HOST_UNDERLAY_IF).stdout  # overlay MTU = 1450
        for other in cl.hosts:
            if other is not h:
                ping(h, cl.vtep(other))
        ping(h, ETCD_ADDRESS)


def test_etcd_is_reachable_from_every_host_netns(bare_cluster):
    a, b = bare_cluster.hosts
    key = f"/pn-harness/{uuid.uuid4().hex}"
    host_etcdctl(a, "put", key, "from-a")
    try:
        assert host_etcdctl(b, "get", "--print-value-only", key).stdout.strip() == "from-a"
        assert bare_cluster.etcdctl("get", "--print-value-only", key).stdout.strip() == "from-a"
    finally:
        bare_cluster.etcdctl("del", key)


def test_topology_stays_inside_our_namespaces(bare_cluster):
    cl = bare_cluster
    assert not {UNDERLAY_BRIDGE, HOST_UNDERLAY_IF, "u-a", "u-b"} & root_links()
    under = cl.underlay_exec("ip", "-o", "link", "show", "master", UNDERLAY_BRIDGE).stdout
    assert "u-a@" in under and "u-b@" in under, under
    # etcd listens in the underlay netns only; nothing listens on 2379 in ours
    own_ns = os.stat("/proc/self/ns/net").st_ino
    etcd_pids = [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "etcd"
                 and os.stat(f"/proc/{p}/ns/net").st_ino == os.stat(f"/run/netns/{cl.underlay.netns}").st_ino]
    assert etcd_pids, "no etcd process in the underlay netns"
    assert all(os.stat(f"/proc/{p}/ns/net").st_ino != own_ns for p in etcd_pids)
    # the underlay is recorded like a DockerHost, so reap_stale() finds it after a SIGKILLed run
    rec = json.loads((RECORD_DIR / f"{cl.underlay.netns}.json").read_text())
    assert rec["netns"] == cl.underlay.netns and rec["owner"] == os.getpid()


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_pynet_arguments_name_the_host(bare_cluster):
    a, b = bare_cluster.hosts
    args = bare_cluster.pynet_args(b)
    assert args[args.index("--etcd") + 1] == ETCD_URL
    assert args[args.index("--vtep-address") + 1] == "192.0.2.2"
    assert args[args.index("--docker-host") + 1] == b.host and b.host != a.host


def test_a_host_cut_off_the_underlay_and_plugged_back(bare_cluster):
    cl = bare_cluster
    a, b = cl.hosts
    cl.remove_host_link(b)
    try:
        assert ping(a, cl.vtep(b), check=False).returncode != 0
        assert host_etcdctl(b, "endpoint", "health", check=False).returncode != 0
        ping(a, ETCD_ADDRESS)  # the others are unaffected
        cl.remove_host_link(b)  # idempotent
    finally:
        cl.restore_host_link(b)
    cl.restore_host_link(b)  # idempotent
    ping(a, cl.vtep(b))
    host_etcdctl(b, "endpoint", "health")


def test_etcd_stop_and_start_keeps_its_data(bare_cluster):
    cl = bare_cluster
    a = cl.hosts[0]
    key = f"/pn-harness/{uuid.uuid4().hex}"
    cl.etcdctl("put", key, "kept")
    cl.etcd.stop()
    try:
        assert host_etcdctl(a, "get", key, check=False).returncode != 0
    finally:
        cl.etcd.start()
    assert host_etcdctl(a, "get", "--print-value-only", key).stdout.strip() == "kept"
    cl.etcdctl("del", key)


def test_cluster_stop_leaves_nothing_behind(make_cluster):
    cl = make_cluster(n=2, pynet=False)
    cl.hosts[0].docker("run", "-d", "--name", "sleeper", "busybox:local", "sleep", "1d")
    netns = [h.netns for h in cl.hosts] + [cl.underlay.netns]
    etcd_pid = cl.etcd.pid
    workdir = cl.workdir
    cl.stop()
    cl.stop()  # idempotent
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in netns if n in listed]
    assert not [n for n in netns if (RECORD_DIR / f"{n}.json").exists()]
    assert not Path(f"/proc/{etcd_pid}").exists() or _comm(str(etcd_pid)) != "etcd"
    assert not workdir.exists()
    assert str(workdir) not in Path("/proc/self/mounts").read_text()


def test_docker_works_on_every_host(bare_cluster):
    for h in bare_cluster.hosts:
        try:
            h.docker("run", "--rm", "--network", "none", "busybox:local", "true")
        except CommandError as e:
            pytest.fail(f"host {h.name}: {e}")
