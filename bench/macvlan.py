#!/usr/bin/env python3
"""Multi-host macvlan: pynet's cluster-wide macvlan vs Docker's own macvlan driver, side by side in one run.

    cd /work/main && /work/venv/bin/python -m bench.macvlan [--quick] [--rounds N]    (root; ~1 min)

Also a section of ``bench/run.py`` (after the overlay section). Two Docker hosts on one underlay bridge
(lab/cluster.py: each host's ``ul0`` on br-u, etcd on 192.0.2.10), ``ul0`` the parent on both:

* pynet   ``pmv``: ``docker network create -d pynet --ipam-driver pynet -o pynet.mode=macvlan -o parent=ul0
  -o pynet.overlay=mvbench --subnet 10.91.0.0/24`` on A only; pynet creates it on B (time recorded).
* docker  ``dmv``: ``docker network create -d macvlan -o parent=ul0 --subnet 10.92.0.0/24`` on *both* hosts,
  with ``--ip-range 10.92.0.0/25`` on A and ``10.92.0.128/25`` on B: the range split by hand, as Docker's
  host-local IPAM needs.
* docker, range not split (``dnaive``: same subnet on both hosts, no ``--ip-range``; made after ``dmv`` is
  removed, as Docker's macvlan takes one network per parent): ``containers`` containers per host, to count
  the addresses handed out on both hosts -- and the same count on ``pmv``.

Steps: iperf3 TCP container on B → container on A (rounds interleaved, as bench/overlay.py), ping RTT
(busybox ``ping -i 0.01``, 100 echoes) B → A, and whether each host reaches its own container (busybox
ping from the host's netns).  Everything is removed at the end, also on failure; the Cluster removes the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import overlay as ov  # noqa: E402
from bench.stats import summary  # noqa: E402
from pynet.lab.cluster import Cluster  # noqa: E402
from pynet.lab.dockerhost import DockerHost  # noqa: E402
from pynet.lab.proc import install_signal_handlers  # noqa: E402
from pynet.lab.wait import wait_until  # noqa: E402

PARENT = "ul0"
PINGS = 100


@dataclass(frozen=True)
class MacvlanPlan:
    iperf_rounds: int
    iperf_seconds: int
    containers: int  # per host, for the duplicate count


FULL = MacvlanPlan(iperf_rounds=5, iperf_seconds=5, containers=10)
QUICK = MacvlanPlan(iperf_rounds=2, iperf_seconds=3, containers=5)

PYNET = ov.OverlayNet("pynet-macvlan", "pmv", "10.91.0.0/24",
                      ("-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=macvlan", "-o", f"parent={PARENT}",
                       "-o", "pynet.overlay=mvbench", "--subnet", "10.91.0.0/24"))
DOCKER = ov.OverlayNet("docker-macvlan", "dmv", "10.92.0.0/24",
                       ("-d", "macvlan", "-o", f"parent={PARENT}", "--subnet", "10.92.0.0/24"))
DOCKER_RANGES = {"a": "10.92.0.0/25", "b": "10.92.0.128/25"}
NAIVE = ov.OverlayNet("docker-naive", "dnaive", "10.93.0.0/24",
                      ("-d", "macvlan", "-o", f"parent={PARENT}", "--subnet", "10.93.0.0/24"))


def create(a: DockerHost, b: DockerHost) -> dict:
    out = {"pynet-macvlan": ov.create_pynet_network(a, b, PYNET)}
    for h in (a, b):
        h.docker("network", "create", *DOCKER.create_args, "--ip-range", DOCKER_RANGES[h.name], DOCKER.name)
    out["docker-macvlan"] = {"created_by_hand_on": ["a", "b"], "ip_ranges": DOCKER_RANGES}
    return out


def rtt(b: DockerHost, net: ov.OverlayNet, ip: str) -> dict:
    p = b.docker("exec", ov._client(net), "ping", "-c", str(PINGS), "-i", "0.01", "-W", "2", ip, timeout=120)
    times = [float(t) / 1e3 for t in re.findall(r"time=([0-9.]+) ms", p.stdout)]
    return {**summary(times), "lost": PINGS - len(times)}


def host_reaches_own(h: DockerHost, ip: str) -> bool:
    return h.ns_exec("busybox", "ping", "-c2", "-W1", ip, check=False).returncode == 0


def naive_instead_of_split(a: DockerHost, b: DockerHost) -> None:
    """Docker's macvlan takes one network per parent: ``dmv`` (and its containers) go, ``dnaive`` comes."""
    for h in (a, b):
        mine = [c for c in h.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
                if c in (ov._server(DOCKER), ov._client(DOCKER))]
        if mine:
            h.docker("rm", "-f", *mine)
        h.docker("network", "rm", DOCKER.name)
        h.docker("network", "create", *NAIVE.create_args, NAIVE.name)


