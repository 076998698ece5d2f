#!/usr/bin/env python3
"""Multi-host overlay: pynet's VXLAN overlay vs Docker swarm's overlay, side by side in one run.

    cd /work/main && /work/venv/bin/python -m bench.overlay [--quick] [--only pynet|swarm]
                     [--rounds N] [--containers N]         (root; ~2 min, --quick ~1 min)

Also a section of ``bench/run.py`` (after the single-host steps). Two Docker hosts on one underlay
(lab/cluster.py: netns per host, etcd on 192.0.2.10:2379, hostA 192.0.2.1, hostB 192.0.2.2), each
with its own dockerd and ``pynet serve --etcd ... --vtep-address 192.0.2.<i> --log-level info``. On the same
two dockerds a swarm is formed (A: ``swarm init --advertise-addr 192.0.2.1 --data-path-port 7789``, B joins
as a worker), so both overlays share the hosts, the underlay and the machine's noise:

* pynet  ``pbench``: ``docker network create -d pynet --ipam-driver pynet -o pynet.mode=overlay
  -o pynet.overlay=bench --subnet 10.77.0.0/24`` on A; on B pynet creates it by itself (the time until
  ``docker network ls`` on B lists it is recorded; after 15 s the bench creates it by hand and says so).
* swarm  ``sbench``: ``docker network create -d overlay --attachable --subnet 10.78.0.0/24`` on A.

Steps:

1. throughput  iperf3 server container on A, a long-lived client container on B (``docker exec cli iperf3
               -c <server> -t S -J``; a long-lived client so no round waits on the new client's own
               convergence); rounds alternate the networks and their order. Gbit/s of end.sum_received,
               TCP retransmits, and the MTU of each container's eth0.
2. convergence ``docker run -d --ip <next address> busybox:local sleep 1d`` on A, one container at a time,
               the networks alternating; before each run a prober container on B (the iperf3 client) has
               already started ``ping -i 0.02 <that address>`` (``docker exec``), whose first echo reply
               line is timestamped by this process as it arrives (time.monotonic, the same clock that
               timed the ``docker run``; the prober also prints its /proc/uptime, CLOCK_BOOTTIME at 10 ms
               resolution, as a cross-check). Figure: issue of ``docker run -d`` on A → first reply on B.
               The prober's ARP retransmit timer (net.ipv4.neigh.eth0.retrans_time_ms) is set to 10 ms, on
               both networks, so the kernel's 1 s default does not quantise the result: without it an
               address that is not resolvable yet is re-asked only once a second.

Everything (swarm included) lives in the test dockerds' own data roots and namespaces; the bench leaves the
swarm and removes its containers and networks at the end, also on failure, and the Cluster removes the rest.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stats import summary  # noqa: E402
from pynet.lab.cluster import Cluster, etcd_missing  # noqa: E402
from pynet.lab.wait import wait_until  # noqa: E402
from pynet.lab.dockerhost import DockerHost  # noqa: E402
from pynet.lab.proc import DockerHostError, binary, install_signal_handlers, prerequisites_missing  # noqa: E402

RESULTS = REPO / "bench" / "results"
PYNET_ARGS = ("--log-level", "info")
IPERF = "/usr/bin/iperf3"  # the harness copies the host's iperf3 into pn-iperf:local under the same path
SWARM_DATA_PORT = 7789
APPEAR_TIMEOUT_S = 15      # pynet's copy of the network on B, before the bench makes it by hand
REACH_TIMEOUT_S = 20       # server reachable from the client before the iperf3 rounds
PROBE_TIMEOUT_S = 15       # one convergence sample gives up after this (counted as unreached)
PING_INTERVAL_S = 0.02
PROBER_RETRANS_MS = 10
CONV_FIRST_HOST = 100      # convergence containers get .100, .101, ...


@dataclass(frozen=True)
class OverlayPlan:
    iperf_rounds: int
    iperf_seconds: int
    containers: int        # convergence samples per network


FULL = OverlayPlan(iperf_rounds=5, iperf_seconds=5, containers=20)
QUICK = OverlayPlan(iperf_rounds=2, iperf_seconds=3, containers=10)


@dataclass(frozen=True)
class OverlayNet:
    label: str               # "pynet" or "swarm": the key in every result
    name: str
    subnet: str
    create_args: tuple[str, ...]

    def address(self, host_index: int) -> str:
        return str(ipaddress.ip_network(self.subnet)[host_index])


def overlay_networks() -> list[OverlayNet]:
    return [
        OverlayNet("pynet", "pbench", "10.77.0.0/24",
                   ("-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=overlay", "-o", "pynet.overlay=bench",
                    "--subnet", "10.77.0.0/24")),
        OverlayNet("swarm", "sbench", "10.78.0.0/24",
                   ("-d", "overlay", "--attachable", "--subnet", "10.78.0.0/24")),
    ]


def _server(net: OverlayNet) -> str:
    return f"pnb-ov-srv-{net.label}"


def _client(net: OverlayNet) -> str:
    return f"pnb-ov-cli-{net.label}"


def _conv(net: OverlayNet, i: int) -> str:
    return f"pnb-ov-conv-{net.label}-{i}"


def _interleaved(nets: list[OverlayNet], i: int) -> list[OverlayNet]:
    return nets if i % 2 == 0 else nets[::-1]


def _names(host: DockerHost, *args: str) -> set[str]:
    return set(host.docker(*args, check=False).stdout.split())


# ------------------------------------------------------------------------------------------------ setup
def swarm_up(a: DockerHost, b: DockerHost, advertise: str) -> dict:
    """A inits a swarm (manager), B joins as a worker; returns the seconds each step took."""
    t0 = time.monotonic()
    a.docker("swarm", "init", "--advertise-addr", advertise, "--data-path-port", str(SWARM_DATA_PORT))
    t_init = time.monotonic() - t0
    token = a.docker("swarm", "join-token", "-q", "worker").stdout.strip()
    t1 = time.monotonic()
    b.docker("swarm", "join", "--token", token, f"{advertise}:2377", timeout=60)
    t_join = time.monotonic() - t1
    ready = wait_until(lambda: a.docker("node", "ls", "--format", "{{.Status}}").stdout.split().count("Ready") == 2, 30)
    if not ready:
        raise DockerHostError(f"swarm: worker not Ready within 30 s:\n{a.docker('node', 'ls', check=False).stdout}")
    return {"init_s": t_init, "join_s": t_join, "both_ready_s": time.monotonic() - t0}


def swarm_down(hosts: list[DockerHost]) -> None:
    """Workers leave first, then the manager; then the bridge swarm left behind. Best effort."""
    for h in reversed(hosts):
        h.docker("swarm", "leave", "--force", check=False, timeout=60)
    for h in hosts:
        if "docker_gwbridge" in _names(h, "network", "ls", "--format", "{{.Name}}"):
            h.docker("network", "rm", "docker_gwbridge", check=False)


def create_pynet_network(a: DockerHost, b: DockerHost, net: OverlayNet) -> dict:
    """Create on A; wait for pynet to create it on B (by hand after APPEAR_TIMEOUT_S)."""
    a.docker("network", "create", *net.create_args, net.name)
    t0 = time.monotonic()
    seen = wait_until(lambda: net.name in _names(b, "network", "ls", "--format", "{{.Name}}"), APPEAR_TIMEOUT_S, 0.05)
    appeared = time.monotonic() - t0 if seen else None
    if not seen:
        print(f"  pynet: {net.name} did not appear on B within {APPEAR_TIMEOUT_S} s; creating it there by hand",
              flush=True)
        b.docker("network", "create", *net.create_args, net.name)
    return {"appeared_on_b_s": appeared, "created_by_hand_on_b": not seen}


def create_networks(a: DockerHost, b: DockerHost, nets: list[OverlayNet]) -> dict:
    out = {}
    for net in nets:
        if net.label == "pynet":
            out[net.label] = create_pynet_network(a, b, net)
        else:
            a.docker("network", "create", *net.create_args, net.name)
            out[net.label] = {}
    return out


def remove_all(a: DockerHost, b: DockerHost, nets: list[OverlayNet], containers: int) -> list[str]:
    """Containers and networks of the bench on both hosts; returns what could not be removed."""
    left = []
    for h in (b, a):
        names = [n for net in nets for n in (_server(net), _client(net),
                                             *(_conv(net, i) for i in range(containers)))]
        present = _names(h, "ps", "-a", "--format", "{{.Names}}") & set(names)
        if present:
            h.docker("rm", "-f", *sorted(present), check=False, timeout=120)
    for net in nets:
        hosts = (a, b) if net.label == "pynet" else (a,)  # swarm's copy on B goes with its last container

        errors: dict[str, str] = {}

        def gone() -> bool:
            # retried: swarm frees an attachable network's tasks asynchronously, and pynet may bring back
            # a host's copy while the overlay is still alive elsewhere
            listed = [h for h in hosts if net.name in _names(h, "network", "ls", "--format", "{{.Name}}")]
            for h in listed:
                p = h.docker("network", "rm", net.name, check=False)
                if p.returncode:
                    # the whole message: dockerd's last line alone ("exit status 1") names no culprit
                    errors[h.name] = " / ".join((p.stderr or p.stdout).strip().splitlines()) or f"rc={p.returncode}"
            return not listed

        if not wait_until(gone, 20, 0.5):
            left += [f"{h.name}:{net.name} ({errors.get(h.name, 'reappeared')})" for h in hosts
                     if net.name in _names(h, "network", "ls", "--format", "{{.Name}}")]
    return left


# ------------------------------------------------------------------------------------------------ throughput
def _start_iperf_pair(a: DockerHost, b: DockerHost, net: OverlayNet, timeout: float = 20) -> str:
    a.docker("run", "-d", "--name", _server(net), "--network", net.name, "pn-iperf:local",
             IPERF, "-s", "--forceflush")
    b.docker("run", "-d", "--name", _client(net), "--network", net.name, "pn-iperf:local", "sleep", "1d")
    if not wait_until(lambda: "Server listening" in a.docker("logs", _server(net)).stdout, timeout):
        raise DockerHostError(f"iperf3 server on {net.name} not listening within {timeout}s")
    return a.container_ip(_server(net), net.name)


def _reachable(b: DockerHost, net: OverlayNet, ip: str) -> float:
    t0 = time.monotonic()
    ok = wait_until(lambda: b.docker("exec", _client(net), "ping", "-c1", "-W1", ip, check=False).returncode == 0,
               REACH_TIMEOUT_S, 0.1)
    if not ok:
        raise DockerHostError(f"{net.label}: {ip} on A not reachable from B's client within {REACH_TIMEOUT_S} s")
    return time.monotonic() - t0


def _mtu(h: DockerHost, container: str) -> int:
    return int(h.docker("exec", container, "cat", "/sys/class/net/eth0/mtu").stdout.strip())


def _iperf_round(b: DockerHost, net: OverlayNet, ip: str, seconds: int) -> dict:
    proc = b.docker("exec", _client(net), IPERF, "-c", ip, "-t", str(seconds), "-J", check=False,
                    timeout=seconds + 60)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise DockerHostError(f"iperf3 on {net.name}: no JSON (rc={proc.returncode}): {proc.stderr[-500:]}")
    if "error" in report:
        raise DockerHostError(f"iperf3 on {net.name}: {report['error']}")
    return {"gbit_s": report["end"]["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": report["end"].get("sum_sent", {}).get("retransmits")}


def throughput(a: DockerHost, b: DockerHost, nets: list[OverlayNet], plan: OverlayPlan) -> dict:
    servers = {net.label: _start_iperf_pair(a, b, net) for net in nets}
    first_ping = {net.label: _reachable(b, net, servers[net.label]) for net in nets}
    rounds: dict[str, list[dict]] = {n.label: [] for n in nets}
    for i in range(plan.iperf_rounds):
        for net in _interleaved(nets, i):
            rounds[net.label].append(_iperf_round(b, net, servers[net.label], plan.iperf_seconds))
    out = {}
    for net in nets:
        g = [r["gbit_s"] for r in rounds[net.label]]
        out[net.label] = {**summary(g), "samples": g, "seconds_per_round": plan.iperf_seconds,
                          "retransmits": [r["retransmits"] for r in rounds[net.label]],
                          "server_ip": servers[net.label],
                          "mtu_server_a": _mtu(a, _server(net)), "mtu_client_b": _mtu(b, _client(net)),
                          "client_reachable_after_s": first_ping[net.label]}
    return out


# ------------------------------------------------------------------------------------------------ convergence
def _container_pid(h: DockerHost, container: str) -> int:
    return int(h.docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())


def tune_prober(h: DockerHost, container: str) -> dict:
    """Set the prober's ARP retransmit timer (its own netns, entered by PID; /proc/sys/net is per netns)."""
    pid = str(_container_pid(h, container))
    path = "/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms"
    before = subprocess.run([binary("nsenter"), "-t", pid, "-n", "cat", path], capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run([binary("nsenter"), "-t", pid, "-n", "sh", "-c", f"echo {PROBER_RETRANS_MS} > {path}"], check=True)
    after = subprocess.run([binary("nsenter"), "-t", pid, "-n", "cat", path], capture_output=True, text=True,
                           check=True).stdout.strip()
    return {"retrans_time_ms_default": int(before), "retrans_time_ms": int(after)}


class Probe:
    """``docker exec PROBER sh -c 'echo start; ping -i 0.02 IP | <first reply>'`` on host B; every output
    line is timestamped (time.monotonic) by a reader thread as it arrives."""

    def __init__(self, h: DockerHost, prober: str, ip: str):
        script = (f"echo start; ping -i {PING_INTERVAL_S} -w {PROBE_TIMEOUT_S} {ip} | "
                  "{ while read l; do case \"$l\" in *'bytes from'*) echo \"R $l\"; cat /proc/uptime; exit 0;; "
                  "esac; done; exit 1; }")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(h.client_config)
        self.proc = subprocess.Popen([binary("docker"), "-H", h.host, "exec", prober, "sh", "-c", script],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     env=env)
        self.lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put((time.monotonic(), None))

    def wait_for(self, prefix: str, timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix):
                return t, line
        return None

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)[1]
        except queue.Empty:
            return None

    def close(self) -> None:
        try:
            self.proc.wait(PROBE_TIMEOUT_S + 5)  # ping's -w bounds it inside the container too
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch of dockerd's ``2026-01-02T03:04:05.123456789Z`` (nanoseconds kept)."""
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    whole = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + (float("0." + frac) if frac else 0.0)


