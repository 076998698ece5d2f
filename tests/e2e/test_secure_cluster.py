"""A secure cluster end to end (issue 11, scope 1): etcd with TLS, client certificates and RBAC.

Two hosts of a Cluster(secure=True) (lab/cluster.py): the tests make a CA, etcd's server certificate
for 192.0.2.10, a client certificate per host; etcd runs with ``--client-cert-auth`` and auth enabled,
user ``pynet`` in a role with readwrite on ``/pynet/`` only; each host runs ``pynet serve --etcd
https://192.0.2.10:2379 --etcd-ca ... --etcd-cert ... --etcd-key ... --etcd-user pynet
--etcd-password-file ...`` next to its real dockerd.  An overlay made on A appears on B, containers on
A and B reach each other, and after an etcd restart (every token etcd had issued is gone) pynet
authenticates again: a container started afterwards is reachable from the other host, through the
re-created watch.
"""

from __future__ import annotations

import json

import pytest

from pynet.lab.wait import wait_until
from tests.e2e.helpers import assert_ping, run

pytestmark = pytest.mark.e2e

APPEAR_S = 10
PROPAGATE_S = 5


def health(host) -> dict:
    from pynet import unixhttp

    status, raw = unixhttp.request(unixhttp.UnixConnection(str(host.pynet_socket), 10), "POST", "/Pynet.Health", {})
    assert status == 200, raw
    return json.loads(raw)


def networks(host) -> set[str]:
    return set(host.docker("network", "ls", "--format", "{{.Name}}").stdout.split())


def test_overlay_across_hosts_on_a_tls_rbac_etcd(make_cluster, cleanup):
    cl = make_cluster(n=2, lease_ttl=8, secure=True)
    a, b = cl.hosts
    args = cl.pynet_args(a)
    assert args[args.index("--etcd") + 1].startswith("https://") and "--etcd-password-file" in args
    # etcd really is locked: no client certificate, or no user, gets nothing
    bare = cl.underlay_exec("curl", "-sS", "--max-time", "5", "--cacert", str(cl.secrets.ca.cert),
                            "-X", "POST", "-d", "{}", f"{cl.etcd_url}/v3/kv/range", check=False)
    assert bare.returncode != 0, bare.stdout
    s = cl.secrets
    no_user = cl.underlay_exec("curl", "-sS", "--max-time", "5", "--cacert", str(s.ca.cert), "--cert",
                               str(s.hosts["a"].cert), "--key", str(s.hosts["a"].key), "-X", "POST",
                               "-d", '{"key": "L3B5bmV0Lw=="}', f"{cl.etcd_url}/v3/kv/range", check=False)
    assert "user name is empty" in no_user.stdout, no_user.stdout + no_user.stderr

    for h in cl.hosts:
        cleanup.network("sec", host=h)
    a.docker("network", "create", "-d", "pynet", "--ipam-driver", "pynet", "-o", "pynet.mode=overlay",
             "-o", "pynet.overlay=sec", "--subnet", "10.77.0.0/24", "sec")
    assert wait_until(lambda: "sec" in networks(b), APPEAR_S, 0.25), f"sec not on b: {networks(b)}"
    run(a, cleanup, "sa", network="sec")
    run(b, cleanup, "sb", network="sec")
    ip_a, ip_b = a.container_ip("sa", "sec"), b.container_ip("sb", "sec")
    assert_ping(a, "sa", ip_b, wait=PROPAGATE_S)
    assert_ping(b, "sb", ip_a, wait=PROPAGATE_S)
    adverts = cl.etcdctl("get", "--prefix", "--keys-only", "/pynet/v1/cluster/endpoints/sec/").stdout.split()
    assert len(adverts) == 2, adverts

    cl.etcd.restart()  # simple tokens live in etcd's memory: every host's token is now refused
    run(b, cleanup, "sb2", network="sec")
    ip_b2 = b.container_ip("sb2", "sec")
    assert_ping(a, "sa", ip_b2, wait=PROPAGATE_S + 10)
    assert_ping(b, "sb2", ip_a, wait=PROPAGATE_S)
    for h in cl.hosts:  # each host's next request was refused and its pynet authenticated again
        assert "no longer accepted" in h.pynet_log.read_text(errors="replace"), h.name
        loops = health(h)["loops"]
        assert {"watch", "lease", "reconciler", "docker-sync"} <= set(loops), loops
        assert "reconciler" in loops and loops["reconciler"]["restarts"] == 0, loops
