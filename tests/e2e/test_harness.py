"""Self-tests of the e2e harness (lab/dockerhost.py): they need no pynet."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_daemon_runs_in_its_own_netns(bare_dockerhost):
    h = bare_dockerhost
    assert _netns_inode(h.dockerd_pid) == os.stat(f"/run/netns/{h.netns}").st_ino
    assert _netns_inode(h.dockerd_pid) != _netns_inode(os.getpid())
    assert "docker0" in h.links()
    mac = h.ns_exec("cat", "/sys/class/net/docker0/address").stdout.strip()
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert mac not in root_links, "our docker0 must not be visible in the host netns"


def test_daemon_has_private_containerd_and_plugin_dir(bare_dockerhost):
    h = bare_dockerhost
    # its own managed containerd, a child of our dockerd, configured under our exec-root
    children = subprocess.run(["ps", "-o", "args=", "--ppid", str(h.dockerd_pid)],
                              capture_output=True, text=True).stdout
    assert f"{h.exec_root}/containerd/containerd.toml" in children
    assert h.mnt_exec("ls", "-A", "/run/containerd").stdout.split() in ([], ["s"])
    # /run/docker/plugins of this daemon is the per-host dir, and only for it
    marker = h.plugins_dir / "harness-marker"
    marker.write_text("x")
    try:
        assert "harness-marker" in h.mnt_exec("ls", "/run/docker/plugins").stdout
        assert not Path("/run/docker/plugins/harness-marker").exists()
    finally:
        marker.unlink()


def test_run_network_none(bare_dockerhost):
    bare_dockerhost.docker("run", "--rm", "--network", "none", "busybox:local", "true")


def test_default_bridge_ping_gateway(bare_dockerhost):
    out = bare_dockerhost.docker("run", "--rm", "busybox:local", "ping", "-c1", "-W2", "172.17.0.1").stdout
    assert "1 packets received" in out


def test_iperf_image(bare_dockerhost):
    out = bare_dockerhost.docker("run", "--rm", "--network", "none", "pn-iperf:local", "iperf3", "--version").stdout
    assert out.startswith("iperf 3")


def test_cleanup_registry_removes_containers(bare_dockerhost, cleanup):
    name = cleanup.container("harness-sleeper")
    bare_dockerhost.docker("run", "-d", "--name", name, "busybox:local", "sleep", "1d")
    assert cleanup.run() == []
    assert name not in bare_dockerhost.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_restart_and_stop_leave_nothing_behind(make_dockerhost):
    h = make_dockerhost("stoptest", pynet=False, images=True)
    h.docker("run", "-d", "--restart=always", "--stop-timeout=1", "--name", "sleeper", "busybox:local", "sleep", "1d")
    h.restart_dockerd()
    assert "sleeper" in h.docker("ps", "--format", "{{.Names}}").stdout
    shim_pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", h.netns],
                                                capture_output=True, text=True, check=True).stdout.split()]
    assert shim_pids
    netns, workdir, cgroup = h.netns, str(h.workdir), h.cgroup_parent

    h.stop()
    h.stop()  # idempotent

    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert workdir not in Path("/proc/self/mounts").read_text()
    assert not Path(workdir).exists()
    for pid in shim_pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    leftover = [p for p in Path("/sys/fs/cgroup").glob(f"*/{cgroup}")]
    assert leftover == []


def test_dockerhost_fixture_serves_pynet(dockerhost):
    """The `dockerhost` fixture's pynet answers dockerd's handshake on the per-host plugins dir."""
    import json
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(dockerhost.pynet_socket))
    s.sendall(b"POST /Plugin.Activate HTTP/1.0\r\nHost: plugin\r\nContent-Length: 0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert set(json.loads(body)["Implements"]) >= {"NetworkDriver", "IpamDriver"}
