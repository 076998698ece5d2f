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

from pynet.cluster import records
from pynet.cluster.models import ACTIVE, REMOVING, Advert, Member, Overlay
from pynet.cluster.records import InvalidRecord
from pynet.errors import Conflict, Exhausted
from pynet.store import keys
from pynet.store.base import Entry, Store
from pynet.store.update import Decision, Keep, Write, modify, put

VNI_MIN, VNI_MAX = 4096, 16_777_215  # below 4096 is left to users who pick VNIs by hand
VNI_PROBES = 64


class OverlayRegistry:
    def __init__(self, store: Store, host_id: str, reject=lambda kind, key, reason: None) -> None:
        self.store = store
        self.host_id = host_id
        self._reject = reject  # (kind, key, reason): a record that did not decode

    # -- overlays ----------------------------------------------------------------
    def get(self, name: str) -> Overlay | None:
        entry = self.store.get(keys.overlay(name))
        return self._decode(entry) if entry else None

    def _decode(self, entry: Entry) -> Overlay:
        """The overlay record of ``entry``; Conflict naming the problem when it does not decode (a write
        cannot be decided on a record nobody can read, and overwriting it would hide the damage)."""
        name = entry.key.rsplit("/", 1)[-1]
        try:
            return records.overlay(name, entry.value)
        except InvalidRecord as exc:
            self._reject("overlays", entry.key, str(exc))
            raise Conflict(f"the record of overlay {name!r} in the cluster store is invalid ({exc}); "
                           f"remove it (etcdctl del {entry.key}) or use another pynet.overlay") from None

    def claim(self, wanted: Overlay, vni: int = 0) -> tuple[Overlay, bool]:
        """The overlay ``wanted.name``: the existing record if compatible, else a new one.

        Returns (record, created).  Conflict names the difference when the
        existing overlay has other pools, another VNI or another --internal.
        """
        def decide(entry: Entry | None) -> Decision:
            if entry is not None:
                current = self._decode(entry)
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

    def undo_claim(self, name: str, vni: int) -> None:
        """Remove an overlay this host has just created (rollback of a failed create)."""
        entry = self.store.get(keys.overlay(name))
        if entry is not None and not self.store.list(keys.members_prefix(name)):
            self.store.delete(entry.key, entry.revision)
            self._release_vni(vni, name)

    def update(self, name: str, change: Callable[[Overlay], Overlay]) -> Overlay | None:
        def decide(entry: Entry | None) -> Decision:
            if entry is None:
                return Keep(None)
            current = self._decode(entry)
            new = change(current)
            return Keep(current) if new == current else Write(new.to_dict(), new)

        return modify(self.store, keys.overlay(name), decide, f"overlay {name!r}")

    def _claim_vni(self, name: str, vni: int) -> int:
        if vni:
            if self.store.create(keys.vni(vni), {"overlay": name}) is None:
                owner = self._vni_owner(vni)
                if owner != name:
                    raise Conflict(f"VNI {vni} is already used by overlay {owner!r}")
            return vni
        # Start from a hash of the name so concurrent creates of different overlays rarely collide.
        start = VNI_MIN + zlib.crc32(name.encode()) % (VNI_MAX - VNI_MIN + 1)
        for i in range(VNI_PROBES):
            number = VNI_MIN + (start - VNI_MIN + i) % (VNI_MAX - VNI_MIN + 1)
            if self.store.create(keys.vni(number), {"overlay": name}) is not None:
                return number
            if self._vni_owner(number) == name:
                return number
        raise Exhausted(f"no free VNI found for overlay {name!r} after {VNI_PROBES} tries; set -o pynet.vni")

    def _vni_owner(self, number: int) -> str | None:
        """The overlay holding VNI ``number``; "?" for an unreadable claim (held, by nobody known)."""
        entry = self.store.get(keys.vni(number))
        if entry is None:
            return None
        try:
            return records.vni_owner(entry.value)
        except InvalidRecord as exc:
            self._reject("vnis", entry.key, str(exc))
            return "?"

    def _release_vni(self, number: int, name: str) -> None:
        entry = self.store.get(keys.vni(number))
        if entry is not None and entry.value.get("overlay") == name:
            self.store.delete(entry.key, entry.revision)

    # -- members -----------------------------------------------------------------
    def join(self, name: str, network_id: str) -> None:
        """Record that this host has Docker network ``network_id`` for overlay ``name``."""
        put(self.store, keys.member(name, self.host_id), Member(network_id).to_dict())

    def drop_member(self, name: str, network_id: str) -> None:
        """Delete this host's membership of ``name`` if it names ``network_id`` (or is unreadable)."""
        entry = self.store.get(keys.member(name, self.host_id))
        if entry is not None and entry.value.get("network_id") in (network_id, None):  # None: unreadable
            self.store.delete(entry.key, entry.revision)

    def leave(self, name: str, network_id: str) -> bool:
        """This host's copy is gone: drop the membership and mark the overlay for removal
        everywhere; the last member out deletes the record and frees its VNI.  True if deleted."""
        # Marked first: a host whose view shows the overlay active without its own membership creates
        # its copy again (docker_sync, "wanted here"), so the two steps in the other order let this
        # host's own sync bring back the copy the user just removed.
        self.update(name, lambda o: replace(o, state=REMOVING))
        self.drop_member(name, network_id)
        return self.forget_if_unused(name)

    def forget_if_unused(self, name: str) -> bool:
        entry = self.store.get(keys.overlay(name))
        if entry is None or self.store.list(keys.members_prefix(name)):
            return False
        record = self._decode(entry)
        if record.state == REMOVING and self.store.delete(entry.key, entry.revision):
            self._release_vni(record.vni, name)
            return True
        return False

    # -- adverts -----------------------------------------------------------------
    def advertise(self, advert: Advert, lease: int, keep_names: bool = False) -> Advert:
        """Write ``advert`` on ``lease``; the advert written.  With ``keep_names``, an advert without DNS
        names takes those of the stored record of the same endpoint and MAC: a restarted pynet advertises
        again before it has asked Docker for names, and the other hosts must not lose them meanwhile."""
        key = keys.advert(advert.overlay, advert.host, advert.endpoint)

        def decide(entry: Entry | None) -> Decision:
            value = advert
            if keep_names and not advert.names and entry is not None:
                try:
                    old = records.advert((advert.overlay, advert.host, advert.endpoint), entry.value)
                except InvalidRecord:
                    old = None
                if old is not None and old.mac == advert.mac:
                    value = replace(advert, names=old.names)
            return Write(value.to_dict(), value, lease=lease)

        return modify(self.store, key, decide, f"advert {advert.endpoint[:12]}")

    def withdraw(self, overlay: str, endpoint_id: str, tombstone: Advert | None = None, lease: int = 0) -> None:
        """Delete this host's advert; with ``tombstone`` (the advert, ``withdrawn=True``) overwrite it with
        that first, on ``lease``, so the other hosts know the delete is not a lease expiry (view.py)."""
        key = keys.advert(overlay, self.host_id, endpoint_id)
        if tombstone is not None:
            put(self.store, key, tombstone.to_dict(), lease)
        self.store.delete(key)

    def my_adverts(self, overlays) -> dict[tuple[str, str], Advert | None]:
        """(overlay, endpoint) -> advert (None if unreadable) of this host's adverts in ``overlays``."""
        out: dict[tuple[str, str], Advert | None] = {}
        for name in overlays:
            for e in self.store.list(keys.host_adverts_prefix(name, self.host_id)):
                eid = e.key.rsplit("/", 1)[-1]
                try:
                    out[(name, eid)] = records.advert((name, self.host_id, eid), e.value)
                except InvalidRecord as exc:
                    self._reject("endpoints", e.key, str(exc))
                    out[(name, eid)] = None
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
