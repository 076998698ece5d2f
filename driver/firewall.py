"""pynet's packet filter and NAT rules, in pynet's own chains only.

Design note.  When dockerd turns on IP forwarding it sets the FORWARD policy to
DROP, which silently breaks every bridge Docker did not make (anchors.md P18),
and Docker's own isolation knows nothing of pynet's bridges.  pynet therefore
states the whole policy for its bridges in chains of its own, reached by one
jump per built-in chain; Docker's chains are never written:

    filter PYNET-FORWARD      (from DOCKER-USER, else FORWARD)   what may enter / leave each bridge
    nat    PYNET-PREROUTING   (from PREROUTING, local destinations)   published ports
    nat    PYNET-OUTPUT       (from OUTPUT, local destinations)       published ports, host-originated
    nat    PYNET-POSTROUTING  (from POSTROUTING)  outbound masquerade, hairpin, loopback publishing
    raw    PYNET-RAW          (from PREROUTING)   overlays: no conntrack for traffic between containers
                                                      nor for the VXLAN packets between hosts
    raw    PYNET-RAW-OUTPUT   (from OUTPUT)       overlays: nor for the VXLAN packets this host sends
    filter PYNET-INPUT        (from INPUT)        loopback stays the host's: see below

Per bridge, traffic *entering* it from elsewhere is accepted only when it
belongs to a connection the container made or to a published port (conntrack
state DNAT); everything else is dropped, which isolates pynet networks from
each other, from Docker's bridges and from the outside.  Traffic *leaving* it
for Docker's bridges is dropped; the rest is accepted unless the network is
--internal.  ICC decides traffic within the bridge.  Every "enter" rule comes
before every "leave" rule, so one network's accept can never pre-empt another
network's drop.

Overlay networks carry cross-host traffic between containers through the
bridge, and with br_netfilter every such frame would also be connection-tracked
in the host's namespace (swarm's overlay bridge lives in a namespace of its own
and skips that cost; measured, it is most of the gap).  Container-to-container
traffic of an overlay subnet is therefore NOTRACKed in raw PREROUTING; the
FORWARD rules then accept it by ICC (``-i br -o br``), so enable_icc=false still
drops it.  Traffic to or from the gateway, published ports and NAT stay tracked.
The VXLAN packets themselves (UDP 4789 between VTEPs) are not tracked either: a
host firewall that drops INPUT must accept UDP 4789 by port, not by state.

The filter jump goes at the top of DOCKER-USER when that chain exists: Docker
keeps DOCKER-USER's jump first in FORWARD (re-arranged on every network create
and at start) and never edits the chain's contents, whereas it *inserts* its own
accept rules at the top of FORWARD whenever it creates a bridge -- above any
jump pynet put there.  Without DOCKER-USER (dockerd --iptables=false, or
ip6tables unmanaged by dockerd 20.10) the jump goes first in FORWARD.

VXLAN only from member hosts.  With a member filter (multi-host, ``MemberFilter``) and an overlay,
the first rule of PYNET-RAW drops UDP to the VXLAN port whose source is not in the kernel set
``pynet-vteps`` (driver/kernel/ipset.py), before the tunnel decapsulates it: nobody else on the
underlay can inject a frame into an overlay.  The reconciler keeps the set equal to the VTEPs of the
hosts in the cluster view (tables.MembersTable), entry by entry, never flushed.  The rule is *armed*
only once the set was filled from the first listing of the cluster (``arm``), or when the set already
held members at start (it survives a restart of pynet, and lifting the filter then would open it, while
an empty fresh set would cut every tunnel).  The set is created before the rule that references it and
destroyed after the last overlay's rule is gone.

Loopback stays the host's.  pynet turns on route_localnet on its bridges so that loopback-published
ports (-p 127.0.0.1:X:Y) can be DNATed to a container; that would also let a container reach services
bound to the host's 127.0.0.1 by routing 127.0.0.0/8 to its gateway (the CVE-2020-8558 class).  As
kube-proxy does, PYNET-INPUT drops, per pynet bridge, packets to 127.0.0.0/8 from a non-loopback source
unless they belong to a connection (RELATED, ESTABLISHED) or a published port (DNAT).

Text from parsed objects.  Every value written into iptables text is re-parsed here from the record
into a typed value (ipaddress objects, ints in range, a protocol from a fixed list, an interface name of
a strict alphabet without iptables' ``+`` wildcard or a leading ``-``/``!``) and written from that;
anything else is refused with BadRequest naming the network, endpoint and field, before any text
exists.

Bounded.  Every iptables command runs with ``-w WAIT`` (wait that many seconds for the xtables lock,
never forever as a bare ``-w`` does) and a subprocess timeout of WAIT + a margin; a command that still
hangs, or gives up on the lock, fails the request with ``pynet.errors.Timeout`` naming the command.
(The nf_tables backend takes no xtables lock, but the legacy backend and some wrappers do.)

The rule set is a pure function of the stored networks and published ports
(``render``), written whole and atomically with one ``iptables-restore
--noflush`` per family: declared chains are flushed and refilled in the same
transaction, so applying it any number of times yields exactly the same rules.
With no network left, the chains and jumps are removed.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from pynet.driver import rule_values as rv
from pynet.driver import iptables
from pynet.driver.iptables import TIMEOUT, WAIT, FirewallError, FirewallTimeout  # noqa: F401 (re-exported)
from pynet.driver.kernel.netlink import KernelError
from pynet.driver.models import Endpoint, Network
from pynet.errors import Timeout

log = logging.getLogger("pynet.firewall")

CHAIN = "PYNET-FORWARD"
LOCAL = ("-m", "addrtype", "--dst-type", "LOCAL")
# (table, builtin chain, our chain, match of the jump)
JUMPS = (
    ("filter", "FORWARD", CHAIN, ()),
    ("nat", "PREROUTING", "PYNET-PREROUTING", LOCAL),
    ("nat", "OUTPUT", "PYNET-OUTPUT", LOCAL),
    ("nat", "POSTROUTING", "PYNET-POSTROUTING", ()),
    ("raw", "PREROUTING", "PYNET-RAW", ()),
    ("raw", "OUTPUT", "PYNET-RAW-OUTPUT", ()),
    ("filter", "INPUT", "PYNET-INPUT", ()),
)
VXLAN_PORT = 4789
VTEP_SET = "pynet-vteps"  # the kernel set of member VTEPs (driver/kernel/ipset.py)
DOCKER_BRIDGES = ("docker0", "br-+")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Firewall(Protocol):
    def sync(self, networks: list[Network], endpoints: list[Endpoint]) -> None:
        """Make the kernel's pynet rules exactly those for ``networks`` and their published ports. Idempotent."""