def _started_at(h: DockerHost, container: str) -> float | None:
    """When dockerd marked the container running (its process started, networking done), epoch seconds."""
    out = h.docker("inspect", "-f", "{{.State.StartedAt}}", container, check=False).stdout.strip()
    try:
        return _epoch(out)
    except ValueError:
        return None


def _one_sample(a: DockerHost, b: DockerHost, net: OverlayNet, i: int) -> dict:
    ip = net.address(CONV_FIRST_HOST + i)
    probe = Probe(b, _client(net), ip)
    try:
        if probe.wait_for("start", 15) is None:
            raise DockerHostError(f"prober on B did not start for {ip}")
        time.sleep(0.05)  # ping is running: its first request has gone out (and found nobody)
        t0, boot0 = time.monotonic(), _boottime()
        wall_offset = time.time() - t0  # monotonic -> epoch, for dockerd's StartedAt
        a.docker("run", "-d", "--name", _conv(net, i), "--network", net.name, "--ip", ip,
                 "busybox:local", "sleep", "1d")
        t_run = time.monotonic()
        got = probe.wait_for("R ", PROBE_TIMEOUT_S + 2)
        uptime = probe.next_line(2) if got else None
    finally:
        probe.close()
    started = _started_at(a, _conv(net, i))
    sample = {"ip": ip, "run_s": t_run - t0, "reply_s": None, "reply_after_run_s": None, "uptime_reply_s": None,
              "started_s": started - wall_offset - t0 if started else None, "reply_after_started_s": None}
    if got:
        sample["reply_s"] = got[0] - t0
        sample["reply_after_run_s"] = got[0] - t_run
        if started:
            sample["reply_after_started_s"] = got[0] + wall_offset - started
        try:
            sample["uptime_reply_s"] = float(uptime.split()[0]) - boot0  # 10 ms resolution cross-check
        except (AttributeError, ValueError, IndexError):
            pass
    return sample


