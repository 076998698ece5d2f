"""What `pynet status`, `pynet hosts` and `pynet doctor` ask the running pynet: the server's side.

Design note.  Only the serving process knows its background loops, its view of the cluster, the tables the
reconciler owns and the settings it runs with, so the CLI asks it (``POST /Pynet.Status``, ``/Pynet.Hosts``,
``/Pynet.HostsRemove``, ``/Pynet.Doctor``; plugin/app.py) and only prints.  Everything here reads, except
``evict`` (cluster/hosts.py, the IPAM's ``forget_host``).  Every check is bounded: the store's own timeout,
iptables' (driver/iptables.py), the Docker API's, and the VXLAN probe's (pynet/vxlan_probe.py: at most
``PROBE_TRIES * PROBE_TIMEOUT`` per peer and check).  A check's failure is a result, never an exception: a
doctor that dies on the first broken thing tells nothing about the others.

The collaborators come from compose.py (the one place that knows their types); in single-host mode the
cluster ones are None and their checks are left out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pynet.store import keys

log = logging.getLogger("pynet.ops")
PROBE_TIMEOUT = 1.0
PROBE_TRIES = 2
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
SLOW_STORE = 0.5  # seconds: an etcd slower than this makes every Docker call on an overlay slow
TABLE_SETTLE = 1.0  # seconds to let the reconciler finish a pass before a second look at a differing table
PROC = Path("/proc/sys")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict:
        return {"Name": self.name, "OK": self.ok, "Detail": self.detail, "Fix": "" if self.ok else self.fix}


@dataclass
class Ops:
    settings: object  # pynet.plugin.settings.Settings
    store: object  # the local store
    network: object  # driver.service.NetworkService
    ipam: object  # ipam.service.IpamService
    health: object  # pynet.health.Health
    shared: object = None  # the cluster store (etcd), multi-host only
    control: object = None  # cluster.control.EtcdControlPlane
    hosts: object = None  # cluster.hosts.ClusterHosts
    reconciler: object = None  # driver.overlay.reconciler.Reconciler
    firewall: object = None  # driver.firewall.IptablesFirewall
    dns_address: str = ""  # the cluster resolver's address, "" without one
    docker: object = None  # pynet.docker_api.DockerApi of --docker-host
    version: str = ""

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict:
        cluster = self.control is not None
        doc = {"Host": {"ID": self.control.host_id if cluster else "", "VTEP": self.settings.vtep_address or "",
                        "Version": self.version, "Mode": "multi-host" if cluster else "single-host"},
               "Store": self._store_status(), "Health": self.health.snapshot(), "Networks": self._networks(),
               "Settings": {"LeaseTTL": self.settings.lease_ttl, "GracePeriod": self.settings.grace_period,
                            "GCInterval": self.settings.gc_interval}}
        if cluster:
            members = self.control.members()
            doc["Overlays"] = self.hosts.overlays()
            doc["Hosts"] = self.hosts.hosts()
            doc["MemberSet"] = {"VTEPs": sorted(members) if members is not None else None,
                                "FilterArmed": bool(getattr(self.firewall, "armed", False))}
            doc["DNS"] = {"Address": self.dns_address}
        return doc

    def hosts_list(self) -> dict:
        if self.hosts is None:
            return {"Hosts": [], "Mode": "single-host"}
        return {"Hosts": self.hosts.hosts(), "Mode": "multi-host"}

    def evict(self, req) -> dict:
        """``hosts rm``: the dead host's records (cluster/hosts.py), then its share of the IPAM."""
        from pynet.errors import BadRequest

        if self.hosts is None:
            raise BadRequest("this pynet runs single-host (no --etcd): there are no other hosts to remove")
        report = self.hosts.evict(req.host, force=req.force)
        freed = self.ipam.forget_host(report.host, report.addresses)
        log.warning("evicted host %s%s: %d adverts, memberships %s, pools %s, addresses %s", report.host,
                    " (forced)" if report.forced else "", report.adverts, report.memberships, freed["Pools"],
                    freed["Addresses"])
        doc = report.to_dict()
        doc["Pools"], doc["Addresses"] = freed["Pools"], freed["Addresses"]
        return doc

    def _store_status(self) -> dict:
        if self.shared is not None:
            kind, where, probe = "etcd", self.settings.etcd, self.shared.current_revision
        else:
            kind, where = "sqlite", str(Path(self.settings.state_dir))
            probe = lambda: self.store.get(keys.local_host_id())  # noqa: E731
        started = time.monotonic()
        try:
            probe()
            return {"Kind": kind, "Where": where, "Reachable": True,
                    "LatencyMs": round((time.monotonic() - started) * 1000, 2), "Error": ""}
        except Exception as exc:  # Unavailable, a timeout: the answer, not a failure of status
            return {"Kind": kind, "Where": where, "Reachable": False, "LatencyMs": None,
                    "Error": str(exc) or type(exc).__name__}

    def _networks(self) -> list[dict]:
        repo = self.network.repo
        out = []
        for net in sorted(repo.networks(), key=lambda n: n.id):
            c = net.config
            out.append({"ID": net.id, "Mode": c.mode, "Bridge": c.bridge, "Overlay": c.overlay, "VNI": c.vni,
                        "MTU": c.mtu, "Internal": c.internal,
                        "Subnets": [d.pool for d in net.ipv4 + net.ipv6],
                        "Endpoints": [{"ID": ep.id, "Address": ep.address, "AddressV6": ep.address_v6,
                                       "MAC": ep.mac, "Joined": ep.joined}
                                      for ep in sorted(repo.endpoints(net.id), key=lambda e: e.id)]})
        return out

    # -- doctor ---------------------------------------------------------------------------
    def doctor(self) -> dict:
        checks: list[Check] = []
        for step in (self._check_firewall, self._check_sysctls, self._check_store, self._check_loops,
                     self._check_docker, self._check_peers, self._check_tables, self._check_dns):
            try:
                checks += step()
            except Exception as exc:  # a check that could not run is a failed check, named
                log.exception("doctor: %s could not run", step.__name__)
                checks.append(Check(step.__name__.removeprefix("_check_"), False,
                                    f"could not be checked: {type(exc).__name__}: {exc}",
                                    "see pynet's log for the traceback"))
        return {"Checks": [c.to_dict() for c in checks]}

    def _check_firewall(self) -> list[Check]:
        networks = [n for n in self.network.repo.networks() if n.config.mode != "macvlan"]  # as sync_firewall
        if not networks:
            return [Check("firewall", True, "no pynet bridge or overlay networks on this host: no rules to check")]
        problems = self.firewall.order_problems(networks)
        return [Check("firewall", not problems, "; ".join(problems) or
                      "FORWARD policy DROP; pynet's jumps are in front of Docker's",
                      "pynet moves its jumps back within 10 s (firewall-order loop); if this stays, look "
                      "for another tool inserting rules (iptables -S FORWARD), and keep FORWARD's policy DROP")]

    def _check_sysctls(self) -> list[Check]:
        forward = _sysctl("net/ipv4/ip_forward")
        bridge_nf = _sysctl("net/bridge/bridge-nf-call-iptables")
        return [
            Check("ip_forward", forward == "1", f"net.ipv4.ip_forward = {forward or 'missing'}",
                  "sysctl -w net.ipv4.ip_forward=1 (dockerd --ip-forward=true sets it)"),
            Check("br_netfilter", bridge_nf == "1",
                  "br_netfilter loaded, net.bridge.bridge-nf-call-iptables = 1" if bridge_nf == "1" else
                  f"net.bridge.bridge-nf-call-iptables = {bridge_nf or 'missing (br_netfilter not loaded)'}",
                  "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 "
                  "(without it --icc=false and published ports between containers are not filtered)"),
        ]

    def _check_store(self) -> list[Check]:
        s = self._store_status()
        if not s["Reachable"]:
            return [Check(s["Kind"], False, f"{s['Where']} unreachable: {s['Error']}",
                          "start etcd or fix --etcd / its TLS settings; pynet keeps running on what it knows"
                          if s["Kind"] == "etcd" else f"check the state dir {s['Where']} (disk full? permissions?)")]
        slow = s["LatencyMs"] / 1000 > SLOW_STORE
        return [Check(s["Kind"], not slow, f"{s['Where']} answers in {s['LatencyMs']} ms",
                      f"the store took over {SLOW_STORE * 1000:.0f} ms: every overlay call waits for it; "
                      "look at etcd's disk and network")]

    def _check_loops(self) -> list[Check]:
        loops = self.health.snapshot()["loops"]
        bad = {n: s for n, s in loops.items() if s["consecutive_failures"] > 0}
        detail = "; ".join(f"{n}: {s['last_error']} ({s['consecutive_failures']} in a row)"
                           for n, s in sorted(bad.items()))
        return [Check("background loops", not bad, detail or f"{len(loops)} loops, none failing "
                      f"({', '.join(sorted(loops))})",
                      "the error names what each loop could not reach; `pynet status` shows when it last worked")]

    def _check_docker(self) -> list[Check]:
        if self.docker is None:
            return []
        try:
            version = self.docker.api_version()
        except Exception as exc:
            return [Check("docker api", False, f"{self.settings.docker_host}: {exc}",
                          "is dockerd running, and is --docker-host / PYNET_DOCKER_HOST its socket?")]
        return [Check("docker api", True, f"{self.settings.docker_host} speaks API {version}")]

    def _peers(self) -> list[dict]:
        return [h for h in self.hosts.hosts() if h["State"] in ("live", "departing") and h["VTEP"]]

    def _check_peers(self) -> list[Check]:
        if self.hosts is None:
            return []
        from pynet import vxlan_probe

        me = self.settings.vtep_address
        peers = self._peers()
        mtus = [n.config.mtu for n in self.network.repo.networks() if n.config.mode == "overlay"]
        checks = []
        if not peers:
            checks.append(Check("udp 4789", True, "no other hosts in the cluster"))
        for h in peers:
            name = f"host {h['ID']} (VTEP {h['VTEP']})"
            rtt = _probe(vxlan_probe.probe, me, h["VTEP"])
            checks.append(Check(f"udp 4789 {h['ID']}", isinstance(rtt, float),
                                f"{name} answers on UDP 4789 in {rtt * 1000:.2f} ms" if isinstance(rtt, float) else
                                f"{name}: no answer on UDP 4789 {rtt or ''}".rstrip(),
                                f"let UDP 4789 from {me} in on {h['VTEP']} (its firewall, a cloud security group), "
                                "and check pynet runs there"))
            if mtus and isinstance(rtt, float):
                size = max(mtus) + VXLAN_OVERHEAD
                got = _probe(vxlan_probe.probe, me, h["VTEP"], size=size)
                checks.append(Check(f"path mtu {h['ID']}", isinstance(got, float),
                                    f"{size}-byte packets with DF reach {name}" if isinstance(got, float) else
                                    f"{size}-byte packets with DF do not reach {name} {got or ''}".rstrip(),
                                    f"raise the underlay MTU on the path to {size}, or give the overlays "
                                    "-o com.docker.network.driver.mtu=<underlay MTU - 50>"))
        return checks

    def _check_tables(self) -> list[Check]:
        if self.reconciler is None:
            return []
        names = self.reconciler.tables()
        if not names:
            return [Check("kernel tables", True, "no overlay tables on this host")]
        differ = {n: d for n in names if (d := _difference(self.reconciler.table(n)))}
        if differ:  # a pass may be under way: look again once the reconciler had its chance
            time.sleep(TABLE_SETTLE)
            differ = {n: d for n in differ if (d := _difference(self.reconciler.table(n)))}
        detail = "; ".join(f"{n}: {d}" for n, d in sorted(differ.items()))
        return [Check("kernel tables", not differ,
                      detail or f"{len(names)} tables (VXLAN FDB and neighbours, member set) equal the cluster view",
                      "the reconciler retries every pass; a difference that stays is in `pynet status` "
                      "(reconciler's last error)")]

    def _check_dns(self) -> list[Check]:
        if self.control is None:
            return []
        if not self.dns_address:
            return [Check("cluster dns", True, "off (--dns-address off)")]
        loops = self.health.snapshot()["loops"]
        bad = [n for n, s in loops.items() if n.startswith("dns") and s["consecutive_failures"]]
        return [Check("cluster dns", not bad, f"resolver on {self.dns_address}" +
                      (f", failing: {', '.join(bad)}" if bad else ""),
                      "see `pynet status` for the dns loops' last error")]


def _sysctl(path: str) -> str:
    try:
        return (PROC / path).read_text().strip()
    except OSError:
        return ""


def _probe(fn, *args, **kwargs):
    """A float (seconds) when answered; otherwise a short text why not (None: no answer)."""
    try:
        return fn(*args, timeout=PROBE_TIMEOUT, tries=PROBE_TRIES, **kwargs)
    except OSError as exc:
        return f"({exc.strerror or exc})"


def _difference(table) -> str:
    """What differs between ``table``'s desired and actual content, "" if nothing (or it is gone)."""
    if table is None:
        return ""
    desired = table.desired()
    if desired is None:
        return "the cluster view is not loaded yet"
    actual = table.actual()
    missing = sorted(str(k) for k in desired if actual.get(k) != desired[k])
    extra = sorted(str(k) for k in actual if k not in desired)
    parts = ([f"missing or different: {', '.join(missing[:5])}"] if missing else []) + \
            ([f"not in the cluster view: {', '.join(extra[:5])}"] if extra else [])
    return "; ".join(parts)


