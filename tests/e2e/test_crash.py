"""Crash consistency with a real dockerd, the real plugin and the real kernel: pynet SIGKILLed between a
record write and the kernel writes, dockerd SIGKILLed in the middle of a create.

What dockerd does when the plugin dies under a request: it re-sends the request for up to ~30 s, but with
an EMPTY body (moby pkg/plugins/client.go callWithRetry builds each attempt from the same, already drained
reader), so the restarted pynet can only answer 400 ("NetworkID is required").  dockerd only logs that for
removals and fails the container start for creates; nothing pynet did before the crash is ever finished by
a retry, which is why start-up collection and the orphan GC have to.

The crash is put exactly into the window with pynet's test-only fault hook (pynet/faults.py,
``PYNET_TEST_FAULT``): a SIGKILL from outside hits a window of a few microseconds only by luck.  Each
test has a host of its own (``make_dockerhost``): they kill daemons.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

from pynet import unixhttp
from pynet.lab.wait import wait_until
from tests.e2e.helpers import IMG, SLEEP, pn_links

GC = ["--gc-interval", "1"]  # orphans collected after 2 s: the test need not wait a minute


def gc_args(h) -> list[str]:
    return ["--docker-host", h.host, *GC]


def stored_keys(h, prefix: str) -> list[str]:
    """Keys of pynet's store under ``prefix``, read from the file (works while pynet is dead)."""
    db = sqlite3.connect(f"file:{h.pynet_state / 'pynet.db'}?mode=ro", uri=True, timeout=5)
    try:
        return [k for (k,) in db.execute("SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                                         (prefix, prefix + "\uffff"))]
    finally:
        db.close()


def health(h) -> dict:
    status, raw = unixhttp.request(unixhttp.UnixConnection(str(h.pynet_socket), 10), "POST", "/Pynet.Health", {})
    assert status == 200, raw
    return json.loads(raw)


def dnat_lines(h, port: int) -> list[str]:
    """pynet's DNAT rules for traffic from outside to host ``port`` (one per published binding)."""
    return [line for line in h.ns_exec("iptables-save", "-t", "nat").stdout.splitlines()
            if line.startswith("-A PYNET-PREROUTING ") and "DNAT" in line and f"--dport {port} " in line]


def in_background(fn, *args, **kwargs) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)), daemon=True)
    t.start()
    return t, out


def forget_containerd(h) -> None:
    """After a SIGKILL of dockerd its containerd is dead (a zombie) or dying, but its pid file stays, and a
    new dockerd then waits for it for ever ("containerd is still running"): make sure it is gone, drop the file."""
    pidfile = h.exec_root / "containerd" / "containerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        cmdline = b""
    if str(h.exec_root).encode() in cmdline:  # this host's containerd, still up: it goes with its dockerd
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}/cmdline") or not open(f"/proc/{pid}/cmdline", "rb").read(), 10)
    pidfile.unlink(missing_ok=True)


def wait_dead(proc, timeout: float = 60) -> int:
    assert wait_until(lambda: proc.poll() is not None, timeout), "pynet did not reach the fault point"
    return proc.returncode


def test_sigkill_between_unpublishing_and_freeing_a_port_leaves_it_claimable_once(make_dockerhost, cleanup):
    h = make_dockerhost("crash-ports", pynet=False)
    h.start_pynet(gc_args(h))
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.61.0.0/24", "cports")
    cleanup.network("cports", h)
    cleanup.container("p1", h)
    h.docker("run", "-d", "--name", "p1", "--network", "cports", "-p", "18080:80", IMG, *SLEEP)
    ip1 = h.container_ip("p1", "cports")
    assert len(dnat_lines(h, 18080)) == 1
    h.kill_pynet()
    proc = h.start_pynet(gc_args(h), env={"PYNET_TEST_FAULT": "ports-unpublished"})
    t, rm = in_background(h.docker, "rm", "-f", "p1", check=False, timeout=120)
    assert wait_dead(proc) == -signal.SIGKILL
    # Dead in the window: the record no longer names the port, the claim and the rule are still there.
    # (The old order -- claims released before the record was cleared -- left the reverse: a free port
    # that start-up replay programmed again for p1.)
    assert stored_keys(h, "/pynet/v1/ports/") == ["/pynet/v1/ports/v4/tcp/18080"]
    assert any(ip1 in line for line in dnat_lines(h, 18080))
    # dockerd re-sends the Revoke it lost, but with an empty body (moby pkg/plugins/client.go reuses the
    # drained body reader), so pynet answers 400 and dockerd only logs it: start-up collection cleans up.
    h.start_pynet(gc_args(h), env={})
    t.join(120)
    assert rm and rm[0].returncode == 0, rm and rm[0].stderr
    assert wait_until(lambda: stored_keys(h, "/pynet/v1/ports/") == [], 15), stored_keys(h, "/pynet/v1/ports/")
    assert dnat_lines(h, 18080) == []
    cleanup.container("p2", h)
    h.docker("run", "-d", "--name", "p2", "--network", "cports", "-p", "18080:80", IMG, *SLEEP)
    ip2 = h.container_ip("p2", "cports")
    lines = dnat_lines(h, 18080)
    assert len(lines) == 1 and ip2 in lines[0], lines  # one rule, to the one container that holds it
    cleanup.container("p3", h)
    taken = h.docker("run", "-d", "--name", "p3", "--network", "cports", "-p", "18080:80", IMG, *SLEEP, check=False)
    assert taken.returncode != 0 and "already published" in taken.stderr, taken.stderr


