"""driver/gc.py: records dockerd no longer knows are collected, and only those, with a fake Docker
API (its two calls) and a fake clock over the real service, store and (fake) kernel ports."""

from __future__ import annotations

import pytest

from pynet.docker_api import DockerApiError
from pynet.driver.gc import OrphanCollector, WrongDockerd
from pynet.driver.models import IPAMData
from pynet.driver.service import NetworkService
from pynet.ipam.pools import parse_pool_id
from pynet.ipam.service import IpamService
from pynet.store.memory import MemoryStore
from tests.fakes import FakeFirewall, FakeLinks

NID = "2f234f73" + "0" * 55 + "1"
NID2 = "4a5b6c7d" + "0" * 55 + "4"
EID = "2688ccdb" + "0" * 55 + "2"
EID2 = "3799ddec" + "0" * 55 + "3"
PORTMAP = {"com.docker.network.portmap": [
    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 18080, "HostPortEnd": 18080}]}
MIN_AGE = 10.0


class FakeDocker:
    """dockerd's view: network id -> {"Containers": {key: {"EndpointID": ...}}}."""

    docker_host = "unix:///fake/docker.sock"

    def __init__(self) -> None:
        self.networks: dict[str, dict] = {}
        self.down = False

    def knows(self, network_id: str, *endpoint_ids: str, joined: bool = True) -> None:
        containers = self.networks.setdefault(network_id, {"Containers": {}})["Containers"]
        for eid in endpoint_ids:
            containers[("c" * 64) if joined else f"ep-{eid}"] = {"EndpointID": eid, "Name": "x"}

    def network_names(self) -> dict[str, str]:
        if self.down:
            raise DockerApiError("cannot reach Docker at unix:///fake/docker.sock: connection refused")
        return {f"name-{nid[:4]}": nid for nid in self.networks}

    def network(self, network_id: str) -> dict | None:
        return self.networks.get(network_id)


class World:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.links, self.firewall = FakeLinks(), FakeFirewall()
        self.service = NetworkService(self.store, self.links, self.firewall, port_probe=lambda *a: True,
                                      set_sysctl=lambda path, value: True)
        self.docker = FakeDocker()
        self.now = 1000.0
        self.gc = OrphanCollector(self.service, self.docker, MIN_AGE, ipam=IpamService(self.store),
                                  clock=lambda: self.now)

    def network(self, nid: str = NID, subnet: str = "10.9.0.0/24") -> None:
        gw = subnet.replace("0/24", "1/24")
        self.service.create_network(nid, {"com.docker.network.generic": {}},
                                    [IPAMData(pool=subnet, gateway=gw, address_space="pynet-local")], [])

    def endpoint(self, eid: str, address: str, nid: str = NID, ports: dict | None = None) -> None:
        self.service.create_endpoint(nid, eid, {"address": address}, {})
        if ports:
            self.service.join(nid, eid, "/var/run/docker/netns/x", {})
            self.service.program_external(nid, eid, ports)

    def passes(self, *gaps: float) -> list[dict]:
        out = []
        for gap in gaps:
            self.now += gap
            out.append(self.gc.step())
        return out

    def endpoint_ids(self) -> set[str]:
        return {e.id for e in self.service.repo.endpoints()}


@pytest.fixture
def world():
    return World()


def test_an_endpoint_dockerd_lost_is_collected_after_two_passes_and_the_minimum_age(world):
    world.network()
    world.endpoint(EID, "10.9.0.2/24", ports=PORTMAP)
    world.endpoint(EID2, "10.9.0.3/24")
    world.docker.knows(NID, EID2)  # EID: dockerd was killed before it stored it
    first, early = world.passes(0, MIN_AGE / 2)
    assert first["endpoints"] == early["endpoints"] == 0 and EID in world.endpoint_ids()
    (late,) = world.passes(MIN_AGE / 2)
    assert late["endpoints"] == 1
    assert world.endpoint_ids() == {EID2}
    assert f"pnh{EID[:12]}" not in world.links.links and f"pnh{EID2[:12]}" in world.links.links
    assert world.service.publisher.ports.claims() == [] and world.firewall.published == []


