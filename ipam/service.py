"""IpamService: pynet's IPAM driver behind Docker's IpamDriver calls (protocol §4).

Design note.  The service is plain Python over the Store port; plugin/ decodes
the wire and calls one method per request.  All state is in the store (pools
document per space via PoolRegistry, one key per claimed address, a cursor per
pool via the allocator), so a new IpamService over the same store continues
exactly where the old one stopped, and RequiresRequestReplay can stay false.

Rules worth knowing (Docker's built-in IPAM is the reference where silent):
* PoolIDs are deterministic: ``<space>/<pool>[/<sub-pool>]``.
* A held pool is never handed out again, and an explicit pool that overlaps
  (or equals) a held one is a Conflict.  This is what ends dockerd's overlap loop
  (§4.3): it may re-request a default pool while still holding the previous answer.
* Releases never fail for unknown pools or addresses (§4.4, §4.6).

Multi-host (``host_id`` given, the store is etcd): pools and addresses are
cluster-wide.  The copies of one overlay on several hosts request the same
explicit pool, so an identical request from another host *shares* the pool
(the host is added to its holders) instead of conflicting; the gateway is
reserved once and handed to every holder; the pool and its gateway are only
released when the last holder releases it.  Overlapping pools still conflict.
dockerd never repeats a release (it only logs the error), so a release that
cannot reach etcd is written to this host's local store (``journal``) and
replayed by the cluster agent once etcd is back: nothing leaks.
"""

from __future__ import annotations

from dataclasses import replace

import logging
import secrets
import time

from pynet import parsing
from pynet.errors import BadRequest, Conflict, Exhausted, NotFound, Unavailable
from pynet.ipam import allocator
from pynet.ipam.allocator import AddressRange
from pynet.ipam.models import PoolRecord, PoolResult
from pynet.ipam.pools import (DEFAULT_POOLS, Network, check_sub_pool, default_candidates,
                        find_overlap, format_pool_id, parse_address, parse_default_pools,
                        parse_network, parse_pool_id)
from pynet.ipam.registry import Pools, PoolRegistry
from pynet.store import keys
from pynet.store.base import Store

log = logging.getLogger("pynet.ipam")

LOCAL_SPACE = "pynet-local"
GLOBAL_SPACE = "pynet-global"
REQUEST_ADDRESS_TYPE = "RequestAddressType"
GATEWAY_ADDRESS_TYPE = "com.docker.network.gateway"
KNOWN_POOL_OPTIONS: frozenset[str] = frozenset()  # none yet; see _check_pool_options


