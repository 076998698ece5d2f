"""The names the resolver answers, built from the cluster's adverts (pure; no I/O).

A query is answered from overlay names only when its source address is a container's address in some
overlay; it then gets the names of that overlay (or those overlays) only, never another's.  A name carried
by several containers (a --network-alias, a compose service) answers with all of their addresses, as
Docker answers for local aliases.  Names are lower case (records.py validated them); lookups are too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from pynet.cluster.models import Advert


@dataclass(frozen=True)
class Addresses:
    v4: tuple[str, ...] = ()
    v6: tuple[str, ...] = ()


class NameTable:
    def __init__(self, adverts: Iterable[Advert] = ()) -> None:
        scope: dict[str, set[str]] = {}  # container address -> its overlays
        names: dict[tuple[str, str], tuple[set[str], set[str]]] = {}  # (overlay, name) -> (v4, v6)
        for a in adverts:
            for ip in a.ips:
                scope.setdefault(ip, set()).add(a.overlay)
            for name in a.names:
                v4, v6 = names.setdefault((a.overlay, name), (set(), set()))
                for ip in a.ips:
                    (v6 if ":" in ip else v4).add(ip)
        self._scope = {ip: frozenset(o) for ip, o in scope.items()}
        self._names = {k: Addresses(_sorted(v4), _sorted(v6)) for k, (v4, v6) in names.items()}

    def overlays_of(self, source: str) -> frozenset[str]:
        """The overlays the container with address ``source`` is on (empty: not a container we know)."""
        try:
            ip = ipaddress.ip_address(source)
        except ValueError:
            return frozenset()
        if ip.version == 6 and ip.ipv4_mapped:  # a dual-stack socket shows v4 sources this way
            ip = ip.ipv4_mapped
        return self._scope.get(str(ip), frozenset())

    def lookup(self, source: str, name: str) -> Addresses | None:
        """The addresses of ``name`` for a query from ``source``; None when no overlay of it has the name."""
        name = name.lower().rstrip(".")
        found = [self._names[(o, name)] for o in sorted(self.overlays_of(source)) if (o, name) in self._names]
        if not found:
            return None
        return Addresses(_sorted({ip for f in found for ip in f.v4}), _sorted({ip for f in found for ip in f.v6}))


def _sorted(ips: set[str]) -> tuple[str, ...]:
    return tuple(sorted(ips, key=ipaddress.ip_address))
