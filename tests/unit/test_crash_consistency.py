"""Crash consistency of the driver: removals forget the record before freeing what it held, and a
crash at any of the marked steps (pynet/faults.py) followed by start-up replay leaves nothing
claimable twice and nothing leaked.

A crash is simulated by making ``faults.reached`` raise at the named step (the one port the tests
fake); the "restarted" service is a new NetworkService over the same store and the same (fake)
kernel, as after a SIGKILL.  tests/e2e/test_crash.py does the same with a real SIGKILL.
"""

from __future__ import annotations

import threading

import pytest

from pynet import faults
from pynet.driver.models import IPAMData
from pynet.driver.ports import Request
from pynet.driver.reconcile import reconcile
from pynet.driver.service import NetworkService
from pynet.errors import Conflict
from pynet.store import keys
from pynet.store.memory import MemoryStore
from tests.fakes import FakeFirewall, FakeLinks

NID = "2f234f73" + "0" * 55 + "1"
EID = "2688ccdb" + "0" * 55 + "2"
EID2 = "3799ddec" + "0" * 55 + "3"
PORTMAP = {"com.docker.network.portmap": [
    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 18080, "HostPortEnd": 18080}]}


class Crash(BaseException):
    """The process died here (BaseException: no ``except Exception`` in the code may swallow it)."""


