#!/usr/bin/env python3
"""pynet benchmark: Docker's built-in bridge driver vs pynet, side by side on one private dockerd.

    /work/venv/bin/python bench/run.py [--quick]      (root; ~6 min, --quick ~2.5 min)

One DockerHost (lab/dockerhost.py: a dockerd in a network namespace of its own) serves every
step, with pynet at ``--log-level info`` (its production default):

1. docker run   wall time of ``docker run --rm --network N busybox:local true`` on a bridge network and
                a pynet network, interleaved run by run after warm-up runs: median and p90; ratio pynet/bridge.
2. iperf3       container-to-container TCP throughput (iperf3 -J, end.sum_received) on each network,
                rounds alternating: median Gbit/s; ratio pynet/bridge.
3. net create   ``docker network create`` + ``docker network rm`` wall time, median.
4. plugin       pynet alone, on its unix socket (no dockerd): per-call and per-cycle latency (p50, p99) of
                the endpoint cycle RequestAddress -> CreateEndpoint -> Join -> Leave -> DeleteEndpoint ->
                ReleaseAddress at 1 and 8 concurrent clients, and cycles per second.
5. memory       VmRSS of pynet's gunicorn worker and arbiter at rest and after each batch of endpoint
                cycles (batch 1 = the latency cycles topped up to 1,000); growth from batch 2 on is what a
                leak would show as (a bounded warm-up, e.g. the store's 10,000-event history filling,
                stops growing by batch 3).
6. ports        published ports, bridge vs pynet (bench/ports.py; its own section of the report).
7. profile      pynet restarted behind a timing relay (bench/call_trace.py): which calls one
                ``docker run`` makes to pynet and how long pynet takes for each.
8. overlay      after the single host is gone: two hosts on an underlay with etcd, pynet's overlay vs Docker
                swarm's, cross-host iperf3 and convergence (bench/overlay.py; its own section of the report;
                ``--no-overlay`` skips it, ``python -m bench.overlay`` runs it alone).
9. dns          two hosts again: lookup latency of a cross-host name through pynet's cluster DNS vs a local
                name through Docker's resolver, and pynet's queries per second (bench/dns.py; ``--no-dns``
                skips it, ``python -m bench.dns`` runs it alone).
10. macvlan     two hosts on one underlay bridge again: pynet's cluster-wide macvlan vs Docker's macvlan
                (bench/macvlan.py; ``--no-macvlan`` skips it, ``python -m bench.macvlan`` runs it alone).

Results: bench/results/latest.json (all samples) and bench/results/latest.md (tables for the README).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import docker_timing as dt  # noqa: E402
from bench import plugin_latency as pl  # noqa: E402
from bench import dns as bench_dns  # noqa: E402
from bench import overlay as bench_overlay  # noqa: E402
from bench import ports as bench_ports  # noqa: E402
from bench.call_trace import CallTrace  # noqa: E402
from bench import macvlan as bench_macvlan  # noqa: E402
from bench.report import render, render_dns, render_macvlan, render_overlay  # noqa: E402
from bench.stats import summary  # noqa: E402
from pynet.lab.dockerhost import DockerHost  # noqa: E402
from pynet.lab.proc import install_signal_handlers, prerequisites_missing, tail  # noqa: E402

RESULTS = REPO / "bench" / "results"
PLUGIN_SUBNET = "10.62.0.0/16"  # 65k addresses: the cycles never run out
PYNET_ARGS = ("--log-level", "info")


@dataclass(frozen=True)
class Plan:
    run_reps: int        # docker run, per network
    run_warmup: int
    iperf_rounds: int
    iperf_seconds: int
    netcreate_reps: int
    warmup_cycles: int
    c1_cycles: int
    c8_cycles: int
    mem_batch: int       # cycles per memory batch (the first batch includes the latency cycles)
    mem_batches: int
    trace_runs: int


FULL = Plan(run_reps=30, run_warmup=2, iperf_rounds=7, iperf_seconds=5, netcreate_reps=5,
            warmup_cycles=20, c1_cycles=300, c8_cycles=800, mem_batch=1000, mem_batches=3, trace_runs=10)
QUICK = Plan(run_reps=10, run_warmup=2, iperf_rounds=2, iperf_seconds=2, netcreate_reps=3,
             warmup_cycles=10, c1_cycles=100, c8_cycles=200, mem_batch=300, mem_batches=2, trace_runs=3)


# ------------------------------------------------------------------------------------------------ facts
def _source_version() -> str:
    """The commit measured, and whether pynet's tracked sources differed from it (read-only git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    changed = [f for f in git("diff", "--name-only", "HEAD").splitlines()
               if not f.startswith(("tests/", "bench/", "docs/")) and f.endswith(".py")]
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head} + uncommitted {', '.join(changed)}" if changed else head


