"""Cut off from etcd, not from peers (issue 11 item 7), on a 2-host Cluster of real dockerds.

Host a loses etcd for 20 s -- iptables in a's netns drops everything to and from etcd's underlay address
(192.0.2.10), while the VXLAN underlay between a and b keeps working -- and a container on a pings a
container on b every 100 ms throughout.  Leases are 5 s, so a's lease ends early in the cut and etcd
deletes its key and adverts; b must keep a's entries (the grace period, 30 s here), and when a is back
it re-registers on a new lease and nothing on the data plane changes: zero packets lost.  The second
test checks that a container removed on a live host still leaves b's tables at once (its advert is
withdrawn with a tombstone, not left to the grace); the last runs the same cut with a grace (6 s)
shorter than the cut on the observer b: b removes a's entries at about 6 s, packets are lost, and the
entries come back once a is back -- so the first test measures the grace, not a cut too short to matter.
"""

from __future__ import annotations

import re
import time

import pytest

from pynet.lab.cluster import ETCD_ADDRESS, Cluster
from pynet.lab.wait import wait_until
from tests.e2e.helpers import assert_ping, run
from tests.e2e.test_overlay import (PROPAGATE_S, fdb, has_any_fdb, has_fdb, has_neigh, kernel_names, mac_of,
                                    overlay_pair)

pytestmark = pytest.mark.e2e

LEASE_TTL = 5
GRACE = 30
SHORT_GRACE = 6  # > LEASE_TTL (pynet refuses less), < CUT
CUT = 20.0
INTERVAL = 0.1  # ping interval (busybox ping takes fractions)
BEFORE, AFTER = 3.0, 9.0  # seconds of pinging before the cut and after it heals


@pytest.fixture(scope="module")
def partition_cluster(e2e_workdir):
    cl = Cluster(e2e_workdir / "partition", n=2, lease_ttl=LEASE_TTL, pynet_args=["--grace-period", str(GRACE)])
    cl.start()
    yield cl
    for h in cl.hosts:
        heal(h)
    cl.stop()


FILTER = [("OUTPUT", "-d"), ("INPUT", "-s")]


def cut(host) -> None:
    """Drop everything between ``host`` and etcd, in the host's own netns (the underlay stays up)."""
    for chain, direction in FILTER:
        host.ns_exec("iptables", "-w", "5", "-I", chain, "1", direction, ETCD_ADDRESS, "-j", "DROP")


def heal(host) -> None:
    """Remove the rules ``cut`` added (every copy; none is fine)."""
    for chain, direction in FILTER:
        rule = [chain, direction, ETCD_ADDRESS, "-j", "DROP"]
        while host.ns_exec("iptables", "-w", "5", "-C", *rule, check=False).returncode == 0:
            host.ns_exec("iptables", "-w", "5", "-D", *rule)


def adverts(cl: Cluster, overlay: str) -> list[str]:
    keys = cl.etcdctl("get", "--prefix", "--keys-only", f"/pynet/v1/cluster/endpoints/{overlay}/").stdout
    return [k for k in keys.split() if k]


def ping_through_a_cut(cl: Cluster, overlay: str, src: str, dst_ip: str, watch) -> tuple[str, list]:
    """Ping ``dst_ip`` from container ``src`` on a every INTERVAL while a is cut off from etcd for CUT
    seconds; returns busybox ping's output and what ``watch()`` returned every 0.5 s during the cut."""
    a = cl.hosts[0]
    count = int((BEFORE + CUT + AFTER) / INTERVAL)
    a.docker("exec", "-d", src, "sh", "-c", f"ping -i {INTERVAL} -c {count} {dst_ip} > /tmp/ping.log 2>&1")
    time.sleep(BEFORE)
    seen = []
    cut(a)
    try:
        end = time.monotonic() + CUT
        while time.monotonic() < end:
            seen.append(watch())
            time.sleep(0.5)
    finally:
        heal(a)
    done = wait_until(lambda: "packets transmitted" in a.docker("exec", src, "cat", "/tmp/ping.log").stdout,
                      AFTER + 15, 0.5)
    log = a.docker("exec", src, "cat", "/tmp/ping.log").stdout
    assert done, f"ping did not finish:\n{log[-500:]}"
    return log, seen