class IpamService:
    """The IPAM driver.  Every method is safe to call from many threads at once."""

    def __init__(self, store: Store, default_pools: str = DEFAULT_POOLS, host_id: str = "",
                 journal: Store | None = None) -> None:
        self._store = store
        self._journal = journal  # local store for releases etcd did not take (multi-host only)
        self._host = host_id  # "" = single host: nothing is shared
        self._registry = PoolRegistry(store)
        self._defaults = parse_default_pools(default_pools)

    def default_address_spaces(self) -> tuple[str, str]:
        """(local, global) address space names; constant and cheap (called per RequestPool on 27+)."""
        return LOCAL_SPACE, GLOBAL_SPACE

    # -- pools --------------------------------------------------------------------

    def request_pool(self, address_space: str, pool: str, sub_pool: str,
                     options: dict | None, v6: bool) -> PoolResult:
        """Hold ``pool`` (or a free default pool when empty) in ``address_space``.

        BadRequest: bad space/CIDR, sub-pool without pool or outside it, family
        not matching ``v6``, unknown option.  Conflict: the pool overlaps a held
        one.  Exhausted: no default pool left.  Retryable: store contention.
        """
        _check_space(address_space)
        _check_pool_options(options)
        if pool:
            record = _explicit_record(pool, sub_pool, v6)
            chosen = self._registry.update(address_space, lambda held: _hold_explicit(record, held, self._host))
        elif sub_pool:
            raise BadRequest(f"sub-pool {sub_pool!r} given without a pool; --ip-range needs --subnet")
        else:
            chosen = self._registry.update(address_space, lambda held: self._hold_default(v6, held))
        return PoolResult(format_pool_id(address_space, chosen.pool, chosen.sub_pool), chosen.pool, {})

    def release_pool(self, pool_id: str) -> None:
        """Stop holding the pool and drop its address claims; unknown ids succeed."""
        self._or_defer(self._release_pool, pool_id)

    def _release_pool(self, pool_id: str) -> None:
        ref = parse_pool_id(pool_id)
        if ref is None or self._registry.lookup(ref) is None:
            return
        if self._host and self._registry.update(ref.space, lambda held: _drop_holder(held, ref, self._host)):
            return  # other hosts still use the pool
        # The pool record first, its claims after (crash consistency): a crash in
        # between leaves claims of a pool nobody holds, which collect_orphan_claims
        # drops, never a held pool whose addresses look free.  dockerd never repeats
        # a release, so nothing else would finish the job.
        self._registry.remove(ref)
        self._drop_claims(ref.space, ref.pool)

    def _drop_claims(self, space: str, cidr: str) -> int:
        """Drop the claims of ``cidr`` if no pool holds it; returns how many.

        Only claims written before the pools document was read are dropped: a claim
        of a new incarnation of the same CIDR is made after its pool is recorded,
        hence after that read, and is never touched.  If the CIDR is held again,
        what is left of the old incarnation stays (a leak, never a double claim).
        """
        before = self._store.current_revision()
        if cidr in self._registry.held(space):
            return 0
        return allocator.release_all(self._store, space, parse_network(cidr), up_to=before)

    def collect_orphan_claims(self) -> int:
        """Drop address claims under pools nobody holds (what a crash inside ReleasePool left)."""
        return sum(self._drop_claims(space, cidr) for space, cidr in allocator.claimed_pools(self._store))

    def _hold_default(self, v6: bool, held: Pools) -> tuple[PoolRecord, bool]:
        held_nets = [parse_network(cidr) for cidr in held]
        candidate = next(default_candidates(self._defaults, v6, held_nets), None)
        if candidate is None:
            bases = ", ".join(str(d.base) for d in self._defaults if (d.base.version == 6) == v6)
            raise Exhausted(f"no free default pool left for IPv{6 if v6 else 4} in {bases or 'nothing'} "
                            "(every candidate overlaps a held pool); use --subnet")
        record = PoolRecord(str(candidate), "", v6, {}, (self._host,) if self._host else ())
        held[record.pool] = record
        return record, True

    # -- addresses -----------------------------------------------------------------

    def request_address(self, pool_id: str, address: str, options: dict | None) -> str:
        """Claim ``address`` (or a free one) in the pool; returns it as CIDR with the pool's length.

        Gateway requests (RequestAddressType) without an address get the lowest
        free address of the range; other requests without one are round robin.
        NotFound: unknown pool id.  BadRequest: malformed address or outside the
        pool.  Conflict: address taken.  Exhausted: nothing free.
        """
        if address:
            parse_address(address)  # a malformed address is refused as such, whatever the pool
        rng = self._range(pool_id)
        kind = allocator.GATEWAY if _is_gateway(options) else allocator.ENDPOINT
        if self._host and kind == allocator.GATEWAY:
            return self._shared_gateway(pool_id, rng, address)
        if address:
            ip = allocator.claim_specific(self._store, rng, parse_address(address), kind)
        elif kind == allocator.GATEWAY:
            ip = allocator.claim_lowest(self._store, rng, kind)
        else:
            ip = allocator.claim_next(self._store, rng, kind)
        return f"{ip}/{rng.pool.prefixlen}"

    def release_address(self, pool_id: str, address: str) -> None:
        """Drop the claim on ``address``; unknown pools and unclaimed addresses succeed.

        BadRequest only for a malformed address.
        """
        parse_address(address)
        self._or_defer(self._release_address, pool_id, address)

    def _release_address(self, pool_id: str, address: str) -> None:
        ip = parse_address(address)
        ref = parse_pool_id(pool_id)
        if ref is None:
            return
        pool = parse_network(ref.pool)
        if self._host:
            record = self._registry.lookup(ref)
            if record is not None and record.gateway == str(ip) and set(record.holders) - {self._host}:
                return  # the shared gateway stays while other hosts use the pool
        if ip.version == pool.version and ip in pool:
            allocator.release(self._store, AddressRange.of(ref.space, pool), ip)

    # -- releases while the store is unreachable ----------------------------------------
    def _or_defer(self, release, *args: str) -> None:
        try:
            release(*args)
        except Unavailable as exc:
            if self._journal is None:
                raise
            token = f"{time.time_ns():020d}-{secrets.token_hex(4)}"  # keys sort oldest first
            self._journal.create(keys.pending_release(token),
                                 {"call": release.__name__, "args": list(args)})
            log.warning("%s%s deferred until the store is back: %s", release.__name__.lstrip("_"), args, exc)

    def replay_deferred(self) -> int:
        """Apply releases deferred during an outage (oldest first); returns how many were applied."""
        done = 0
        for entry in self._journal.list(keys.pending_releases_prefix()) if self._journal else ():
            call = {"_release_pool": self._release_pool, "_release_address": self._release_address}.get(
                entry.value.get("call"))
            if call is not None:
                call(*entry.value.get("args", ()))  # Unavailable propagates: try again later
                done += 1
            self._journal.delete(entry.key, entry.revision)
        return done

    # -- a dead host's share (`pynet hosts rm`, cluster/hosts.py) -------------------------
    def forget_host(self, host_id: str, addresses: list[str]) -> dict:
        """Drop ``host_id`` from every shared pool's holders and release the endpoint ``addresses`` its
        containers held (never a pool's shared gateway).  ``{"Pools": [...], "Addresses": [...]}`` of
        what was dropped.  A pool whose only holder was that host stays held, by nobody: the next
        holder's release frees it (RequestPool of the same CIDR shares it meanwhile)."""
        dropped_pools: list[str] = []
        released: list[str] = []
        ips = [parse_address(a) for a in addresses]
        for space in (LOCAL_SPACE, GLOBAL_SPACE):
            def drop(held: Pools) -> tuple[list[str], bool]:
                changed = [cidr for cidr, r in held.items() if host_id in r.holders]
                for cidr in changed:
                    held[cidr] = replace(held[cidr], holders=tuple(h for h in held[cidr].holders if h != host_id))
                return changed, bool(changed)

            dropped_pools += [f"{space}/{cidr}" for cidr in self._registry.update(space, drop)]
            for cidr, record in self._registry.held(space).items():
                pool = parse_network(cidr)
                for ip in ips:
                    if ip.version == pool.version and ip in pool and str(ip) != record.gateway:
                        if allocator.release(self._store, AddressRange.of(space, pool), ip):
                            released.append(str(ip))
        return {"Pools": sorted(dropped_pools), "Addresses": sorted(released)}

    def _shared_gateway(self, pool_id: str, rng: AddressRange, address: str) -> str:
        """The pool's one gateway: claimed by the first holder, handed to the others."""
        ref = parse_pool_id(pool_id)
        record = self._registry.lookup(ref)
        if record is not None and record.gateway:
            if address and parse_address(address) != parse_address(record.gateway):
                raise Conflict(f"pool {ref.pool} is shared across hosts and its gateway is {record.gateway}, "
                               f"not {address}")
            return f"{record.gateway}/{rng.pool.prefixlen}"
        if address:
            ip = allocator.claim_specific(self._store, rng, parse_address(address), allocator.GATEWAY)
        else:
            ip = allocator.claim_lowest(self._store, rng, allocator.GATEWAY)

        def remember(held: Pools) -> tuple[None, bool]:
            current = held.get(ref.pool)
            if current is None or current.gateway:
                return None, False
            held[ref.pool] = replace(current, gateway=str(ip))
            return None, True

        self._registry.update(ref.space, remember)
        return f"{ip}/{rng.pool.prefixlen}"

    def _range(self, pool_id: str) -> AddressRange:
        ref = parse_pool_id(pool_id)
        record = self._registry.lookup(ref) if ref is not None else None
        if record is None:
            raise NotFound(f"no such pool {pool_id!r}")
        sub = parse_network(record.sub_pool, "sub-pool") if record.sub_pool else None
        return AddressRange.of(ref.space, parse_network(record.pool), sub)