def _subnets(net: Network, family: int) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    pools = net.ipv4 if family == 4 else net.ipv6
    return [rv.pool(rv.owner(net), d.pool, family) for d in pools]


def check_network(net: Network) -> None:
    """Refuse (BadRequest) a network any of whose values could not be written as a rule."""
    rv.ifname(rv.owner(net), net.config.bridge)
    for family, pools in ((4, net.ipv4), (6, net.ipv6)):
        for d in pools:
            rv.pool(rv.owner(net), d.pool, family)
            if d.gateway:
                rv.gateway(rv.owner(net), d.gateway, family)


def enter_rules(net: Network, family: int) -> list[str]:
    br = rv.ifname(rv.owner(net), net.config.bridge)
    rules = [f"-A {CHAIN} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    if not net.config.internal:
        rules.append(f"-A {CHAIN} -o {br} -m conntrack --ctstate DNAT -j ACCEPT")
    rules.append(f"-A {CHAIN} -i {br} -o {br} -j {'ACCEPT' if net.config.icc else 'DROP'}")
    rules.append(f"-A {CHAIN} -o {br} -j DROP")
    return rules


def leave_rules(net: Network, family: int) -> list[str]:
    br = rv.ifname(rv.owner(net), net.config.bridge)
    if net.config.internal:
        return [f"-A {CHAIN} -i {br} -j DROP"]
    rules = [f"-A {CHAIN} -i {br} -o {other} -j DROP" for other in DOCKER_BRIDGES]
    return rules + [f"-A {CHAIN} -i {br} -j ACCEPT"]


def nat_rules(net: Network, family: int) -> list[str]:
    if net.config.internal:
        return []
    br, rules = rv.ifname(rv.owner(net), net.config.bridge), []
    for subnet in _subnets(net, family):
        if net.config.masquerade:
            rules.append(f"-A PYNET-POSTROUTING -s {subnet} ! -o {br} -j MASQUERADE")
        # Hairpin: a container reaching a published port of its own network through a
        # host address must see the reply come back through the host, not directly.
        rules.append(f"-A PYNET-POSTROUTING -s {subnet} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE")
    if family == 4:
        # Loopback publishing: 127.0.0.1 may only leave lo with route_localnet, and the
        # container must answer the bridge's address, not 127.0.0.1.  Other host
        # addresses need no rewriting (replies route back by themselves), as with Docker.
        rules.append(f"-A PYNET-POSTROUTING -s 127.0.0.0/8 -o {br} -j MASQUERADE")
    return rules


def raw_rules(net: Network, family: int) -> list[str]:
    """Overlay networks: container <-> container traffic within the subnet skips conntrack."""
    if net.config.mode != "overlay":
        return []
    br, rules = rv.ifname(rv.owner(net), net.config.bridge), []
    for data in net.ipv4 if family == 4 else net.ipv6:
        pool = rv.pool(rv.owner(net), data.pool, family)
        if data.gateway:  # the host's own traffic (gateway) keeps its state for INPUT/OUTPUT rules
            gw = rv.gateway(rv.owner(net), data.gateway, family)
            rules.append(f"-A PYNET-RAW -i {br} -d {gw} -j RETURN")
        rules.append(f"-A PYNET-RAW -i {br} -s {pool} -d {pool} -j NOTRACK")
    return rules


def input_rules(net: Network, family: int) -> list[str]:
    """Loopback stays the host's (kube-proxy's KUBE-FIREWALL rule, per pynet bridge): with
    route_localnet on, only replies and published ports' DNAT may reach 127.0.0.0/8 from a container."""
    if family != 4:
        return []  # ::1 is never routed off lo
    br = rv.ifname(rv.owner(net), net.config.bridge)
    return [f"-A PYNET-INPUT -i {br} ! -s {LOOPBACK} -d {LOOPBACK} "
            "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"]


def member_rules(set_name: str) -> list[str]:
    """VXLAN only from member hosts: the first rule of PYNET-RAW, ahead of the NOTRACK rules."""
    return [f"-A PYNET-RAW -p udp -m udp --dport {rv.port('the member filter', 'host_port', VXLAN_PORT)} "
            f"-m addrtype --dst-type LOCAL -m set ! --match-set {rv.set_name(set_name)} src -j DROP"]


def port_rules(ep: Endpoint, family: int) -> list[str]:
    owner, rules = f"endpoint {str(ep.id)[:12]!r}", []
    for b in ep.published:
        if not isinstance(b, dict) or b.get("family") not in (4, 6):
            raise rv.refuse(owner, "family", b.get("family") if isinstance(b, dict) else b)
        if b["family"] != family:
            continue
        host_ip = rv.address(owner, "host_ip", b.get("host_ip"), family)
        container_ip = rv.address(owner, "container_ip", b.get("container_ip"), family)
        proto = rv.proto(owner, b.get("proto"))
        host_port = rv.port(owner, "host_port", b.get("host_port"))
        container_port = rv.port(owner, "container_port", b.get("container_port"))
        dest = f"-d {host_ip} " if not host_ip.is_unspecified else ""
        target = f"[{container_ip}]" if family == 6 else f"{container_ip}"
        rule = (f"{dest}-p {proto} -m {proto} --dport {host_port} "
                f"-j DNAT --to-destination {target}:{container_port}")
        rules += [f"-A PYNET-PREROUTING {rule}", f"-A PYNET-OUTPUT {rule}"]
    return rules


def render(networks: list[Network], endpoints: list[Endpoint], family: int, vtep_set: str | None = None) -> str:
    """The iptables-restore input (filter, nat, raw) for ``networks`` and their endpoints; with
    ``vtep_set`` (an armed member filter) and an overlay, VXLAN only from that set's addresses."""
    nets = sorted((n for n in networks if family == 4 or n.ipv6), key=lambda n: n.id)
    ids = {n.id for n in nets}
    filter_rules = [r for n in nets for r in enter_rules(n, family)]
    filter_rules += [r for n in nets for r in leave_rules(n, family)]
    inputs = [r for n in nets for r in input_rules(n, family)]
    nat = [r for n in nets for r in nat_rules(n, family)]
    nat += [r for e in sorted(endpoints, key=lambda e: e.id) if e.network_id in ids for r in port_rules(e, family)]
    lines = ["*filter", f":{CHAIN} - [0:0]", ":PYNET-INPUT - [0:0]", *filter_rules, *inputs, "COMMIT", "*nat"]
    lines += [f":{chain} - [0:0]" for table, _, chain, _ in JUMPS if table == "nat"]
    lines += [*nat, "COMMIT", "*raw", ":PYNET-RAW - [0:0]", ":PYNET-RAW-OUTPUT - [0:0]"]
    if family == 4 and vtep_set is not None and any(n.config.mode == "overlay" for n in nets):
        lines += member_rules(vtep_set)
    lines += [r for n in nets for r in raw_rules(n, family)]
    if family == 4 and any(n.config.mode == "overlay" for n in nets):
        # The tunnel's own UDP packets between VTEPs: a stateless flow the host never NATs.
        tunnel = f"-p udp -m udp --dport {VXLAN_PORT}"
        lines += [f"-A PYNET-RAW {tunnel} -m addrtype --dst-type LOCAL -j NOTRACK",
                  f"-A PYNET-RAW-OUTPUT {tunnel} -m addrtype --src-type LOCAL -j NOTRACK"]
    lines += ["COMMIT"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MemberFilter:
    """Multi-host: VXLAN accepted only from the addresses in kernel set ``set_name``."""

    sets: object  # driver.kernel.ipset.IpSets (ensure, destroy, members)
    set_name: str = VTEP_SET
    # After the set was destroyed: its writer (the reconciler's members table) must read it again, since a
    # concurrent create may already have registered the table and believe the old entries are there.
    on_destroyed: Callable[[], object] = lambda: None


class IptablesFirewall:
    """Firewall on the iptables/ip6tables commands (nf_tables or legacy, as dockerd uses)."""

    def __init__(self, command_prefix: tuple[str, ...] = (), members: MemberFilter | None = None,
                 wait: int = WAIT, timeout: float = TIMEOUT) -> None:
        # ``command_prefix`` (e.g. ("ip", "netns", "exec", NS)) lets tests aim at a throwaway namespace.
        self._prefix = list(command_prefix)
        self._wait, self._timeout = ["-w", str(int(wait))], timeout
        self._lock = threading.Lock()
        self._members = members
        self._armed: bool | None = None  # None: not decided since the set was (re)made; see the module note
        self._last: tuple[list[Network], list[Endpoint]] | None = None
        self._families = [(4, "iptables")]
        if shutil.which("ip6tables-restore"):
            self._families.append((6, "ip6tables"))

    def sync(self, networks: list[Network], endpoints: list[Endpoint] = ()) -> None:
        with self._lock:
            self._sync(list(networks), list(endpoints))

    def arm(self) -> bool:
        """The member set now holds the cluster's VTEPs (the reconciler filled it from a listing): from
        now on the VXLAN filter is in force.  True if that rewrote the rules."""
        with self._lock:
            if self._members is None or self._armed:
                return False
            if not self._members.sets.members(self._members.set_name):
                # The set is not what the reconciler believes (destroyed and made again meanwhile): never
                # enforce an empty set; the re-read that on_destroyed asked for arms it once it is full.
                return False
            self._armed = True
            if self._last is None or not _has_overlay(self._last[0]):
                return False  # the sync that brings the overlay writes the rule
            self._sync(*self._last)
            return True

    @property
    def armed(self) -> bool:
        return bool(self._armed)

    def _sync(self, networks: list[Network], endpoints: list[Endpoint]) -> None:
        self._last = (networks, endpoints)
        overlay = self._members is not None and _has_overlay(networks)
        vtep_set = self._prepare_members() if overlay else None
        for family, tool in self._families:
            if any(family == 4 or n.ipv6 for n in networks):
                self._apply(render(networks, endpoints, family, vtep_set), tool)
            else:
                self._remove(tool)
        if self._members is not None and not overlay:
            # after the rule that referenced it is gone (the kernel refuses to destroy a set in use)
            try:
                self._members.sets.destroy(self._members.set_name)
            except (KernelError, Timeout) as exc:  # in use by someone else's rule, or hung: the network still goes
                log.warning("%s", exc)
            self._armed = None
            self._members.on_destroyed()

    def _prepare_members(self) -> str | None:
        """The set exists (before any rule names it); its name if the filter is armed, else None."""
        sets, name = self._members.sets, self._members.set_name
        if self._armed is None:
            # A set that survived a restart of pynet already holds the cluster's members: keep the filter
            # (its rule is in the kernel too).  A set made just now is empty: wait for ``arm``.
            self._armed = bool(sets.members(name))
        sets.ensure(name)
        return name if self._armed else None

    def _apply(self, rules: str, tool: str) -> None:
        iptables.run(self._prefix + [f"{tool}-restore", *self._wait, "--noflush"], rules, self._timeout)
        for table, builtin, chain, match in self._jumps(tool):
            if not self._ok(tool, "-t", table, "-C", builtin, *match, "-j", chain):
                iptables.run(self._prefix + [tool, *self._wait, "-t", table, "-I", builtin, "1", *match, "-j", chain],
                     timeout=self._timeout)
        if self._has_docker_user(tool):  # a jump left in FORWARD from before dockerd made DOCKER-USER
            while self._ok(tool, "-t", "filter", "-D", "FORWARD", "-j", CHAIN):
                pass

    def _jumps(self, tool: str):
        """JUMPS with the filter jump taken from DOCKER-USER when that chain exists."""
        user = self._has_docker_user(tool)
        return [(t, "DOCKER-USER" if user and b == "FORWARD" else b, c, m) for t, b, c, m in JUMPS]

    def _has_docker_user(self, tool: str) -> bool:
        return self._ok(tool, "-t", "filter", "-S", "DOCKER-USER")

    def _remove(self, tool: str) -> None:
        for table, builtin, chain, match in JUMPS + (("filter", "DOCKER-USER", CHAIN, ()),):
            while self._ok(tool, "-t", table, "-D", builtin, *match, "-j", chain):
                pass
        for table, _, chain, _ in JUMPS:
            if self._ok(tool, "-t", table, "-F", chain):
                self._ok(tool, "-t", table, "-X", chain)

    def _ok(self, tool: str, *args: str) -> bool:
        return iptables.ok(self._prefix + [tool, *self._wait, *args], self._timeout)

    def keep_first(self) -> int:
        """Move pynet's jumps back in front of Docker's rules; returns how many moved.

        dockerd inserts its own rules at the top whenever it starts or creates a
        network.  The filter jump is safe at the top of DOCKER-USER; this check
        catches the rest (nat jumps, FORWARD without DOCKER-USER, DOCKER-USER
        appearing after pynet started).  Insert the new jump first, then delete
        the old one by number, so there is never a moment without it.
        """
        moved = 0
        with self._lock:
            for _, tool in self._families:
                if self._has_docker_user(tool) and self._ok(tool, "-t", "filter", "-C", "FORWARD", "-j", CHAIN):
                    # dockerd created DOCKER-USER after pynet started: move the jump there.
                    self._ok(tool, "-t", "filter", "-I", "DOCKER-USER", "1", "-j", CHAIN)
                    while self._ok(tool, "-t", "filter", "-D", "FORWARD", "-j", CHAIN):
                        moved += 1
                for table, builtin, chain, match in self._jumps(tool):
                    moved += self._move_to_front(tool, table, builtin, " ".join(("-j", chain)))
        return moved

    def _move_to_front(self, tool: str, table: str, builtin: str, jump: str) -> int:
        rules = self._rules(tool, table, builtin)
        ours = [i for i, r in enumerate(rules) if r.endswith(jump)]
        if not ours:
            return 0
        want = 1 if builtin != "DOCKER-USER" and rules and rules[0].endswith("-j DOCKER-USER") else 0
        if ours[0] == want:
            return 0
        spec = rules[ours[0]].split()[2:]  # "-A FORWARD <match...> -j CHAIN" -> the rule spec
        iptables.run(self._prefix + [tool, *self._wait, "-t", table, "-I", builtin, str(want + 1), *spec],
             timeout=self._timeout)
        iptables.run(self._prefix + [tool, *self._wait, "-t", table, "-D", builtin, str(ours[0] + 2)],
                     timeout=self._timeout)
        log.info("moved %s jump to %s %s back in front of Docker's rules", table, builtin, jump)
        return 1

    def order_problems(self, networks: list[Network]) -> list[str]:
        """Read only, for `pynet doctor`: each of pynet's jumps that is missing or not in front (where
        keep_first puts it), and a FORWARD policy other than DROP; [] when all is in order.  The
        families checked are the ones ``sync`` writes for ``networks``."""
        problems = []
        for family, tool in self._families:
            if not any(family == 4 or n.ipv6 for n in networks):
                continue
            # IPv4 only: dockerd sets it (--iptables), and before 27 leaves ip6tables' ACCEPT alone
            policy = [r.split()[2] for r in self._policy(tool) if r.startswith("-P FORWARD ")] if family == 4 else []
            if policy and policy[0] != "DROP":
                problems.append(f"{tool}: FORWARD policy is {policy[0]}, not DROP (containers of other "
                                "bridges are reachable through this host)")
            for table, builtin, chain, _ in self._jumps(tool):
                rules = self._rules(tool, table, builtin)
                ours = [i for i, r in enumerate(rules) if r.endswith(f"-j {chain}")]
                want = 1 if builtin != "DOCKER-USER" and rules and rules[0].endswith("-j DOCKER-USER") else 0
                if not ours:
                    problems.append(f"{tool} -t {table} {builtin}: no jump to {chain}")
                elif ours[0] != want:
                    problems.append(f"{tool} -t {table} {builtin}: the jump to {chain} is rule {ours[0] + 1}, "
                                    f"not {want + 1}")
        return problems

    def _policy(self, tool: str) -> list[str]:
        proc = iptables.execute(self._prefix + [tool, *self._wait, "-t", "filter", "-S", "FORWARD"], None,
                                self._timeout)
        return [line for line in proc.stdout.splitlines() if line.startswith("-P ")]

    def _rules(self, tool: str, table: str, builtin: str) -> list[str]:
        proc = iptables.execute(self._prefix + [tool, *self._wait, "-t", table, "-S", builtin], None, self._timeout)
        return [l for l in proc.stdout.splitlines() if l.startswith("-A ")]


def _has_overlay(networks: list[Network]) -> bool:
    return any(n.config.mode == "overlay" for n in networks)


