"""Published ports, outbound NAT, isolation, --internal, enable_icc=false and IPv6 (issue 3), with real traffic.

"Another machine" is a peer network namespace joined to the DockerHost's netns by a veth pair:

    dockerhost netns: vph<tag> 198.51.100.1/24 2001:db8:1::1/64
         peer netns: vpp<tag> 198.51.100.2/24 2001:db8:1::2/64

The peer's default routes point at the dockerhost, so a connection that is not masqueraded still gets its
reply (and shows the container's own address). All traffic stays inside the test namespaces.
"""

from __future__ import annotations

import collections
import json
import re
import secrets
import subprocess
import sys
import time

import pytest

from pynet.lab.proc import CommandError, binary, pynet_executable
from pynet.lab.proc import run as command
from pynet.lab.wait import wait_until
from tests.e2e.helpers import IMG, pn_links, run

IPERF_IMG = "pn-iperf:local"
IPERF = "/usr/bin/iperf3"  # the harness copies the host's iperf3 into pn-iperf:local at the same path
HOST_V4, PEER_V4 = "198.51.100.1", "198.51.100.2"
HOST_V6, PEER_V6 = "2001:db8:1::1", "2001:db8:1::2"
PYNET_LINE = re.compile(r"pynet|\bpn-[0-9a-f]{12}\b|\bpn[hc][0-9a-f]{12}\b", re.I)
REPORTER = """
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
while True:
    c, a = s.accept()
    c.sendall((a[0].removeprefix("::ffff:") + "\\n").encode())
    c.close()
"""


# ------------------------------------------------------------------------------------------------ helpers
def create_net(h, cleanup, name, *args):
    cleanup.network(name, h)
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", *args, name)
    return name


def web_cmd(marker: str, *ports: int) -> list[str]:
    """busybox httpd serving ``marker`` on every port (the first in the foreground)."""
    steps = ["mkdir -p /www", f"echo {marker} > /www/index.html"]
    steps += [f"httpd -p {p} -h /www" for p in ports[1:]]
    steps.append(f"httpd -f -p {ports[0]} -h /www")
    return ["sh", "-c", " && ".join(steps)]




def run_web(h, cleanup, name, network, *args, marker="web-ok", ports=(5000,)):
    run(h, cleanup, name, "--network", network, *args, cmd=web_cmd(marker, *ports))
    for p in ports:  # listening before anyone tests through the NAT
        assert wait_until(lambda: ctr_wget(h, name, f"http://127.0.0.1:{p}/", 1) == marker), f"{name}:{p} not up"
    return name


def ctr_wget(h, ctr, url, timeout=3) -> str | None:
    # `timeout`, not wget -T: busybox 1.35's wget -T segfaults
    p = h.docker("exec", ctr, "timeout", str(timeout), "wget", "-qO-", url, check=False, timeout=timeout + 30)
    return p.stdout.strip() if p.returncode == 0 else None


def ctr_ping(h, ctr, ip, v6=False) -> bool:
    return h.docker("exec", ctr, "ping", *(["-6"] if v6 else []), "-c1", "-W1", ip, check=False).returncode == 0


def ctr_nc(h, ctr, ip, port, timeout=3) -> str | None:
    """Connect from the container; the peer's reporter answers with the source address it saw."""
    p = h.docker("exec", ctr, "nc", "-w", str(timeout), ip, str(port), check=False, timeout=timeout + 30)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def host_wget(h, url, timeout=3) -> str | None:
    p = h.ns_exec("timeout", str(timeout), "busybox", "wget", "-qO-", url, check=False, timeout=timeout + 30)
    return p.stdout.strip() if p.returncode == 0 else None


def ip6_of(h, ctr, net) -> str:
    return h.docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").GlobalIPv6Address}}}}',
                    ctr).stdout.strip()


def net_info(h, net) -> dict:
    return json.loads(h.docker("network", "inspect", net).stdout)[0]


def bridge_of(h, net) -> str:
    return f"pn-{net_info(h, net)['Id'][:12]}"


def pynet_ports(h, *args, check=True) -> subprocess.CompletedProcess:
    return h.ns_exec(pynet_executable(), "ports", "--socket", str(h.pynet_socket), "--docker-host", h.host,
                     *args, check=check)


def port_rows(h, target=None) -> list[dict]:
    return json.loads(pynet_ports(h, "--json", *([target] if target else [])).stdout)


