"""The grace period: a host cut off from etcd (not from its peers) keeps its place in the others' tables.

Pure view tests on a fake clock, then two control planes on one MemoryStore whose leases run on the
same clock: A's lease expires (etcd deletes its keys), B keeps A's containers until the grace is over,
A comes back and nothing B's reconciler would see changes; a container removed on A goes at once.
"""

from __future__ import annotations

import pytest

from pynet.cluster.control import EtcdControlPlane
from pynet.cluster.models import Advert, Host
from pynet.cluster.view import ClusterView
from pynet.driver.overlay.port import ALL, LocalEndpoint, Remote
from pynet.errors import Unavailable
from pynet.plugin import cli
from pynet.plugin.settings import resolve
from pynet.store import keys
from pynet.store.base import Entry, Event
from pynet.store.memory import MemoryStore

H1, H2 = "111111111111", "222222222222"
E = {n: f"{n:x}" * 64 for n in range(1, 6)}
MAC = {n: f"02:00:00:00:00:0{n}" for n in range(1, 6)}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ad(host: str, n: int, withdrawn: bool = False) -> Advert:
    return Advert("demo", host, E[n], MAC[n], f"192.0.2.{host[-1]}", (f"10.10.0.{n}",), withdrawn=withdrawn)


def view_with_h2(linger: float, clock: Clock) -> ClusterView:
    view = ClusterView(linger=linger, clock=clock)
    view.load([Entry(keys.host(H1), Host(H1, "192.0.2.1").to_dict(), 1),
               Entry(keys.host(H2), Host(H2, "192.0.2.2").to_dict(), 2),
               Entry(keys.advert("demo", H2, E[2]), ad(H2, 2).to_dict(), 3),
               Entry(keys.advert("demo", H2, E[3]), ad(H2, 3).to_dict(), 4)], revision=4)
    return view


def lease_ends(view: ClusterView, revision: int, *eids: int) -> list:
    """What etcd sends when H2's lease ends: its adverts and its host key deleted in one revision (in key
    order, so the adverts come before the host key)."""
    return [view.apply(Event(keys.advert("demo", H2, E[n]), None, revision)) for n in eids] + \
        [view.apply(Event(keys.host(H2), None, revision))]


# -- the pure view ----------------------------------------------------------------------------------
def test_a_lease_expiry_keeps_the_host_and_its_adverts_until_the_grace_ends():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    before = view.remotes("demo", H1)
    assert lease_ends(view, 5, 2, 3) == [{}, {}, {}]  # nothing the tables hold changes: no nudge at all
    assert view.remotes("demo", H1) == before and H2 in view.hosts  # the member-VTEP filter keeps H2 too
    clock.now += 24.9
    assert view.expire() == {} and view.remotes("demo", H1) == before
    clock.now += 0.2
    assert view.expire() == {ALL: None, "demo": frozenset({MAC[2], MAC[3]})}
    assert view.remotes("demo", H1) == {} and H2 not in view.hosts and view.departing() == {}


def test_without_a_grace_deletes_apply_at_once():
    view = view_with_h2(linger=0, clock=Clock())
    assert lease_ends(view, 5, 2, 3) == [{"demo": {MAC[2]}}, {"demo": {MAC[3]}}, {ALL: None}]
    assert view.remotes("demo", H1) == {} and H2 not in view.hosts


def test_re_registering_and_re_advertising_during_the_grace_cancels_the_removal():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    lease_ends(view, 5, 2, 3)
    before = view.remotes("demo", H1)
    clock.now += 15  # the host is back on a new lease: key and adverts written again
    view.apply(Event(keys.host(H2), Host(H2, "192.0.2.2").to_dict(), 6))
    view.apply(Event(keys.advert("demo", H2, E[2]), ad(H2, 2).to_dict(), 7))
    view.apply(Event(keys.advert("demo", H2, E[3]), ad(H2, 3).to_dict(), 8))
    clock.now += 60
    assert view.expire() == {} and view.remotes("demo", H1) == before and view.departing() == {}


def test_a_tombstone_removes_at_once_and_the_delete_after_it_is_a_no_op():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    tomb = Event(keys.advert("demo", H2, E[2]), ad(H2, 2, withdrawn=True).to_dict(), 5)
    assert view.apply(tomb) == {"demo": {MAC[2]}}
    assert MAC[2] not in view.remotes("demo", H1)
    assert view.apply(Event(keys.advert("demo", H2, E[2]), None, 6)) == {}
    assert view.departing() == {} and MAC[3] in view.remotes("demo", H1)


def test_a_live_advert_of_the_same_mac_wins_over_a_departing_one():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    lease_ends(view, 5, 2, 3)
    # the container moved to H1's peer H3 (same MAC, new VTEP) while H2's entry is in its grace
    h3 = "333333333333"
    view.apply(Event(keys.host(h3), Host(h3, "192.0.2.3").to_dict(), 6))
    moved = Advert("demo", h3, E[4], MAC[2], "192.0.2.3", ("10.10.0.2",))
    assert view.apply(Event(keys.advert("demo", h3, E[4]), moved.to_dict(), 7)) == {"demo": {MAC[2]}}
    assert view.remotes("demo", H1)[MAC[2]] == Remote("192.0.2.3", frozenset({"10.10.0.2"}))


