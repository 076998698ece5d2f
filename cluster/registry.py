"""Overlay records, VNIs, members and endpoint adverts in the cluster store.

Design note.  Every method is one or a few atomic store primitives and is safe
to run on several hosts at once: the overlay record and each VNI are claimed
with create-if-absent (two hosts creating ``demo`` at the same moment get the
same record; two overlays never share a VNI), changes are compare-and-swap with
a bounded retry.  Adverts are attached to the host's lease, so a host that
vanishes takes its containers out of every other host's tables when the lease
expires; members are not, so a host that restarts is still a member.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Callable

from pynet.cluster.models import ACTIVE, REMOVING, Advert, Member, Overlay
from pynet.errors import Conflict, Exhausted
from pynet.store import keys
from pynet.store.base import Entry, Store
from pynet.store.update import Decision, Keep, Write, modify, put, update

VNI_MIN, VNI_MAX = 4096, 16_777_215  # below 4096 is left to users who pick VNIs by hand
VNI_PROBES = 64


class OverlayRegistry:
    def __init__(self, store: Store, host_id: str) -> None:
        self.store = store
        self.host_id = host_id

    # -- overlays ----------------------------------------------------------------
    def get(self, name: str) -> Overlay | None:
        entry = self.store.get(keys.overlay(name))
        return Overlay.from_dict(entry.value) if entry else None

    def claim(self, wanted: Overlay, vni: int = 0) -> tuple[Overlay, bool]:
        """The overlay ``wanted.name``: the existing record if compatible, else a new one.

        Returns (record, created).  Conflict names the difference when the
        existing overlay has other pools, another VNI or another --internal.
        """
        def decide(entry: Entry | None) -> Decision:
            if entry is not None:
                current = Overlay.from_dict(entry.value)
                _check_compatible(current, wanted, vni)
                if current.state == ACTIVE:
                    return Keep((current, False))
                revived = replace(current, state=ACTIVE)  # re-created while being removed: keep it
                return Write(revived.to_dict(), (revived, False))
            number = self._claim_vni(wanted.name, vni)
            record = replace(wanted, vni=number, origin=self.host_id, state=ACTIVE)
            # another host may win the race for the record: then its record (and VNI) is used
            return Write(record.to_dict(), (record, True), undo=lambda: self._release_vni(number, wanted.name))

        return modify(self.store, keys.overlay(wanted.name), decide, f"overlay {wanted.name!r}")

    def undo_claim(self, record: Overlay) -> None:
        """Remove an overlay this host has just created (rollback of a failed create)."""
        entry = self.store.get(keys.overlay(record.name))
        if entry is not None and not self.store.list(keys.members_prefix(record.name)):
            self.store.delete(entry.key, entry.revision)
            self._release_vni(record.vni, record.name)

    def update(self, name: str, change: Callable[[Overlay], Overlay]) -> Overlay | None:
        doc = update(self.store, keys.overlay(name), lambda value: change(Overlay.from_dict(value)).to_dict(),
                     f"overlay {name!r}")
        return Overlay.from_dict(doc) if doc is not None else None

    def _claim_vni(self, name: str, vni: int) -> int:
        if vni:
            if self.store.create(keys.vni(vni), {"overlay": name}) is None:
                entry = self.store.get(keys.vni(vni))
                owner = entry.value.get("overlay") if entry else None
                if owner != name:
                    raise Conflict(f"VNI {vni} is already used by overlay {owner!r}")
            return vni
        # Start from a hash of the name so concurrent creates of different overlays rarely collide.
        start = VNI_MIN + zlib.crc32(name.encode()) % (VNI_MAX - VNI_MIN + 1)
        for i in range(VNI_PROBES):
            number = VNI_MIN + (start - VNI_MIN + i) % (VNI_MAX - VNI_MIN + 1)
            if self.store.create(keys.vni(number), {"overlay": name}) is not None:
                return number
            entry = self.store.get(keys.vni(number))
            if entry is not None and entry.value.get("overlay") == name:
                return number
        raise Exhausted(f"no free VNI found for overlay {name!r} after {VNI_PROBES} tries; set -o pynet.vni")

    def _release_vni(self, number: int, name: str) -> None:
        entry = self.store.get(keys.vni(number))
        if entry is not None and entry.value.get("overlay") == name:
            self.store.delete(entry.key, entry.revision)

    # -- members -----------------------------------------------------------------
    def join(self, name: str, network_id: str) -> None:
        """Record that this host has Docker network ``network_id`` for overlay ``name``."""
        put(self.store, keys.member(name, self.host_id), Member(network_id).to_dict())

    def leave(self, name: str, network_id: str) -> bool:
        """This host's copy is gone: drop the membership and mark the overlay for removal
        everywhere; the last member out deletes the record and frees its VNI.  True if deleted."""
        entry = self.store.get(keys.member(name, self.host_id))
        if entry is not None and entry.value.get("network_id") == network_id:
            self.store.delete(entry.key, entry.revision)
        self.update(name, lambda o: replace(o, state=REMOVING))
        return self.forget_if_unused(name)

    def forget_if_unused(self, name: str) -> bool:
        entry = self.store.get(keys.overlay(name))
        if entry is None or entry.value.get("state") != REMOVING or self.store.list(keys.members_prefix(name)):
            return False
        if self.store.delete(entry.key, entry.revision):
            self._release_vni(int(entry.value["vni"]), name)
            return True
        return False

    def members(self, name: str) -> dict[str, Member]:
        prefix = keys.members_prefix(name)
        return {e.key[len(prefix):]: Member.from_dict(e.value) for e in self.store.list(prefix)}

    # -- adverts -----------------------------------------------------------------
    def advertise(self, advert: Advert, lease: int) -> None:
        put(self.store, keys.advert(advert.overlay, advert.host, advert.endpoint), advert.to_dict(), lease)

    def withdraw(self, overlay: str, endpoint_id: str) -> None:
        self.store.delete(keys.advert(overlay, self.host_id, endpoint_id))

    def my_adverts(self) -> dict[tuple[str, str], tuple[Advert, int]]:
        """(overlay, endpoint) -> (advert, revision) for every advert of this host."""
        out = {}
        for e in self.store.list(keys.adverts_prefix()):
            a = Advert.from_dict(e.value)
            if a.host == self.host_id:
                out[(a.overlay, a.endpoint)] = (a, e.revision)
        return out


def _check_compatible(current: Overlay, wanted: Overlay, vni: int) -> None:
    def cidrs(pools):
        return sorted(p.pool for p in pools)

    have, want = cidrs(current.pools()), cidrs(wanted.pools())
    if have != want:
        raise Conflict(f"overlay {current.name!r} already exists with subnet(s) {', '.join(have) or 'none'}; "
                       f"this network asks for {', '.join(want) or 'none'} (use the same --subnet)")
    gw_have = {p.pool: p.gateway for p in current.pools()}
    for p in wanted.pools():
        if p.gateway and gw_have.get(p.pool) and p.gateway != gw_have[p.pool]:
            raise Conflict(f"overlay {current.name!r} uses gateway {gw_have[p.pool]} for {p.pool}, not {p.gateway}")
    if vni and vni != current.vni:
        raise Conflict(f"overlay {current.name!r} already uses VNI {current.vni}, not {vni}")
    if wanted.internal != current.internal:
        raise Conflict(f"overlay {current.name!r} is {'' if current.internal else 'not '}--internal; "
                       "every host's copy must match")