def test_a_record_dockerd_lists_again_is_never_collected(world):
    """A create in flight: pynet has the record before dockerd stores the endpoint."""
    world.network()
    world.endpoint(EID, "10.9.0.2/24")
    world.docker.knows(NID)
    world.passes(0)
    world.docker.knows(NID, EID, joined=False)  # stored now, not joined yet: listed as ep-<id>
    world.passes(MIN_AGE, MIN_AGE)
    world.docker.networks[NID]["Containers"].clear()  # left out of one answer (mid-join) ...
    world.passes(MIN_AGE)
    world.docker.knows(NID, EID)  # ... and back on the next: the count starts again
    world.passes(MIN_AGE, MIN_AGE)
    assert world.endpoint_ids() == {EID}


def test_a_network_dockerd_lost_is_collected_with_its_endpoints(world):
    world.network()
    world.network(NID2, "10.8.0.0/24")
    world.endpoint(EID, "10.8.0.2/24", nid=NID2, ports=PORTMAP)
    world.docker.knows(NID)
    world.passes(0, MIN_AGE)
    assert [n.id for n in world.service.repo.networks()] == [NID]
    assert world.endpoint_ids() == set() and f"pn-{NID2[:12]}" not in world.links.links
    assert world.service.publisher.ports.claims() == []


def test_a_dockerd_that_knows_none_of_the_networks_collects_nothing_and_says_so(world):
    world.network()
    world.endpoint(EID, "10.9.0.2/24")
    for _ in range(3):
        with pytest.raises(WrongDockerd, match="knows none of pynet's 1 network"):
            world.passes(MIN_AGE)
    assert world.endpoint_ids() == {EID} and world.service.repo.network(NID) is not None


def test_a_record_a_request_is_working_on_is_left_for_the_next_pass(world):
    world.network()
    world.endpoint(EID, "10.9.0.2/24")
    world.docker.knows(NID)
    world.passes(0)
    with world.service._locks.hold(EID):
        world.passes(MIN_AGE)
    assert world.endpoint_ids() == {EID}
    world.passes(0)
    assert world.endpoint_ids() == set()


def test_dockerd_unreachable_is_a_failed_pass_that_collects_nothing(world):
    world.network()
    world.endpoint(EID, "10.9.0.2/24")
    world.docker.knows(NID)
    world.passes(0)
    world.docker.down = True
    with pytest.raises(DockerApiError):
        world.passes(MIN_AGE)
    assert world.endpoint_ids() == {EID}
    world.docker.down = False
    world.passes(0)
    assert world.endpoint_ids() == set()  # missing on two answered passes, MIN_AGE apart


def test_each_pass_collects_what_crashes_left_without_a_record(world):
    world.network()
    world.docker.knows(NID)
    world.links.links["pnh0123456789ab"] = {"kind": "veth", "mtu": 1500}
    world.service.publisher.ports.reserve(EID, 4, "tcp", "0.0.0.0", 18080)  # a claim, no record
    ipam = world.gc.ipam
    p = ipam.request_pool("pynet-local", "10.7.0.0/24", "", None, False)
    ipam.request_address(p.pool_id, "", None)
    ipam._registry.remove(parse_pool_id(p.pool_id))  # a ReleasePool that died before its claims
    (counts,) = world.passes(0)
    assert counts == {"networks": 0, "endpoints": 0, "ports": 1, "links": 1, "addresses": 1}
    assert "pnh0123456789ab" not in world.links.links


def test_the_interval_is_a_setting_with_an_off_switch():
    from pynet.plugin.cli import _parser
    from pynet.plugin.settings import resolve

    assert resolve({}, environ={}).gc_interval == 60
    assert resolve({}, environ={"PYNET_GC_INTERVAL": "0"}).gc_interval == 0
    flags = vars(_parser().parse_args(["serve", "--gc-interval", "5"]))
    assert resolve(flags, environ={"PYNET_GC_INTERVAL": "0"}).gc_interval == 5


def test_compose_starts_the_loop_after_replay_unless_it_is_off(world):
    from pynet.plugin import compose
    from pynet.plugin.settings import Settings

    class Recorder:
        def __init__(self):
            self.loops = {}

        def every(self, name, seconds, step, retry=None, first=0.0):
            self.loops[name] = (seconds, first, step)

    services = compose.Services(world.service, world.gc.ipam)
    on, off = Recorder(), Recorder()
    compose._start_gc(Settings(gc_interval=7, docker_host="unix:///nowhere.sock"), services, on)
    compose._start_gc(Settings(gc_interval=0), services, off)
    assert off.loops == {}
    seconds, first, step = on.loops["orphan-gc"]
    assert (seconds, first) == (7, 7)
    collector = step.__self__
    assert collector.min_age == 14 and collector.docker.docker_host == "unix:///nowhere.sock"
