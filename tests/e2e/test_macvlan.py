"""macvlan networks with cluster-wide IPAM (issue 16), black-box, on real dockerds, pynet and kernel.

The cluster's hosts hang on one underlay bridge (lab/cluster.py: ``ul0`` of host a is 192.0.2.1/24, of b
192.0.2.2/24, br-u with etcd 192.0.2.10): ``ul0`` is each host's parent, so the containers sit on the
underlay segment itself.  Kernel objects per network on each host: the host-side macvlan ``pnm<local
network id[:12]>`` on the parent with a /32 route and a permanent neighbour entry per container of that
host; a container's interface is ``pnc<endpoint id[:12]>`` until dockerd moves it.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import re
import uuid

import pytest

from pynet.lab.cluster import HOST_UNDERLAY_IF, Cluster
from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import binary, run as run_cmd
from pynet.lab.wait import wait_until
from tests.e2e.helpers import IMG, assert_ping, pn_links, run

pytestmark = pytest.mark.e2e

APPEAR_S = 10
UNDERLAY_GW = "192.0.2.10"  # br-u in the underlay netns: a station of the segment that is no Docker host


# ------------------------------------------------------------------------------------------- helpers
def macvlan_create(host: DockerHost, name: str, subnet: str, *extra: str, parent: str = HOST_UNDERLAY_IF,
                   overlay: str | None = None, check: bool = True):
    shared = ["--ipam-driver", "pynet", "-o", f"pynet.overlay={overlay or name}"] if overlay is not False else []
    par = ["-o", f"parent={parent}"] if parent else []
    return host.docker("network", "create", "-d", "pynet", *shared, "-o", "pynet.mode=macvlan", *par,
                       "--subnet", subnet, *extra, name, check=check)


def everywhere(cleanup, cl: Cluster, name: str) -> str:
    for h in cl.hosts:
        cleanup.network(name, host=h)
    return name


def network_names(host: DockerHost) -> set[str]:
    return set(host.docker("network", "ls", "--format", "{{.Name}}").stdout.split())


def net_id(host: DockerHost, name: str) -> str:
    return host.docker("network", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def host_ping(host: DockerHost, ip: str, wait: float = 3.0) -> tuple[bool, str]:
    """``ping`` from the host's own netns (not from a container), retried for ``wait`` seconds."""
    last = []
    ok = wait_until(lambda: last.append(host.ns_exec("busybox", "ping", "-c1", "-W1", ip, check=False))
                    or last[-1].returncode == 0, wait, 0.3)
    return bool(ok), (last[-1].stdout + last[-1].stderr).strip()


def routes(host: DockerHost, dev: str) -> str:
    return host.ns_exec("ip", "-4", "route", "show", "dev", dev, check=False).stdout


def uid() -> str:
    return uuid.uuid4().hex[:6]


