"""Multi-host VXLAN overlays through etcd (issue 4), black-box, on a Cluster of real dockerds.

Every host runs ``pynet serve --etcd http://192.0.2.10:2379 --vtep-address 192.0.2.<i> --docker-host ...``
(lab/cluster.py). Each test uses its own overlay name and subnet, so a failure in one leaves
nothing in etcd that another could trip over; containers and networks are removed on every host.

Kernel objects per network on each host (contract): bridge ``pn-<local network id[:12]>``, VXLAN device
``pnv<local network id[:12]>`` with learning off, a static FDB entry (MAC → dst remote VTEP) and a
neighbour entry (IP → MAC) for every remote container.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import signal
import threading
import time

import pytest

from pynet.lab.cluster import Cluster
from pynet.lab.wait import wait_until
from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import CommandError
from tests.e2e.helpers import IMG, assert_ping, run

pytestmark = pytest.mark.e2e

APPEAR_S = 10  # an overlay created on one host shows up on the others within this
PROPAGATE_S = 5  # a new container becomes reachable from the other hosts within this


# ------------------------------------------------------------------------------------------- helpers
def overlay_create(host: DockerHost, name: str, subnet: str, overlay: str | None = None, *extra: str,
                   check: bool = True):
    return host.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=overlay",
                       "-o", f"pynet.overlay={overlay or name}", "--subnet", subnet, *extra, name, check=check)


def own_overlay(cleanup, cluster: Cluster, name: str) -> str:
    """Register network `name` for removal on every host (pynet creates the copies on the others)."""
    for h in cluster.hosts:
        cleanup.network(name, host=h)
    return name


def network_names(host: DockerHost) -> set[str]:
    return set(host.docker("network", "ls", "--format", "{{.Name}}").stdout.split())


def inspect_network(host: DockerHost, name: str) -> dict:
    return json.loads(host.docker("network", "inspect", name).stdout)[0]


def net_id(host: DockerHost, name: str) -> str:
    return host.docker("network", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def kernel_names(host: DockerHost, network: str) -> tuple[str, str]:
    """(bridge, vxlan device) of `network` on `host`; names come from the host's own network id."""
    nid = net_id(host, network)[:12]
    return f"pn-{nid}", f"pnv{nid}"


def mac_of(host: DockerHost, container: str, network: str) -> str:
    return host.docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}").MacAddress}}}}',
                       container).stdout.strip().lower()


def fdb(host: DockerHost, vxlan: str) -> str:
    return host.ns_exec("bridge", "fdb", "show", "dev", vxlan, check=False).stdout.lower()


def neigh(host: DockerHost, vxlan: str) -> str:
    return host.ns_exec("ip", "neigh", "show", "dev", vxlan, check=False).stdout.lower()


def has_fdb(host: DockerHost, vxlan: str, mac: str, vtep: str) -> bool:
    return re.search(rf"^{re.escape(mac)} .*\bdst {re.escape(vtep)}\b", fdb(host, vxlan), re.M) is not None


def has_neigh(host: DockerHost, vxlan: str, ip: str, mac: str | None = None) -> bool:
    """A neighbour entry for `ip` (with `mac`, if given) on the VXLAN device."""
    lladdr = rf".*\blladdr {re.escape(mac)}\b" if mac else ""
    return re.search(rf"^{re.escape(ip)} {lladdr}", neigh(host, vxlan), re.M) is not None


def has_any_fdb(host: DockerHost, vxlan: str, mac: str) -> bool:
    return re.search(rf"^{re.escape(mac)} ", fdb(host, vxlan), re.M) is not None


def gateway_mac_seen_by(host: DockerHost, container: str, gateway: str) -> str:
    out = host.docker("exec", container, "ip", "neigh", "show", gateway).stdout.lower()
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    assert m, f"{container} on {host.name} has no neighbour entry for the gateway {gateway}: {out!r}"
    return m.group(1)


def wait_for_network(host: DockerHost, name: str, present: bool = True, seconds: float = APPEAR_S) -> bool:
    return wait_until(lambda: (name in network_names(host)) == present, seconds, 0.25)