def test_a_reload_keeps_what_left_as_departing_but_drops_what_its_live_owner_withdrew():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    # relisted after a lost watch: H2's registration unchanged (revision 2), its advert e2 gone -- H2
    # withdrew it while we were not watching -- and e3 still there
    h1, h2 = (Entry(keys.host(H1), Host(H1, "192.0.2.1").to_dict(), 1),
              Entry(keys.host(H2), Host(H2, "192.0.2.2").to_dict(), 2))
    view.load([h1, h2, Entry(keys.advert("demo", H2, E[3]), ad(H2, 3).to_dict(), 4)], revision=9)
    assert set(view.remotes("demo", H1)) == {MAC[3]} and view.departing() == {}
    # relisted again with H2 absent (its lease ended): H2 and e3 stay, departing, and go after the grace
    view.load([h1], revision=12)
    assert set(view.remotes("demo", H1)) == {MAC[3]} and H2 in view.hosts
    assert set(view.departing()) == {("hosts", H2), ("endpoints", "demo", H2, E[3])}
    clock.now += 10
    view.load([h1, Entry(keys.host(H2), Host(H2, "192.0.2.2").to_dict(), 13)], revision=13)  # re-registered
    assert set(view.departing()) == {("endpoints", "demo", H2, E[3])}  # deadline kept, not restarted
    clock.now += 15.1
    assert view.expire() == {"demo": frozenset({MAC[3]})} and H2 in view.hosts


# -- two control planes on one store ---------------------------------------------------------------
class Cuttable:
    """A store that can be cut off (every call raises Unavailable), as an etcd partition does."""

    def __init__(self, store: MemoryStore) -> None:
        self._store, self.down = store, False

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise Unavailable("etcd unreachable at http://192.0.2.10:2379: no answer within 2.0 s")
            return attr(*args, **kwargs)
        return call


def follow(control: EtcdControlPlane, store: MemoryStore) -> None:
    """What the watch loop does: apply every event after the view's revision."""
    for event in store.watch(keys.cluster_prefix(), control.view.revision + 1, timeout=0.01):
        control.apply(event)


