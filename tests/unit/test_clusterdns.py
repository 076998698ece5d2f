"""The cluster DNS without sockets to containers: the table, the resolver's decisions, resolv.conf, the
forwarding outcomes (against throwaway servers on loopback), the names Docker's answers give."""

from __future__ import annotations

import socket
import threading

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from pynet.cluster.control import EtcdControlPlane
from pynet.cluster.models import Advert
from pynet.clusterdns import upstream
from pynet.clusterdns.docker_names import DockerNames, names_of
from pynet.clusterdns.server import FORWARD, TTL, Resolver
from pynet.clusterdns.service import LiveTable, parse_address
from pynet.clusterdns.table import NameTable
from pynet.driver.overlay.port import LocalEndpoint
from pynet.errors import BadRequest
from pynet.store import keys
from pynet.store.memory import MemoryStore

H1, H2 = "111111111111", "222222222222"
E = {n: f"{n:x}" * 64 for n in range(1, 7)}


def ad(host, n, ip, names, overlay="demo", ip6=None):
    return Advert(overlay, host, E[n], f"02:00:00:00:00:0{n}", "192.0.2.1", (ip, *([ip6] if ip6 else [])), names)


ADVERTS = [
    ad(H1, 1, "10.10.0.2", ("client",)),
    ad(H2, 2, "10.10.0.3", ("api", "backend", "api.demo"), ip6="fd00::3"),
    ad(H2, 3, "10.10.0.4", ("worker", "backend")),
    ad(H2, 4, "10.20.0.2", ("api", "secret"), overlay="other"),
    ad(H1, 5, "10.20.0.3", ("spy",), overlay="other"),
]


def test_names_are_scoped_to_the_overlays_of_the_asking_container():
    table = NameTable(ADVERTS)
    assert table.lookup("10.10.0.2", "api").v4 == ("10.10.0.3",)
    assert table.lookup("10.10.0.2", "API.demo.").v6 == ("fd00::3",)
    assert table.lookup("10.10.0.2", "backend").v4 == ("10.10.0.3", "10.10.0.4")  # every carrier of an alias
    assert table.lookup("10.20.0.3", "api").v4 == ("10.20.0.2",)  # the other overlay's "api"
    assert table.lookup("10.10.0.2", "secret") is None  # another overlay's name: not for this container
    assert table.lookup("10.20.0.3", "backend") is None
    assert table.lookup("192.168.7.7", "api") is None  # a source we cannot place gets no overlay names
    assert table.lookup("::ffff:10.10.0.2", "api").v4 == ("10.10.0.3",)
    assert table.lookup("not an address", "api") is None


def query(name, rdtype="A", rdclass="IN") -> bytes:
    return DNSRecord.question(name, rdtype, rdclass).pack()


def parse(wire: bytes) -> DNSRecord:
    return DNSRecord.parse(wire)


def addresses(r: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in r.rr)


class NoForward:
    def __call__(self, wire, servers, tcp=False):
        raise AssertionError("forwarded")


def resolver(adverts=ADVERTS, forward=None, servers=("192.0.2.53",)):
    ups = type("U", (), {"servers": lambda self: servers})()
    return Resolver(lambda: NameTable(adverts), ups, forward or NoForward())


def test_overlay_names_are_answered_authoritatively_with_the_short_ttl():
    r = parse(resolver().answer(query("backend", "A"), "10.10.0.2"))
    assert r.header.rcode == RCODE.NOERROR and r.header.aa and r.header.qr
    assert addresses(r) == ["10.10.0.3", "10.10.0.4"] and {rr.ttl for rr in r.rr} == {TTL}
    r6 = parse(resolver().answer(query("api.demo", "AAAA"), "10.10.0.2"))
    assert addresses(r6) == ["fd00::3"] and r6.rr[0].rtype == QTYPE.AAAA
    both = parse(resolver().answer(query("API", "ANY"), "10.10.0.2"))
    assert addresses(both) == ["10.10.0.3", "fd00::3"]


