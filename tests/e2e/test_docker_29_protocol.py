"""Docker 29's ProgramExternalConnectivity rework, with a real dockerd (moby#50283, #50321).

Docker 29's remote driver shim remembers only in memory which endpoint it programmed, so after a dockerd
restart with live-restore it may send Leave for a published container without a Revoke first.  This test
drives that sequence end to end: a published container survives a live-restore restart, is removed, and
its host port, NAT rule and pynet's record must go with it (and the port be free for the next container).
Measured on dockerd 29.7.2: it passes with or without Leave unpublishing, because the DeleteEndpoint that
follows releases the ports too; Leave's own part is guarded by tests/contract/test_docker_28_29.py.  Here
the outcome is guarded, on every dockerd (run it against 29 with a PATH override: README, Tests).
"""

from __future__ import annotations

import json

from pynet.lab.wait import wait_until
from tests.e2e.helpers import pn_links
from tests.e2e.test_ports_nat_isolation import create_net, port_rows, pynet_rules, run_web


def test_published_ports_go_with_the_container_after_a_live_restore_restart(make_dockerhost, cleanup):
    h = make_dockerhost("plive", daemon_config={"live-restore": True})
    create_net(h, cleanup, "pl-net", "--subnet", "10.96.0.0/24")
    run_web(h, cleanup, "pl-web", "pl-net", "-p", "5080:5000")
    assert [(r["host_port"], r["container_port"]) for r in port_rows(h)] == [(5080, 5000)], port_rows(h)
    assert any("DNAT" in line and "5080" in line for _, line in pynet_rules(h))

    h.restart_dockerd()  # live-restore: the container keeps running; Docker 29's shim forgets it
    state = json.loads(h.docker("inspect", "--format", "{{json .State}}", "pl-web").stdout)
    assert state["Running"] is True, state

    h.docker("rm", "-f", "pl-web")
    assert wait_until(lambda: port_rows(h) == [], seconds=10), port_rows(h)
    assert not [line for _, line in pynet_rules(h) if "5080" in line], pynet_rules(h)
    # The host port is free again: another container publishes it.
    run_web(h, cleanup, "pl-web2", "pl-net", "-p", "5080:5000")
    assert [r["host_port"] for r in port_rows(h)] == [5080]
    assert cleanup.run() == []


def test_an_interface_name_pynet_cannot_honour_is_refused_by_name(dockerhost, cleanup):
    """Docker 28+ takes ``driver-opt=com.docker.network.endpoint.ifname=...`` (moby#49155); the remote driver
    shim drops the name, so the container would silently get eth0: pynet refuses it at CreateEndpoint."""
    h = dockerhost
    create_net(h, cleanup, "pl-ifname", "--subnet", "10.97.0.0/24")
    cleanup.container("pl-if", h)
    done = h.docker("run", "-d", "--name", "pl-if",
                    "--network", "name=pl-ifname,driver-opt=com.docker.network.endpoint.ifname=app0",
                    "busybox:local", "sleep", "1d", check=False)
    assert done.returncode != 0 and "com.docker.network.endpoint.ifname" in done.stderr, done.stderr
    assert not [link for link in pn_links(h) if link.startswith(("pnh", "pnc"))], pn_links(h)  # no pair left