def advance(clock: Clock, b: EtcdControlPlane, seconds: float) -> None:
    """Let time pass with B's keep-alive running (B stays connected; only A is cut off)."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + 1.0)
        b.keepalive()


@pytest.fixture
def pair():
    clock = Clock()
    store = MemoryStore(clock=clock)
    a_store = Cuttable(store)
    a = EtcdControlPlane(a_store, H1, "192.0.2.1", lease_ttl=5, grace_period=30, clock=clock)
    b = EtcdControlPlane(store, H2, "192.0.2.2", lease_ttl=5, grace_period=30, clock=clock)
    for n in (1, 2):
        a.advertise(LocalEndpoint("demo", E[n], MAC[n], (f"10.10.0.{n}",)))
    b.load()
    follow(b, store)  # B's own registration (its load's housekeeping granted its lease)
    seen = []
    b.subscribe(seen.append)
    assert set(b.remotes("demo")) == {MAC[1], MAC[2]}
    return clock, store, a_store, a, b, seen


def test_a_host_cut_off_from_etcd_stays_in_the_peers_tables_and_comes_back_without_a_change(pair):
    clock, store, a_store, a, b, seen = pair
    before = b.remotes("demo")
    a_store.down = True
    with pytest.raises(Unavailable):
        a.keepalive()
    advance(clock, b, 6)  # A's lease (5 s) has ended: etcd deleted its key and adverts
    follow(b, store)
    assert store.get(keys.host(H1)) is None and b.remotes("demo") == before and seen == []
    advance(clock, b, 14)  # 20 s cut
    b.expire()
    assert b.remotes("demo") == before and seen == []
    a_store.down = False
    a.keepalive()  # a new lease: re-registered, every advert written again
    assert a.membership.generation == 2
    assert store.get(keys.host(H1)) is not None and len(store.list(keys.host_adverts_prefix("demo", H1))) == 2
    follow(b, store)
    advance(clock, b, 60)
    b.expire()
    assert b.remotes("demo") == before and b.view.departing() == {}
    assert all(change.keys() == {"demo"} for change in seen)  # MAC-level nudges whose remotes are unchanged


def test_a_host_that_stays_away_leaves_after_the_grace_counted_from_its_silence(pair):
    clock, store, a_store, a, b, seen = pair
    a_store.down = True
    advance(clock, b, 5.5)  # the lease (5 s) ends; the others hold its entries grace - lease = 25 s more
    follow(b, store)
    advance(clock, b, 24.9)
    b.expire()
    assert set(b.remotes("demo")) == {MAC[1], MAC[2]} and seen == []
    advance(clock, b, 0.2)
    b.expire()
    assert b.remotes("demo") == {} and H1 not in b.view.hosts
    assert ALL in seen[-1]


def test_a_container_removed_on_its_host_leaves_the_peers_at_once(pair):
    clock, store, a_store, a, b, seen = pair
    a.withdraw("demo", E[1])
    follow(b, store)
    assert set(b.remotes("demo")) == {MAC[2]} and b.view.departing() == {}
    assert store.get(keys.advert("demo", H1, E[1])) is None  # the tombstone was deleted after it


def test_a_container_removed_while_etcd_was_away_leaves_the_peers_when_it_returns(pair):
    clock, store, a_store, a, b, seen = pair
    a_store.down = True
    with pytest.raises(Unavailable):
        a.withdraw("demo", E[1])  # the driver logs this and goes on; housekeeping finishes it
    advance(clock, b, 6)
    follow(b, store)
    assert set(b.remotes("demo")) == {MAC[1], MAC[2]}  # in its grace: B cannot know yet
    a_store.down = False
    a.keepalive()  # new lease, housekeeping: e2 re-advertised, e1 tombstoned although the lease took it
    follow(b, store)
    assert set(b.remotes("demo")) == {MAC[2]} and b.view.departing() == {}
    assert a._gone == {} and store.get(keys.advert("demo", H1, E[1])) is None


# -- the setting -----------------------------------------------------------------------------------
def test_the_grace_period_setting_and_its_check():
    assert resolve({}, {}).grace_period == 60
    assert resolve({"grace_period": 30, "lease_ttl": 5}, {}).grace_period == 30
    assert resolve({}, {"PYNET_GRACE_PERIOD": "45"}).grace_period == 45
    E = {"etcd": "http://192.0.2.10:2379"}
    with pytest.raises(ValueError, match="--grace-period 15 must be longer than --lease-ttl 15"):
        resolve({"grace_period": 15, **E}, {})
    # a single host (no etcd) has no lease and no peers: nothing to refuse
    assert resolve({"grace_period": 15}, {}).grace_period == 15
    with pytest.raises(ValueError, match="--grace-period 'soon' is not a whole number"):
        resolve({}, {"PYNET_GRACE_PERIOD": "soon"})
    with pytest.raises(SystemExit, match="pynet: --grace-period 10 must be longer than --lease-ttl 20"):
        cli.main(["serve", "--etcd", "http://192.0.2.10:2379", "--lease-ttl", "20", "--grace-period", "10"])


def test_the_control_plane_holds_deletes_for_the_grace_minus_the_lease():
    assert EtcdControlPlane(MemoryStore(), H1, "192.0.2.1", lease_ttl=15, grace_period=60).linger == 45
    assert EtcdControlPlane(MemoryStore(), H1, "192.0.2.1", lease_ttl=15).linger == 0  # no grace asked


def test_the_watch_loop_keeps_the_view_while_etcd_is_away_and_reloads_when_it_is_back(pair, monkeypatch):
    """On the cut-off host: the watch fails, and keeps failing to list, but never empties the view."""
    import threading

    from pynet.background import Context
    from pynet.cluster import loops
    from pynet.health import Health

    clock, store, a_store, a, b, seen = pair
    monkeypatch.setattr(loops, "RETRY", 0.01)
    monkeypatch.setattr(loops, "WATCH_IDLE", 0.05)
    b_view_of_a = b.remotes("demo")
    # A's own view: give B a container, so A has something to keep
    b.advertise(LocalEndpoint("demo", E[3], MAC[3], ("10.10.0.3",)))
    a.load()
    before = a.remotes("demo")
    assert set(before) == {MAC[3]}
    health = Health()
    ctx = Context("watch", threading.Event(), health)
    a_store.down = True
    runner = threading.Thread(target=loops.ClusterLoops(a, supervisor=None).watch, args=(ctx,))
    runner.start()
    try:
        assert _until(lambda: health.loop("watch").failures >= 5)
        assert a.view.loaded and a.remotes("demo") == before  # still there after failed listings
        a_store.down = False
        b.withdraw("demo", E[3])  # something new to catch up on once etcd is back
        assert _until(lambda: a.remotes("demo") == {})
    finally:
        ctx.stopping.set()
        runner.join(5)
    assert b.remotes("demo") == b_view_of_a


def _until(check, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_an_address_handed_on_to_a_live_advert_leaves_the_departing_one():
    clock = Clock()
    view = view_with_h2(linger=25, clock=clock)
    lease_ends(view, 5, 2, 3)
    # e2's address 10.10.0.2 given to a new container on H1's peer H3 while H2's advert is departing
    h3 = "333333333333"
    view.apply(Event(keys.host(h3), Host(h3, "192.0.2.3").to_dict(), 6))
    new = Advert("demo", h3, E[4], MAC[4], "192.0.2.3", ("10.10.0.2",))
    assert view.apply(Event(keys.advert("demo", h3, E[4]), new.to_dict(), 7)) == {"demo": {MAC[4], MAC[2]}}
    remotes = view.remotes("demo", H1)
    assert remotes[MAC[4]].ips == {"10.10.0.2"} and remotes[MAC[2]].ips == frozenset()  # no stale IP -> MAC
    assert view.remotes("demo", H1, [MAC[2]]) == {MAC[2]: remotes[MAC[2]]}  # the same answer per MAC
    assert remotes[MAC[3]].ips == {"10.10.0.3"}
