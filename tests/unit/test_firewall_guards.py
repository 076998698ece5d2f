"""The firewall's guards without a kernel: text only from parsed values, the loopback and member-VTEP
rules, the member filter's arming, and bounded iptables commands."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import threading
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from pynet.driver import firewall as fw, iptables
from pynet.driver.firewall import FirewallError, FirewallTimeout, IptablesFirewall, MemberFilter, render
from pynet.driver.models import Endpoint, IPAMData, Network, NetworkConfig
from pynet.errors import BadRequest, Retryable, Timeout

NID = "a" * 64


def net(bridge="pn-aaaaaaaaaaaa", pool="10.1.0.0/24", gateway="10.1.0.1/24", mode="bridge", v6=None):
    return Network(id=NID, config=NetworkConfig(bridge=bridge, mode=mode, overlay="o" if mode == "overlay" else ""),
                   ipv4=(IPAMData(pool=pool, gateway=gateway),), ipv6=(v6,) if v6 else ())


GOOD_BINDING = {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 8081, "container_ip": "10.1.0.2",
                "container_port": 80, "family": 4}


def endpoint(**binding):
    return Endpoint(network_id=NID, id="e" * 64, host_if="pnheeeeeeeeeeee", container_if="pnceeeeeeeeeeee",
                    address="10.1.0.2/24", published=[{**GOOD_BINDING, **binding}])


# ---------------------------------------------------------------------------- text from parsed values
def test_good_values_render():
    text = render([net()], [endpoint()], 4)
    assert "-A PYNET-OUTPUT -d 127.0.0.1 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.1.0.2:80" in text


@pytest.mark.parametrize("bridge", [
    "pn-x -j ACCEPT", "pn+", "+", "-jACCEPT", "!pn", "pn\nCOMMIT", "", "pn-aaaaaaaaaaaaaa", "pn/1", "pn:1",
    "pn;x", "pn'x", "pn\tx", ".", "..", 42, None,
])
def test_hostile_bridge_names_are_refused_before_any_text(bridge):
    with pytest.raises(BadRequest, match="bridge"):
        render([net(bridge=bridge)], [], 4)
    with pytest.raises(BadRequest):
        fw.check_network(net(bridge=bridge))


@pytest.mark.parametrize("pool", [
    "10.1.0.0/24 -j ACCEPT", "10.1.0.1/24", "10.1.0.0", "fd00::/64", " 10.1.0.0/24", "10.1.0.0/24\n",
    "10.1.0.0/33", "010.1.0.0/24", "10.1.0.0/24%eth0", None, 7,
])
def test_hostile_pools_are_refused(pool):
    with pytest.raises(BadRequest, match="pool"):
        render([net(pool=pool)], [], 4)


@pytest.mark.parametrize("gateway", ["10.1.0.1", "10.1.0.1/24 -j ACCEPT", "fd00::1/64", "10.1.0.1/24%lo"])
def test_hostile_gateways_are_refused(gateway):
    with pytest.raises(BadRequest, match="gateway"):
        render([net(mode="overlay", gateway=gateway)], [], 4)


def test_scoped_v6_pool_is_refused():
    with pytest.raises(BadRequest, match="pool"):
        render([net(v6=IPAMData(pool="fe80::%eth0/64"))], [], 6)


@pytest.mark.parametrize("field,value", [
    ("host_port", "80 -j ACCEPT"), ("host_port", True), ("host_port", 0), ("host_port", 65536), ("host_port", 80.0),
    ("container_port", "80"), ("container_port", -1),
    ("proto", "tcp -j ACCEPT"), ("proto", "icmp"), ("proto", "TCP"),
    ("host_ip", "127.0.0.1 -j ACCEPT"), ("host_ip", "::1"), ("host_ip", "127.0.0.1/32"), ("host_ip", ""),
    ("container_ip", "10.1.0.2:80"), ("container_ip", "fe80::1%eth0"), ("container_ip", None),
    ("family", "4"), ("family", 5),
])
def test_hostile_published_ports_are_refused(field, value):
    with pytest.raises(BadRequest, match=field):
        render([net()], [endpoint(**{field: value})], 4)


def test_hostile_set_name_is_refused():
    with pytest.raises(BadRequest, match="set"):
        render([net(mode="overlay")], [], 4, vtep_set="pynet-vteps src -j ACCEPT")


SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:/!\-\[\],]+$")


def _or_text(*good, size=20):
    return st.one_of(st.sampled_from(good), st.text(max_size=size))


@settings(max_examples=200, deadline=None)
@given(bridge=_or_text("pn-aaaaaaaaaaaa", "br_x.1", "eth-0"), pool=_or_text("10.1.0.0/24", "10.0.0.0/8"),
       port=st.one_of(st.integers(-5, 70000), st.text(max_size=8)), host_ip=_or_text("0.0.0.0", "127.0.0.1"))
def test_random_values_are_refused_or_written_canonical(bridge, pool, port, host_ip):
    n, e = net(bridge=bridge, pool=pool), endpoint(host_port=port, host_ip=host_ip)
    try:
        text = render([n], [e], 4)
    except BadRequest:
        return
    # accepted: every token of every rule is plain, and the values are their own canonical form
    for line in (line for line in text.splitlines() if not line.startswith(("*", ":")) and line != "COMMIT"):
        assert line.startswith("-A PYNET-"), line
        assert all(SAFE_TOKEN.match(tok) or tok in fw.DOCKER_BRIDGES for tok in line.split()), line
    assert str(ipaddress.ip_network(pool)) == pool
    assert f"-o {bridge} " in text and re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$", bridge)


# ---------------------------------------------------------------------------- loopback and members
LOOP = ("-A PYNET-INPUT -i pn-aaaaaaaaaaaa ! -s 127.0.0.0/8 -d 127.0.0.0/8 "
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")


def test_loopback_rule_per_bridge_ipv4_only():
    v4 = render([net()], [], 4)
    assert LOOP in v4.splitlines() and ":PYNET-INPUT - [0:0]" in v4
    v6 = render([net(v6=IPAMData(pool="fd00:1::/64", gateway="fd00:1::1/64"))], [], 6)
    assert "127.0.0.0/8" not in v6
    assert ("filter", "INPUT", "PYNET-INPUT", ()) in fw.JUMPS


def raw_lines(text):
    return [line for line in text.splitlines() if line.startswith("-A PYNET-RAW ")]


def test_member_drop_comes_first_and_only_with_an_armed_filter_and_an_overlay():
    overlay = net(mode="overlay")
    armed = raw_lines(render([overlay], [], 4, vtep_set="pynet-vteps"))
    assert armed[0] == fw.member_rules("pynet-vteps")[0]
    assert "--dport 4789" in armed[0] and "! --match-set pynet-vteps src -j DROP" in armed[0]
    assert not any("match-set" in line for line in raw_lines(render([overlay], [], 4)))  # not armed
    assert not any("match-set" in line for line in raw_lines(render([net()], [], 4, vtep_set="pynet-vteps")))


class FakeSets:
    def __init__(self, members=None):
        self.sets: dict[str, set] = {} if members is None else {"pynet-vteps": set(members)}
        self.calls: list[tuple] = []

    def ensure(self, name):
        self.calls.append(("ensure", name))
        self.sets.setdefault(name, set())

    def destroy(self, name):
        self.calls.append(("destroy", name))
        self.sets.pop(name, None)

    def members(self, name):
        return None if name not in self.sets else frozenset(self.sets[name])


class Recording(IptablesFirewall):
    """The firewall with its commands recorded instead of run."""

    def __init__(self, sets):
        super().__init__(members=MemberFilter(sets))
        self._families = [(4, "iptables")]
        self.applied: list[str] = []
        self.removed = 0

    def _apply(self, rules, tool):
        self.applied.append(rules)
        self._sets_seen = dict(self._members.sets.sets)

    def _remove(self, tool):
        self.removed += 1
        self.applied.append("")


def has_drop(fwl):
    return "match-set pynet-vteps" in fwl.applied[-1]


def test_a_fresh_set_is_not_enforced_until_armed_then_goes_with_the_last_overlay():
    sets = FakeSets()
    f = Recording(sets)
    f.sync([net(mode="overlay")])
    assert "pynet-vteps" in f._sets_seen  # the set exists before any rule could name it
    assert not has_drop(f)  # an empty set would cut every tunnel: not before the first listing filled it
    assert f.arm() is False and not has_drop(f)  # still empty: never enforced
    sets.sets["pynet-vteps"].add(ipaddress.IPv4Address("192.0.2.1"))  # the reconciler filled it
    assert f.arm() is True and has_drop(f)
    assert f.arm() is False  # already armed: nothing rewritten
    f.sync([net(mode="overlay")])
    assert has_drop(f)
    f.sync([])
    assert f.removed == 1 and sets.calls[-1] == ("destroy", "pynet-vteps") and not f.armed
    f.sync([net(mode="overlay")])  # a new overlay later: a new, empty set, not enforced again until armed
    assert not has_drop(f)


def test_a_set_that_survived_a_restart_keeps_the_filter():
    f = Recording(FakeSets(members={ipaddress.IPv4Address("192.0.2.1")}))
    f.sync([net(mode="overlay")])
    assert has_drop(f)


def test_arming_before_the_overlay_is_synced_lets_that_sync_write_the_rule():
    sets = FakeSets(members={ipaddress.IPv4Address("192.0.2.1")})
    f = Recording(sets)
    f.sync([net()])  # a bridge network only: the set is destroyed (there is no overlay)
    sets.ensure("pynet-vteps")
    sets.sets["pynet-vteps"].add(ipaddress.IPv4Address("192.0.2.1"))  # an overlay's table filled it again
    assert f.arm() is False and not has_drop(f)
    f.sync([net(mode="overlay")])
    assert has_drop(f)


def test_a_set_destroyed_under_a_registered_table_is_reread_and_never_enforced_empty():
    """A delete's sync (no overlay left, by its view) destroys the set while a concurrent create already
    registered the members table, which believes the old entries are still there."""
    sets, reread = FakeSets(members={ipaddress.IPv4Address("192.0.2.1")}), []
    f = IptablesFirewall(members=MemberFilter(sets, on_destroyed=lambda: reread.append(True)))
    f._families, seen = [(4, "iptables")], []
    f._apply, f._remove = (lambda rules, tool: seen.append(rules)), (lambda tool: seen.append(""))
    f.sync([])
    assert reread == [True] and sets.members("pynet-vteps") is None
    f.sync([net(mode="overlay")])  # the create's sync: a new, empty set
    assert "match-set" not in seen[-1]
    assert f.arm() is False and "match-set" not in seen[-1]  # a whole pass over stale belief: not armed


def test_single_host_gets_no_vxlan_rule():
    f = IptablesFirewall()
    f._families, seen = [(4, "iptables")], []
    f._apply = lambda rules, tool: seen.append(rules)
    f.sync([net(mode="overlay")])
    assert "match-set" not in seen[-1] and f.arm() is False


# ---------------------------------------------------------------------------- bounded iptables
def test_every_iptables_command_waits_a_bounded_time(monkeypatch):
    seen = []

    def fake_run(argv, **kw):
        seen.append((argv, kw.get("timeout")))
        return subprocess.CompletedProcess(argv, 1, "", "")

    monkeypatch.setattr(iptables.subprocess, "run", fake_run)
    f = IptablesFirewall()
    f._families = [(4, "iptables")]
    with pytest.raises(FirewallError):
        f.sync([net()])  # iptables-restore "fails" (rc 1)
    f.sync([])  # the removal path: -D, -F, -X
    f.keep_first()
    assert seen
    for argv, timeout in seen:
        i = argv.index("-w")
        assert argv[i + 1] == str(iptables.WAIT), argv  # "-w 5", never a bare -w that waits forever
        assert timeout == iptables.TIMEOUT and iptables.TIMEOUT > iptables.WAIT


def test_a_hung_iptables_fails_within_its_bound_naming_the_command():
    with pytest.raises(FirewallTimeout, match=r"sleep 5 did not finish within 0.3 s"):
        iptables.run(["sleep", "5"], timeout=0.3)


def test_lock_held_is_a_timeout_naming_the_lock(monkeypatch):
    monkeypatch.setattr(iptables.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(
        argv, 4, "", "Another app is currently holding the xtables lock. Stopped waiting after 5s."))
    with pytest.raises(FirewallTimeout, match="xtables lock") as exc:
        iptables.run(["iptables-restore", "-w", "5", "--noflush"], "")
    assert isinstance(exc.value, Timeout) and isinstance(exc.value, Retryable) and exc.value.status == 503
    with pytest.raises(FirewallTimeout):
        iptables.ok(["iptables", "-w", "5", "-C", "FORWARD", "-j", "X"])  # a check cannot mistake it for "absent"


def test_firewall_errors_are_in_the_taxonomy():
    from pynet.errors import PynetError

    assert issubclass(FirewallError, PynetError) and FirewallError("x").status == 500


def test_unregister_waits_for_a_pass_of_that_table():
    from pynet.driver.overlay.reconciler import Reconciler

    entered, release = threading.Event(), threading.Event()

    class Slow:
        name = "members:vteps"

        def desired(self):
            return {"k": 1}

        def desired_for(self, keys):
            return self.desired()

        def actual(self):
            return {}

        def add(self, key, value):
            entered.set()
            release.wait(5)

        def remove(self, key, value):
            pass

    r = Reconciler()
    r.register(Slow())
    t = threading.Thread(target=r.pass_once)
    t.start()
    assert entered.wait(5)
    done = threading.Event()
    u = threading.Thread(target=lambda: (r.unregister("members:vteps"), done.set()))
    u.start()
    assert not done.wait(0.3)  # still writing: unregister has not returned
    release.set()
    assert done.wait(5)
    t.join(5), u.join(5)


def test_members_table_follows_the_view_and_arms_after_a_whole_pass():
    from pynet.driver.overlay.reconciler import Reconciler
    from pynet.driver.overlay.tables import MembersTable

    class Control:
        vteps = None

        def members(self):
            return self.vteps

    class Sets(FakeSets):
        def add(self, name, ip):
            assert isinstance(ip, ipaddress.IPv4Address)
            self.sets[name].add(ip)

        def delete(self, name, ip):
            self.sets.get(name, set()).discard(ip)

    control, sets, armed = Control(), Sets(), []
    table = MembersTable(control, sets, "pynet-vteps", on_synced=lambda: armed.append(True))
    r = Reconciler()
    r.register(table)
    r.pass_once()
    assert sets.members("pynet-vteps") is None and armed == []  # no listing yet: nothing written, not armed
    control.vteps = frozenset({"192.0.2.1", "192.0.2.2", "fd00::1", "junk"})
    r.nudge()
    r.pass_once()
    assert sets.members("pynet-vteps") == {ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")}
    assert armed == [True]
    control.vteps = frozenset({"192.0.2.1"})  # b left the view: its entry goes, nothing is flushed
    r.nudge()
    r.pass_once()
    assert sets.members("pynet-vteps") == {ipaddress.IPv4Address("192.0.2.1")}
    assert ("destroy", "pynet-vteps") not in sets.calls


def test_control_plane_members_are_the_views_hosts():
    from pynet.cluster.control import EtcdControlPlane
    from pynet.cluster.models import Host
    from pynet.store.memory import MemoryStore

    control = EtcdControlPlane(MemoryStore(), "h1", "192.0.2.1")
    assert control.members() is None  # before the first listing
    control.view.loaded = True
    control.view.hosts = {"h1": Host("h1", "192.0.2.1"), "h2": Host("h2", "192.0.2.2")}
    assert control.members() == {"192.0.2.1", "192.0.2.2"}


def test_overlay_networks_register_members_with_the_first_overlay_and_drop_it_with_the_last():
    from pynet.driver.overlay.networks import OverlayNetworks
    from pynet.driver.overlay.reconciler import Reconciler
    from pynet.driver.overlay.tables import MembersTable
    from tests.fakes import FakeLinks

    class Control:
        def subscribe(self, listener):
            pass

        def members(self):
            return None

        def remotes(self, overlay, macs=None):
            return None

    links, r = FakeLinks(), Reconciler()
    members = MembersTable(Control(), FakeSets(), "pynet-vteps")
    overlays = OverlayNetworks(Control(), r, links, "192.0.2.1", join_wait=0, members=members)
    from pynet.driver.kernel.links import BridgeSpec

    nets = []
    for i, c in enumerate("bc"):
        n = replace(net(mode="overlay"), id=c * 64)
        n = replace(n, config=replace(n.config, bridge=f"pn-{c * 12}", overlay=f"o{i}", vni=10 + i))
        links.ensure_bridge(BridgeSpec(name=n.config.bridge, mtu=1450, mac="02:00:00:00:00:01", addresses=()))
        nets.append(n)
    overlays.ensure(nets[0])
    overlays.ensure(nets[1])
    assert "members:vteps" in r.tables()
    overlays.remove(nets[0])
    assert "members:vteps" in r.tables()
    overlays.remove(nets[1])
    assert "members:vteps" not in r.tables()


def test_a_hung_ip_set_call_fails_in_time_and_the_next_call_gets_a_new_socket():
    """One hung netlink call must not wedge every later one: each firewall sync touches the set."""
    import threading

    from pynet.driver.kernel.ipset import IpSets
    from pynet.errors import Timeout

    release = threading.Event()
    opened = []

    class Handle:
        def __init__(self, hang):
            self.hang = hang

        def list(self, *args, **kwargs):
            if self.hang:
                release.wait(10)
            return []

        def close(self):
            pass

    def opener():
        opened.append(Handle(hang=not opened))  # the first socket hangs, later ones answer
        return opened[-1]

    sets = IpSets(timeout=0.3, opener=opener)
    try:
        with pytest.raises(Timeout, match="replaced"):
            sets.members("pynet-vteps")
        assert sets.members("pynet-vteps") == frozenset()  # a new thread, a new socket, an answer
        assert len(opened) == 2
    finally:
        release.set()
        sets.close()
