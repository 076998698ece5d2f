"""pynet's own latency and memory, measured on its unix socket with no dockerd involved.

A *cycle* is what dockerd sends for one container's life on a pynet network (protocol.md §6.9):
RequestAddress -> CreateEndpoint -> Join -> Leave -> DeleteEndpoint -> ReleaseAddress.  Nothing moves
the container end of the veth pair between Join and Leave here, so DeleteEndpoint removes the pair
exactly as it would after dockerd moved it back.  Each worker thread owns one keep-alive HTTP
connection; latency is client-side (request written -> response body read).

Memory is VmRSS of pynet's gunicorn processes (the arbiter and its one worker), from /proc.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

CYCLE_CALLS = ("RequestAddress", "CreateEndpoint", "Join", "Leave", "DeleteEndpoint", "ReleaseAddress")
_ACCEPT = "application/vnd.docker.plugins.v1.2+json"


class PluginCallError(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60):
        super().__init__("plugin.moby.localhost", timeout=timeout)  # the Host header dockerd sends
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class PluginClient:
    """One keep-alive connection to the plugin; not thread-safe (one per thread)."""

    def __init__(self, socket_path: str):
        self._conn = _UnixHTTPConnection(str(socket_path))
        self.reconnects = 0

    def call(self, method: str, body: dict | None = None) -> dict:
        """POST /<method> like dockerd (JSON body, no Content-Type); the decoded reply."""
        data = json.dumps(body).encode() if body is not None else b""
        try:
            return self._roundtrip(method, data)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.reconnects += 1  # the server closed an idle keep-alive connection: retry once
            self._conn.close()
            return self._roundtrip(method, data)

    def _roundtrip(self, method: str, data: bytes) -> dict:
        self._conn.request("POST", "/" + method, body=data, headers={"Accept": _ACCEPT})
        resp = self._conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise PluginCallError(f"{method} -> HTTP {resp.status}: {raw[:300]!r}")
        return json.loads(raw)

    def close(self) -> None:
        self._conn.close()


# ------------------------------------------------------------------------------------------------ network
@dataclass(frozen=True)
class PluginNetwork:
    network_id: str
    pool_id: str
    gateway: str  # CIDR, as RequestAddress returned it


def create_network(client: PluginClient, subnet: str) -> PluginNetwork:
    """RequestPool + gateway RequestAddress + CreateNetwork, as dockerd does for `network create`."""
    pool = client.call("IpamDriver.RequestPool", {"AddressSpace": "pynet-local", "Pool": subnet, "SubPool": "",
                                                  "Options": {}, "V6": False})
    gw = client.call("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})["Address"]
    net = PluginNetwork(secrets.token_hex(32), pool["PoolID"], gw)
    client.call("NetworkDriver.CreateNetwork", {
        "NetworkID": net.network_id,
        "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "pynet-local", "Gateway": gw, "Pool": pool["Pool"]}],
        "IPv6Data": []})
    return net


def delete_network(client: PluginClient, net: PluginNetwork) -> None:
    client.call("NetworkDriver.DeleteNetwork", {"NetworkID": net.network_id})
    client.call("IpamDriver.ReleaseAddress", {"PoolID": net.pool_id, "Address": net.gateway.split("/")[0]})
    client.call("IpamDriver.ReleasePool", {"PoolID": net.pool_id})


# ------------------------------------------------------------------------------------------------ cycles
def _cycle_bodies(net: PluginNetwork, endpoint_id: str):
    """(method, body) for each step; the address is filled in once RequestAddress answered."""
    ids = {"NetworkID": net.network_id, "EndpointID": endpoint_id}
    return lambda addr: [
        ("NetworkDriver.CreateEndpoint", {**ids, "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
                                          "Options": {}}),
        ("NetworkDriver.Join", {**ids, "SandboxKey": f"/var/run/docker/netns/{endpoint_id[:12]}", "Options": {}}),
        ("NetworkDriver.Leave", ids),
        ("NetworkDriver.DeleteEndpoint", ids),
        ("IpamDriver.ReleaseAddress", {"PoolID": net.pool_id, "Address": addr.split("/")[0]}),
    ]


def one_cycle(client: PluginClient, net: PluginNetwork) -> dict[str, float]:
    """Run one endpoint cycle; seconds per call and for the whole cycle ("Cycle")."""
    times: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    addr = client.call("IpamDriver.RequestAddress", {"PoolID": net.pool_id, "Address": "", "Options": None})["Address"]
    times["RequestAddress"] = time.perf_counter() - t0
    for method, body in _cycle_bodies(net, secrets.token_hex(32))(addr):
        t0 = time.perf_counter()
        client.call(method, body)
        times[method.split(".", 1)[1]] = time.perf_counter() - t0
    times["Cycle"] = time.perf_counter() - t_start
    return times


@dataclass
class CycleRun:
    concurrency: int
    cycles: int
    wall_s: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*CYCLE_CALLS, "Cycle")})
    reconnects: int = 0

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.wall_s if self.wall_s else 0.0


def run_cycles(socket_path: str, net: PluginNetwork, cycles: int, concurrency: int) -> CycleRun:
    """``cycles`` endpoint cycles spread over ``concurrency`` threads, one connection each."""
    run = CycleRun(concurrency, cycles)
    remaining = iter(range(cycles))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        client = PluginClient(socket_path)
        try:
            while not errors:
                with lock:
                    if next(remaining, None) is None:
                        return
                times = one_cycle(client, net)
                with lock:
                    for name, t in times.items():
                        run.samples[name].append(t)
        except BaseException as exc:  # surfaced below, stops the other threads
            errors.append(exc)
        finally:
            with lock:
                run.reconnects += client.reconnects
            client.close()

    threads = [threading.Thread(target=worker, name=f"bench-c{i}") for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.wall_s = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return run


# ------------------------------------------------------------------------------------------------ memory
def _proc_tree() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    return children


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def gunicorn_pids(root_pid: int) -> tuple[int, list[int]]:
    """(arbiter, workers) under ``root_pid`` (the `ip netns exec ... pynet serve` Popen)."""
    children = _proc_tree()
    order, queue = [], [root_pid]
    while queue:  # breadth first: the arbiter comes before its workers
        pid = queue.pop(0)
        order.append(pid)
        queue.extend(children.get(pid, []))
    pynet = [p for p in order if "pynet" in _cmdline(p) and "serve" in _cmdline(p)]
    if not pynet:
        raise RuntimeError(f"no pynet process under pid {root_pid}")
    arbiter = pynet[0]
    return arbiter, [p for p in children.get(arbiter, []) if p in pynet]


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def memory_snapshot(root_pid: int, label: str, cycles_done: int) -> dict:
    arbiter, workers = gunicorn_pids(root_pid)
    if len(workers) != 1:
        raise RuntimeError(f"expected one gunicorn worker under {arbiter}, found {workers}")
    worker_kib, arbiter_kib = vm_rss_kib(workers[0]), vm_rss_kib(arbiter)
    return {"label": label, "cycles_done": cycles_done, "worker_pid": workers[0], "arbiter_pid": arbiter,
            "worker_kib": worker_kib, "arbiter_kib": arbiter_kib, "total_kib": worker_kib + arbiter_kib}


def wait_for_socket(path, timeout: float = 15) -> None:
    """Block until a unix socket accepts connections (pynet restarted behind the relay)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(path))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)
