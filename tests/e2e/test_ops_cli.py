"""`pynet status`, `pynet hosts`, `pynet hosts rm`, `pynet doctor` (issue 14, items 1 and 2) against a real
running pynet: a single host, the session's two-host cluster, and a two-host cluster of its own for the
eviction (it stops a host's pynet).  The CLI runs as a user would, in the host's netns, on the socket.
"""

from __future__ import annotations

import json
import time

import pytest

from pynet.lab.proc import pynet_executable
from pynet.lab.wait import wait_until
from tests.e2e.helpers import run

pytestmark = pytest.mark.e2e


def pn(host, *args: str, check: bool = True):
    """``pynet ARGS --socket <host's socket>`` in the host's netns."""
    return host.ns_exec(pynet_executable(), *args, "--socket", str(host.pynet_socket), check=check, timeout=90)


def pn_json(host, *args: str):
    return json.loads(pn(host, *args, "--json").stdout)


def doctor(host, *extra: str) -> tuple[int, dict[str, dict]]:
    p = pn(host, "doctor", "--json", *extra, check=False)
    checks = json.loads(p.stdout)
    return p.returncode, {c["Name"]: c for c in checks}


def overlay(host, name: str, subnet: str):
    return host.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=overlay",
                       "-o", f"pynet.overlay={name}", "--subnet", subnet, name)


# ----------------------------------------------------------------------------------------------- one host
def test_status_and_doctor_single_host(dockerhost, cleanup):
    h = dockerhost
    cleanup.network("opsnet", h)
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.231.0.0/24", "opsnet")
    run(h, cleanup, "ops1", network="opsnet")
    net_id = h.docker("network", "inspect", "-f", "{{.Id}}", "opsnet").stdout.strip()

    status = pn_json(h, "status")
    assert status["Host"]["Mode"] == "single-host"
    assert status["Store"]["Kind"] == "sqlite" and status["Store"]["Reachable"], status["Store"]
    nets = {n["ID"]: n for n in status["Networks"]}
    assert nets[net_id]["Subnets"] == ["10.231.0.0/24"]
    assert [ep["Joined"] for ep in nets[net_id]["Endpoints"]] == [True]
    assert "startup" in status["Health"]["loops"]
    text = pn(h, "status").stdout
    assert net_id[:12] in text and "background loops" in text

    assert pn_json(h, "hosts") == [] and "single-host" in pn(h, "hosts").stdout

    rc, checks = doctor(h)
    for name in ("firewall", "ip_forward", "sqlite", "docker api", "background loops"):
        assert checks[name]["OK"], checks[name]
    assert "udp 4789" not in checks  # no cluster: no peer checks
    assert rc == sum(1 for c in checks.values() if not c["OK"])
    human = pn(h, "doctor", check=False)
    assert "PASS  firewall" in human.stdout and human.returncode == rc


def test_doctor_names_pynets_jump_out_of_place(dockerhost, cleanup):
    """Docker re-inserting its rules in front of pynet's is what the firewall check is for: put a rule
    above pynet's nat POSTROUTING jump (pynet's firewall-order loop moves it back within 10 s)."""
    h = dockerhost
    cleanup.network("opsfw", h)
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.232.0.0/24", "opsfw")
    rule = ("-t", "nat", "-I", "POSTROUTING", "1", "-s", "198.51.100.77/32", "-j", "RETURN")
    h.ns_exec("iptables", *rule)
    try:
        rc, checks = doctor(h)
    finally:
        h.ns_exec("iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "198.51.100.77/32", "-j", "RETURN",
                  check=False)
    assert not checks["firewall"]["OK"]
    assert "POSTROUTING: the jump to PYNET-POSTROUTING is rule 2, not 1" in checks["firewall"]["Detail"]
    assert rc >= 1