def test_a_name_without_that_type_is_nodata_and_not_forwarded():
    r = parse(resolver().answer(query("worker", "AAAA"), "10.10.0.2"))
    assert r.header.rcode == RCODE.NOERROR and r.rr == []
    mx = parse(resolver().answer(query("api", "MX"), "10.10.0.2"))
    assert mx.header.rcode == RCODE.NOERROR and mx.rr == []


def test_everything_else_is_forwarded():
    r = resolver()
    assert r.answer(query("example.com"), "10.10.0.2") is FORWARD
    assert r.answer(query("secret"), "10.10.0.2") is FORWARD  # another overlay's name: the world's answer
    assert r.answer(query("api"), "172.17.0.2") is FORWARD  # a container we cannot place
    assert r.answer(query("api", "TXT", "CH"), "10.10.0.2") is FORWARD


@pytest.mark.parametrize("wire", [b"", b"\x00", b"garbage" * 3, b"\xff" * 12 + b"\x00" * 40])
def test_malformed_datagrams_are_dropped_not_answered(wire):
    assert resolver().answer(wire, "10.10.0.2") is None


def test_a_response_is_never_answered():
    response = DNSRecord.question("api", "A").reply().pack()
    assert resolver().answer(response, "10.10.0.2") is None


def test_too_many_records_for_udp_set_tc():
    many = [ad(H2, 2, "10.10.0.3", ("big",))] + [
        Advert("demo", H2, f"{i:064x}", "02:00:00:00:01:01", "192.0.2.2", (f"fd00::{i:x}",), ("big",))
        for i in range(1, 40)]
    many.append(ad(H1, 1, "10.10.0.2", ("client",)))
    r = parse(resolver(many).answer(query("big", "AAAA"), "10.10.0.2"))
    assert r.header.tc and r.rr == []
    full = parse(resolver(many).answer(query("big", "AAAA"), "10.10.0.2", tcp=True))
    assert len(full.rr) == 32  # MAX_ANSWERS
    edns = DNSRecord.question("big", "AAAA")
    edns.add_ar(EDNS0(udp_len=4096))  # a client that says it takes more over UDP gets it all
    big = parse(resolver(many).answer(edns.pack(), "10.10.0.2"))
    assert not big.header.tc and len(big.rr) == 32


def test_upstream_outcomes_are_passed_back():
    answer = b"\x12\x34" + b"\x81\x83" + b"\x00" * 8  # NXDOMAIN, as the upstream sent it
    got = resolver(forward=lambda wire, servers, tcp=False: upstream.Outcome(answer))
    assert got.resolve(query("example.com"), "10.10.0.2") == answer
    silent = resolver(forward=lambda wire, servers, tcp=False: upstream.Outcome(None, refused=False))
    assert silent.resolve(query("example.com"), "10.10.0.2") is None
    down = resolver(forward=lambda wire, servers, tcp=False: upstream.Outcome(None, refused=True))
    assert parse(down.resolve(query("example.com"), "10.10.0.2")).header.rcode == RCODE.SERVFAIL


def test_resolv_conf_parsing():
    text = ("# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver 169.254.53.53\n"
            "nameserver fe80::1%eth0\nnameserver garbage\nnameserver 2001:DB8::1\nnameserver 192.0.2.53\n"
            "nameserver 192.0.2.54\nnameserver 192.0.2.55\n")
    assert upstream.parse_resolv_conf(text, frozenset({"169.254.53.53"})) == \
        ("192.0.2.53", "2001:db8::1", "192.0.2.54")


def test_resolv_conf_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.53\n")
    now = [0.0]
    ups = upstream.Upstreams(str(path), clock=lambda: now[0])
    assert ups.servers() == ("192.0.2.53",)
    path.write_text("nameserver 192.0.2.99\nnameserver 192.0.2.98\n")
    assert ups.servers() == ("192.0.2.53",)  # not looked at again before RECHECK
    now[0] += upstream.RECHECK
    assert ups.servers() == ("192.0.2.99", "192.0.2.98")
    path.unlink()
    now[0] += upstream.RECHECK
    assert ups.servers() == ()