def rules(h, v6=False) -> list[tuple[str, str]]:
    """(table, line) of every chain declaration and rule in iptables-save, counters dropped."""
    out, table = [], ""
    for line in h.ns_exec("ip6tables-save" if v6 else "iptables-save").stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(("-A", ":")):
            out.append((table, re.sub(r"\s*\[\d+:\d+\]", "", line)))
    return out


def pynet_rules(h, v6=False) -> list[tuple[str, str]]:
    return sorted(r for r in rules(h, v6) if PYNET_LINE.search(r[1]))


def docker_rules(h, v6=False) -> list[tuple[str, str]]:
    """Everything that is not pynet's, in filter and nat (the tables Docker writes), in order. Built-in chains
    with the default ACCEPT policy are left out: they only show that a table exists (pynet's use of it
    creates an empty ip6tables table that outlives its rules; that is no rule)."""
    return [r for r in rules(h, v6) if r[0] in ("filter", "nat") and not PYNET_LINE.search(r[1])
            and not (r[1].startswith(":") and r[1].split()[1] == "ACCEPT")]


def nat_lines(h, v6=False) -> list[str]:
    return [line for t, line in rules(h, v6) if t == "nat"]


class Peer:
    """Another machine: a netns joined to the DockerHost's netns by a veth pair (see the module doc)."""

    def __init__(self, h, cleanup):
        tag = secrets.token_hex(2)
        self.h = h
        self.netns = f"{h.netns}-p{tag}"
        self.host_if, self.peer_if = f"vph{tag}", f"vpp{tag}"  # not pn*: pynet's orphan collector
        self._procs: list[subprocess.Popen] = []
        ip = binary("ip")
        command([ip, "netns", "add", self.netns])
        cleanup.add(self.remove)
        command([ip, "-n", self.netns, "link", "set", "lo", "up"])
        command([ip, "-n", h.netns, "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if,
              "netns", self.netns])
        for ns, dev, v4, v6 in ((h.netns, self.host_if, HOST_V4, HOST_V6),
                                (self.netns, self.peer_if, PEER_V4, PEER_V6)):
            command([ip, "-n", ns, "addr", "add", f"{v4}/24", "dev", dev])
            command([ip, "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
            command([ip, "-n", ns, "link", "set", dev, "up"])
        command([ip, "-n", self.netns, "route", "add", "default", "via", HOST_V4])
        command([ip, "-n", self.netns, "-6", "route", "add", "default", "via", HOST_V6])

    def exec(self, *argv, check=False, timeout=60) -> subprocess.CompletedProcess:
        return command([binary("ip"), "netns", "exec", self.netns, *map(str, argv)], check=check, timeout=timeout)

    def wget(self, url, timeout=3) -> str | None:
        p = self.exec("timeout", str(timeout), "busybox", "wget", "-qO-", url, timeout=timeout + 30)
        return p.stdout.strip() if p.returncode == 0 else None

    def reporter(self, port: int = 8080) -> int:
        """A TCP server on the peer (v4 and v6) that answers each connection with the client's address."""
        p = subprocess.Popen([binary("ip"), "netns", "exec", self.netns, sys.executable, "-c", REPORTER, str(port)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._procs.append(p)
        up = wait_until(lambda: self.exec("busybox", "nc", "-w", "1", "127.0.0.1", port).stdout.strip() == "127.0.0.1",
                        seconds=10)
        assert up, f"reporter on the peer did not come up: {p.poll()} {p.stderr.read() if p.poll() is not None else ''}"
        return port

    def remove(self) -> None:
        for p in self._procs:
            p.kill()
            p.wait(10)
        if command([binary("ip"), "netns", "list"]).stdout.find(self.netns) >= 0:
            command([binary("ip"), "netns", "delete", self.netns])  # takes the veth pair with it


@pytest.fixture
def peer(dockerhost, cleanup):
    return Peer(dockerhost, cleanup)


# ------------------------------------------------------------------------------------------------ 1. published ports
def test_published_ports(dockerhost, cleanup, peer):
    h = dockerhost
    net = create_net(h, cleanup, "pp-front", "--subnet", "10.81.0.0/24")
    run_web(h, cleanup, "pp-web", net, "-p", "5000:5000", "-p", "127.0.0.1:5001:5000", "-p", "127.0.0.1::5000",
            "-p", "5002:5000/udp", "-p", "6000-6001:6000-6001", ports=(5000, 6000, 6001))
    web_ip = h.container_ip("pp-web", net)

    # from the host itself: loopback (route_localnet) and its own address (OUTPUT)
    assert host_wget(h, "http://127.0.0.1:5001/") == "web-ok"
    assert host_wget(h, "http://127.0.0.1:5000/") == "web-ok"  # a 0.0.0.0 binding includes loopback
    assert host_wget(h, f"http://{HOST_V4}:5000/") == "web-ok"
    # from another machine (PREROUTING), the expanded range too
    for port in (5000, 6000, 6001):
        assert peer.wget(f"http://{HOST_V4}:{port}/") == "web-ok", port
    assert peer.wget(f"http://{HOST_V4}:5001/", timeout=2) is None  # published on 127.0.0.1 only

    # pynet ports: every binding, the picked one included
    rows = port_rows(h, "pp-web")
    got = sorted((r["proto"], r["host_ip"], r["host_port"], r["container_ip"], r["container_port"]) for r in rows)
    picked = [r["host_port"] for r in rows if r["host_ip"] == "127.0.0.1" and r["host_port"] != 5001]
    assert len(picked) == 1 and picked[0] not in (0, 5000, 5001, 5002, 6000, 6001), rows
    assert got == sorted([
        ("tcp", "0.0.0.0", 5000, web_ip, 5000), ("tcp", "127.0.0.1", 5001, web_ip, 5000),
        ("tcp", "127.0.0.1", picked[0], web_ip, 5000), ("udp", "0.0.0.0", 5002, web_ip, 5000),
        ("tcp", "0.0.0.0", 6000, web_ip, 6000), ("tcp", "0.0.0.0", 6001, web_ip, 6001)]), rows
    assert {(r["container"], r["network"]) for r in rows} == {("pp-web", net)}
    assert host_wget(h, f"http://127.0.0.1:{picked[0]}/") == "web-ok"
    table = pynet_ports(h, net).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "NETWORK", "PROTO", "HOST", "CONTAINER"]
    assert ["pp-web", net, "tcp", "0.0.0.0:5000", f"{web_ip}:5000"] in [line.split() for line in table]
    unknown = pynet_ports(h, "pp-nosuch", check=False)
    assert unknown.returncode == 1 and "no published ports for pp-nosuch" in unknown.stderr
    assert any("udp" in line and "5002" in line and f"{web_ip}:5000" in line for line in nat_lines(h)), nat_lines(h)

    # UDP data through a published port: iperf3 -u (control over tcp, data over udp, same host port)
    run(h, cleanup, "pp-udp", "--network", net, "-p", "5003:5201", "-p", "5003:5201/udp", image=IPERF_IMG,
        cmd=(IPERF, "-s", "--forceflush"))
    assert wait_until(lambda: "Server listening" in h.docker("logs", "pp-udp").stdout)
    p = peer.exec(IPERF, "-c", HOST_V4, "-p", "5003", "-u", "-b", "2M", "-t", "1", "-J", timeout=30)
    report = json.loads(p.stdout or "{}")
    assert p.returncode == 0 and "error" not in report, p.stdout[-800:] + p.stderr
    assert report["end"]["sum"]["packets"] > 0 and report["end"]["sum"]["lost_percent"] < 50, report["end"]["sum"]

    # the same host port again: a clear error naming it, nothing left behind
    before = (pynet_rules(h), pynet_rules(h, v6=True), pn_links(h), port_rows(h))
    cleanup.container("pp-web2", h)
    with pytest.raises(CommandError) as err:
        h.docker("run", "-d", "--name", "pp-web2", "--network", net, "-p", "5000:5000", IMG, "sleep", "1d")
    assert "5000" in err.value.stderr, err.value.stderr
    h.docker("rm", "-f", "pp-web2")
    assert (pynet_rules(h), pynet_rules(h, v6=True), pn_links(h), port_rows(h)) == before
    assert peer.wget(f"http://{HOST_V4}:5000/") == "web-ok"  # the first owner keeps it

    # -P publishes EXPOSEd ports on ports pynet picks
    cleanup.add(h.docker, "rmi", "-f", "pn-expose:local", check=False)
    cleanup.container("pp-expimg", h)
    h.docker("create", "--name", "pp-expimg", IMG, "true")
    h.docker("commit", "-c", "EXPOSE 7000", "pp-expimg", "pn-expose:local")
    run(h, cleanup, "pp-exp", "--network", net, "-P", image="pn-expose:local", cmd=web_cmd("exp-ok", 7000))
    rows = port_rows(h, "pp-exp")
    assert [(r["proto"], r["host_ip"], r["container_port"]) for r in rows] == [("tcp", "0.0.0.0", 7000)], rows
    assert rows[0]["host_port"] > 0
    assert wait_until(lambda: peer.wget(f"http://{HOST_V4}:{rows[0]['host_port']}/") == "exp-ok")

    # removing the owner frees the port and its rules
    h.docker("rm", "-f", "pp-web")
    assert not any(f"{web_ip}:" in line for line in nat_lines(h)), nat_lines(h)
    run_web(h, cleanup, "pp-web3", net, "-p", "5000:5000", marker="web3-ok")
    assert peer.wget(f"http://{HOST_V4}:5000/") == "web3-ok"


# ------------------------------------------------------------------------------------------------ 2. hairpin
def test_hairpin(dockerhost, cleanup, peer):
    h = dockerhost
    net = create_net(h, cleanup, "ph-net", "--subnet", "10.82.0.0/24")
    run_web(h, cleanup, "ph-web", net, "-p", "5030:5000", marker="hair-ok")
    run(h, cleanup, "ph-other", "--network", net)
    assert ctr_wget(h, "ph-web", f"http://{HOST_V4}:5030/") == "hair-ok"  # its own published port
    assert ctr_wget(h, "ph-other", f"http://{HOST_V4}:5030/") == "hair-ok"  # a neighbour, via the host
    assert peer.wget(f"http://{HOST_V4}:5030/") == "hair-ok"


# ------------------------------------------------------------------------------------------------ 3. outbound NAT
def test_outbound_nat(dockerhost, cleanup, peer):
    h = dockerhost
    port = peer.reporter()
    on = create_net(h, cleanup, "pm-on", "--subnet", "10.83.0.0/24")
    off = create_net(h, cleanup, "pm-off", "--subnet", "10.84.0.0/24",
                     "-o", "com.docker.network.bridge.enable_ip_masquerade=false")
    run(h, cleanup, "pm-c1", "--network", on)
    run(h, cleanup, "pm-c2", "--network", off)
    assert ctr_nc(h, "pm-c1", PEER_V4, port) == HOST_V4  # masqueraded to the host's address
    assert ctr_nc(h, "pm-c2", PEER_V4, port) == h.container_ip("pm-c2", off)  # arrives as itself
    outbound = [line for line in nat_lines(h) if "MASQUERADE" in line and "DNAT" not in line]  # not hairpin's
    assert not any("10.84.0.0/24" in line for line in outbound) and any("10.83.0.0/24" in line for line in outbound)


# ------------------------------------------------------------------------------------------------ 4. isolation
def test_isolation_between_networks(dockerhost, cleanup):
    h = dockerhost
    front = create_net(h, cleanup, "pi-front", "--subnet", "10.85.0.0/24")
    back = create_net(h, cleanup, "pi-back", "--subnet", "10.86.0.0/24")
    run_web(h, cleanup, "pi-web", front, marker="iso-ok")
    run(h, cleanup, "pi-be", "--network", back)
    run(h, cleanup, "pi-d0")  # Docker's default bridge (docker0)
    # Docker's bridge network comes last: dockerd inserts its FORWARD rules at the top when it creates it,
    # after pynet last wrote its rules; isolation must hold from that moment on, not after a while.
    cleanup.network("pi-dnet", h)
    h.docker("network", "create", "-d", "bridge", "--subnet", "10.89.0.0/24", "pi-dnet")
    run_web(h, cleanup, "pi-dk", "pi-dnet", marker="dk-ok")
    web, be, dk = h.container_ip("pi-web", front), h.container_ip("pi-be", back), h.container_ip("pi-dk", "pi-dnet")
    d0 = h.container_ip("pi-d0", "bridge")

    def cut_off(src, dst_ip, http=True):
        return not ctr_ping(h, src, dst_ip) and (not http or ctr_wget(h, src, f"http://{dst_ip}:5000/", 2) is None)

    blocked = [  # the Docker bridge's first, while its rules are the newest in FORWARD
        ("pi-dk -> pi-web (Docker bridge -> pynet)", cut_off("pi-dk", web)),
        ("pi-web -> pi-dk (pynet -> Docker bridge)", cut_off("pi-web", dk)),
        ("pi-be -> pi-web (pynet -> pynet)", cut_off("pi-be", web)),
        ("pi-web -> pi-be (pynet -> pynet)", cut_off("pi-web", be, http=False)),
        ("pi-d0 -> pi-web (docker0 -> pynet)", cut_off("pi-d0", web)),
        ("pi-web -> pi-d0 (pynet -> docker0)", cut_off("pi-web", d0, http=False)),
    ]
    assert [what for what, ok in blocked if not ok] == [], h.ns_exec("iptables", "-S", "FORWARD").stdout

    h.docker("network", "connect", back, "pi-web")
    web_back = h.container_ip("pi-web", back)
    assert ctr_ping(h, "pi-be", web_back)
    assert ctr_wget(h, "pi-be", f"http://{web_back}:5000/") == "iso-ok"
    assert ctr_wget(h, "pi-be", "http://pi-web:5000/") == "iso-ok"  # by name on the shared network


# ------------------------------------------------------------------------------------------------ 5. --internal
def test_internal_network(dockerhost, cleanup, peer):
    h = dockerhost
    port = peer.reporter()
    net = create_net(h, cleanup, "pin-secret", "--internal", "--subnet", "10.87.0.0/24")
    run_web(h, cleanup, "pin-a", net, marker="in-ok")
    run(h, cleanup, "pin-b", "--network", net)
    assert ctr_wget(h, "pin-b", f"http://{h.container_ip('pin-a', net)}:5000/") == "in-ok"  # inside: fine
    assert ctr_nc(h, "pin-b", PEER_V4, port, timeout=2) is None  # no way out
    assert "default" not in h.docker("exec", "pin-b", "ip", "route").stdout

    # -p on an internal network: refused with a clear error, or (dockerd 20.10 strips the port map of
    # internal networks before any driver call: daemon buildPortsRelatedCreateEndpointOptions) never published
    rules_before = pynet_rules(h)
    cleanup.container("pin-pub", h)
    p = h.docker("run", "-d", "--name", "pin-pub", "--network", net, "-p", "5050:5000", IMG,
                 *web_cmd("leak", 5000), check=False)
    if p.returncode != 0:
        assert "internal" in p.stderr.lower(), p.stderr
    assert pynet_rules(h) == rules_before
    assert pynet_ports(h, "pin-pub", check=False).returncode == 1  # "no published ports for pin-pub"
    assert peer.wget(f"http://{HOST_V4}:5050/", timeout=2) is None
    assert host_wget(h, "http://127.0.0.1:5050/", timeout=2) is None


# ------------------------------------------------------------------------------------------------ 6. enable_icc=false
def test_icc_false(dockerhost, cleanup, peer):
    h = dockerhost
    port = peer.reporter()
    net = create_net(h, cleanup, "pc-noicc", "--subnet", "10.88.0.0/24",
                     "-o", "com.docker.network.bridge.enable_icc=false")
    run_web(h, cleanup, "pc-a", net, "-p", "5040:5000", marker="icc-ok")
    run(h, cleanup, "pc-b", "--network", net)
    a = h.container_ip("pc-a", net)
    assert not ctr_ping(h, "pc-b", a)
    assert ctr_wget(h, "pc-b", f"http://{a}:5000/", 2) is None
    assert ctr_nc(h, "pc-a", PEER_V4, port) == HOST_V4
    assert ctr_nc(h, "pc-b", PEER_V4, port) == HOST_V4
    assert peer.wget(f"http://{HOST_V4}:5040/") == "icc-ok"


# ------------------------------------------------------------------------------------------------ 7. IPv6 dual stack
def test_ipv6_dual_stack(dockerhost, cleanup, peer):
    h = dockerhost
    port = peer.reporter()
    net = create_net(h, cleanup, "p6-net", "--ipv6", "--subnet", "10.90.0.0/24", "--subnet", "fd00:90::/64")
    run_web(h, cleanup, "p6-web", net, "-p", "5060:5000", marker="v6-ok")
    run(h, cleanup, "p6-b", "--network", net)
    web6, b6 = ip6_of(h, "p6-web", net), ip6_of(h, "p6-b", net)
    assert web6.startswith("fd00:90::") and b6.startswith("fd00:90::")
    assert ctr_ping(h, "p6-b", web6, v6=True) and ctr_ping(h, "p6-web", b6, v6=True)

    gw6 = [c for c in net_info(h, net)["IPAM"]["Config"] if ":" in c["Subnet"]][0].get("Gateway") or "fd00:90::1"
    assert f"inet6 {gw6}/64" in h.ns_exec("ip", "-6", "addr", "show", "dev", bridge_of(h, net)).stdout
    assert f"default via {gw6}" in h.docker("exec", "p6-b", "ip", "-6", "route").stdout
    assert ctr_ping(h, "p6-b", gw6, v6=True)

    # published over both families; from another machine and from the host itself
    assert peer.wget(f"http://[{HOST_V6}]:5060/") == "v6-ok"
    assert peer.wget(f"http://{HOST_V4}:5060/") == "v6-ok"
    assert host_wget(h, f"http://[{HOST_V6}]:5060/") == "v6-ok"
    rows = port_rows(h, "p6-web")
    assert sorted((r["host_ip"], r["container_ip"]) for r in rows) == sorted(
        [("0.0.0.0", h.container_ip("p6-web", net)), ("::", web6)]), rows
    # outbound over v6, masqueraded like v4
    assert ctr_nc(h, "p6-b", PEER_V6, port) == HOST_V6
    assert ctr_nc(h, "p6-b", PEER_V4, port) == HOST_V4
    # ip6tables carries the same kinds of rules
    v6 = [line for _, line in pynet_rules(h, v6=True)]
    assert any(bridge_of(h, net) in line for line in v6), v6
    assert any("DNAT" in line and "5060" in line and web6 in line for line in v6), v6
    assert any("MASQUERADE" in line for line in v6), v6


# ------------------------------------------------------------------------------------------ 8. idempotency, teardown
def test_rules_idempotent_rebuilt_and_removed(make_dockerhost, cleanup):
    h = make_dockerhost("pidem")
    docker_before = (docker_rules(h), docker_rules(h, v6=True))
    p = Peer(h, cleanup)
    create_net(h, cleanup, "pd-v4", "--subnet", "10.91.0.0/24")
    create_net(h, cleanup, "pd-v6", "--ipv6", "--subnet", "10.92.0.0/24", "--subnet", "fd00:92::/64")
    create_net(h, cleanup, "pd-noicc", "--subnet", "10.93.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false")
    create_net(h, cleanup, "pd-int", "--internal", "--subnet", "10.94.0.0/24")
    create_net(h, cleanup, "pd-nomasq", "--subnet", "10.95.0.0/24",
               "-o", "com.docker.network.bridge.enable_ip_masquerade=false")
    run_web(h, cleanup, "pd-w4", "pd-v4", "-p", "5070:5000", "-p", "127.0.0.1::5000", "-p", "5071:5000/udp")
    run_web(h, cleanup, "pd-w6", "pd-v6", "-p", "5072:5000")
    for net in ("pd-noicc", "pd-int", "pd-nomasq"):
        run(h, cleanup, f"{net}-c", "--network", net)

    def snapshot():
        return pynet_rules(h), pynet_rules(h, v6=True)

    def dupes(rs):
        return [r for r, n in collections.Counter(rs).items() if n > 1]

    up = dict.fromkeys(("v4", "v4 to the v6 network", "v6"), "web-ok")

    def serving():
        return {"v4": p.wget(f"http://{HOST_V4}:5070/"), "v4 to the v6 network": p.wget(f"http://{HOST_V4}:5072/"),
                "v6": p.wget(f"http://[{HOST_V6}]:5072/")}

    first = snapshot()
    assert first[0] and first[1]
    assert dupes(first[0]) == [] and dupes(first[1]) == []
    assert serving() == up
    for _ in range(2):
        h.restart_pynet()
        time.sleep(1)  # reconciliation runs in the background after the socket is up
        assert wait_until(lambda: snapshot() == first), (snapshot(), first)
    assert serving() == up

    # rules are rebuilt from the stored state: flush every pynet chain, restart
    for v6 in (False, True):
        cmd = "ip6tables" if v6 else "iptables"
        for table, line in rules(h, v6):
            if line.startswith(":") and "PYNET" in line.upper():
                h.ns_exec(cmd, "-w", "-t", table, "-F", line[1:].split()[0])
    assert snapshot() != first
    h.restart_pynet()
    assert wait_until(lambda: snapshot() == first, seconds=20), (snapshot(), first)
    assert wait_until(lambda: serving() == up), serving()

    # teardown: nothing of pynet's is left, Docker's own rules are as they were
    assert cleanup.run() == []
    left = h.ns_exec("iptables-save").stdout + h.ns_exec("ip6tables-save").stdout
    assert [line for line in left.splitlines() if PYNET_LINE.search(line)] == []
    assert (docker_rules(h), docker_rules(h, v6=True)) == docker_before
    assert pn_links(h) == []
