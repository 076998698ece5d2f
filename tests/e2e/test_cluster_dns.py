"""Names across hosts (issue 13): pynet's cluster resolver, black-box, on two real dockerds.

Every test dockerd has ``{"dns": ["169.254.53.53"]}`` in its daemon.json, as the README tells users to
set; pynet forwards other names to an upstream resolver the test runs on the underlay (192.0.2.10,
lab/dnsupstream.py), named by ``--dns-resolv-conf``.  Docker's embedded resolver answers local names
itself and forwards the rest from the container's namespace, so a name of a container on the *other*
host is pynet's to answer: that is what these tests ask for.

Scene (built once for the module): overlay ``dnsa`` with ``api`` (alias ``backend``) and ``api2`` (alias
``backend``) on host a and ``worker`` on host b; overlay ``dnsb`` with ``outsider`` on host b; ``--internal``
overlay ``dnsi`` with ``inner1`` on a and ``inner2`` on b.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from pynet.lab.cluster import Cluster
from pynet.lab.dnsupstream import UpstreamDns
from pynet.lab.wait import wait_until
from tests.e2e.conftest import CLUSTER_LEASE_TTL, Cleanup, _require_etcd
from tests.e2e.helpers import assert_ping, run
from tests.e2e.test_overlay import overlay_create, pynet_health, wait_for_network

pytestmark = pytest.mark.e2e

DNS = "169.254.53.53"
UPSTREAM = "192.0.2.10"  # the underlay's address (etcd's too)
EXTERNAL = {"www.example.test": "203.0.113.7", "slow.example.test": "silent"}
NAMES_S = 5  # a new container's name reaches the other host within this (1 s Docker poll + etcd)
GONE_S = 3  # a removed container's name stops resolving within this


@pytest.fixture(scope="module")
def dns_cluster(e2e_workdir):
    _require_etcd()
    resolv = e2e_workdir / "dns-resolv.conf"
    resolv.write_text(f"nameserver {UPSTREAM}\n")
    cl = Cluster(e2e_workdir / "dnscl", n=2, lease_ttl=CLUSTER_LEASE_TTL, daemon_config={"dns": [DNS]},
                 pynet_args=["--dns-resolv-conf", str(resolv)])
    upstream = None
    try:
        cl.start()
        upstream = UpstreamDns(cl.underlay.netns, UPSTREAM, EXTERNAL, cl.underlay.logs / "upstream-dns.log")
        yield cl
    finally:
        if upstream is not None:
            upstream.stop()
        cl.stop()
        resolv.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def scene(dns_cluster):
    a, b = dns_cluster.hosts
    cleanup = Cleanup()
    try:
        for name, subnet, *extra in (("dnsa", "10.53.1.0/24"), ("dnsb", "10.53.2.0/24"),
                                     ("dnsi", "10.53.3.0/24", "--internal")):
            for h in dns_cluster.hosts:
                cleanup.network(name, host=h)
            overlay_create(a, name, subnet, None, *extra)
            assert wait_for_network(b, name)
        run(a, cleanup, "api", "--network-alias", "backend", network="dnsa")
        run(a, cleanup, "api2", "--network-alias", "backend", network="dnsa")
        run(b, cleanup, "worker", network="dnsa")
        run(b, cleanup, "outsider", network="dnsb")
        run(a, cleanup, "inner1", network="dnsi")
        run(b, cleanup, "inner2", network="dnsi")
        yield {"api": a.container_ip("api", "dnsa"), "api2": a.container_ip("api2", "dnsa"),
               "worker": b.container_ip("worker", "dnsa"), "inner1": a.container_ip("inner1", "dnsi")}
    finally:
        cleanup.run()


def lookup(host, container: str, name: str, server: str = "") -> list[str]:
    """The IPv4 addresses busybox's nslookup gets for ``name`` in ``container`` (sorted; [] if none)."""
    p = host.docker("exec", container, "nslookup", name, *([server] if server else []), check=False, timeout=30)
    out = p.stdout.split("Name:", 1)[1] if "Name:" in p.stdout else ""
    return sorted(set(re.findall(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b", out)))


def wait_lookup(host, container: str, name: str, want: list[str], seconds: float = NAMES_S,
                server: str = "") -> list[str]:
    return wait_until(lambda: (lookup(host, container, name, server) == sorted(want)) and sorted(want),
                      seconds, 0.3) or lookup(host, container, name, server)


def test_a_container_finds_one_on_the_other_host_by_name_alias_and_name_dot_network(dns_cluster, scene):
    a, b = dns_cluster.hosts
    assert wait_lookup(b, "worker", "api", [scene["api"]]) == [scene["api"]]
    assert_ping(b, "worker", "api", wait=2)
    assert lookup(b, "worker", "api.dnsa") == [scene["api"]]
    both = sorted([scene["api"], scene["api2"]])
    assert wait_lookup(b, "worker", "backend", both) == both  # several carriers: several answers
    # and the other way round: a's containers find b's
    assert wait_lookup(a, "api", "worker", [scene["worker"]]) == [scene["worker"]]
    assert_ping(a, "api", "worker.dnsa", wait=2)


def test_pynet_answers_its_own_names_for_local_and_remote_carriers(dns_cluster, scene):
    """Asked directly, pynet's resolver has every carrier of an alias, on both hosts (Docker, asked first,
    answers a name it knows locally with its local carriers only)."""
    a, _ = dns_cluster.hosts
    both = sorted([scene["api"], scene["api2"]])
    assert wait_lookup(a, "api", "backend", both, server=DNS) == both


def test_a_container_of_another_overlay_gets_no_answer(dns_cluster, scene):
    _, b = dns_cluster.hosts
    assert wait_lookup(b, "worker", "api", [scene["api"]]) == [scene["api"]]  # the names are out there
    assert lookup(b, "outsider", "api") == []
    assert lookup(b, "outsider", "api", server=DNS) == []
    assert lookup(b, "outsider", "backend.dnsa") == []


def test_an_internal_overlay_resolves_through_its_static_route(dns_cluster, scene):
    _, b = dns_cluster.hosts
    routes = b.docker("exec", "inner2", "ip", "route").stdout
    assert f"{DNS} via 10.53.3.1" in routes and "default" not in routes, routes
    assert wait_lookup(b, "inner2", "inner1", [scene["inner1"]]) == [scene["inner1"]]
    assert_ping(b, "inner2", "inner1.dnsi", wait=2)
    assert lookup(b, "inner2", "api") == []  # names of overlays it is not on: none


def test_a_hostile_name_in_etcd_neither_crashes_nor_poisons_the_resolver(dns_cluster, scene):
    """A record someone else wrote, claiming ``api`` for another address with a name that is no DNS name:
    refused whole and counted, ``api`` still answers with its own address only, the DNS loops unharmed."""
    _, b = dns_cluster.hosts
    stranger, eid = "5" * 12, "6" * 64
    key = f"/pynet/v1/cluster/endpoints/dnsa/{stranger}/{eid}"
    hostile = {"overlay": "dnsa", "host": stranger, "endpoint": eid, "mac": "02:00:00:00:66:66",
               "vtep": "192.0.2.99", "ips": ["10.53.1.250"], "names": ["api", "evil\n.api"]}
    dns_cluster.etcdctl("put", key, json.dumps(hostile))
    try:
        refused = wait_until(lambda: any("not a lower-case DNS name" in r["reason"] for r in
                                         pynet_health(b)["rejected"].get("endpoints", {}).get("last", [])), 5)
        assert refused, pynet_health(b)
        assert lookup(b, "worker", "api") == [scene["api"]]
        assert lookup(b, "worker", "api", server=DNS) == [scene["api"]]
        loops = pynet_health(b)["loops"]
        assert {"dns-udp", "dns-tcp", "dns-names", "dns-address"} <= set(loops), loops
        assert all(loops[n]["restarts"] == 0 and not loops[n]["consecutive_failures"]
                   for n in ("dns-udp", "dns-tcp", "dns-address")), loops
    finally:
        dns_cluster.etcdctl("del", key)


def test_external_names_are_forwarded_with_their_answer(dns_cluster, scene):
    _, b = dns_cluster.hosts
    assert lookup(b, "worker", "www.example.test") == ["203.0.113.7"]
    p = b.docker("exec", "worker", "nslookup", "nowhere.example.test", check=False, timeout=30)
    assert p.returncode != 0 and "NXDOMAIN" in (p.stdout + p.stderr)
    started = time.monotonic()
    p = b.docker("exec", "worker", "nslookup", "slow.example.test", DNS, check=False, timeout=60)
    assert p.returncode != 0 and time.monotonic() - started > 1.5  # no answer: the client timed out


def test_pynet_restarted_keeps_answering(dns_cluster, scene):
    a, b = dns_cluster.hosts
    assert wait_lookup(b, "worker", "api", [scene["api"]]) == [scene["api"]]
    dns_cluster.restart_pynet(b)  # the resolver's host
    assert wait_lookup(b, "worker", "api", [scene["api"]], seconds=10) == [scene["api"]]
    dns_cluster.restart_pynet(a)  # the names' host: its replay advertises again and keeps the names
    misses = []
    for attempt in range(8):  # ~3 s right after the restart: no gap while a re-advertises
        if lookup(b, "worker", "api") != [scene["api"]]:
            misses.append(attempt)
        time.sleep(0.25)
    assert misses == [], f"lookups of api failed (attempts {misses}) while pynet on a came back"
    assert lookup(b, "worker", "www.example.test") == ["203.0.113.7"]


def test_etcd_down_known_names_keep_resolving(dns_cluster, scene):
    _, b = dns_cluster.hosts
    assert wait_lookup(b, "worker", "api", [scene["api"]]) == [scene["api"]]
    dns_cluster.etcd.stop()
    try:
        time.sleep(2)  # the watch has noticed
        assert lookup(b, "worker", "api") == [scene["api"]]
        assert lookup(b, "worker", "backend.dnsa") == sorted([scene["api"], scene["api2"]])
    finally:
        dns_cluster.etcd.start()


def test_a_name_disappears_after_docker_rm_on_its_host(dns_cluster, scene):
    a, b = dns_cluster.hosts
    both = sorted([scene["api"], scene["api2"]])
    assert wait_lookup(b, "worker", "backend", both, seconds=15) == both  # (etcd may just be back)
    a.docker("rm", "-f", "api2")
    started = time.monotonic()
    assert wait_lookup(b, "worker", "backend", [scene["api"]], seconds=GONE_S) == [scene["api"]]
    assert lookup(b, "worker", "api2") == []
    print(f"name gone on the other host after {time.monotonic() - started:.2f} s")