def test_sigkill_after_forgetting_an_endpoint_leaks_nothing(make_dockerhost, cleanup):
    h = make_dockerhost("crash-ep", pynet=False)
    h.start_pynet(gc_args(h), env={"PYNET_TEST_FAULT": "endpoint-forgotten"})
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.62.0.0/24", "cep")
    cleanup.network("cep", h)
    cleanup.container("e1", h)
    h.docker("run", "-d", "--name", "e1", "--network", "cep", IMG, *SLEEP)
    ip1 = h.container_ip("e1", "cep")
    eid = h.docker("inspect", "-f", "{{.NetworkSettings.Networks.cep.EndpointID}}", "e1").stdout.strip()
    proc = h.pynet_proc
    t, rm = in_background(h.docker, "rm", "-f", "e1", check=False, timeout=120)
    assert wait_dead(proc) == -signal.SIGKILL
    assert not any(k.endswith(eid) for k in stored_keys(h, "/pynet/v1/endpoints/"))
    assert f"pnh{eid[:12]}" in h.links() or f"pnc{eid[:12]}" in h.links()  # the pair outlived its record
    h.start_pynet(gc_args(h), env={})
    t.join(120)
    assert rm and rm[0].returncode == 0, rm and rm[0].stderr
    assert wait_until(lambda: not {f"pnh{eid[:12]}", f"pnc{eid[:12]}"} & set(h.links()), 15), h.links()
    # dockerd's ReleaseAddress followed its (retried) DeleteEndpoint: the address is free again, once
    cleanup.container("e2", h)
    h.docker("run", "-d", "--name", "e2", "--network", "cep", "--ip", ip1, IMG, *SLEEP)
    assert h.container_ip("e2", "cep") == ip1
    net_id = h.docker("network", "inspect", "-f", "{{.Id}}", "cep").stdout.strip()
    assert pn_links(h) == sorted([f"pn-{net_id[:12]}", *[n for n in pn_links(h) if n.startswith("pnh")]])
    assert len([n for n in pn_links(h) if n.startswith("pnh")]) == 1


def test_dockerd_killed_mid_create_leaves_a_record_the_gc_collects(make_dockerhost, cleanup):
    h = make_dockerhost("crash-gc", pynet=False)
    h.start_pynet(gc_args(h), env={"PYNET_TEST_FAULT": "endpoint-recorded:stall"})
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.63.0.0/24", "cgc")
    cleanup.network("cgc", h)
    cleanup.container("g1", h)
    t, run = in_background(h.docker, "run", "-d", "--name", "g1", "--network", "cgc", IMG, *SLEEP,
                           check=False, timeout=120)
    stalled = wait_until(lambda: "stalling at endpoint-recorded" in h.pynet_log.read_text(errors="replace"), 30)
    assert stalled, "CreateEndpoint never reached the fault point"
    records = stored_keys(h, "/pynet/v1/endpoints/")
    assert len(records) == 1
    eid = records[0].rsplit("/", 1)[1]
    os.kill(h.dockerd_pid, signal.SIGKILL)  # dockerd dies before it has stored the endpoint
    t.join(120)
    assert run and run[0].returncode != 0
    h.kill_pynet(signal.SIGKILL)  # the stalled request goes with it
    # pynet first: a starting dockerd waits for its plugins before it serves its API (protocol.md §6.8)
    h.start_pynet(gc_args(h), env={})
    forget_containerd(h)
    h.restart_dockerd()
    # Start-up replay brings back the pair of a record that never joined (driver/reconcile.py); the GC
    # then finds dockerd does not know the endpoint and removes it through DeleteEndpoint's path.
    gone = wait_until(lambda: not any(k.endswith(eid) for k in stored_keys(h, "/pynet/v1/endpoints/")), 20)
    assert gone, stored_keys(h, "/pynet/v1/endpoints/")
    assert wait_until(lambda: not {f"pnh{eid[:12]}", f"pnc{eid[:12]}"} & set(h.links()), 10), h.links()
    assert f"endpoint {eid[:12]} of network" in h.pynet_log.read_text(errors="replace")  # the GC did it
    state = health(h)["loops"]["orphan-gc"]
    assert state["last_ok"] and state["restarts"] == 0, state
    # dockerd and pynet agree again: a container starts, the network goes when asked
    h.docker("rm", "-f", "g1", check=False)
    cleanup.container("g2", h)
    h.docker("run", "-d", "--name", "g2", "--network", "cgc", IMG, *SLEEP)
    h.docker("exec", "g2", "ping", "-c1", "-W2", "10.63.0.1")
    h.docker("rm", "-f", "g2")
    time.sleep(0.5)
    h.docker("network", "rm", "cgc")
    assert wait_until(lambda: stored_keys(h, "/pynet/v1/networks/") == [], 10)
    assert pn_links(h) == []


