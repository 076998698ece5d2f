"""The pure cluster view: what each VXLAN device should hold and what the Docker sync should do."""

from __future__ import annotations

from pynet.cluster.docker_network import DockerNetwork, IpamPool
from pynet.cluster.models import REMOVING, Advert, Host, Member, Overlay, OverlayPool
from pynet.cluster.view import ClusterView
from pynet.driver.overlay.port import ALL, Remote
from pynet.store import keys
from pynet.store.base import Entry, Event

H1, H2 = "111111111111", "222222222222"
E = {n: f"{n:x}" * 64 for n in range(1, 6)}  # endpoint ids
POOL = (OverlayPool("10.10.0.0/24", "10.10.0.1/24"),)
DOCKER = DockerNetwork("demo", "pynet", "pynet", (IpamPool("10.10.0.0/24"),))


def ad(host, n, ip, overlay="demo"):
    return Advert(overlay, host, E[n], f"02:00:00:00:00:0{n}", f"192.0.2.{host[-1]}", (ip,))


def loaded(rejected=None):
    view = ClusterView(reject=lambda *r: rejected.append(r)) if rejected is not None else ClusterView()
    view.load([
        Entry(keys.host(H1), Host(H1, "192.0.2.1").to_dict(), 1),
        Entry(keys.host(H2), Host(H2, "192.0.2.2").to_dict(), 1),
        Entry(keys.overlay("demo"), Overlay("demo", 4242, ipv4=POOL, docker=DOCKER).to_dict(), 1),
        Entry(keys.member("demo", H1), Member("a" * 64).to_dict(), 1),
        Entry(keys.advert("demo", H1, E[1]), ad(H1, 1, "10.10.0.2").to_dict(), 1),
        Entry(keys.advert("demo", H2, E[2]), ad(H2, 2, "10.10.0.3").to_dict(), 1),
        Entry(keys.advert("other", H2, E[3]), ad(H2, 3, "10.20.0.2", "other").to_dict(), 1),
    ], revision=7)
    return view


def test_remotes_are_the_other_hosts_containers_of_that_overlay():
    view = loaded()
    assert view.remotes("demo", H1) == {"02:00:00:00:00:02": Remote("192.0.2.2", frozenset({"10.10.0.3"}))}
    assert view.remotes("demo", H2) == {"02:00:00:00:00:01": Remote("192.0.2.1", frozenset({"10.10.0.2"}))}
    assert view.remotes("demo", H1, macs=["02:00:00:00:00:02", "02:00:00:00:00:09"]) == view.remotes("demo", H1)
    assert view.revision == 7


def test_events_add_and_remove_and_say_which_macs_they_touch():
    view = loaded()
    new = ad(H2, 4, "10.10.0.4")
    assert view.apply(Event(keys.advert("demo", H2, E[4]), new.to_dict(), 8)) == {"demo": {"02:00:00:00:00:04"}}
    assert "02:00:00:00:00:04" in view.remotes("demo", H1)
    assert view.apply(Event(keys.advert("demo", H2, E[2]), None, 9)) == {"demo": {"02:00:00:00:00:02"}}
    assert "02:00:00:00:00:02" not in view.remotes("demo", H1)
    assert view.apply(Event(keys.host(H2), None, 10)) == {ALL: None}
    assert view.revision == 10
    assert view.apply(Event("/pynet/v1/cluster/unknown/x", {"a": 1}, 11)) == {}


def test_a_bad_record_is_skipped_reported_and_forgets_what_its_key_said():
    rejected = []
    view = loaded(rejected)
    # the advert of e2 turns invalid (a multicast MAC): it is reported, and B's container leaves the table
    bad = {**ad(H2, 2, "10.10.0.3").to_dict(), "mac": "01:00:5e:00:00:01"}
    assert view.apply(Event(keys.advert("demo", H2, E[2]), bad, 8)) == {"demo": {"02:00:00:00:00:02"}}
    assert view.remotes("demo", H1) == {}
    assert rejected == [("endpoints", keys.advert("demo", H2, E[2]),
                         "advert MAC '01:00:5e:00:00:01' is not a unicast MAC address")]
    # a listing with one bad entry among good ones: the others are all used
    rejected.clear()
    view.load([Entry(keys.advert("demo", H2, E[2]), {"nonsense": 1}, 1),
               Entry(keys.advert("demo", H2, E[4]), ad(H2, 4, "10.10.0.4").to_dict(), 1)], 3)
    assert list(view.remotes("demo", H1)) == ["02:00:00:00:00:04"] and len(rejected) == 1


def test_the_hosts_current_vtep_wins_over_the_adverts():
    view = loaded()
    view.apply(Event(keys.host(H2), Host(H2, "192.0.2.22").to_dict(), 8))
    assert view.remotes("demo", H1)["02:00:00:00:00:02"].vtep == "192.0.2.22"


def test_docker_sync_decisions():
    view = loaded()
    assert [o.name for o in view.wanted_here(H2)] == ["demo"]  # H2 has no member key yet
    assert view.wanted_here(H1) == []
    removing = Overlay("demo", 4242, ipv4=POOL, state=REMOVING, docker=DOCKER)
    view.apply(Event(keys.overlay("demo"), removing.to_dict(), 8))
    assert view.wanted_here(H2) == [] and [o.name for o in view.removing()] == ["demo"]
    undescribed = ClusterView()
    undescribed.load([Entry(keys.overlay("x"), Overlay("x", 5, ipv4=POOL).to_dict(), 1)], 1)
    assert undescribed.wanted_here("999999999999") == []  # nothing to create from until the origin describes it

