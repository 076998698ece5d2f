#!/usr/bin/env python3
"""Cluster DNS: lookup latency of a cross-host name through pynet vs a local name through Docker's own
resolver, and the queries per second pynet's resolver sustains, in one run.

    cd /work/main && /work/venv/bin/python -m bench.dns [--quick]     (root; ~1.5 min, --quick ~1 min)

Also a section of ``bench/run.py`` (after the overlay). Two Docker hosts on one underlay (lab/cluster.py),
both dockerds with ``{"dns": ["169.254.53.53"]}`` in daemon.json and ``pynet serve --etcd ...
--log-level info``; overlay ``dbench`` (10.79.0.0/24) with ``target`` on A, ``client`` and ``neighbour``
on B.  The probe (bench/dns_probe.py, dnspython) runs in ``client``'s network namespace (nsenter), so it
asks exactly what a program in the container asks, without ``docker exec``'s cost in the figures:

* cross-host  ``target`` from ``client`` through Docker's embedded resolver (127.0.0.11), which does not
              know it and forwards it to pynet on 169.254.53.53, which answers from the cluster's names;
* local       ``neighbour`` from ``client`` through 127.0.0.11: Docker answers it itself (the baseline);
* direct      ``target`` asked of 169.254.53.53 itself (pynet alone, without Docker's hop);
* qps         ``target`` asked of 169.254.53.53 with WINDOW queries in flight for SECONDS: answers/s.

Latency: one query at a time, rounds alternating the three kinds; p50 and p99 of every lookup.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stats import summary  # noqa: E402
from pynet.lab.cluster import Cluster, etcd_missing  # noqa: E402
from pynet.lab.dnsupstream import UpstreamDns  # noqa: E402
from pynet.lab.proc import binary, install_signal_handlers, prerequisites_missing  # noqa: E402
from pynet.lab.wait import wait_until  # noqa: E402

RESULTS = REPO / "bench" / "results"
DNS = "169.254.53.53"
DOCKER_DNS = "127.0.0.11"
UPSTREAM = "192.0.2.10"
NETWORK, SUBNET = "dbench", "10.79.0.0/24"
PYNET_ARGS = ("--log-level", "info")
KINDS = {"cross_host_via_docker": (DOCKER_DNS, "target"), "local_via_docker": (DOCKER_DNS, "neighbour"),
         "cross_host_direct": (DNS, "target")}


@dataclass(frozen=True)
class DnsPlan:
    rounds: int
    per_round: int
    qps_seconds: float
    windows: tuple[int, ...]


FULL = DnsPlan(rounds=5, per_round=400, qps_seconds=5.0, windows=(1, 16, 64))
QUICK = DnsPlan(rounds=3, per_round=150, qps_seconds=3.0, windows=(16,))


def _probe(pid: int, *args) -> dict:
    argv = [binary("nsenter"), f"--net=/proc/{pid}/ns/net", sys.executable, "-m", "bench.dns_probe", *map(str, args)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"dns probe {args}: {p.stderr.strip()[-400:]}")
    return json.loads(p.stdout)


def _setup(cluster: Cluster) -> tuple[int, dict]:
    a, b = cluster.hosts
    a.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=overlay",
             "-o", f"pynet.overlay={NETWORK}", "--subnet", SUBNET, NETWORK)
    if not wait_until(lambda: NETWORK in b.docker("network", "ls", "--format", "{{.Name}}").stdout.split(), 15, 0.25):
        raise RuntimeError(f"{NETWORK} did not appear on host b")
    a.docker("run", "-d", "--name", "target", "--network", NETWORK, "busybox:local", "sleep", "1d")
    for name in ("client", "neighbour"):
        b.docker("run", "-d", "--name", name, "--network", NETWORK, "busybox:local", "sleep", "1d")
    pid = int(b.docker("inspect", "-f", "{{.State.Pid}}", "client").stdout.strip())
    ips = {"target": a.container_ip("target", NETWORK), "neighbour": b.container_ip("neighbour", NETWORK)}
    t0 = time.monotonic()
    if not wait_until(lambda: _probe(pid, "latency", DOCKER_DNS, "target", 1)["answers"] == [ips["target"]], 20, 0.2):
        raise RuntimeError("pynet never answered 'target' on host b")
    ips["target_resolvable_after_s"] = time.monotonic() - t0
    return pid, ips


def _teardown(cluster: Cluster) -> None:
    a, b = cluster.hosts
    a.docker("rm", "-f", "target", check=False)
    b.docker("rm", "-f", "client", "neighbour", check=False)
    for h in (a, b):
        for _ in range(20):
            p = h.docker("network", "rm", NETWORK, check=False)
            if p.returncode == 0 or "not found" in p.stderr:
                break
            time.sleep(0.5)


def measure(pid: int, ips: dict, plan: DnsPlan, log=print) -> dict:
    samples: dict[str, list[float]] = {k: [] for k in KINDS}
    failures = {k: 0 for k in KINDS}
    for r in range(plan.rounds):
        order = list(KINDS) if r % 2 == 0 else list(reversed(KINDS))
        for kind in order:
            server, name = KINDS[kind]
            out = _probe(pid, "latency", server, name, plan.per_round)
            want = ips["target" if name == "target" else "neighbour"]
            if out["answers"] != [want]:
                raise RuntimeError(f"{kind}: answered {out['answers']}, not {want}")
            samples[kind] += out["samples_s"]
            failures[kind] += out["failures"]
    latency = {k: {**summary([s * 1000 for s in v]), "unit": "ms", "failures": failures[k]} for k, v in samples.items()}
    log("  dns latency p50/p99 ms: " + ", ".join(f"{k} {v['median']:.3f}/{v['p99']:.3f}" for k, v in latency.items()))
    qps = {}
    for window in plan.windows:
        qps[str(window)] = _probe(pid, "qps", DNS, "target", plan.qps_seconds, window)
        log(f"  dns qps (window {window}): {qps[str(window)]['qps']:.0f}/s")
    return {"latency": latency, "qps": qps}


def dns_section(plan: DnsPlan, workdir: Path, log=print) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {UPSTREAM}\n")
    cluster = Cluster(workdir / "cl", n=2, daemon_config={"dns": [DNS]},
                      pynet_args=(*PYNET_ARGS, "--dns-resolv-conf", str(resolv)))
    res: dict = {"plan": asdict(plan), "loadavg_start": os.getloadavg()[0]}
    upstream = None
    t_start = time.monotonic()
    try:
        log("  dns: starting 2 hosts, etcd, pynet ...")
        cluster.start()
        upstream = UpstreamDns(cluster.underlay.netns, UPSTREAM, {}, cluster.underlay.logs / "upstream-dns.log")
        res["dockerd"] = cluster.hosts[0].docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        try:
            pid, ips = _setup(cluster)
            res["target_resolvable_after_s"] = ips.pop("target_resolvable_after_s")
            res.update(measure(pid, ips, plan, log))
        finally:
            _teardown(cluster)
    finally:
        if upstream is not None:
            upstream.stop()
        cluster.stop()
        resolv.unlink(missing_ok=True)
        try:
            workdir.rmdir()
        except OSError:
            pass
    res["elapsed_s"] = time.monotonic() - t_start
    res["loadavg_end"] = os.getloadavg()[0]
    return res


def missing() -> str | None:
    return prerequisites_missing() or etcd_missing()


def main(argv: list[str] | None = None) -> int:
    from bench.report import render_dns

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 150 lookups, one qps window")
    args = parser.parse_args(argv)
    why = missing()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    install_signal_handlers()
    base = Path(tempfile.mkdtemp(prefix="pn-bench-dns-", dir="/tmp"))
    try:
        section = dns_section(QUICK if args.quick else FULL, base / "w")
    finally:
        try:
            base.rmdir()
        except OSError as exc:
            print(f"bench: {base} left behind: {exc}", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dns.json").write_text(json.dumps({"dns": section}, indent=1) + "\n")
    md = render_dns(section)
    (RESULTS / "dns.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
