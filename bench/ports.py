"""Published ports, Docker's bridge vs pynet, on the bench's DockerHost (called from bench/run.py).

* ``published_throughput``: iperf3 TCP from the host's netns to a server container through a published port
  (``-p HOSTPORT:5201``), rounds alternating the networks. The client aims at a non-loopback address of the
  host (on a veth the step adds and removes), so both drivers go through their kernel DNAT in
  nat OUTPUT; to 127.0.0.1 Docker's bridge would go through its userland docker-proxy instead.
* ``publish_100``: wall time of ``docker run -d -p 7000-7099:7000-7099`` (100 published ports) and of its
  ``docker rm -f``, interleaved.
* ``plugin_times``: pynet behind the timing relay (bench/call_trace.py): how long pynet's
  ProgramExternalConnectivity takes for those 100 ports, and RevokeExternalConnectivity.

``render`` gives the markdown section appended to bench/results/latest.md.
"""

from __future__ import annotations

import json
import statistics
import time

from bench import docker_timing as dt
from bench.call_trace import CallTrace
from bench.plugin_latency import wait_for_socket
from bench.stats import ratio, summary
from pynet.plugin.ports_cli import fetch_ports
from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import DockerHostError, binary

HOST_ADDRESS = "198.51.100.1"  # TEST-NET-2, on a veth inside the bench's netns only
DUMMY = ("bnchpub0", "bnchpub1")  # a veth pair (no dummy module needed); not pn*: pynet's orphan collector
SERVER_PORT = 5201
HOST_PORTS = {"bridge": 15201, "pynet": 15202}
RANGE = (7000, 7099)


# ------------------------------------------------------------------------------------------------ helpers
def _add_host_address(host: DockerHost) -> None:
    host.ns_exec(binary("ip"), "link", "add", DUMMY[0], "type", "veth", "peer", "name", DUMMY[1])
    host.ns_exec(binary("ip"), "addr", "add", f"{HOST_ADDRESS}/32", "dev", DUMMY[0])
    for dev in DUMMY:
        host.ns_exec(binary("ip"), "link", "set", dev, "up")


def _remove_host_address(host: DockerHost) -> None:
    host.ns_exec(binary("ip"), "link", "del", DUMMY[0], check=False)


def _server(net: dt.NetSpec) -> str:
    return f"pnb-pub-{net.label}"


def _start_server(host: DockerHost, net: dt.NetSpec, timeout: float = 15) -> None:
    name = _server(net)
    host.docker("run", "-d", "--name", name, "--network", net.name, "-p", f"{HOST_PORTS[net.label]}:{SERVER_PORT}",
                "pn-iperf:local", dt.IPERF, "-s", "--forceflush")
    deadline = time.monotonic() + timeout
    while "Server listening" not in host.docker("logs", name).stdout:
        if time.monotonic() > deadline:
            raise DockerHostError(f"iperf3 server on {net.name} not listening within {timeout}s")
        time.sleep(0.1)


def _client(host: DockerHost, net: dt.NetSpec, seconds: int) -> float:
    proc = host.ns_exec(dt.IPERF, "-c", HOST_ADDRESS, "-p", str(HOST_PORTS[net.label]), "-t", str(seconds), "-J",
                        check=False, timeout=seconds + 60)
    report = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "error" in report:
        raise DockerHostError(f"iperf3 through {net.label}'s published port: {report.get('error') or proc.stderr}")
    return report["end"]["sum_received"]["bits_per_second"] / 1e9


# ------------------------------------------------------------------------------------------------ steps
def published_throughput(host: DockerHost, nets: list[dt.NetSpec], rounds: int, seconds: int) -> dict[str, list[float]]:
    """Gbit/s per round and network label, host netns -> HOST_ADDRESS:hostport -> DNAT -> container."""
    _add_host_address(host)
    try:
        for net in nets:
            _start_server(host, net)
        gbits: dict[str, list[float]] = {n.label: [] for n in nets}
        for i in range(rounds):
            for net in (nets if i % 2 == 0 else nets[::-1]):
                gbits[net.label].append(_client(host, net, seconds))
        return gbits
    finally:
        host.docker("rm", "-f", *(_server(n) for n in nets), check=False)
        _remove_host_address(host)


def _run_100(host: DockerHost, net: dt.NetSpec, name: str) -> float:
    a, b = RANGE
    return dt.timed_docker(host, "run", "-d", "--name", name, "--network", net.name, "-p", f"{a}-{b}:{a}-{b}",
                           "busybox:local", "sleep", "1d")


def _pynet_rows(host: DockerHost) -> int:
    return len(fetch_ports(str(host.pynet_socket)))


def publish_100(host: DockerHost, nets: list[dt.NetSpec], reps: int) -> dict[str, dict[str, list[float]]]:
    """Seconds for ``docker run -d -p 7000-7099:7000-7099`` and its ``docker rm -f``, per label, interleaved."""
    out = {n.label: {"run": [], "rm": []} for n in nets}
    want = RANGE[1] - RANGE[0] + 1
    for i in range(reps):
        for net in (nets if i % 2 == 0 else nets[::-1]):
            name = f"pnb-p100-{net.label}"
            try:
                out[net.label]["run"].append(_run_100(host, net, name))
                if net.label == "pynet" and (rows := _pynet_rows(host)) != want:
                    raise DockerHostError(f"pynet publishes {rows} ports, expected {want}")
                out[net.label]["rm"].append(dt.timed_docker(host, "rm", "-f", name))
            finally:
                host.docker("rm", "-f", name, check=False)
    return out