def convergence(a: DockerHost, b: DockerHost, nets: list[OverlayNet], plan: OverlayPlan) -> dict:
    prober = {net.label: tune_prober(b, _client(net)) for net in nets}
    samples: dict[str, list[dict]] = {n.label: [] for n in nets}
    for i in range(plan.containers):
        for net in _interleaved(nets, i):
            samples[net.label].append(_one_sample(a, b, net, i))
    out = {}
    for net in nets:
        s = samples[net.label]
        reached = [x["reply_s"] for x in s if x["reply_s"] is not None]
        out[net.label] = {
            "reply_s": summary(reached),
            "unreached": len(s) - len(reached),
            "run_s": summary([x["run_s"] for x in s]),
            "reply_after_run_s": summary([x["reply_after_run_s"] for x in s if x["reply_after_run_s"] is not None]),
            "started_s": summary([x["started_s"] for x in s if x["started_s"] is not None]),
            "reply_after_started_s": summary([x["reply_after_started_s"] for x in s
                                              if x["reply_after_started_s"] is not None]),
            "uptime_vs_monotonic_max_diff_s": max((abs(x["uptime_reply_s"] - x["reply_s"]) for x in s
                                                   if x["uptime_reply_s"] is not None and x["reply_s"] is not None),
                                                  default=None),
            "prober": prober[net.label],
            "samples": s,
        }
    return out


