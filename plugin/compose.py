"""The composition root: the one place that builds pynet's collaborators and starts its background work.

Single host: the embedded store (sqlite in the state dir) holds everything.  With ``--etcd``: the
cluster store holds IPAM (one address space for every host) and the overlays, and the overlay pieces
are wired as the port says -- the driver gets OverlayNetworks over the port, the etcd control plane
implements it, the reconciler writes the tables.  Built in the gunicorn worker, after the fork, so
netlink and sqlite handles are never shared across processes; nothing here blocks the socket.

Background work, all under one Supervisor (pynet/background.py), each loop visible in /Pynet.Health:

    reconciler      the one writer of the overlays' kernel tables
    startup         replays stored networks and endpoints through the create path, then starts the
                    control plane's loops (lease, watch, docker-sync): replay first, so the control
                    plane knows this host's intent before it tidies etcd
    firewall-order  keeps pynet's jumps in front after dockerd re-inserted its own (every 10 s)
    ipam-journal    applies IPAM releases deferred while etcd was unreachable (every 10 s)
    orphan-gc       records dockerd no longer knows, and what crashes left without a record
                    (driver/gc.py; every --gc-interval seconds, off with 0; after the start-up replay)
    dns-*           the cluster resolver (clusterdns/service.py), unless --dns-address off
    vxlan-probe     answers the other hosts' `pynet doctor` probes on UDP 4789 (pynet/vxlan_probe.py)
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable

from pynet.background import Supervisor
from pynet.health import Health

log = logging.getLogger("pynet")
FIREWALL_CHECK = 10.0
JOURNAL_REPLAY = 10.0


@dataclass
class Services:
    network: object  # pynet.driver.service.NetworkService
    ipam: object  # pynet.ipam.service.IpamService
    health: Health = field(default_factory=Health)
    start: Callable[[], None] = lambda: None  # starts the background work (once the app is built)
    supervisor: Supervisor | None = None
    ops: object = None  # plugin/ops_service.Ops: status, hosts, doctor (the CLI's /Pynet.* calls)


def build_services(settings) -> Services:
    """Wire the real collaborators for ``settings`` (a pynet.plugin.settings.Settings)."""
    from pynet.driver.firewall import IptablesFirewall
    from pynet.driver.kernel.links import Links
    from pynet.driver.service import NetworkService
    from pynet.ipam.service import IpamService
    from pynet.store import open_store

    for noisy in ("pyroute2", "asyncio", "urllib3"):  # after importing pyroute2, which sets its own level
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    store = open_store(settings.state_dir)
    links = Links()
    health = Health()
    supervisor = Supervisor(health)
    if not settings.etcd:
        firewall = IptablesFirewall()
        network = NetworkService(store, links, firewall)
        services = Services(network, IpamService(store, settings.default_pools), health, supervisor=supervisor)
        services.ops = _ops(settings, services, store, firewall=firewall)
        services.start = lambda: _start(services, supervisor,
                                        after_replay=lambda: _start_gc(settings, services, supervisor))
        return services
    return _multi_host(settings, store, links, health, supervisor)


def _multi_host(settings, store, links, health: Health, supervisor: Supervisor) -> Services:
    from pynet.cluster.control import EtcdControlPlane
    from pynet.docker_api import DockerApi
    from pynet.driver.firewall import VTEP_SET, IptablesFirewall, MemberFilter
    from pynet.driver.kernel.ipset import IpSets
    from pynet.driver.overlay.networks import OverlayNetworks
    from pynet.driver.overlay.tables import MEMBERS_TABLE, MembersTable
    from pynet.driver.overlay.reconciler import NAME as RECONCILER, Reconciler
    from pynet.driver.service import NetworkService
    from pynet.ipam.service import IpamService
    from pynet.plugin.secure_etcd import security
    from pynet.store import open_cluster_store
    from pynet.vxlan_probe import NAME as PROBE, Responder

    host_id = host_identity(store)
    shared = open_cluster_store(settings.etcd, security=security(settings))
    control = EtcdControlPlane(shared, host_id, settings.vtep_address, settings.lease_ttl, health,
                               grace_period=settings.grace_period)
    reconciler = Reconciler(health)
    dns = _cluster_dns(settings, control, links)
    sets = IpSets()  # VXLAN only from member hosts: the set the firewall matches, filled by the reconciler
    firewall = IptablesFirewall(members=MemberFilter(
        sets, on_destroyed=lambda: reconciler.nudge([MEMBERS_TABLE], reread=True)))
    members = MembersTable(control, sets, VTEP_SET, on_synced=firewall.arm)
    overlays = OverlayNetworks(control, reconciler, links, settings.vtep_address,
                               dns_address=dns.address if dns is not None else "", members=members)
    network = NetworkService(store, links, firewall, overlays=overlays)
    ipam = IpamService(shared, settings.default_pools, host_id=host_id, journal=store)
    services = Services(network, ipam, health, supervisor=supervisor)
    services.ops = _ops(settings, services, store, firewall=firewall, shared=shared, control=control,
                        reconciler=reconciler, dns_address=str(dns.address) if dns is not None else "")
    log.info("multi-host: host %s, VTEP %s, etcd %s", host_id, settings.vtep_address, settings.etcd)

    def after_replay() -> None:
        control.start(supervisor, DockerApi(settings.docker_host))
        if dns is not None:
            dns.start_names(supervisor, DockerApi(settings.docker_host))
        supervisor.every("ipam-journal", JOURNAL_REPLAY, ipam.replay_deferred, first=JOURNAL_REPLAY)
        _start_gc(settings, services, supervisor)

    def start() -> None:
        supervisor.spawn(RECONCILER, reconciler.run)
        supervisor.spawn(PROBE, Responder(settings.vtep_address).serve)  # `pynet doctor` on the other hosts
        if dns is not None:
            dns.start(supervisor)
        _start(services, supervisor, after_replay)

    services.start = start
    return services


def _ops(settings, services: Services, store, **cluster) -> object:
    """What the CLI's status, hosts and doctor ask (plugin/ops_service.py)."""
    from pynet.docker_api import DockerApi
    from pynet.plugin.ops_service import Ops

    version = _version()
    hosts = None
    if cluster.get("control") is not None:
        from pynet.cluster.hosts import ClusterHosts

        hosts = ClusterHosts(cluster["control"], version)
    return Ops(settings, store, services.network, services.ipam, services.health, hosts=hosts,
               docker=DockerApi(settings.docker_host), version=version, **cluster)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pynet-plugin")
    except PackageNotFoundError:
        return ""