def duplicates(a: DockerHost, b: DockerHost, net: ov.OverlayNet, n: int) -> dict:
    ips: dict[str, list[str]] = {}
    for h in (a, b):
        names = [f"pnb-mv-dup-{net.label}-{h.name}{i}" for i in range(n)]
        for name in names:
            h.docker("run", "-d", "--name", name, "--network", net.name, "busybox:local", "sleep", "1d")
        ips[h.name] = [h.container_ip(name, net.name) for name in names]
    both = set(ips["a"]) & set(ips["b"])
    return {"per_host": n, "duplicates": len(both), "examples": sorted(both)[:3]}


def remove_all(a: DockerHost, b: DockerHost, n: int) -> list[str]:
    left = []
    for h in (a, b):
        mine = {c for c in h.docker("ps", "-a", "--format", "{{.Names}}", check=False).stdout.split()
                if c.startswith(("pnb-mv-", "pnb-ov-srv-", "pnb-ov-cli-"))}
        if mine:
            h.docker("rm", "-f", *sorted(mine), check=False, timeout=120)
        for net in (DOCKER.name, NAIVE.name):
            h.docker("network", "rm", net, check=False)
    a.docker("network", "rm", PYNET.name, check=False)  # pynet removes B's copy
    for h in (a, b):
        if not wait_until(lambda h=h: not {PYNET.name, DOCKER.name, NAIVE.name}
                          & ov._names(h, "network", "ls", "--format", "{{.Name}}"), 20, 0.5):
            left.append(f"{h.name}: {ov._names(h, 'network', 'ls', '--format', '{{.Name}}')}")
            h.docker("network", "rm", PYNET.name, check=False)
    return left


def macvlan_section(plan: MacvlanPlan, workdir: Path, log=print) -> dict:
    nets = [PYNET, DOCKER]
    t_start = time.monotonic()
    cluster = Cluster(workdir, n=2, iperf=True, pynet=True, pynet_args=ov.PYNET_ARGS)
    res: dict = {"plan": asdict(plan), "loadavg_start": os.getloadavg()[0],
                 "networks": {n.label: {"name": n.name, "subnet": n.subnet, "create": " ".join(n.create_args)}
                              for n in (PYNET, DOCKER, NAIVE)}}
    try:
        log("  macvlan: starting 2 hosts, etcd, pynet ...")
        cluster.start()
        a, b = cluster.hosts
        res["underlay"] = {"a": cluster.vtep(a), "b": cluster.vtep(b), "mtu": ov._underlay_mtu(a), "parent": PARENT}
        res["dockerd"] = a.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        try:
            res["create"] = create(a, b)
            res["throughput"] = ov.throughput(a, b, nets, ov.OverlayPlan(plan.iperf_rounds, plan.iperf_seconds, 0))
            log("  macvlan iperf3: " + ", ".join(f"{k} {v['median']:.2f} Gbit/s" for k, v in res["throughput"].items()))
            res["rtt"] = {}
            for i in range(2):  # interleaved, twice
                for net in ov._interleaved(nets, i):
                    r = rtt(b, net, res["throughput"][net.label]["server_ip"])
                    res["rtt"].setdefault(net.label, []).append(r)
            res["host_reaches_own"] = {net.label: host_reaches_own(a, res["throughput"][net.label]["server_ip"])
                                       for net in nets}
            naive_instead_of_split(a, b)
            res["duplicates"] = {"pynet-macvlan": duplicates(a, b, PYNET, plan.containers),
                                 "docker-naive": duplicates(a, b, NAIVE, plan.containers)}
            log(f"  macvlan rtt: {res['rtt']}; own host: {res['host_reaches_own']}; dup: {res['duplicates']}")
        finally:
            res["cleanup_left"] = remove_all(a, b, plan.containers)
    finally:
        cluster.stop()
    res["elapsed_s"] = time.monotonic() - t_start
    res["loadavg_end"] = os.getloadavg()[0]
    return res


def main(argv: list[str] | None = None) -> int:
    from bench.report import render_macvlan

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args(argv)
    why = ov.missing()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    install_signal_handlers()
    plan = QUICK if args.quick else FULL
    plan = MacvlanPlan(args.rounds or plan.iperf_rounds, plan.iperf_seconds, plan.containers)
    facts = ov._facts(args.quick)
    base = Path(tempfile.mkdtemp(prefix="pn-bench-mv-", dir="/tmp"))
    try:
        section = macvlan_section(plan, base / "cl")
    finally:
        try:
            base.rmdir()
        except OSError as exc:
            print(f"bench: {base} left behind: {exc}", file=sys.stderr)
    facts["loadavg_end"] = os.getloadavg()[0]
    facts["dockerd"] = section.get("dockerd", "?")
    ov.RESULTS.mkdir(parents=True, exist_ok=True)
    (ov.RESULTS / "macvlan.json").write_text(json.dumps({"machine": facts, "macvlan": section}, indent=1) + "\n")
    md = render_macvlan(section, facts)
    (ov.RESULTS / "macvlan.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
