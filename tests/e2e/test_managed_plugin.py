"""pynet as a managed Docker plugin (issue 5): build, create, set, enable, the user story, disable/enable,
an upgrade to a new build, removal.

The plugin directory is built by plugin/build/build.sh against the test dockerd (which has no uplink), from
the debootstrapped base and the wheels in the build cache ($PYNET_BUILD_CACHE, default
/var/cache/pynet-build): cold, that is a debootstrap (about a minute); warm, a `docker import` and a
`docker build` of a few seconds. No legacy pynet runs on this host, so only the managed plugin can answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pynet.lab.proc import CommandError
from tests.e2e.helpers import pn_links, run

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "plugin" / "build" / "build.sh"
PLUGIN = "pynet:latest"  # a managed plugin's driver name carries its tag
SUBNET, GATEWAY = "10.20.0.0/24", "10.20.0.1"
ROOTFS_BUDGET_MB = 150

pytestmark = [
    pytest.mark.timeout(1800),  # a cold build (debootstrap, PyPI) on a slow CI machine; warm: ~1 min
    pytest.mark.skipif(not shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"),
                       reason="the offline plugin build needs debootstrap (apt-get install debootstrap)"),
]


def build(host, name: str) -> Path:
    """plugin/build/build.sh against `host`'s dockerd; returns the plugin directory."""
    out = host.workdir / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=host.host, DOCKER_CONFIG=str(host.client_config), PYTHON=sys.executable)
    env["PATH"] = env.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    start = time.monotonic()
    proc = subprocess.run([str(BUILD), "--output", str(out)], env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, f"build failed:\n{proc.stderr[-3000:]}"
    print(f"build {name}: {time.monotonic() - start:.1f} s; {proc.stderr.strip().splitlines()[-1]}")
    return out


def rootfs_mb(plugin_dir: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(plugin_dir / "rootfs")], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def install(host, plugin_dir: Path, state: Path) -> str:
    """create + set + enable, the README's way; returns the plugin's ID."""
    host.docker("plugin", "create", PLUGIN, plugin_dir, timeout=300)
    certs = state.parent / "plugin-etcd-certs"  # the etcd-certs mount: the test's own dir, never /etc/pynet
    certs.mkdir(exist_ok=True)
    host.docker("plugin", "set", PLUGIN, "PYNET_LOG_LEVEL=debug", f"state.source={state}",
               f"docker-socket.source={host.socket_path}", f"etcd-certs.source={certs}")
    host.docker("plugin", "enable", PLUGIN, timeout=60)
    return host.docker("plugin", "inspect", "-f", "{{.Id}}", PLUGIN).stdout.strip()


def started(host, cleanup, name, *args, network="n1") -> str:
    """A container on ``network``; its address there."""
    run(host, cleanup, name, *args, network=network)
    return host.container_ip(name, network) if network else ""


def check_story(h, cleanup) -> dict[str, str]:
    """The foundation user story with -d pynet:latest; returns container -> address."""
    cleanup.network("n1", h)
    h.docker("network", "create", "-d", PLUGIN, "--ipam-driver", PLUGIN, "--subnet", SUBNET,
             "--gateway", GATEWAY, "n1")
    ips = {"ca": started(h, cleanup, "ca"), "cb": started(h, cleanup, "cb")}
    assert ips["ca"] != ips["cb"] and all(ip.startswith("10.20.0.") for ip in ips.values())
    h.docker("exec", "ca", "ping", "-c1", "-W2", "cb")  # by name: dockerd's embedded DNS
    h.docker("exec", "ca", "ping", "-c1", "-W2", ips["cb"])
    assert f"default via {GATEWAY}" in h.docker("exec", "ca", "ip", "route").stdout

    started(h, cleanup, "cx", network=None)  # on Docker's own bridge, then connected
    h.docker("network", "connect", "n1", "cx")
    ips["cx"] = h.container_ip("cx", "n1")
    assert ips["cx"] in h.docker("exec", "cx", "ip", "addr", "show", "eth1").stdout
    h.docker("exec", "cx", "ping", "-c1", "-W2", "ca")

    ips["cs"] = started(h, cleanup, "cs", "--ip", "10.20.0.50")
    assert ips["cs"] == "10.20.0.50"
    with pytest.raises(CommandError, match="10.20.0.50 is already in use"):
        started(h, cleanup, "ce", "--ip", "10.20.0.50")
    h.docker("rm", "-f", "ce", check=False)

    inspect = json.loads(h.docker("network", "inspect", "n1").stdout)[0]
    assert inspect["Driver"] == PLUGIN and inspect["IPAM"]["Driver"] == PLUGIN
    assert inspect["IPAM"]["Config"][0]["Subnet"] == SUBNET
    assert sorted(c["Name"] for c in inspect["Containers"].values()) == ["ca", "cb", "cs", "cx"]
    assert f"pn-{inspect['Id'][:12]}" in h.links()
    assert "-A PYNET-FORWARD" in h.ns_exec("iptables", "-S", "PYNET-FORWARD").stdout  # same backend as dockerd
    return ips


def check_fresh_container(h, cleanup, name: str, taken: dict[str, str]) -> None:
    """A new container gets an address nobody has, and reaches the old ones: pynet kept its state."""
    taken[name] = started(h, cleanup, name)
    assert taken[name] not in {ip for c, ip in taken.items() if c != name}, taken
    h.docker("exec", name, "ping", "-c1", "-W2", "ca")
    h.docker("exec", "ca", "ping", "-c1", "-W2", name)


def test_managed_plugin(make_dockerhost, cleanup):
    h = make_dockerhost("mp", pynet=False)
    state = h.workdir / "plugin-state"
    state.mkdir()
    v1 = build(h, "plugin-v1")
    assert json.loads((v1 / "config.json").read_text()) == json.loads((REPO / "config.json").read_text())
    assert (v1 / "rootfs" / "run" / "docker" / "plugins").is_dir()
    size = rootfs_mb(v1)
    print(f"rootfs: {size} MB")
    assert size < ROOTFS_BUDGET_MB, f"rootfs is {size} MB, over the {ROOTFS_BUDGET_MB} MB budget"

    cleanup.add(h.docker, "plugin", "rm", "-f", PLUGIN, check=False)  # after containers and networks
    plugin_id = install(h, v1, state)
    assert (h.plugins_dir / plugin_id / "pynet.sock").is_socket()
    assert not (h.plugins_dir / "pynet.sock").exists()  # no legacy pynet competes
    ips = check_story(h, cleanup)
    assert (state / "pynet.db").exists()  # the store lives in the host's dir, not in the rootfs

    # Docker's rule: no disable while networks use the plugin. -f stops it anyway; the kernel keeps forwarding.
    refused = h.docker("plugin", "disable", PLUGIN, check=False)
    assert refused.returncode != 0 and "in use" in refused.stderr
    h.docker("plugin", "disable", "-f", PLUGIN)
    h.docker("exec", "ca", "ping", "-c1", "-W2", "cb")
    h.docker("plugin", "enable", PLUGIN, timeout=60)
    check_fresh_container(h, cleanup, "cd", ips)

    # Upgrade: a new build replaces the plugin; the state dir carries the networks and addresses over.
    v2 = build(h, "plugin-v2")
    h.docker("plugin", "disable", "-f", PLUGIN)
    h.docker("plugin", "rm", "-f", PLUGIN)  # -f: dockerd still counts n1 as a user of the old plugin
    assert install(h, v2, state) != plugin_id
    check_fresh_container(h, cleanup, "ce", ips)
    h.docker("exec", "ca", "ping", "-c1", "-W2", "cs")

    # Remove: containers, network, plugin; nothing of pynet's is left in the host's netns.
    h.docker("rm", "-f", *ips)
    h.docker("network", "rm", "n1")
    h.docker("plugin", "disable", PLUGIN)
    h.docker("plugin", "rm", PLUGIN)
    assert h.docker("plugin", "ls", "-q").stdout.strip() == ""
    assert pn_links(h) == []
    assert "PYNET" not in h.ns_exec("iptables-save").stdout + h.ns_exec("ip6tables-save").stdout
    assert list(h.plugins_dir.iterdir()) == []