def rm_containers_fast(host: DockerHost, names: list[str], batch: int = 25) -> None:
    """`docker rm -f` in batches, a few batches at a time (hundreds of containers one by one take minutes)."""
    chunks = [names[i:i + batch] for i in range(0, len(names), batch)]
    threads = [threading.Thread(target=host.docker, args=("rm", "-f", *c), kwargs={"check": False, "timeout": 300})
               for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def overlay_pair(cl: Cluster, cleanup, name: str, subnet: str, ca: str, cb: str) -> tuple[str, str]:
    """Overlay `name` created on a (and so appearing on b), container `ca` on a and `cb` on b, reachable
    across; returns their addresses."""
    a, b = cl.hosts
    own_overlay(cleanup, cl, name)
    overlay_create(a, name, subnet)
    assert wait_for_network(b, name)
    run(a, cleanup, ca, network=name)
    run(b, cleanup, cb, network=name)
    ip_a, ip_b = a.container_ip(ca, name), b.container_ip(cb, name)
    assert_ping(a, ca, ip_b, wait=PROPAGATE_S)
    return ip_a, ip_b


# --------------------------------------------------------------------------------------------- tests
def test_overlay_user_story(cluster, cleanup):
    cl = cluster
    a, b = cl.hosts
    own_overlay(cleanup, cl, "demo")
    overlay_create(a, "demo", "10.10.0.0/24")
    t0 = time.monotonic()
    assert wait_for_network(b, "demo"), f"`demo` did not appear on host b within {APPEAR_S}s: {network_names(b)}"
    print(f"demo appeared on b after {time.monotonic() - t0:.1f}s")
    on_b = inspect_network(b, "demo")
    assert on_b["Driver"] == "pynet", on_b
    assert [c["Subnet"] for c in on_b["IPAM"]["Config"]] == ["10.10.0.0/24"], on_b["IPAM"]
    assert on_b["Options"].get("pynet.overlay") == "demo", on_b["Options"]

    run(a, cleanup, "a1", network="demo")
    run(b, cleanup, "b1", network="demo")
    ip_a, ip_b = a.container_ip("a1", "demo"), b.container_ip("b1", "demo")
    subnet = ipaddress.ip_network("10.10.0.0/24")
    assert ip_a != ip_b and {ipaddress.ip_address(ip_a), ipaddress.ip_address(ip_b)} <= set(subnet.hosts())
    for h, c in ((a, "a1"), (b, "b1")):
        eth0 = h.docker("exec", c, "ip", "link", "show", "eth0").stdout
        assert "mtu 1450" in eth0, f"{c} on {h.name}: overlay MTU should be 1500 - 50:\n{eth0}"

    assert_ping(b, "b1", ip_a, 1400, wait=PROPAGATE_S)
    assert_ping(a, "a1", ip_b, 1400, wait=PROPAGATE_S)
    for size in (1400, 1422):  # 1422 + 28 = 1450: a packet of exactly the overlay MTU
        assert_ping(b, "b1", ip_a, size)
        assert_ping(a, "a1", ip_b, size)

    # The gateway is the same IP and MAC on every host ...
    for h, c in ((a, "a1"), (b, "b1")):
        assert_ping(h, c, "10.10.0.1")
    gw_macs = {h.name: gateway_mac_seen_by(h, c, "10.10.0.1") for h, c in ((a, "a1"), (b, "b1"))}
    assert len(set(gw_macs.values())) == 1, f"gateway MAC differs between hosts: {gw_macs}"
    # ... and answers locally: still there with b cut off the underlay.
    cl.remove_host_link(b)
    try:
        assert_ping(b, "b1", "10.10.0.1")
    finally:
        cl.restore_host_link(b)

    # Kernel objects: bridge + VXLAN (learning off), static FDB and neighbour entries for the remote side.
    for h, other, other_c, other_ip in ((a, b, "b1", ip_b), (b, a, "a1", ip_a)):
        bridge, vxlan = kernel_names(h, "demo")
        assert {bridge, vxlan} <= set(h.links()), f"host {h.name}: {h.links()}"
        details = h.ns_exec("ip", "-d", "link", "show", vxlan).stdout
        assert "vxlan id" in details and "nolearning" in details, details
        assert "10.10.0.1/24" in h.ns_exec("ip", "addr", "show", bridge).stdout
        other_mac = mac_of(other, other_c, "demo")
        assert has_fdb(h, vxlan, other_mac, cl.vtep(other)), \
            f"host {h.name}: no FDB {other_mac} dst {cl.vtep(other)}:\n{fdb(h, vxlan)}"
        assert has_neigh(h, vxlan, other_ip, other_mac), f"host {h.name}: no neighbour {other_ip}:\n{neigh(h, vxlan)}"

    # `docker network rm` on a removes the overlay from the cluster once no container uses it.
    names_b = kernel_names(b, "demo")
    names_a = kernel_names(a, "demo")
    a.docker("rm", "-f", "a1")
    b.docker("rm", "-f", "b1")
    a.docker("network", "rm", "demo")
    assert wait_for_network(b, "demo", present=False), f"`demo` still on host b {APPEAR_S}s after rm on a"
    for h, names in ((a, names_a), (b, names_b)):
        gone = wait_until(lambda: not set(names) & set(h.links()), 5)
        assert gone, f"host {h.name} kept {set(names) & set(h.links())} after `demo` went away"


def test_same_overlay_created_by_hand_on_another_host_joins_it(cluster, cleanup):
    """The same command on both hosts gives one network. (pynet on b may create b's copy itself
    first; then the second `hand` is refused -- by dockerd, by name, or by pynet's IPAM when both creates
    are in flight at once -- which is fine: the end state is the same.)"""
    cl = cluster
    a, b = cl.hosts
    own_overlay(cleanup, cl, "hand")
    overlay_create(a, "hand", "10.11.0.0/24")
    by_hand = overlay_create(b, "hand", "10.11.0.0/24", check=False)
    refused = ("already exists", "pool 10.11.0.0/24 is already in use on this host")
    assert by_hand.returncode == 0 or any(r in by_hand.stderr for r in refused), by_hand.stderr
    print("b's copy created", "by hand" if by_hand.returncode == 0 else "by pynet (hand create refused by name)")
    assert wait_for_network(b, "hand")
    assert [c["Subnet"] for c in inspect_network(b, "hand")["IPAM"]["Config"]] == ["10.11.0.0/24"]

    run(a, cleanup, "ha", network="hand")
    run(b, cleanup, "hb", network="hand")
    ip_a, ip_b = a.container_ip("ha", "hand"), b.container_ip("hb", "hand")
    assert ip_a != ip_b
    assert_ping(a, "ha", ip_b, wait=PROPAGATE_S)
    assert_ping(b, "hb", ip_a, wait=PROPAGATE_S)
    vnis = {h.name: re.search(r"vxlan id (\d+)", h.ns_exec("ip", "-d", "link", "show", kernel_names(h, "hand")[1])
                              .stdout).group(1) for h in (a, b)}
    assert len(set(vnis.values())) == 1, f"one overlay, one VNI: {vnis}"


def test_conflicting_subnet_for_an_existing_overlay_is_refused(cluster, cleanup):
    cl = cluster
    a, b = cl.hosts
    own_overlay(cleanup, cl, "clash")
    own_overlay(cleanup, cl, "clash2")
    overlay_create(a, "clash", "10.12.0.0/24")
    for h in (b, a):
        with pytest.raises(CommandError) as err:
            overlay_create(h, "clash2", "10.12.128.0/24", "clash")
        assert re.search(r"\bclash\b", err.value.stderr), f"the error should name overlay 'clash': {err.value.stderr}"
        assert "clash2" not in network_names(h)
    # the overlay itself is unharmed
    assert wait_for_network(b, "clash")
    assert [c["Subnet"] for c in inspect_network(b, "clash")["IPAM"]["Config"]] == ["10.12.0.0/24"]


def test_concurrent_allocation_across_hosts_gives_unique_addresses(cluster, cleanup):
    cl = cluster
    a, b = cl.hosts
    per_host, threads_per_host = 100, 4
    own_overlay(cleanup, cl, "many")
    overlay_create(a, "many", "10.13.0.0/24")
    assert wait_for_network(b, "many")
    names = {h: [f"m{h.name}{i:03d}" for i in range(per_host)] for h in (a, b)}
    errors: list[str] = []

    def start(h: DockerHost, chunk: list[str]) -> None:
        for n in chunk:
            p = h.docker("run", "-d", "--name", n, "--network", "many", IMG, "sleep", "1d", check=False, timeout=180)
            if p.returncode != 0:
                errors.append(f"{h.name}/{n}: {p.stderr.strip()}")

    try:
        t0 = time.monotonic()
        workers = [threading.Thread(target=start, args=(h, ns[i::threads_per_host]))
                   for h, ns in names.items() for i in range(threads_per_host)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        took = time.monotonic() - t0
        print(f"{2 * per_host} containers started in {took:.1f}s")
        assert not errors, f"{len(errors)} of {2 * per_host} starts failed in {took:.0f}s, e.g.:\n" + \
            "\n".join(errors[:5])
        ips: dict[str, str] = {}
        for h, ns in names.items():
            out = h.docker("inspect", "-f", '{{.Name}} {{(index .NetworkSettings.Networks "many").IPAddress}}',
                           *ns).stdout
            for line in out.splitlines():
                n, ip = line.split()
                ips[n.lstrip("/")] = ip
        by_ip: dict[str, list[str]] = {}
        for n, ip in ips.items():
            by_ip.setdefault(ip, []).append(n)
        dupes = {ip: ns for ip, ns in by_ip.items() if len(ns) > 1}
        assert not dupes, f"addresses handed out twice: {dupes}"
        assert len(by_ip) == 2 * per_host
        subnet = ipaddress.ip_network("10.13.0.0/24")
        bad = [ip for ip in by_ip if ipaddress.ip_address(ip) not in subnet or ip == "10.13.0.1"]
        assert not bad, f"outside the pool or the gateway: {bad}"

        rnd = random.Random(4)
        for h, other in ((a, b), (b, a)):
            src = names[h][0]
            for target in rnd.sample(names[other], 5):
                assert_ping(h, src, ips[target], wait=PROPAGATE_S)
    finally:
        t0 = time.monotonic()
        ts = [threading.Thread(target=rm_containers_fast, args=(h, ns)) for h, ns in names.items()]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"removed in {time.monotonic() - t0:.1f}s")


def test_pynet_restart_keeps_endpoints_and_peers(cluster, cleanup):
    cl = cluster
    a, b = cl.hosts
    ip_a, ip_b = overlay_pair(cl, cleanup, "rst", "10.14.0.0/24", "ra", "rb")
    mac_b = mac_of(b, "rb", "rst")
    vxlan_a = kernel_names(a, "rst")[1]

    cl.restart_pynet(b, signal.SIGKILL)
    t0 = time.monotonic()
    assert b.container_ip("rb", "rst") == ip_b
    assert_ping(a, "ra", ip_b, wait=PROPAGATE_S)
    assert_ping(b, "rb", ip_a, wait=PROPAGATE_S)
    run(b, cleanup, "rb2", network="rst")  # b's allocations survived: the newcomer gets a free address
    ip_b2 = b.container_ip("rb2", "rst")
    assert ip_b2 not in (ip_a, ip_b)
    assert_ping(a, "ra", ip_b2, wait=PROPAGATE_S)

    # The killed process's lease expires after the TTL; b's entries must stay on a all the same.
    time.sleep(max(0.0, cl.lease_ttl + 3 - (time.monotonic() - t0)))
    assert has_fdb(a, vxlan_a, mac_b, cl.vtep(b)), f"a lost b's FDB entry after b's restart:\n{fdb(a, vxlan_a)}"
    assert has_neigh(a, vxlan_a, ip_b, mac_b), neigh(a, vxlan_a)
    assert_ping(a, "ra", ip_b)
    assert_ping(a, "ra", ip_b2)


def test_etcd_outage_fails_new_starts_fast_and_keeps_traffic(cluster, cleanup):
    cl = cluster
    a, b = cl.hosts
    ip_a, ip_b = overlay_pair(cl, cleanup, "outage", "10.15.0.0/24", "ea", "eb")
    # a steady ping across the whole outage: 75 × 0.2 s
    a.docker("exec", "-d", "ea", "sh", "-c", f"ping -i 0.2 -c 75 {ip_b} > /tmp/ping.log 2>&1")

    cl.etcd.stop()
    try:
        assert_ping(a, "ea", ip_b)
        assert_ping(b, "eb", ip_a)
        cleanup.container("ea2", host=a)
        t0 = time.monotonic()
        p = a.docker("run", "-d", "--name", "ea2", "--network", "outage", IMG, "sleep", "1d", check=False, timeout=60)
        took = time.monotonic() - t0
        a.docker("rm", "-f", "ea2", check=False)
        print(f"docker run during the outage: rc={p.returncode} after {took:.2f}s: {p.stderr.strip()}")
        assert p.returncode != 0, "a container started on an overlay while etcd was down"
        assert "etcd" in p.stderr.lower(), f"the error should mention etcd: {p.stderr.strip()}"
        assert took < 10, f"docker run took {took:.1f}s to fail (goal: well under dockerd's 15 s plugin timeout)"
    finally:
        cl.etcd.start()

    done = wait_until(lambda: "packets transmitted" in a.docker("exec", "ea", "cat", "/tmp/ping.log").stdout, 25, 0.5)
    log = a.docker("exec", "ea", "cat", "/tmp/ping.log").stdout
    assert done and " 0% packet loss" in log, f"traffic between existing containers was disturbed:\n{log}"

    # pynet catches up: a new container on a starts and b reaches it.
    cleanup.container("ea3", host=a)

    def start_ea3() -> bool:
        p = a.docker("run", "-d", "--name", "ea3", "--network", "outage", IMG, "sleep", "1d", check=False)
        if p.returncode != 0:
            a.docker("rm", "-f", "ea3", check=False)
            start_ea3.last = p.stderr.strip()
        return p.returncode == 0

    start_ea3.last = ""
    assert wait_until(start_ea3, 10, 0.5), f"no container start on the overlay 10 s after etcd returned: " \
                                           f"{start_ea3.last}"
    assert_ping(b, "eb", a.container_ip("ea3", "outage"), wait=PROPAGATE_S)


def test_host_leaving_its_entries_vanish_after_the_lease_ttl(make_cluster):
    ttl = 4
    # the grace period (test_partition.py) set just above the lease: entries go ttl + 1 s after c vanished
    cl = make_cluster(n=3, lease_ttl=ttl, pynet_args=["--grace-period", str(ttl + 1)])
    a, b, c = cl.hosts
    overlay_create(a, "leave", "10.16.0.0/24")
    for h in (b, c):
        assert wait_for_network(h, "leave"), f"`leave` did not appear on host {h.name}"
    containers = {}
    for h in cl.hosts:
        name = f"l{h.name}"
        h.docker("run", "-d", "--name", name, "--network", "leave", IMG, "sleep", "1d")
        containers[h] = (name, h.container_ip(name, "leave"), mac_of(h, name, "leave"))
    _, ip_c, mac_c = containers[c]
    vxlans = {h: kernel_names(h, "leave")[1] for h in (a, b)}
    for h in (a, b):
        present = wait_until(lambda: has_fdb(h, vxlans[h], mac_c, cl.vtep(c)) and has_neigh(h, vxlans[h], ip_c, mac_c),
                             PROPAGATE_S)
        assert present, f"host {h.name} has no entries for c's container:\n{fdb(h, vxlans[h])}\n{neigh(h, vxlans[h])}"
    assert_ping(a, "la", ip_c, wait=PROPAGATE_S)

    try:
        c.kill_pynet(signal.SIGKILL)
        cl.remove_host_link(c)
        t0 = time.monotonic()
        gone = wait_until(lambda: not any(has_any_fdb(h, vxlans[h], mac_c) or has_neigh(h, vxlans[h], ip_c)
                                          for h in (a, b)),
                          ttl + 6, 0.25)
        took = time.monotonic() - t0
        print(f"c's entries gone from a and b after {took:.1f}s (lease TTL {ttl}s)")
        assert gone, f"c's entries still on a/b {took:.0f}s after c vanished (lease TTL {ttl}s):\n" + \
            "\n".join(f"{h.name}: {fdb(h, vxlans[h])}{neigh(h, vxlans[h])}" for h in (a, b))
        # a <-> b unaffected
        (_, ip_a, _), (_, ip_b, mac_b) = containers[a], containers[b]
        assert_ping(a, "la", ip_b)
        assert_ping(b, "lb", ip_a)
        assert has_fdb(a, vxlans[a], mac_b, cl.vtep(b))
    finally:
        # c back on the underlay with pynet, so its dockerd can remove its container at teardown
        cl.restore_host_link(c)
        cl.start_pynet(c)


def pynet_health(host: DockerHost) -> dict:
    """``POST /Pynet.Health`` on the host's pynet socket."""
    from pynet import unixhttp

    status, raw = unixhttp.request(unixhttp.UnixConnection(str(host.pynet_socket), 10), "POST", "/Pynet.Health", {})
    assert status == 200, raw
    return json.loads(raw)


def test_a_bad_record_in_etcd_is_skipped_and_counted_and_the_rest_still_works(cluster, cleanup):
    """Records written by someone else are validated on read: a hostile advert (a multicast MAC for an
    address of the overlay) and a value that is not JSON never reach the kernel, stop nothing after
    them, and show in /Pynet.Health."""
    cl = cluster
    a, b = cl.hosts
    ip_a, _ = overlay_pair(cl, cleanup, "recs", "10.17.0.0/24", "ra1", "rb1")
    vxlan_b = kernel_names(b, "recs")[1]
    stranger = "5" * 12
    hostile = {"overlay": "recs", "host": stranger, "endpoint": "6" * 64, "mac": "01:00:5e:00:00:01",
               "vtep": "192.0.2.99", "ips": [ip_a]}
    cl.etcdctl("put", f"/pynet/v1/cluster/endpoints/recs/{stranger}/{'6' * 64}", json.dumps(hostile))
    cl.etcdctl("put", f"/pynet/v1/cluster/endpoints/recs/{stranger}/{'7' * 64}", "{not json")
    # a container started after the bad records is programmed everywhere as usual
    run(a, cleanup, "ra2", network="recs")
    ip_a2 = a.container_ip("ra2", "recs")
    assert_ping(b, "rb1", ip_a2, wait=PROPAGATE_S)
    assert_ping(b, "rb1", ip_a)  # the hostile advert did not take ra1's address over
    assert "01:00:5e:00:00:01" not in fdb(b, vxlan_b) and "192.0.2.99" not in fdb(b, vxlan_b)
    refused = wait_until(lambda: pynet_health(b)["rejected"].get("endpoints", {}).get("count", 0) >= 2, 5)
    assert refused, pynet_health(b)
    reasons = {r["reason"] for r in pynet_health(b)["rejected"]["endpoints"]["last"]}
    assert any("not a unicast MAC" in r for r in reasons) and any("not JSON" in r for r in reasons), reasons
    loops = pynet_health(b)["loops"]
    assert {"watch", "lease", "reconciler", "docker-sync", "startup"} <= set(loops), loops
    assert all(state["restarts"] == 0 for state in loops.values()), loops
    cl.etcdctl("del", "--prefix", f"/pynet/v1/cluster/endpoints/recs/{stranger}/")
