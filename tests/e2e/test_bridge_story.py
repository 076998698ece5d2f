"""The foundation user story on a real dockerd with the real plugin (issue: single-host bridge networks)."""

from __future__ import annotations

import json

import pytest

from pynet.lab.proc import CommandError
from tests.e2e.helpers import IMG, pn_links, run



def create(host, cleanup, name, *args, driver_only=False):
    cleanup.network(name)
    ipam = [] if driver_only else ["--ipam-driver", "pynet"]
    host.docker("network", "create", "-d", "pynet", *ipam, *args, name)
    return name


def test_user_story(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "mynet", "--subnet", "192.168.0.0/16", "--gateway", "192.168.0.1")
    run(h, cleanup, "ca", network="mynet")
    run(h, cleanup, "cb", network="mynet")
    ip_a, ip_b = h.container_ip("ca", "mynet"), h.container_ip("cb", "mynet")
    assert ip_a.startswith("192.168.") and ip_b.startswith("192.168.") and ip_a != ip_b
    h.docker("exec", "ca", "ping", "-c1", "-W2", "cb")  # by name: dockerd's embedded DNS
    h.docker("exec", "ca", "ping", "-c1", "-W2", ip_b)  # by address
    route = h.docker("exec", "ca", "ip", "route").stdout
    assert "default via 192.168.0.1" in route
    bridge = h.docker("network", "inspect", "-f", "{{.Id}}", "mynet").stdout.strip()[:12]
    rules = h.ns_exec("iptables", "-S", "PYNET-FORWARD").stdout
    assert f"-A PYNET-FORWARD -i pn-{bridge} -o pn-{bridge} -j ACCEPT" in rules
    assert "-P FORWARD DROP" in h.ns_exec("iptables", "-S", "FORWARD").stdout  # dockerd's policy

    run(h, cleanup, "cc")  # on Docker's own bridge
    h.docker("network", "connect", "mynet", "cc")
    eth1 = h.docker("exec", "cc", "ip", "addr", "show", "eth1").stdout
    assert h.container_ip("cc", "mynet") in eth1
    h.docker("exec", "cc", "ping", "-c1", "-W2", "ca")
    inspect = json.loads(h.docker("network", "inspect", "mynet").stdout)[0]
    assert sorted(c["Name"] for c in inspect["Containers"].values()) == ["ca", "cb", "cc"]
    assert inspect["IPAM"]["Driver"] == "pynet" and inspect["Driver"] == "pynet"

    run(h, cleanup, "cd", "--ip", "192.168.0.50", network="mynet")
    assert h.container_ip("cd", "mynet") == "192.168.0.50"
    with pytest.raises(CommandError, match="192.168.0.50 is already in use"):
        run(h, cleanup, "ce", "--ip", "192.168.0.50", network="mynet")
    h.docker("rm", "-f", "ce", check=False)

    for ip in (ip_a, "192.168.0.50"):  # the host reaches container addresses
        h.ns_exec("busybox", "ping", "-c1", "-W2", ip)

    h.docker("network", "disconnect", "mynet", "cc")
    assert "eth1" not in h.docker("exec", "cc", "ip", "link").stdout
    h.docker("rm", "-f", "ca", "cb", "cc", "cd")
    assert pn_links(h) == [f"pn-{inspect['Id'][:12]}"]  # only the bridge until the network goes
    h.docker("network", "rm", "mynet")
    assert pn_links(h) == []
    assert "PYNET" not in h.ns_exec("iptables-save").stdout + h.ns_exec("ip6tables-save").stdout


def test_addresses_are_reused_only_round_robin_and_mac_is_docker_like(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "rr", "--subnet", "10.31.0.0/24")
    run(h, cleanup, "r1", network="rr")
    first = h.container_ip("r1", "rr")
    mac = h.docker("inspect", "-f", '{{(index .NetworkSettings.Networks "rr").MacAddress}}', "r1").stdout.strip()
    assert mac == "02:42:" + ":".join(f"{int(o):02x}" for o in first.split("."))
    assert mac in h.docker("exec", "r1", "ip", "link", "show", "eth0").stdout
    h.docker("rm", "-f", "r1")
    run(h, cleanup, "r2", network="rr")
    assert h.container_ip("r2", "rr") != first


def engine_api(host, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """Call the Engine API on the host's socket (for what the docker 28 CLI won't send to API 1.41)."""
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(host.host.removeprefix("unix://"))

    conn = Conn("localhost", timeout=60)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, json.loads(data) if data else {}


def test_user_mac_is_kept(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "macnet", "--subnet", "10.32.0.0/24")
    cleanup.container("m1")
    status, body = engine_api(h, "POST", "/v1.41/containers/create?name=m1", {
        "Image": IMG, "Cmd": ["sleep", "1d"], "MacAddress": "ca:fe:00:00:10:02",
        "HostConfig": {"NetworkMode": "macnet"}})
    assert status == 201, body
    h.docker("start", "m1")
    assert "ca:fe:00:00:10:02" in h.docker("exec", "m1", "ip", "link", "show", "eth0").stdout


def test_default_pools_never_overlap_and_explicit_overlap_is_refused(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "d1")
    create(h, cleanup, "d2")
    subnets = [json.loads(h.docker("network", "inspect", n).stdout)[0]["IPAM"]["Config"][0]["Subnet"]
               for n in ("d1", "d2")]
    assert subnets[0] != subnets[1] and all(s.startswith("10.20") for s in subnets)
    with pytest.raises(CommandError, match="overlaps"):
        create(h, cleanup, "d3", "--subnet", subnets[0])
    assert "d3" not in h.docker("network", "ls", "--format", "{{.Name}}").stdout


def test_ip_range_aux_and_mtu(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "ranged", "--subnet", "10.33.0.0/16", "--ip-range", "10.33.7.0/24",
           "--aux-address", "router=10.33.7.1", "-o", "com.docker.network.driver.mtu=1400")
    run(h, cleanup, "g1", network="ranged")
    ip = h.container_ip("g1", "ranged")
    assert ip.startswith("10.33.7.") and ip != "10.33.7.1"
    assert "mtu 1400" in h.docker("exec", "g1", "ip", "link", "show", "eth0").stdout


def test_pynet_driver_with_dockers_default_ipam(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "dflt", "--subnet", "10.34.0.0/24", driver_only=True)
    run(h, cleanup, "f1", network="dflt")
    run(h, cleanup, "f2", network="dflt")
    h.docker("exec", "f1", "ping", "-c1", "-W2", "f2")


def test_ipv6_dual_stack_addresses(dockerhost, cleanup):
    h = dockerhost
    create(h, cleanup, "v6net", "--ipv6", "--subnet", "10.35.0.0/24", "--subnet", "fd00:35::/64")
    run(h, cleanup, "s1", network="v6net")
    run(h, cleanup, "s2", network="v6net")
    v6 = h.docker("inspect", "-f", '{{(index .NetworkSettings.Networks "v6net").GlobalIPv6Address}}',
                  "s2").stdout.strip()
    assert v6.startswith("fd00:35::")
    h.docker("exec", "s1", "ping", "-6", "-c1", "-W2", v6)


def test_bad_options_are_refused_by_name(dockerhost, cleanup):
    h = dockerhost
    with pytest.raises(CommandError, match="unknown network option 'pynet.colour'"):
        create(h, cleanup, "bad1", "-o", "pynet.colour=blue")
    with pytest.raises(CommandError, match="expected an integer"):
        create(h, cleanup, "bad2", "-o", "com.docker.network.driver.mtu=big")
    assert pn_links(h) == []
