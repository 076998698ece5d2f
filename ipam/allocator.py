"""Address allocation inside one pool, over the Store port.

Design note.  A claimed address is one key, created with create-if-absent
(keys.ipam_address); whoever creates it owns it, also across threads, workers
and hosts.  Nothing proportional to the pool's size is stored or scanned:

* Addresses are ints.  A range is [first, last] (the sub-pool if given, else
  the pool); the only never-claimable addresses are computed, not stored
  (``AddressRange.reserved``).
* Fast path: try the one candidate the cursor points at.  On a fresh or sparse
  pool that single create succeeds, whatever the pool's size.
* Slow path: list the claimed keys of the pool (cost ∝ claims), decide
  exhaustion by counting (claimed-in-range + reserved >= range size), then walk
  from the start, skipping claimed and reserved ints, trying create on each free
  one; a lost race (create -> None) just marks it taken.  The walk passes at
  most claims + reserved + races addresses before it finds a free one.

Round robin: a cursor key per pool remembers the last dynamically handed-out
address and the next dynamic allocation starts just after it, wrapping inside
the range, so a just-released address is not reused at once (Docker's
behaviour).  The cursor is a hint: it is updated with cas and contention is
ignored, because correctness comes from create, not from the cursor.

Kinds recorded in a claim: "endpoint" (containers, aux addresses) or "gateway".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pynet.errors import BadRequest, Conflict, Exhausted
from pynet.ipam.pools import Address, Network, check_in_pool
from pynet.store import keys
from pynet.store.base import Entry, Store

ENDPOINT = "endpoint"
GATEWAY = "gateway"


@dataclass(frozen=True)
class AddressRange:
    """Where one pool hands out addresses: ``pool``, and [first, last] inside it."""

    space: str
    pool: Network
    first: int
    last: int

    @classmethod
    def of(cls, space: str, pool: Network, sub_pool: Network | None = None) -> "AddressRange":
        span = sub_pool or pool
        return cls(space, pool, int(span.network_address), int(span.broadcast_address))

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def reserved(self, value: int) -> bool:
        """Never claimable: the network address (v4 and the v6 subnet-router
        anycast) and the v4 broadcast.  Point-to-point /31 and /127 and host
        /32 and /128 have no such addresses (RFC 3021, RFC 6164)."""
        pool = self.pool
        if pool.prefixlen >= pool.max_prefixlen - 1:
            return False
        if value == int(pool.network_address):
            return True
        return pool.version == 4 and value == int(pool.broadcast_address)

    def reserved_count(self) -> int:
        """How many reserved addresses fall inside [first, last]."""
        edges = {int(self.pool.network_address), int(self.pool.broadcast_address)}
        return sum(1 for v in edges if self.first <= v <= self.last and self.reserved(v))

    def ip(self, value: int) -> Address:
        return ipaddress.ip_address(value) if self.pool.version == 4 else ipaddress.IPv6Address(value)

    def after(self, value: int) -> int:
        """The next int of the range after ``value``, wrapping."""
        return self.first if value >= self.last or value < self.first else value + 1

    def describe(self) -> str:
        return f"{self.ip(self.first)}-{self.ip(self.last)}"


def claim_specific(store: Store, rng: AddressRange, ip: Address, kind: str = ENDPOINT) -> Address:
    """Claim ``ip``, which must lie in the pool (it may lie outside the sub-pool).

    BadRequest if outside the pool or reserved; Conflict if already claimed.
    """
    check_in_pool(rng.pool, ip)
    if rng.reserved(int(ip)):
        raise BadRequest(f"address {ip} is reserved in pool {rng.pool} (network or broadcast address)")
    if store.create(_key(rng, int(ip)), {"kind": kind}) is None:
        raise Conflict(f"address {ip} is already in use in pool {rng.pool}")
    return ip


def claim_next(store: Store, rng: AddressRange, kind: str = ENDPOINT) -> Address:
    """Claim the next free address after the pool's cursor (round robin). Exhausted if none."""
    cursor = store.get(keys.ipam_cursor(rng.space, str(rng.pool)))
    start = rng.first
    if cursor is not None:
        last = _cursor_value(cursor)
        if last is not None and rng.first <= last <= rng.last:
            start = rng.after(last)
    value = _claim_from(store, rng, start, kind)
    _advance_cursor(store, rng, value, cursor)
    return rng.ip(value)