# ----------------------------------------------------------------------------------------------- two hosts
def test_status_hosts_doctor_two_hosts(cluster, cleanup):
    a, b = cluster.hosts
    for h in (a, b):
        cleanup.network("opsov", h)
    overlay(a, "opsov", "10.233.0.0/24")
    assert wait_until(lambda: "opsov" in b.docker("network", "ls", "--format", "{{.Name}}").stdout, 15), \
        "the overlay on b"
    run(a, cleanup, "opsa", network="opsov")
    run(b, cleanup, "opsb", network="opsov")
    id_a, id_b = pn_json(a, "status")["Host"]["ID"], pn_json(b, "status")["Host"]["ID"]

    def overlay_seen():
        o = {o["Name"]: o for o in pn_json(a, "status")["Overlays"]}.get("opsov")
        return o if o and {m["ID"]: m["Endpoints"] for m in o["Members"]} == {id_a: 1, id_b: 1} else None

    o = wait_until(overlay_seen, 15)
    assert o, "both members with one endpoint each in a's status"
    assert {m["ID"]: m["State"] for m in o["Members"]} == {id_a: "this host", id_b: "live"}
    status = pn_json(a, "status")
    assert status["Store"]["Kind"] == "etcd" and status["Store"]["Reachable"]
    assert sorted(status["MemberSet"]["VTEPs"]) == sorted([cluster.vtep(a), cluster.vtep(b)])

    hosts = {h["ID"]: h for h in pn_json(a, "hosts")}
    assert hosts[id_b]["VTEP"] == cluster.vtep(b) and hosts[id_b]["State"] == "live"
    assert hosts[id_b]["Version"] and hosts[id_b]["Endpoints"] == 1 and "opsov" in hosts[id_b]["Overlays"]

    rc, checks = doctor(a)
    for name in (f"udp 4789 {id_b}", f"path mtu {id_b}", "kernel tables", "etcd", "docker api"):
        assert checks[name]["OK"], checks[name]
    assert rc == sum(1 for c in checks.values() if not c["OK"])

    # The broken peer: b drops UDP 4789; doctor on a names b (its id and VTEP), and nothing else changed.
    drop = ("INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP")
    b.ns_exec("iptables", "-I", *drop[:1], "1", *drop[1:])
    try:
        rc_broken, broken = doctor(a)
    finally:
        b.ns_exec("iptables", "-D", *drop, check=False)
    check = broken[f"udp 4789 {id_b}"]
    assert not check["OK"] and cluster.vtep(b) in check["Detail"] and id_b in check["Detail"], check
    assert cluster.vtep(b) in check["Fix"]
    assert rc_broken == rc + 1  # exactly that one more failure (the MTU probe is skipped for it)
    rc_again, again = doctor(a)
    assert again[f"udp 4789 {id_b}"]["OK"] and rc_again == rc


# ----------------------------------------------------------------------------------------------- eviction
def test_hosts_rm_dead_host_and_refusal_for_live_one(make_cluster, cleanup):
    cl = make_cluster(n=2, lease_ttl=3)
    a, b = cl.hosts
    for h in (a, b):
        cleanup.network("opsrm", h)
    overlay(a, "opsrm", "10.234.0.0/24")
    assert wait_until(lambda: "opsrm" in b.docker("network", "ls", "--format", "{{.Name}}").stdout, 15), \
        "the overlay on b"
    run(b, cleanup, "opsrmb", network="opsrm")
    ip_b = b.container_ip("opsrmb", "opsrm")
    id_b = pn_json(b, "status")["Host"]["ID"]
    assert wait_until(lambda: {h["ID"]: h for h in pn_json(a, "hosts")}.get(id_b, {}).get("Endpoints") == 1, 15), \
        "b's container in a's hosts"

    refused = pn(a, "hosts", "rm", id_b, check=False)
    assert refused.returncode == 1 and "is live" in refused.stderr and "--force" in refused.stderr
    assert pn(a, "hosts", "rm", "not-a-host", check=False).returncode == 1

    members = f"/pynet/v1/cluster/members/opsrm/{id_b}"
    address = f"/addrs/10.234.0.0_24/{ip_b}"  # in whichever address space dockerd asked for

    def claimed() -> list[str]:
        listing = cl.etcdctl("get", "--prefix", "--keys-only", "/pynet/v1/ipam/").stdout.split()
        return [k for k in listing if k.endswith(address)]

    assert cl.etcdctl("get", "--keys-only", members).stdout.strip() == members
    assert len(claimed()) == 1

    b.kill_pynet()
    assert wait_until(lambda: {h["ID"]: h for h in pn_json(a, "hosts")}.get(id_b, {}).get("State") == "departing", 20), \
        "b's lease to end"
    started = time.monotonic()
    report = pn_json(a, "hosts", "rm", id_b)
    assert report["Memberships"] == ["opsrm"] and report["Addresses"] == [ip_b], report
    assert cl.etcdctl("get", "--keys-only", members).stdout.strip() == ""
    assert claimed() == []
    assert cl.etcdctl("get", "--prefix", "--keys-only", f"/pynet/v1/cluster/hosts/{id_b}").stdout.strip() == ""
    assert time.monotonic() - started < 10
    # b is forgotten by a: no memberships left, and its departing adverts stay only for their grace
    assert wait_until(lambda: "opsrm" not in {h["ID"]: h for h in pn_json(a, "hosts")}.get(
        id_b, {"Overlays": []})["Overlays"], 5), "b's membership still in a's view"
    cl.start_pynet(b)  # the fixture's teardown removes the networks through dockerd