def loss(log: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", log)
    assert m, log[-500:]
    return int(m.group(1)), int(m.group(2))


def test_a_20s_etcd_partition_of_one_host_loses_no_packet(partition_cluster, cleanup):
    cl = partition_cluster
    a, b = cl.hosts
    ip_a, ip_b = overlay_pair(cl, cleanup, "part", "10.31.0.0/24", "pa", "pb")
    mac_a, vxlan_b = mac_of(a, "pa", "part"), kernel_names(b, "part")[1]
    mac_b, vxlan_a = mac_of(b, "pb", "part"), kernel_names(a, "part")[1]
    assert_ping(b, "pb", ip_a, wait=PROPAGATE_S)
    assert len(adverts(cl, "part")) == 2

    def watch():
        return (len(adverts(cl, "part")),  # etcd is reached from the underlay, not from a
                has_fdb(b, vxlan_b, mac_a, cl.vtep(a)) and has_neigh(b, vxlan_b, ip_a, mac_a),
                has_fdb(a, vxlan_a, mac_b, cl.vtep(b)) and has_neigh(a, vxlan_a, ip_b, mac_b))

    log, seen = ping_through_a_cut(cl, "part", "pa", ip_b, watch)
    sent, received = loss(log)
    print(f"{CUT:.0f} s etcd partition of a, grace {GRACE} s, lease {LEASE_TTL} s: "
          f"{sent} sent, {received} received, {sent - received} lost")
    # the cut really ended a's lease (etcd deleted its advert), or this test would prove nothing
    assert any(n == 1 for n, _, _ in seen), f"a's lease never expired during the cut: {seen}"
    assert all(on_b for _, on_b, _ in seen), f"b dropped a's entries during the grace: {seen}"
    assert all(on_a for _, _, on_a in seen), f"a flushed its own tables while etcd was away: {seen}"
    assert sent == received, f"packets lost through the partition:\n{log[-300:]}"
    # a is back: re-registered and re-advertised on a new lease
    assert wait_until(lambda: len(adverts(cl, "part")) == 2, 10, 0.5), adverts(cl, "part")
    assert_ping(b, "pb", ip_a)


def test_a_container_removed_on_a_live_host_leaves_the_peers_at_once_not_after_the_grace(partition_cluster,
                                                                                      cleanup):
    cl = partition_cluster
    a, b = cl.hosts
    overlay_pair(cl, cleanup, "part1", "10.33.0.0/24", "ra", "rb")
    run(a, cleanup, "ra2", network="part1")
    mac, ip = mac_of(a, "ra2", "part1"), a.container_ip("ra2", "part1")
    vxlan_b = kernel_names(b, "part1")[1]
    assert wait_until(lambda: has_fdb(b, vxlan_b, mac, cl.vtep(a)), PROPAGATE_S, 0.25), fdb(b, vxlan_b)
    a.docker("rm", "-f", "ra2")
    t0 = time.monotonic()
    gone = wait_until(lambda: not has_any_fdb(b, vxlan_b, mac) and not has_neigh(b, vxlan_b, ip), PROPAGATE_S, 0.1)
    took = time.monotonic() - t0
    print(f"a removed container left b's tables after {took:.2f} s (grace {GRACE} s)")
    assert gone, f"b kept the entries of a container removed on a for {took:.0f} s:\n{fdb(b, vxlan_b)}"


def test_with_a_grace_shorter_than_the_cut_the_same_partition_loses_packets(partition_cluster, cleanup):
    cl = partition_cluster
    a, b = cl.hosts
    cl.extra_pynet_args = ["--grace-period", str(SHORT_GRACE)]
    cl.restart_pynet(b)  # the observer's setting decides when a's containers leave b's tables
    ip_a, ip_b = overlay_pair(cl, cleanup, "part2", "10.32.0.0/24", "qa", "qb")
    mac_a, vxlan_b = mac_of(a, "qa", "part2"), kernel_names(b, "part2")[1]
    assert_ping(b, "qb", ip_a, wait=PROPAGATE_S)

    def watch():
        return has_fdb(b, vxlan_b, mac_a, cl.vtep(a))

    log, seen = ping_through_a_cut(cl, "part2", "qa", ip_b, watch)
    sent, received = loss(log)
    print(f"{CUT:.0f} s etcd partition of a, grace {SHORT_GRACE} s on b: {sent} sent, {received} received, "
          f"{sent - received} lost")
    assert not all(seen), "b kept a's entries through a cut longer than its grace"
    assert seen[0], "b dropped a's entries at once, not after the grace"
    assert received < sent, f"no packet lost although b dropped a's entries:\n{log[-300:]}"
    # a back: it re-advertises, b programs its entries again
    assert wait_until(lambda: has_fdb(b, vxlan_b, mac_a, cl.vtep(a)), 10, 0.5)
    assert_ping(b, "qb", ip_a, wait=PROPAGATE_S)