def machine_facts(host: DockerHost, plan: Plan, quick: bool) -> dict:
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "dockerd": host.docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
        "storage_driver": host.docker("info", "--format", "{{.Driver}}").stdout.strip(),
        "python": platform.python_version(),
        "pynet_source": _source_version(),
        "loadavg_start": os.getloadavg()[0],
        "pynet_args": " ".join(PYNET_ARGS),
        "mode": "quick" if quick else "full",
        "plan": asdict(plan),
    }


# ------------------------------------------------------------------------------------------------ docker steps
def docker_steps(host: DockerHost, plan: Plan, nets: list[dt.NetSpec]) -> dict:
    runs = dt.docker_run_times(host, nets, plan.run_reps, plan.run_warmup)
    print(f"  docker run: {_medians(runs, 's')}", flush=True)
    gbits = dt.iperf_throughput(host, nets, plan.iperf_rounds, plan.iperf_seconds)
    print(f"  iperf3: {_medians(gbits, 'Gbit/s')}", flush=True)
    netcr = dt.network_create_rm_times(host, dt.scratch_networks(), plan.netcreate_reps)
    paired = [p - b for b, p in zip(runs["bridge"], runs["pynet"])]  # same interleaved slot: drift cancels
    return {
        "docker_run_s": {k: {**summary(v), "samples": v} for k, v in runs.items()},
        "docker_run_paired_diff_s": summary(paired),
        "iperf_gbit_s": {k: {**summary(v), "samples": v, "seconds_per_round": plan.iperf_seconds}
                         for k, v in gbits.items()},
        "network_create_rm_s": {k: {"create": summary(v["create"]), "rm": summary(v["rm"]),
                                    "total": summary([c + r for c, r in zip(v["create"], v["rm"])]),
                                    "samples": v} for k, v in netcr.items()},
    }


def _medians(d: dict[str, list[float]], unit: str) -> str:
    return ", ".join(f"{k} {statistics.median(v):.3f} {unit}" for k, v in d.items())


# ------------------------------------------------------------------------------------------------ plugin steps
def _summarize_run(run: pl.CycleRun) -> dict:
    calls = {name: {"p50_ms": statistics.median(s) * 1e3, "p99_ms": summary(s)["p99"] * 1e3, "n": len(s)}
             for name, s in run.samples.items()}
    return {"concurrency": run.concurrency, "cycles": run.cycles, "wall_s": run.wall_s,
            "cycles_per_s": run.cycles_per_s, "reconnects": run.reconnects, "calls": calls}


