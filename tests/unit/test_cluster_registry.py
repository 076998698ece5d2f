"""Overlay records, VNIs, members and adverts over the in-memory store (the etcd store passes the
same store conformance suite, so these hold there too)."""

from __future__ import annotations

import re

import pytest

from pynet.cluster.models import REMOVING, Advert, Overlay, OverlayPool
from pynet.cluster.registry import VNI_MAX, VNI_MIN, OverlayRegistry
from pynet.errors import Conflict
from pynet.store import keys
from pynet.store.memory import MemoryStore

HA, HB = "a1a1a1a1a1a1", "b2b2b2b2b2b2"  # host ids as pynet makes them (12 hex digits)
NET_A, NET_B = "a" * 64, "b" * 64


def demo(name="demo", subnet="10.10.0.0/24", gateway="10.10.0.1/24", internal=False):
    return Overlay(name=name, vni=0, ipv4=(OverlayPool(subnet, gateway),), internal=internal)


@pytest.fixture
def store():
    return MemoryStore()


def test_first_claim_creates_and_later_claims_share(store):
    a, b = OverlayRegistry(store, HA), OverlayRegistry(store, HB)
    rec, created = a.claim(demo())
    assert created and VNI_MIN <= rec.vni <= VNI_MAX and rec.origin == HA
    again, created_b = b.claim(demo())
    assert not created_b and again == rec
    assert store.get(keys.vni(rec.vni)).value == {"overlay": "demo"}


@pytest.mark.parametrize("other, message", [
    (demo(subnet="10.20.0.0/24", gateway=""), "already exists with subnet(s) 10.10.0.0/24"),
    (demo(gateway="10.10.0.254/24"), "uses gateway 10.10.0.1/24"),
    (demo(internal=True), "--internal"),
])
def test_incompatible_claim_names_the_overlay_and_the_difference(store, other, message):
    OverlayRegistry(store, HA).claim(demo())
    with pytest.raises(Conflict, match=re.escape(message)):
        OverlayRegistry(store, HB).claim(other)


def test_fixed_vni_is_exclusive(store):
    reg = OverlayRegistry(store, HA)
    rec, _ = reg.claim(demo(), vni=42)
    assert rec.vni == 42
    with pytest.raises(Conflict, match="VNI 42 is already used by overlay 'demo'"):
        reg.claim(demo(name="other", subnet="10.30.0.0/24"), vni=42)
    with pytest.raises(Conflict, match="already uses VNI 42, not 43"):
        reg.claim(demo(), vni=43)


def test_allocated_vnis_are_unique(store):
    reg = OverlayRegistry(store, HA)
    vnis = {reg.claim(demo(name=f"n{i}", subnet=f"10.{i}.0.0/24", gateway=""))[0].vni for i in range(50)}
    assert len(vnis) == 50


def test_last_member_out_removes_the_overlay_and_frees_its_vni(store):
    a, b = OverlayRegistry(store, HA), OverlayRegistry(store, HB)
    rec, _ = a.claim(demo())
    a.join("demo", NET_A)
    b.join("demo", NET_B)
    assert {e.key.rsplit("/", 1)[-1] for e in store.list(keys.members_prefix("demo"))} == {HA, HB}
    assert a.leave("demo", NET_A) is False  # b still has a copy: marked for removal, kept
    assert a.get("demo").state == REMOVING
    assert b.leave("demo", NET_B) is True
    assert a.get("demo") is None and store.get(keys.vni(rec.vni)) is None


def test_leaving_marks_the_overlay_for_removal_before_dropping_the_membership(store, monkeypatch):
    """Never a moment where the overlay is active and this host not a member: its own docker sync would
    create the copy the user just removed again (seen in the bench and the member-filter e2e)."""
    a, b = OverlayRegistry(store, HA), OverlayRegistry(store, HB)
    a.claim(demo())
    a.join("demo", NET_A)
    b.join("demo", NET_B)
    states = []
    real_delete = store.delete

    def delete(key, *args, **kwargs):
        if key == keys.member("demo", HA):
            states.append(a.get("demo").state)
        return real_delete(key, *args, **kwargs)

    monkeypatch.setattr(store, "delete", delete)
    a.leave("demo", NET_A)
    assert states == [REMOVING]


def test_claim_revives_an_overlay_being_removed(store):
    a, b = OverlayRegistry(store, HA), OverlayRegistry(store, HB)
    rec, _ = a.claim(demo())
    a.join("demo", NET_A)
    b.join("demo", NET_B)
    a.leave("demo", NET_A)
    again, created = a.claim(demo())
    assert not created and again.state == "active" and again.vni == rec.vni


def test_undo_claim_only_when_nobody_joined(store):
    a = OverlayRegistry(store, HA)
    rec, _ = a.claim(demo())
    a.undo_claim(rec.name, rec.vni)
    assert a.get("demo") is None and store.get(keys.vni(rec.vni)) is None


def test_adverts_ride_on_the_lease(store):
    clock = [0.0]
    store = MemoryStore(clock=lambda: clock[0])
    a = OverlayRegistry(store, HA)
    lease = store.grant_lease(10)
    ad = Advert("demo", HA, "e" * 64, "02:42:0a:0a:00:02", "192.0.2.1", ("10.10.0.2",))
    a.advertise(ad, lease)
    a.advertise(ad, lease)  # idempotent
    assert a.my_adverts(["demo"])[("demo", "e" * 64)] == ad
    clock[0] = 11
    assert store.get(keys.advert("demo", HA, "e" * 64)) is None
    assert a.my_adverts(["demo"]) == {}


def test_an_advert_on_an_expired_lease_gets_a_new_lease():
    from pynet.cluster.control import EtcdControlPlane
    from pynet.driver.overlay.port import LocalEndpoint

    clock = [0.0]
    store = MemoryStore(clock=lambda: clock[0])
    control = EtcdControlPlane(store, HA, "192.0.2.1", lease_ttl=10)
    first = control.membership.current()
    clock[0] = 11  # the lease expired while etcd was unreachable; the keep-alive has not run yet
    control.advertise(LocalEndpoint("demo", "e" * 64, "02:42:0a:0a:00:02", ("10.10.0.2",)))
    assert control.membership.lease != first and control.membership.generation == 2
    assert store.get(keys.advert("demo", HA, "e" * 64)) is not None
    assert store.get(keys.host(HA)).value["vtep"] == "192.0.2.1"
