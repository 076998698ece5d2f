"""Pure pool arithmetic: parsing, canonical CIDRs, overlap, default pools, PoolIDs.

Design note.  Nothing here touches the store.  Every parse failure becomes a
BadRequest that names the offending value, so the service can pass user input
straight in.  Default pools are described by a short text,
``"<base CIDR>:<size>,..."`` (DEFAULT_POOLS), and candidates are produced
lazily by integer arithmetic: a v6 /48 split into /64s has 65,536 candidates
and is never materialised.  When a candidate collides with a held pool the
generator jumps past that pool instead of stepping, so choosing a default pool
costs time proportional to the number of held pools, not of candidates.

PoolIDs are deterministic, ``<space>/<pool>[/<sub-pool>]`` (protocol §4.3):
dockerd keeps them across its restarts and releases addresses with them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Iterator

from pynet import parsing
from pynet.errors import BadRequest
from pynet.ipam.models import PoolRef

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_POOLS = "10.200.0.0/13:24,fd70:796e:6574::/48:64"


def parse_network(text: str, what: str = "pool") -> Network:
    """``text`` as a network (pynet/parsing.py: host bits zero, no scope, no whitespace); BadRequest
    naming ``what`` otherwise.  IPv6 in any spelling is accepted and comes back canonical."""
    return parsing.parse_network(text, what)


def canonical(text: str, what: str = "pool") -> str:
    """The canonical CIDR string of ``text``."""
    return str(parse_network(text, what))


def parse_address(text: str, what: str = "address") -> Address:
    """A plain IP address (no mask, pynet/parsing.py); BadRequest naming ``what`` otherwise."""
    return parsing.parse_ip(text, what)


def overlaps(a: Network, b: Network) -> bool:
    """True if the networks share an address (never across families)."""
    return a.version == b.version and a.overlaps(b)


def find_overlap(net: Network, held: Iterable[Network]) -> Network | None:
    """The first network of ``held`` that overlaps ``net``, or None."""
    return next((h for h in held if overlaps(net, h)), None)


def check_sub_pool(pool: Network, sub_pool: Network) -> None:
    """BadRequest unless ``sub_pool`` lies inside ``pool``."""
    if sub_pool.version != pool.version or not sub_pool.subnet_of(pool):
        raise BadRequest(f"sub-pool {sub_pool} is not inside pool {pool}")


def check_in_pool(pool: Network, ip: Address, what: str = "address") -> None:
    """BadRequest unless ``ip`` lies inside ``pool``."""
    if ip.version != pool.version or ip not in pool:
        raise BadRequest(f"{what} {ip} is not inside pool {pool}")


# -- default pools ----------------------------------------------------------------


@dataclass(frozen=True)
class DefaultPool:
    """A base network carved into subnets of prefix length ``size``."""

    base: Network
    size: int


def parse_default_pools(text: str) -> tuple[DefaultPool, ...]:
    """Parse ``"10.200.0.0/13:24,fd70:796e:6574::/48:64"``; BadRequest on a bad entry."""
    pools = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        cidr, sep, size_text = item.rpartition(":")
        if not sep or not size_text.isdigit():
            raise BadRequest(f"invalid default pool {item!r}: expected <CIDR>:<size>")
        base, size = parse_network(cidr, "default pool"), int(size_text)
        if not base.prefixlen <= size <= base.max_prefixlen:
            raise BadRequest(f"invalid default pool {item!r}: size must be between "
                             f"{base.prefixlen} and {base.max_prefixlen}")
        pools.append(DefaultPool(base, size))
    return tuple(pools)


def default_candidates(defaults: Iterable[DefaultPool], v6: bool,
                       held: Iterable[Network] = ()) -> Iterator[Network]:
    """Lazily yield the default subnets of one family that overlap none of ``held``.

    Order: the default pools in the order given, each from its lowest subnet up.
    """
    version = 6 if v6 else 4
    held = [h for h in held if h.version == version]
    for pool in defaults:
        if pool.base.version == version:
            yield from _free_subnets(pool, held)


def _free_subnets(pool: DefaultPool, held: list[Network]) -> Iterator[Network]:
    cls = type(pool.base)
    step = 1 << (pool.base.max_prefixlen - pool.size)
    start = int(pool.base.network_address)
    end = int(pool.base.broadcast_address) + 1
    current = start
    while current < end:
        candidate = cls((current, pool.size))
        blocker = find_overlap(candidate, held)
        if blocker is None:
            yield candidate
            current += step
            continue
        # Skip the whole blocking pool, rounded up to the next candidate boundary.
        past = int(blocker.broadcast_address) + 1
        current = max(current + step, start + -(-(past - start) // step) * step)


# -- pool ids -----------------------------------------------------------------------


def format_pool_id(space: str, pool: str, sub_pool: str = "") -> str:
    """``<space>/<pool>`` or ``<space>/<pool>/<sub-pool>``."""
    return f"{space}/{pool}/{sub_pool}" if sub_pool else f"{space}/{pool}"


def parse_pool_id(pool_id: str) -> PoolRef | None:
    """The PoolRef behind ``pool_id``, or None if it is not one we could have issued."""
    if not isinstance(pool_id, str):
        return None
    parts = pool_id.split("/")
    if len(parts) not in (3, 5) or not parts[0]:
        return None
    try:
        parsing.parse_name(parts[0], "address space")
        pool = parse_network(f"{parts[1]}/{parts[2]}")
        sub = parse_network(f"{parts[3]}/{parts[4]}") if len(parts) == 5 else None
    except BadRequest:
        return None
    return PoolRef(parts[0], str(pool), str(sub) if sub else "")