def plugin_steps(host: DockerHost, plan: Plan) -> dict:
    sock, root = str(host.pynet_socket), host.pynet_proc.pid
    memory = [pl.memory_snapshot(root, "at rest", 0)]
    admin = pl.PluginClient(sock)
    net = pl.create_network(admin, PLUGIN_SUBNET)
    done = 0

    def cycles(n: int, concurrency: int) -> pl.CycleRun:
        nonlocal done
        run = pl.run_cycles(sock, net, n, concurrency)
        done += n
        return run

    try:
        cycles(plan.warmup_cycles, 1)
        latency = {f"c{c}": _summarize_run(cycles(n, c)) for c, n in ((1, plan.c1_cycles), (8, plan.c8_cycles))}
        for c, s in latency.items():
            print(f"  plugin {c}: cycle p50 {s['calls']['Cycle']['p50_ms']:.1f} ms, "
                  f"{s['cycles_per_s']:.1f} cycles/s", flush=True)
        cycles(max(0, plan.mem_batch - done), 8)  # top up to one full batch
        memory.append(pl.memory_snapshot(root, "after batch 1", done))
        for k in range(2, plan.mem_batches + 1):
            cycles(plan.mem_batch, 8)
            memory.append(pl.memory_snapshot(root, f"after batch {k}", done))
    finally:
        pl.delete_network(admin, net)
        admin.close()
    return {"subnet": PLUGIN_SUBNET, "latency": latency, "memory": memory}


# ------------------------------------------------------------------------------------------------ profile
def profile_step(host: DockerHost, plan: Plan, net: dt.NetSpec) -> dict:
    """pynet restarted behind the timing relay; the calls of ``trace_runs`` docker runs on ``net``."""
    upstream = host.workdir / "pynet-upstream.sock"
    host.kill_pynet()
    relay = CallTrace(host.pynet_socket, upstream).start()
    try:
        # the later --socket wins over the harness's; the relay holds the socket dockerd knows
        host.start_pynet(extra_args=(*PYNET_ARGS, "--socket", str(upstream)))
        pl.wait_for_socket(upstream)
        dt.timed_docker(host, "run", "--rm", "--network", net.name, "busybox:local", "true")  # warm-up
        runs = []
        for _ in range(plan.trace_runs):
            t0 = time.monotonic()
            wall = dt.timed_docker(host, "run", "--rm", "--network", net.name, "busybox:local", "true")
            calls = relay.since(t0)
            runs.append({"wall_s": wall, "calls": [(c.path.lstrip("/"), c.status, c.seconds) for c in calls]})
    finally:
        relay.stop()
    return {"runs": runs, "by_call": _by_call(runs)}


def _by_call(runs: list[dict]) -> dict:
    per: dict[str, list[float]] = {}
    for run in runs:
        for path, _status, seconds in run["calls"]:
            per.setdefault(path, []).append(seconds)
    n = len(runs)
    return {path: {"calls_per_run": len(s) / n, "median_ms": statistics.median(s) * 1e3,
                   "ms_per_run": sum(s) * 1e3 / n} for path, s in per.items()}


# ------------------------------------------------------------------------------------------------ main
def run_all(host: DockerHost, plan: Plan, quick: bool) -> dict:
    print("starting dockerd and pynet ...", flush=True)
    host.start()
    host.load_busybox()
    host.start_pynet(extra_args=PYNET_ARGS)
    pl.PluginClient(str(host.pynet_socket)).call("Plugin.Activate")  # the worker has loaded the app
    results: dict = {"machine": machine_facts(host, plan, quick),
                     "memory_fresh": pl.memory_snapshot(host.pynet_proc.pid, "fresh", 0)}
    nets = dt.bench_networks()
    dt.create_networks(host, nets)
    print("docker steps ...", flush=True)
    results["docker"] = docker_steps(host, plan, nets)
    print("plugin steps ...", flush=True)
    results["plugin"] = plugin_steps(host, plan)
    print("published ports ...", flush=True)
    results["ports"] = bench_ports.ports_steps(host, plan, nets, PYNET_ARGS)  # before profile: it re-homes pynet
    print("profile ...", flush=True)
    results["profile"] = profile_step(host, plan, nets[1])
    dt.remove_networks(host, nets)
    results["machine"]["loadavg_end"] = os.getloadavg()[0]
    return results