def claim_lowest(store: Store, rng: AddressRange, kind: str = GATEWAY) -> Address:
    """Claim the lowest free address of the range (deterministic; the cursor is untouched)."""
    return rng.ip(_claim_from(store, rng, rng.first, kind))


def release(store: Store, rng: AddressRange, ip: Address) -> bool:
    """Drop the claim on ``ip``; False if it was not claimed (not an error)."""
    return store.delete(_key(rng, int(ip)))


def release_all(store: Store, space: str, pool: Network, up_to: int | None = None) -> int:
    """Drop every claim of ``pool`` and its cursor; returns the number of claims dropped.

    With ``up_to``, only those last written at or before that store revision, each deleted only if
    unchanged since it was listed: claims made later (a new incarnation of the CIDR) stay."""
    entries = store.list(keys.ipam_addresses_prefix(space, str(pool)))
    cursor = store.get(keys.ipam_cursor(space, str(pool)))
    entries += [cursor] if cursor is not None else []
    dropped = 0
    for entry in entries:
        if up_to is None or entry.revision <= up_to:
            deleted = store.delete(entry.key, entry.revision)
            dropped += deleted and entry is not cursor
    return dropped


def claimed_pools(store: Store) -> set[tuple[str, str]]:
    """(space, CIDR) of every pool some address claim is under (held or not)."""
    prefix = f"{keys.ROOT}/ipam/"
    out = set()
    for entry in store.list(prefix):
        parts = entry.key[len(prefix):].split("/")
        if len(parts) == 4 and parts[1] == "addrs":
            out.add((parts[0], parts[2].replace("_", "/")))
    return out


# -- internals --------------------------------------------------------------------------


def _key(rng: AddressRange, value: int) -> str:
    return keys.ipam_address(rng.space, str(rng.pool), str(rng.ip(value)))


def _claim_from(store: Store, rng: AddressRange, start: int, kind: str) -> int:
    """Claim the first free int at or after ``start`` (wrapping); Exhausted if none."""
    if not rng.reserved(start) and store.create(_key(rng, start), {"kind": kind}) is not None:
        return start
    # The listing normally contains ``start`` now; if it was released meanwhile,
    # the walk comes back to it last.
    taken = _claimed_in_range(store, rng)
    reserved = rng.reserved_count()
    value = start
    while len(taken) + reserved < rng.size:
        value = rng.after(value)
        if value in taken or rng.reserved(value):
            continue
        if store.create(_key(rng, value), {"kind": kind}) is not None:
            return value
        taken.add(value)  # lost a race for it
    raise Exhausted(f"no free address left in pool {rng.pool} (range {rng.describe()})")


def _claimed_in_range(store: Store, rng: AddressRange) -> set[int]:
    prefix = keys.ipam_addresses_prefix(rng.space, str(rng.pool))
    taken = set()
    for entry in store.list(prefix):
        try:
            value = int(ipaddress.ip_address(entry.key[len(prefix):]))
        except ValueError:
            continue
        if rng.first <= value <= rng.last and not rng.reserved(value):
            taken.add(value)
    return taken


def _cursor_value(entry: Entry) -> int | None:
    try:
        return int(ipaddress.ip_address(entry.value.get("last", "")))
    except ValueError:
        return None


def _advance_cursor(store: Store, rng: AddressRange, value: int, seen: Entry | None) -> None:
    """Best effort: a concurrent allocator may have moved it; then theirs stands."""
    key = keys.ipam_cursor(rng.space, str(rng.pool))
    doc = {"last": str(rng.ip(value))}
    if seen is None:
        store.create(key, doc)
    else:
        store.cas(key, doc, seen.revision)