class Journal:
    """One ordered log of what the store, the links and the firewall were asked to do."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def index(self, event: str) -> int:
        assert event in self.events, f"{event} not in {self.events}"
        return self.events.index(event)


class JournalStore(MemoryStore):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def delete(self, key, revision=None):
        self.journal.events.append(f"delete {key}")
        return super().delete(key, revision)

    def cas(self, key, value, revision, lease=0):
        self.journal.events.append(f"cas {key}")
        return super().cas(key, value, revision, lease)


class JournalLinks(FakeLinks):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def delete(self, name):
        self.journal.events.append(f"link-delete {name}")
        return super().delete(name)


class JournalFirewall(FakeFirewall):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.fail = False

    def sync(self, networks, endpoints=()):
        self.journal.events.append("firewall-sync")
        if self.fail:
            raise RuntimeError("iptables-restore failed (injected)")
        super().sync(networks, endpoints)


class World:
    def __init__(self) -> None:
        self.journal = Journal()
        self.store = JournalStore(self.journal)
        self.links = JournalLinks(self.journal)
        self.firewall = JournalFirewall(self.journal)
        self.service = self.restart()

    def restart(self) -> NetworkService:
        """A new service over the same store and kernel, as pynet after a SIGKILL, replayed."""
        self.service = NetworkService(self.store, self.links, self.firewall, port_probe=lambda *a: True,
                                      set_sysctl=lambda path, value: True)
        return self.service

    def network(self) -> None:
        self.service.create_network(NID, {"com.docker.network.generic": {}},
                                    [IPAMData(pool="10.9.0.0/24", gateway="10.9.0.1/24", address_space="pynet-local")], [])

    def container(self, eid: str, address: str, ports: dict | None = None) -> None:
        self.service.create_endpoint(NID, eid, {"address": address}, {})
        self.service.join(NID, eid, "/var/run/docker/netns/x", {})
        self.service.program_external(NID, eid, ports or {})

    def claims(self) -> set:
        return {(c.owner, c.port) for c in self.service.publisher.ports.claims()}

    def check_invariants(self) -> None:
        """Every claim is named by a record, every recorded binding is claimed, and the rules
        are exactly the recorded bindings."""
        recorded = {(ep.id, b["host_port"]) for ep in self.service.repo.endpoints() for b in ep.published}
        assert self.claims() == recorded
        assert sorted(b["host_port"] for b in self.firewall.published) == sorted(p for _, p in recorded)


@pytest.fixture
def world():
    return World()


def crash_at(monkeypatch, step: str) -> None:
    def reached(name: str) -> None:
        if name == step:
            raise Crash(step)

    monkeypatch.setattr(faults, "reached", reached)


def no_crash(monkeypatch) -> None:
    monkeypatch.setattr(faults, "reached", lambda name: None)


# -- the order of each removal ---------------------------------------------------------------------


def test_delete_endpoint_forgets_the_record_then_rules_then_ports_then_links(world):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.journal.events.clear()
    world.service.delete_endpoint(NID, EID)
    j = world.journal
    record = j.index(f"delete {keys.endpoint(NID, EID)}")
    assert record < j.index("firewall-sync") < j.index(f"delete {keys.host_port(4, 'tcp', 18080)}")
    assert j.index(f"delete {keys.host_port(4, 'tcp', 18080)}") < j.index(f"link-delete pnh{EID[:12]}")


def test_revoke_clears_the_record_then_rules_then_ports(world):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.journal.events.clear()
    world.service.revoke_external(NID, EID)
    j = world.journal
    assert j.index(f"cas {keys.endpoint(NID, EID)}") < j.index("firewall-sync") < j.index(
        f"delete {keys.host_port(4, 'tcp', 18080)}")
    world.check_invariants()


def test_reprogram_releases_a_dropped_port_only_after_the_rules_lost_it(world):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.journal.events.clear()
    world.service.program_external(NID, EID, {})
    j = world.journal
    assert j.index(f"cas {keys.endpoint(NID, EID)}") < j.index("firewall-sync") < j.index(
        f"delete {keys.host_port(4, 'tcp', 18080)}")
    world.check_invariants()


def test_delete_network_forgets_every_record_before_freeing_anything(world):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.journal.events.clear()
    world.service.delete_network(NID)
    j = world.journal
    last_record = max(j.index(f"delete {keys.endpoint(NID, EID)}"), j.index(f"delete {keys.network(NID)}"))
    first_free = min(j.index("firewall-sync"), j.index(f"delete {keys.host_port(4, 'tcp', 18080)}"),
                     j.index(f"link-delete pnh{EID[:12]}"), j.index(f"link-delete pn-{NID[:12]}"))
    assert last_record < first_free
    assert world.links.links == {} and world.claims() == set()


def test_a_failed_rule_rewrite_keeps_the_claims_until_the_rules_are_gone(world):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.firewall.fail = True
    with pytest.raises(RuntimeError):
        world.service.delete_endpoint(NID, EID)
    assert world.claims() == {(EID, 18080)}  # the old rules may still send 18080 to the old container
    assert f"pnh{EID[:12]}" not in world.links.links
    world.firewall.fail = False
    assert world.service.publisher.collect_orphan_claims() == 1
    world.check_invariants()


def test_a_program_after_a_failed_rewrite_frees_the_claims_of_the_removed_endpoint(world):
    """A held xtables lock failed a removal's rewrite: the port stays claimed, but the next container that
    asks for it gets it as soon as its own rewrite succeeds, without waiting for the GC."""
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    world.firewall.fail = True
    with pytest.raises(RuntimeError):
        world.service.delete_endpoint(NID, EID)
    world.firewall.fail = False
    world.container(EID2, "10.9.0.3/24", PORTMAP)
    assert world.claims() == {(EID2, 18080)}
    world.check_invariants()


# -- a crash at each step, then start-up replay ----------------------------------------------------


@pytest.mark.parametrize("step, removal", [
    ("endpoint-forgotten", lambda s: s.delete_endpoint(NID, EID)),
    ("ports-unpublished", lambda s: s.revoke_external(NID, EID)),
    ("network-forgotten", lambda s: (s.delete_endpoint(NID, EID2), s.delete_network(NID))),
])
def test_a_crash_during_a_removal_leaves_nothing_claimable_twice_or_leaked(world, monkeypatch, step, removal):
    world.network()
    world.container(EID, "10.9.0.2/24", PORTMAP)
    if step == "network-forgotten":
        world.service.create_endpoint(NID, EID2, {"address": "10.9.0.3/24"}, {})
    crash_at(monkeypatch, step)
    with pytest.raises(Crash):
        removal(world.service)
    # Dead at the step: the record is gone, what it held is not.  Nothing holds the port *without*
    # the claim: the claim is there until the rules are rewritten.
    assert world.claims() == {(EID, 18080)}
    no_crash(monkeypatch)
    counts = reconcile(world.restart())
    assert counts["ports_released"] == 1 and counts["failed"] == 0
    world.check_invariants()
    assert world.claims() == set()
    if step == "network-forgotten":
        assert world.links.links == {}
        return
    assert (f"pnh{EID[:12]}" in world.links.links) == (step == "ports-unpublished")
    world.container(EID2, "10.9.0.3/24", PORTMAP)  # the port is free again, and only once
    world.check_invariants()
    assert world.claims() == {(EID2, 18080)}


def test_a_crash_between_claim_and_record_frees_the_claim_at_start(world, monkeypatch):
    world.network()
    world.service.create_endpoint(NID, EID, {"address": "10.9.0.2/24"}, {})
    crash_at(monkeypatch, "ports-claimed")
    with pytest.raises(Crash):
        world.service.program_external(NID, EID, PORTMAP)
    assert world.claims() == {(EID, 18080)} and world.firewall.published == []
    no_crash(monkeypatch)
    reconcile(world.restart())
    world.check_invariants()
    assert world.claims() == set()
    world.container(EID2, "10.9.0.3/24", PORTMAP)
    assert world.claims() == {(EID2, 18080)}


def test_a_crash_between_record_and_link_is_replayed_from_the_record(world, monkeypatch):
    world.network()
    crash_at(monkeypatch, "endpoint-recorded")
    with pytest.raises(Crash):
        world.service.create_endpoint(NID, EID, {"address": "10.9.0.2/24"}, {})
    assert f"pnh{EID[:12]}" not in world.links.links
    no_crash(monkeypatch)
    reconcile(world.restart())
    assert f"pnh{EID[:12]}" in world.links.links  # a record that never joined: its pair comes back


def test_orphan_claims_of_a_program_still_running_are_left_alone(world):
    """Program claims, then records, under the endpoint's lock; the collector looks again under it."""
    world.network()
    world.service.create_endpoint(NID, EID, {"address": "10.9.0.2/24"}, {})
    service = world.service
    ports = service.publisher.ports
    holding, synced = threading.Event(), threading.Event()
    original_sync = world.firewall.sync

    def sync(networks, endpoints=()):
        original_sync(networks, endpoints)
        synced.set()

    world.firewall.sync = sync
    result = []

    def program_in_flight():
        with service._locks.hold(EID):
            port = ports.claim(EID, 4, Request("tcp", 80, "", 18080, 18080), "0.0.0.0")
            holding.set()
            synced.wait(5)  # the collector has listed the claim as an orphan and rewritten the rules
            binding = {"proto": "tcp", "host_ip": "0.0.0.0", "host_port": port, "container_ip": "10.9.0.2",
                       "container_port": 80, "family": 4}
            service.repo.update_endpoint(NID, EID, lambda e: e.__class__(**{**e.__dict__, "published": [binding]}))

    t = threading.Thread(target=program_in_flight)
    t.start()
    assert holding.wait(5)
    collector = threading.Thread(target=lambda: result.append(service.publisher.collect_orphan_claims()))
    collector.start()
    t.join(5)
    collector.join(5)
    assert result == [0] and world.claims() == {(EID, 18080)}
    with pytest.raises(Conflict):  # still held: nobody else gets it
        ports.claim(EID2, 4, Request("tcp", 80, "", 18080, 18080), "0.0.0.0")