def _cluster_dns(settings, control, links):
    """The cluster resolver (clusterdns/), None with --dns-address off."""
    from pynet.clusterdns.service import ClusterDns, parse_address

    address = parse_address(settings.dns_address)
    if address is None:
        return None
    log.info("cluster DNS on %s (forwarding to the resolvers of %s)", address, settings.dns_resolv_conf)
    return ClusterDns(address, control, links, settings.dns_resolv_conf)


def _start(services: Services, supervisor: Supervisor, after_replay: Callable[[], None]) -> None:
    from pynet.driver.reconcile import reconcile

    def startup() -> None:
        reconcile(services.network)
        after_replay()

    supervisor.once("startup", startup)
    supervisor.every("firewall-order", FIREWALL_CHECK, services.network.keep_firewall_first, first=FIREWALL_CHECK)


def _start_gc(settings, services: Services, supervisor: Supervisor) -> None:
    """The orphan collector, every ``gc_interval`` seconds (0: off); a record must have been missing
    from dockerd's lists for two passes, at least two intervals apart (driver/gc.py)."""
    from pynet.docker_api import DockerApi
    from pynet.driver.gc import NAME, OrphanCollector

    if settings.gc_interval <= 0:
        log.info("orphan collection is off (--gc-interval 0)")
        return
    collector = OrphanCollector(services.network, DockerApi(settings.docker_host),
                                min_age=2 * settings.gc_interval, ipam=services.ipam)
    supervisor.every(NAME, settings.gc_interval, collector.step, first=settings.gc_interval)


def host_identity(store) -> str:
    """This host's id in the cluster: made once, kept in the local store (survives restarts)."""
    from pynet.store import keys

    store.create(keys.local_host_id(), {"id": secrets.token_hex(6)})
    return store.get(keys.local_host_id()).value["id"]