def plugin_times(host: DockerHost, net: dt.NetSpec, reps: int, pynet_args: tuple[str, ...]) -> dict:
    """pynet's own time (round trip at the relay) for ProgramExternalConnectivity / RevokeExternalConnectivity
    of a 100-port container; pynet is serving on its usual socket again afterwards."""
    upstream = host.workdir / "pynet-ports-upstream.sock"
    host.kill_pynet()
    relay = CallTrace(host.pynet_socket, upstream).start()
    per_call: dict[str, list[float]] = {}
    try:
        host.start_pynet(extra_args=(*pynet_args, "--socket", str(upstream)))
        wait_for_socket(upstream)
        for _ in range(reps):
            t0 = time.monotonic()
            try:
                _run_100(host, net, "pnb-p100-trace")
            finally:
                host.docker("rm", "-f", "pnb-p100-trace", check=False)
            for c in relay.since(t0):
                per_call.setdefault(c.path.lstrip("/").split(".")[-1], []).append(c.seconds)
    finally:
        relay.stop()  # ends the relayed connections too: dockerd must not reuse one after pynet moves
        time.sleep(0.5)
        host.kill_pynet()
        host.start_pynet(extra_args=pynet_args)
    return {name: {**summary([s * 1e3 for s in v]), "unit": "ms"} for name, v in sorted(per_call.items())}


def ports_steps(host: DockerHost, plan, nets: list[dt.NetSpec], pynet_args: tuple[str, ...]) -> dict:
    """All published-port measurements (bench/run.py calls this before its profile step)."""
    gbits = published_throughput(host, nets, plan.iperf_rounds, plan.iperf_seconds)
    print("  published-port iperf3: " + ", ".join(f"{k} {statistics.median(v):.2f} Gbit/s" for k, v in gbits.items()),
          flush=True)
    reps = 5 if plan.iperf_seconds >= 5 else 3
    p100 = publish_100(host, nets, reps)
    print("  docker run -p 7000-7099: " + ", ".join(f"{k} {statistics.median(v['run']):.2f} s"
                                                     for k, v in p100.items()), flush=True)
    pynet_net = next(n for n in nets if n.label == "pynet")
    calls = plugin_times(host, pynet_net, reps, pynet_args)
    return {
        "host_address": HOST_ADDRESS,
        "throughput_gbit_s": {k: {**summary(v), "samples": v, "seconds_per_round": plan.iperf_seconds}
                              for k, v in gbits.items()},
        "publish_100": {k: {"run": {**summary(v["run"]), "samples": v["run"]},
                            "rm": {**summary(v["rm"]), "samples": v["rm"]}} for k, v in p100.items()},
        "publish_100_plugin_ms": calls,
    }


# ------------------------------------------------------------------------------------------------ report
def _verdict(value: float, target: float) -> str:
    return f"≥ {target:.2f} {'met' if value >= target else '**missed**'}"


def render(p: dict) -> str:
    tp, p100, calls = p["throughput_gbit_s"], p["publish_100"], p.get("publish_100_plugin_ms", {})
    r_tp = ratio(tp["pynet"]["median"], tp["bridge"]["median"])
    r_run = ratio(p100["pynet"]["run"]["median"], p100["bridge"]["run"]["median"])
    r_rm = ratio(p100["pynet"]["rm"]["median"], p100["bridge"]["rm"]["median"])

    def tp_cell(k):
        return f"{tp[k]['median']:.2f} Gbit/s ({tp[k]['min']:.1f}–{tp[k]['max']:.1f})"

    def s_cell(k, what):
        return f"{p100[k][what]['median']:.2f} s (max {p100[k][what]['max']:.2f})"

    lines = [
        "### Published ports",
        "",
        "| measure | Docker bridge | pynet | pynet / bridge | target |",
        "|---|---:|---:|---:|---|",
        f"| iperf3 TCP host → container through `-p H:5201` (to {p['host_address']}, kernel DNAT for both), "
        f"median (range) of {tp['pynet']['n']} × {tp['pynet']['seconds_per_round']} s | {tp_cell('bridge')} | "
        f"{tp_cell('pynet')} | {r_tp:.3f} | {_verdict(r_tp, 0.95)} |",
        f"| `docker run -d -p 7000-7099:7000-7099` (100 ports), median of {p100['pynet']['run']['n']} | "
        f"{s_cell('bridge', 'run')} | {s_cell('pynet', 'run')} | {r_run:.2f} | — |",
        f"| `docker rm -f` of that container | {s_cell('bridge', 'rm')} | {s_cell('pynet', 'rm')} | {r_rm:.2f} | — |",
        "",
    ]
    if calls:
        parts = [f"{name} {v['median']:.1f} ms (max {v['max']:.1f}, {v['n']} calls)" for name, v in calls.items()
                 if name in ("ProgramExternalConnectivity", "RevokeExternalConnectivity", "Join", "CreateEndpoint")]
        lines += ["pynet's own time for the 100-port container (timing relay, median): " + "; ".join(parts) + ". "
                  "Docker's bridge starts one docker-proxy process per published port; pynet writes all 100 "
                  "DNAT rules in one iptables-restore per family.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