@pytest.fixture
def loopback_server():
    """A UDP DNS server on 127.0.0.1 that answers NXDOMAIN, or stays silent, as told."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    mode = {"silent": False}
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                wire, peer = s.recvfrom(4096)
            except OSError:
                continue
            if not mode["silent"]:
                r = DNSRecord.parse(wire).reply()
                r.header.rcode = RCODE.NXDOMAIN
                s.sendto(r.pack(), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield s.getsockname()[1], mode
    stop.set()
    t.join(2)
    s.close()


def test_forward_over_udp_to_a_real_socket(loopback_server, monkeypatch):
    port, mode = loopback_server
    monkeypatch.setattr(upstream, "PORT", port)
    wire = query("nowhere.example")
    out = upstream.forward(wire, ("127.0.0.1",), timeout=1.0)
    assert out.answer[:2] == wire[:2] and parse(out.answer).header.rcode == RCODE.NXDOMAIN
    mode["silent"] = True
    assert upstream.forward(wire, ("127.0.0.1",), timeout=0.3) == upstream.Outcome(None, refused=False)


def test_forward_to_nobody_listening_is_refused(monkeypatch):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: ICMP port unreachable -> ECONNREFUSED on the connected socket
    monkeypatch.setattr(upstream, "PORT", port)
    assert upstream.forward(query("x.example"), ("127.0.0.1",), timeout=1.0).refused
    assert upstream.forward(query("x.example"), (), timeout=1.0).refused


# -- names from Docker ----------------------------------------------------------------------------------
INSPECTED = {
    "Id": "c" * 64, "Name": "/api",
    "Config": {"Hostname": "api-host", "Labels": {"com.docker.compose.service": "web"}},
    "NetworkSettings": {"Networks": {"demo": {"EndpointID": E[2], "Aliases": ["backend", "cccccccccccc", "Bad Name!",
                                                                               "x" * 300, 42]}}},
}


def test_names_of_a_container_are_dockers_names_parsed():
    assert names_of(INSPECTED, "demo") == ("api", "api-host", "backend", "cccccccccccc", "web", "api.demo",
                                           "api-host.demo", "backend.demo", "cccccccccccc.demo", "web.demo")
    hostile = {"Name": "/$(x)", "Config": None, "NetworkSettings": {"Networks": {"demo": {"Aliases": "nope"}}}}
    assert names_of(hostile, "demo") == ()


class FakeDocker:
    def __init__(self, containers):
        self.list, self.inspects = containers, 0

    def containers(self):
        return [{"Id": c["Id"], "NetworkSettings": c["NetworkSettings"]} for c in self.list]

    def container(self, cid):
        self.inspects += 1
        return next((c for c in self.list if c["Id"] == cid), None)


def plane():
    store = MemoryStore()
    control = EtcdControlPlane(store, H1, "192.0.2.1")
    control.advertise(LocalEndpoint("demo", E[2], "02:00:00:00:00:02", ("10.10.0.3",)))
    return store, control


def test_names_go_into_the_endpoint_advert_once():
    store, control = plane()
    docker = FakeDocker([INSPECTED])
    names = DockerNames(control, docker)
    names.step()
    names.step()
    stored = store.get(keys.advert("demo", H1, E[2])).value
    assert stored["names"][:3] == ["api", "api-host", "backend"] and docker.inspects == 1
    # a re-advertise (start-up replay, a new lease) keeps the names
    control.advertise(LocalEndpoint("demo", E[2], "02:00:00:00:00:02", ("10.10.0.3",)))
    assert store.get(keys.advert("demo", H1, E[2])).value["names"] == stored["names"]
    control.withdraw("demo", E[2])
    assert store.get(keys.advert("demo", H1, E[2])) is None and control._names == {}


def test_containers_of_other_networks_are_not_inspected():
    store, control = plane()
    foreign = {**INSPECTED, "Id": "d" * 64, "NetworkSettings": {"Networks": {"bridge": {"EndpointID": "f" * 64}}}}
    docker = FakeDocker([foreign])
    DockerNames(control, docker).step()
    assert docker.inspects == 0


def test_the_live_table_follows_the_view():
    store, control = plane()
    control.load()
    DockerNames(control, FakeDocker([INSPECTED])).step()
    for event in store.watch(keys.cluster_prefix(), control.view.revision + 1, 0.1):
        control.apply(event)
    client = Advert("demo", H2, E[1], "02:00:00:00:00:01", "192.0.2.2", ("10.10.0.2",), ("client",))
    store.create(keys.advert("demo", H2, E[1]), client.to_dict())
    for event in store.watch(keys.cluster_prefix(), control.view.revision + 1, 0.1):
        control.apply(event)
    assert LiveTable(control)().lookup("10.10.0.2", "backend").v4 == ("10.10.0.3",)


@pytest.mark.parametrize("value, want", [("169.254.53.53", "169.254.53.53"), ("off", None), (" OFF ", None),
                                         ("fd00::53", "fd00::53")])
def test_dns_address_setting(value, want):
    assert parse_address(value) == want


@pytest.mark.parametrize("value", ["169.254.53", "0.0.0.0", "127.0.0.1", "224.0.0.1", "$(x)"])
def test_bad_dns_addresses_are_refused_by_name(value):
    with pytest.raises(BadRequest, match="--dns-address"):
        parse_address(value)


def test_a_hostile_name_in_etcd_is_refused_and_the_rest_still_resolves():
    store = MemoryStore()
    control = EtcdControlPlane(store, H1, "192.0.2.1")
    good = Advert("demo", H2, E[2], "02:00:00:00:00:02", "192.0.2.2", ("10.10.0.3",), ("api",))
    client = Advert("demo", H1, E[1], "02:00:00:00:00:01", "192.0.2.1", ("10.10.0.2",), ("client",))
    hostile = {**Advert("demo", H2, E[3], "02:00:00:00:00:03", "192.0.2.2", ("10.10.0.4",)).to_dict(),
               "names": ["api", "evil\n.example"]}
    for advert in (good, client):
        store.create(keys.advert("demo", advert.host, advert.endpoint), advert.to_dict())
    store.create(keys.advert("demo", H2, E[3]), hostile)
    control.load()
    table = LiveTable(control)()
    assert table.lookup("10.10.0.2", "api").v4 == ("10.10.0.3",)  # not poisoned with 10.10.0.4
    assert control.health.rejected_count("endpoints") == 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_udp_and_tcp_loops_answer_and_forward_on_loopback(monkeypatch):
    from pynet.background import Context
    from pynet.clusterdns import server
    from pynet.health import Health

    port = _free_port()
    monkeypatch.setattr(upstream, "PORT", port)  # the resolver's own port here (bind() uses it)
    nx = {}

    def forward(wire, servers, tcp=False):
        r = DNSRecord.parse(wire).reply()
        r.header.rcode = RCODE.NXDOMAIN
        nx["tcp" if tcp else "udp"] = True
        return upstream.Outcome(r.pack())

    local = [ad(H1, 1, "127.0.0.1", ("client",)), ad(H2, 2, "10.10.0.3", ("api",))]  # the test asks from 127.0.0.1
    servers = server.Servers(resolver(local, forward=forward), "127.0.0.1")
    stop = threading.Event()
    loops = [threading.Thread(target=fn, args=(Context(name, stop, Health()),), daemon=True)
             for name, fn in (("udp", servers.udp), ("tcp", servers.tcp))]
    for t in loops:
        t.start()
    try:
        import time as _time
        _time.sleep(0.3)

        def ask(name, tcp):
            return parse(DNSRecord.question(name, "A").send("127.0.0.1", port, tcp=tcp, timeout=2))

        assert addresses(ask("api", tcp=False)) == ["10.10.0.3"]
        assert addresses(ask("api", tcp=True)) == ["10.10.0.3"]
        assert ask("else.example", tcp=False).header.rcode == RCODE.NXDOMAIN and nx == {"udp": True}
        assert ask("else.example", tcp=True).header.rcode == RCODE.NXDOMAIN and nx == {"udp": True, "tcp": True}
    finally:
        stop.set()
        for t in loops:
            t.join(3)
    assert not any(t.is_alive() for t in loops)


def test_a_restarted_pynet_advertises_again_without_losing_the_names():
    store, control = plane()
    DockerNames(control, FakeDocker([INSPECTED])).step()
    names = tuple(store.get(keys.advert("demo", H1, E[2])).value["names"])
    restarted = EtcdControlPlane(store, H1, "192.0.2.1")  # knows no names yet (Docker not asked)
    restarted.advertise(LocalEndpoint("demo", E[2], "02:00:00:00:00:02", ("10.10.0.3",)))
    assert tuple(store.get(keys.advert("demo", H1, E[2])).value["names"]) == names
    assert restarted._adverts[("demo", E[2])].names == names  # housekeeping will not strip them
    # another container behind the same endpoint id (not a real case) or a new MAC: no names carried over
    other = EtcdControlPlane(store, H1, "192.0.2.1")
    other.advertise(LocalEndpoint("demo", E[2], "02:00:00:00:00:09", ("10.10.0.3",)))
    assert store.get(keys.advert("demo", H1, E[2])).value["names"] == []


def test_pynet_serve_refuses_a_bad_dns_address_before_it_starts():
    from pynet.plugin.server import _check_multi_host
    from pynet.plugin.settings import Settings

    with pytest.raises(SystemExit, match=r"--dns-address 'not-an-ip' is neither an IP address nor 'off'"):
        _check_multi_host(Settings(etcd="http://127.0.0.1:2379", dns_address="not-an-ip"))


def test_no_datagram_crashes_the_resolver():
    """Random bytes, and valid queries with bytes overwritten: dropped, forwarded or answered, never raised
    (a seeded generator: the same 3,000 cases every run)."""
    import random

    rng = random.Random(13)
    r = resolver(forward=lambda w, s, tcp=False: upstream.Outcome(None))
    valid = [query(n, t) for n in ("backend", "api.demo", "x" * 63) for t in ("A", "AAAA", "ANY", "MX")]
    for i in range(3000):
        if i % 3 == 0:
            wire = rng.randbytes(rng.randrange(0, 300))
        else:
            wire = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                at = rng.randrange(len(wire))
                wire[at:at + 2] = rng.randbytes(rng.randrange(1, 3))
            wire = bytes(wire)
        verdict = r.answer(wire, "10.10.0.2")
        assert verdict is None or verdict is FORWARD or isinstance(verdict, bytes), wire


def test_names_arriving_while_the_endpoint_is_withdrawn_do_not_bring_its_advert_back():
    """name() writes outside the lock; a DeleteEndpoint's withdraw in between must win."""
    store = MemoryStore()
    control = EtcdControlPlane(store, H1, "192.0.2.1")
    control.advertise(LocalEndpoint("demo", E[2], "02:00:00:00:00:02", ("10.10.0.3",)))
    real_put = control._put_advert

    def put_after_a_withdraw(advert, lease, keep_names=False):
        control.withdraw("demo", E[2])  # the request thread gets there first
        return real_put(advert, lease, keep_names)

    control._put_advert = put_after_a_withdraw
    control.name(E[2], ("api",))
    assert store.get(keys.advert("demo", H1, E[2])) is None
    assert E[2] not in control._names