def write_results(results: dict) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    md = render(results)
    if "ports" in results:
        md += "\n" + bench_ports.render(results["ports"])
    if "overlay" in results:
        md += "\n" + render_overlay(results["overlay"])
    elif "overlay_error" in results:
        md += f"\n### Multi-host overlay\n\n**failed:** {results['overlay_error']}\n"
    if "dns" in results:
        md += "\n" + render_dns(results["dns"])
    elif "dns_error" in results:
        md += f"\n### Cluster DNS\n\n**failed:** {results['dns_error']}\n"
    if "macvlan" in results:
        md += "\n" + render_macvlan(results["macvlan"])
    elif "macvlan_error" in results:
        md += f"\n### Multi-host macvlan\n\n**failed:** {results['macvlan_error']}\n"
    (RESULTS / "latest.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~2.5 min instead of ~6)")
    parser.add_argument("--no-overlay", action="store_true", help="skip the multi-host overlay section")
    parser.add_argument("--no-dns", action="store_true", help="skip the cluster DNS section")
    parser.add_argument("--no-macvlan", action="store_true", help="skip the multi-host macvlan section")
    args = parser.parse_args(argv)
    missing = prerequisites_missing()
    if missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 2
    install_signal_handlers()
    base = Path(tempfile.mkdtemp(prefix="pn-bench-", dir="/tmp"))
    host = DockerHost("bench", base / "h")
    t0 = time.monotonic()
    try:
        results = run_all(host, QUICK if args.quick else FULL, args.quick)
    except BaseException:
        for log in (host.pynet_log, host.dockerd_log):
            print(f"---- tail of {log.name}\n{tail(log, 30)}", file=sys.stderr)
        raise
    finally:
        host.stop()
        try:
            base.rmdir()
        except OSError as exc:
            print(f"bench: {base} left behind: {exc}", file=sys.stderr)
    rc = 0
    if not args.no_overlay:
        rc = overlay_step(results, args.quick)
    if not args.no_dns:
        rc = dns_step(results, args.quick) or rc
    if not args.no_macvlan:
        rc = macvlan_step(results, args.quick) or rc
    results["elapsed_s"] = time.monotonic() - t0
    print(write_results(results))
    return rc


def section_step(results: dict, key: str, title: str, missing, run) -> int:
    """One multi-host section (its own two-host cluster, under a temporary directory ``run`` is given);
    a failure is recorded in the results and the exit code, and the other sections are kept."""
    print(f"{title} ...", flush=True)
    why = missing()
    base = Path(tempfile.mkdtemp(prefix=f"pn-bench-{key}-", dir="/tmp"))
    try:
        if why:
            raise RuntimeError(why)
        results[key] = run(base / "cl")
        return 0
    except Exception as exc:  # noqa: BLE001 - recorded in the results and the exit code
        results[f"{key}_error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"bench: {key} section failed: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            base.rmdir()
        except OSError as exc:
            print(f"bench: {base} left behind: {exc}", file=sys.stderr)


def overlay_step(results: dict, quick: bool) -> int:
    plan = bench_overlay.QUICK if quick else bench_overlay.FULL
    return section_step(results, "overlay", "multi-host overlay", bench_overlay.missing,
                        lambda work: bench_overlay.overlay_section(plan, work))


def dns_step(results: dict, quick: bool) -> int:
    plan = bench_dns.QUICK if quick else bench_dns.FULL
    return section_step(results, "dns", "cluster DNS", bench_dns.missing, lambda work: bench_dns.dns_section(plan, work))


def macvlan_step(results: dict, quick: bool) -> int:
    plan = bench_macvlan.QUICK if quick else bench_macvlan.FULL
    return section_step(results, "macvlan", "multi-host macvlan", bench_overlay.missing,
                        lambda work: bench_macvlan.macvlan_section(plan, work))


if __name__ == "__main__":
    sys.exit(main())
