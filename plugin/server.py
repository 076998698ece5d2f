"""Runs the app under gunicorn on the unix socket.

Design note.  One worker process with threads (gthread): all state lives in
the store, but the kernel handle, the per-endpoint locks and the background
reconciler must be single per host, so there is exactly one worker.  The
arbiter binds the socket before the worker has even imported the app, so
dockerd can connect within a second of start; requests wait in the backlog
until the worker is ready.  The worker builds the services (after the fork, so
netlink and sqlite handles are never shared across processes) and starts
reconciliation in a background thread: heavy start-up work never delays the
socket.  SIGTERM is gunicorn's graceful stop; the socket file is removed.
"""

from __future__ import annotations

import logging
import os
import socket as socketlib
import sys
import threading

import pynet
from gunicorn.app.base import BaseApplication

from pynet.plugin.settings import Settings

log = logging.getLogger("pynet")
# The folder that holds the pynet package (site-packages, or the repository for an editable install).
_IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pynet.__file__)))


def build_services(settings: Settings):
    """Wire the real collaborators: store in the state dir, netlink, iptables; with --etcd also the
    cluster store, which then holds IPAM (one address space for every host) and the overlays."""
    from pynet.driver.firewall import IptablesFirewall
    from pynet.driver.kernel.links import Links
    from pynet.driver.service import NetworkService
    from pynet.ipam.service import IpamService
    from pynet.plugin.app import Services
    from pynet.store import open_store

    for noisy in ("pyroute2", "asyncio", "urllib3"):  # after importing pyroute2, which sets its own level
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    store = open_store(settings.state_dir)
    links = Links()
    if not settings.etcd:
        network = NetworkService(store, links, IptablesFirewall())
        return Services(network=network, ipam=IpamService(store, settings.default_pools))
    from pynet.cluster.agent import ClusterAgent
    from pynet.cluster.docker_api import DockerApi
    from pynet.cluster.service import ClusterService
    from pynet.store import open_cluster_store

    host_id = _host_id(store)
    shared = open_cluster_store(settings.etcd)
    cluster = ClusterService(shared, links, host_id, settings.vtep_address, settings.lease_ttl)
    network = NetworkService(store, links, IptablesFirewall(), cluster=cluster)
    services = Services(network=network, ipam=IpamService(shared, settings.default_pools, host_id=host_id,
                                                          journal=store))
    log.info("multi-host: host %s, VTEP %s, etcd %s", host_id, settings.vtep_address, settings.etcd)
    services.agent = ClusterAgent(cluster, network, DockerApi(settings.docker_host), ipam=services.ipam)
    return services


def _host_id(store) -> str:
    """This host's id in the cluster: made once, kept in the local store (survives restarts)."""
    import secrets

    from pynet.store import keys

    store.create(keys.local_host_id(), {"id": secrets.token_hex(6)})
    return store.get(keys.local_host_id()).value["id"]


def _start_reconciler(services) -> None:
    from pynet.driver.reconcile import reconcile

    def run():
        try:
            reconcile(services.network)
        except Exception:
            log.exception("start-up reconciliation failed")
        if services.agent is not None:
            services.agent.start()  # after the kernel matches the local records

    threading.Thread(target=run, name="pynet-reconcile", daemon=True).start()
    threading.Thread(target=_keep_firewall_first, args=(services,), name="pynet-fw-keeper", daemon=True).start()


def _keep_firewall_first(services, every: float = 10.0) -> None:
    """dockerd re-inserts its rules at the top when it restarts, without telling pynet."""
    import time

    while True:
        time.sleep(every)
        try:
            if services.network.repo.networks():
                services.network.firewall.keep_first()
        except Exception:
            log.exception("checking the order of pynet's firewall jumps failed")


class _Gunicorn(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        for key, value in {
            "bind": [f"unix:{s.socket}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": s.threads,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 30,  # dockerd's Go client keeps connections open
            "loglevel": s.log_level,
            "errorlog": "-",
            "accesslog": "-" if s.log_level == "debug" else None,
            "proc_name": "pynet",
            "umask": 0o077,
            # gunicorn puts chdir first on sys.path: make it where pynet is installed, never the caller's cwd.
            "chdir": _IMPORT_ROOT,
            # Newer gunicorn opens a control socket in ~/.gunicorn, shared by every instance; pynet needs none.
            "control_socket_disable": True,
        }.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        from pynet.plugin.app import create_app

        services = build_services(self.settings)
        _start_reconciler(services)
        return create_app(services)


def _check_socket(path: str) -> None:
    """Refuse to steal a live plugin's socket; a stale one is replaced by gunicorn."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socketlib.socket(socketlib.AF_UNIX)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        log.info("replacing stale socket %s", path)
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SystemExit(f"pynet: another process is already serving on {path}")


def _check_multi_host(settings: Settings) -> Settings:
    """Fill in the VTEP address (the default route's source) and refuse what cannot work, before
    the socket is bound: a wrong etcd URL or VTEP should stop `pynet serve`, not every request."""
    from dataclasses import replace

    from pynet.driver.kernel.links import Links
    from pynet.store.etcd import parse_endpoints

    try:
        parse_endpoints(settings.etcd)
    except ValueError as exc:
        raise SystemExit(f"pynet: --etcd: {exc}") from None
    links = Links()
    vtep = settings.vtep_address
    try:
        vtep = vtep or links.default_source_address()
        if not vtep:
            raise SystemExit("pynet: no --vtep-address given and no default route to take it from")
        links.underlay_mtu(vtep)
    except SystemExit:
        raise
    except Exception as exc:
        raise SystemExit(f"pynet: --vtep-address {vtep}: {exc}") from None
    finally:
        links.close()
    return replace(settings, vtep_address=vtep)


def serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.etcd:
        settings = _check_multi_host(settings)
    _check_socket(settings.socket)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    log.info("pynet serving driver %r on %s, state in %s", settings.driver_name, settings.socket, settings.state_dir)
    _Gunicorn(settings).run()
    return 0