def _endpoint_ids_in_dockerd(h, network: str) -> set[str]:
    doc = json.loads(h.docker("network", "inspect", network).stdout)[0]
    return {c["EndpointID"] for c in (doc.get("Containers") or {}).values()}


def _running(h, network: str) -> dict[str, str]:
    """name -> IPv4 of every running container on ``network``."""
    names = h.docker("ps", "--filter", f"network={network}", "--format", "{{.Names}}").stdout.split()
    return {n: h.container_ip(n, network) for n in names}


def test_sigkill_in_a_loop_while_containers_start_and_stop(make_dockerhost, cleanup):
    """Random SIGKILLs of pynet while containers with published ports start and stop concurrently;
    afterwards pynet, dockerd and the kernel agree and nothing is held twice."""
    import random

    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    h = make_dockerhost("crash-storm", pynet=False)
    h.start_pynet(gc_args(h))
    h.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "--subnet", "10.64.0.0/24", "storm")
    cleanup.network("storm", h)
    previous: list[str] = []
    outcomes: list[list] = []  # exit codes of each round's docker commands, for the report
    errors: list[str] = []
    for rnd_no in range(4):
        names = [cleanup.container(f"st{rnd_no}{i}", h) for i in range(3)]
        # two ports of the round's own, and 18199 that every round wants (held until the last one goes)
        ports = [18100 + 10 * rnd_no, 18101 + 10 * rnd_no, 18199]
        jobs = [in_background(h.docker, "run", "-d", "--name", n, "--network", "storm", "-p", f"{port}:80",
                              "-p", "80", IMG, *SLEEP, check=False, timeout=120) for n, port in zip(names, ports)]
        jobs += [in_background(h.docker, "rm", "-f", n, check=False, timeout=120) for n in previous]
        time.sleep(rnd.uniform(0.1, 1.5))
        h.kill_pynet(signal.SIGKILL)
        time.sleep(rnd.uniform(0, 1))
        h.start_pynet(gc_args(h))
        for t, _ in jobs:
            t.join(120)
        outcomes.append([out[0].returncode if out else None for _, out in jobs])
        errors.extend(out[0].stderr.strip().splitlines()[0][-90:] for _, out in jobs if out and out[0].returncode)
        previous = names
    # pynet's records and dockerd's endpoints agree (after the GC), and so do the kernel and the records
    agree = wait_until(lambda: {k.rsplit("/", 1)[1] for k in stored_keys(h, "/pynet/v1/endpoints/")}
                       == _endpoint_ids_in_dockerd(h, "storm"), 30)
    assert agree, (seed, stored_keys(h, "/pynet/v1/endpoints/"), _endpoint_ids_in_dockerd(h, "storm"))
    running = _running(h, "storm")
    assert len(set(running.values())) == len(running), (seed, running)  # no address twice
    lines = [line for line in h.ns_exec("iptables-save", "-t", "nat").stdout.splitlines()
             if line.startswith("-A PYNET-PREROUTING ") and "DNAT" in line]
    dports = [line.split("--dport ")[1].split()[0] for line in lines]
    assert len(dports) == len(set(dports)), (seed, lines)  # no host port twice
    targets = {line.split("--to-destination ")[1].split(":")[0] for line in lines}
    assert targets <= set(running.values()), (seed, lines, running)  # no rule for a container that is gone
    claimed = {k.rsplit("/", 1)[1] for k in stored_keys(h, "/pynet/v1/ports/")}
    assert wait_until(lambda: {k.rsplit("/", 1)[1] for k in stored_keys(h, "/pynet/v1/ports/")} == set(dports), 15), \
        (seed, claimed, dports)
    hosts = sorted(n for n in pn_links(h) if n.startswith("pnh"))
    assert wait_until(lambda: len([n for n in pn_links(h) if n.startswith("pnh")]) == len(_endpoint_ids_in_dockerd(h, "storm")), 15), \
        (seed, hosts)
    cleanup.container("st-after", h)
    h.docker("run", "-d", "--name", "st-after", "--network", "storm", "-p", "80", IMG, *SLEEP)
    h.docker("exec", "st-after", "ping", "-c1", "-W2", "10.64.0.1")
    assert len(set(_running(h, "storm").values())) == len(_running(h, "storm"))
    print(f"storm seed {seed}: exit codes per round {outcomes}; {len(running)} running, {len(lines)} DNAT rules; "
          f"errors: {errors}")
