"""Restarts, crashes and hostile input, with a real dockerd."""

from __future__ import annotations

import json
import signal
import socket
import time

from pynet.lab.wait import wait_until

IMG = "busybox:local"


def post_raw(path, method: str, body: bytes) -> tuple[int, dict]:
    """POST straight to the plugin's unix socket, like dockerd but with bodies dockerd would never send."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(path))
    req = (f"POST /{method} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nContent-Length: {len(body)}\r\n"
           f"Connection: close\r\n\r\n").encode() + body
    s.sendall(req)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload or b"null")


def test_bad_requests_get_clear_errors_and_plugin_stays_up(dockerhost):
    sock = dockerhost.pynet_socket
    cases = [
        ("NetworkDriver.CreateNetwork", b"{oops", 400, "not valid JSON"),
        ("NetworkDriver.CreateNetwork", b'{"NetworkID": 12}', 400, "NetworkID must be a string"),
        ("NetworkDriver.Join", b'{"NetworkID": "' + b"f" * 64 + b'", "EndpointID": "' + b"e" * 64 + b'"}',
         404, "not found"),
        ("IpamDriver.RequestPool", b'{"AddressSpace": "pynet-local", "Pool": "300.1.2.0/24"}', 400, "300.1.2.0"),
        # a malformed address is bad input whatever the pool (pynet/parsing.py), before the pool is looked up
        ("IpamDriver.RequestAddress", b'{"PoolID": "pynet-local/10.1.0.0/24", "Address": "x"}', 400, "invalid address 'x'"),
        ("IpamDriver.RequestAddress", b'{"PoolID": "pynet-local/10.1.0.0/24", "Address": "10.1.0.9"}', 404, "pool"),
        ("NetworkDriver.Nonexistent", b"{}", 404, "Not Found"),
    ]
    for method, body, status, needle in cases:
        got, reply = post_raw(sock, method, body)
        assert got == status, (method, reply)
        assert needle in reply["Err"], (method, reply)
    assert post_raw(sock, "Plugin.Activate", b"") == (200, {"Implements": ["NetworkDriver", "IpamDriver"]})
    assert dockerhost.pynet_proc.poll() is None


def test_plugin_sigkill_and_restart_while_containers_run(dockerhost, cleanup):
    h = dockerhost
    cleanup.network("crash")
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.40.0.0/24", "crash")
    for name in ("k1", "k2"):
        cleanup.container(name)
        h.docker("run", "-d", "--name", name, "--network", "crash", IMG, "sleep", "1d")
    ip2 = h.container_ip("k2", "crash")
    # A steady ping through the outage: 0.1 s apart, counted afterwards.
    h.docker("exec", "-d", "k1", "sh", "-c", f"ping -i 0.1 -c 60 {ip2} > /tmp/ping.log 2>&1")
    time.sleep(1)
    h.kill_pynet(signal.SIGKILL)
    time.sleep(2)
    h.start_pynet()
    time.sleep(4)
    log = h.docker("exec", "k1", "cat", "/tmp/ping.log").stdout
    assert "60 packets transmitted, 60 packets received" in log or " 0% packet loss" in log, log
    cleanup.container("k3")
    h.docker("run", "-d", "--name", "k3", "--network", "crash", IMG, "sleep", "1d")
    ips = {h.container_ip(n, "crash") for n in ("k1", "k2", "k3")}
    assert len(ips) == 3  # the new container got an address nobody has
    h.docker("exec", "k3", "ping", "-c1", "-W2", "k1")


def test_orphan_links_are_collected_at_start(dockerhost):
    h = dockerhost
    h.ns_exec("ip", "link", "add", "pnh0123456789ab", "type", "veth", "peer", "name", "pnc0123456789ab")
    h.ns_exec("ip", "link", "add", "pn-00000000beef", "type", "bridge")
    h.ns_exec("ip", "link", "add", "pn-userbr", "type", "bridge")  # not a pynet-made name: left alone
    try:
        h.restart_pynet()
        wait_until(lambda: not {"pnh0123456789ab", "pn-00000000beef"} & set(h.links()))
        links = set(h.links())
        assert "pnh0123456789ab" not in links and "pnc0123456789ab" not in links
        assert "pn-00000000beef" not in links and "pn-userbr" in links
    finally:
        h.ns_exec("ip", "link", "del", "pn-userbr", check=False)


def test_bridge_comes_back_after_it_vanished(dockerhost, cleanup):
    """A host reboot loses every bridge; pynet's start replays the stored networks."""
    h = dockerhost
    cleanup.network("reboot")
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.41.0.0/24", "reboot")
    nid = h.docker("network", "inspect", "-f", "{{.Id}}", "reboot").stdout.strip()
    h.kill_pynet(signal.SIGKILL)
    h.ns_exec("ip", "link", "del", f"pn-{nid[:12]}")
    h.start_pynet()
    # Wait for the end state (address on the bridge), not for the first sign of the link.
    shown = wait_until(lambda: "10.41.0.1/24" in h.ns_exec("ip", "addr", "show", f"pn-{nid[:12]}", check=False).stdout)
    assert shown, h.ns_exec("ip", "addr", "show", check=False).stdout
    cleanup.container("rb1")
    h.docker("run", "-d", "--name", "rb1", "--network", "reboot", IMG, "sleep", "1d")
    h.ns_exec("busybox", "ping", "-c1", "-W2", h.container_ip("rb1", "reboot"))


def test_dockerd_restart(dockerhost, cleanup):
    h = dockerhost
    cleanup.network("survive")
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.42.0.0/24", "survive")
    for name in ("s1", "s2"):
        cleanup.container(name)
        h.docker("run", "-d", "--name", name, "--restart", "always", "--network", "survive", IMG, "sleep", "1d")
    h.restart_dockerd()
    back = wait_until(lambda: {"s1", "s2"} <= set(h.docker("ps", "--format", "{{.Names}}").stdout.split()), 60, 1)
    assert back, "restart-always containers did not come back: " + h.docker("ps", "-a").stdout
    h.docker("exec", "s1", "ping", "-c1", "-W2", "s2")
    assert h.container_ip("s1", "survive") != h.container_ip("s2", "survive")
