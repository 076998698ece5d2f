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
import subprocess
import threading
from typing import Protocol

from pynet.driver.models import Endpoint, Network

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
)
VXLAN_PORT = 4789
DOCKER_BRIDGES = ("docker0", "br-+")


class Firewall(Protocol):
    def sync(self, networks: list[Network], endpoints: list[Endpoint]) -> None:
        """Make the kernel's pynet rules exactly those for ``networks`` and their published ports. Idempotent."""


def _subnets(net: Network, family: int) -> list[str]:
    pools = net.ipv4 if family == 4 else net.ipv6
    return [d.pool for d in pools]


def enter_rules(net: Network, family: int) -> list[str]:
    br = net.config.bridge
    rules = [f"-A {CHAIN} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    if not net.config.internal:
        rules.append(f"-A {CHAIN} -o {br} -m conntrack --ctstate DNAT -j ACCEPT")
    rules.append(f"-A {CHAIN} -i {br} -o {br} -j {'ACCEPT' if net.config.icc else 'DROP'}")
    rules.append(f"-A {CHAIN} -o {br} -j DROP")
    return rules


def leave_rules(net: Network, family: int) -> list[str]:
    br = net.config.bridge
    if net.config.internal:
        return [f"-A {CHAIN} -i {br} -j DROP"]
    rules = [f"-A {CHAIN} -i {br} -o {other} -j DROP" for other in DOCKER_BRIDGES]
    return rules + [f"-A {CHAIN} -i {br} -j ACCEPT"]


def nat_rules(net: Network, family: int) -> list[str]:
    if net.config.internal:
        return []
    br, rules = net.config.bridge, []
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
    br, rules = net.config.bridge, []
    for data in net.ipv4 if family == 4 else net.ipv6:
        if data.gateway:  # the host's own traffic (gateway) keeps its state for INPUT/OUTPUT rules
            gw = ipaddress.ip_interface(data.gateway).ip
            rules.append(f"-A PYNET-RAW -i {br} -d {gw} -j RETURN")
        rules.append(f"-A PYNET-RAW -i {br} -s {data.pool} -d {data.pool} -j NOTRACK")
    return rules


def port_rules(ep: Endpoint, family: int) -> list[str]:
    rules = []
    for b in ep.published:
        if b["family"] != family:
            continue
        dest = f"-d {b['host_ip']} " if not ipaddress.ip_address(b["host_ip"]).is_unspecified else ""
        target = f"[{b['container_ip']}]" if family == 6 else b["container_ip"]
        rule = (f"{dest}-p {b['proto']} -m {b['proto']} --dport {b['host_port']} "
                f"-j DNAT --to-destination {target}:{b['container_port']}")
        rules += [f"-A PYNET-PREROUTING {rule}", f"-A PYNET-OUTPUT {rule}"]
    return rules


def render(networks: list[Network], endpoints: list[Endpoint], family: int) -> str:
    """The iptables-restore input (filter and nat) for ``networks`` and their endpoints."""
    nets = sorted((n for n in networks if family == 4 or n.ipv6), key=lambda n: n.id)
    ids = {n.id for n in nets}
    filter_rules = [r for n in nets for r in enter_rules(n, family)]
    filter_rules += [r for n in nets for r in leave_rules(n, family)]
    nat = [r for n in nets for r in nat_rules(n, family)]
    nat += [r for e in sorted(endpoints, key=lambda e: e.id) if e.network_id in ids for r in port_rules(e, family)]
    lines = ["*filter", f":{CHAIN} - [0:0]", *filter_rules, "COMMIT", "*nat"]
    lines += [f":{chain} - [0:0]" for table, _, chain, _ in JUMPS if table == "nat"]
    lines += [*nat, "COMMIT", "*raw", ":PYNET-RAW - [0:0]", ":PYNET-RAW-OUTPUT - [0:0]"]
    lines += [r for n in nets for r in raw_rules(n, family)]
    if family == 4 and any(n.config.mode == "overlay" for n in nets):
        # The tunnel's own UDP packets between VTEPs: a stateless flow the host never NATs.
        tunnel = f"-p udp -m udp --dport {VXLAN_PORT}"
        lines += [f"-A PYNET-RAW {tunnel} -m addrtype --dst-type LOCAL -j NOTRACK",
                  f"-A PYNET-RAW-OUTPUT {tunnel} -m addrtype --src-type LOCAL -j NOTRACK"]
    lines += ["COMMIT"]
    return "\n".join(lines) + "\n"


class IptablesFirewall:
    """Firewall on the iptables/ip6tables commands (nf_tables or legacy, as dockerd uses)."""

    def __init__(self, command_prefix: tuple[str, ...] = ()) -> None:
        # ``command_prefix`` (e.g. ("ip", "netns", "exec", NS)) lets tests aim at a throwaway namespace.
        self._prefix = list(command_prefix)
        self._lock = threading.Lock()
        self._families = [(4, "iptables")]
        if shutil.which("ip6tables-restore"):
            self._families.append((6, "ip6tables"))

    def sync(self, networks: list[Network], endpoints: list[Endpoint] = ()) -> None:
        with self._lock:
            for family, tool in self._families:
                if any(family == 4 or n.ipv6 for n in networks):
                    self._apply(render(networks, list(endpoints), family), tool)
                else:
                    self._remove(tool)

    def _apply(self, rules: str, tool: str) -> None:
        _run(self._prefix + [f"{tool}-restore", "-w", "--noflush"], rules)
        for table, builtin, chain, match in self._jumps(tool):
            if not self._ok(tool, "-t", table, "-C", builtin, *match, "-j", chain):
                _run(self._prefix + [tool, "-w", "-t", table, "-I", builtin, "1", *match, "-j", chain])
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
        return _ok(self._prefix + [tool, "-w", *args])

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
        _run(self._prefix + [tool, "-w", "-t", table, "-I", builtin, str(want + 1), *spec])
        _run(self._prefix + [tool, "-w", "-t", table, "-D", builtin, str(ours[0] + 2)])
        log.info("moved %s jump to %s %s back in front of Docker's rules", table, builtin, jump)
        return 1

    def _rules(self, tool: str, table: str, builtin: str) -> list[str]:
        proc = subprocess.run(self._prefix + [tool, "-w", "-t", table, "-S", builtin], capture_output=True,
                              text=True)
        return [l for l in proc.stdout.splitlines() if l.startswith("-A ")]


class FirewallError(Exception):
    pass


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirewallError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")


def _ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0
