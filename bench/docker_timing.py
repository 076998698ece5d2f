"""Docker-level measurements, Docker's built-in bridge driver vs pynet, on one DockerHost.

* ``docker_run_times``: wall time of ``docker run --rm --network N busybox:local true`` (docker CLI
  start to exit), runs interleaved bridge/pynet so drift of the machine hits both alike.
* ``iperf_throughput``: container-to-container iperf3 TCP throughput (receiver side), rounds
  alternating between the networks.
* ``network_create_rm_times``: ``docker network create`` and ``docker network rm`` wall times.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

from pynet.lab.dockerhost import DockerHost
from pynet.lab.proc import DockerHostError

# The harness copies the host's iperf3 into pn-iperf:local under the same path (build_iperf_tar).
IPERF = shutil.which("iperf3") or "/usr/bin/iperf3"


@dataclass(frozen=True)
class NetSpec:
    label: str       # "bridge" or "pynet": the key in every result
    name: str        # docker network name
    create_args: tuple[str, ...]


def bench_networks() -> list[NetSpec]:
    return [
        NetSpec("bridge", "pnb-dbr", ("-d", "bridge", "--subnet", "10.60.0.0/24")),
        NetSpec("pynet", "pnb-pynet", ("-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.61.0.0/24")),
    ]


def scratch_networks() -> list[NetSpec]:
    """Networks made and removed again by the create+rm timing."""
    return [
        NetSpec("bridge", "pnb-tmp-dbr", ("-d", "bridge", "--subnet", "10.63.0.0/24")),
        NetSpec("pynet", "pnb-tmp-pynet", ("-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.64.0.0/24")),
    ]


def create_networks(host: DockerHost, nets: list[NetSpec]) -> None:
    for net in nets:
        host.docker("network", "create", *net.create_args, net.name)


def remove_networks(host: DockerHost, nets: list[NetSpec]) -> None:
    for net in nets:
        host.docker("network", "rm", net.name, check=False)


def timed_docker(host: DockerHost, *args: str, timeout: float = 120) -> float:
    """Seconds the docker CLI took for ``args`` (raises if it failed)."""
    t0 = time.perf_counter()
    host.docker(*args, timeout=timeout)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ docker run
def docker_run_times(host: DockerHost, nets: list[NetSpec], runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per ``docker run --rm``, per network label; warm-up runs are discarded."""
    times: dict[str, list[float]] = {n.label: [] for n in nets}
    for i in range(warmup + runs):
        for net in (nets if i % 2 == 0 else nets[::-1]):  # alternate who goes first, too
            t = timed_docker(host, "run", "--rm", "--network", net.name, "busybox:local", "true")
            if i >= warmup:
                times[net.label].append(t)
    return times


# ------------------------------------------------------------------------------------------------ iperf3
def _server_name(net: NetSpec) -> str:
    return f"pnb-iperf-{net.label}"


def _start_iperf_server(host: DockerHost, net: NetSpec, timeout: float = 15) -> str:
    """Start an iperf3 server container on ``net``; returns its IP once it listens."""
    name = _server_name(net)
    host.docker("run", "-d", "--name", name, "--network", net.name, "pn-iperf:local", IPERF, "-s", "--forceflush")
    deadline = time.monotonic() + timeout
    while "Server listening" not in host.docker("logs", name).stdout:
        if time.monotonic() > deadline:
            raise DockerHostError(f"iperf3 server on {net.name} not listening within {timeout}s")
        time.sleep(0.1)
    return host.container_ip(name, net.name)


def _iperf_client(host: DockerHost, net: NetSpec, server_ip: str, seconds: int) -> float:
    """Gbit/s received by the server in one ``iperf3 -c`` run from a fresh client container."""
    proc = host.docker("run", "--rm", "--network", net.name, "pn-iperf:local",
                       IPERF, "-c", server_ip, "-t", str(seconds), "-J", timeout=seconds + 60)
    report = json.loads(proc.stdout)
    if "error" in report:
        raise DockerHostError(f"iperf3 on {net.name}: {report['error']}")
    return report["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_throughput(host: DockerHost, nets: list[NetSpec], rounds: int, seconds: int) -> dict[str, list[float]]:
    """Gbit/s per round and network label; rounds alternate the networks' order."""
    try:
        servers = {net.label: _start_iperf_server(host, net) for net in nets}
        gbits: dict[str, list[float]] = {n.label: [] for n in nets}
        for i in range(rounds):
            for net in (nets if i % 2 == 0 else nets[::-1]):
                gbits[net.label].append(_iperf_client(host, net, servers[net.label], seconds))
        return gbits
    finally:
        host.docker("rm", "-f", *(_server_name(n) for n in nets), check=False)


# ------------------------------------------------------------------------------------------------ network create/rm
def network_create_rm_times(host: DockerHost, nets: list[NetSpec], reps: int) -> dict[str, dict[str, list[float]]]:
    """Seconds for ``docker network create`` and ``docker network rm``, per label, interleaved."""
    out = {n.label: {"create": [], "rm": []} for n in nets}
    for i in range(reps):
        for net in (nets if i % 2 == 0 else nets[::-1]):
            out[net.label]["create"].append(timed_docker(host, "network", "create", *net.create_args, net.name))
            out[net.label]["rm"].append(timed_docker(host, "network", "rm", net.name))
    return out
