"""Property-based: random and hostile bodies to every route, against the real services and kernel.

The real app (create_app) over the real NetworkService and IpamService: a sqlite store in a tmp dir,
netlink bound to a throwaway namespace, iptables run inside it, sysctls written inside it.  Only the
host-port probe is a stand-in (it would bind sockets in the test's own namespace).  Bodies are mostly
structurally valid calls whose field values are hostile -- IDs with '/', '%', newlines, unicode, 5,000
characters; addresses with scopes, leading zeros, mapped forms, host bits; options of odd types --
drawn around a few real IDs and pools, so that creates, joins and published ports really reach the
kernel and the firewall; the rest is junk JSON and bytes.

Properties: every answer is the JSON envelope, 200 or a 4xx, never a 5xx; afterwards the namespace
holds no link outside pynet's names (or a bridge a stored network was given by name) and no
iptables rule outside pynet's chains but the jumps into them; once every stored network is deleted
through the API, nothing of pynet is left at all.

Budget: the "ci" profile (default) is derandomized with a fixed number of examples; set
PYNET_FUZZ_PROFILE=deep for a longer, random run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pynet.driver import names, options
from pynet.plugin.http import CONTENT_TYPE

pytestmark = pytest.mark.root

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=300, derandomize=True, **_COMMON)
settings.register_profile("deep", max_examples=2000, **_COMMON)
PROFILE = os.environ.get("PYNET_FUZZ_PROFILE", "ci")

# -- the world: real services in the test's namespace --------------------------------------------------


@pytest.fixture
def app(netns, links, tmp_path):
    from pynet.driver.firewall import IptablesFirewall
    from pynet.driver.service import NetworkService
    from pynet.ipam.service import IpamService
    from pynet.plugin.app import Services, create_app
    from pynet.store import open_store

    def set_sysctl(path: str, value: str) -> bool:  # in the namespace; the path is argv, never shell text
        return subprocess.run(["ip", "netns", "exec", netns, "tee", f"/proc/sys/{path}"], input=value, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0

    store = open_store(str(tmp_path / "state"))
    network = NetworkService(store, links, IptablesFirewall(command_prefix=("ip", "netns", "exec", netns)),
                             port_probe=lambda family, proto, ip, port: True, set_sysctl=set_sysctl)
    services = Services(network=network, ipam=IpamService(store))
    return create_app(services), services


# -- strategies ---------------------------------------------------------------------------------------

NIDS = ["a1" * 32, "b2" * 32, "a1" * 6 + "0" * 52]  # the last shares its kernel names with the first
EIDS = ["c3" * 32, "d4" * 32, "c3" * 6 + "f" * 52]
POOLS = ["10.77.0.0/24", "10.78.0.0/16", "10.79.0.0/24", "fd00:77::/64", "2001:DB8::/64"]
POOL_IDS = ["pynet-local/10.77.0.0/24", "pynet-local/10.78.0.0/16", "pynet-local/10.79.0.0/24",
            "pynet-local/fd00:77::/64", "pynet-local/2001:db8::/64", "pynet-local/10.78.0.0/16/10.78.5.0/24"]
GOOD_ADDRESSES = ["10.77.0.1/24", "10.77.0.5/24", "10.78.0.9/16", "fd00:77::5/64", "10.77.0.5", "fd00:77::1", ""]
HOSTILE = [
    "fe80::1%eth0", "fe80::1%eth0/64", "10.77.0.5%lo/24", " 10.77.0.0/24", "10.77.0.0/24\n", "010.77.0.5/24",
    "::ffff:10.77.0.5", "::ffff:10.77.0.0/120", "10.77.0.1/24", "10.77.0.5/33", "10.77.0.5/-1", "10.77.0.5/024",
    "0.0.0.0/0", "::/0", "255.255.255.255/32", "127.0.0.1", "::", "<nil>", "", "/", "../..", "a/b", "%", "%n",
    "\x00", "\u202e", "é", "🦄", "x" * 5000, "0" * 64, "A1" * 32, "a1" * 32 + "\n", "a1" * 6, "a1" * 6 + "/x",
    "docker0", "docker_gwbridge", "br-0123456789ab", "pnh" + "c3" * 6, "pn-" + "b2" * 6, "lo", "br+", "!br", "-x",
    "eth0:1", "x" * 16, ".", "..", "true", "1e400", "NaN", "$(reboot)", "'; DROP", "-j ACCEPT", "\n-A INPUT -j DROP",
]
BAD_MACS = ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "zz:zz:zz:zz:zz:zz"]
odd = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30))
anything = st.one_of(hostile_text, odd)


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, percent: int = 80) -> st.SearchStrategy:
    """``good`` ``percent`` % of the time (and when shrinking), else ``bad``.  (st.one_of would not do:
    it draws its branches evenly, and the same branch listed twice counts once.)"""
    return st.integers(0, 99).flatmap(lambda roll: good if roll < percent else bad)


def some(known: list) -> st.SearchStrategy:
    """Mostly a known good value, so calls get past the first check; otherwise anything at all."""
    return mostly(st.sampled_from(known), anything)


nid, eid = some(NIDS), some(EIDS)
address = st.one_of(st.sampled_from(GOOD_ADDRESSES + POOLS), st.sampled_from(HOSTILE), anything)
generic_values = st.one_of(st.sampled_from(["true", "false", "1500", "9000", "67", "68", "1279", "65535", "bridge",
                                            "overlay", "br0",
                                            "br-lan", "0.0.0.0", "127.0.0.1", "::ffff:127.0.0.1"]), anything)
generic = mostly(st.just({}), st.one_of(st.dictionaries(
    st.sampled_from(sorted(options.KNOWN_GENERIC) + ["bogus", "pynet.mode "]), generic_values, max_size=3), odd))
network_options = mostly(st.fixed_dictionaries({options.GENERIC: generic, "com.docker.network.enable_ipv6":
                                                mostly(st.booleans(), anything)}),
                         st.one_of(st.fixed_dictionaries({options.GENERIC: generic}, optional={
                             "com.docker.network.internal": st.one_of(st.booleans(), anything)}), odd))
GOOD_IPAM = [{"AddressSpace": "pynet-local", "Pool": "10.77.0.0/24", "Gateway": "10.77.0.1/24"},
             {"AddressSpace": "pynet-local", "Pool": "10.78.0.0/16", "Gateway": "10.78.0.1/16",
              "AuxAddresses": {"a": "10.78.0.7/16"}},
             {"AddressSpace": "pynet-local", "Pool": "10.79.0.0/24"}]
EDGE_IPAM = [{"Pool": "0.0.0.0/0"}, {"AddressSpace": None, "Pool": "0.0.0.0/0"},  # dockerd's null IPAM
             {"Pool": "0.0.0.0/0", "Gateway": "0.0.0.0/0"}, {"Pool": "10.77.0.0/32", "Gateway": "10.77.0.0/32"},
             {"Pool": "127.0.0.0/8", "Gateway": "127.0.0.1/8"}, {"Pool": "224.0.0.0/4", "Gateway": "224.0.0.1/4"},
             {"Pool": "169.254.0.0/16", "Gateway": "169.254.0.1/16"}, {"Pool": "10.77.0.0/24", "Gateway": "10.77.0.255/24"},
             {"Pool": "10.77.0.0/24", "Gateway": "10.77.0.0/24"}, {"Pool": "10.77.0.0/31", "Gateway": "10.77.0.1/31"}]
ipam_data = mostly(st.sampled_from(GOOD_IPAM), st.one_of(st.sampled_from(EDGE_IPAM), st.fixed_dictionaries({}, optional={
    "AddressSpace": st.one_of(st.just("pynet-local"), anything), "Pool": address, "Gateway": address,
    "AuxAddresses": st.one_of(st.dictionaries(hostile_text, address, max_size=2), odd)})))
ipam_data_list = mostly(st.lists(ipam_data, min_size=1, max_size=1), st.one_of(st.lists(ipam_data, max_size=2), odd))
ipv6_data_list = mostly(st.just([]), st.one_of(st.sampled_from([
    [{"Pool": "fd00:77::/64", "Gateway": "fd00:77::1/64"}], [{"Pool": "::/0"}], [{"Pool": "::1/128", "Gateway": "::1/128"}],
    [{"Pool": "fe80::/64", "Gateway": "fe80::1/64"}], [{"Pool": "ff02::/16", "Gateway": "ff02::1/16"}],
    [{"Pool": "::ffff:0:0/96", "Gateway": "::ffff:0:1/96"}], [{"Pool": "fd00:77::/127", "Gateway": "fd00:77::1/127"}]]),
                                               st.lists(ipam_data, max_size=1), odd))
good_port = st.fixed_dictionaries({"Proto": st.sampled_from([6, 17]), "Port": st.sampled_from([80, 53]),
                                   "HostIP": st.sampled_from(["", "127.0.0.1", "0.0.0.0", "::"]),
                                   "HostPort": st.sampled_from([0, 18080, 18081]), "HostPortEnd": st.just(0)})
port = mostly(good_port, st.fixed_dictionaries({}, optional={
    "Proto": st.sampled_from([6, 17, 132, 1, "tcp", None, 6.0]), "Port": st.one_of(st.integers(-1, 70000), odd),
    "HostIP": address, "HostPort": st.one_of(st.integers(-1, 70000), st.sampled_from([0, 18080, 18081]), odd),
    "HostPortEnd": st.one_of(st.integers(-1, 70000), odd)}))
endpoint_options = mostly(st.fixed_dictionaries({options.PORTMAP: st.lists(port, max_size=2),
                                                 options.EXPOSED: st.just([])}),
                          st.one_of(st.fixed_dictionaries({}, optional={
                              options.PORTMAP: st.one_of(st.lists(port, max_size=3), odd),
                              options.EXPOSED: st.one_of(st.lists(st.fixed_dictionaries(
                                  {"Proto": st.just(6), "Port": st.integers(0, 70000)}), max_size=2), odd),
                              options.MAC_OPTION: st.one_of(st.sampled_from(["yv4AABAC", "ca:fe:00:00:10:02", "zz",
                                                                              "AAAA", "AQBeAAAB"] + BAD_MACS),
                                                            anything),
                              "com.docker.network.endpoint.dnsservers": anything, "colour": anything}), odd))
interface = mostly(st.fixed_dictionaries({"Address": st.sampled_from(["10.77.0.5/24", "10.78.0.9/16", "10.79.0.3/24"]),
                                          "AddressIPv6": st.sampled_from(["", "fd00:77::5/64"]),
                                          "MacAddress": st.sampled_from(["", "ca:fe:00:00:10:02"] + BAD_MACS)}),
                   st.one_of(st.fixed_dictionaries({}, optional={
                       "Address": address, "AddressIPv6": address,
                       "MacAddress": st.one_of(st.just("ca:fe:00:00:10:02"), anything)}), odd))
ids = {"NetworkID": nid, "EndpointID": eid}


def body(required: dict, **optional) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=optional)


NO_BODY = st.one_of(st.just(None), st.just({}), odd)
BODIES = {
    "/Plugin.Activate": NO_BODY,
    "/Pynet.Ports": NO_BODY,
    "/Pynet.Health": NO_BODY,
    "/NetworkDriver.GetCapabilities": NO_BODY,
    "/NetworkDriver.GwAllocCheck": body({}, Options=network_options),
    "/NetworkDriver.CreateNetwork": body({"NetworkID": nid, "Options": network_options, "IPv4Data": ipam_data_list,
                                          "IPv6Data": ipv6_data_list}),
    "/NetworkDriver.AllocateNetwork": body({"NetworkID": nid}, Options=network_options, IPv4Data=ipam_data_list),
    "/NetworkDriver.DeleteNetwork": body({"NetworkID": nid}),
    "/NetworkDriver.FreeNetwork": body({"NetworkID": nid}),
    "/NetworkDriver.CreateEndpoint": body({**ids, "Interface": interface, "Options": endpoint_options}),
    "/NetworkDriver.EndpointOperInfo": body(ids),
    "/NetworkDriver.DeleteEndpoint": body(ids),
    "/NetworkDriver.Join": body(ids, SandboxKey=st.one_of(st.just("/var/run/docker/netns/x"), anything),
                                Options=endpoint_options),
    "/NetworkDriver.Leave": body(ids),
    "/NetworkDriver.ProgramExternalConnectivity": body({**ids, "Options": endpoint_options}),
    "/NetworkDriver.RevokeExternalConnectivity": body(ids),
    "/NetworkDriver.DiscoverNew": body({}, DiscoveryType=st.one_of(st.just(1), odd), DiscoveryData=anything),
    "/NetworkDriver.DiscoverDelete": body({}, DiscoveryType=st.one_of(st.just(1), odd), DiscoveryData=anything),
    "/IpamDriver.GetCapabilities": NO_BODY,
    "/IpamDriver.GetDefaultAddressSpaces": NO_BODY,
    "/IpamDriver.RequestPool": body({"AddressSpace": some(["pynet-local"]), "Pool": mostly(
        st.sampled_from(POOLS), st.one_of(st.just(""), address))},
                                    SubPool=mostly(st.just(""), st.one_of(
                                        st.sampled_from(["10.78.5.0/24", "10.78.5.1/24"]), address)),
                                    Options=mostly(st.just({}), st.one_of(odd, st.dictionaries(
                                        hostile_text, anything, max_size=1))),
                                    V6=st.one_of(st.booleans(), odd)),
    "/IpamDriver.ReleasePool": body({"PoolID": some(POOL_IDS)}),
    "/IpamDriver.RequestAddress": body({"PoolID": some(POOL_IDS), "Address": mostly(
        st.sampled_from(["", "", "10.77.0.5", "10.78.0.9", "10.79.0.1"]), address)}, Options=st.one_of(
        st.just({"RequestAddressType": "com.docker.network.gateway"}), st.just(None), anything)),
    "/IpamDriver.ReleaseAddress": body({"PoolID": some(POOL_IDS), "Address": mostly(
        st.sampled_from(["10.77.0.1", "10.77.0.5", "10.78.0.9", "10.79.0.1", "fd00:77::5"]), address)}),
}
junk_json = st.recursive(st.one_of(odd, hostile_text), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)), max_leaves=10)
raw = st.one_of(st.binary(max_size=64), st.sampled_from([b"[" * 5000, b'{"a":' * 3000, b"\xff\xfe", b"{", b"null",
                                                         b'"x"', b"1" * 5000, b'{"NetworkID": 1e999}']))


DEEP = ["/NetworkDriver.CreateNetwork", "/NetworkDriver.CreateEndpoint", "/NetworkDriver.Join",
        "/NetworkDriver.ProgramExternalConnectivity", "/NetworkDriver.DeleteEndpoint", "/NetworkDriver.DeleteNetwork",
        "/IpamDriver.RequestPool", "/IpamDriver.RequestAddress"]


def encode(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def call(path: str) -> st.SearchStrategy:
    return st.tuples(st.just(path), mostly(BODIES[path].map(encode), st.one_of(junk_json.map(encode), raw),
                                           percent=75))


# Six routes in a random order (a permutation, so that no route is left out for being hard to pick).
scattered = st.permutations(sorted(BODIES)).flatmap(lambda order: st.tuples(*(call(p) for p in order[:6])))

# dockerd's order for `docker network create` + `docker run -p` + `docker rm -f` + `docker network rm`.
LIFECYCLE = ["/IpamDriver.RequestPool", "/IpamDriver.RequestAddress", "/NetworkDriver.CreateNetwork",
             "/IpamDriver.RequestAddress", "/NetworkDriver.CreateEndpoint", "/NetworkDriver.Join",
             "/NetworkDriver.ProgramExternalConnectivity", "/NetworkDriver.EndpointOperInfo",
             "/NetworkDriver.RevokeExternalConnectivity", "/NetworkDriver.Leave", "/NetworkDriver.DeleteEndpoint",
             "/IpamDriver.ReleaseAddress", "/NetworkDriver.DeleteNetwork", "/IpamDriver.ReleasePool"]


@st.composite
def story(draw) -> list[tuple[str, bytes]]:
    """One container's life on one network, as dockerd calls it, each step's body drawn as above and
    mostly tied to the story's own network and endpoint; steps are sometimes left out (a crash, a
    rollback), so state also piles up across stories."""
    pool = draw(st.integers(0, 2))  # one of the v4 pools, with its PoolID
    tie = {"NetworkID": draw(st.sampled_from(NIDS)), "EndpointID": draw(st.sampled_from(EIDS)),
           "Pool": POOLS[pool], "PoolID": POOL_IDS[pool], "V6": False}
    steps = []
    for path in LIFECYCLE:
        if draw(st.integers(0, 99)) >= 85:
            continue
        value = draw(BODIES[path])
        if isinstance(value, dict) and draw(st.integers(0, 99)) < 80:
            value = {**value, **{k: v for k, v in tie.items() if k in value}}
        steps.append((path, encode(value)))
    return steps


calls = mostly(story(), scattered.map(list), percent=60)


# -- the properties -------------------------------------------------------------------------------------


def post(client, path: str, data: bytes):
    return client.post(path, data=data, headers={"Accept": CONTENT_TYPE})


def check_answer(path: str, resp) -> None:
    assert resp.content_type == CONTENT_TYPE, (path, resp.status_code, resp.data[:200])
    answer = json.loads(resp.data)
    assert 200 <= resp.status_code < 500, (path, resp.status_code, answer)
    # libnetwork reads 404 from these two as "not implemented", i.e. success (protocol.md §1.4).
    assert resp.status_code != 404 or "ExternalConnectivity" not in path, (path, answer)
    assert isinstance(answer, dict)
    if resp.status_code >= 400:
        assert isinstance(answer.get("Err"), str) and answer["Err"] and answer["Err"] == answer["Error"], answer


def ns_links(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], check=True, capture_output=True, text=True,
                         timeout=10).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def foreign_rules(netns: str) -> list[str]:
    """Every iptables line that is neither in a PYNET- chain nor a jump from a built-in chain into one."""
    bad = []
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run(["ip", "netns", "exec", netns, tool], check=True, capture_output=True, text=True,
                             timeout=30).stdout
        for line in out.splitlines():
            if line.startswith(":") and not line.startswith(":PYNET-") and line.split()[1] == "-":
                bad.append(f"{tool}: chain {line}")  # a user chain (built-ins carry a policy, not "-")
            if line.startswith("-A ") and not line.split()[1].startswith("PYNET-") and " -j PYNET-" not in line:
                bad.append(f"{tool}: {line}")
    return bad


def test_hostile_bodies_to_every_route(app, netns):
    app, services = app
    client = app.test_client()
    served = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert served == set(BODIES), f"routes without a strategy: {served - set(BODIES)}"
    outcomes: Counter = Counter()

    @settings(settings.get_profile(PROFILE))
    @given(calls)
    def some_calls(steps):
        for path, data in steps:
            resp = post(client, path, data)
            outcomes[path, resp.status_code] += 1
            check_answer(path, resp)

    some_calls()
    print(sorted(outcomes.items()))
    assert {path for path, _ in outcomes} == set(BODIES)
    # Deep enough: the kernel, the firewall and the port store were reached, not only the decoder.
    for path in DEEP:
        assert outcomes[path, 200] > 0, f"no successful {path}: the strategies stop at the front door"
    stored = {n.config.bridge for n in services.network.repo.networks()}
    strays = [n for n in ns_links(netns) if n != "lo" and names.owner_of(n) is None and n not in stored]
    assert strays == [], strays
    assert foreign_rules(netns) == []
    # Tidy up through the API, as dockerd would: afterwards nothing of pynet is left.
    for net in services.network.repo.networks():
        check_answer("/NetworkDriver.DeleteNetwork", post(client, "/NetworkDriver.DeleteNetwork",
                                                          encode({"NetworkID": net.id})))
    assert ns_links(netns) == ["lo"]
    assert foreign_rules(netns) == [] and "PYNET" not in _save(netns)


def _save(netns: str) -> str:
    return "".join(subprocess.run(["ip", "netns", "exec", netns, tool], check=True, capture_output=True, text=True,
                                  timeout=30).stdout for tool in ("iptables-save", "ip6tables-save"))