def vlan_supported() -> bool:
    """Whether this kernel makes 802.1Q sub-interfaces (tried in a throwaway netns, deleted again)."""
    ns = f"pn-t-vlanprobe-{uid()}"
    ip = binary("ip")
    run_cmd([ip, "netns", "add", ns])
    try:
        run_cmd([ip, "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
        return run_cmd([ip, "-n", ns, "link", "add", "link", "p0", "name", "p0.5", "type", "vlan", "id", "5"],
                       check=False).returncode == 0
    finally:
        run_cmd([ip, "netns", "del", ns], check=False)


# --------------------------------------------------------------------------------------------- tests
def test_macvlan_story_two_hosts_one_segment(cluster, cleanup):
    """The issue's story: created once, on both hosts; distinct addresses from one range; containers reach
    each other, the underlay and the other host directly; each host reaches its own containers."""
    a, b = cluster.hosts
    name = everywhere(cleanup, cluster, f"lan{uid()}")
    macvlan_create(a, name, "192.0.2.0/24", "--ip-range", "192.0.2.128/25", "--gateway", UNDERLAY_GW)
    assert wait_until(lambda: name in network_names(b), APPEAR_S, 0.25), f"{name} did not appear on b"
    on_b = json.loads(b.docker("network", "inspect", name).stdout)[0]
    assert on_b["Driver"] == "pynet" and on_b["Options"]["pynet.mode"] == "macvlan"
    assert on_b["Options"]["parent"] == HOST_UNDERLAY_IF
    run(a, cleanup, "m1" + name, network=name)
    run(b, cleanup, "m2" + name, network=name)
    ip1, ip2 = a.container_ip("m1" + name, name), b.container_ip("m2" + name, name)
    rng = ipaddress.ip_network("192.0.2.128/25")
    assert ip1 != ip2 and ipaddress.ip_address(ip1) in rng and ipaddress.ip_address(ip2) in rng, (ip1, ip2)
    assert_ping(a, "m1" + name, ip2, wait=3)                 # container <-> container across hosts
    assert_ping(b, "m2" + name, ip1)
    assert_ping(a, "m1" + name, UNDERLAY_GW)                 # the underlay, directly (no NAT, no tunnel)
    assert_ping(a, "m1" + name, cluster.vtep(b))             # the other host's own address
    for host, ip in ((a, ip1), (b, ip2)):                    # each host reaches its own container
        ok, out = host_ping(host, ip)
        assert ok, f"host {host.name} cannot reach its own container {ip}: {out}\n{routes(host, 'pnm' + net_id(host, name)[:12])}"
    ok, out = host_ping(a, ip2)                              # and the other host's, over the parent
    assert ok, out
    # The container sees the underlay station with its real MAC: no gateway or proxy in between.
    neigh = a.docker("exec", "m1" + name, "ip", "neigh", "show", UNDERLAY_GW).stdout.lower()
    br_u = cluster.underlay_exec("cat", "/sys/class/net/br-u/address").stdout.strip().lower()
    assert br_u in neigh, (neigh, br_u)
    # The other stations never learn host a's address at the host-side interface's MAC (pynet pins the
    # neighbour entries instead of ARPing through pnm<net> with the host's address).
    pnm_mac = a.ns_exec("cat", f"/sys/class/net/pnm{net_id(a, name)[:12]}/address").stdout.strip().lower()
    seen = cluster.underlay_exec("ip", "neigh", "show", cluster.vtep(a)).stdout.lower()
    assert pnm_mac not in seen, seen
    # removal: the network goes on both hosts and nothing of it is left in either kernel
    for host, c in ((a, "m1" + name), (b, "m2" + name)):
        host.docker("rm", "-f", c)
    a_id, b_id = net_id(a, name)[:12], net_id(b, name)[:12]
    a.docker("network", "rm", name)
    assert wait_until(lambda: name not in network_names(b), APPEAR_S, 0.25), f"{name} still on b"
    for host, nid in ((a, a_id), (b, b_id)):
        assert wait_until(lambda: not [x for x in pn_links(host) if nid in x], 5), pn_links(host)
        assert ip1 not in routes(host, HOST_UNDERLAY_IF) and ip2 not in host.ns_exec("ip", "route").stdout


def test_macvlan_200_concurrent_containers_never_share_an_address(cluster, cleanup):
    """100 containers per host, started concurrently on both hosts, from one range: 200 distinct addresses,
    and a sample of them reach each other across the hosts."""
    a, b = cluster.hosts
    name = everywhere(cleanup, cluster, f"many{uid()}")
    macvlan_create(a, name, "10.77.0.0/23", "--ip-range", "10.77.0.0/24")
    assert wait_until(lambda: name in network_names(b), APPEAR_S, 0.25)
    per_host = 100
    names = {h: [f"c{h.name}{i}{name}" for i in range(per_host)] for h in (a, b)}
    for h, ns in names.items():
        for n in ns:
            cleanup.container(n, h)

    def start(job):
        h, n = job
        return h.docker("run", "-d", "--name", n, "--network", name, IMG, "sleep", "1d", check=False, timeout=240)

    jobs = [(h, n) for i in range(per_host) for h, n in ((a, names[a][i]), (b, names[b][i]))]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(start, jobs))
    failed = [(n, r.stderr.strip()) for (h, n), r in zip(jobs, results) if r.returncode != 0]
    assert not failed, f"{len(failed)} containers did not start, e.g. {failed[:3]}"
    addresses = {}
    for h, ns in names.items():
        fmt = f'{{{{.Name}}}} {{{{(index .NetworkSettings.Networks "{name}").IPAddress}}}}'
        out = h.docker("inspect", "-f", fmt, *ns).stdout.split("\n")
        addresses.update(dict(line.lstrip("/").split() for line in out if line.strip()))
    ips = list(addresses.values())
    assert len(ips) == 2 * per_host and len(set(ips)) == len(ips), \
        f"duplicates: {sorted(ip for ip in set(ips) if ips.count(ip) > 1)}"
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.77.0.0/24") for ip in ips)
    for i in (0, per_host // 2, per_host - 1):
        assert_ping(a, names[a][i], addresses[names[b][i]], wait=3)
    # No address of host a is in 10.77.0.0/23: the container answers the host's 192.0.2.1 on-link
    # (Join's connected StaticRoute), not through a gateway that is not there.
    ok, out = host_ping(a, addresses[names[a][0]])
    assert ok, out
    route = a.docker("exec", names[a][0], "ip", "route").stdout
    assert re.search(r"^192\.0\.2\.1 dev eth0", route, re.M), route
    for h, ns in names.items():
        chunks = [ns[i:i + 25] for i in range(0, len(ns), 25)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda c, h=h: h.docker("rm", "-f", *c, check=False, timeout=300), chunks))
    for h in (a, b):
        assert h.ns_exec("ip", "neigh", "show", "dev", "pnm" + net_id(h, name)[:12]).stdout.strip() == ""


def test_published_port_refused_by_name(cluster, cleanup):
    a, _ = cluster.hosts
    name = everywhere(cleanup, cluster, f"pp{uid()}")
    macvlan_create(a, name, "10.78.0.0/24")
    cleanup.container("p" + name, a)
    p = a.docker("run", "-d", "--name", "p" + name, "--network", name, "-p", "8080:80", IMG, "sleep", "1d",
                 check=False)
    assert p.returncode != 0 and "published ports" in p.stderr and "macvlan" in p.stderr, p.stderr


def test_internal_has_no_parent_and_stays_on_the_host(cluster, cleanup):
    a, _ = cluster.hosts
    name = f"in{uid()}"
    cleanup.network(name, a)
    refused = macvlan_create(a, name, "10.79.0.0/24", "--internal", overlay=False, check=False)
    assert refused.returncode != 0 and "no parent" in refused.stderr, refused.stderr
    macvlan_create(a, name, "10.79.0.0/24", "--internal", parent="", overlay=False)
    run(a, cleanup, "i1" + name, network=name)
    run(a, cleanup, "i2" + name, network=name)
    ip2 = a.container_ip("i2" + name, name)
    assert_ping(a, "i1" + name, ip2)
    nid = net_id(a, name)[:12]
    assert f"pnd{nid}" in pn_links(a) and f"pne{nid}" in pn_links(a) and f"pnm{nid}" not in pn_links(a)
    p = a.docker("exec", "i1" + name, "ping", "-c1", "-W1", UNDERLAY_GW, check=False)
    assert p.returncode != 0, "an --internal macvlan container reached the underlay"
    for c in ("i1", "i2"):
        a.docker("rm", "-f", c + name)
    a.docker("network", "rm", name)
    assert not [x for x in pn_links(a) if nid in x]


def test_vlan_parent_created_and_removed_with_the_last_network(cluster, cleanup):
    """parent=ul0.5: the 802.1Q sub-interface is pynet's and goes with the last network on it.  This
    machine's kernel has no 802.1Q: then the create must fail, say why, and leave nothing behind."""
    a, b = cluster.hosts
    sub = f"{HOST_UNDERLAY_IF}.5"
    n1, n2 = f"v1{uid()}", f"v2{uid()}"
    for n in (n1, n2):
        cleanup.network(n, a)
    before = a.links()
    if not vlan_supported():
        p = macvlan_create(a, n1, "10.80.0.0/24", parent=sub, overlay=False, check=False)
        assert p.returncode != 0 and "802.1Q" in p.stderr, p.stderr
        assert a.links() == before, f"left behind: {set(a.links()) - set(before)}"
        assert n1 not in network_names(a)
        return
    macvlan_create(a, n1, "10.80.0.0/24", parent=sub, overlay=False)
    macvlan_create(a, n2, "10.81.0.0/24", parent=sub, overlay=False)
    assert sub in a.links()
    a.docker("network", "rm", n1)
    assert sub in a.links(), "the sub-interface went while another network still uses it"
    a.docker("network", "rm", n2)
    assert sub not in a.links()


def test_restart_replays_and_removal_leaves_nothing(cluster, cleanup):
    a, _ = cluster.hosts
    name = everywhere(cleanup, cluster, f"rs{uid()}")
    macvlan_create(a, name, "192.0.2.0/24", "--ip-range", "192.0.2.192/27", "--gateway", UNDERLAY_GW)
    run(a, cleanup, "r1" + name, network=name)
    ip1 = a.container_ip("r1" + name, name)
    pnm = "pnm" + net_id(a, name)[:12]
    a.kill_pynet()
    a.ns_exec("ip", "link", "del", pnm)  # lost while pynet was down: the replay must bring it back
    cluster.start_pynet(a)
    assert wait_until(lambda: pnm in a.links(), 10), a.links()
    assert wait_until(lambda: ip1 in routes(a, pnm), 10), routes(a, pnm)
    ok, out = host_ping(a, ip1)
    assert ok, out
    a.docker("rm", "-f", "r1" + name)
    assert ip1 not in routes(a, pnm)
    nid = net_id(a, name)[:12]
    a.docker("network", "rm", name)
    assert wait_until(lambda: not [x for x in pn_links(a) if nid in x], 5), pn_links(a)


def test_single_host_macvlan_on_the_embedded_store(make_dockerhost, cleanup):
    """No etcd: pynet's IPAM (sqlite) or Docker's own; the host reaches its containers through pnm<net>."""
    h = make_dockerhost("mv")
    h.ns_exec("ip", "link", "add", "seg0", "type", "veth", "peer", "name", "seg1")
    h.ns_exec("ip", "link", "set", "seg0", "up")
    h.ns_exec("ip", "link", "set", "seg1", "up")
    h.ns_exec("ip", "addr", "add", "10.82.0.254/24", "dev", "seg0")
    name = "lan"
    cleanup.network(name, h)
    refused = h.docker("network", "create", "-d", "pynet", "-o", "pynet.mode=macvlan", "-o", "parent=seg0",
                       "-o", "pynet.overlay=lan", "--subnet", "10.82.0.0/24", name, check=False)
    assert refused.returncode != 0 and "multi-host" in refused.stderr, refused.stderr
    macvlan_create(h, name, "10.82.0.0/24", "--ip-range", "10.82.0.0/25", parent="seg0", overlay=False)
    run(h, cleanup, "s1", network=name)
    run(h, cleanup, "s2", network=name)
    ip1, ip2 = h.container_ip("s1", name), h.container_ip("s2", name)
    assert ip1 != ip2
    assert_ping(h, "s1", ip2)
    assert_ping(h, "s1", "10.82.0.254")  # the parent's own address: the host answers from its segment
    ok, out = host_ping(h, ip2)
    assert ok, out
    assert re.search(rf"^{re.escape(ip2)} .*src 10\.82\.0\.254", routes(h, "pnm" + net_id(h, name)[:12]), re.M)
    for c in ("s1", "s2"):
        h.docker("rm", "-f", c)
    nid = net_id(h, name)[:12]
    h.docker("network", "rm", name)
    assert not [x for x in pn_links(h) if nid in x]
    assert "seg0" in h.links()  # the parent is the user's: never touched