def _conv_line(label: str, c: dict) -> str:
    r = c["reply_s"]
    tail = f" ({c['unreached']} unreached)" if c["unreached"] else ""
    return f"{label} p50 {r['median']:.3f} s, p99 {r['p99']:.3f} s{tail}"


# ------------------------------------------------------------------------------------------------ section
def _underlay_mtu(h: DockerHost) -> int:
    return int(h.ns_exec("cat", "/sys/class/net/ul0/mtu").stdout.strip())


def overlay_section(plan: OverlayPlan, workdir: Path, labels: tuple[str, ...] = ("pynet", "swarm"),
                    log=print) -> dict:
    """Build the two-host cluster, measure, tear everything down; returns the results dict of the section."""
    nets = [n for n in overlay_networks() if n.label in labels]
    t_start = time.monotonic()
    cluster = Cluster(workdir, n=2, iperf=True, pynet="pynet" in labels, pynet_args=PYNET_ARGS)
    res: dict = {"plan": asdict(plan), "loadavg_start": os.getloadavg()[0],
                 "networks": {n.label: {"name": n.name, "subnet": n.subnet, "create": " ".join(n.create_args)}
                              for n in nets}}
    try:
        log(f"  overlay: starting 2 hosts, etcd{', pynet' if 'pynet' in labels else ''} ...")
        cluster.start()
        a, b = cluster.hosts
        res["underlay"] = {"a": cluster.vtep(a), "b": cluster.vtep(b), "mtu": _underlay_mtu(a),
                           "etcd": cluster.etcd_url}
        res["dockerd"] = a.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        try:
            if "swarm" in labels:
                res["swarm"] = swarm_up(a, b, cluster.vtep(a))
                log(f"  overlay: swarm formed in {res['swarm']['both_ready_s']:.1f} s")
            res["create"] = create_networks(a, b, nets)
            if "pynet" in res["create"]:
                c = res["create"]["pynet"]
                log(f"  overlay: pbench on B after {c['appeared_on_b_s']:.2f} s" if c["appeared_on_b_s"] is not None
                    else "  overlay: pbench created on B by hand")
            res["throughput"] = throughput(a, b, nets, plan)
            log("  overlay iperf3: " + ", ".join(
                f"{k} {v['median']:.2f} Gbit/s (MTU {v['mtu_client_b']})" for k, v in res["throughput"].items()))
            res["convergence"] = convergence(a, b, nets, plan)
            log("  overlay convergence: " + ", ".join(_conv_line(k, v) for k, v in res["convergence"].items()))
        finally:
            left = remove_all(a, b, nets, plan.containers)
            if "swarm" in labels:
                swarm_down(cluster.hosts)
                states = {h.name: h.docker("info", "--format", "{{.Swarm.LocalNodeState}}", check=False).stdout.strip()
                          for h in cluster.hosts}
                if any(s != "inactive" for s in states.values()):
                    left.append(f"swarm state {states}")
            res["cleanup_left"] = left
            if left:
                log(f"  overlay: left behind before the cluster stop: {left}")
    except BaseException:
        for title, text in cluster.log_sections(30):
            print(f"---- {title}\n{text}", file=sys.stderr)
        raise
    finally:
        cluster.stop()
    res["elapsed_s"] = time.monotonic() - t_start
    res["loadavg_end"] = os.getloadavg()[0]
    return res