# -- request checks (pure) ---------------------------------------------------------------


def _check_space(space: str) -> None:
    parsing.parse_name(space, "address space")  # part of store keys and PoolIDs


def _check_pool_options(options: dict | None) -> None:
    # No --ipam-opt is supported yet; refusing unknown ones beats silently ignoring them.
    for name in options or {}:
        if name not in KNOWN_POOL_OPTIONS:
            raise BadRequest(f"unknown IPAM option {name!r}")


def _explicit_record(pool: str, sub_pool: str, v6: bool) -> PoolRecord:
    net = parse_network(pool, "pool")
    if (net.version == 6) != bool(v6):
        wanted = "IPv6" if v6 else "IPv4"
        raise BadRequest(f"pool {net} is IPv{net.version} but an {wanted} pool was requested")
    sub = ""
    if sub_pool:
        sub_net = parse_network(sub_pool, "sub-pool")
        check_sub_pool(net, sub_net)
        sub = str(sub_net)
    return PoolRecord(str(net), sub, bool(v6), {})


def _hold_explicit(record: PoolRecord, held: Pools, host: str = "") -> tuple[PoolRecord, bool]:
    net: Network = parse_network(record.pool)
    same = held.get(record.pool)
    if host and same is not None and (same.sub_pool, same.v6) == (record.sub_pool, record.v6):
        if host in same.holders:
            raise Conflict(f"pool {net} is already in use on this host")
        shared = replace(same, holders=same.holders + (host,))
        held[record.pool] = shared
        return shared, True
    if host:
        record = replace(record, holders=(host,))
    clash = find_overlap(net, (parse_network(cidr) for cidr in held))
    if clash is not None:
        raise Conflict(f"pool {net} overlaps with pool {clash} already in use")
    held[record.pool] = record
    return record, True


def _drop_holder(held: Pools, ref, host: str) -> tuple[bool, bool]:
    """Remove ``host`` from the pool's holders; returns (others still hold it, changed)."""
    record = held.get(ref.pool)
    if record is None or not record.holders:
        return False, False
    others = tuple(h for h in record.holders if h != host)
    if not others:
        return False, False
    held[ref.pool] = replace(record, holders=others)
    return True, True


def _is_gateway(options: dict | None) -> bool:
    # Other keys (e.g. com.docker.network.endpoint.macaddress) carry nothing for us.
    return (options or {}).get(REQUEST_ADDRESS_TYPE) == GATEWAY_ADDRESS_TYPE
