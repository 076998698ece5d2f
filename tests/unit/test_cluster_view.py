"""The pure cluster view: what each VXLAN device should hold and what the Docker sync should do."""

from __future__ import annotations

from pynet.cluster.models import REMOVING, Advert, Host, Member, Overlay
from pynet.cluster.view import ClusterView
from pynet.store import keys
from pynet.store.base import Entry, Event


def ad(host, eid, mac, ip, overlay="demo", vtep=None):
    return Advert(overlay, host, eid, mac, vtep or f"192.0.2.{host[-1]}", (ip,))


def entry(key, value, rev=1):
    return Entry(key, value, rev)


def loaded():
    view = ClusterView()
    a1, b1 = ad("h1", "e1", "02:00:00:00:00:01", "10.10.0.2"), ad("h2", "e2", "02:00:00:00:00:02", "10.10.0.3")
    view.load([
        entry(keys.host("h1"), Host("h1", "192.0.2.1").to_dict()),
        entry(keys.host("h2"), Host("h2", "192.0.2.2").to_dict()),
        entry(keys.overlay("demo"), Overlay("demo", 4242, docker={"Name": "demo"}).to_dict()),
        entry(keys.member("demo", "h1"), Member("n1").to_dict()),
        entry(keys.advert("demo", "h1", "e1"), a1.to_dict()),
        entry(keys.advert("demo", "h2", "e2"), b1.to_dict()),
        entry(keys.advert("other", "h2", "e3"), ad("h2", "e3", "02:00:00:00:00:03", "10.20.0.2", "other").to_dict()),
    ], revision=7)
    return view


def test_remotes_are_the_other_hosts_containers_of_that_overlay():
    view = loaded()
    assert view.remotes("demo", "h1") == {"02:00:00:00:00:02": ("192.0.2.2", frozenset({"10.10.0.3"}))}
    assert view.remotes("demo", "h2") == {"02:00:00:00:00:01": ("192.0.2.1", frozenset({"10.10.0.2"}))}
    assert view.revision == 7


def test_events_add_and_remove_and_say_what_they_touch():
    view = loaded()
    new = ad("h2", "e4", "02:00:00:00:00:04", "10.10.0.4")
    assert view.apply(Event(keys.advert("demo", "h2", "e4"), new.to_dict(), 8)) == {"demo"}
    assert "02:00:00:00:00:04" in view.remotes("demo", "h1")
    assert view.apply(Event(keys.advert("demo", "h2", "e2"), None, 9)) == {"demo"}
    assert "02:00:00:00:00:02" not in view.remotes("demo", "h1")
    assert view.apply(Event(keys.host("h2"), None, 10)) == {"*"}
    assert view.revision == 10
    assert view.apply(Event("/pynet/v1/cluster/unknown/x", {"a": 1}, 11)) == set()
    assert view.apply(Event(keys.advert("demo", "h2", "bad"), {"nonsense": 1}, 12)) == set()


def test_the_hosts_current_vtep_wins_over_the_adverts():
    view = loaded()
    view.apply(Event(keys.host("h2"), Host("h2", "192.0.2.22").to_dict(), 8))
    assert view.remotes("demo", "h1")["02:00:00:00:00:02"][0] == "192.0.2.22"


def test_docker_sync_decisions():
    view = loaded()
    assert [o.name for o in view.wanted_here("h2")] == ["demo"]  # h2 has no member key yet
    assert view.wanted_here("h1") == []
    view.apply(Event(keys.overlay("demo"), Overlay("demo", 4242, state=REMOVING, docker={"Name": "d"}).to_dict(), 8))
    assert view.wanted_here("h2") == [] and [o.name for o in view.removing()] == ["demo"]
    undescribed = ClusterView()
    undescribed.load([entry(keys.overlay("x"), Overlay("x", 5).to_dict())], 1)
    assert undescribed.wanted_here("h9") == []  # nothing to create from until the origin describes it