# ------------------------------------------------------------------------------------------------ standalone
def _facts(quick: bool) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    changed = [f for f in git("diff", "--name-only", "HEAD").splitlines()
               if not f.startswith(("tests/", "bench/", "docs/")) and f.endswith(".py")]
    untracked = [f for f in git("ls-files", "--others", "--exclude-standard").splitlines()
                 if not f.startswith(("tests/", "bench/", "docs/")) and f.endswith(".py")]
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    extra = changed + untracked
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "pynet_source": f"{head} + uncommitted {', '.join(extra)}" if extra else head,
        "loadavg_start": os.getloadavg()[0], "pynet_args": " ".join(PYNET_ARGS),
        "mode": "quick" if quick else "full",
    }


def missing() -> str | None:
    return prerequisites_missing() or etcd_missing()


def main(argv: list[str] | None = None) -> int:
    from bench.report import render_overlay

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2 × 3 s iperf3 rounds, 10 containers")
    parser.add_argument("--only", choices=("pynet", "swarm"), help="one overlay only (e.g. pynet's not ready)")
    parser.add_argument("--rounds", type=int, help="iperf3 rounds per network (default 5)")
    parser.add_argument("--containers", type=int, help="convergence samples per network (default 20)")
    args = parser.parse_args(argv)
    why = missing()
    if why:
        print(f"bench: {why}", file=sys.stderr)
        return 2
    install_signal_handlers()
    base = Path(tempfile.mkdtemp(prefix="pn-bench-ov-", dir="/tmp"))
    facts = _facts(args.quick)
    plan = QUICK if args.quick else FULL
    plan = OverlayPlan(iperf_rounds=args.rounds or plan.iperf_rounds, iperf_seconds=plan.iperf_seconds,
                       containers=args.containers or plan.containers)
    try:
        section = overlay_section(plan, base / "cl",
                                  (args.only,) if args.only else ("pynet", "swarm"))
    finally:
        try:
            base.rmdir()
        except OSError as exc:
            print(f"bench: {base} left behind: {exc}", file=sys.stderr)
    facts["loadavg_end"] = os.getloadavg()[0]
    facts["dockerd"] = section.get("dockerd", "?")
    results = {"machine": facts, "overlay": section}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overlay.json").write_text(json.dumps(results, indent=1) + "\n")
    md = render_overlay(section, facts)
    (RESULTS / "overlay.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
