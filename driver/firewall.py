"""pynet's packet filter rules, in pynet's own chains only.

Design note.  When dockerd turns on IP forwarding it sets the FORWARD policy to
DROP, which silently breaks every bridge Docker did not make (anchors.md P18).
pynet therefore accepts its own bridges' traffic explicitly, in a chain of its
own (``PYNET-FORWARD``) that one rule in FORWARD jumps to.  Docker's chains are
never written.

The rule set is a pure function of the stored networks (``render``), written
whole and atomically with one ``iptables-restore --noflush`` per family: a
declared chain is flushed and refilled in the same transaction, so applying it
any number of times (create, delete, restart) yields exactly the same rules and
never a duplicate.  With no network left, the chain and the jump are removed.
Later rule families (outbound NAT, published ports, isolation) add their own
chains to ``render`` and their own jumps to ``JUMPS``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Protocol

from driver.models import Network

log = logging.getLogger("pynet.firewall")

CHAIN = "PYNET-FORWARD"
# (table, builtin chain, our chain): the jumps pynet owns in Docker's tables.
JUMPS = (("filter", "FORWARD", CHAIN),)


class Firewall(Protocol):
    def sync(self, networks: list[Network]) -> None:
        """Make the kernel's pynet rules exactly those for ``networks``. Idempotent."""


def forward_rules(net: Network, family: int) -> list[str]:
    """The PYNET-FORWARD rules of one network for one IP family (4 or 6)."""
    if family == 6 and not net.ipv6:
        return []
    br = net.config.bridge
    rules = [f"-A {CHAIN} -i {br} -o {br} -j {'ACCEPT' if net.config.icc else 'DROP'}"]
    rules.append(f"-A {CHAIN} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    if not net.config.internal:
        rules.append(f"-A {CHAIN} -i {br} ! -o {br} -j ACCEPT")
    return rules


def render(networks: list[Network], family: int) -> str:
    """The iptables-restore input for ``networks`` (empty chain when none)."""
    lines = ["*filter", f":{CHAIN} - [0:0]"]
    for net in sorted(networks, key=lambda n: n.id):
        lines += forward_rules(net, family)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Tools:
    save_restore: str  # "iptables" or "ip6tables"

    @property
    def restore(self) -> str:
        return f"{self.save_restore}-restore"


class IptablesFirewall:
    """Firewall on the iptables/ip6tables commands (nf_tables or legacy, as dockerd uses)."""

    def __init__(self, command_prefix: tuple[str, ...] = ()) -> None:
        # ``command_prefix`` (e.g. ("ip", "netns", "exec", NS)) lets tests aim at a throwaway namespace.
        self._prefix = list(command_prefix)
        self._lock = threading.Lock()
        self._families = [(4, Tools("iptables"))]
        if shutil.which("ip6tables-restore"):
            self._families.append((6, Tools("ip6tables")))

    def sync(self, networks: list[Network]) -> None:
        with self._lock:
            for family, tools in self._families:
                self._sync_family(networks, family, tools)

    def _sync_family(self, networks: list[Network], family: int, tools: Tools) -> None:
        wanted = [n for n in networks if family == 4 or n.ipv6]
        if not wanted:
            self._remove(tools)
            return
        _run(self._prefix + [tools.restore, "-w", "--noflush"], render(networks, family))
        for table, builtin, chain in JUMPS:
            if not self._ok(tools, "-t", table, "-C", builtin, "-j", chain):
                _run(self._prefix + [tools.save_restore, "-w", "-t", table, "-I", builtin, "1", "-j", chain])

    def _remove(self, tools: Tools) -> None:
        for table, builtin, chain in JUMPS:
            while self._ok(tools, "-t", table, "-D", builtin, "-j", chain):
                pass
            if self._ok(tools, "-t", table, "-F", chain):
                self._ok(tools, "-t", table, "-X", chain)

    def _ok(self, tools: Tools, *args: str) -> bool:
        return _ok(self._prefix + [tools.save_restore, "-w", *args])


class FirewallError(Exception):
    pass


def _run(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirewallError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")


def _ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0
